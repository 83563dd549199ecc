//! The workspace guard, run by the sandbox's init (every capability of the user namespace,
//! no Landlock, no seccomp): it owns the containers of what the host will later execute or
//! load, not just their leaves, for the whole session.
//!
//! - Protected paths (`files.protect`) are locked read-only, and every directory between their
//!   writable root and them (`.git`, `.claude`, ...) is bound onto itself: a mount point cannot
//!   be renamed or removed (EBUSY), so `mv .claude x && mkdir .claude` fails.
//! - A lock stands on a directory entry, and the host replacing or removing that entry
//!   takes it away in every namespace: each locked file's directory is watched and the name
//!   locked again at once ([`Relock`]). So is a hide: what the host puts at a denied name in
//!   a writable root, or on the way to one, is hidden again ([`Veil`]).
//! - Git repositories at any depth: every entry named `.git` (directory, `gitdir:` file,
//!   symlink) and every directory that looks like a git dir (`HEAD` plus `objects/` or
//!   `commondir`, e.g. `.git/modules/*`, `.git/worktrees/*`, `--separate-git-dir` targets) is
//!   guarded: `hooks/` and `config` are locked read-only; a `.git` directory is bound onto
//!   itself. Repositories created during the session are also neutralised at the moment of
//!   locking: `hooks/` is replaced by an empty directory of the guard's and `config` by a new
//!   file that keeps only an allowlist of inert keys (no `core.fsmonitor`, `core.hooksPath`,
//!   `include`, filters, aliases, ...); new inodes, so what the agent still holds of its own
//!   (an open fd, a hard link) reaches nothing git reads.
//!   Indirections: a `commondir` made in the session is removed (in a worktree's git dir it
//!   is reset to `../..`), `config.worktree` is sanitised, a `gitdir:` file's target inside
//!   the workspace is guarded (even when it appears later), a `gitdir:` file made or changed
//!   in the session that points outside the workspace (e.g. at a git dir the agent built in
//!   `~/.claude`) is removed, a pre-existing `gitdir:` file is locked read-only, a `.git`
//!   symlink made in the session is removed, and what a pre-existing config's
//!   `core.hooksPath` and includes name inside the workspace (`~/` expanded as git does) is
//!   locked with every directory above it pinned (absent: made empty first). The plan locks
//!   the same for the workspace's repository and the global config in every writable root
//!   ([`crate::gitrefs`]).
//! - The guard is not one-shot: an inotify watch on every directory of the workspace finds
//!   new repositories for the whole session (cost: one watch per directory, bounded; past
//!   the bound, or on queue overflow, it falls back to periodic full rescans). Before the
//!   agent runs, init's walk only finds and locks what exists; the watcher thread adds the
//!   watches in its first pass, each before its directory is listed, and decides again
//!   every repository it lists, so nothing made or changed in between is missed. When the agent
//!   exits, init kills what is left in the namespace and [`Guard::finish`] makes a last full
//!   pass with no settle delay, so whatever the agent left ends up neutralised.
//!
//! Every path operation goes through [`crate::fsat`]: the workspace is opened once before the
//! agent runs, everything else is opened beneath it with symlinks refused, checked with
//! `fstat` (real directory / regular file on the workspace's device), removed with `unlinkat`
//! on verified directory fds, and mounted with `open_tree` + `move_mount` on fds.

use crate::fsat;
use crate::gitrefs::config_refs;
use crate::plan::Plan;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `git init` writes its config in several lock-and-rename steps; locking in between would
/// make the next rename fail (EBUSY on the mount point). The config must be quiet this long.
const SETTLE: Duration = Duration::from_millis(150);
/// ...but never longer than this (an agent touching the config forever must not keep it open).
const MAX_WAIT: Duration = Duration::from_secs(2);
/// inotify watches at most (one per directory); past it, periodic full rescans.
const MAX_WATCHES: usize = 100_000;
/// A walk visits at most this many entries, this deep (a path of 2,048 components of one
/// character is PATH_MAX long: deeper, the host's git cannot work there).
const MAX_WALK: usize = 1_000_000;
const MAX_DEPTH: usize = 2_048;
/// The last pass's bound, once nothing of the agent's runs: an agent filling the walk's
/// budget with links ahead of a repository it makes later kept every rescan, the last one
/// included, from reaching it (attack review 96: 1,000,100 links in `node_modules`, then a git
/// dir in `src`). Past this the exit says so aloud.
const MAX_FINAL_WALK: usize = 50_000_000;
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// Subdirectories of a git dir that are not walked (content, not configuration), where
/// [`bulk_unwalked`] allows it.
pub(crate) const GIT_BULK: &[&str] = &["objects", "refs", "logs", "lfs", "rr-cache"];

/// Whether the [`GIT_BULK`] directories of a git dir at `rel` (workspace-relative) may go
/// unwalked and unwatched: only those of a `.git` directory itself, where no checkout can
/// put a worktree (git refuses any path with a `.git` component) and git keeps no other
/// repository. Elsewhere a directory with `HEAD`, `objects` and `refs` is ordinary content
/// the agent can make (attack review 61: a repository at `schema/objects/vendor`, committed
/// as a submodule, kept its `core.fsmonitor`, and the host's `git status` ran it), and so
/// is one under `.git/modules` (attack review 62: the submodule named `foo/objects/bar` has
/// its git dir at `.git/modules/foo/objects/bar`).
pub(crate) fn bulk_unwalked(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == ".git")
}

/// Whether a directory with these entries is one git would use: a git dir (`HEAD` and
/// `objects` or `commondir`), or the common dir of a worktree's git dir, which needs no
/// `HEAD` of its own (`objects` and `refs`: attack review 60, a fake worktree whose common
/// dir with hooks and `core.fsmonitor` was never guarded).
fn git_like(has: &dyn Fn(&str) -> bool) -> bool {
    (has("HEAD") && (has("objects") || has("commondir"))) || (has("objects") && has("refs"))
}

type Id = (u64, u64, i64, u32);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// An entry named `.git`: a directory, a `gitdir:` file or a symlink.
    Dot,
    /// A directory that may be a git dir.
    GitDir,
    /// An entry at or below a git dir's `modules/` that may be a symlink.
    ModuleLink,
}

struct Pending {
    kind: Kind,
    first: Instant,
    last: Instant,
    stamp: Option<(u64, i64, i64, i64)>,
    /// Decisions of the host's repository that failed because it changed under them.
    retries: u32,
}

/// How often a decision about the host's repository (the start's, or one made while a warm
/// spare waits) is tried again when the repository changed under it ([`transient`]: the
/// host's `git` renamed a file into place between the guard's open and its lock) before the
/// failure stands.
const HOST_RETRIES: u32 = 40;
/// The pause between two such tries at the start.
const HOST_RETRY_PAUSE: Duration = Duration::from_millis(25);

/// What the host's `git` does while it writes a repository: an entry replaced (renamed over,
/// removed) between the guard's open and its lock.
fn transient(e: &GuardError) -> bool {
    let io_changed = |s: &io::Error| {
        matches!(
            s.raw_os_error(),
            Some(libc::ENOENT | libc::ESTALE | libc::ENOTDIR)
        ) || s.to_string() == CHANGED_WHILE_LOCKED
    };
    match e {
        GuardError::At { source, .. } | GuardError::Io(source) => io_changed(source),
        GuardError::Several(v) => !v.is_empty() && v.iter().all(transient),
        _ => false,
    }
}

/// The error of a lock whose file was replaced while it was locked.
const CHANGED_WHILE_LOCKED: &str = "the file changed while it was being locked";

/// See the module doc. Shared between init's main thread (start, finish) and its watcher.
#[derive(Clone)]
pub struct Guard {
    st: Arc<Mutex<State>>,
    /// The locked files' watch, apart from `st`: its own inotify instance and thread, so
    /// that nothing the walker does (a tree renamed in is a walk) delays a relock.
    rl: Arc<Mutex<Relocker>>,
    /// Whether the agent was released ([`Guard::set_latch`]); `None`: from the start on.
    latch: Option<crate::latch::Latch>,
}

struct State {
    ws: OwnedFd,
    ws_path: PathBuf,
    dev: u64,
    inotify: OwnedFd,
    wds: HashMap<i32, PathBuf>,
    /// Directories renamed away from a watched directory (the rename's cookie and the
    /// workspace-relative path they had) whose other half (the arrival in a watched one)
    /// has not been read yet ([`cut_off_moved_out`]).
    moved_out: Vec<(u32, PathBuf)>,
    /// The (device, inode) of each watched directory.
    ids: HashMap<i32, (u64, u64)>,
    /// How many directories the walk watches at most: a quarter of the user's inotify
    /// watches, outside the agent's own quarter ([`premake_inotify`]).
    max_watches: usize,
    /// Directories moved within the workspace since the last drain, for
    /// [`Relocker::moved_within`].
    arrived: Vec<PathBuf>,
    degraded: bool,
    /// The walks' bound in entries ([`MAX_WALK`], [`MAX_FINAL_WALK`] for the last pass).
    walk_max: usize,
    /// No watch is in place yet: init's walk at the start only finds and locks what exists
    /// (adding a watch to each directory cost a real repository's start ~30 ms: the kernel
    /// flags every cached child dentry for `IN_CLOSE_WRITE`); the watcher thread's first
    /// pass adds them while the agent runs (see [`Guard::spawn`]).
    unwatched: bool,
    last_rescan: Instant,
    /// Git dirs and `.git` entries present at start: locked, never rewritten.
    preexisting: HashSet<Id>,
    /// The entries of each config present at start, by its git dir (device, inode) and name:
    /// what a replacement of it keeps through the sanitiser (attack review 80, F4).
    pre_configs: HashMap<(u64, u64, String), Vec<ConfigEntry>>,
    /// What we mounted onto read-only (so it is not mounted twice).
    locked: HashSet<Id>,
    /// Directories bound onto themselves writable (pinned containers).
    pinned: HashSet<Id>,
    /// The plan's writable roots other than the workspace (a link landing there cannot be
    /// locked by the guard).
    writable_other: Vec<PathBuf>,
    pending: HashMap<PathBuf, Pending>,
    /// Workspace-relative paths named by `gitdir:` files: guarded when they appear.
    expected: HashSet<PathBuf>,
    priv_dir: PathBuf,
    n: usize,
    /// Lines appended to the private `.git/info/exclude` (the placeholders).
    exclude_extra: String,
    starting: bool,
    finished: bool,
    /// The [`GIT_BULK`] directories of the `.git` directories walked (never walked nor
    /// watched live: loose objects, refs, logs), for the last pass's look at what changed in
    /// them ([`State::bulk_pass`]), and when the guard began (a `ctime` at or after it is a
    /// change of this session's).
    bulk: Vec<PathBuf>,
    bulk_seen: HashSet<PathBuf>,
    /// Git dirs found in them: neutralised, then removed ([`State::remove_bulk_found`]).
    bulk_found: Vec<PathBuf>,
    since: (i64, i64),
    /// `core.hooksPath` from the user's global git config (applies to every repository).
    global_hooks_path: Option<String>,
    /// The host's home directory (`~/` in git config paths).
    home: PathBuf,
    /// `.git` files whose target was absent: looked at again in the last pass.
    recheck: HashSet<PathBuf>,
    /// Placeholders made for git-config targets ([`State::lock_target`]), workspace-relative
    /// (directory or not), outermost first: the supervisor removes them after the session
    /// ([`Guard::placeholders`]), as it removes its own; with whether each carries the
    /// session's mark (`token`).
    placeholders: Vec<(PathBuf, bool, bool)>,
    /// The session's placeholder token (the plan's): what the guard marks its placeholders
    /// with ([`fsat::make_marked`]); empty: unmarked.
    token: String,
    /// Hooks directories made in the session and moved aside, not yet removed: (git dir,
    /// name there, the directory).
    aside: Vec<(OwnedFd, OsString, OwnedFd)>,
    /// What the guard locked in repositories made in the session, through fds opened before
    /// the locks: the last pass sanitises these configs and empties these hooks directories
    /// again (see [`State::resanitise`]).
    made: Vec<Made>,
    /// The locked files for the [`Relocker`], taken from here once the locks stand.
    relocker: Option<Relocker>,
    /// Where denied paths in writable roots are hidden (see [`Veil`]); handed to the
    /// [`Relocker`] with them.
    veil: Option<Veil>,
    /// Mounts the guard may still make (`WARDEN_GUARD_MOUNTS=N`: N in all, the start's
    /// included; unset: [`SESSION_MOUNTS`] once the agent runs, the start's not counted).
    /// Past it, a mount fails as a full mount table does (`ENOSPC`), and the agent is ended
    /// ([`Guard::spawn`]).
    mounts_left: Option<usize>,
    /// Whether `mounts_left` counts the start's mounts too (`WARDEN_GUARD_MOUNTS` was set).
    mounts_all: bool,
    /// The mounts ran out and that was said (once).
    mounts_out: bool,
    /// How many [`Made`] fds are kept at most: half of init's open-files limit (raised to its
    /// hard limit at start), at least 1,024. Past it, what the guard locks later in
    /// session-made repositories is not sanitised again by the last pass (their first-look
    /// locks stand in both views all the same), and the other half stays free for locking.
    max_made: usize,
}

/// A file `files.protect` locked in a writable root. A lock is a mount on the file's
/// directory entry, and a program on the host that replaces that entry (a rename over it:
/// an editor's save, `sed -i`; `git checkout` unlinks and creates) takes the mount away in
/// every namespace: the host's new file would then be the agent's to write (attack review
/// 80, F3). Its directory is watched, and the new file locked as itself at once (by the
/// [`Relocker`], whose thread does nothing else). What this cannot close (attack review 83;
/// 84): the moment between the host's rename and the relock, in which a program opening
/// the name for writing in a loop may get a descriptor; a descriptor the agent opened on the host's file before
/// the lock (its temporary file sits in a directory the agent can write) still writes it,
/// so the last pass compares the file with what it held when locked and says so aloud; and
/// a name the host removed is not made again (that raced the host's own next step: `git
/// checkout` unlinks, then creates, and failed with EEXIST), so the agent may make it.
///
/// A denied path in a writable root (a `files.deny` entry in the workspace, the home's
/// secrets with a workspace at `$HOME`; absent ones made as placeholders) is `hidden`: what
/// the host puts there is hidden again (an empty file, or an empty unreadable directory,
/// read-only over it), never shown. Its watch covers every directory from its root down,
/// and follows a directory on the way that the host replaces (`rm -r ~/.docker` and
/// `docker login`); the agent cannot rename them (they are pinned, see
/// [`State::lock_protected`]). The moment between the host's rename and the new mount stays:
/// a program of the agent reading the name in a loop may read the host's new file then.
struct Relock {
    root: PathBuf,
    want: Option<(u64, u64)>,
    rel: PathBuf,
    /// What the file held when it was locked again ([`RELOCK_KEEP`] bytes at most):
    /// compared in the last pass, since a descriptor opened before the new lock (on the
    /// host's temporary file, in a directory the agent can write) still writes it.
    seen: Option<Vec<u8>>,
    /// Not locked again (the agent's processes were ended): named by the last pass.
    failed: bool,
    /// Hidden again rather than locked as itself (see above).
    hidden: bool,
    /// A hidden directory (made again as one when the host removes it; see
    /// [`Relocker::rehide`]).
    is_dir: bool,
}

/// An `O_PATH` fd of `p`, a file or directory init made in its private `/run`.
fn open_own(p: &Path) -> Result<OwnedFd, GuardError> {
    let c = CStringPath::new(p)?;
    // SAFETY: open(2) of our own file in init's private /run.
    let fd = unsafe {
        libc::open(
            c.0.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(err("private file", p, io::Error::last_os_error()));
    }
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a [`Relock::hidden`] entry is hidden under: a private empty file and a private
/// empty tmpfs of mode 000, both made by init before the agent runs (`O_PATH` fds), each
/// bound read-only over what the host put there.
struct Veil {
    file: OwnedFd,
    dir: OwnedFd,
}

impl Veil {
    fn new(priv_dir: &Path) -> Result<Veil, GuardError> {
        let f = priv_dir.join("veil-file");
        std::fs::write(&f, b"").map_err(|e| err("private file", &f, e))?;
        let d = priv_dir.join("veil-dir");
        std::fs::create_dir_all(&d).map_err(|e| err("private directory", &d, e))?;
        crate::sys::mount(
            Some("tmpfs"),
            &d,
            Some("tmpfs"),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            Some("mode=000,size=4k"),
        )
        .map_err(|e| err("private directory", &d, io::Error::other(e.to_string())))?;
        Ok(Veil {
            file: open_own(&f)?,
            dir: open_own(&d)?,
        })
    }
}

/// How much of a file locked again [`Relock::seen`] keeps (a config file; past it, the
/// first bytes and the size are compared).
const RELOCK_KEEP: usize = 1 << 20;

/// What [`Relock::seen`] keeps of the file `rel` beneath `root`: its first [`RELOCK_KEEP`]
/// bytes and its size.
fn relock_content(root: BorrowedFd<'_>, rel: &Path, dev: u64) -> io::Result<Vec<u8>> {
    let f = fsat::open_file(root, rel, libc::O_RDONLY, Some(dev))?;
    let mut v = fsat::read_to_vec(f.as_fd(), RELOCK_KEEP)?;
    v.extend_from_slice(&fsat::fstat(f.as_fd())?.st_size.to_ne_bytes());
    Ok(v)
}

/// Adds `mask` to the watch of the inotify instance `ino` on the verified directory `d`
/// (each caller's events add up: `IN_MASK_ADD`).
fn inotify_watch(ino: BorrowedFd<'_>, d: BorrowedFd<'_>, mask: u32) -> io::Result<i32> {
    let p = format!("/proc/self/fd/{}\0", d.as_raw_fd());
    // The magic link is followed on purpose (no IN_DONT_FOLLOW, which would watch the
    // link itself): it names the directory we opened and verified, not a path.
    // SAFETY: a NUL-terminated path to our own verified fd.
    let wd = unsafe {
        libc::inotify_add_watch(
            ino.as_raw_fd(),
            p.as_ptr() as *const libc::c_char,
            mask | libc::IN_ONLYDIR | libc::IN_MASK_ADD,
        )
    };
    if wd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(wd)
}

/// Waits until `fd` (one of ours, open while this runs) is readable, at most `ms`.
fn wait_readable(fd: RawFd, ms: i32) {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one fd we own.
    unsafe { libc::poll(&mut pfd, 1, ms) };
}

/// Mounts the guard makes at most, once the agent runs, to lock the repositories it makes
/// (about four each): each mount costs the kernel more as the table grows, and a session
/// whose agent made repositories by the ten thousand (attack review 128: ~15,000 in 30 s)
/// kept its init busy for minutes, stalled other sessions' starts (the mount lock is
/// machine-wide) and left what it had not reached yet unneutralised meanwhile. Past it the
/// agent is ended as at a full mount table.
const SESSION_MOUNTS: usize = 8_000;

/// Ends every process of the sandbox but init (this process, the pid namespace's init:
/// `kill(-1)` there reaches the namespace only). Whether that was possible.
fn end_agent() -> bool {
    // SAFETY: getpid and kill have no memory effects; -1 is signalled only as pid 1 of a
    // namespace of our own (anywhere else it would reach the host's processes).
    unsafe { libc::getpid() == 1 && libc::kill(-1, libc::SIGKILL) == 0 }
}

/// The inotify instances made by stage 1 before it entered the sandbox's user namespace, for
/// the walker's and the relocker's watches ([`inotify_instance`]).
static PREMADE_INOTIFY: std::sync::Mutex<Vec<OwnedFd>> = std::sync::Mutex::new(Vec::new());

/// A new inotify instance (`IN_CLOEXEC | IN_NONBLOCK`).
fn new_inotify() -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 returns a fresh fd or -1.
    let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if ifd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(ifd) })
}

