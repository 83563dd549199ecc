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
//!
//! A supervisor killed while it makes them (SIGKILL, OOM) must not leave them in the user's
//! tree for good, and a sweep must never take the user's own empty file for one. So [`begin`]
//! records what it is about to make (`pending`, with a random token) before it makes
//! anything, and each placeholder appears already marked: made under a temporary name,
//! given the `user.warden.placeholder` xattr (the token), renamed into place without
//! replacing anything. A sweep of a dead session removes the pending paths (and directories
//! above them) that carry its token, and its temporary names; an unmarked file is the
//! user's. The agent cannot forge a mark: the sandbox refuses every xattr write.

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
    /// The token it was marked with as it was made ([`fsat::MARK`]); empty: unmarked (a
    /// file system without user xattrs, or a record from before marks). A marked one is
    /// removed only while it still carries this mark: what is at its path now may be the
    /// user's (removed and made again on the host while the session ran).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mark: String,
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
    #[error("placeholder {}: {source}{}", path.display(), refused_hint(source))]
    Refused {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The protected paths absent now that [`make`] will create, each in its writable root
/// (the innermost that holds it).
///
/// Every protected path is looked at, not only those absent when the plan was made: one
/// that another session's placeholder provided then may have been removed since.
fn absent(plan: &Plan) -> Vec<Placeholder> {
    let roots = writable_roots(plan);
    let wanted = plan
        .placeholders
        .iter()
        .map(|(p, d)| (p, *d))
        .chain(plan.protect.iter().map(|x| (&x.path, x.is_dir)));
    let mut out: Vec<Placeholder> = Vec::new();
    for (p, is_dir) in wanted {
        if std::fs::symlink_metadata(p).is_ok() {
            continue; // there already (the guard refuses a symlink or a wrong type there)
        }
        let Some(root) = roots.iter().find(|r| p.starts_with(r) && p != *r) else {
            continue;
        };
        let rel = p.strip_prefix(root).unwrap_or(p).to_path_buf();
        if rel.file_name().is_none() {
            continue;
        }
        let x = Placeholder {
            root: root.clone(),
            rel,
            is_dir,
            mark: String::new(),
        };
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// What to do about a placeholder that could not be made: the hint for a symlink or a
/// non-directory on the way (openat2's `ELOOP`/`EXDEV`/`ENOTDIR`, or the type check), none
/// for errors that say what they are (a name too long, a full disk, a read-only file system,
/// permissions, something put there while warden made it).
fn refused_hint(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind as K;
    // (By kind: `fsat::mkdir_all` adds the path to the message and keeps only the kind.)
    match e.kind() {
        K::InvalidFilename
        | K::StorageFull
        | K::ReadOnlyFilesystem
        | K::PermissionDenied
        | K::AlreadyExists
        | K::Other => "",
        _ => HINT,
    }
}

const HINT: &str = "; warden refuses to follow a symlink or a non-directory there (replace it with a real directory, or remove it)";

/// Creates the absent protected paths `wanted` ([`absent`]) on the host so they can be
/// locked, each marked with `token` as it appears ([`fsat::make_marked`]); appends what was
/// made to `made` (outermost first), also when it fails. Fails (and the session does not
/// start) when a component on the way is a symlink or not a directory: a protected path must
/// not resolve outside its root.
fn make(
    plan: &Plan,
    wanted: &[Placeholder],
    token: &str,
    made: &mut Vec<Placeholder>,
) -> Result<(), PlaceholderError> {
    // Each root opened once (a workspace has several placeholders).
    let mut opened: Vec<(&Path, std::os::fd::OwnedFd, u64)> = Vec::new();
    for w in wanted {
        let p = w.path();
        let refuse = |source: std::io::Error| PlaceholderError::Refused {
            path: p.clone(),
            source,
        };
        let i = match opened.iter().position(|(r, _, _)| *r == w.root) {
            Some(i) => i,
            None => {
                let fd = fsat::open_root_as(&w.root, plan.root_id(&w.root)).map_err(|source| {
                    PlaceholderError::Root {
                        root: w.root.clone(),
                        source,
                    }
                })?;
                let dev = fsat::fstat(fd.as_fd()).map_err(refuse)?.st_dev;
                opened.push((&w.root, fd, dev));
                opened.len() - 1
            }
        };
        let (_, rootfd, dev) = &opened[i];
        let (parent_rel, name) = if w.is_dir {
            (w.rel.clone(), None)
        } else {
            match (w.rel.parent(), w.rel.file_name()) {
                (Some(d), Some(n)) => (d.to_path_buf(), Some(n.to_os_string())),
                _ => continue,
            }
        };
        let (dir, dirs) = fsat::mkdir_all_marked(rootfd.as_fd(), &parent_rel, Some(*dev), token)
            .map_err(refuse)?;
        let mark = |marked: bool| {
            if marked {
                token.to_string()
            } else {
                String::new()
            }
        };
        for (d, marked) in dirs {
            made.push(Placeholder {
                root: w.root.clone(),
                rel: d,
                is_dir: true,
                mark: mark(marked),
            });
        }
        if let Some(n) = name {
            if let Some(marked) =
                fsat::make_marked(dir.as_fd(), &n, false, token).map_err(refuse)?
            {
                made.push(Placeholder {
                    mark: mark(marked),
                    ..w.clone()
                });
            }
        }
    }
    Ok(())
}

/// The placeholders a dead session was making ([`Manifest::pending`]) that it marked with
/// its token: each pending path and the directories above it in its root that carry the
/// mark, and any still under its temporary name ([`fsat::marked_temp`]), outermost first.
/// An unmarked one is the user's (made after the session died, or before it started), and
/// stays.
fn claim(pending: &[Placeholder], token: &str) -> Vec<Placeholder> {
    let mut out: Vec<Placeholder> = Vec::new();
    for p in pending {
        let Ok(root) = fsat::open_root(&p.root) else {
            continue;
        };
        let Ok(dev) = fsat::fstat(root.as_fd()).map(|s| s.st_dev) else {
            continue;
        };
        let Ok(rel) = fsat::relative(&p.rel) else {
            continue;
        };
        let mut parent = PathBuf::new();
        for c in rel.components() {
            let Ok(dir) = fsat::open_dir(root.as_fd(), &parent, true, Some(dev)) else {
                break;
            };
            let name = c.as_os_str();
            let tmp = fsat::marked_temp(name, token);
            for (n, ours) in [(&tmp, true), (&name.to_os_string(), false)] {
                let Ok(st) = fsat::lstat_at(dir.as_fd(), n) else {
                    continue;
                };
                let kind = fsat::is_dir(&st) || fsat::is_reg(&st);
                if st.st_dev == dev && kind && (ours || fsat::is_marked(dir.as_fd(), n, token)) {
                    let x = Placeholder {
                        root: p.root.clone(),
                        rel: parent.join(n),
                        is_dir: fsat::is_dir(&st),
                        // (A temporary name is ours by its name.)
                        mark: if ours {
                            String::new()
                        } else {
                            token.to_string()
                        },
                    };
                    if !out.contains(&x) {
                        out.push(x);
                    }
                }
            }
            parent.push(name);
        }
    }
    out
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
    if st.st_dev != dev || (!p.mark.is_empty() && !fsat::is_marked(dir.as_fd(), name, &p.mark)) {
        return Ok(());
    }
    if fsat::is_dir(&st) {
        // Freed after warden's exit (a discard per directory otherwise waits here).
        let held = fsat::open_dir(dir.as_fd(), Path::new(name), true, Some(dev));
        fsat::unlink_at(dir.as_fd(), name, true)?;
        if let Ok(fd) = held {
            crate::lateclose::keep(fd);
        }
        Ok(())
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
    /// What the session is about to make, recorded before it makes anything: a supervisor
    /// killed while making them (or later) leaves this record, and a sweep removes what
    /// carries `token`'s mark ([`claim`]). `made` is written only for what is unmarked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<Placeholder>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    token: String,
    /// Every protected path the session locks (made by it or found), as host paths.
    #[serde(default)]
    uses: Vec<PathBuf>,
    /// The session's writable roots: no placeholder below one is removed while it runs (its
    /// guard also locks paths no plan lists: a nested repository's hooks, `hooksPath` and
    /// include targets, and a session on `ws` contains the one on `ws/sub`).
    #[serde(default)]
    roots: Vec<PathBuf>,
    /// Host directories and files the session binds read-only: its exec guard maps files
    /// there without sealed copies when it finds no way for its agent to write them (see
    /// [`fixed`]). Another session must not make them writable while it runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fixed: Vec<PathBuf>,
    /// The supervisor's start time (`warden_sys::procfs::start_time`): a pid reused by another process is not
    /// the session. 0: not recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    started: u64,
    /// The session's workspace: what another session's end checks its own writable roots
    /// against before it records itself in [`Manifest::met`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspace: Option<PathBuf>,
    /// Supervisor pids of sessions that could write in this one's workspace and ended while
    /// it ran (each records itself at its end, [`note_met`]): this session's integrity
    /// report names them with the live ones ([`sharing`]). At most [`MET_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    met: Vec<i32>,
}

/// The most ended sessions one manifest records ([`Manifest::met`]).
const MET_MAX: usize = 64;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The paths a session mounts over in a writable root (locked protected paths, hidden
/// denied ones, binds, views): what no other session may remove while it runs. A denied
/// `~/.ssh` that another session's placeholder made exist is hidden here, not locked, and
/// must stay just the same.
/// The host paths a plan binds read-only below one of its writable or private trees (the
/// binds whose files its exec guard may vouch for: [`Manifest::fixed`]).
fn fixed(plan: &Plan) -> Vec<PathBuf> {
    let below = |p: &Path| {
        plan.landlock_write
            .iter()
            .chain(&plan.masks)
            .any(|r| p.starts_with(r) && p != r)
    };
    let mut out: Vec<PathBuf> = plan
        .binds
        .iter()
        .filter(|b| !b.writable && below(&b.path))
        .map(|b| b.source.clone().unwrap_or_else(|| b.path.clone()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Another live session, as its machine-wide record tells (see [`registry`]).
pub struct OtherSession {
    pub pid: i32,
    /// The uid owning its record.
    pub owner: u32,
    /// Its supervisor's start (`warden_sys::procfs::start_time`, clock ticks since boot).
    pub started: u64,
    /// Its host writable roots.
    pub roots: Vec<PathBuf>,
    /// What it binds read-only ([`Manifest::fixed`]).
    pub fixed: Vec<PathBuf>,
}

/// The other live sessions on this machine, of every user (their records in the registry).
pub fn other_sessions() -> Vec<OtherSession> {
    registry::others_owned()
        .into_iter()
        .map(|(owner, m)| OtherSession {
            pid: m.pid,
            owner,
            started: m.started,
            roots: m.roots,
            fixed: m.fixed,
        })
        .collect()
}

/// Whether this session has a place to record itself for the others (see [`registry`]).
pub fn recordable() -> bool {
    registry::recordable()
}

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

/// Whether the session that wrote `m` still runs (its supervisor, started when it did; a
/// process of another user counts: attack review 81 found a user's session taking root's for
/// dead).
fn alive(m: &Manifest) -> bool {
    m.pid > 0 && warden_sys::procfs::running(m.pid, m.started)
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
        if path.extension().is_some_and(|x| x == "tmp") {
            remove_stale_tmp(&path);
            continue;
        }
        if path == skip || path.extension().is_none_or(|x| x != "list") {
            continue;
        }
        match read_manifest(&path) {
            Some(m) => out.push((path, m)),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out
}

/// A manifest's temporary copy ([`write_atomic`]) a minute old or more: its writer was
/// killed between the write and the rename (which follow each other at once). A regular
/// file only (`symlink_metadata`: nothing followed); the directory is warden's own.
fn remove_stale_tmp(path: &Path) {
    let stale = std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.file_type().is_file()
            && m.modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= std::time::Duration::from_secs(60))
    });
    if stale {
        let _ = std::fs::remove_file(path);
    }
}

/// The manifest at `path`, if it reads and parses.
fn read_manifest(path: &Path) -> Option<Manifest> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
}

fn write(path: &Path, m: &Manifest) {
    if let Ok(text) = serde_json::to_string(m) {
        let _ = write_atomic(path, text.as_bytes());
    }
}

/// Writes a manifest whole or not at all (a temporary `.tmp` name beside it, then a
/// rename): a supervisor killed mid-write must not leave a torn record, which a sweep drops
/// unread, and with it the names of what it made.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// What this session's own manifest still names as pending and carries its mark (the
/// workspace guard's placeholders it recorded while running), added to `made`; outermost
/// first, so removal (innermost first) meets each directory after what it holds.
fn with_own_pending(manifest: &Path, made: &[Placeholder]) -> Vec<Placeholder> {
    let mut all = made.to_vec();
    if let Some(m) =
        read_manifest(manifest).filter(|m| !m.pending.is_empty() && !m.token.is_empty())
    {
        // (Those `begin` made are in `made` already: not walked again.)
        let rest: Vec<Placeholder> = m
            .pending
            .into_iter()
            .filter(|p| !made.iter().any(|x| x.root == p.root && x.rel == p.rel))
            .collect();
        if rest.is_empty() {
            return all;
        }
        for p in claim(&rest, &m.token) {
            if !all.contains(&p) {
                all.push(p);
            }
        }
        all.sort_by_key(|p| p.rel.components().count());
    }
    all
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
/// dead manifest that keeps some becomes an orphan, one that keeps none is deleted. Returns
/// one line per session whose supervisor died before its end (its agent's changes never had
/// an exit report).
fn sweep(dir: &Path, me: &Path) -> Vec<String> {
    let all = manifests(dir, me);
    let mut killed = Vec::new();
    let dead: Vec<_> = all.iter().filter(|(_, m)| !alive(m)).collect();
    if dead.is_empty() {
        return killed;
    }
    let used = live_uses(&all);
    for (path, m) in dead {
        if m.pid != 0 {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let roots: Vec<String> = m.roots.iter().map(|r| r.display().to_string()).collect();
            killed.push(format!(
                "session {id} (supervisor pid {}) ended without its exit report (killed?): what its agent changed in {} was never reviewed; look there for files host tools run (git status, hooks, Makefile, .envrc, agent settings) before running them",
                m.pid,
                if roots.is_empty() {
                    "its workspace".to_string()
                } else {
                    roots.join(", ")
                }
            ));
        }
        // A session killed while making its placeholders: what it marked (outermost first,
        // so before anything `made` holds below it).
        let mut made = if m.pending.is_empty() || m.token.is_empty() {
            Vec::new()
        } else {
            claim(&m.pending, &m.token)
        };
        for p in &m.made {
            if !made.contains(p) {
                made.push(p.clone());
            }
        }
        let kept = remove_unused(&made, &used);
        if kept.len() != m.made.len() || m.pid != 0 || !m.pending.is_empty() {
            leave(path, kept);
        }
    }
    killed
}

/// What live sessions hold: the paths they use and their writable roots.
struct Live {
    uses: Vec<PathBuf>,
    roots: Vec<PathBuf>,
}

fn live_uses(all: &[(PathBuf, Manifest)]) -> Live {
    let others = registry::others();
    let live = || {
        all.iter()
            .map(|(_, m)| m)
            .filter(|m| alive(m))
            .chain(&others)
    };
    Live {
        uses: live().flat_map(|m| m.uses.iter().cloned()).collect(),
        roots: live().flat_map(|m| m.roots.iter().cloned()).collect(),
    }
}

/// Live sessions of every `$HOME`: the manifests live in each user's state directory, so a
/// session with another `$HOME` on the same workspace (`sudo warden run` beside the user's
/// own) found none of this one's and removed the placeholders it still locked: its agent
/// then wrote `.envrc` and `.mcp.json` on the host (attack review 80, F5). Each session
/// also records what it uses and its writable roots in a machine-wide directory (`/run/
/// warden/live` for root, `$XDG_RUNTIME_DIR/warden/live` for a user), before it looks at or
/// makes a placeholder, and removes the record at its end; every removal and every
/// write-back reads them all. An agent cannot reach either directory (the sandbox's `/run`
/// is its own). A record whose pid is gone is ignored.
mod registry {
    use super::{alive, Manifest};
    use std::path::{Path, PathBuf};

    const ROOT: &str = "/run/warden/live";

    /// Where this process records its session. None in this crate's unit tests: they must
    /// not see (or add to) the sessions running on the machine.
    fn own_dir() -> Option<PathBuf> {
        if cfg!(test) {
            return None;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return Some(PathBuf::from(ROOT));
        }
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .map(|d| d.join("warden/live"))
            .or_else(|| {
                // No runtime directory (a user without a login session: `su`, `setpriv`,
                // a container): one of its own in /tmp, made private, or none when someone
                // else holds the name.
                // SAFETY: geteuid has no preconditions.
                let uid = unsafe { libc::geteuid() };
                let d = PathBuf::from(format!("{FALLBACK}{uid}"));
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new().mode(0o700).create(&d);
                own_fallback(&d, uid).then_some(d)
            })
    }

    /// Prefix of a user's records without a runtime directory (`/tmp/warden-live-UID`).
    const FALLBACK: &str = "/tmp/warden-live-";

    /// Whether `d` is a real directory owned by `uid`, writable by it alone.
    fn own_fallback(d: &Path, uid: u32) -> bool {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(d)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
    }

    /// Every directory of records: root's, every user's under `/run/user`, and this user's.
    fn dirs() -> Vec<PathBuf> {
        if cfg!(test) {
            return Vec::new();
        }
        let mut out = vec![PathBuf::from(ROOT)];
        if let Ok(rd) = std::fs::read_dir("/run/user") {
            out.extend(rd.flatten().map(|e| e.path().join("warden/live")));
        }
        // (A user without a runtime directory: its own, in /tmp; also read by its sessions
        // that have one: attack review 93.)
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        let fallback = PathBuf::from(format!("{FALLBACK}{uid}"));
        for d in own_dir()
            .into_iter()
            .chain(own_fallback(&fallback, uid).then_some(fallback))
        {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    fn own_file() -> Option<PathBuf> {
        own_dir().map(|d| d.join(format!("{}.json", std::process::id())))
    }

    /// Records this session (its uses and roots). Best effort: without a record, sessions
    /// of other `$HOME`s do not see this one, as before.
    pub(super) fn register(m: &Manifest) {
        let (Some(dir), Some(file)) = (own_dir(), own_file()) else {
            return;
        };
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir);
        let rec = Manifest {
            pid: m.pid,
            uses: m.uses.clone(),
            roots: m.roots.clone(),
            fixed: m.fixed.clone(),
            token: m.token.clone(),
            started: m.started,
            ..Default::default()
        };
        if let Ok(text) = serde_json::to_string(&rec) {
            let _ = super::write_atomic(&file, text.as_bytes());
        }
    }

    pub(super) fn unregister() {
        if let Some(f) = own_file() {
            let _ = std::fs::remove_file(f);
        }
    }

    /// The records of other live sessions (a dead session's in this process's own
    /// directory is removed: its supervisor was killed before its end).
    pub(super) fn others() -> Vec<Manifest> {
        others_owned().into_iter().map(|(_, m)| m).collect()
    }

    /// [`others`] with the uid owning each record.
    pub(super) fn others_owned() -> Vec<(u32, Manifest)> {
        let me = std::process::id() as i32;
        let own = own_dir();
        let mut out = Vec::new();
        for d in dirs() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_none_or(|x| x != "json") {
                    continue;
                }
                match read(&p) {
                    Some((uid, m)) if m.pid != me && alive(&m) => out.push((uid, m)),
                    Some((_, m)) if m.pid != me && own.as_ref() == Some(&d) => {
                        let _ = std::fs::remove_file(&p);
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// A record and the uid owning it: a regular file (no link followed, no FIFO waited
    /// on), at most 4 MiB.
    fn read(p: &Path) -> Option<(u32, Manifest)> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(p)
            .ok()?;
        let md = f.metadata().ok()?;
        if !md.is_file() {
            return None;
        }
        let mut buf = Vec::new();
        f.take(4 << 20).read_to_end(&mut buf).ok()?;
        serde_json::from_slice(&buf).ok().map(|m| (md.uid(), m))
    }

    /// Whether this session can be recorded (a directory of records of its own).
    pub(super) fn recordable() -> bool {
        own_dir().is_some()
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
                ..Default::default()
            },
        );
    }
}

/// Before a session's plan: sweeps what dead sessions left (a killed supervisor's
/// placeholders), under the lock, so the plan does not take them for the user's files (and
/// the integrity report for changes of this session's agent). [`begin`] sweeps again.
/// Returns a line for each session whose supervisor died before its end (see [`sweep`]).
pub fn sweep_dead(dir: &Path, manifest: &Path) -> Vec<String> {
    if !dir.is_dir() {
        return Vec::new();
    }
    match lock(dir) {
        Ok(_lock) => sweep(dir, manifest),
        Err(_) => Vec::new(),
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
    let _ = sweep(dir, manifest);
    let state = |source| BeginError::State {
        dir: dir.to_path_buf(),
        source,
    };
    let record = |m: &Manifest| -> Result<(), BeginError> {
        let text = serde_json::to_string(m).map_err(|e| state(std::io::Error::other(e)))?;
        write_atomic(manifest, text.as_bytes()).map_err(state)
    };
    let pid = std::process::id() as i32;
    let token = if plan.placeholder_token.is_empty() {
        fsat::token()
    } else {
        plan.placeholder_token.clone()
    };
    let mut m = Manifest {
        pid,
        made: Vec::new(),
        pending: Vec::new(),
        token,
        uses: uses(plan),
        roots: writable_roots(plan),
        fixed: fixed(plan),
        started: warden_sys::procfs::start_time(pid).unwrap_or(0),
        workspace: Some(plan.workspace.clone()),
        met: Vec::new(),
    };
    // Recorded machine-wide before anything is looked at: a session of another `$HOME`
    // ending now either removes its placeholders before this record (they are then absent
    // below, and made again) or reads it and keeps them.
    registry::register(&m);
    m.pending = absent(plan);
    if !m.pending.is_empty() {
        // Before anything is made: a supervisor killed while making them leaves this, and
        // a sweep finds what it made by their marks.
        record(&m)?;
    }
    let mut made = Vec::new();
    if let Err(e) = make(plan, &m.pending, &m.token, &mut made) {
        remove(&made);
        let _ = std::fs::remove_file(manifest);
        registry::unregister();
        return Err(e.into());
    }
    // Rewritten only when the marks do not tell everything: something made unmarked (a file
    // system without user xattrs), or no record yet of the paths this session uses.
    let unmarked = made.iter().any(|p| p.mark.is_empty());
    let needed = if m.pending.is_empty() {
        !m.uses.is_empty() || !m.roots.is_empty()
    } else {
        unmarked
    };
    if needed {
        m.made = made.clone();
        if let Err(e) = record(&m) {
            // The pending record (if it was written) still names them for a later sweep.
            remove(&made);
            return Err(e);
        }
    }
    Ok(made)
}

/// While a session runs: records placeholders made inside it (the workspace guard's, for a
/// nested repository's absent `core.hooksPath` or include target) in its manifest, under
/// the lock: marked ones as pending (a sweep after the session was killed finds them by
/// `token`'s mark, [`claim`]), unmarked ones as made. The session's own end removes them
/// as it removes the rest.
pub fn add(dir: &Path, manifest: &Path, token: &str, more: &[Placeholder]) -> std::io::Result<()> {
    let _lock = lock(dir)?;
    let mut m = read_manifest(manifest).unwrap_or_else(|| Manifest {
        pid: std::process::id() as i32,
        ..Default::default()
    });
    if m.token.is_empty() {
        m.token = token.to_string();
    }
    for p in more {
        let list = if !p.mark.is_empty() && p.mark == m.token {
            &mut m.pending
        } else {
            &mut m.made
        };
        if !list.contains(p) {
            list.push(p.clone());
        }
    }
    let text = serde_json::to_string(&m).map_err(std::io::Error::other)?;
    write_atomic(manifest, text.as_bytes())
}

/// Session end (nothing of the sandbox runs any more): removes this session's placeholders
/// that no live session uses, leaves the rest in an orphan manifest, sweeps dead sessions'.
pub fn end(dir: &Path, manifest: &Path, made: &[Placeholder]) {
    // With what the manifest recorded while the session ran (the guard's, which a start
    // that failed after they were made never learnt otherwise).
    let made = with_own_pending(manifest, made);
    let Ok(_lock) = lock(dir) else {
        // No lock, no knowledge of other sessions: leave everything for a later sweep.
        leave(manifest, made);
        return;
    };
    let own = read_manifest(manifest);
    let all = manifests(dir, manifest);
    if let Some(own) = &own {
        note_met(own, &all);
    }
    let used = live_uses(&all);
    leave(manifest, remove_unused(&made, &used));
    if let Some(own) = own {
        adopt(&own, &made, &all, &used);
    }
    let _ = sweep(dir, manifest);
    registry::unregister();
}

/// Whether a session with writable `roots` could write in `workspace`: a root contains it
/// or lies inside it.
fn reaches(roots: &[PathBuf], workspace: &Path) -> bool {
    roots
        .iter()
        .any(|r| r.starts_with(workspace) || workspace.starts_with(r))
}

/// At a session's end (under the lock): records it in every live session whose workspace
/// its writable roots reach, for that session's integrity report (attack review 129: a
/// session that began and ended inside another's run was not named in the other's report,
/// which then listed its agent's changes as its own). A warm spare that was never claimed
/// records nothing (its agent never ran).
fn note_met(own: &Manifest, all: &[(PathBuf, Manifest)]) {
    if own.pid <= 0 || warden_sys::procfs::waiting_spare(own.pid) {
        return;
    }
    for (path, m) in all {
        let reached = m.workspace.as_ref().is_some_and(|w| reaches(&own.roots, w));
        if !reached || m.pid == own.pid || !alive(m) || m.met.len() >= MET_MAX {
            continue;
        }
        if m.met.contains(&own.pid) {
            continue;
        }
        // Read again: the record as it is now, under the lock, with this pid added.
        let Some(mut now) = read_manifest(path) else {
            continue;
        };
        now.met.push(own.pid);
        write(path, &now);
    }
}

/// Placeholders this session used but did not make, whose maker has ended and left them for
/// it (a session of another `$HOME`, whose records this one cannot sweep: its orphan
/// manifest is in that `$HOME`): removed now when they carry a mark no live session has and
/// no live session uses them, with the marked empty directories above them that held them.
/// The mark cannot be forged by an agent (the sandbox refuses xattr writes); an unmarked
/// file is the user's.
fn adopt(own: &Manifest, made: &[Placeholder], all: &[(PathBuf, Manifest)], used: &Live) {
    let live_tokens: Vec<String> = all
        .iter()
        .map(|(_, m)| m)
        .filter(|m| alive(m))
        .map(|m| m.token.clone())
        .chain(registry::others().into_iter().map(|m| m.token))
        .filter(|t| !t.is_empty())
        .collect();
    let made_paths: Vec<PathBuf> = made.iter().map(Placeholder::path).collect();
    let mut cands: Vec<Placeholder> = Vec::new();
    for p in &own.uses {
        if made_paths.contains(p) {
            continue;
        }
        let Some(root) = own
            .roots
            .iter()
            .filter(|r| p.starts_with(r) && p != *r)
            .max_by_key(|r| r.components().count())
        else {
            continue;
        };
        // The path and its ancestors below the root, innermost first.
        let mut at = p.clone();
        while at.starts_with(root) && at != *root {
            let Some(parent) = at.parent().map(Path::to_path_buf) else {
                break;
            };
            let Some(mark) = orphan_mark(&parent, at.file_name(), &live_tokens) else {
                break;
            };
            let x = Placeholder {
                root: root.clone(),
                rel: at.strip_prefix(root).unwrap_or(&at).to_path_buf(),
                is_dir: std::fs::symlink_metadata(&at).is_ok_and(|m| m.is_dir()),
                mark,
            };
            if !cands.contains(&x) {
                cands.push(x);
            }
            at = parent;
        }
    }
    // Outermost first, as `remove_unused` expects (it removes innermost first).
    cands.sort_by_key(|p| p.rel.components().count());
    let _ = remove_unused(&cands, used);
}

/// The mark of `name` in `parent` when it is a placeholder of an ended session: marked with a
/// token no live session holds.
fn orphan_mark(parent: &Path, name: Option<&std::ffi::OsStr>, live: &[String]) -> Option<String> {
    let dir = fsat::open_root(parent).ok()?;
    let mark = fsat::mark_of(dir.as_fd(), name?)?;
    (!live.contains(&mark)).then_some(mark)
}

/// Supervisor pids of the other live sessions (their manifests in `dir`, all but
/// `manifest`) with a writable root that contains `workspace` or lies inside it, and of
/// those that ended while this one ran ([`Manifest::met`]): sessions whose agents could
/// write in it while this one ran. Read without the lock (a report, not
/// a decision about any path).
pub fn sharing(dir: &Path, manifest: &Path, workspace: &Path) -> Vec<i32> {
    // Those that ended while this one ran recorded themselves here ([`note_met`]).
    let met = read_manifest(manifest).map(|m| m.met).unwrap_or_default();
    let mut pids: Vec<i32> = manifests(dir, manifest)
        .into_iter()
        .filter(|(_, m)| alive(m) && m.pid != std::process::id() as i32)
        .filter(|(_, m)| reaches(&m.roots, workspace))
        .map(|(_, m)| m.pid)
        .chain(
            registry::others()
                .into_iter()
                .filter(|m| reaches(&m.roots, workspace))
                .map(|m| m.pid),
        )
        // A warm spare that waits: its agent has not run (and a claim renames it before
        // the release, so one that ran while this session did is counted).
        .filter(|pid| !warden_sys::procfs::waiting_spare(*pid))
        .chain(met)
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

/// The other live sessions, read under the manifests' lock, which this holds while it lives:
/// no session can begin (make its placeholders, start its agent) until it is dropped. Taken
/// to replace a host file in a directory another session's agent could write: the state
/// filter's write-back and `warden held apply`. Attack review 80: such an agent swapped the
/// temporary file under the rename (its hooks landed in the host's `~/.claude/settings.json`),
/// and a replaced file detached another session's lock on it.
pub struct Quiet {
    _lock: Option<std::fs::File>,
    /// pid, writable roots, locked paths.
    live: Vec<(i32, Vec<PathBuf>, Vec<PathBuf>)>,
    /// Why nothing is known of the other sessions (the lock could not be taken).
    unknown: Option<String>,
}

/// [`Quiet`] for the manifests in `dir`, this session's own (`me`) left out.
pub fn quiet(dir: &Path, me: &Path) -> Quiet {
    match lock(dir) {
        Ok(l) => Quiet {
            live: manifests(dir, me)
                .into_iter()
                .map(|(_, m)| m)
                .filter(|m| alive(m) && m.pid != std::process::id() as i32)
                .chain(registry::others())
                .map(|m| (m.pid, m.roots, m.uses))
                .collect(),
            _lock: Some(l),
            unknown: None,
        },
        Err(e) => Quiet {
            _lock: None,
            live: Vec::new(),
            unknown: Some(format!(
                "the sessions' lock {} could not be taken ({e})",
                dir.join(".lock").display()
            )),
        },
    }
}

impl Quiet {
    /// Why `file` must not be replaced now: a live session whose agent can write its
    /// directory, or that locks the file itself; `None` when it may.
    pub fn busy(&self, file: &Path) -> Option<String> {
        if let Some(u) = &self.unknown {
            return Some(u.clone());
        }
        let parent = file.parent().unwrap_or(file);
        // Roots are recorded resolved; `$HOME` may be named through a link (read only).
        let real = std::fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
        self.live.iter().find_map(|(pid, roots, uses)| {
            if let Some(r) = roots
                .iter()
                .find(|r| parent.starts_with(r) || real.starts_with(r))
            {
                Some(format!(
                    "warden session {pid} is running, and its agent can write {} (it could swap the file as it is written)",
                    r.display()
                ))
            } else if uses
                .iter()
                .any(|u| u == file || file.file_name().is_some_and(|n| *u == real.join(n)))
            {
                Some(format!(
                    "warden session {pid} is running and locks {} (replacing it would unlock it there)",
                    file.display()
                ))
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// The names in directory `p`, sorted.
    fn names(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// A supervisor SIGKILLed while making its placeholders leaves its pending record: the
    /// next sweep removes what it marked (in place or still under the temporary name), and
    /// nothing unmarked (the user's own empty file at a pending path), nothing marked by
    /// another session, nothing with content.
    #[test]
    fn a_killed_sessions_marked_placeholders_are_swept_and_the_users_files_stay() {
        let base = std::env::temp_dir().join(format!("warden-pending-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (dir, ws) = (base.join("state"), base.join("ws"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        // A pid that is gone.
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let dead = c.id() as i32;
        c.wait().unwrap();
        let token = fsat::token();
        let ph = |rel: &str, is_dir: bool| Placeholder {
            root: ws.clone(),
            rel: PathBuf::from(rel),
            is_dir,
            mark: String::new(),
        };
        let pending = vec![
            ph(".claude/settings.json", false),
            ph(".envrc", false),
            ph(".mcp.json", false),
            ph(".vscode", true),
            ph(".idea", true),
            ph(".warden.toml", false),
        ];
        let root = fsat::open_root(&ws).unwrap();
        let rd = root.as_fd();
        // Made and marked before the kill.
        let (claude, made) =
            fsat::mkdir_all_marked(rd, Path::new(".claude"), None, &token).unwrap();
        assert_eq!(made, vec![(PathBuf::from(".claude"), true)]);
        assert_eq!(
            fsat::make_marked(claude.as_fd(), OsStr::new("settings.json"), false, &token).unwrap(),
            Some(true)
        );
        assert_eq!(
            fsat::make_marked(rd, OsStr::new(".vscode"), true, &token).unwrap(),
            Some(true)
        );
        // Killed between the temporary name and the rename.
        let tmp = fsat::marked_temp(OsStr::new(".envrc"), &token);
        std::fs::write(ws.join(&tmp), b"").unwrap();
        // The user's own: an empty file, a directory, another session's marked file, and a
        // marked file with content.
        std::fs::write(ws.join(".mcp.json"), b"").unwrap();
        std::fs::create_dir(ws.join(".idea")).unwrap();
        assert_eq!(
            fsat::make_marked(rd, OsStr::new(".warden.toml"), false, &fsat::token()).unwrap(),
            Some(true)
        );
        assert_eq!(
            fsat::make_marked(rd, OsStr::new("x"), false, &token).unwrap(),
            Some(true)
        );
        assert!(fsat::is_marked(rd, OsStr::new("x"), &token));
        std::fs::write(ws.join("x"), b"kept").unwrap();
        let mut pending2 = pending.clone();
        pending2.push(ph("x", false));
        let m = Manifest {
            pid: dead,
            pending: pending2,
            token: token.clone(),
            ..Default::default()
        };
        std::fs::write(dir.join("dead.list"), serde_json::to_string(&m).unwrap()).unwrap();
        sweep(&dir, &dir.join("own.list"));
        assert_eq!(names(&ws), vec![".idea", ".mcp.json", ".warden.toml", "x"]);
        assert!(
            !dir.join("dead.list").exists(),
            "nothing left to sweep later"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    /// A manifest's temporary copy left by a writer killed between write and rename goes at
    /// the next sweep once a minute old; a fresh one (a writer between the two) stays, and so
    /// does a symlink by that name (nothing is followed or removed through it).
    #[test]
    fn a_stale_temporary_manifest_is_swept() {
        let dir = std::env::temp_dir().join(format!("warden-stale-tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("1a-dead.list.tmp");
        let fresh = dir.join("1b-writing.list.tmp");
        let link = dir.join("1c-link.list.tmp");
        std::fs::write(&old, b"").unwrap();
        std::fs::write(&fresh, b"{").unwrap();
        std::os::unix::fs::symlink(&old, &link).unwrap();
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();
        sweep(&dir, &dir.join("own.list"));
        assert!(!old.exists(), "the stale temporary manifest stayed");
        assert!(fresh.exists(), "a fresh temporary manifest was removed");
        assert!(link.symlink_metadata().is_ok(), "the symlink was removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// What warden makes is marked as it appears, each directory on the way too, and only the
    /// final names appear (no temporary name left); a path already there is not made; what
    /// no longer carries the mark is not removed.
    #[test]
    fn made_placeholders_carry_the_mark_and_appear_under_their_names_only() {
        let base = std::env::temp_dir().join(format!("warden-marked-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let root = fsat::open_root(&base).unwrap();
        let token = fsat::token();
        let (d, made) =
            fsat::mkdir_all_marked(root.as_fd(), Path::new("a/b"), None, &token).unwrap();
        assert_eq!(
            made,
            vec![(PathBuf::from("a"), true), (PathBuf::from("a/b"), true)]
        );
        assert_eq!(
            fsat::make_marked(d.as_fd(), OsStr::new("f"), false, &token).unwrap(),
            Some(true)
        );
        // There already: nothing made, nothing left behind.
        assert_eq!(
            fsat::make_marked(d.as_fd(), OsStr::new("f"), false, &token).unwrap(),
            None
        );
        assert_eq!(
            fsat::make_marked(root.as_fd(), OsStr::new("a"), true, &token).unwrap(),
            None
        );
        assert_eq!(names(&base), vec!["a"]);
        assert_eq!(names(&base.join("a/b")), vec!["f"]);
        let b = fsat::open_root(&base.join("a")).unwrap();
        assert!(fsat::is_marked(root.as_fd(), OsStr::new("a"), &token));
        assert!(fsat::is_marked(b.as_fd(), OsStr::new("b"), &token));
        assert!(fsat::is_marked(d.as_fd(), OsStr::new("f"), &token));
        assert!(!fsat::is_marked(d.as_fd(), OsStr::new("f"), &fsat::token()));
        // A name near NAME_MAX: its temporary name is cut to fit (the session started with
        // such a protected name before marks, and must still).
        let long = "l".repeat(250);
        assert!(fsat::marked_temp(OsStr::new(&long), &token).len() <= 255);
        assert_eq!(
            fsat::make_marked(d.as_fd(), OsStr::new(&long), false, &token).unwrap(),
            Some(true)
        );
        assert!(fsat::is_marked(d.as_fd(), OsStr::new(&long), &token));
        std::fs::remove_file(base.join("a/b").join(&long)).unwrap();
        // Removal holds to the mark: `f`, removed and made again (empty) by the user on the
        // host while the session ran, is theirs and stays; once it is gone, the rest goes.
        let ph = |rel: &str, is_dir: bool| Placeholder {
            root: base.clone(),
            rel: PathBuf::from(rel),
            is_dir,
            mark: token.clone(),
        };
        let made = [ph("a", true), ph("a/b", true), ph("a/b/f", false)];
        std::fs::remove_file(base.join("a/b/f")).unwrap();
        std::fs::write(base.join("a/b/f"), b"").unwrap();
        remove(&made);
        assert_eq!(names(&base.join("a/b")), vec!["f"]);
        std::fs::remove_file(base.join("a/b/f")).unwrap();
        remove(&made);
        assert!(names(&base).is_empty());
        let _ = std::fs::remove_dir_all(&base);
    }

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
