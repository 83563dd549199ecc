//! What the host's git will load or run from outside a repository's own git dir, as named by
//! git configuration: `core.hooksPath` (a hooks directory), `include.path` and
//! `includeIf.*.path` (config files, followed recursively) and `init.templateDir` (copied into
//! every repository `git init` makes). The plan ([`crate::plan`]) locks every such target
//! that lies in a writable root, absent ones through placeholders, and the integrity report
//! ([`crate::integrity`]) compares them; the guard ([`crate::guard`]) does the same for the
//! repositories it finds in the workspace.
//!
//! Read here (before the session, with the user's authority, read-only): the system config
//! (`/etc/gitconfig`), the user's global configs (`$XDG_CONFIG_HOME/git/config`,
//! `~/.gitconfig`) and the config of the repository
//! the workspace is in (its git dir found as git finds it: `.git` in the workspace or the
//! nearest ancestor, through a `gitdir:` file, plus its `commondir`); that git dir's own
//! `hooks/` and `config` are targets too when it lies outside the workspace. Paths are expanded as
//! git expands them: `~/` is the home directory, a relative hooks path is relative to the work
//! tree, a relative include to the directory of the file that includes it.

use std::path::{Component, Path, PathBuf};

/// Include files followed at most this deep (git's own limit is 10).
const MAX_INCLUDE_DEPTH: usize = 10;
/// Config files larger than this are not read (their references are not followed).
const MAX_CONFIG: u64 = 1 << 20;

/// What a config text points at: `core.hooksPath` (last one wins), every `include.path` /
/// `includeIf.*.path`, and `init.templateDir` (last one wins). Values as written.
#[derive(Default, Debug, PartialEq)]
pub struct ConfigRefs {
    pub hooks_path: Option<String>,
    pub includes: Vec<String>,
    pub template_dir: Option<String>,
    /// Values of keys that name a program git runs (`core.pager`, `core.editor`,
    /// `core.sshCommand`, `credential.helper`, `diff.external`, `filter.*.clean`, `alias.*`
    /// with `!`, `gpg.program`, ...): shell text, whose path-like words are targets.
    pub programs: Vec<String>,
}

/// (section, key) pairs whose value is a command git runs (`*` matches any key).
const PROGRAM_KEYS: &[(&str, &str)] = &[
    ("core", "pager"),
    ("core", "editor"),
    ("core", "sshcommand"),
    ("core", "askpass"),
    ("core", "fsmonitor"),
    ("core", "gitproxy"),
    ("sequence", "editor"),
    ("credential", "helper"),
    ("diff", "external"),
    ("diff", "textconv"),
    ("diff", "command"),
    ("merge", "driver"),
    ("filter", "clean"),
    ("filter", "smudge"),
    ("filter", "process"),
    ("gpg", "program"),
    ("interactive", "difffilter"),
    ("difftool", "cmd"),
    ("mergetool", "cmd"),
    ("pager", "*"),
    ("alias", "*"),
    ("uploadpack", "packobjectshook"),
];

/// Parses the references out of a git config text (see [`ConfigRefs`]).
pub fn config_refs(text: &str) -> ConfigRefs {
    let mut section = String::new();
    let mut r = ConfigRefs::default();
    for line in text.lines() {
        let mut t = line.trim();
        if t.starts_with('[') {
            if let Some((name, after)) = crate::guard::parse_header(t) {
                section = name;
                t = after.trim();
            }
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        let k = k.trim();
        let v = value(v);
        if section == "core" && k.eq_ignore_ascii_case("hookspath") {
            r.hooks_path = Some(v);
        } else if (section == "include" || section == "includeif") && k.eq_ignore_ascii_case("path")
        {
            r.includes.push(v);
        } else if section == "init" && k.eq_ignore_ascii_case("templatedir") {
            r.template_dir = Some(v);
        } else if PROGRAM_KEYS
            .iter()
            .any(|(sec, key)| section == *sec && (*key == "*" || k.eq_ignore_ascii_case(key)))
        {
            // An alias runs a command only with a leading `!`.
            if section != "alias" || v.starts_with('!') {
                r.programs.push(v.trim_start_matches('!').to_string());
            }
        }
    }
    r
}

/// A config value as git reads it: surrounding blanks dropped, quotes removed, `\"` `\\`
/// `\t` `\n` unescaped, an unquoted `#` or `;` starts a comment.
fn value(raw: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = raw.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('b') => out.push('\u{8}'),
                Some(o) => out.push(o),
                None => {}
            },
            '#' | ';' if !quoted => break,
            _ => out.push(c),
        }
    }
    out.trim_end().to_string()
}