/// Makes the inotify instances the workspace guard uses, in the calling process (stage 1,
/// before it enters the sandbox's user namespace; inherited by init). A watch counts against
/// the inotify limits of its *instance's* user namespace: these count against the invoking
/// user's, not against the sandbox's own, which init caps for the agent at a quarter of the
/// user's watches (see `launch::cap_inotify`): an agent that takes all of its own cannot
/// keep a denied path from being hidden again (the relocker's watches, on the way to denied
/// paths, which only the host makes) nor blind the walk (attack review 114, F1). The walk,
/// whose watches follow the directories the agent makes, takes another quarter at most
/// ([`State::max_watches`]; attack review 112, F1: unbounded outside the cap, an agent's
/// 100,000 directories took the user's other half), so the host keeps half.
pub fn premake_inotify() -> io::Result<()> {
    let mut pool = PREMADE_INOTIFY.lock().unwrap_or_else(|p| p.into_inner());
    while pool.len() < 2 {
        pool.push(new_inotify()?);
    }
    Ok(())
}

/// One of the instances [`premake_inotify`] made, or a new one.
fn inotify_instance() -> io::Result<OwnedFd> {
    let taken = PREMADE_INOTIFY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop();
    match taken {
        Some(fd) => Ok(fd),
        None => new_inotify(),
    }
}

/// Reads the inotify instance `ino` (non-blocking) into `buf` until its queue is empty,
/// calling `on` with each event's watch, mask, cookie and name. Whether anything was read.
fn read_inotify(
    ino: BorrowedFd<'_>,
    buf: &mut [u8],
    mut on: impl FnMut(i32, u32, u32, &OsStr),
) -> bool {
    let mut any = false;
    loop {
        // SAFETY: reading inotify events into a buffer we own.
        let n = unsafe {
            libc::read(
                ino.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n <= 0 {
            return any;
        }
        any = true;
        let n = n as usize;
        let hdr = std::mem::size_of::<libc::inotify_event>();
        let mut off = 0;
        while off + hdr <= n {
            // SAFETY: the kernel wrote a whole event header at `off`.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr() as *const _) };
            let len = ev.len as usize;
            let raw = &buf[off + hdr..(off + hdr + len).min(n)];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            off += hdr + len;
            on(ev.wd, ev.mask, ev.cookie, OsStr::from_bytes(&raw[..end]));
        }
    }
}

/// A directory of the workspace that the host moved out of it (attack review 112, F2) stays
/// reachable through a descriptor or working directory the agent held there, wherever it
/// went (`~/archive`, the hidden part of `$HOME`): below the workspace's bind mount, but no
/// longer under its root, so no rule of the sandbox's own places it, and Landlock takes it
/// for the workspace. The kernel offers no way to take such a reference back; so every
/// process of the sandbox that holds one (a directory descriptor, its working directory or
/// its root) is ended. Such a directory is *disconnected*: its `..` fails with ENOENT, which
/// is how it is told from one the host only moved within the workspace (a removed one,
/// whose `..` fails too, has no links left). Called in init (the sandbox's `/proc`), on a directory moved away from a
/// watched directory and not into one.
fn cut_off_moved_out(gone: &HashSet<(u64, u64)>) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        // No way to tell who holds it: nobody keeps it (fail closed).
        eprintln!(
            "warden: workspace guard: the host moved a directory out of the workspace, and warden could not list the sandbox's processes to find who held it: the session's processes were ended"
        );
        end_agent();
        return;
    };
    let me = std::process::id();
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // The process itself, by a descriptor: a pid reused meanwhile is not signalled.
        let Ok(pidfd) = warden_sys::pidfd::open(pid as i32) else {
            continue;
        };
        // Every thread: one made without CLONE_FS or CLONE_FILES has a working directory and
        // a descriptor table of its own, and a thread-group leader that has exited shows
        // neither (attack review 113, F2, F3). What cannot be read is taken as held.
        let mut found: Option<&'static str> = None;
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
        let Ok(tasks) = tasks else {
            continue;
        };
        for t in tasks.flatten() {
            let base = t.path();
            if !base.join("stat").exists() {
                continue;
            }
            for (link, what) in [
                ("cwd", "its working directory"),
                ("root", "its root directory"),
            ] {
                match disconnected_dir(&base.join(link), gone) {
                    Some(false) => {}
                    Some(true) => found = Some(what),
                    None if is_zombie(&base) => {}
                    None => found = Some("a working directory warden could not read"),
                }
            }
            match std::fs::read_dir(base.join("fd")) {
                Ok(fds) => {
                    for f in fds.flatten() {
                        if disconnected_dir(&f.path(), gone) == Some(true) {
                            found = Some("a directory descriptor");
                        }
                    }
                }
                Err(_) if is_zombie(&base) => {}
                Err(_) => found = Some("descriptors warden could not read"),
            }
            if found.is_some() {
                break;
            }
        }
        if let Some(what) = found {
            // SAFETY: pidfd_send_signal on a pidfd we own; a plain syscall.
            let sent = unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            if sent == 0 {
                eprintln!(
                    "warden: workspace guard: the host moved a directory out of the workspace, and process {pid} held it ({what}): ended, so it reads and writes nothing there"
                );
            }
        }
    }
}

/// A task (`/proc/PID/task/TID`) that has exited (its thread group lives on in others, which
/// are looked at themselves).
fn is_zombie(task: &Path) -> bool {
    std::fs::read_to_string(task.join("stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| matches!(rest.trim_start().chars().next(), Some('Z' | 'X')))
    })
}

/// Whether `magic` (a `/proc/.../fd/N`, `cwd` or `root` link) is one of the directories
/// that left the workspace (`gone`) and is still away: its `..` is gone from under its mount
/// ([`cut_off_moved_out`]; a pinned directory the host moved within the workspace is
/// disconnected from the pin above it too, but not among those); `None`: it could not be
/// opened (gone, or the task exited), other than as a descriptor of no directory.
fn disconnected_dir(magic: &Path, gone: &HashSet<(u64, u64)>) -> Option<bool> {
    let Ok(c) = std::ffi::CString::new(magic.as_os_str().as_bytes()) else {
        return Some(false);
    };
    // SAFETY: open(2) of a /proc magic link with O_PATH (nothing read or written).
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return match io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOTDIR) => Some(false),
            _ => None,
        };
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A removed directory's `..` fails with ENOENT too: it has no links left.
    match fsat::fstat(fd.as_fd()) {
        Ok(st) if st.st_nlink > 0 && gone.contains(&(st.st_dev, st.st_ino)) => {}
        _ => return Some(false),
    }
    // SAFETY: openat(2) of ".." below our own fd, O_PATH.
    let up = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            c"..".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if up >= 0 {
        // SAFETY: closing the fd just opened.
        unsafe { libc::close(up) };
        return Some(false);
    }
    Some(io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT))
}

/// The watch for the host replacing a locked file ([`Relock`]), on an inotify instance and
/// a thread of its own: a new file under a locked name is locked as soon as its event is
/// read. On the walker's instance and thread, a relock waited for every event queued ahead
/// of it, and each directory renamed in is a walk of its tree: an agent renaming a large
/// tree to and fro held relocks back for as long as it liked, and wrote the host's new file
/// meanwhile (attack review 84). Here the only events are those of the locked files'
/// directories, and a relock costs a few `openat`s.
struct Relocker {
    inotify: OwnedFd,
    relocks: Vec<Relock>,
    /// The watch on each directory, and which of `relocks` an event there for which name
    /// concerns (the locked file's own name in its directory; for a hidden one, also each
    /// directory's name on the way in the directory above it, with its place on the way).
    wds: HashMap<i32, Vec<(usize, OsString, usize)>>,
    /// The directory each hidden entry's watch is on (`O_PATH` fds): an event there is
    /// followed in *that* directory, wherever the host has moved it since
    /// ([`Relocker::rehide`]), through every mount it was reached by (a mount stands on a
    /// name as seen through one mount only: a program of the agent whose working directory
    /// is in the pin of `a/b` still looks up names through that pin after the host's `mv
    /// a/b n2/b`, attack review 114, F2; at most [`MAX_ROUTES`]).
    dirs: HashMap<i32, Vec<OwnedFd>>,
    /// Where hidden entries are hidden again (made when there is one).
    veil: Option<Veil>,
    /// The workspace and the session's placeholder token: a hidden directory of the
    /// workspace that the host removes is made again as a marked placeholder.
    ws: PathBuf,
    token: String,
    /// Those placeholders (workspace-relative, a directory, marked), for
    /// [`Guard::placeholders`].
    made: Vec<(PathBuf, bool, bool)>,
    /// Hidden entries to look at again, and when ([`Relocker::make_again`]).
    pending: Vec<(usize, Instant)>,
    finished: bool,
}

/// The mounts a watched directory is followed through at most ([`Relocker::dirs`]).
const MAX_ROUTES: usize = 8;

/// How long a hidden directory whose way the host is removing waits before it is made
/// again ([`Relocker::make_again`]).
const REMAKE_AFTER: Duration = Duration::from_millis(20);

impl Relocker {
    /// Watches the directory of each locked file: one watch per directory, each root
    /// opened once.
    fn new(
        relocks: Vec<Relock>,
        veil: Option<Veil>,
        ws: PathBuf,
        token: String,
    ) -> Result<Relocker, GuardError> {
        let mut rl = Relocker {
            inotify: inotify_instance().map_err(GuardError::Inotify)?,
            relocks: Vec::new(),
            wds: HashMap::new(),
            dirs: HashMap::new(),
            veil,
            ws,
            token,
            made: Vec::new(),
            pending: Vec::new(),
            finished: false,
        };
        let mut roots: HashMap<PathBuf, (OwnedFd, u64)> = HashMap::new();
        let mut dirs: HashMap<(PathBuf, PathBuf), i32> = HashMap::new();
        for r in relocks {
            if r.hidden {
                let path = r.root.join(&r.rel);
                rl.relocks.push(r);
                let i = rl.relocks.len() - 1;
                // Hidden by the view's mount (or the placeholder's); once watched, looked at
                // again: what the host put there since those mounts is hidden too.
                rl.rehide(i, false, None).map_err(|e| GuardError::Protected {
                    path,
                    hint: "it is denied, and warden cannot watch its directories for the host replacing it",
                    detail: Box::new(e),
                })?;
                continue;
            }
            let parent = r.rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let key = (r.root.clone(), parent);
            let wd = match dirs.get(&key) {
                Some(&wd) => wd,
                None => {
                    let watched = (|| -> io::Result<i32> {
                        if !roots.contains_key(&r.root) {
                            let rfd = fsat::open_root_as(&r.root, r.want)?;
                            let dev = fsat::fstat(rfd.as_fd())?.st_dev;
                            roots.insert(r.root.clone(), (rfd, dev));
                        }
                        let (rfd, dev) = &roots[&r.root];
                        let d = fsat::open_dir(rfd.as_fd(), &key.1, true, Some(*dev))?;
                        inotify_watch(
                            rl.inotify.as_fd(),
                            d.as_fd(),
                            libc::IN_CREATE | libc::IN_MOVED_TO,
                        )
                    })();
                    let wd = watched.map_err(|e| GuardError::Protected {
                        path: r.root.join(&r.rel),
                        hint: "its directory cannot be watched for the host replacing the file",
                        detail: Box::new(GuardError::Io(e)),
                    })?;
                    dirs.insert(key, wd);
                    wd
                }
            };
            let name = r.rel.file_name().unwrap_or_default().to_os_string();
            rl.wds
                .entry(wd)
                .or_default()
                .push((rl.relocks.len(), name, 0));
            rl.relocks.push(r);
        }
        Ok(rl)
    }

    /// Records `d` as a way to the directory of watch `wd`, unless one through the same
    /// mount is recorded ([`Relocker::dirs`]).
    fn add_route(&mut self, wd: i32, d: BorrowedFd<'_>) -> io::Result<()> {
        let mnt = fsat::mount_id(d)?;
        let routes = self.dirs.entry(wd).or_default();
        if routes
            .iter()
            .any(|r| fsat::mount_id(r.as_fd()).is_ok_and(|m| m == mnt))
        {
            return Ok(());
        }
        if routes.len() >= MAX_ROUTES {
            routes.remove(0);
        }
        routes.push(d.try_clone_to_owned()?);
        Ok(())
    }

