//! From an effective policy to a concrete sandbox plan: which trees are masked with a
//! private tmpfs, which real paths are bound back in (read-only or read-write), which
//! denied paths are hidden, which protected paths are locked read-only (with placeholders
//! when absent), the Landlock roots, the environment, and the limits.
//!
//! The agent's view of the file system:
//! - system roots (`files.system`): visible read-only (Landlock), with denied files inside
//!   them (`/etc/shadow`, ...) hidden by empty mounts;
//! - `$HOME`, `/tmp` and `/run` are private tmpfs mounts: credentials and other projects
//!   under them simply do not exist in the view, nor do sockets such as ssh-agent, D-Bus or
//!   docker.sock. Writes to the private `$HOME` and `/tmp` are discarded at exit; `/tmp` is
//!   the private TMPDIR;
//! - the workspace, the agent's state (`agent.state`), its install dirs (`agent.install`)
//!   and `files.read`/`files.write` are bound back into that view at their real paths;
//! - protected paths inside writable roots are read-only bind mounts;
//! - the run's effective policy for the gate sits read-only at
//!   `/run/warden-gate/policy.json` (its own tmpfs, remounted read-only; Landlock read).

use crate::probe::Features;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use warden_policy::{Anchors, Policy};

/// Trees replaced by a private tmpfs in the sandbox (shared with the gate's file rules).
pub const MASKED_TREES: &[&str] = warden_policy::files::PRIVATE_TREES;

#[derive(Debug, Clone)]
pub struct Bind {
    pub path: PathBuf,
    pub writable: bool,
    pub is_dir: bool,
}

#[derive(Debug, Clone)]
pub struct Protect {
    pub path: PathBuf,
    pub is_dir: bool,
    /// Content shown in place of an absent file (its placeholder on the host is empty).
    pub placeholder_content: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub session_id: String,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub command: Vec<String>,
    pub masks: Vec<PathBuf>,
    pub binds: Vec<Bind>,
    pub hide: Vec<PathBuf>,
    pub protect: Vec<Protect>,
    /// Placeholders to create on the host before launch (dirs end with '/'), and remove after
    /// if still empty.
    pub placeholders: Vec<(PathBuf, bool)>,
    /// `.git` is absent: `.git/hooks` and `.git/config` are locked once `git init` creates them.
    pub git_watch: bool,
    pub landlock_read: Vec<PathBuf>,
    pub landlock_write: Vec<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub scrubbed: Vec<(String, String)>,
    pub pids_max: u32,
    pub nofile: u64,
    pub core_dumps: bool,
    pub net_isolated: bool,
    /// The run's effective policy for the gate (`warden hook` inside), placed read-only at
    /// [`warden_policy::session::GATE_FILE`]. Set with [`Plan::set_gate_policy`].
    pub gate_policy: Option<String>,
}

fn is_under_any(p: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| p.starts_with(r))
}

const FILE_NAMES: &[&str] = &[
    "config",
    ".bashrc",
    ".zshrc",
    ".profile",
    ".bash_profile",
    ".bash_login",
    ".zshenv",
    ".zprofile",
    ".envrc",
    ".netrc",
    ".git-credentials",
];

/// Whether a (possibly absent) protected entry names a file rather than a directory.
pub fn looks_like_file(entry: &str) -> bool {
    if entry.ends_with('/') {
        return false;
    }
    let name = entry.rsplit('/').next().unwrap_or(entry);
    FILE_NAMES.contains(&name) || name.trim_start_matches('.').contains('.')
}

pub struct PlanInput<'a> {
    pub policy: &'a Policy,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub command: Vec<String>,
    pub session_id: String,
    pub features: &'a Features,
    pub extra_env: Vec<(String, String)>,
    /// Extra read-only paths (the agent's detected install directory).
    pub extra_read: Vec<PathBuf>,
}