/// A path named by git configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Absolute and lexically normal (no `.`/`..`); symlinks in an existing prefix resolved.
    pub path: PathBuf,
    /// As the config spells it (absolute, lexically normal, no symlink resolved): the plan
    /// follows it to pin the links on the way ([`crate::plan::LinkPin`]).
    pub spelled: PathBuf,
    /// A directory (hooks, templates) or a config file (includes).
    pub is_dir: bool,
    /// The config key that names it.
    pub key: &'static str,
}

/// Expands a config pathname as git does (`~/` and `~` are `home`; a relative one is taken
/// relative to `base`), lexically normalised. `None` for `~user/`, `%(prefix)/` or an
/// empty value (not followed).
pub fn expand(value: &str, home: &Path, base: Option<&Path>) -> Option<PathBuf> {
    let p = if value == "~" {
        home.to_path_buf()
    } else if let Some(rest) = value.strip_prefix("~/") {
        home.join(rest)
    } else if let Some(rest) = value.strip_prefix('~') {
        // `~user/...`: that user's home, as git expands it.
        let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
        warden_sys::user_home(user)?.join(tail)
    } else if value.starts_with("%(") || value.is_empty() {
        return None;
    } else if Path::new(value).is_absolute() {
        PathBuf::from(value)
    } else {
        base?.join(value)
    };
    normalise(&p)
}

/// The path-like words of a command (absolute, `~/`, `~user/`), expanded: what a program
/// key makes git run or read.
fn program_paths(cmd: &str, home: &Path) -> Vec<PathBuf> {
    cmd.split(|c: char| {
        c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')' | '`' | '"' | '\'')
    })
    .filter(|w| w.starts_with('/') || w.starts_with('~'))
    .filter_map(|w| expand(w, home, None))
    .collect()
}

fn normalise(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::Prefix(_) => return None,
        }
    }
    p.is_absolute().then_some(out)
}

/// `p` with the symlinks of its longest existing prefix resolved (what the host's git will
/// reach), the rest appended as it is.
fn real(p: &Path) -> PathBuf {
    warden_policy::files::canonical_prefix(p)
}