    /// Watches every directory from hidden entry `i`'s root down to its parent (each for
    /// the next name on the way; the parent for the entry's removal too), as far as they
    /// exist now, and returns the parent (`None`: not there). With `from` (a watched
    /// directory and the place of the name an event there concerns), the walk starts there
    /// instead: in that directory, wherever the host has moved it (`mv a a.old; ln -s a.old
    /// a`: the denied file's name went with it, and what the host puts there is hidden as
    /// before). With `live`, a directory on the way that the host made is bound onto itself
    /// (with what is mounted below it), as the start pinned those that existed: the agent
    /// cannot rename it away from the watched name; and for a hidden directory of the
    /// workspace, walked from its root, a directory on the way that the host removed or
    /// moved away is made again ([`Relocker::make_again`]). Fails on anything but a missing
    /// directory or one that is no longer a real directory (a symbolic link leads to places
    /// that are judged as themselves).
    fn watch_way(
        &mut self,
        i: usize,
        live: bool,
        force: bool,
        from: Option<(OwnedFd, usize)>,
    ) -> io::Result<Option<(OwnedFd, bool)>> {
        let r = &self.relocks[i];
        let rfd = fsat::open_root_as(&r.root, r.want)?;
        let dev = fsat::fstat(rfd.as_fd())?.st_dev;
        let remake = live && r.is_dir && r.root == self.ws && from.is_none();
        let names: Vec<OsString> = r
            .rel
            .components()
            .map(|c| c.as_os_str().to_os_string())
            .collect();
        let (start, mut dir) = match from {
            Some((d, k)) => {
                if fsat::fstat(d.as_fd())?.st_dev != dev {
                    return Ok(None);
                }
                (k, Some(d))
            }
            None => (0, None),
        };
        let mut acc: PathBuf = names[..start.min(names.len())].iter().collect();
        let mut made = false;
        for (k, name) in names.iter().enumerate().skip(start) {
            let d = dir.as_ref().map(|d| d.as_fd()).unwrap_or(rfd.as_fd());
            let leaf = k + 1 == names.len();
            let removed = if leaf {
                libc::IN_DELETE | libc::IN_MOVED_FROM
            } else {
                0
            };
            let wd = inotify_watch(
                self.inotify.as_fd(),
                d,
                libc::IN_CREATE | libc::IN_MOVED_TO | removed,
            )?;
            let list = self.wds.entry(wd).or_default();
            if !list.iter().any(|(j, n, _)| *j == i && n == name) {
                list.push((i, name.clone(), k));
            }
            self.add_route(wd, d)?;
            if leaf {
                break;
            }
            let open = |d: BorrowedFd<'_>| {
                fsat::open_beneath(
                    d,
                    Path::new(name),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )
            };
            acc.push(name);
            let fd = match open(d) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && remake => {
                    // Below a directory made here just now (empty, of course), nothing
                    // waits (attack review 111: after a three-level `rm -rf`, each level
                    // waited, and the agent made the way its own meanwhile).
                    if !self.make_again(i, d, k == 0 || made, &acc, force)? {
                        return Ok(None);
                    }
                    made = true;
                    open(d)?
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            };
            if fsat::fstat(fd.as_fd())?.st_dev != dev {
                return Err(io::Error::other(format!(
                    "{}: not on its root's file system",
                    acc.display()
                )));
            }
            let next = if live && !fsat::is_mount_root(fd.as_fd())? {
                fsat::bind_fd(fd.as_fd(), fd.as_fd(), true, false)?;
                // Below the pin from now on: the directory through its new mount.
                open(d)?
            } else {
                fd
            };
            dir = Some(next);
        }
        Ok(Some((
            match dir {
                Some(d) => d,
                None => rfd,
            },
            made,
        )))
    }

    /// Makes the directory `rel` (of hidden entry `i`'s root, the workspace) again in `dir`
    /// as a marked placeholder, before the agent can make its own there and keep a
    /// descriptor of it that reads what the host writes into it later, whatever covers the
    /// name (attack reviews 109, 110). Not yet when `dir` (not the root) is empty: the host
    /// is likely removing it (`rm -rf`, which making something in it would break with
    /// "Directory not empty"); looked at again [`REMAKE_AFTER`] later, and then made if
    /// `dir` is still there (`force`). Whether it is there now.
    fn make_again(
        &mut self,
        i: usize,
        dir: BorrowedFd<'_>,
        at_root: bool,
        rel: &Path,
        force: bool,
    ) -> io::Result<bool> {
        let listed =
            fsat::open_dir(dir, Path::new("."), false, None).and_then(|d| fsat::list(d.as_fd()));
        let gone = |e: &io::Error| matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR));
        match listed {
            Ok(v) if v.is_empty() && !at_root && !force => {
                self.later(i);
                return Ok(false);
            }
            Ok(_) => {}
            Err(e) if gone(&e) => {
                self.later(i);
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        let name = rel.file_name().unwrap_or_default();
        match fsat::make_marked(dir, name, true, &self.token) {
            Ok(Some(marked)) => self.made.push((rel.to_path_buf(), true, marked)),
            Ok(None) => {}
            // Removed meanwhile (the host's `rm -rf` went on): again later.
            Err(e) if gone(&e) => {
                self.later(i);
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        Ok(true)
    }

    /// Looks at hidden entry `i` again [`REMAKE_AFTER`] from now.
    fn later(&mut self, i: usize) {
        let at = Instant::now() + REMAKE_AFTER;
        if !self.pending.iter().any(|(j, _)| *j == i) {
            self.pending.push((i, at));
        }
    }

    /// Hides hidden entry `i` again if what stands at its name is not a mount (the host
    /// put something there): its veil, read-only, over it. Nothing there, or a symbolic
    /// link (which leads to a place judged as itself): nothing to do, but for a hidden
    /// directory of the workspace, which is made again ([`Relocker::make_again`]). (A file
    /// is not made again: that broke host tools that remove a file and create it
    /// exclusively, `git checkout`; the README states what is left.)
    fn rehide(
        &mut self,
        i: usize,
        force: bool,
        from: Option<(OwnedFd, usize)>,
    ) -> Result<(), GuardError> {
        let live = !self.finished;
        let elsewhere = from.is_some();
        let Some((parent, made)) = self.watch_way(i, live, force, from)? else {
            return Ok(());
        };
        let r = &self.relocks[i];
        let rfd = fsat::open_root_as(&r.root, r.want)?;
        let dev = fsat::fstat(rfd.as_fd())?.st_dev;
        let rel = r.rel.clone();
        let remake = live && r.is_dir && r.root == self.ws && !elsewhere;
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let open = || {
            fsat::open_beneath(
                parent.as_fd(),
                Path::new(&name),
                libc::O_PATH | libc::O_NOFOLLOW,
                0,
            )
        };
        let at_root = rel.components().count() == 1;
        let fd = match open() {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && remake => {
                if !self.make_again(i, parent.as_fd(), at_root || made, &rel, force)? {
                    return Ok(());
                }
                match open() {
                    Ok(fd) => fd,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                        self.later(i);
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        };
        let st = fsat::fstat(fd.as_fd())?;
        if st.st_mode & libc::S_IFMT == libc::S_IFLNK || fsat::is_mount_root(fd.as_fd())? {
            return Ok(());
        }
        if st.st_dev != dev {
            return Err(io::Error::other("not on its root's file system").into());
        }
        if !live {
            return Ok(());
        }
        let veil = self
            .veil
            .as_ref()
            .ok_or_else(|| io::Error::other("no veil was made"))?;
        let src = if fsat::is_dir(&st) {
            &veil.dir
        } else {
            &veil.file
        };
        fsat::bind_fd(src.as_fd(), fd.as_fd(), false, true)?;
        Ok(())
    }

    /// Directories the host moved within the workspace (`rels`, workspace-relative, seen by
    /// the walker). A directory on the way to a hidden entry that arrives below another
    /// mount than the one it was watched through (`mv a/b n2/b`: `b` was reached through
    /// the pin of `a`, and is now reached through the workspace's own mount) would have
    /// what is hidden in it hidden where the agent no longer looks (attack review 113, F4:
    /// a mount stands on a name as seen through one mount only). So its watch now goes
    /// through the path it has now, and what stands at each hidden name below it is hidden
    /// again there.
    fn moved_within(&mut self, rels: &[PathBuf]) {
        if self.finished || self.dirs.is_empty() {
            return;
        }
        let Ok(ws) = fsat::open_root(&self.ws) else {
            return;
        };
        let mut errors = Vec::new();
        for rel in rels {
            let Ok(fd) = fsat::open_beneath(
                ws.as_fd(),
                rel,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                0,
            ) else {
                continue;
            };
            let Ok(st) = fsat::fstat(fd.as_fd()) else {
                continue;
            };
            let id = (st.st_dev, st.st_ino);
            let matching: Vec<i32> = self
                .dirs
                .iter()
                .filter(|(_, v)| {
                    v.first().is_some_and(|d| {
                        fsat::fstat(d.as_fd()).is_ok_and(|s| (s.st_dev, s.st_ino) == id)
                    })
                })
                .map(|(wd, _)| *wd)
                .collect();
            for wd in matching {
                if self.add_route(wd, fd.as_fd()).is_err() {
                    continue;
                }
                let entries: Vec<(usize, usize)> = self
                    .wds
                    .get(&wd)
                    .map(|v| {
                        v.iter()
                            .filter(|(i, _, _)| self.relocks[*i].hidden)
                            .map(|(i, _, k)| (*i, *k))
                            .collect()
                    })
                    .unwrap_or_default();
                for (i, k) in entries {
                    let result = fd
                        .try_clone()
                        .map_err(GuardError::Io)
                        .and_then(|d| self.rehide(i, false, Some((d, k))));
                    if let Err(e) = result {
                        if matches!(e.errno(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)) {
                            continue;
                        }
                        let path = self.relocks[i].root.join(&self.relocks[i].rel);
                        errors.push(self.give_up(i, path, e, [
                            "the host moved a directory on the way to this denied path during the session and warden could not hide it again there, so it ended the session's processes",
                            "the host moved a directory on the way to this denied path during the session and warden could not hide it again there: the agent may read it",
                        ]));
                    }
                }
            }
        }
        for e in errors {
            eprintln!(
                "warden: workspace guard: {}",
                warden_event::text::printable(&e.to_string())
            );
        }
    }

    /// Reads every queued event and locks again what they name (everything, when events
    /// were lost); failures told on stderr.
    fn drain(&mut self) {
        let mut due: Vec<usize> = Vec::new();
        // Each (entry, watch, place on the way) an event concerns: a hidden entry is looked
        // at again in that watched directory too, wherever it is now.
        let mut hits: Vec<(usize, i32, usize)> = Vec::new();
        let mut overflow = false;
        let mut ignored = Vec::new();
        let (relocks, wds) = (&self.relocks, &self.wds);
        read_inotify(
            self.inotify.as_fd(),
            &mut [0u8; 16384],
            |wd, mask, _, name| {
                if mask & libc::IN_Q_OVERFLOW != 0 {
                    overflow = true;
                    return;
                }
                if mask & libc::IN_IGNORED != 0 {
                    ignored.push(wd);
                    return;
                }
                for (i, n, k) in wds.get(&wd).map(Vec::as_slice).unwrap_or(&[]) {
                    if n == name {
                        if !due.contains(i) {
                            due.push(*i);
                        }
                        if relocks[*i].hidden && !hits.contains(&(*i, wd, *k)) {
                            hits.push((*i, wd, *k));
                        }
                    }
                }
            },
        );
        if overflow {
            due = (0..relocks.len()).collect();
            hits = wds
                .iter()
                .flat_map(|(wd, v)| v.iter().map(move |(i, _, k)| (*i, *wd, *k)))
                .filter(|(i, _, _)| relocks[*i].hidden)
                .collect();
        }
        for wd in ignored {
            // The directory is gone: nothing more comes from its watch.
            self.dirs.remove(&wd);
            self.wds.remove(&wd);
            hits.retain(|h| h.1 != wd);
        }
        let now = Instant::now();
        let mut forced = Vec::new();
        self.pending.retain(|&(i, at)| {
            if at > now && !self.finished {
                return true;
            }
            forced.push(i);
            false
        });
        if let Err(e) = self.relock(due, &forced, &hits) {
            eprintln!(
                "warden: workspace guard: {}",
                warden_event::text::printable(&e.to_string())
            );
        }
    }

    /// How long the watch may sleep: until the next pending look ([`Relocker::later`]).
    fn sleep_ms(&self) -> i32 {
        let now = Instant::now();
        self.pending
            .iter()
            .map(|(_, at)| at.saturating_duration_since(now).as_millis() as i32 + 1)
            .min()
            .unwrap_or(200)
            .min(200)
    }

    /// Locks again every [`Relock`] in `due` whose entry is no longer a mount (the host
    /// replaced it): the host's new file read-only as itself.
    ///
    /// In the last pass (nothing in the sandbox runs any more, and a lock stands only in its
    /// dying namespace) nothing is mounted: the host's new file is only taken as it is now,
    /// for [`Relocker::changed`].
    fn relock(
        &mut self,
        mut due: Vec<usize>,
        forced: &[usize],
        hits: &[(usize, i32, usize)],
    ) -> Result<(), GuardError> {
        let mut errors = Vec::new();
        let finished = self.finished;
        due.extend(
            forced
                .iter()
                .filter(|i| !due.contains(i))
                .copied()
                .collect::<Vec<_>>(),
        );
        for i in due {
            let r = &self.relocks[i];
            let (root, want, rel) = (r.root.clone(), r.want, r.rel.clone());
            if r.hidden {
                let force = forced.contains(&i);
                let mut result = self.rehide(i, force, None);
                // Something on the way vanished while it was looked at (the host's `rm -rf`
                // goes on): looked at again shortly, or on the next event.
                if let Err(e) = &result {
                    if matches!(e.errno(), Some(libc::ENOENT | libc::ENOTDIR)) {
                        if !force {
                            self.later(i);
                        }
                        result = Ok(());
                    }
                }
                // And in each directory whose event named it, wherever that is now (gone
                // or no longer a directory on the way there: nothing to hide there).
                for &(_, wd, k) in hits.iter().filter(|h| h.0 == i) {
                    let routes: Vec<OwnedFd> = self
                        .dirs
                        .get(&wd)
                        .map(|v| v.iter().filter_map(|d| d.try_clone().ok()).collect())
                        .unwrap_or_default();
                    for d in routes {
                        if result.is_err() {
                            break;
                        }
                        result = match self.rehide(i, false, Some((d, k))) {
                            Err(e)
                                if matches!(
                                    e.errno(),
                                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                                ) =>
                            {
                                Ok(())
                            }
                            other => other,
                        };
                    }
                }
                if let Err(e) = result {
                    // Not hidden again: the host's new file would be the agent's to read.
                    errors.push(self.give_up(i, root.join(&rel), e, [
                        "the host replaced this denied path during the session and warden could not hide it again, so it ended the session's processes",
                        "the host replaced this denied path during the session and warden could not hide it again: the agent may read it",
                    ]));
                }
                continue;
            }
            let once = (|| -> Result<Option<String>, GuardError> {
                let rfd = fsat::open_root_as(&root, want)?;
                let dev = fsat::fstat(rfd.as_fd())?.st_dev;
                let fd = match fsat::open_file(rfd.as_fd(), &rel, libc::O_PATH, Some(dev)) {
                    Ok(fd) if fsat::is_mount_root(fd.as_fd())? => return Ok(None),
                    Ok(fd) => fd,
                    // Removed: not made again (see [`Relock`]); a file made there later is
                    // locked when it appears.
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                // The host's own file now: locked as itself, even with a second name (the
                // agent can link the host's temporary file before the rename): that name
                // writes it as a held descriptor would, which the last pass tells.
                let linked = linked_file(fd.as_fd(), Some(dev));
                if !finished {
                    fsat::bind_fd(fd.as_fd(), fd.as_fd(), false, true)?;
                }
                self.relocks[i].seen = Some(relock_content(rfd.as_fd(), &rel, dev)?);
                Ok(linked.map(|l| {
                    format!("locked again, but {l}: what is written through that name is told at the end")
                }))
            })();
            match once {
                Ok(None) => {}
                Ok(Some(note)) => errors.push(GuardError::Protected {
                    path: root.join(&rel),
                    hint: "the host replaced this locked file during the session, and the agent may write it: read it before the host uses it",
                    detail: Box::new(GuardError::Io(io::Error::other(note))),
                }),
                // Not locked again: the host's new file would be the agent's to write. The
                // agent's processes are ended at once (attack review 85: with the mount
                // table full, the bind failed and the agent wrote the host's new
                // settings.json); the last pass says so again.
                Err(e) => errors.push(self.give_up(i, root.join(&rel), e, [
                    "the host replaced this locked file during the session and warden could not lock it again, so it ended the session's processes; read the file before the host uses it",
                    "the host replaced this locked file during the session and warden could not lock it again: the agent may write it; read it before the host uses it",
                ])),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GuardError::Several(errors))
        }
    }

    /// Relock `i` failed with `e`: marked for the last pass, the agent's processes ended at
    /// once, and the error to tell, with `hints` (ended, not ended).
    fn give_up(
        &mut self,
        i: usize,
        path: PathBuf,
        e: GuardError,
        hints: [&'static str; 2],
    ) -> GuardError {
        self.relocks[i].failed = true;
        let ended = end_agent();
        GuardError::Protected {
            path,
            hint: if ended { hints[0] } else { hints[1] },
            detail: Box::new(e),
        }
    }

    /// The last pass's check of every file locked again: one that no longer holds what it
    /// held when locked was written through a descriptor opened before (see [`Relock`]).
    fn changed(&self) -> Vec<(PathBuf, bool)> {
        let mut out = Vec::new();
        for r in &self.relocks {
            if r.failed {
                out.push((r.root.join(&r.rel), r.hidden));
                continue;
            }
            let Some(seen) = &r.seen else { continue };
            let now = fsat::open_root_as(&r.root, r.want).and_then(|rfd| {
                let dev = fsat::fstat(rfd.as_fd())?.st_dev;
                relock_content(rfd.as_fd(), &r.rel, dev)
            });
            if now.as_ref().ok() != Some(seen) {
                out.push((r.root.join(&r.rel), false));
            }
        }
        out
    }
}

/// A config file (read-write fd) or hooks directory (directory fd) the guard locked in a
/// repository made in the session.
enum Made {
    /// A config and the entries it held before the session (kept by every sanitising).
    Config(OwnedFd, Vec<ConfigEntry>),
    Hooks(OwnedFd),
    /// The bound was reached (reported once).
    Over,
}

/// How a [`GuardError::Protected`] message starts.
pub const PROTECTED_PREFIX: &str = "protected path ";

/// Why the guard could not lock something. Every variant keeps the errno of the failing
/// call (`io::Error` sources); a refused protected path says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// `what` on `path` (workspace-relative, or a root) failed.
    #[error("{what} {}: {source}", path.display())]
    At {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file-system call without more context (the fd-based helpers of [`crate::fsat`]).
    #[error(transparent)]
    Io(#[from] io::Error),
    /// A protected path that cannot be locked as it is (a symlink, a non-regular file). Its
    /// message starts with [`PROTECTED_PREFIX`] (the supervisor reads that as a refusal of
    /// the layout, not a missing kernel feature).
    #[error("protected path {}: {detail}; {hint}", path.display())]
    Protected {
        path: PathBuf,
        detail: Box<GuardError>,
        hint: &'static str,
    },
    #[error("workspace guard: inotify_init1: {0} (needed to watch for new git repositories)")]
    Inotify(#[source] io::Error),
    #[error("{}: NUL in path", .0.display())]
    Nul(PathBuf),
    /// Several repositories failed in one pass.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Several(Vec<GuardError>),
}

impl GuardError {
    /// The errno behind the (first) error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            GuardError::At { source, .. } | GuardError::Io(source) => source.raw_os_error(),
            GuardError::Inotify(source) => source.raw_os_error(),
            GuardError::Protected { detail, .. } => detail.errno(),
            GuardError::Several(v) => v.first().and_then(|e| e.errno()),
            GuardError::Nul(_) => None,
        }
    }
}

const LINKED_HINT: &str = "warden locks paths, not files: replace it with a copy (`cp --remove-destination`) or a symlink (a symlink in the workspace is pinned)";

/// Whether the I/O error is a [`Linked`] file.
fn io_linked(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|x| x.is::<Linked>())
}

/// Whether the error is (or wraps) a [`Linked`] file.
fn is_linked(e: &GuardError) -> bool {
    match e {
        GuardError::Io(s) | GuardError::At { source: s, .. } => io_linked(s),
        GuardError::Protected { detail, .. } => is_linked(detail),
        _ => false,
    }
}

/// Names on stderr an entry the guard removed (or failed to remove) and why: a silent
/// removal read, to the agent and to the human, as a tool's own fault (attack review 125, F3).
fn removed(rel: &Path, r: io::Result<()>, why: &str) {
    let shown = warden_event::text::printable_path(rel);
    match r {
        Ok(()) => eprintln!("warden: workspace guard: removed {shown}, {why}"),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => eprintln!(
            "warden: WARNING: workspace guard: could not remove {shown}, {why} ({e}): remove it before running git there"
        ),
    }
}

fn err(what: &'static str, rel: &Path, source: io::Error) -> GuardError {
    if io_linked(&source) {
        return GuardError::Protected {
            path: rel.to_path_buf(),
            detail: Box::new(GuardError::Io(source)),
            hint: LINKED_HINT,
        };
    }
    GuardError::At {
        what,
        path: rel.to_path_buf(),
        source,
    }
}

/// A regular file with more than one name, met where the guard locks.
#[derive(Debug, thiserror::Error)]
#[error("{} has {nlink} hard links: its other names stay writable", if .below.as_os_str().is_empty() { "it".to_string() } else { format!("{:?} in it", .below) })]
struct Linked {
    below: PathBuf,
    nlink: u64,
}

/// The first regular file with more than one name at `fd` (a file, or a directory searched
/// 8 levels and 4,096 entries deep, on device `dev`): what a read-only lock of it cannot
/// hold.
fn linked_file(fd: BorrowedFd<'_>, dev: Option<u64>) -> Option<Linked> {
    fn walk(
        d: BorrowedFd<'_>,
        rel: &Path,
        dev: Option<u64>,
        depth: usize,
        budget: &mut usize,
    ) -> Option<Linked> {
        for (name, dt) in fsat::list_typed(d).ok()? {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            if dt != fsat::DT_REG && dt != fsat::DT_DIR && dt != fsat::DT_UNKNOWN {
                continue;
            }
            let Ok(st) = fsat::lstat_at(d, &name) else {
                continue;
            };
            if fsat::is_reg(&st) && st.st_nlink > 1 {
                return Some(Linked {
                    below: rel.join(&name),
                    nlink: st.st_nlink,
                });
            }
            if fsat::is_dir(&st) && depth > 0 {
                if let Ok(sub) = fsat::open_dir(d, Path::new(&name), false, dev) {
                    if let Some(l) = walk(sub.as_fd(), &rel.join(&name), dev, depth - 1, budget) {
                        return Some(l);
                    }
                }
            }
        }
        None
    }
    let st = fsat::fstat(fd).ok()?;
    if fsat::is_reg(&st) {
        return (st.st_nlink > 1).then(|| Linked {
            below: PathBuf::new(),
            nlink: st.st_nlink,
        });
    }
    if !fsat::is_dir(&st) {
        return None;
    }
    // An O_PATH fd cannot be listed: the directory itself reopened through it.
    let d = fsat::open_dir(fd, Path::new("."), false, dev).ok()?;
    walk(d.as_fd(), Path::new(""), dev, 8, &mut 4096)
}

impl Guard {
    /// Locks the protected paths and every pre-existing repository, and starts watching.
    /// Runs in init before the agent exists; any failure refuses the session.
    pub fn start(plan: &Plan, priv_dir: &Path) -> Result<Guard, GuardError> {
        // The guard keeps fds of what it locks in repositories made in the session (at most
        // max_made): init's soft limit of open files goes up to its hard limit, so an agent
        // making many repositories cannot run the guard out of fds (the agent's own limit is
        // set apart, before its exec).
        // SAFETY: getrlimit/setrlimit on a local struct.
        let max_made = unsafe {
            let mut l: libc::rlimit = std::mem::zeroed();
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                l.rlim_cur = 0;
            } else if l.rlim_cur < l.rlim_max
                && libc::setrlimit(
                    libc::RLIMIT_NOFILE,
                    &libc::rlimit {
                        rlim_cur: l.rlim_max,
                        rlim_max: l.rlim_max,
                    },
                ) == 0
            {
                l.rlim_cur = l.rlim_max;
            }
            (l.rlim_cur as usize / 2).max(1024)
        };
        let mounts_budget: Option<usize> = std::env::var("WARDEN_GUARD_MOUNTS")
            .ok()
            .and_then(|v| v.parse().ok());
        let ws = fsat::open_root_as(&plan.workspace, plan.root_id(&plan.workspace))
            .map_err(|e| err("workspace", &plan.workspace, e))?;
        let dev = fsat::fstat(ws.as_fd())
            .map_err(|e| err("workspace", &plan.workspace, e))?
            .st_dev;
        // Made outside the sandbox's user namespace ([`premake_inotify`]): an agent that
        // takes its own inotify budget does not blind the walk (attack review 114, F1); the
        // walk's own budget is bounded instead ([`State::max_watches`]).
        let inotify = inotify_instance().map_err(GuardError::Inotify)?;
        let mut exclude_extra = String::new();
        for (p, is_dir) in &plan.placeholders {
            if let Ok(r) = p.strip_prefix(&plan.workspace) {
                exclude_extra.push_str(&format!(
                    "/{}{}\n",
                    r.display(),
                    if *is_dir { "/" } else { "" }
                ));
            }
        }
        let mut st = State {
            ws,
            ws_path: plan.workspace.clone(),
            dev,
            inotify,
            wds: HashMap::new(),
            moved_out: Vec::new(),
            ids: HashMap::new(),
            max_watches: std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
                .ok()
                .and_then(|t| t.trim().parse::<usize>().ok())
                .map_or(MAX_WATCHES, |n| (n / 4).min(MAX_WATCHES)),
            arrived: Vec::new(),
            degraded: false,
            walk_max: MAX_WALK,
            unwatched: true,
            last_rescan: Instant::now(),
            preexisting: HashSet::new(),
            pre_configs: HashMap::new(),
            locked: HashSet::new(),
            pinned: HashSet::new(),
            writable_other: crate::placeholder::writable_roots(plan)
                .into_iter()
                .filter(|r| !r.starts_with(&plan.workspace))
                .collect(),
            pending: HashMap::new(),
            expected: HashSet::new(),
            priv_dir: priv_dir.to_path_buf(),
            n: 0,
            exclude_extra,
            starting: true,
            finished: false,
            bulk: Vec::new(),
            bulk_seen: HashSet::new(),
            bulk_found: Vec::new(),
            since: {
                // A second early: a file system's ctime is taken from a coarse clock.
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                (t.as_secs() as i64 - 1, i64::from(t.subsec_nanos()))
            },
            placeholders: Vec::new(),
            token: plan.placeholder_token.clone(),
            // Git reads the XDG file, then ~/.gitconfig; the last definition wins. (Read by
            // path before the agent runs: both are outside every writable root.)
            global_hooks_path: [".gitconfig", ".config/git/config"]
                .iter()
                .filter_map(|f| std::fs::read(plan.home.join(f)).ok())
                .find_map(|t| hooks_path(&String::from_utf8_lossy(&t))),
            home: plan.home.clone(),
            recheck: HashSet::new(),
            aside: Vec::new(),
            made: Vec::new(),
            max_made,
            mounts_left: Some(mounts_budget.unwrap_or(SESSION_MOUNTS)),
            mounts_all: mounts_budget.is_some(),
            mounts_out: false,
            relocker: None,
            veil: None,
        };
        st.lock_protected(plan)?;
        warden_event::timing::mark("init: guard locked protected");
        st.walk(Path::new(""), 0, &mut 0, false);
        warden_event::timing::mark("init: guard walked");
        st.process_all(true)?;
        warden_event::timing::mark("init: guard processed");
        st.starting = false;
        let rl = match st.relocker.take() {
            Some(rl) => rl,
            None => Relocker::new(Vec::new(), None, plan.workspace.clone(), String::new())?,
        };
        Ok(Guard {
            st: Arc::new(Mutex::new(st)),
            rl: Arc::new(Mutex::new(rl)),
            latch: None,
        })
    }

    /// Until `latch` says the agent was released, what the watcher finds is the host's
    /// (see [`crate::latch`]): its passes lock it as the start's walk locks what it finds,
    /// and the last pass leaves the workspace alone when no agent ran. Before [`Guard::spawn`].
    pub fn set_latch(&mut self, latch: Option<crate::latch::Latch>) {
        self.latch = latch;
    }

    /// Runs the watcher, and the locked files' watch, on threads of init for the rest of
    /// the session.
    pub fn spawn(&self) {
        let rl = self.rl.clone();
        std::thread::spawn(move || loop {
            let fd = match rl.lock() {
                Ok(r) if !r.finished => r.inotify.as_raw_fd(),
                _ => return,
            };
            // (The relocker, and its fd, live as long as the guard.)
            let ms = rl.lock().map(|r| r.sleep_ms()).unwrap_or(200);
            wait_readable(fd, ms);
            let Ok(mut r) = rl.lock() else { return };
            if r.finished {
                return;
            }
            r.drain();
        });
        let g = self.clone();
        // The latch is kept `BUSY` from the last pass (something of the host's settles).
        let mut kept = false;
        std::thread::spawn(move || loop {
            let fd = match g.st.lock() {
                Ok(s) if !s.finished => s.inotify.as_raw_fd(),
                _ => return,
            };
            wait_readable(fd, if kept { 10 } else { 50 });
            let Ok(mut s) = g.st.lock() else { return };
            if s.finished {
                return;
            }
            // The watches, added once the agent runs: each directory is watched before it
            // is listed, so what the agent makes or changes meanwhile is either listed or
            // reported by a watch; every `.git` entry and git dir found is queued again and
            // decided on what it holds then (an in-place rewrite before its watch existed
            // included).
            if s.unwatched {
                s.unwatched = false;
                s.rescan();
            }
            s.drain_events();
            let arrived = std::mem::take(&mut s.arrived);
            if !arrived.is_empty() {
                if let Ok(mut r) = g.rl.lock() {
                    r.moved_within(&arrived);
                }
            }
            if s.degraded && s.last_rescan.elapsed() >= RESCAN_EVERY {
                s.rescan();
            }
            // Not released yet (a warm spare waits): what was queued is the host's doing,
            // decided at once as the start decides (locked as it is), while the release waits
            // for this pass. Only the decisions hold the release off: the walk and the events
            // above only queue paths, which each decision opens again.
            //
            // What the host's git writes settles first, as the agent's does (a lock between
            // `git init`'s renames fails the next one, and the host's git with it), and the
            // latch stays `BUSY` until it is decided; a release that waits makes the pass
            // decide at once, as a cold start at that moment would.
            let held = kept || g.latch.as_ref().is_some_and(|l| l.begin_pass());
            if held {
                s.starting = true;
            }
            let now = held && g.latch.as_ref().is_some_and(|l| l.release_wanted());
            let done = s.process_all(now);
            if held {
                s.starting = false;
                kept = done.is_ok() && !s.pending.is_empty();
                if let (Some(l), false) = (&g.latch, kept) {
                    l.end_pass(done.is_ok());
                }
                if done.is_err() {
                    // A start would have failed: this one never begins (the release is
                    // refused; a warm spare ends and its claim starts cold).
                    end_agent();
                }
            }
            if let Err(e) = done {
                let full = |x: &GuardError| x.errno() == Some(libc::ENOSPC);
                let (out, other): (Vec<_>, Vec<_>) = match e {
                    GuardError::Several(v) => v.into_iter().partition(|x| full(x)),
                    e if full(&e) => (vec![e], Vec::new()),
                    e => (Vec::new(), vec![e]),
                };
                for e in other {
                    eprintln!(
                        "warden: workspace guard: {}",
                        warden_event::text::printable(&e.to_string())
                    );
                }
                if let Some(first) = out.first() {
                    // The mount table is full, or the guard's budget spent (an agent
                    // making repositories by the thousand: each costs several mounts):
                    // what it makes next cannot be locked. It is ended, and the last pass,
                    // with nothing left running, rescans and neutralises every repository
                    // without locks. Said once, with the first repository left unlocked.
                    s.degraded = true;
                    if !s.mounts_out {
                        s.mounts_out = true;
                        eprintln!(
                            "warden: workspace guard: no mount left to lock repositories made in the session ({}; the guard's budget is {SESSION_MOUNTS} mounts for them, about {} repositories, within the kernel's fs.mount-max; WARDEN_GUARD_MOUNTS=N in warden's environment sets another): the agent is ended, and every repository is neutralised once it is gone",
                            warden_event::text::printable(&first.to_string()),
                            SESSION_MOUNTS / 4
                        );
                    }
                    end_agent();
                }
            }
        });
    }

    /// The last pass, once nothing in the sandbox runs any more: a full rescan, and every
    /// candidate processed now (no settle delay).
    /// The placeholders the guard made for git-config targets (workspace-relative, whether a
    /// directory, whether marked with the plan's token), outermost first: for the supervisor
    /// to remove after the session.
    pub fn placeholders(&self) -> Vec<(PathBuf, bool, bool)> {
        let mut all = self
            .st
            .lock()
            .map(|s| s.placeholders.clone())
            .unwrap_or_default();
        if let Ok(rl) = self.rl.lock() {
            all.extend(rl.made.iter().cloned());
        }
        all
    }

    pub fn finish(&self) {
        let Ok(mut s) = self.st.lock() else { return };
        s.finished = true;
        s.drain_events();
        let changed = match self.rl.lock() {
            Ok(mut rl) => {
                rl.finished = true;
                rl.drain();
                rl.changed()
            }
            Err(_) => Vec::new(),
        };
        // No agent code ran (never released: a warm spare that was not claimed, a start that
        // failed): whatever is in the workspace is the host's, and stays as it is.
        if self.latch.as_ref().is_some_and(|l| !l.released()) {
            return;
        }
        for (p, hidden) in changed {
            let p = warden_event::text::printable(&p.display().to_string());
            if hidden {
                eprintln!(
                    "warden: WARNING: {p} is denied, and the host replaced it during the session, but warden could not hide it again: the agent may have read it"
                );
            } else {
                eprintln!(
                    "warden: WARNING: {p} changed after warden locked it again, or could not be locked again (the host had replaced it during the session): something in the session may have written it; read it before the host uses it"
                );
            }
        }
        // The watch saw every directory unless it was degraded (watch limit, queue overflow,
        // walk bounds) or never set up (a session over before the watcher's first pass):
        // only then is a full rescan needed to find what it missed.
        if s.degraded || s.unwatched {
            s.unwatched = false;
            s.degraded = false;
            s.walk_max = MAX_FINAL_WALK;
            s.rescan();
            if s.degraded {
                eprintln!(
                    "warden: WARNING: workspace guard: the workspace holds more than {MAX_FINAL_WALK} entries (or paths deeper than {MAX_DEPTH}); git metadata past them was not checked: before running git below {}, check `git config --list --show-origin` and the hooks directory there",
                    warden_event::text::printable(&s.ws_path.display().to_string())
                );
            }
        }
        s.bulk_pass();
        for rel in std::mem::take(&mut s.recheck) {
            s.queue(rel, Kind::Dot);
        }
        if let Err(e) = s.process_all(true) {
            eprintln!(
                "warden: workspace guard: {}",
                warden_event::text::printable(&e.to_string())
            );
        }
        s.remove_bulk_found();
        s.remove_aside();
        s.resanitise();
    }
}

/// The workspace-relative form of `target` as seen from `base` (a relative dir), or None
/// when it leaves the workspace.
fn resolve_rel(ws_path: &Path, base: &Path, target: &Path) -> Option<PathBuf> {
    let joined = if target.is_absolute() {
        target.strip_prefix(ws_path).ok()?.to_path_buf()
    } else {
        base.join(target)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Where a workspace path lands ([`State::follow_pinning`]).
enum Following {
    /// In the workspace (relative to it).
    Inside(PathBuf),
    /// Outside it: the absolute path (lexically normal past the last link).
    Outside(PathBuf),
    /// Not followed, and why.
    Unsafe(String),
}

/// Longest `.git` file read; git itself reads a gitfile whole. A longer one made in the
/// session is removed.
const GITFILE_MAX: usize = 4096;

/// The target of a `gitdir:` file, read as git reads it (`read_gitfile_gently`): the whole
/// content must start with `gitdir: `; the path is everything after it, trailing newlines
/// and carriage returns dropped, embedded newlines kept. `Ok(None)`: not a gitfile (git
/// refuses it). `Err`: a file warden will not judge (too long, a control character in the
/// path: git would take the second line as part of it).
fn gitfile_target(raw: &[u8]) -> Result<Option<PathBuf>, &'static str> {
    use std::os::unix::ffi::OsStrExt;
    if raw.len() > GITFILE_MAX {
        return Err("longer than warden reads");
    }
    let Some(rest) = raw.strip_prefix(b"gitdir: ") else {
        return Ok(None);
    };
    let mut end = rest.len();
    while end > 0 && matches!(rest[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    let path = &rest[..end];
    if path.is_empty() {
        return Ok(None);
    }
    if path.iter().any(|b| b.is_ascii_control()) {
        return Err("its path holds a control character (a newline makes git read the next line as part of the path)");
    }
    Ok(Some(PathBuf::from(std::ffi::OsStr::from_bytes(path))))
}

impl State {
    fn open_dir(&self, rel: &Path, path_only: bool) -> io::Result<OwnedFd> {
        fsat::open_dir(self.ws.as_fd(), rel, path_only, Some(self.dev))
    }

    /// Whether `t` (workspace-relative) may lie in a bulk directory (`objects`, `refs`, ...)
    /// that the walk skips ([`bulk_unwalked`]): a bulk name right below a `.git` directory.
    fn in_git_bulk(&self, t: &Path) -> bool {
        let mut acc = PathBuf::new();
        for c in t.components() {
            let c = c.as_os_str();
            if GIT_BULK.iter().any(|b| c == *b) && bulk_unwalked(&acc) {
                return true;
            }
            acc.push(c);
        }
        false
    }

    /// Whether every component of `target` (relative to the workspace directory `base`, or
    /// absolute) that a `..` steps back over is a real directory beneath the workspace (no
    /// symlink), so that dropping it by text gives what the kernel resolves.
    fn dotdot_real(&self, base: &Path, target: &Path) -> bool {
        if !target.components().any(|c| c == Component::ParentDir) {
            return true;
        }
        let joined = if target.is_absolute() {
            match target.strip_prefix(&self.ws_path) {
                Ok(t) => t.to_path_buf(),
                Err(_) => return false,
            }
        } else {
            base.join(target)
        };
        let mut cur = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::Normal(n) => cur.push(n),
                Component::CurDir => {}
                Component::ParentDir => {
                    if self.open_dir(&cur, true).is_err() || !cur.pop() {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        true
    }

    fn private_file(&mut self, content: &[u8]) -> Result<OwnedFd, GuardError> {
        self.n += 1;
        let p = self.priv_dir.join(format!("g-{}", self.n));
        std::fs::write(&p, content).map_err(|e| err("private file", &p, e))?;
        open_own(&p)
    }

    /// Binds `fd` onto itself (read-only or not) unless already done. A directory pinned
    /// writable first (the container of a hidden path, `~/.codex` around `auth.json`) and
    /// locked read-only later gets the read-only bind on top: a pin never stands in for a
    /// lock. `fd` must have been opened after any earlier bind of the same directory.
    ///
    /// In the last pass nothing is mounted: nothing in the sandbox runs any more, and a lock
    /// stands only in the sandbox's mount namespace, which ends with it; what is left to do
    /// is neutralising, and a failed lock (a full mount table) must not stop it, as it once
    /// stopped a repository's config from being sanitised after its hooks' lock failed.
    fn bind_self(&mut self, fd: BorrowedFd<'_>, readonly: bool, recursive: bool) -> io::Result<()> {
        let id = fsat::identity(fd)?;
        if self.finished || self.locked.contains(&id) || (!readonly && self.pinned.contains(&id)) {
            return Ok(());
        }
        if let Some(left) = self
            .mounts_left
            .as_mut()
            .filter(|_| self.mounts_all || !self.starting)
        {
            if *left == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            *left -= 1;
        }
        if readonly {
            // A lock stands on a path; a file with other names (hard links) stays writable
            // through them, which may lie in a writable root (attack review 61).
            if let Some(l) = linked_file(fd, Some(self.dev)) {
                return Err(io::Error::other(l));
            }
        }
        fsat::bind_fd(fd, fd, recursive, readonly)?;
        if readonly {
            self.locked.insert(id);
        } else {
            self.pinned.insert(id);
        }
        Ok(())
    }

    /// `files.protect`: containers bound onto themselves, leaves read-only (absent files
    /// show their placeholder content from a private file).
    fn lock_protected(&mut self, plan: &Plan) -> Result<(), GuardError> {
        let roots = crate::placeholder::writable_roots(plan);
        let mut containers: Vec<(PathBuf, PathBuf)> = Vec::new();
        // Hidden paths inside a writable root (the workspace at `$HOME`: `~/.config/gcloud`)
        // are covered by their read-only hide mount, but their containers are pinned too:
        // renaming `~/.config` away would take the mount along and leave the name free.
        // A writable root the user's symlink names (`~/.claude -> src/dotfiles/claude`) is a
        // leaf too: renaming a directory above it would point the host's link at whatever the
        // agent builds in its place (attack review 56).
        let leaves = plan
            .protect
            .iter()
            .map(|p| &p.path)
            .chain(&plan.hide)
            .chain(plan.relinked.iter().map(|r| &r.real))
            .chain(plan.link_pins.iter().map(|l| &l.path));
        // Every directory between *any* writable root holding a leaf and the leaf, not only
        // below the innermost one (the workspace `~/src` holding the state root
        // `~/src/dotfiles/claude`: `mv dotfiles` must fail too). Each is opened through the
        // innermost root holding it (no crossing of the inner roots' mounts).
        let mut abs: Vec<PathBuf> = Vec::new();
        for path in leaves {
            for root in roots.iter().filter(|r| path.starts_with(r) && path != *r) {
                let mut acc = root.clone();
                let rel = path.strip_prefix(root).unwrap_or(path);
                let comps: Vec<_> = rel.components().collect();
                for c in comps.iter().take(comps.len().saturating_sub(1)) {
                    acc.push(c);
                    if !abs.contains(&acc) && !roots.contains(&acc) {
                        abs.push(acc.clone());
                    }
                }
            }
        }
        for a in abs {
            let Some(root) = roots.iter().find(|r| a.starts_with(r) && a != **r) else {
                continue;
            };
            let rel = a.strip_prefix(root).unwrap_or(&a).to_path_buf();
            containers.push((root.clone(), rel));
        }
        for (root, rel) in &containers {
            let rfd = fsat::open_root_as(root, plan.root_id(root))
                .map_err(|e| err("protected root", root, e))?;
            let dev = fsat::fstat(rfd.as_fd())
                .map_err(|e| err("protected root", root, e))?
                .st_dev;
            match fsat::open_dir(rfd.as_fd(), rel, true, Some(dev)) {
                Ok(fd) => self
                    .bind_self(fd.as_fd(), false, true)
                    .map_err(|e| err("cannot pin", &root.join(rel), e))?,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    return Err(GuardError::Protected {
                        path: root.join(rel),
                        detail: Box::new(GuardError::Io(e)),
                        hint: "warden refuses to follow a symlink here (make it a real directory, or remove it)",
                    })
                }
            }
        }
        // Symlinks on the way to protected paths: a mount on the link itself (see
        // [`crate::plan::LinkPin`]), the very link the plan followed, or no session.
        for l in &plan.link_pins {
            let Some(root) = roots
                .iter()
                .find(|r| l.path.starts_with(r) && l.path != **r)
            else {
                continue;
            };
            let rel = l.path.strip_prefix(root).unwrap_or(&l.path);
            self.pin_link(root, plan.root_id(root), rel, &l.content)
                .map_err(|e| GuardError::Protected {
                    path: l.path.clone(),
                    detail: Box::new(e),
                    hint: "it is a symlink on the way to a protected path and changed while the session started; run warden again",
                })?;
        }
        let mut relocks = Vec::new();
        // Denied paths in writable roots: hidden by the view's mounts (or, absent, made as
        // placeholders and hidden below), and hidden again wherever the host replaces them.
        let hidden_here = |p: &Path| {
            roots
                .iter()
                .find(|r| p.starts_with(r) && p != r.as_path())
                .cloned()
        };
        let wants_veil = plan.hide.iter().any(|h| hidden_here(h).is_some())
            || plan.protect.iter().any(|p| p.hidden);
        if wants_veil && self.veil.is_none() {
            self.veil = Some(Veil::new(&self.priv_dir)?);
        }
        for h in &plan.hide {
            let Some(root) = hidden_here(h) else { continue };
            relocks.push(Relock {
                want: plan.root_id(&root),
                rel: h.strip_prefix(&root).unwrap_or(h).to_path_buf(),
                root,
                seen: None,
                failed: false,
                hidden: true,
                // (Read by path: init, before the agent runs, as the view's hide mounts.)
                is_dir: std::fs::symlink_metadata(h).is_ok_and(|m| m.is_dir()),
            });
        }
        for p in &plan.protect {
            let Some(root) = roots
                .iter()
                .find(|r| p.path.starts_with(r) && p.path != **r)
            else {
                continue;
            };
            // Denied and protected (`~/.config/warden`) and there: its hide mount (an empty,
            // read-only tmpfs or file) already stands over it.
            if plan.hide.iter().any(|h| p.path.starts_with(h)) {
                continue;
            }
            let rel = p.path.strip_prefix(root).unwrap_or(&p.path).to_path_buf();
            self.lock_one(
                root,
                plan.root_id(root),
                &rel,
                p.is_dir,
                p.placeholder_content,
                p.hidden,
            )
                .map_err(|e| GuardError::Protected {
                    path: p.path.clone(),
                    hint: if is_linked(&e) {
                        LINKED_HINT
                    } else {
                        "warden refuses to follow a symlink or a non-regular file there (make it a real file/directory, or remove it)"
                    },
                    detail: Box::new(e),
                })?;
            // (Git's own files in the workspace are the git watch's: a config the host
            // rewrites is sanitised there, not locked as it is.)
            let git_owned =
                *root == plan.workspace && rel.components().any(|c| c.as_os_str() == ".git");
            if p.hidden || (!p.is_dir && !git_owned) {
                relocks.push(Relock {
                    root: root.clone(),
                    want: plan.root_id(root),
                    rel,
                    seen: None,
                    failed: false,
                    hidden: p.hidden,
                    is_dir: p.is_dir,
                });
            }
        }
        self.watch_locks(relocks)
    }

    /// Hands the locked files to a [`Relocker`] (made here, before the agent runs).
    fn watch_locks(&mut self, relocks: Vec<Relock>) -> Result<(), GuardError> {
        self.relocker = Some(Relocker::new(
            relocks,
            self.veil.take(),
            self.ws_path.clone(),
            self.token.clone(),
        )?);
        Ok(())
    }

    /// Adds `mask` to the walker's watch on the verified directory `d`.
    fn inotify_watch(&self, d: BorrowedFd<'_>, mask: u32) -> io::Result<i32> {
        inotify_watch(self.inotify.as_fd(), d, mask)
    }

    /// Stands a mount on the symlink `rel` beneath `root` itself, after checking it still
    /// says `content`.
    fn pin_link(
        &mut self,
        root: &Path,
        want: Option<(u64, u64)>,
        rel: &Path,
        content: &Path,
    ) -> Result<(), GuardError> {
        let rfd = fsat::open_root_as(root, want)?;
        let dev = fsat::fstat(rfd.as_fd())?.st_dev;
        let (fd, now) = fsat::open_link(rfd.as_fd(), rel, Some(dev))?;
        if now != content {
            return Err(GuardError::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("points at {} now, not {}", now.display(), content.display()),
            )));
        }
        Ok(self.bind_self(fd.as_fd(), false, false)?)
    }

    fn lock_one(
        &mut self,
        root: &Path,
        want: Option<(u64, u64)>,
        rel: &Path,
        is_dir: bool,
        content: Option<&str>,
        hidden: bool,
    ) -> Result<(), GuardError> {
        let rfd = fsat::open_root_as(root, want)?;
        let dev = fsat::fstat(rfd.as_fd())?.st_dev;
        let open = |rfd: BorrowedFd<'_>| -> io::Result<OwnedFd> {
            if is_dir {
                fsat::open_dir(rfd, rel, true, Some(dev))
            } else {
                fsat::open_file(rfd, rel, libc::O_PATH, Some(dev))
            }
        };
        let fd = match open(rfd.as_fd()) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // The placeholder was removed between its creation and now: make it again.
                if is_dir {
                    fsat::mkdir_all(rfd.as_fd(), rel, Some(dev))?;
                } else {
                    let parent = rel.parent().unwrap_or(Path::new(""));
                    let (d, _) = fsat::mkdir_all(rfd.as_fd(), parent, Some(dev))?;
                    let name = rel.file_name().unwrap_or_default();
                    fsat::create_file(d.as_fd(), name)?;
                }
                open(rfd.as_fd())?
            }
            Err(e) => return Err(e.into()),
        };
        match content {
            // A denied directory's placeholder: an empty, unreadable one over it (bound
            // onto itself it would show what the host puts in it).
            _ if hidden && is_dir => {
                let veil = self
                    .veil
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no veil was made"))?;
                fsat::bind_fd(veil.dir.as_fd(), fd.as_fd(), false, true)?;
                Ok(())
            }
            Some(text) if !is_dir => {
                let src = self.private_file(text.as_bytes())?;
                fsat::bind_fd(src.as_fd(), fd.as_fd(), false, true)?;
                if let Ok(id) = fsat::identity(fd.as_fd()) {
                    self.locked.insert(id);
                }
                Ok(())
            }
            _ => Ok(self.bind_self(fd.as_fd(), true, is_dir)?),
        }
    }

    /// Walks `rel` (bounded): adds a watch to every directory, queues every `.git` entry and
    /// every directory that looks like a git dir.
    fn walk(&mut self, rel: &Path, depth: usize, seen: &mut usize, watch: bool) {
        // Iterative, and no directory stays open while its children are walked: the depth an
        // agent can build is bounded only by the path length (a git dir whose path is longer
        // than PATH_MAX cannot be used by the host's git: it cannot `getcwd` there), not by
        // this process's stack or descriptors. A fixed depth bound let a repository 70 deep
        // behind a flood of directories go unguarded.
        let mut stack: Vec<(PathBuf, usize)> = vec![(rel.to_path_buf(), depth)];
        while let Some((rel, depth)) = stack.pop() {
            if depth > MAX_DEPTH || *seen > self.walk_max {
                self.degraded = true;
                continue;
            }
            // Gone, not a real directory, or longer than PATH_MAX (ENAMETOOLONG).
            let Ok(fd) = self.open_dir(&rel, false) else {
                continue;
            };
            if watch {
                self.add_watch(fd.as_fd(), &rel);
            }
            if self.expected.contains(&rel) {
                self.queue(rel.clone(), Kind::GitDir);
            }
            let Ok(typed) = fsat::list_typed(fd.as_fd()) else {
                continue;
            };
            *seen += typed.len();
            let has = |n: &str| typed.iter().any(|(x, _)| x == n);
            let gitlike = git_like(&has);
            // The workspace itself too: git takes a directory holding `HEAD`, `objects` and
            // `refs` for a git dir before it looks further up (attack review 95: a workspace
            // that is a subdirectory of the user's repository, or no repository at all, made
            // into one; the host's `git status` there ran its `core.fsmonitor`). There git's
            // own test, which needs `HEAD`: a project's own `objects/` and `refs/` get no
            // `hooks/` made beside them (a `HEAD` added later is an event like any other).
            let module =
                || (has("hooks") || has("config") || has("commondir")) && self.in_modules(&rel);
            if gitlike && (!rel.as_os_str().is_empty() || has("HEAD")) || module() {
                self.queue(rel.clone(), Kind::GitDir);
            }
            for (name, dt) in &typed {
                if name == ".git" {
                    self.queue(rel.join(name), Kind::Dot);
                }
                if gitlike && GIT_BULK.iter().any(|b| name == *b) && bulk_unwalked(&rel) {
                    let b = rel.join(name);
                    if self.bulk_seen.insert(b.clone()) {
                        self.bulk.push(b);
                    }
                    continue;
                }
                // d_type saves a stat per entry; open_dir re-checks (real dir, same device).
                let is_dir = match *dt {
                    fsat::DT_DIR => true,
                    fsat::DT_UNKNOWN => {
                        fsat::lstat_at(fd.as_fd(), name).is_ok_and(|st| fsat::is_dir(&st))
                    }
                    _ => false,
                };
                if is_dir {
                    stack.push((rel.join(name), depth + 1));
                }
            }
        }
    }

    fn add_watch(&mut self, fd: BorrowedFd<'_>, rel: &Path) {
        if self.wds.len() >= self.max_watches {
            self.degraded = true;
            return;
        }
        // Added to what a locked file's watch on the same directory asks ([`Relock`]).
        let mask = libc::IN_CREATE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_CLOSE_WRITE
            | libc::IN_EXCL_UNLINK;
        let Ok(wd) = self.inotify_watch(fd, mask) else {
            self.degraded = true;
            return;
        };
        self.wds.insert(wd, rel.to_path_buf());
        if let Ok(st) = fsat::fstat(fd) {
            self.ids.insert(wd, (st.st_dev, st.st_ino));
        }
    }

    fn queue(&mut self, rel: PathBuf, kind: Kind) {
        let now = Instant::now();
        let e = self.pending.entry(rel).or_insert(Pending {
            kind,
            first: now,
            last: now,
            stamp: None,
            retries: 0,
        });
        // A `.git` entry is judged as one whatever else was queued at its path; a directory
        // that may be a git dir as one, not only as a possible link ([`Self::git_dir`] sees
        // to a link in its place too).
        if kind == Kind::Dot || kind == Kind::GitDir && e.kind == Kind::ModuleLink {
            e.kind = kind;
        }
        e.last = now;
    }

    fn rescan(&mut self) {
        self.last_rescan = Instant::now();
        let watch = !self.finished;
        self.walk(Path::new(""), 0, &mut 0, watch);
    }

    fn drain_events(&mut self) {
        let mut buf = [0u8; 65536];
        // Read, then handled (handling adds watches to the same instance), until empty.
        loop {
            let mut events = Vec::new();
            let any = read_inotify(self.inotify.as_fd(), &mut buf, |wd, mask, cookie, name| {
                events.push((wd, mask, cookie, name.to_os_string()))
            });
            for (wd, mask, cookie, name) in events {
                // A directory renamed within the workspace shows as both halves (queued by
                // the one rename); one only moved away, as the first.
                if mask & libc::IN_ISDIR != 0 && mask & libc::IN_MOVED_FROM != 0 {
                    if let Some(dir) = self.wds.get(&wd) {
                        self.moved_out.push((cookie, dir.join(&name)));
                    }
                    continue;
                }
                if mask & libc::IN_ISDIR != 0 && mask & libc::IN_MOVED_TO != 0 {
                    self.moved_out.retain(|(c, _)| *c != cookie);
                }
                self.event(wd, mask, name);
            }
            if !any {
                let moved = std::mem::take(&mut self.moved_out);
                if !moved.is_empty() {
                    // Every watched directory of the trees that left: the moved ones and
                    // what was below them.
                    let gone: HashSet<(u64, u64)> = self
                        .wds
                        .iter()
                        .filter(|(_, rel)| moved.iter().any(|(_, m)| rel.starts_with(m)))
                        .filter_map(|(wd, _)| self.ids.get(wd).copied())
                        .collect();
                    if !gone.is_empty() {
                        cut_off_moved_out(&gone);
                    }
                }
                return;
            }
        }
    }

    fn event(&mut self, wd: i32, mask: u32, name: OsString) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            self.degraded = true;
            self.rescan();
            return;
        }
        if mask & libc::IN_IGNORED != 0 {
            self.wds.remove(&wd);
            self.ids.remove(&wd);
            return;
        }
        if mask & (libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE) == 0 {
            return;
        }
        let Some(dir) = self.wds.get(&wd).cloned() else {
            return;
        };
        let child = dir.join(&name);
        if mask & libc::IN_ISDIR != 0 && mask & libc::IN_MOVED_TO != 0 {
            self.arrived.push(child.clone());
        }
        if mask & libc::IN_ISDIR != 0 && mask & (libc::IN_CREATE | libc::IN_MOVED_TO) != 0 {
            self.walk(&child, 0, &mut 0, true);
        }
        let n = name.as_bytes();
        let git_place =
            |g: &Path| g.file_name().is_some_and(|x| x == ".git") || self.expected.contains(g);
        let in_worktrees = dir.file_name().is_some_and(|x| x == "worktrees")
            && dir.parent().is_some_and(git_place);
        if n != b".git"
            && (self.in_modules(&child)
                || in_worktrees
                || (n == b"modules" || n == b"worktrees") && git_place(&dir))
        {
            self.queue(child.clone(), Kind::ModuleLink);
        }
        if n == b".git" {
            self.queue(child, Kind::Dot);
        } else if matches!(
            n,
            b"HEAD" | b"objects" | b"commondir" | b"config" | b"config.worktree" | b"hooks"
        ) {
            self.queue(dir, Kind::GitDir);
        }
    }

    /// Processes the candidates that are due (all of them when `force`).
    /// Decides what is queued: everything with `force`, else what settled. The host's
    /// repositories (`starting`: the start's walk, or a warm spare's passes before the
    /// release) are tried again when they changed under the decision ([`transient`]): at
    /// once with `force`, at the next pass without (the release waits for it: see the
    /// watcher).
    fn process_all(&mut self, force: bool) -> Result<(), GuardError> {
        let mut keys: Vec<PathBuf> = self.pending.keys().cloned().collect();
        let mut errors = Vec::new();
        loop {
            let mut again = Vec::new();
            for rel in keys {
                if !force && !self.due(&rel) {
                    continue;
                }
                let Some(mut p) = self.pending.remove(&rel) else {
                    continue;
                };
                let overdue = force || p.first.elapsed() >= MAX_WAIT;
                let r = match p.kind {
                    Kind::Dot => self.dot(&rel, overdue),
                    Kind::GitDir => self.git_dir(&rel, overdue),
                    Kind::ModuleLink => self.module_link(&rel),
                };
                match r {
                    Ok(true) => {}
                    Ok(false) => {
                        // Not ready (e.g. a `.git` directory `git init` is still filling).
                        self.pending.insert(rel, p);
                    }
                    Err(e) if self.starting && p.retries < HOST_RETRIES && transient(&e) => {
                        p.retries += 1;
                        p.last = Instant::now();
                        p.stamp = None;
                        again.push(rel.clone());
                        self.pending.insert(rel, p);
                    }
                    Err(e) => errors.push(e),
                }
            }
            if !force || again.is_empty() {
                break;
            }
            std::thread::sleep(HOST_RETRY_PAUSE);
            keys = again;
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(GuardError::Several(errors))
        }
    }

    fn due(&mut self, rel: &Path) -> bool {
        let stamp = self.config_stamp(rel);
        let lock = self
            .open_dir(rel, true)
            .ok()
            .is_some_and(|d| fsat::lstat_at(d.as_fd(), OsStr::new("config.lock")).is_ok());
        let Some(p) = self.pending.get_mut(rel) else {
            return false;
        };
        if p.first.elapsed() >= MAX_WAIT {
            return true;
        }
        if p.stamp != stamp {
            p.stamp = stamp;
            p.last = Instant::now();
            return false;
        }
        p.last.elapsed() >= SETTLE && !lock
    }

    fn config_stamp(&self, rel: &Path) -> Option<(u64, i64, i64, i64)> {
        let d = self.open_dir(rel, true).ok()?;
        let st = fsat::lstat_at(d.as_fd(), OsStr::new("config")).ok()?;
        Some((st.st_ino, st.st_mtime, st.st_mtime_nsec, st.st_size))
    }

    /// An entry named `.git`. Returns Ok(false) to be retried later.
    fn dot(&mut self, rel: &Path, overdue: bool) -> Result<bool, GuardError> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(true);
        };
        let Ok(pfd) = self.open_dir(parent, true) else {
            return Ok(true);
        };
        let Ok(st) = fsat::lstat_at(pfd.as_fd(), name) else {
            return Ok(true);
        };
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFDIR {
            let fd = self
                .open_dir(rel, true)
                .map_err(|e| err("git dir", rel, e))?;
            let id = fsat::identity(fd.as_fd()).map_err(|e| err("git dir", rel, e))?;
            if self.starting {
                self.preexisting.insert(id);
            }
            // Its hooks and config are locked first, through the workspace's own mount, and
            // the container is pinned after (a mount point cannot be renamed away and
            // replaced), recursively, so the pin carries those locks: a process whose working
            // directory was this git dir before the pin resolves names in the workspace's
            // mount, where the locks then stand too (attack review 62: `cd sub/.git` before
            // the guard came, then `>> config` wrote the locked config's other view).
            let done = self.git_dir(rel, overdue);
            if !matches!(done, Ok(false)) {
                self.bind_self(fd.as_fd(), false, true)
                    .map_err(|e| err("cannot pin git dir", rel, e))?;
            }
            return done;
        }
        let fd = fsat::open_beneath(pfd.as_fd(), Path::new(name), libc::O_PATH, 0)
            .map_err(|e| err("open", rel, e))?;
        let id = fsat::identity(fd.as_fd()).map_err(|e| err("stat", rel, e))?;
        if self.starting {
            self.preexisting.insert(id);
        }
        let pre = self.preexisting.contains(&id);
        let target = if fmt == libc::S_IFLNK {
            if !pre {
                // A `.git` symlink made in the session: git would follow it anywhere.
                removed(
                    rel,
                    fsat::unlink_at(pfd.as_fd(), name, false),
                    "a `.git` symlink made in the session (git would follow it anywhere)",
                );
                return Ok(true);
            }
            fsat::readlink_at(pfd.as_fd(), name).ok()
        } else if fmt == libc::S_IFREG {
            let f = fsat::open_file(pfd.as_fd(), Path::new(name), libc::O_RDONLY, Some(self.dev))
                .map_err(|e| err("open", rel, e))?;
            let raw = fsat::read_to_vec(f.as_fd(), GITFILE_MAX + 1).unwrap_or_default();
            match gitfile_target(&raw) {
                Ok(t) => t,
                Err(why) if !pre => {
                    removed(
                        rel,
                        fsat::unlink_at(pfd.as_fd(), name, false),
                        &format!("a gitdir file made in the session: {why}"),
                    );
                    return Ok(true);
                }
                Err(_) => None,
            }
        } else {
            None
        };
        // `..` after a component that is not a real directory (a symlink: `x/..` where
        // `x -> ~/.claude/projects/p`) is resolved by the kernel and git from the link's
        // target, not by dropping `x`: a session-made file is accepted only when every
        // component before each `..` is a real directory beneath the workspace.
        if let Some(t) = target.as_deref().filter(|_| !pre) {
            if !self.dotdot_real(parent, t) {
                removed(
                    rel,
                    fsat::unlink_at(pfd.as_fd(), name, false),
                    &format!(
                        "a gitdir file made in the session whose `..` follows a symlink or leaves the workspace ({})",
                        t.display()
                    ),
                );
                return Ok(true);
            }
        }
        if pre && fmt == libc::S_IFREG {
            // The user's `gitdir:` file (a worktree, a submodule): its content cannot change.
            self.bind_self(fd.as_fd(), true, false)
                .map_err(|e| err("cannot lock", rel, e))?;
        }
        let Some(target) = target else {
            return Ok(true);
        };
        match resolve_rel(&self.ws_path, parent, &target) {
            // Outside the workspace. The user's own (a worktree of a repository elsewhere) is
            // left. One made or changed in the session is removed: its target may be a git
            // dir in another writable root (`~/.claude/...`) with agent-written config and
            // hooks, which the host's git would load (see README, git guard).
            None if !pre => {
                removed(
                    rel,
                    fsat::unlink_at(pfd.as_fd(), name, false),
                    &format!(
                        "a gitdir file made in the session that points outside the workspace ({})",
                        target.display()
                    ),
                );
                Ok(true)
            }
            None => Ok(true),
            // Inside another git dir's objects, refs or logs (never watched: too many
            // entries), where whatever the agent adds later goes unseen: a gitdir file made in
            // the session is removed (attack review 60).
            Some(t) if !pre && self.in_git_bulk(&t) => {
                removed(
                    rel,
                    fsat::unlink_at(pfd.as_fd(), name, false),
                    &format!(
                        "a gitdir file made in the session that points into a git dir's objects, refs or logs ({})",
                        target.display()
                    ),
                );
                Ok(true)
            }
            Some(t) => match self.open_dir(&t, true) {
                Ok(_) => {
                    self.expected.insert(t.clone());
                    // A session-made gitdir file is not locked (git rewrites its own): the
                    // last pass judges it again. A `truncate(2)` by path changes it with no
                    // event the watch asks for (attack review 69: cut by one byte, an
                    // accepted `../r/.git/objectsZ` became `../r/.git/objects`, a git dir
                    // the agent had built where nothing is watched).
                    if !pre {
                        self.recheck.insert(rel.to_path_buf());
                    }
                    self.git_dir(&t, overdue)
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // Guarded when it appears (the walker checks `expected`); the `.git`
                    // file is looked at again in the last pass, in case a symlink or a
                    // non-directory appeared there instead.
                    self.expected.insert(t);
                    self.recheck.insert(rel.to_path_buf());
                    Ok(true)
                }
                Err(_) if !pre => {
                    // Through a symlink or a non-directory: neutralise the gitdir file.
                    removed(
                        rel,
                        fsat::unlink_at(pfd.as_fd(), name, false),
                        &format!(
                            "a gitdir file made in the session that points through a symlink or at a non-directory ({})",
                            target.display()
                        ),
                    );
                    Ok(true)
                }
                Err(_) => Ok(true),
            },
        }
    }

    /// Whether an item existed when the session started (recorded then).
    fn pre(&mut self, id: Id) -> bool {
        if self.starting {
            self.preexisting.insert(id);
        }
        self.preexisting.contains(&id)
    }

    /// Whether `rel` lies in a [`GIT_BULK`] directory of a `.git` (see [`State::bulk_pass`]).
    fn in_bulk(&self, rel: &Path) -> bool {
        rel.ancestors().skip(1).any(|a| self.bulk_seen.contains(a))
    }

    /// Whether `rel` is below the `modules/` directory of a git dir (a `.git` directory or a
    /// `gitdir:` target), where git keeps submodules' git dirs (nested ones included).
    fn in_modules(&self, rel: &Path) -> bool {
        rel.ancestors().skip(1).any(|a| {
            a.file_name().is_some_and(|n| n == "modules")
                && a.parent().is_some_and(|g| {
                    g.file_name().is_some_and(|n| n == ".git")
                        || self.expected.contains(g)
                        || self.in_modules(g)
                })
        })
    }

    /// The last pass's look into the [`GIT_BULK`] directories of every `.git` walked (attack
    /// review 121: a git dir the agent hid in `.git/objects/ab/wt`, `.git/refs/zz/wt` or
    /// `.git/logs/zz/wt`, reached through a workspace symlink, ran its `core.fsmonitor` at
    /// the host's `git status` there; a bare one there, named as a new repository's remote,
    /// its `pre-receive` at the host's push). Git adds entries there all the time, so they are
    /// never watched; here, once nothing of the agent's runs, every directory in them whose
    /// inode changed in the session (an entry added, removed or renamed in it, or itself
    /// moved) is walked as any directory is, so a git dir or a `.git` in it is judged as
    /// anywhere else. An unchanged directory gained no entry: it is only listed to find
    /// changed ones below it, down to the fan-out levels of `objects/` (one) and `lfs/` (two);
    /// in `refs/`, `logs/` and `rr-cache/`, at any depth.
    fn bulk_pass(&mut self) {
        while let Some(b) = self.bulk.pop() {
            let levels = match b.file_name().and_then(OsStr::to_str) {
                Some("objects") => 1,
                Some("lfs") => 3,
                _ => MAX_DEPTH,
            };
            self.changed_below(&b, levels);
        }
    }

    /// Removes the git dirs the last pass found in a `.git`'s bulk directories (already
    /// neutralised there), and names each: git makes none there, nothing in them is the
    /// host's, and one left in `refs/` makes the host's `git gc` fail (attack review 122,
    /// F2-F3). Nothing of the agent's runs any more; each is removed descriptor-relative
    /// ([`fsat::remove_tree`]).
    fn remove_bulk_found(&mut self) {
        for rel in std::mem::take(&mut self.bulk_found) {
            let shown = warden_event::text::printable(&rel.display().to_string());
            let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
                continue;
            };
            let pfd = match self.open_dir(parent, false) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "warden: workspace guard: {shown} is a git dir inside another repository's objects, refs or logs, where git makes none: it could not be removed ({e}); remove it before running git there"
                    );
                    continue;
                }
            };
            // Nothing of the host's is removed: a git dir, or anything in it, that existed
            // before the session (the host's own submodule git dir, moved there by the agent,
            // its hooks and config still locked: attack review 124) stays, and is named.
            let mut budget = 1_000_000;
            let pre = &self.preexisting;
            if !fsat::tree_is_removable(pfd.as_fd(), name, self.dev, &mut budget, &|id| {
                pre.contains(&id)
            }) {
                eprintln!(
                    "warden: workspace guard: {shown} is a git dir inside another repository's objects, refs or logs, where git makes none; it holds something that existed before the session (a repository of the host's moved there?), so warden left it as it is: move it back or remove it yourself before running git there"
                );
                continue;
            }
            let mut budget = 1_000_000;
            let r = fsat::remove_tree(pfd.as_fd(), name, self.dev, &mut budget);
            match r {
                Ok(()) => eprintln!(
                    "warden: workspace guard: removed {shown}, a git dir made inside another repository's objects, refs or logs, where git makes none"
                ),
                Err(e) => eprintln!(
                    "warden: workspace guard: {shown} is a git dir inside another repository's objects, refs or logs, where git makes none: its hooks were emptied and its config reduced, but it could not be removed ({e}); remove it before running git there"
                ),
            }
        }
    }

    fn changed_below(&mut self, root: &Path, levels: usize) {
        let mut stack = vec![(root.to_path_buf(), 0usize)];
        let mut listed = 0usize;
        while let Some((rel, depth)) = stack.pop() {
            // Nothing of the agent's runs now: a directory there that cannot be read (too
            // long a path, gone from under the host) is named, never passed over in silence
            // (attack review 125, F1).
            let read = self
                .open_dir(&rel, false)
                .and_then(|fd| fsat::list_typed(fd.as_fd()).map(|t| (fd, t)));
            let (fd, typed) = match read {
                Ok(r) => r,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => {
                    eprintln!(
                        "warden: WARNING: workspace guard: {} could not be read ({e}): a git dir there was not checked; look before running git below it",
                        warden_event::text::printable(&rel.display().to_string())
                    );
                    continue;
                }
            };
            listed += typed.len();
            if listed > self.walk_max {
                self.degraded = true;
                return;
            }
            // One listed here (unchanged, or a fan-out level) that is itself shaped as a git
            // dir is judged too, whatever its age (attack review 123: one an earlier session
            // left in `refs/` or `lfs/tmp/`, its config rewritten in place).
            let has = |n: &str| typed.iter().any(|(x, _)| x == n);
            if git_like(&has) && rel != root {
                self.queue(rel.clone(), Kind::GitDir);
            }
            for (name, dt) in typed {
                if name == ".git" {
                    self.queue(rel.join(&name), Kind::Dot);
                }
                if dt != fsat::DT_DIR && dt != fsat::DT_UNKNOWN {
                    continue;
                }
                let Ok(st) = fsat::lstat_at(fd.as_fd(), &name) else {
                    continue;
                };
                if !fsat::is_dir(&st) || st.st_dev != self.dev {
                    continue;
                }
                let child = rel.join(&name);
                if (st.st_ctime, st.st_ctime_nsec) >= self.since {
                    self.walk(&child, 0, &mut 0, false);
                } else if depth + 1 < levels {
                    stack.push((child, depth + 1));
                } else if st.st_nlink != 2 {
                    // Below the fan-out, git makes no directory: one that holds any (a
                    // directory's link count is 2 plus its subdirectories; 1 where the file
                    // system does not count them) is walked whatever its age, so a git dir
                    // an earlier session left there is judged too (attack review 122, F1).
                    self.walk(&child, 0, &mut 0, false);
                }
            }
        }
    }

    /// An entry at or below a git dir's `modules/` ([`Kind::ModuleLink`]): a symlink made
    /// in the session is removed, the host's own is followed and its landing locked (see
    /// [`Self::not_a_real`]).
    fn module_link(&mut self, rel: &Path) -> Result<bool, GuardError> {
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(true);
        };
        let Ok(pfd) = self.open_dir(parent, true) else {
            return Ok(true);
        };
        if fsat::lstat_at(pfd.as_fd(), name)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
        {
            if let Some(n) = name.to_str() {
                self.not_a_real(pfd.as_fd(), parent, n, true)?;
            } else {
                // (Git names its module dirs as the submodules are named; a name that is
                // not UTF-8 is still nothing of the host's to keep when made here.)
                removed(
                    rel,
                    fsat::unlink_at(pfd.as_fd(), name, false),
                    "a symlink below a git dir's modules/ or worktrees/, where git makes none",
                );
            }
        }
        Ok(true)
    }

    /// The symlinks at a git dir's `modules` and `worktrees` and below them (attack review
    /// 120, F3: `modules`, or `modules/sub`, a link to a git dir the agent hid in
    /// `.git/objects`, which nothing walks: the host's `git submodule update` ran its
    /// `post-checkout`). Git makes none there; one made in the session is removed, the
    /// host's own is followed and its landing locked. Directories are walked (bounded), the
    /// [`GIT_BULK`] ones of each git dir below excepted.
    fn module_links(&mut self, g: BorrowedFd<'_>, rel: &Path) -> Result<(), GuardError> {
        let mut links = Vec::new();
        let mut stack = Vec::new();
        for top in ["modules", "worktrees"] {
            let Ok(st) = fsat::lstat_at(g, OsStr::new(top)) else {
                continue;
            };
            if fsat::is_dir(&st) {
                stack.push((PathBuf::from(top), 0usize));
            } else {
                self.not_a_real(g, rel, top, true)?;
            }
        }
        let mut seen = 0usize;
        while let Some((sub, depth)) = stack.pop() {
            let Ok(d) = fsat::open_dir(g, &sub, false, Some(self.dev)) else {
                continue;
            };
            let Ok(typed) = fsat::list_typed(d.as_fd()) else {
                continue;
            };
            seen += typed.len();
            if depth > 64 || seen > 100_000 {
                self.degraded = true;
                break;
            }
            for (name, dt) in typed {
                let kind = match dt {
                    fsat::DT_UNKNOWN => fsat::lstat_at(d.as_fd(), &name)
                        .map(|st| st.st_mode & libc::S_IFMT)
                        .unwrap_or(0),
                    fsat::DT_DIR => libc::S_IFDIR,
                    libc::DT_LNK => libc::S_IFLNK,
                    _ => 0,
                };
                if kind == libc::S_IFDIR && !GIT_BULK.iter().any(|b| name == *b) {
                    stack.push((sub.join(&name), depth + 1));
                } else if kind == libc::S_IFLNK {
                    links.push(rel.join(&sub).join(name));
                }
            }
        }
        for l in links {
            self.module_link(&l)?;
        }
        Ok(())
    }

    /// A directory that may be a git dir. Returns Ok(false) to be retried later.
    fn git_dir(&mut self, rel: &Path, overdue: bool) -> Result<bool, GuardError> {
        let dot = rel.file_name().is_some_and(|n| n == ".git");
        let Ok(g) = self.open_dir(rel, false) else {
            // A link in a submodule's git dir's place: see `module_link`.
            let worktree = rel
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "worktrees");
            return if self.in_modules(rel) || worktree {
                self.module_link(rel)
            } else {
                Ok(true)
            };
        };
        let names = fsat::list(g.as_fd()).unwrap_or_default();
        let has = |n: &str| names.iter().any(|x| x == n);
        let gitlike = git_like(&has);
        // What git takes for a git dir by its place (a `.git` directory, a `gitdir:` file's
        // target) is one as soon as it holds a config or a `commondir` (attack review 117,
        // F1: a `.git` with only a `commondir` into an agent-built dir with no `objects`
        // kept it, and the host's `git init` there built a repository through it, with the
        // agent's fsmonitor and hooks).
        // A directory below a git dir's `modules/` is a submodule's git dir by its place too
        // (attack review 119, F3: one holding only `hooks/`, or a config and `hooks/`, was
        // neither emptied nor sanitised).
        let module = self.in_modules(rel);
        let named = dot || module || self.expected.contains(rel);
        // Past the wait (and in the last pass), one that holds anything at all is taken as
        // a git dir too: the host's `git init` there keeps what it finds (attack review 118,
        // F1-F2: a `.git` holding only `hooks/`, or a `hooks` symlink, kept them, and the
        // host's `git init` and `git commit` ran the agent's hook). Below `modules/`, one
        // that holds `hooks`: a submodule named `a/b` has its git dir in `modules/a/b`, and
        // `modules/a` is only its parent.
        let past_wait = overdue
            && if module {
                has("hooks")
            } else {
                named && !names.is_empty()
            };
        if !(gitlike || named && (has("config") || has("commondir")) || past_wait) {
            // `git init` has not got that far yet; the HEAD/config events bring it back.
            return Ok(!(dot || module && has("hooks")) || overdue || self.starting);
        }
        // Git makes no git dir inside another one's objects, refs or logs: whatever is found
        // there is the agent's (nothing there is recorded as the host's at the start, which
        // never looks in), neutralised, and named (attack review 122, F2).
        if self.in_bulk(rel) && !self.bulk_found.iter().any(|f| f == rel) {
            // One that existed before the session (the host's, moved there in it; attack
            // review 124) is left as it is and named: see `remove_bulk_found`.
            self.bulk_found.push(rel.to_path_buf());
        }
        let dev = Some(self.dev);
        let in_worktrees = rel
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "worktrees")
            && has("commondir");
        // A worktree's git dir takes hooks and config from its common dir (`../..`): guarded
        // as a git dir too, whatever it holds yet.
        if in_worktrees {
            if let Some(common) = rel.parent().and_then(Path::parent) {
                if !common.as_os_str().is_empty() {
                    self.queue(common.to_path_buf(), Kind::GitDir);
                }
            }
        }
        // hooks/: locked read-only; a new one's planted hooks are removed through the
        // directory fd opened before the lock (nothing can be added in between).
        // A worktree's git dir has no hooks of its own (git takes the common dir's): none is
        // made there (`git worktree remove` must still work), but one that exists is guarded
        // like any other (attack review 62: a directory named `worktrees/proj` whose hooks
        // were never looked at, run by the host's git in `proj`).
        if !in_worktrees || has("hooks") {
            if !has("hooks") {
                let _ = fsat::mkdir_all(g.as_fd(), Path::new("hooks"), dev);
            }
            match fsat::open_dir(g.as_fd(), Path::new("hooks"), false, dev) {
                Ok(h) => {
                    let id = fsat::identity(h.as_fd()).map_err(|e| err("hooks", rel, e))?;
                    let pre = self.pre(id);
                    if pre && !self.locked.contains(&id) {
                        self.bind_self(h.as_fd(), true, true)
                            .map_err(|e| err("cannot lock", &rel.join("hooks"), e))?;
                    } else if !self.locked.contains(&id) {
                        self.fresh_hooks(g.as_fd(), rel, h)?;
                    }
                }
                Err(_) => {
                    // A symlink or a file named hooks: git would follow it.
                    self.not_a_real(g.as_fd(), rel, "hooks", true)?;
                }
            }
        }
        // config and config.worktree: locked read-only (a worktree's config.worktree is
        // only sanitised, so `git worktree remove` keeps working); new ones are sanitised.
        // A repository made in the session gets an empty `config.worktree` (locked with the
        // rest on this first look) when it has none: one the agent added later would be
        // locked only in the view through the pin, not through a working directory taken in
        // this git dir before it (attack review 62), and the sanitised config may keep
        // `extensions.worktreeConfig`.
        let made_here = fsat::identity(g.as_fd()).is_ok_and(|id| !self.pre(id));
        if made_here && !in_worktrees && !has("config.worktree") {
            let _ = fsat::create_file(g.as_fd(), OsStr::new("config.worktree"));
        }
        for cfg in ["config", "config.worktree"] {
            let lock = !(in_worktrees && cfg == "config.worktree");
            self.config_file(g.as_fd(), rel, cfg, lock)?;
        }
        // commondir: git takes config and hooks from there.
        if let Ok(st) = fsat::lstat_at(g.as_fd(), OsStr::new("commondir")) {
            let f = fsat::open_file(g.as_fd(), Path::new("commondir"), libc::O_RDWR, dev);
            let id = f.as_ref().ok().and_then(|f| fsat::identity(f.as_fd()).ok());
            let pre = id.is_some_and(|id| self.pre(id)) && fsat::is_reg(&st);
            match (f, pre, in_worktrees) {
                (Ok(f), _, true) => {
                    // A worktree's git dir: its commondir is always `../..`.
                    let text = fsat::read_to_vec(f.as_fd(), 4096).unwrap_or_default();
                    if String::from_utf8_lossy(&text).trim() != "../.." {
                        let _ = fsat::rewrite(f.as_fd(), b"../..\n");
                    }
                }
                (_, false, _) => {
                    removed(
                        &rel.join("commondir"),
                        fsat::unlink_at(g.as_fd(), OsStr::new("commondir"), false),
                        "a commondir made in the session outside a worktree's git dir (git would take config and hooks from where it points)",
                    );
                }
                (Ok(f), true, false) => {
                    let _ = self.bind_self(f.as_fd(), true, false);
                }
                (Err(_), true, _) => {}
            }
        }
        self.module_links(g.as_fd(), rel)?;
        // core.hooksPath (this config's, else the user's global one) and include paths, when
        // they point into the workspace: the hooks directory and included files are locked.
        if !in_worktrees {
            let text = fsat::open_file(g.as_fd(), Path::new("config"), libc::O_RDONLY, dev)
                .ok()
                .and_then(|f| fsat::read_to_vec(f.as_fd(), 1 << 20).ok())
                .unwrap_or_default();
            let refs = config_refs(&String::from_utf8_lossy(&text));
            let hp = refs.hooks_path.or_else(|| self.global_hooks_path.clone());
            // Relative to the work tree (the git dir's parent for `.git`); `~/` as git does.
            let tree = if dot {
                rel.parent().unwrap_or(Path::new(""))
            } else {
                rel
            };
            let abs = |base: &Path, v: &str| {
                crate::gitrefs::expand(v, &self.home, Some(&self.ws_path.join(base)))
                    .and_then(|p| resolve_rel(&self.ws_path, Path::new(""), &p))
            };
            let mut targets: Vec<(PathBuf, bool, &str)> = Vec::new();
            if let Some(t) = hp.and_then(|hp| abs(tree, &hp)) {
                targets.push((t, true, "core.hooksPath"));
            }
            // Includes: relative to the including file's directory (the git dir).
            for inc in refs.includes {
                if let Some(t) = abs(rel, &inc) {
                    targets.push((t, false, "include.path"));
                }
            }
            for (t, is_dir, key) in targets {
                if tree.starts_with(&t) {
                    // The work tree itself (`core.hooksPath = .`) or above: not lockable.
                    eprintln!(
                        "warden: workspace guard: the {key} of {rel:?} names {t:?}, which \
                         contains its work tree: not locked, so hooks the agent writes there \
                         can run on the host"
                    );
                    continue;
                }
                if let Err(e) = self.lock_target(&t, is_dir) {
                    if self.starting {
                        // Before the agent runs: no session rather than an unlocked target.
                        let hint = if io_linked(&e) {
                            LINKED_HINT
                        } else {
                            "git runs what is there; make it a real directory or file in the workspace"
                        };
                        return Err(GuardError::Protected {
                            path: t.clone(),
                            detail: Box::new(GuardError::Io(e)),
                            hint,
                        });
                    }
                    eprintln!(
                        "warden: workspace guard: cannot lock {:?} (the {key} of {:?}): {e}; \
                         what the agent writes there can run on the host",
                        t, rel
                    );
                }
            }
        }
        // The top-level repository: a private info/exclude that ignores the placeholders.
        if rel == Path::new(".git") && !self.exclude_extra.is_empty() {
            self.private_exclude(g.as_fd());
        }
        Ok(true)
    }

    /// A path a git config names (hooks directory, include file), workspace-relative: an
    /// absent one is made (empty) so the agent cannot create it, every directory between the
    /// workspace and it is pinned (bound onto itself: it cannot be renamed away and rebuilt),
    /// and it is locked read-only. The workspace itself is never locked.
    fn lock_target(&mut self, t: &Path, is_dir: bool) -> io::Result<()> {
        // Through the user's own links (`tools -> lib/tools`), pinned on the way; a link out of
        // the workspace or made in the session leaves `t` as spelled, and the lock refuses it.
        let t = &match self.follow_pinning(t) {
            Following::Inside(real) => real,
            _ => t.to_path_buf(),
        };
        let (Some(parent), Some(name)) = (t.parent(), t.file_name()) else {
            return Ok(());
        };
        let dev = Some(self.dev);
        // Marked as they appear (the supervisor removes only what still carries the mark:
        // never a file of the user's made at that path meanwhile).
        let token = self.token.clone();
        let mkdir_all =
            |d: BorrowedFd<'_>, rel: &Path| -> io::Result<(OwnedFd, Vec<(PathBuf, bool)>)> {
                if token.is_empty() {
                    let (fd, made) = fsat::mkdir_all(d, rel, dev)?;
                    Ok((fd, made.into_iter().map(|p| (p, false)).collect()))
                } else {
                    fsat::mkdir_all_marked(d, rel, dev, &token)
                }
            };
        let (pd, dirs) = mkdir_all(self.ws.as_fd(), parent)?;
        let mut made: Vec<(PathBuf, bool, bool)> =
            dirs.into_iter().map(|(d, m)| (d, true, m)).collect();
        if is_dir {
            if let Some((_, m)) = mkdir_all(pd.as_fd(), Path::new(name))?.1.pop() {
                made.push((t.clone(), true, m));
            }
        } else if token.is_empty() {
            if fsat::create_file(pd.as_fd(), name)? {
                made.push((t.clone(), false, false));
            }
        } else if let Some(m) = fsat::make_marked(pd.as_fd(), name, false, &token)? {
            made.push((t.clone(), false, m));
        }
        self.placeholders.extend(made);
        let mut acc = PathBuf::new();
        for c in parent.components() {
            acc.push(c);
            let d = self.open_dir(&acc, true)?;
            self.bind_self(d.as_fd(), false, true)?;
        }
        drop(pd);
        // Opened again from the workspace: through the pins just made (a lock on an fd of
        // the covered mount would not be visible).
        let fd = if is_dir {
            self.open_dir(t, true)?
        } else {
            fsat::open_file(self.ws.as_fd(), t, libc::O_PATH, dev)?
        };
        self.bind_self(fd.as_fd(), true, is_dir)
    }

    /// `name` in git dir `g` is not a real directory/file (a symlink, ...): one made in the
    /// session is removed; a pre-existing symlink (the user's own setup) is pinned, and where
    /// it lands is locked read-only. A landing warden cannot lock that the agent could write
    /// (another writable root, or a link made in the session on the way) refuses the session
    /// at start, and is reported later.
    fn not_a_real(
        &mut self,
        g: BorrowedFd<'_>,
        rel: &Path,
        name: &str,
        want_dir: bool,
    ) -> Result<(), GuardError> {
        let n = OsStr::new(name);
        let Ok(st) = fsat::lstat_at(g, n) else {
            return Ok(());
        };
        if want_dir && fsat::is_dir(&st) {
            return Ok(());
        }
        let Ok(fd) = fsat::open_beneath(g, Path::new(name), libc::O_PATH, 0) else {
            return Ok(());
        };
        let Ok(id) = fsat::identity(fd.as_fd()) else {
            return Ok(());
        };
        if !self.pre(id) {
            let what = if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                "a symlink"
            } else {
                "an entry"
            };
            let real = if want_dir { "directory" } else { "file" };
            removed(
                &rel.join(name),
                fsat::unlink_at(g, n, fsat::is_dir(&st)),
                &format!("{what} made in the session where git reads a real {real}"),
            );
            return Ok(());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return Ok(());
        }
        // The host's own link (`hooks -> ../tools/hooks`): followed as the kernel does, each
        // link on the way pinned (a mount on the link itself), and the landing locked as a
        // git config's hooks path is: made if absent, every directory between the workspace
        // and it pinned (attack reviews 58, 59: `tools` moved away and rebuilt, `tools` itself
        // a link, an absolute link into the agent's state directory).
        let link = rel.join(name);
        let problem = match self.follow_pinning(&link) {
            Following::Inside(t) if t.as_os_str().is_empty() || rel.starts_with(&t) => {
                Some(format!("it lands on {t:?}, which contains the repository"))
            }
            Following::Inside(t) => self
                .lock_target(&t, want_dir)
                .err()
                .map(|e| format!("its landing {t:?} cannot be locked: {e}")),
            Following::Outside(abs) => {
                // As spelled, and through the links the view shows (read before the agent runs).
                let real = warden_policy::files::canonical_prefix(&abs);
                let back = [&real, &abs]
                    .into_iter()
                    .find_map(|p| p.strip_prefix(&self.ws_path).ok())
                    .map(Path::to_path_buf);
                if abs.starts_with("/proc") {
                    Some(format!("it lands on {abs:?}, which warden cannot judge"))
                } else if let Some(t) = back {
                    // Back into the workspace under another spelling (attack review 60).
                    self.lock_target(&t, want_dir)
                        .err()
                        .map(|e| format!("its landing {t:?} cannot be locked: {e}"))
                } else if let Some(r) = self
                    .writable_other
                    .iter()
                    .find(|r| abs.starts_with(r) || real.starts_with(r))
                {
                    Some(format!(
                        "it lands on {abs:?}, in {r:?}, which the agent can write"
                    ))
                } else if abs.starts_with(&self.home) && !real.exists() {
                    // In the hidden part of $HOME: the host's own links there (`~/ws-link ->
                    // the workspace`) cannot be followed from here.
                    Some(format!(
                        "it lands on {abs:?}, in the hidden part of $HOME, where warden cannot follow the host's links"
                    ))
                } else {
                    None
                }
            }
            Following::Unsafe(why) => Some(why),
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        if self.starting {
            return Err(GuardError::Protected {
                path: self.ws_path.join(&link),
                detail: Box::new(GuardError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    problem,
                ))),
                hint: "git runs what is there; make it a real directory or file, or point it at a place in the workspace",
            });
        }
        eprintln!(
            "warden: workspace guard: {link:?} is a symlink and {problem}: what the agent writes there can run on the host"
        );
        Ok(())
    }

    /// `t` (workspace-relative) followed as the kernel does, each symlink on the way pinned
    /// (a mount on the link itself: it cannot change afterwards). Links made in the session
    /// are not followed.
    fn follow_pinning(&mut self, t: &Path) -> Following {
        let comps = |p: &Path| -> Vec<OsString> {
            p.components()
                .filter_map(|c| match c {
                    Component::Normal(n) => Some(n.to_os_string()),
                    Component::ParentDir => Some(OsString::from("..")),
                    _ => None,
                })
                .rev()
                .collect()
        };
        let mut todo = comps(t);
        let mut cur = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                if !cur.pop() {
                    // Out of the workspace: the rest by text from its parent.
                    let mut abs = self
                        .ws_path
                        .parent()
                        .unwrap_or(Path::new("/"))
                        .to_path_buf();
                    for c in todo.iter().rev() {
                        abs.push(c);
                    }
                    return Following::Outside(warden_policy::normalize(&abs));
                }
                continue;
            }
            let Ok(parent) = self.open_dir(&cur, true) else {
                return Following::Unsafe(format!("{cur:?} on its way is not a real directory"));
            };
            let st = match fsat::lstat_at(parent.as_fd(), &c) {
                Ok(st) => st,
                Err(_) => {
                    // Absent from here on: the rest as spelled (`..` by text: nothing there).
                    cur.push(&c);
                    while let Some(c) = todo.pop() {
                        if c == ".." {
                            cur.pop();
                        } else {
                            cur.push(c);
                        }
                    }
                    return Following::Inside(cur);
                }
            };
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
                cur.push(&c);
                continue;
            }
            hops += 1;
            let link = cur.join(&c);
            let fd = match fsat::open_beneath(parent.as_fd(), Path::new(&c), libc::O_PATH, 0) {
                Ok(fd) if hops <= 40 => fd,
                _ => return Following::Unsafe(format!("the symlink {link:?} cannot be followed")),
            };
            match fsat::identity(fd.as_fd()) {
                Ok(id) if self.pre(id) => {}
                _ => {
                    return Following::Unsafe(format!(
                        "the symlink {link:?} on its way was made in the session"
                    ))
                }
            }
            if let Err(e) = self.bind_self(fd.as_fd(), false, false) {
                return Following::Unsafe(format!("the symlink {link:?} cannot be pinned: {e}"));
            }
            let Ok(content) = fsat::readlink_at(parent.as_fd(), &c) else {
                return Following::Unsafe(format!("the symlink {link:?} cannot be read"));
            };
            if content.is_absolute() {
                match content.strip_prefix(&self.ws_path) {
                    Ok(r) => {
                        cur = PathBuf::new();
                        todo.extend(comps(r));
                    }
                    Err(_) => {
                        let mut abs = content;
                        for c in todo.iter().rev() {
                            abs.push(c);
                        }
                        return Following::Outside(warden_policy::normalize(&abs));
                    }
                }
            } else {
                todo.extend(comps(&content));
            }
        }
        Following::Inside(cur)
    }

    /// A hooks directory made in the session: moved aside and replaced by an empty one of
    /// the guard's, which is locked; what was planted in the old one is removed (again in
    /// the last pass). A directory fd the agent opened before the lock reaches only the old
    /// one (attack review 61: a hook created through such an fd after the lock stood in the
    /// locked directory).
    fn fresh_hooks(
        &mut self,
        g: BorrowedFd<'_>,
        rel: &Path,
        old: OwnedFd,
    ) -> Result<(), GuardError> {
        let dev = Some(self.dev);
        let at = rel.join("hooks");
        // The new directory is made under a name the agent cannot guess and swapped in
        // atomically (attack review 62: between a rename aside and a mkdir, the agent put its
        // own directory at `hooks`); `hooks` must then be it.
        let aside = fsat::aside_name(OsStr::new("hooks"));
        let swapped = fsat::mkdir_all(g, Path::new(&aside), dev)
            .and_then(|_| fsat::open_dir(g, Path::new(&aside), false, dev))
            .and_then(|new| {
                fsat::exchange_in(g, &aside, OsStr::new("hooks"))?;
                let now = fsat::open_dir(g, Path::new("hooks"), true, dev)?;
                if fsat::identity(now.as_fd())? != fsat::identity(new.as_fd())? {
                    return Err(io::Error::other("hooks changed while it was replaced"));
                }
                Ok(new)
            });
        let new = match swapped {
            Ok(new) => new,
            Err(e) => {
                // Locked and emptied in place rather than not at all.
                eprintln!(
                    "warden: workspace guard: cannot replace {at:?} ({e}); locked and emptied in place"
                );
                let _ = fsat::unlink_at(g, &aside, true);
                self.bind_self(old.as_fd(), true, true)
                    .map_err(|e| err("cannot lock", &at, e))?;
                fsat::empty_dir(old.as_fd(), dev, 16);
                self.keep(Made::Hooks(old));
                return Ok(());
            }
        };
        self.bind_self(new.as_fd(), true, true)
            .map_err(|e| err("cannot lock", &at, e))?;
        self.keep(Made::Hooks(new));
        fsat::empty_dir(old.as_fd(), dev, 16);
        let _ = fsat::unlink_at(g, &aside, true);
        if fsat::lstat_at(g, &aside).is_ok() {
            let g = g
                .try_clone_to_owned()
                .map_err(|e| err("cannot replace", &at, e))?;
            self.aside.push((g, aside, old));
        }
        Ok(())
    }

    /// The last pass, with the agent gone: every config the guard locked in a repository made
    /// in the session is sanitised again and every such hooks directory emptied, through the
    /// fds it opened before locking them. A lock made after the repository's `.git` was
    /// pinned stands in the pin's view only, and a process whose working directory was that
    /// `.git` from before could write the same files through the workspace's own mount
    /// (attack review 63: a `config` made after git's first look, a submodule's git dir under
    /// `.git/modules`); whatever it wrote there is undone before the host's git can read it.
    fn keep(&mut self, m: Made) {
        let max = self.max_made;
        if self.made.len() < max {
            self.made.push(m);
        } else if self.made.len() == max {
            eprintln!(
                "warden: workspace guard: over {max} configs and hooks directories locked in repositories made in the session: the last pass sanitises the first {max} again, not the rest"
            );
            self.made.push(Made::Over);
        }
    }

    fn resanitise(&mut self) {
        let dev = Some(self.dev);
        for m in &self.made {
            match m {
                Made::Config(f, before) => sanitize_config_fd(f.as_fd(), before),
                Made::Hooks(d) => fsat::empty_dir(d.as_fd(), dev, 16),
                Made::Over => {}
            }
        }
    }

    /// Empties and removes the hooks directories moved aside ([`State::fresh_hooks`]) that
    /// were not empty yet.
    fn remove_aside(&mut self) {
        for (g, name, old) in std::mem::take(&mut self.aside) {
            fsat::empty_dir(old.as_fd(), Some(self.dev), 16);
            let _ = fsat::unlink_at(g.as_fd(), &name, true);
        }
    }

    /// Locks (`lock`) and, when made in the session, sanitises a git config file.
    fn config_file(
        &mut self,
        g: BorrowedFd<'_>,
        rel: &Path,
        name: &str,
        lock: bool,
    ) -> Result<(), GuardError> {
        let dev = Some(self.dev);
        let st = match fsat::lstat_at(g, OsStr::new(name)) {
            Ok(st) => st,
            Err(_) => return Ok(()),
        };
        if !fsat::is_reg(&st) {
            // A symlink (or anything else) named config: git would follow it.
            return self.not_a_real(g, rel, name, false);
        }
        let p = fsat::open_file(g, Path::new(name), libc::O_PATH, dev)
            .map_err(|e| err("open", &rel.join(name), e))?;
        let id = fsat::identity(p.as_fd()).map_err(|e| err("stat", &rel.join(name), e))?;
        let pre = self.pre(id);
        let git_dir = fsat::fstat(g).map(|st| (st.st_dev, st.st_ino, name.to_string()));
        // A config there at the start (locked here, or already by the plan): its entries are
        // what a replacement keeps.
        if pre {
            if let Ok(k) = &git_dir {
                if !self.pre_configs.contains_key(k) {
                    if let Ok(f) = fsat::open_file(g, Path::new(name), libc::O_RDONLY, dev) {
                        if let Ok(raw) = fsat::read_to_vec(f.as_fd(), 1 << 20) {
                            self.pre_configs
                                .insert(k.clone(), config_entries(&String::from_utf8_lossy(&raw)));
                        }
                    }
                }
            }
        }
        if self.locked.contains(&id) {
            return Ok(());
        }
        if pre {
            return self
                .bind_self(p.as_fd(), true, false)
                .map_err(|e| err("cannot lock", &rel.join(name), e));
        }
        let before: &[ConfigEntry] = git_dir
            .ok()
            .and_then(|k| self.pre_configs.get(&k))
            .map_or(&[], Vec::as_slice);
        let before = before.to_vec();
        let rw = fsat::open_file(g, Path::new(name), libc::O_RDWR, dev)
            .map_err(|e| err("open", &rel.join(name), e))?;
        if !lock {
            sanitize_config_fd(rw.as_fd(), &before);
            return Ok(());
        }
        // Made in the session: the sanitised text goes into a new file of the guard's, renamed
        // into place, and that one is locked. What the agent holds of its own file (a
        // read-write fd opened before the lock, a hard link under another name) keeps the old
        // inode, which git no longer reads here (attack review 61: `core.fsmonitor` written
        // through either after the lock, and the host's `git status` ran it).
        let clean = sanitized_config(rw.as_fd(), &before);
        let fresh = match fsat::replace_file(g, OsStr::new(name), clean.as_bytes(), 0o644) {
            Ok(f) => f,
            Err(e) => {
                // Sanitised and locked in place rather than not at all.
                eprintln!(
                    "warden: workspace guard: cannot replace {:?} ({e}); sanitised and locked in place",
                    rel.join(name)
                );
                sanitize_config_fd(rw.as_fd(), &before);
                self.bind_self(p.as_fd(), true, false)
                    .map_err(|e| err("cannot lock", &rel.join(name), e))?;
                self.keep(Made::Config(rw, before));
                return Ok(());
            }
        };
        self.bind_self(fresh.as_fd(), true, false)
            .map_err(|e| err("cannot lock", &rel.join(name), e))?;
        let fresh_id = fsat::identity(fresh.as_fd()).ok();
        self.keep(Made::Config(fresh, before));
        // The lock stands on the new file only if that is still what the name holds (a
        // rename in between would leave the agent's file there): checked through the mount.
        let now = fsat::open_file(g, Path::new(name), libc::O_PATH, dev)
            .and_then(|f| fsat::identity(f.as_fd()));
        if now.ok() != fresh_id {
            return Err(err(
                "cannot lock",
                &rel.join(name),
                io::Error::other(CHANGED_WHILE_LOCKED),
            ));
        }
        Ok(())
    }

    fn private_exclude(&mut self, g: BorrowedFd<'_>) {
        let Ok(f) = fsat::open_file(g, Path::new("info/exclude"), libc::O_RDONLY, Some(self.dev))
        else {
            return;
        };
        let Ok(id) = fsat::identity(f.as_fd()) else {
            return;
        };
        if self.locked.contains(&id) {
            return;
        }
        let mut text = fsat::read_to_vec(f.as_fd(), 1 << 20).unwrap_or_default();
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(
            b"# warden: this session's placeholders for protected paths (removed at exit)\n",
        );
        text.extend_from_slice(self.exclude_extra.as_bytes());
        let Ok(src) = self.private_file(&text) else {
            return;
        };
        let Ok(target) =
            fsat::open_file(g, Path::new("info/exclude"), libc::O_PATH, Some(self.dev))
        else {
            return;
        };
        if fsat::bind_fd(src.as_fd(), target.as_fd(), false, true).is_ok() {
            self.locked.insert(id);
        }
    }
}

