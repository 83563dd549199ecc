//! Placeholders for absent protected paths: created on the host before the session (so the
//! sandbox can lock them read-only), removed after it if still empty, and swept by a later
//! run when the supervisor died before cleaning up (a JSON manifest in warden's state dir).
//!
//! All of it runs on the host with the user's full authority on paths the agent could have
//! replaced, so every operation goes through [`crate::fsat`]: the writable root (workspace,
//! agent state dir, `files.write` root) is opened once, each component is created/opened
//! beneath it with symlinks refused, and removal is `unlinkat` on a verified parent fd.
//!
//! Sessions share placeholders. A second session on the same workspace finds the first
//! one's placeholder and locks it (a mount point in its own namespace); if the first session
//! then removed it at exit, the second one's lock would go with it (unlinking a mount point
//! of another namespace detaches that mount) and its agent could create `.envrc` on the
//! host. So every session records in its manifest what it *uses* (every protected path it
//! locks) as well as what it *made*, all under one lock file ([`begin`], [`end`]): a
//! placeholder is removed only when no live session uses it; one still in use stays in an
//! orphan manifest that a later [`begin`] or [`end`] sweeps.

use crate::fsat;
use crate::plan::Plan;
use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// One placeholder (or a missing parent directory made for it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Placeholder {
    /// The writable root it lives in (opened by path: the agent cannot rename it).
    pub root: PathBuf,
    /// Relative to `root`.
    pub rel: PathBuf,
    pub is_dir: bool,
}

impl Placeholder {
    pub fn path(&self) -> PathBuf {
        self.root.join(&self.rel)
    }
}

/// The real writable roots a placeholder may live in (innermost match wins). `$HOME`,
/// `/tmp` and `/var/tmp` are private trees inside (discarded at exit), except when one of
/// them is itself a real writable root: the workspace (`cd /var/tmp && warden run`, or
/// `$HOME` with `--allow-broad-workspace`) or a `files.write` entry. Leaving such a root out
/// left every protected path under it (`.envrc`, `.git/hooks`, `~/.bashrc`,
/// `~/.config/warden`) unlocked on the host.
pub(crate) fn writable_roots(plan: &Plan) -> Vec<PathBuf> {
    let private = [
        plan.home.clone(),
        PathBuf::from("/tmp"),
        PathBuf::from("/var/tmp"),
    ];
    let mut r: Vec<PathBuf> = plan
        .landlock_write
        .iter()
        .filter(|p| !private.contains(p) || plan.writable_roots.contains(p))
        .cloned()
        .collect();
    r.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    r
}

