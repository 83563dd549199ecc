//! Paths as the sandbox will see them: symlink chains of the roots bound into the private
//! `$HOME` (so `~/.local/bin/claude -> ~/.local/share/claude/versions/X` is recreated inside,
//! never on the host), the install directory of a resolved agent command, and command
//! resolution that knows which files the view hides (so a hidden command fails before launch
//! with a message naming the policy, not as a setup error).
//!
//! Everything here runs in the supervisor on the host before the sandbox exists, on paths
//! the user (not the agent) chose: the command line and the policy.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// The result of following a path through its symlinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The path with every symlink resolved (what a bind mount must name).
    pub target: PathBuf,
    /// Each symlink met on the way: (its own path, free of symlinks; its content).
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// Follows `path` (absolute) component by component, recording each symlink. `None` when a
/// component is missing, a loop is met (more than 40 links), or the path is relative.
pub fn chain(path: &Path) -> Option<Chain> {
    Resolver::default().chain(path)
}

/// [`chain`] for many paths at once: each component's `lstat` (and link) is read once, and
/// paths share most of theirs (`/home/u/.config/...`). A plan's paths are followed by one
/// resolver.
#[derive(Default)]
pub struct Resolver {
    /// Per path (its bytes: `Path`'s own hash parses components, and a plan makes ~1,000
    /// lookups): `None` missing, else what `lstat` saw.
    seen: std::collections::HashMap<OsString, Option<Entry>>,
}

/// What the resolver's `lstat` of one path saw.
#[derive(Debug, Clone)]
enum Entry {
    /// A symlink, and its content.
    Link(PathBuf),
    /// Anything else.
    Node(Stat),
}

/// What [`Resolver::stat`] reports (as `std::fs::metadata`, symlinks followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub is_dir: bool,
    /// `st_mode`.
    pub mode: u32,
}

impl Stat {
    fn of(md: &std::fs::Metadata) -> Stat {
        use std::os::unix::fs::MetadataExt;
        Stat {
            dev: md.dev(),
            ino: md.ino(),
            is_dir: md.is_dir(),
            mode: md.mode(),
        }
    }
}

impl Resolver {
    fn lookup(&mut self, p: &Path) -> Option<Entry> {
        if let Some(e) = self.seen.get(p.as_os_str()) {
            return e.clone();
        }
        let e = match std::fs::symlink_metadata(p) {
            Ok(md) if md.file_type().is_symlink() => std::fs::read_link(p).ok().map(Entry::Link),
            Ok(md) => Some(Entry::Node(Stat::of(&md))),
            Err(_) => None,
        };
        self.seen.insert(p.as_os_str().to_os_string(), e.clone());
        e
    }

    fn step(&mut self, p: &Path) -> Option<Option<PathBuf>> {
        match self.lookup(p)? {
            Entry::Link(t) => Some(Some(t)),
            Entry::Node(..) => Some(None),
        }
    }

    /// `std::fs::metadata(p)` (symlinks followed), through this resolver's memory when `p`
    /// itself was seen as no symlink (a resolved [`Chain::target`] is one).
    pub fn stat(&mut self, p: &Path) -> Option<Stat> {
        match self.lookup(p)? {
            Entry::Node(s) => Some(s),
            Entry::Link(_) => std::fs::metadata(p).ok().map(|md| Stat::of(&md)),
        }
    }

    /// Whether `p` exists (its own entry, not followed), through this resolver's memory.
    pub fn exists(&mut self, p: &Path) -> bool {
        self.step(p).is_some()
    }

    /// [`chain`], through this resolver's memory.
    pub fn chain(&mut self, path: &Path) -> Option<Chain> {
        self.walk(path, false)
    }

    /// [`chain`] for a path that may not exist (yet): from the first missing component on,
    /// the rest is taken as spelled. `target` is where the path would land if created now,
    /// and `links` every symlink met before that (a dangling one included). `None` only for a
    /// relative path or a loop.
    pub fn chain_lenient(&mut self, path: &Path) -> Option<Chain> {
        self.walk(path, true)
    }

    fn walk(&mut self, path: &Path, lenient: bool) -> Option<Chain> {
        if !path.is_absolute() {
            return None;
        }
        let mut queue: VecDeque<OsString> = VecDeque::new();
        push_front(&mut queue, path);
        let mut cur = PathBuf::from("/");
        let mut links = Vec::new();
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            if c == "." || c.is_empty() {
                continue;
            }
            cur.push(&c);
            let Some(step) = self.step(&cur) else {
                if !lenient {
                    return None;
                }
                // Missing: the rest as spelled (`..` still pops lexically).
                while let Some(c) = queue.pop_front() {
                    if c == ".." {
                        cur.pop();
                    } else if !(c == "." || c.is_empty()) {
                        cur.push(c);
                    }
                }
                break;
            };
            if let Some(t) = step {
                if links.len() >= 40 {
                    return None;
                }
                links.push((cur.clone(), t.clone()));
                if t.is_absolute() {
                    cur = PathBuf::from("/");
                } else {
                    cur.pop();
                }
                push_front(&mut queue, &t);
            }
        }
        Some(Chain { target: cur, links })
    }
}