struct CStringPath(std::ffi::CString);
impl CStringPath {
    fn new(p: &Path) -> Result<Self, GuardError> {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map(CStringPath)
            .map_err(|_| GuardError::Nul(p.to_path_buf()))
    }
}

/// Sanitises a config in place, keeping `before`'s entries ([`sanitize_config_keeping`]).
fn sanitize_config_fd(f: BorrowedFd<'_>, before: &[ConfigEntry]) {
    let Ok(raw) = fsat::read_to_vec(f, (1 << 20) + 1) else {
        return;
    };
    let clean = sanitized_text(&raw, before);
    if clean.as_bytes() != raw.as_slice() {
        let _ = fsat::rewrite(f, clean.as_bytes());
    }
}

/// The sanitised text of a config file (unreadable: the default config).
fn sanitized_config(f: BorrowedFd<'_>, before: &[ConfigEntry]) -> String {
    fsat::read_to_vec(f, (1 << 20) + 1)
        .map(|raw| sanitized_text(&raw, before))
        .unwrap_or_else(|_| DEFAULT_CONFIG.to_string())
}

fn sanitized_text(raw: &[u8], before: &[ConfigEntry]) -> String {
    if raw.len() > 1 << 20 {
        DEFAULT_CONFIG.to_string()
    } else {
        sanitize_config_keeping(&String::from_utf8_lossy(raw), before)
    }
}