fn read_config(p: &Path) -> Option<String> {
    let md = std::fs::metadata(p).ok()?;
    if !md.is_file() || md.len() > MAX_CONFIG {
        return None;
    }
    std::fs::read(p)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The git dir and work tree git uses in `dir`: `.git` there or in the nearest ancestor (a
/// directory, or a `gitdir:` file). `None` when there is none.
pub fn discover(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut d = Some(dir);
    while let Some(cur) = d {
        let dot = cur.join(".git");
        if let Ok(md) = std::fs::metadata(&dot) {
            if md.is_dir() {
                return Some((dot, cur.to_path_buf()));
            }
            if md.is_file() {
                let text = read_config(&dot)?;
                let t = text.lines().next()?.strip_prefix("gitdir:")?.trim();
                let g = normalise(&cur.join(t))?;
                return Some((g, cur.to_path_buf()));
            }
        }
        d = cur.parent();
    }
    None
}

/// A checkout whose `.git` is a `gitdir:` file naming a git dir outside it (`git worktree add
/// ../feature`, a submodule): that git dir and the repository's common dir (its `commondir`),
/// which git needs to work there at all. The plan shows them read-only (status, log and diff
/// work; a commit fails on the read-only index): they hold the same repository as the
/// checkout, and nothing the host's git runs from them becomes writable. Only for `.git` in
/// `workspace` itself: a workspace inside a larger repository does not get that repository's
/// history.
pub fn checkout_git_dirs(workspace: &Path) -> Vec<PathBuf> {
    let dot = workspace.join(".git");
    if !std::fs::symlink_metadata(&dot).is_ok_and(|m| m.is_file()) {
        return Vec::new();
    }
    let Some((g, _)) = discover(workspace) else {
        return Vec::new();
    };
    let common = read_config(&g.join("commondir"))
        .and_then(|c| normalise(&g.join(c.trim())))
        .unwrap_or_else(|| g.clone());
    // Only what looks like a git dir (a `HEAD`; `objects` in the common one): a `gitdir:`
    // line naming any other directory shows nothing.
    if !g.join("HEAD").is_file() || !common.join("objects").is_dir() {
        return Vec::new();
    }
    // And only a git dir that names this checkout back, from where the agent could not have
    // written it (a `.git` file is the workspace's, so an earlier session's agent may have
    // planted one naming any private repository: attack review 60):
    // - a worktree: `<common>/worktrees/<id>`, whose `gitdir` file names `<workspace>/.git`;
    // - a submodule: its own common dir, whose `core.worktree` names the workspace.
    let real_ws = std::fs::canonicalize(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    let names_back = |p: &Path| std::fs::canonicalize(p).is_ok_and(|r| r == real_ws);
    let worktree = g.parent() == Some(common.join("worktrees").as_path())
        && read_config(&g.join("gitdir"))
            .and_then(|t| t.lines().next().map(|l| PathBuf::from(l.trim())))
            .and_then(|t| t.parent().map(Path::to_path_buf))
            .is_some_and(|t| names_back(&t));
    let submodule = g == common
        && read_config(&g.join("config"))
            .and_then(|t| {
                t.lines().map(str::trim).find_map(|l| {
                    l.strip_prefix("worktree")
                        .map(|r| r.trim_start().trim_start_matches('=').trim().to_string())
                })
            })
            .is_some_and(|t| names_back(&g.join(t)));
    if !(worktree || submodule) {
        return Vec::new();
    }
    let in_writable = |d: &Path| d.starts_with(workspace);
    if in_writable(&g) || in_writable(&common) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for d in [g, common] {
        if !d.starts_with(workspace)
            && d.is_dir()
            && !out.iter().any(|o: &PathBuf| d.starts_with(o))
        {
            out.retain(|o: &PathBuf| !o.starts_with(&d));
            out.push(d);
        }
    }
    out
}

/// Every target named by the global configs and by the config of the repository `workspace`
/// is in (see the module doc), unfiltered; each once.
pub fn targets(workspace: &Path, home: &Path) -> Vec<Target> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    let repo = discover(workspace);
    let worktree = repo.as_ref().map(|(_, w)| w.clone());
    let mut configs: Vec<PathBuf> = vec![
        PathBuf::from("/etc/gitconfig"),
        xdg.join("git/config"),
        home.join(".gitconfig"),
    ];
    let mut out: Vec<Target> = Vec::new();
    let mut push = |t: Target| {
        if !out.iter().any(|o| o.path == t.path) {
            out.push(t);
        }
    };
    if let Some((g, _)) = &repo {
        let common = read_config(&g.join("commondir"))
            .and_then(|c| normalise(&g.join(c.trim())))
            .unwrap_or_else(|| g.clone());
        configs.push(g.join("config"));
        configs.push(g.join("config.worktree"));
        configs.push(common.join("config"));
        // The repository's own git dir when it lies outside the workspace (a worktree or
        // submodule of a repository elsewhere; the guard owns the ones inside): its hooks
        // and config, locked when another writable root holds them.
        if !g.starts_with(workspace) || !common.starts_with(workspace) {
            push(Target {
                path: real(&common.join("hooks")),
                spelled: common.join("hooks"),
                is_dir: true,
                key: "the repository's hooks",
            });
            for c in [common.join("config"), g.join("config.worktree")] {
                if c.is_file() {
                    push(Target {
                        path: real(&c),
                        spelled: c.clone(),
                        is_dir: false,
                        key: "the repository's config",
                    });
                }
            }
        }
    }
    let mut queue: Vec<(PathBuf, usize)> = configs.into_iter().map(|c| (c, 0)).collect();
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some((cfg, depth)) = queue.pop() {
        if seen.contains(&cfg) {
            continue;
        }
        seen.push(cfg.clone());
        let Some(text) = read_config(&cfg) else {
            continue;
        };
        let r = config_refs(&text);
        let dir = cfg.parent().map(Path::to_path_buf);
        if let Some(h) = r
            .hooks_path
            .and_then(|h| expand(&h, home, worktree.as_deref()))
        {
            push(Target {
                path: real(&h),
                spelled: h.clone(),
                is_dir: true,
                key: "core.hooksPath",
            });
        }
        if let Some(t) = r.template_dir.and_then(|t| expand(&t, home, None)) {
            push(Target {
                path: real(&t),
                spelled: t.clone(),
                is_dir: true,
                key: "init.templateDir",
            });
        }
        for cmd in &r.programs {
            for p in program_paths(cmd, home) {
                push(Target {
                    path: real(&p),
                    spelled: p.clone(),
                    is_dir: false,
                    key: "a program git config names",
                });
            }
        }
        for inc in r.includes {
            let Some(p) = expand(&inc, home, dir.as_deref()) else {
                continue;
            };
            let spelled = p;
            let p = real(&spelled);
            push(Target {
                path: p.clone(),
                spelled,
                is_dir: false,
                key: "include.path",
            });
            if depth < MAX_INCLUDE_DEPTH {
                queue.push((p, depth + 1));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_expansion() {
        let r = config_refs(
            "[core]\n\thooksPath = \"~/h ooks\" # c\n[include]\n\tpath = ../conf/git.cfg ; x\n\
             [includeIf \"gitdir:~/\"]\n\tpath = ~/x.cfg\n[init]\n\ttemplateDir = /t\n",
        );
        assert_eq!(r.hooks_path.as_deref(), Some("~/h ooks"));
        assert_eq!(r.includes, vec!["../conf/git.cfg", "~/x.cfg"]);
        assert_eq!(r.template_dir.as_deref(), Some("/t"));
        let h = Path::new("/home/u");
        assert_eq!(
            expand("~/gws2/myhooks", h, None),
            Some(PathBuf::from("/home/u/gws2/myhooks"))
        );
        assert_eq!(
            expand("../conf/git.cfg", h, Some(Path::new("/w/.git"))),
            Some(PathBuf::from("/w/conf/git.cfg"))
        );
        assert_eq!(expand("~root/x", h, None), Some(PathBuf::from("/root/x")));
        assert_eq!(expand("~no-such-user-here/x", h, None), None);
        let r = config_refs(
            "[core]\n\tpager = ~/tools/pager.sh -R\n[alias]\n\tx = !/opt/x.sh a\n\ty = log\n\
             [credential \"https://h\"]\n\thelper = /usr/local/bin/cred --x\n",
        );
        assert_eq!(
            r.programs,
            vec![
                "~/tools/pager.sh -R",
                "/opt/x.sh a",
                "/usr/local/bin/cred --x"
            ]
        );
        assert_eq!(
            program_paths(&r.programs[0], h),
            vec![PathBuf::from("/home/u/tools/pager.sh")]
        );
        assert_eq!(expand("rel", h, None), None);
    }
}