fn push_front(q: &mut VecDeque<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    for part in parts.into_iter().rev() {
        q.push_front(part);
    }
}

/// The directory to show read-only for an agent whose command resolved to `real` (no
/// symlinks left), when it lies in `$HOME` (which the sandbox replaces):
/// - inside a `node_modules` tree (npm global prefix such as `~/.npm-global` or
///   `~/.nvm/versions/node/*/lib`, or a project's `node_modules`): the outermost
///   `node_modules`, so hoisted dependencies and sibling platform packages resolve;
/// - otherwise the file's directory (native installer: `~/.local/share/claude/versions`).
///
/// Never `$HOME` itself or anything above it.
pub fn install_dir(real: &Path, home: &Path) -> Option<PathBuf> {
    if !real.starts_with(home) {
        return None;
    }
    let mut outer_nm = None;
    let mut acc = PathBuf::new();
    for c in real.components() {
        acc.push(c);
        if c.as_os_str() == "node_modules" && acc != real {
            outer_nm = Some(acc.clone());
            break;
        }
    }
    let dir = outer_nm.or_else(|| real.parent().map(Path::to_path_buf))?;
    (dir.starts_with(home) && dir != home).then_some(dir)
}

/// Why a command cannot start in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// Not on the host either.
    NotFound { cmd: String, path_var: String },
    /// Exists on the host but the sandbox's view does not show it: `root` is the private
    /// tree (`$HOME`, `/tmp`, ...) that covers it, when one does.
    Hidden {
        cmd: String,
        path: PathBuf,
        root: Option<PathBuf>,
    },
}