pub fn build(inp: PlanInput<'_>) -> Plan {
    let p = inp.policy;
    let anchors = Anchors {
        home: inp.home.clone(),
        workspace: inp.workspace.clone(),
    };
    let exp = |l: &[String]| -> Vec<PathBuf> {
        l.iter()
            .map(|x| anchors.expand(x.trim_end_matches('/')))
            .collect()
    };
    let system = exp(&p.files.system);
    let read = exp(&p.files.read);
    let write = exp(&p.files.write);
    let state = exp(&p.agent.state);
    // The agent's own state directories are created when missing, so they can be bound in
    // (and their protected settings locked) from the first run.
    for (entry, path) in p.agent.state.iter().zip(&state) {
        if !looks_like_file(entry) && !path.exists() {
            let _ = std::fs::create_dir_all(path);
        }
    }
    let mut install = exp(&p.agent.install);
    install.extend(inp.extra_read.iter().cloned());
    let deny = exp(&p.files.deny);
    // Masked trees: home plus the fixed list; outermost first.
    let mut masks: Vec<PathBuf> = MASKED_TREES.iter().map(PathBuf::from).collect();
    masks.push(inp.home.clone());
    masks.sort_by_key(|m| m.components().count());
    masks.dedup();
    // Roots that lie inside a masked tree are bound back in.
    let mut binds: Vec<Bind> = Vec::new();
    let mut add_bind = |path: &Path, writable: bool| {
        if !is_under_any(path, &masks) {
            return;
        }
        if is_under_any(path, &deny) {
            return;
        }
        let Ok(md) = std::fs::metadata(path) else {
            return;
        };
        if let Some(b) = binds.iter_mut().find(|b| b.path == path) {
            b.writable |= writable;
            return;
        }
        binds.push(Bind {
            path: path.to_path_buf(),
            writable,
            is_dir: md.is_dir(),
        });
    };
    add_bind(&inp.workspace, true);
    for s in &state {
        add_bind(s, true);
    }
    for w in &write {
        add_bind(w, true);
    }
    for r in read.iter().chain(install.iter()).chain(system.iter()) {
        add_bind(r, false);
    }
    binds.sort_by_key(|b| b.path.components().count());
    // Denied paths that would still be visible: inside a visible root (system roots, binds).
    let visible_roots: Vec<PathBuf> = system
        .iter()
        .filter(|s| !is_under_any(s, &masks))
        .cloned()
        .chain(binds.iter().map(|b| b.path.clone()))
        .chain(std::iter::once(inp.workspace.clone()))
        .collect();
    let hide: Vec<PathBuf> = deny
        .iter()
        .filter(|d| is_under_any(d, &visible_roots) && std::fs::symlink_metadata(d).is_ok())
        .cloned()
        .collect();
    // Protected paths inside writable real roots. (The private $HOME and /tmp are discarded
    // at exit, so entries there need no lock.)
    let writable_real: Vec<PathBuf> = std::iter::once(inp.workspace.clone())
        .chain(state.iter().cloned())
        .chain(write.iter().cloned())
        .collect();
    let mut protect = Vec::new();
    let mut placeholders = Vec::new();
    let mut git_watch = false;
    let git_dir = inp.workspace.join(".git");
    for entry in &p.files.protect {
        let path = anchors.expand(entry.trim_end_matches('/'));
        if !is_under_any(&path, &writable_real) {
            continue;
        }
        let in_git = path.starts_with(&git_dir) && path != git_dir;
        let exists = std::fs::symlink_metadata(&path).is_ok();
        if in_git && !git_dir.is_dir() {
            // `git init` must still work: lock these once they appear (see Plan::git_watch).
            git_watch = true;
            continue;
        }
        let is_dir = if exists {
            path.is_dir()
        } else {
            !looks_like_file(entry)
        };
        let content = if !exists && !is_dir {
            Some(if entry.ends_with(".json") { "{}\n" } else { "" })
        } else {
            None
        };
        if !exists {
            placeholders.push((path.clone(), is_dir));
        }
        protect.push(Protect {
            path,
            is_dir,
            placeholder_content: content,
        });
    }
    protect.sort_by_key(|x| x.path.components().count());
    // Landlock roots.
    let mut landlock_read: Vec<PathBuf> = system.clone();
    landlock_read.extend(read.iter().cloned());
    landlock_read.extend(install.iter().cloned());
    let mut landlock_write: Vec<PathBuf> = vec![
        inp.workspace.clone(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
        inp.home.clone(),
    ];
    landlock_write.extend(state.iter().cloned());
    landlock_write.extend(write.iter().cloned());
    // Environment.
    let mut env = Vec::new();
    let mut scrubbed = Vec::new();
    for (k, v) in std::env::vars_os() {
        let name = k.to_string_lossy().into_owned();
        if let Some(glob) = p.env.scrubbed_by(&name) {
            scrubbed.push((name, glob.to_string()));
            continue;
        }
        if name.starts_with("WARDEN_") || name == "TMPDIR" {
            continue;
        }
        env.push((k, v));
    }
    let mut set = |k: &str, v: &str| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    };
    set("TMPDIR", "/tmp");
    set("WARDEN_SANDBOX", "1");
    set("WARDEN_SESSION_ID", &inp.session_id);
    for (k, v) in &p.env.set {
        set(k, v);
    }
    for (k, v) in &inp.extra_env {
        set(k, v);
    }
    Plan {
        session_id: inp.session_id,
        workspace: inp.workspace,
        home: inp.home,
        command: inp.command,
        masks,
        binds,
        hide,
        protect,
        placeholders,
        git_watch,
        landlock_read,
        landlock_write,
        env,
        scrubbed,
        pids_max: p.process.pids_max.unwrap_or(4096),
        nofile: p.process.nofile.unwrap_or(65536),
        core_dumps: p.process.core_dumps.unwrap_or(false),
        net_isolated: inp.features.user_namespaces,
        gate_policy: None,
    }
}