const DEFAULT_CONFIG: &str =
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n";

/// (section, key) pairs a repository made in the session may keep: inert settings only.
/// Not `core.worktree` (attack review 64: set to a host directory outside the workspace, or
/// to the workspace's own `.git`, the host's `git checkout -- .` in that repository wrote the
/// agent's committed files there); git finds a submodule's work tree from its `.git` file.
/// Everything else (`core.fsmonitor`, `core.hooksPath`, `core.sshCommand`, `core.pager`,
/// `include*`, `filter.*`, `diff.*.textconv`, `alias.*`, `credential.*`, `url.*`,
/// `submodule.*.update`, ...) is dropped.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "repositoryformatversion",
            "filemode",
            "bare",
            "logallrefupdates",
            "ignorecase",
            "precomposeunicode",
            "symlinks",
            "autocrlf",
            "eol",
            "safecrlf",
            "quotepath",
            "checkstat",
            "trustctime",
            "sharedrepository",
            "compression",
            "bigfilethreshold",
        ],
    ),
    (
        "extensions",
        &[
            "objectformat",
            "refstorage",
            "worktreeconfig",
            "preciousobjects",
        ],
    ),
    ("init", &["defaultbranch"]),
    (
        "remote",
        &[
            "url", "pushurl", "fetch", "push", "tagopt", "mirror", "prune",
        ],
    ),
    (
        "branch",
        &["remote", "merge", "rebase", "pushremote", "description"],
    ),
    ("user", &["name", "email"]),
    ("submodule", &["url", "active", "branch"]),
    ("pull", &["rebase", "ff"]),
    ("fetch", &["prune"]),
    ("push", &["default"]),
];

