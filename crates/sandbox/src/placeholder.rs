//! Placeholders for absent protected paths: created on the host before the session (so the
//! sandbox can lock them read-only), removed after it if still empty, and swept by a later
//! run when the supervisor died before cleaning up (a JSON manifest in warden's state dir).
//!
//! All of it runs on the host with the user's full authority on paths the agent could have
//! replaced, so every operation goes through [`crate::fsat`]: the writable root (workspace,
//! agent state dir, `files.write` root) is opened once, each component is created/opened
//! beneath it with symlinks refused, and removal is `unlinkat` on a verified parent fd.

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
pub fn make(plan: &Plan) -> Result<Vec<Placeholder>, PlaceholderError> {
    let roots = writable_roots(plan);
    let mut made = Vec::new();
    for (p, is_dir) in &plan.placeholders {
        let Some(root) = roots.iter().find(|r| p.starts_with(r) && p != *r) else {
            continue;
        };
        let rel = p.strip_prefix(root).unwrap_or(p).to_path_buf();
        let refuse = |source: std::io::Error| PlaceholderError::Refused {
            path: p.clone(),
            source,
        };
        let rootfd = fsat::open_root(root).map_err(|source| PlaceholderError::Root {
            root: root.clone(),
            source,
        })?;
        let dev = fsat::fstat(rootfd.as_fd()).map_err(refuse)?.st_dev;
        let (parent_rel, name) = if *is_dir {
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

#[derive(Serialize, Deserialize)]
struct Manifest {
    pid: i32,
    made: Vec<Placeholder>,
}

/// Records a session's placeholders (and the supervisor's pid) so that a later run can
/// remove them if this supervisor is killed before it cleans up.
pub fn write_manifest(path: &Path, made: &[Placeholder]) {
    if made.is_empty() {
        return;
    }
    let m = Manifest {
        pid: std::process::id() as i32,
        made: made.to_vec(),
    };
    let Ok(text) = serde_json::to_string(&m) else {
        return;
    };
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(path, text);
}

/// Removes (still empty) placeholders left by sessions whose supervisor is gone. A manifest
/// that does not parse (e.g. an older format) is dropped without touching any path.
pub fn sweep_stale(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Ok(m) = serde_json::from_str::<Manifest>(&text) {
            // SAFETY: signal 0 only checks for existence.
            if m.pid > 0 && unsafe { libc::kill(m.pid, 0) } == 0 {
                continue;
            }
            remove(&m.made);
        } else if let Some(pid) = text.lines().next().and_then(|l| l.parse::<i32>().ok()) {
            // SAFETY: as above.
            if pid > 0 && unsafe { libc::kill(pid, 0) } == 0 {
                continue;
            }
        }
        let _ = std::fs::remove_file(e.path());
    }
}