impl Plan {
    /// Hands the gate inside the sandbox the run's effective policy (serialised
    /// [`warden_policy::session::SessionPolicy`]): a read-only file under the private `/run`,
    /// readable (never writable) through Landlock.
    pub fn set_gate_policy(&mut self, json: String) {
        self.gate_policy = Some(json);
        let dir = PathBuf::from(warden_policy::session::GATE_DIR);
        if !self.landlock_read.contains(&dir) {
            self.landlock_read.push(dir);
        }
    }

    /// Human-readable summary (`warden run --dry-run`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        use std::fmt::Write;
        let _ = writeln!(s, "session   {}", self.session_id);
        let _ = writeln!(s, "workspace {} (read-write)", self.workspace.display());
        let _ = writeln!(s, "command   {}", self.command.join(" "));
        let _ = writeln!(
            s,
            "private tmpfs: {}",
            self.masks
                .iter()
                .map(|m| m.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for b in &self.binds {
            let _ = writeln!(
                s,
                "bind {} {}",
                if b.writable { "rw" } else { "ro" },
                b.path.display()
            );
        }
        for h in &self.hide {
            let _ = writeln!(s, "hide {}", h.display());
        }
        for p in &self.protect {
            let _ = writeln!(s, "protect (read-only) {}", p.path.display());
        }
        if self.git_watch {
            let _ = writeln!(
                s,
                "protect .git/hooks and .git/config once `git init` creates them"
            );
        }
        if self.gate_policy.is_some() {
            let _ = writeln!(
                s,
                "gate policy {} (read-only)",
                warden_policy::session::GATE_FILE
            );
        }
        for (k, g) in &self.scrubbed {
            let _ = writeln!(s, "env scrubbed {k} (matches {g})");
        }
        let _ = writeln!(
            s,
            "pids.max {}; nofile {}; core dumps {}",
            self.pids_max, self.nofile, self.core_dumps
        );
        let _ = writeln!(
            s,
            "network {}",
            if self.net_isolated {
                "own namespace (loopback only)"
            } else {
                "host (NOT isolated)"
            }
        );
        s
    }
}