/// Keeps only [`ALLOWED`] keys of a git config text, rewritten: every kept value is read
/// with git's own rules (quotes, `\\` escapes, `#`/`;` comments outside quotes, and a
/// backslash at the very end of a line, outside a comment, continuing the value on the next
/// line) and written back quoted and escaped by warden, never copied as raw text. So a line
/// git reads as a new key can never ride along with a kept one (`bare = false # \\` then
/// `fsmonitor = ...`: git ends the value at the comment, the next line is its own key). A
/// key or header git would refuse, and everything after it, is dropped.
pub fn sanitize_config(text: &str) -> String {
    sanitize_config_keeping(text, &[])
}

/// One entry of a git config as git reads it: (the section's header as written, the key in
/// lower case, the value; `None` for a bare boolean key).
pub type ConfigEntry = (String, String, Option<String>);

/// Every entry git reads from a config text, in order.
pub fn config_entries(text: &str) -> Vec<ConfigEntry> {
    let mut all = Vec::new();
    walk_config(text, &mut |h, _, k, v| {
        all.push((h.to_string(), k.to_string(), v.clone()));
        true
    });
    all
}

/// [`sanitize_config`], also keeping the entries in `before` (the text the config held before
/// the session): a config the host itself replaced during the session (`git remote add`, `git
/// config`) keeps the user's own settings (attack review 80, F4: `commit.gpgsign` and
/// `transfer.fsckObjects` were dropped), and an agent's replacement gains nothing the user did
/// not already have.
pub fn sanitize_config_keeping(text: &str, before: &[ConfigEntry]) -> String {
    walk_config(text, &mut |h, section, key, value| {
        let allowed = section.is_some_and(|s| inert(s, key));
        allowed
            || before
                .iter()
                .any(|(bh, bk, bv)| bh == h && bk == key && bv == value)
    })
}