impl std::fmt::Display for CommandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandError::NotFound { cmd, path_var } => {
                if cmd.contains('/') {
                    write!(f, "{cmd}: no such file")
                } else {
                    write!(f, "{cmd}: command not found (PATH={path_var})")
                }
            }
            CommandError::Hidden { cmd, path, root } => {
                write!(
                    f,
                    "{cmd}: {} exists on this machine but is hidden inside the sandbox",
                    path.display()
                )?;
                match root {
                    Some(r) => write!(
                        f,
                        ": {} is a private, empty directory there, and no files.read, files.write, agent.install or agent.state entry shows this path",
                        r.display()
                    )?,
                    None => write!(f, ": no files.system or files.read entry covers it")?,
                }
                write!(
                    f,
                    ". To run it, add its directory to files.read in ~/.config/warden/policy.toml (`warden explain {}` names the rule), or copy it into the workspace",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for CommandError {}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `cmd` like a shell would inside the sandbox: through `PATH` (from `env`),
/// skipping candidates the view hides (`visible` decides, on the symlink-free path).
/// `visible(path, is_link)` says whether the view shows a symlink-free path; for a symlink
/// met on the way (`is_link`), whether the link itself exists there.
pub fn command(
    cmd: &str,
    env: &[(OsString, OsString)],
    visible: impl Fn(&Path, bool) -> bool,
) -> Result<PathBuf, CommandError> {
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/bin:/bin".into());
    let shown = |p: &Path| -> bool {
        match chain(p) {
            Some(c) => visible(&c.target, false) && c.links.iter().all(|(l, _)| visible(l, true)),
            None => false,
        }
    };
    if cmd.contains('/') {
        let p = PathBuf::from(cmd);
        let abs = if p.is_absolute() {
            p.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(&p))
                .unwrap_or(p.clone())
        };
        if !executable(&abs) {
            return Err(CommandError::NotFound {
                cmd: cmd.into(),
                path_var: path_var.to_string_lossy().into_owned(),
            });
        }
        if !shown(&abs) {
            return Err(CommandError::Hidden {
                cmd: cmd.into(),
                path: abs,
                root: None,
            });
        }
        return Ok(p);
    }
    let mut hidden = None;
    for dir in std::env::split_paths(&path_var) {
        if dir.as_os_str().is_empty() || !dir.is_absolute() {
            continue;
        }
        let c = dir.join(cmd);
        if !executable(&c) {
            continue;
        }
        if shown(&c) {
            return Ok(c);
        }
        hidden.get_or_insert(c);
    }
    Err(match hidden {
        Some(path) => CommandError::Hidden {
            cmd: cmd.into(),
            path,
            root: None,
        },
        None => CommandError::NotFound {
            cmd: cmd.into(),
            path_var: path_var.to_string_lossy().into_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warden-resolve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::canonicalize(d).unwrap()
    }

    #[test]
    fn chain_records_relative_and_absolute_links() {
        let d = tmp("chain");
        std::fs::create_dir_all(d.join("share/versions")).unwrap();
        std::fs::write(d.join("share/versions/1.0"), "x").unwrap();
        std::fs::create_dir_all(d.join("bin")).unwrap();
        std::os::unix::fs::symlink("../share/versions/1.0", d.join("bin/tool")).unwrap();
        std::os::unix::fs::symlink(d.join("bin"), d.join("linkbin")).unwrap();
        let c = chain(&d.join("linkbin/tool")).unwrap();
        assert_eq!(c.target, d.join("share/versions/1.0"));
        assert_eq!(c.links.len(), 2);
        assert_eq!(c.links[0].0, d.join("linkbin"));
        assert_eq!(c.links[1].0, d.join("bin/tool"));
        assert!(chain(&d.join("missing")).is_none());
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        assert!(chain(&d.join("loop")).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn lenient_chain_follows_dangling_links_and_spells_the_rest() {
        let d = tmp("lenient");
        std::fs::create_dir_all(d.join("real")).unwrap();
        std::os::unix::fs::symlink(d.join("absent/state"), d.join("ws-out")).unwrap();
        std::os::unix::fs::symlink("real", d.join("r")).unwrap();
        let mut r = Resolver::default();
        // A dangling link: where it points, and the link itself.
        let c = r.chain_lenient(&d.join("ws-out/bpf")).unwrap();
        assert_eq!(c.target, d.join("absent/state/bpf"));
        assert_eq!(c.links.len(), 1);
        assert_eq!(c.links[0].0, d.join("ws-out"));
        // Existing part resolved, missing rest spelled (with `..` popped lexically).
        let c = r.chain_lenient(&d.join("r/x/../y")).unwrap();
        assert_eq!(c.target, d.join("real/y"));
        assert!(r.chain(&d.join("r/x")).is_none());
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        assert!(r.chain_lenient(&d.join("loop/x")).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stat_agrees_with_metadata_through_the_resolvers_memory() {
        use std::os::unix::fs::MetadataExt;
        let d = tmp("stat");
        std::fs::create_dir_all(d.join("dir/sub")).unwrap();
        std::fs::write(d.join("dir/file"), b"x").unwrap();
        std::os::unix::fs::symlink("dir", d.join("link")).unwrap();
        std::os::unix::fs::symlink("absent", d.join("dangling")).unwrap();
        let mut r = Resolver::default();
        // Walked first (the plan's order), then asked: cache hits and fresh lookups alike.
        r.chain(&d.join("link/sub")).unwrap();
        for p in [
            "dir",
            "dir/sub",
            "dir/file",
            "link",
            "link/sub",
            "link/file",
            "dangling",
            "none",
        ] {
            let p = d.join(p);
            let want = std::fs::metadata(&p).ok().map(|m| Stat {
                dev: m.dev(),
                ino: m.ino(),
                is_dir: m.is_dir(),
                mode: m.mode(),
            });
            assert_eq!(r.stat(&p), want, "{}", p.display());
            // The symlink's own entry still reads as existing.
            assert_eq!(r.exists(&p), std::fs::symlink_metadata(&p).is_ok());
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn install_dir_layouts() {
        let h = Path::new("/home/u");
        assert_eq!(
            install_dir(Path::new("/home/u/.local/share/claude/versions/2.1.3"), h),
            Some(PathBuf::from("/home/u/.local/share/claude/versions"))
        );
        assert_eq!(
            install_dir(
                Path::new("/home/u/.npm-global/lib/node_modules/@a/b/bin/claude.exe"),
                h
            ),
            Some(PathBuf::from("/home/u/.npm-global/lib/node_modules"))
        );
        assert_eq!(install_dir(Path::new("/home/u/tool"), h), None);
        assert_eq!(install_dir(Path::new("/usr/bin/tool"), h), None);
    }

    #[test]
    fn command_skips_hidden_candidates() {
        let d = tmp("cmd");
        for sub in ["hidden", "shown"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            let p = d.join(sub).join("tool");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "{}:{}",
            d.join("hidden").display(),
            d.join("shown").display()
        );
        let env = vec![(OsString::from("PATH"), OsString::from(&path))];
        let vis = |p: &Path, _| !p.starts_with(d.join("hidden"));
        assert_eq!(command("tool", &env, vis).unwrap(), d.join("shown/tool"));
        let none = |_: &Path, _| false;
        assert!(matches!(
            command("tool", &env, none),
            Err(CommandError::Hidden { .. })
        ));
        assert!(matches!(
            command("no-such-tool-xyz", &env, vis),
            Err(CommandError::NotFound { .. })
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