/// Why a placeholder could not be made (the session does not start).
#[derive(Debug, thiserror::Error)]
pub enum PlaceholderError {
    /// The writable root itself could not be opened.
    #[error("{}: {source}", root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A component on the way is a symlink or not a directory (or another error there).
    #[error("placeholder {}: {source}; warden refuses to follow a symlink or a non-directory there (replace it with a real directory, or remove it)", path.display())]
    Refused {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates absent protected paths on the host so they can be locked; returns what was made
/// (outermost first). Fails (and the session does not start) when a component on the way is
/// a symlink or not a directory: a protected path must not resolve outside its root.
///
/// Every protected path is looked at, not only those absent when the plan was made: one
/// that another session's placeholder provided then may have been removed since.
pub fn make(plan: &Plan) -> Result<Vec<Placeholder>, PlaceholderError> {
    let roots = writable_roots(plan);
    let mut made = Vec::new();
    let wanted = plan
        .placeholders
        .iter()
        .map(|(p, d)| (p, *d))
        .chain(plan.protect.iter().map(|x| (&x.path, x.is_dir)));
    for (p, is_dir) in wanted {
        if std::fs::symlink_metadata(p).is_ok() {
            continue; // there already (the guard refuses a symlink or a wrong type there)
        }
        let Some(root) = roots.iter().find(|r| p.starts_with(r) && p != *r) else {
            continue;
        };
        let rel = p.strip_prefix(root).unwrap_or(p).to_path_buf();
        let refuse = |source: std::io::Error| PlaceholderError::Refused {
            path: p.clone(),
            source,
        };
        let rootfd = fsat::open_root_as(root, plan.root_id(root)).map_err(|source| {
            PlaceholderError::Root {
                root: root.clone(),
                source,
            }
        })?;
        let dev = fsat::fstat(rootfd.as_fd()).map_err(refuse)?.st_dev;
        let (parent_rel, name) = if is_dir {
            (rel.clone(), None)
        } else {
            match (rel.parent(), rel.file_name()) {
                (Some(d), Some(n)) => (d.to_path_buf(), Some(n.to_os_string())),
                _ => continue,
            }
        };
        let (dir, dirs) =
            fsat::mkdir_all(rootfd.as_fd(), &parent_rel, Some(dev)).map_err(refuse)?;
        for d in dirs {
            made.push(Placeholder {
                root: root.clone(),
                rel: d,
                is_dir: true,
            });
        }
        if let Some(n) = name {
            if fsat::create_file(dir.as_fd(), &n).map_err(refuse)? {
                made.push(Placeholder {
                    root: root.clone(),
                    rel,
                    is_dir: false,
                });
            }
        }
    }
    Ok(made)
}

/// Removes placeholders that are still empty (innermost first), never following a symlink.
pub fn remove(made: &[Placeholder]) {
    for p in made.iter().rev() {
        let _ = remove_one(p);
    }
}

fn remove_one(p: &Placeholder) -> std::io::Result<()> {
    let root = fsat::open_root(&p.root)?;
    let dev = fsat::fstat(root.as_fd())?.st_dev;
    let rel = fsat::relative(&p.rel)?;
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(());
    };
    let dir = fsat::open_dir(root.as_fd(), parent, true, Some(dev))?;
    let st = fsat::lstat_at(dir.as_fd(), name)?;
    if st.st_dev != dev {
        return Ok(());
    }
    if fsat::is_dir(&st) {
        fsat::unlink_at(dir.as_fd(), name, true)
    } else if fsat::is_reg(&st) && st.st_size == 0 {
        fsat::unlink_at(dir.as_fd(), name, false)
    } else {
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Default)]
struct Manifest {
    /// The supervisor's pid; 0 for an orphan manifest (placeholders a finished session left
    /// because another session still used them).
    pid: i32,
    made: Vec<Placeholder>,
    /// Every protected path the session locks (made by it or found), as host paths.
    #[serde(default)]
    uses: Vec<PathBuf>,
    /// The session's writable roots: no placeholder below one is removed while it runs (its
    /// guard also locks paths no plan lists: a nested repository's hooks, `hooksPath` and
    /// include targets, and a session on `ws` contains the one on `ws/sub`).
    #[serde(default)]
    roots: Vec<PathBuf>,
}

/// The paths a session mounts over in a writable root (locked protected paths, hidden
/// denied ones, binds, views): what no other session may remove while it runs. A denied
/// `~/.ssh` that another session's placeholder made exist is hidden here, not locked, and
/// must stay just the same.
fn uses(plan: &Plan) -> Vec<PathBuf> {
    let roots = writable_roots(plan);
    let mut out: Vec<PathBuf> = plan
        .protect
        .iter()
        .map(|x| &x.path)
        .chain(&plan.hide)
        .chain(plan.binds.iter().map(|b| &b.path))
        .chain(plan.views.iter().map(|v| &v.path))
        .filter(|p| roots.iter().any(|r| p.starts_with(r) && *p != r))
        .cloned()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The manifests' lock: held while placeholders are made, recorded and removed.
fn lock(dir: &Path) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".lock"))?;
    f.lock()?;
    Ok(f)
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// Every manifest in `dir` (but `skip`) that parses; others are dropped without touching a
/// path.
fn manifests(dir: &Path, skip: &Path) -> Vec<(PathBuf, Manifest)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let path = e.path();
        if path == skip || path.extension().is_none_or(|x| x != "list") {
            continue;
        }
        let parsed = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Manifest>(&t).ok());
        match parsed {
            Some(m) => out.push((path, m)),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

fn write(path: &Path, m: &Manifest) {
    if let Ok(text) = serde_json::to_string(m) {
        let _ = std::fs::write(path, text);
    }
}

/// Removes `made` (innermost first) except what a live session uses (the path itself or
/// something below it) or holds in one of its writable roots; returns what stays.
fn remove_unused(made: &[Placeholder], live: &Live) -> Vec<Placeholder> {
    let mut kept = Vec::new();
    for p in made.iter().rev() {
        let path = p.path();
        if live.uses.iter().any(|u| u.starts_with(&path))
            || live.roots.iter().any(|r| path.starts_with(r))
        {
            kept.push(p.clone());
        } else {
            let _ = remove_one(p);
        }
    }
    kept.reverse();
    kept
}

/// Under the lock: removes the placeholders of dead sessions that no live one uses; a
/// dead manifest that keeps some becomes an orphan, one that keeps none is deleted.
fn sweep(dir: &Path, me: &Path) {
    let all = manifests(dir, me);
    let used = live_uses(&all);
    for (path, m) in all.iter().filter(|(_, m)| !alive(m.pid)) {
        let kept = remove_unused(&m.made, &used);
        if kept.len() != m.made.len() || m.pid != 0 {
            leave(path, kept);
        }
    }
}

/// What live sessions hold: the paths they use and their writable roots.
struct Live {
    uses: Vec<PathBuf>,
    roots: Vec<PathBuf>,
}

fn live_uses(all: &[(PathBuf, Manifest)]) -> Live {
    let live = || all.iter().filter(|(_, m)| alive(m.pid));
    Live {
        uses: live().flat_map(|(_, m)| m.uses.iter().cloned()).collect(),
        roots: live().flat_map(|(_, m)| m.roots.iter().cloned()).collect(),
    }
}

/// Leaves `kept` to a later sweep in an orphan manifest at `path` (pid 0), or deletes the
/// manifest when nothing is left.
fn leave(path: &Path, kept: Vec<Placeholder>) {
    if kept.is_empty() {
        let _ = std::fs::remove_file(path);
    } else {
        write(
            path,
            &Manifest {
                pid: 0,
                made: kept,
                uses: Vec::new(),
                roots: Vec::new(),
            },
        );
    }
}

/// Before a session's plan: sweeps what dead sessions left (a killed supervisor's
/// placeholders), under the lock, so the plan does not take them for the user's files (and
/// the integrity report for changes of this session's agent). [`begin`] sweeps again.
pub fn sweep_dead(dir: &Path, manifest: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(_lock) = lock(dir) {
        sweep(dir, manifest);
    }
}

/// Session start: sweeps what dead sessions left, makes this session's placeholders and
/// records them with every path it uses in `manifest` (a `.list` file in `dir`), all under
/// the lock, so a session ending at the same time cannot remove a placeholder this one is
/// about to lock. Without a usable state dir the session does not start.
pub fn begin(dir: &Path, manifest: &Path, plan: &Plan) -> Result<Vec<Placeholder>, BeginError> {
    let _lock = lock(dir).map_err(|source| BeginError::State {
        dir: dir.to_path_buf(),
        source,
    })?;
    sweep(dir, manifest);
    let made = make(plan)?;
    let uses = uses(plan);
    let roots = writable_roots(plan);
    if !made.is_empty() || !uses.is_empty() || !roots.is_empty() {
        let m = Manifest {
            pid: std::process::id() as i32,
            made: made.clone(),
            uses,
            roots,
        };
        let text = serde_json::to_string(&m).map_err(|e| BeginError::State {
            dir: dir.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
        if let Err(source) = std::fs::write(manifest, text) {
            remove(&made);
            return Err(BeginError::State {
                dir: dir.to_path_buf(),
                source,
            });
        }
    }
    Ok(made)
}

/// Session end (nothing of the sandbox runs any more): removes this session's placeholders
/// that no live session uses, leaves the rest in an orphan manifest, sweeps dead sessions'.
pub fn end(dir: &Path, manifest: &Path, made: &[Placeholder]) {
    let Ok(_lock) = lock(dir) else {
        // No lock, no knowledge of other sessions: leave everything for a later sweep.
        leave(manifest, made.to_vec());
        return;
    };
    let used = live_uses(&manifests(dir, manifest));
    leave(manifest, remove_unused(made, &used));
    sweep(dir, manifest);
}

/// Supervisor pids of the other live sessions (their manifests in `dir`, all but
/// `manifest`) with a writable root that contains `workspace` or lies inside it: sessions
/// whose agents could write in it while this one ran. Read without the lock (a report, not
/// a decision about any path).
pub fn sharing(dir: &Path, manifest: &Path, workspace: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = manifests(dir, manifest)
        .into_iter()
        .filter(|(_, m)| alive(m.pid) && m.pid != std::process::id() as i32)
        .filter(|(_, m)| {
            m.roots
                .iter()
                .any(|r| r.starts_with(workspace) || workspace.starts_with(r))
        })
        .map(|(_, m)| m.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Why a session's placeholders could not be set up (the session does not start).
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    #[error("warden's placeholder records in {}: {source}", dir.display())]
    State {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Make(#[from] PlaceholderError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharing_names_live_sessions_whose_roots_overlap_the_workspace() {
        let dir = std::env::temp_dir().join(format!("warden-sharing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = child.id() as i32;
        let put = |name: &str, pid: i32, root: &str| {
            let m = Manifest {
                pid,
                roots: vec![PathBuf::from(root)],
                ..Default::default()
            };
            std::fs::write(dir.join(name), serde_json::to_string(&m).unwrap()).unwrap();
        };
        put("live.list", live, "/ws");
        // Dead (pid 0: an orphan manifest), and this session's own (skipped).
        put("dead.list", 0, "/ws");
        put("own.list", live, "/ws");
        let own = dir.join("own.list");
        assert_eq!(sharing(&dir, &own, Path::new("/ws")), vec![live]);
        assert_eq!(sharing(&dir, &own, Path::new("/ws/sub")), vec![live]);
        assert_eq!(sharing(&dir, &own, Path::new("/")), vec![live]);
        assert!(sharing(&dir, &own, Path::new("/wsx")).is_empty());
        std::fs::remove_file(dir.join("live.list")).unwrap();
        assert!(sharing(&dir, &own, Path::new("/ws")).is_empty());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