/// Whether `section.key` (both lower case) is one of [`ALLOWED`]'s inert settings.
fn inert(section: &str, key: &str) -> bool {
    ALLOWED
        .iter()
        .any(|(sec, keys)| *sec == section && keys.contains(&key))
}

/// The entries git reads from a config text that are not among [`ALLOWED`]'s inert
/// settings (what runs or redirects something), one `header key=value` line each: what the
/// integrity report compares in a file named `config` outside any git dir, where a host's
/// `git init` would obey it (attack review 119, F1). A key before any section makes git
/// refuse the file, so none counts.
pub(crate) fn active_config_entries(text: &str) -> String {
    let mut out = String::new();
    let mut sections = false;
    let (_, to_end) = walk_config_to_end(text, &mut |h, section, key, value| {
        sections |= section.is_some();
        if !section.is_none_or(|s| inert(s, key)) {
            out.push_str(&format!(
                "{h} {key}={}\n",
                value.as_deref().unwrap_or("true")
            ));
        }
        false
    });
    // A text read as git configuration (a section with a key) that this reading could not
    // finish: git may read it otherwise, so it counts whole (fail closed). A file in
    // another format (YAML, ssh's) stops at its first line and has no section: nothing.
    if !to_end && (sections || text.lines().any(|l| l.trim_start().starts_with('['))) {
        out.push_str("(unread rest)\n");
        out.push_str(text);
    }
    out
}

/// Whether [`walk_config`] keeps an entry: `(header, section, key, value)`.
type KeepEntry<'a> = dyn FnMut(&str, Option<&str>, &str, &Option<String>) -> bool + 'a;

/// Reads a config text as git does and writes back, quoted and escaped by warden, each entry
/// `keep(header, section, key, value)` accepts; see [`sanitize_config`].
fn walk_config(text: &str, keep: &mut KeepEntry<'_>) -> String {
    walk_config_to_end(text, keep).0
}

/// [`walk_config`], and whether the text was read to its end (false: git refuses the file
/// where the walk stopped).
fn walk_config_to_end(text: &str, keep: &mut KeepEntry<'_>) -> (String, bool) {
    // Git skips a UTF-8 byte order mark at the very start (attack review 120, F1: a config
    // the report read as setting nothing because of one).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut section: Option<String> = None;
    let mut header = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        i += 1;
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        let mut rest = t;
        if t.starts_with('[') {
            let Some((name, after)) = parse_header(t) else {
                return (out, false); // git stops at a bad header: so do we (nothing after it is kept)
            };
            header = t[..t.len() - after.len()].to_string();
            out.push_str(&header);
            out.push('\n');
            section = Some(name);
            rest = after.trim_start();
            if rest.is_empty() || rest.starts_with('#') || rest.starts_with(';') {
                continue;
            }
        }
        let key: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
            .to_ascii_lowercase();
        let after = rest[key.len()..].trim_start();
        let value = if key.is_empty() {
            return (out, false);
        } else if after.is_empty() || after.starts_with('#') || after.starts_with(';') {
            None // `key` alone: boolean true
        } else if let Some(v) = after.strip_prefix('=') {
            match git_value(v, &lines, &mut i) {
                Some(v) => Some(v),
                None => return (out, false), // git refuses the file from here
            }
        } else {
            return (out, false);
        };
        if !keep(&header, section.as_deref(), &key, &value) {
            continue;
        }
        out.push('\t');
        out.push_str(&key);
        if let Some(v) = value {
            out.push_str(" = \"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => {}
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('\n');
    }
    (out, true)
}

/// A value as git reads it, from `first` (the text after `=`) and, while a backslash ends a
/// line outside a comment, the next lines of `lines` from `*next` on (advanced past them).
/// Unquoted leading and trailing blanks are dropped. `None`: git would refuse it (an escape
/// it does not know, a quote left open at the end of the line).
fn git_value(first: &str, lines: &[&str], next: &mut usize) -> Option<String> {
    let mut out = String::new();
    let mut quoted = false;
    let mut line: Vec<char> = first.chars().collect();
    // Blanks at the end of `out` that are not part of the value unless more follows.
    let mut pending = String::new();
    loop {
        let mut j = 0;
        let mut continued = false;
        while j < line.len() {
            let c = line[j];
            j += 1;
            match c {
                '\\' if j == line.len() => {
                    continued = true; // a backslash at the very end: the value goes on
                }
                '\\' => {
                    let e = line[j];
                    j += 1;
                    out.push_str(&pending);
                    pending.clear();
                    out.push(match e {
                        '\\' => '\\',
                        '"' => '"',
                        'n' => '\n',
                        't' => '\t',
                        'b' => '\u{8}',
                        _ => return None,
                    });
                }
                '"' => {
                    out.push_str(&pending);
                    pending.clear();
                    quoted = !quoted;
                }
                '#' | ';' if !quoted => break, // a comment: the line ends here
                ' ' | '\t' if !quoted => {
                    if !out.is_empty() {
                        pending.push(c);
                    }
                }
                c => {
                    out.push_str(&pending);
                    pending.clear();
                    out.push(c);
                }
            }
        }
        if !continued {
            break;
        }
        let Some(l) = lines.get(*next) else {
            break;
        };
        *next += 1;
        line = l.chars().collect();
    }
    (!quoted).then_some(out)
}

/// `[section]`, `[section "sub"]` or `[section.sub]` → (lowercased section, text after `]`).
pub(crate) fn parse_header(t: &str) -> Option<(String, &str)> {
    let b = t.as_bytes();
    let mut i = 1;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'.') {
        i += 1;
    }
    let name = t[1..i].split('.').next()?.to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i < b.len() && b[i] == b'"' {
        i += 1;
        while i < b.len() && b[i] != b'"' {
            if b[i] == b'\\' {
                i += 1;
            }
            i += 1;
        }
        i += 1;
    }
    if i < b.len() && b[i] == b']' {
        Some((name, &t[i + 1..]))
    } else {
        None
    }
}

fn hooks_path(text: &str) -> Option<String> {
    config_refs(text).hooks_path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_config_entries_are_what_is_not_inert() {
        let a = active_config_entries(
            "[core]\n\tbare = true\n\tfsmonitor = x\n[core] hooksPath = ../hk\n[user]\nname = a\n",
        );
        assert!(a.contains("fsmonitor=x"), "{a}");
        assert!(a.contains("hookspath=../hk"), "{a}");
        assert!(!a.contains("bare") && !a.contains("name"), "{a}");
        // Inert, sectionless (git refuses it) or not git's syntax: nothing.
        assert_eq!(active_config_entries("[core]\n\tbare = false\n"), "");
        assert_eq!(active_config_entries("fsmonitor = x\n"), "");
        assert_eq!(active_config_entries("apiVersion: v1\nkind: Config\n"), "");
        assert_eq!(active_config_entries("Host x\n  ProxyCommand sh\n"), "");
        // Attack review 120, F1: git skips a byte order mark.
        let a = active_config_entries("\u{feff}[core]\n\thooksPath = /x\n");
        assert!(a.contains("hookspath=/x"), "{a}");
        // A git-shaped text this reading cannot finish counts whole.
        assert!(!active_config_entries("[core]\n\tbare = true\n\t?x = y\n").is_empty());
        // The sanitiser keeps a BOM-prefixed config's inert keys.
        assert!(sanitize_config("\u{feff}[core]\n\tbare = false\n").contains("bare"));
    }

    #[test]
    fn config_allowlist() {
        let t = "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = evil\n[core] hooksPath = /x\n\
                 [remote \"origin\"]\n\turl = https://x\n\tuploadpack = evil\n[alias]\n\tx = !sh\n\
                 [include]\n\tpath = /tmp/x\n[user]\n\tname = a \\\n\tfsmonitor = b\n[filter \"a\"]\n\tclean = \\\n evil\n[core]fsmonitor=z\n";
        let c = sanitize_config(t);
        assert!(!c.contains("fsmonitor = evil"), "{c}");
        assert!(!c.contains("hooksPath"), "{c}");
        assert!(!c.contains("uploadpack"), "{c}");
        assert!(!c.contains("!sh"), "{c}");
        assert!(!c.contains("/tmp/x"), "{c}");
        assert!(!c.contains("evil"), "{c}");
        assert!(!c.contains("fsmonitor=z"), "{c}");
        assert!(c.contains("url = \"https://x\""), "{c}");
        assert!(c.contains("repositoryformatversion = \"0\""), "{c}");
        // The continuation is part of its (kept) key's value (its tab escaped), never a key
        // of its own.
        assert!(c.contains("name = \"a \\tfsmonitor = b\""), "{c}");
        assert!(!c.contains("\tfsmonitor"), "{c}");
    }

    /// Review R11: a backslash inside a comment continues nothing (git ends the value at
    /// the comment), so the next line is a key of its own and must be judged as one.
    #[test]
    fn a_backslash_in_a_comment_continues_nothing() {
        for t in [
            "[core]\n\trepositoryformatversion = 0\n\tbare = false # \\\n\tfsmonitor = \"id > /tmp/x; false\"\n",
            "[core]\n\tbare = false ; \\\n\tfsmonitor = evil\n",
            "[user]\n\tname = a\\\\\n[core] fsmonitor=evil\n",
            "[user]\n\tname = \"a # not a comment \\\" \\\n\tfsmonitor = evil\n",
        ] {
            let c = sanitize_config(t);
            assert!(!c.lines().any(|l| l.trim_start().starts_with("fsmonitor")), "{t:?} -> {c:?}");
        }
        let c = sanitize_config("[core]\n\tbare = false # \\\n\tfsmonitor = evil\n");
        assert_eq!(c, "[core]\n\tbare = \"false\"\n");
        let c = sanitize_config("[user]\n\tname = \"A \\\"B\\\" C\" # x\n");
        assert_eq!(c, "[user]\n\tname = \"A \\\"B\\\" C\"\n");
    }

    /// Attack review 80 (F4): a config the host replaced keeps what it held before the
    /// session, entry for entry (same section header, key and value); anything else that is
    /// not inert still goes.
    #[test]
    fn sanitising_keeps_the_entries_the_config_held_before() {
        let before = config_entries(
            "[core]\n\tbare = false\n[commit]\n\tgpgsign = true\n[filter \"lfs\"]\n\tclean = git-lfs clean -- %f\n",
        );
        let after = "[core]\n\tbare = false\n\tfsmonitor = evil\n[commit]\n\tgpgsign = true\n[filter \"lfs\"]\n\tclean = git-lfs clean -- %f\n[filter \"x\"]\n\tclean = git-lfs clean -- %f\n\tsmudge = evil\n";
        let c = sanitize_config_keeping(after, &before);
        assert!(c.contains("gpgsign = \"true\""), "{c}");
        assert!(
            c.contains("[filter \"lfs\"]\n\tclean = \"git-lfs clean -- %f\""),
            "{c}"
        );
        assert!(!c.contains("fsmonitor") && !c.contains("smudge"), "{c}");
        assert!(!c.contains("[filter \"x\"]\n\tclean"), "{c}");
        // Without the earlier entries, only the inert ones.
        assert!(!sanitize_config(after).contains("gpgsign"));
    }

    #[test]
    fn gitfiles_are_read_as_git_reads_them() {
        assert_eq!(
            gitfile_target(b"gitdir: ../.git/modules/a\n"),
            Ok(Some(PathBuf::from("../.git/modules/a")))
        );
        assert_eq!(
            gitfile_target(b"gitdir: x\r\n\n"),
            Ok(Some(PathBuf::from("x")))
        );
        assert_eq!(gitfile_target(b"gitdir:x\n"), Ok(None));
        assert_eq!(gitfile_target(b"nothing\n"), Ok(None));
        assert!(gitfile_target(b"gitdir: ../gd\n/../../home/.claude/projects/gd2\n").is_err());
        assert!(gitfile_target(&[b'a'; GITFILE_MAX + 1]).is_err());
    }

    #[test]
    fn resolve_stays_inside() {
        let ws = Path::new("/w");
        assert_eq!(
            resolve_rel(ws, Path::new("a"), Path::new("../b")),
            Some(PathBuf::from("b"))
        );
        assert_eq!(resolve_rel(ws, Path::new("a"), Path::new("../../b")), None);
        assert_eq!(
            resolve_rel(ws, Path::new(""), Path::new("/w/x/y")),
            Some(PathBuf::from("x/y"))
        );
        assert_eq!(resolve_rel(ws, Path::new(""), Path::new("/etc")), None);
    }

    #[test]
    fn hooks_path_found() {
        assert_eq!(
            hooks_path("[core]\n\thooksPath = .husky\n"),
            Some(".husky".into())
        );
        assert_eq!(hooks_path("[user]\n\thooksPath = x\n"), None);
        let r = config_refs(
            "[include]\n\tpath = ../shared.cfg\n[includeIf \"gitdir:~/\"]\n\tpath = x.cfg\n",
        );
        assert_eq!(
            r.includes,
            vec!["../shared.cfg".to_string(), "x.cfg".to_string()]
        );
    }
}
