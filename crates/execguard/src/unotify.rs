//! The exec-guard backend for kernels without BPF LSM: seccomp user notification, supervised
//! by `warden run` (no root needed), plus exec-event verification.
//!
//! ## What is trapped
//! A seccomp filter installed in the agent right before it execs (so it covers the agent and
//! everything it spawns) sends these to the supervisor:
//! - `execve`, `execveat`;
//! - `mmap` with `PROT_EXEC` of a file (not `MAP_ANONYMOUS`): `ld.so FILE`, `LD_PRELOAD`,
//!   `dlopen`, a custom loader mapping a file's code;
//! - `mprotect`/`pkey_mprotect` adding `PROT_EXEC`: decided on the mapping's file;
//! - with `[audit] record_writes` ([`install_filter_with`]): `open`/`openat` with a write flag
//!   and `creat`, for the record only (answered CONTINUE; see `Guard::note_write`);
//! - with `[files] ask_write` ([`install_filter_opts`]): the same write opens and `openat2`;
//!   a write open of an ask entry waits for a human on a thread of its own, and an allowed
//!   one gets a descriptor warden opened itself ([`crate::writeask`]).
//!
//! ## What is recorded beyond exec decisions
//! The supervisor sees some of the sandbox's silent blocks here, and records them as
//! `sandbox` decisions with the rule named by a lookup `warden run` sets: an `execve` that
//! will fail with ENOENT because the view hides the path ([`Guard::set_hidden_lookup`]), and
//! a write open that will fail with EROFS because the target lies on a read-only mount of
//! the view ([`Guard::set_readonly_lookup`]; resolved with `O_PATH` in the agent's root and
//! checked with `fstatvfs`, nothing opened for reading or writing). Neither changes a
//! verdict: the kernel's errno stands.
//!
//! ## Deciding on the content the kernel will run
//! - Mappings are decided on the descriptor itself, taken from the trapping thread with
//!   `pidfd_getfd` (its own table: `PIDFD_THREAD`): there is no path to race. The descriptor
//!   table and the address space are shared with other threads, though, and the kernel uses
//!   the syscall's own arguments after the answer; so every thread sharing them is stopped
//!   from before the check until the trapped thread is back ([`crate::hold`]).
//! - `execve` names a path that the kernel resolves *after* the supervisor answers, so a
//!   second thread can rewrite the string, or a rename can swap the file, between check and
//!   exec. The pre-check (path resolved in the agent's root and cwd with `openat2(
//!   RESOLVE_IN_ROOT)`, content hashed, `EACCES` on deny) gives the agent a readable refusal;
//!   the guarantee comes from the second check: the supervisor traces the agent's process
//!   tree (`PTRACE_SEIZE` with `PTRACE_O_TRACEEXEC`, auto-attaching forks/clones) and at every
//!   `PTRACE_EVENT_EXEC` stop — after the kernel loaded the new image, before its first
//!   instruction — hashes `/proc/PID/exe`, the very file the kernel mapped, and kills the
//!   process on a denied identity. The racing test in `tests/exec_guard.rs` swaps a denied
//!   binary in for an allowed one in a tight loop and asserts the denied code never ran.
//! - Shebang scripts: the pre-check hashes the script and its interpreter (up to 4 levels);
//!   the post-exec check sees the interpreter. An ELF file's program interpreter
//!   (`PT_INTERP`, which the kernel maps and runs without another exec: any file can be
//!   named there) is judged by the pre-check the same way, and the post-exec check decides
//!   every file the kernel mapped besides the image (`/proc/PID/maps`), so a swap of the
//!   interpreter file between the two is caught.
//! - The exec stop's short path: when the pre-check allowed the image on cached content the
//!   agent cannot write, and the image is a 64-bit x86-64 program (the ELF loader never runs
//!   one with `READ_IMPLIES_EXEC`) with no program interpreter or one whose file and path
//!   the agent cannot change (every directory and link on the path, and the file, outside
//!   its write roots: [`WriteScope::path_changeable`], walked once per interpreter every
//!   [`INTERP_FRESH`]), the exec stop only compares the loaded image's stamp with the one
//!   decided: nothing else the kernel mapped can differ from what was decided. Anything else
//!   takes the full check below. Saves ~35 µs of each spawn's ~100 µs of guard work.
//! - Hashes are cached by (dev, inode, size, mtime, ctime) only for files the agent cannot
//!   write ([`WriteScope`]): a write through a shared writable mapping dirtied before the
//!   file was hashed changes content without touching any stamp field, so a stamp proves
//!   nothing about a file the agent could ever have opened for write. Files in a write root
//!   or a private tmpfs (decided on the opened file: its device, its link count, and the
//!   kernel's own name for it, never the path the agent passed) are hashed again at every
//!   decision unless an inotify watch placed before the last read, a writer probe and the
//!   stamp show the file unchanged since ([`crate::kept`]: for this session only), including
//!   the post-exec check, and their entries are dropped from the persistent cache. The
//!   post-exec check decides on `/proc/PID/exe`, which the kernel keeps write-denied
//!   (`ETXTBSY`) from the exec's open on, so what is decided is what was loaded.
//! - `mprotect` adding `PROT_EXEC` is decided on every file mapping the range touches.
//! - A file the agent can write ([`WriteScope::writable`]) could be rewritten after its
//!   mapping was decided, and a private mapping's clean pages follow the page cache: an
//!   executable mapping of it is made from a sealed copy of the bytes decided
//!   ([`crate::snapshot`]); `mprotect(+PROT_EXEC)` of its mapping and its use as a program
//!   interpreter, where no copy can stand in, are refused (`exec.writable_code`).
//! - `READ_IMPLIES_EXEC` (set by the ELF loader for a 32-bit image without `PT_GNU_STACK`,
//!   inherited through exec) would make every readable mapping executable with no
//!   `PROT_EXEC` to trap: the exec stop kills such a process (`exec.read_implies_exec`).
//! - memfd and deleted/anonymous files cannot be identified by a path a human can allow:
//!   their exec and executable mapping are denied in enforce mode unless `exec.allow_memfd`.
//!
//! ## Asking a human
//! In allowlist mode with `exec.ask_unknown` (and an [`ExecApprover`] set by `warden run`),
//! the pre-check of a direct exec of unknown content does not deny at once: the
//! notification is answered later, from a thread that waits for the session's approval
//! registry (full argv, path, SHA-256), while this loop keeps answering everything else.
//! A grant is bound to the hash: allow-once admits one exec of that content (the post-exec
//! check consumes it), allow-session every exec of it; a deny, the deadline or a process
//! gone meanwhile is `EACCES`. Executable mappings of unknown content never ask.
//!
//! ## Failing closed
//! If the supervisor dies, the kernel fails every trapped syscall with `ENOSYS`, the tracer's
//! `PTRACE_O_EXITKILL` kills every traced process, and the sandbox's init dies with
//! `warden run` (PDEATHSIG), taking the pid namespace with it. Any error while deciding
//! (unreadable file, unresolvable path, vanished process) is a denial in enforce mode.
//! Hashing is bounded ([`crate::identity::Limit`]): a file an agent can write larger than
//! [`MAX_HASH_BYTES`] or still hashing after [`HASH_DEADLINE`], or one no agent can write
//! still hashing after [`deadline_for`] its size (at most a minute), is denied under rule
//! `exec.hash_limit`; the latter is hashed on in the background and cached
//! ([`Cache::finish_in_background`]), so a retry is a cache hit.

// Deferred lints (issue 17): this file was being rewritten in parallel; fix and remove.
#![allow(clippy::undocumented_unsafe_blocks, clippy::too_many_arguments)]

pub use crate::cache::Cache;
use crate::hold::{Finish, Hold, Shared};
use crate::identity::{
    deadline_for, fstat, hex, over_limit, sha256_fd_within, FileStamp, Hash, Limit, HASH_DEADLINE,
    MAX_HASH_BYTES,
};
use crate::rules::{how_to_allow, ExecRules, Verdict};
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use warden_event::{Decision, Layer, Verdict as V};
use warden_policy::exec::ExecAction;

const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
const PROT_WRITE: u64 = libc::PROT_WRITE as u64;
/// `personality(2)` flag: `PROT_READ` implies `PROT_EXEC`.
const READ_IMPLIES_EXEC: u32 = 0x0040_0000;

/// Installs the user-notification filter in the calling process and returns the listener.
/// Runs in the agent process right before exec (no_new_privs already set).
pub fn install_filter() -> std::io::Result<OwnedFd> {
    install_filter_with(false)
}

/// [`install_filter`], plus (with `watch_writes`) write opens for the supervisor to record
/// (see `Guard::note_write`; `[audit] record_writes`).
pub fn install_filter_with(watch_writes: bool) -> std::io::Result<OwnedFd> {
    install_filter_opts(watch_writes, false)
}

/// [`install_filter_with`], plus (with `ask_writes`, `[files] ask_write`) the same write
/// opens and every `openat2` (whose flags the filter cannot read) for the write-ask
/// supervisor ([`crate::writeask`]).
pub fn install_filter_opts(watch_writes: bool, ask_writes: bool) -> std::io::Result<OwnedFd> {
    install_filter_all(watch_writes, ask_writes, false)
}

/// [`install_filter_opts`]; with `anonymous_exec` (allowlist mode) an `mmap` of anonymous
/// memory with `PROT_EXEC` traps too (see `Guard::anonymous_code`).
pub fn install_filter_all(
    watch_writes: bool,
    ask_writes: bool,
    anonymous_exec: bool,
) -> std::io::Result<OwnedFd> {
    let f = filter_all(watch_writes, ask_writes, anonymous_exec)?;
    f.load().map_err(filter_io)?;
    let fd = f.get_notify_fd().map_err(filter_io)?;
    // SAFETY: libseccomp hands us ownership of the listener fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn filter_io(e: libseccomp::error::SeccompError) -> std::io::Error {
    std::io::Error::other(format!("exec guard filter: {e}"))
}

/// The filter [`install_filter_opts`] loads, built but not loaded (to be exported as a BPF
/// program by the supervisor and loaded by the agent with a new listener).
pub fn filter_opts(watch_writes: bool, ask_writes: bool) -> std::io::Result<ScmpFilterContext> {
    filter_all(watch_writes, ask_writes, false)
}

/// The filter [`install_filter_all`] loads, built but not loaded.
pub fn filter_all(
    watch_writes: bool,
    ask_writes: bool,
    anonymous_exec: bool,
) -> std::io::Result<ScmpFilterContext> {
    let watch_writes = watch_writes || ask_writes;
    let io = filter_io;
    let mut f = ScmpFilterContext::new(ScmpAction::Allow).map_err(io)?;
    f.set_act_badarch(ScmpAction::KillProcess).map_err(io)?;
    let sys = |n: &str| ScmpSyscall::from_name(n).map_err(io);
    f.add_rule(ScmpAction::Notify, sys("execve")?).map_err(io)?;
    f.add_rule(ScmpAction::Notify, sys("execveat")?)
        .map_err(io)?;
    let exec_map = ScmpArgCompare::new(2, ScmpCompareOp::MaskedEqual(PROT_EXEC), PROT_EXEC);
    let file_map =
        ScmpArgCompare::new(3, ScmpCompareOp::MaskedEqual(libc::MAP_ANONYMOUS as u64), 0);
    let conds: &[ScmpArgCompare] = if anonymous_exec {
        &[exec_map]
    } else {
        &[exec_map, file_map]
    };
    f.add_rule_conditional(ScmpAction::Notify, sys("mmap")?, conds)
        .map_err(io)?;
    for n in ["mprotect", "pkey_mprotect"] {
        f.add_rule_conditional(
            ScmpAction::Notify,
            sys(n)?,
            &[ScmpArgCompare::new(
                2,
                ScmpCompareOp::MaskedEqual(PROT_EXEC),
                PROT_EXEC,
            )],
        )
        .map_err(io)?;
    }
    // Write opens (observation only, answered CONTINUE): the supervisor records those that
    // the sandbox refuses with EROFS (see Guard::note_write). Opens for reading never trap.
    let write_traps: &[(&str, u32)] = if watch_writes {
        &[("open", 1), ("openat", 2)]
    } else {
        &[]
    };
    for &(n, arg) in write_traps {
        for bit in WRITE_OPEN_BITS {
            f.add_rule_conditional(
                ScmpAction::Notify,
                sys(n)?,
                &[ScmpArgCompare::new(
                    arg,
                    ScmpCompareOp::MaskedEqual(bit),
                    bit,
                )],
            )
            .map_err(io)?;
        }
    }
    if watch_writes {
        f.add_rule(ScmpAction::Notify, sys("creat")?).map_err(io)?;
    }
    if ask_writes {
        f.add_rule(ScmpAction::Notify, sys("openat2")?)
            .map_err(io)?;
    }
    Ok(f)
}

/// Open flags that make an open a write attempt (any one of them traps).
const WRITE_OPEN_BITS: [u64; 4] = [
    libc::O_WRONLY as u64,
    libc::O_RDWR as u64,
    libc::O_CREAT as u64,
    libc::O_TRUNC as u64,
];

/// Write attempts recorded per path before the rest are dropped (log volume).
const WRITES_PER_PATH: u64 = 20;

/// The part of a notification the guard reads.
#[derive(Default, Clone, Copy)]
pub(crate) struct SeccompData {
    pub(crate) nr: i32,
    pub(crate) args: [u64; 6],
}
/// One seccomp user notification.
#[derive(Default, Clone, Copy)]
pub(crate) struct Notif {
    pub(crate) id: u64,
    pub(crate) pid: u32,
    pub(crate) data: SeccompData,
}

/// The kernel's notification interface, through libseccomp: `seccomp_notify_receive`,
/// `_respond` and `_id_valid` size the kernel's structs at run time
/// (`seccomp_notify_alloc(3)`), so nothing here depends on a header's layout. The one
/// ioctl libseccomp 2.5 has no call for, `SECCOMP_IOCTL_NOTIF_ADDFD`, is in
/// [`crate::writeask`].
pub(crate) mod notif {
    use super::{Notif, SeccompData};
    use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
    use std::os::fd::RawFd;

    /// The next notification; `None` when there is none to read (its process was killed
    /// between the poll and the read: `ENOENT`), or on any other error.
    pub(crate) fn receive(lfd: RawFd) -> Option<Notif> {
        let req = ScmpNotifReq::receive(lfd).ok()?;
        Some(Notif {
            id: req.id,
            pid: req.pid,
            data: SeccompData {
                nr: req.data.syscall.as_raw_syscall(),
                args: req.data.args,
            },
        })
    }

    /// Lets the system call run (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`).
    pub(crate) fn allow(lfd: RawFd, id: u64) {
        // An error means the process is gone (or the id was answered): nothing waits.
        let _ = ScmpNotifResp::new_continue(id, ScmpNotifRespFlags::empty()).respond(lfd);
    }

    /// Fails the system call with `errno`.
    pub(crate) fn deny(lfd: RawFd, id: u64, errno: i32) {
        let _ = ScmpNotifResp::new(id, 0, -errno, 0).respond(lfd);
    }

    /// Whether the notification still stands (its process still waits in that call).
    pub(crate) fn id_valid(lfd: RawFd, id: u64) -> bool {
        libseccomp::notify_id_valid(lfd, id).is_ok()
    }

    /// Asks the kernel (Linux 6.6+) to hand the CPU over on both legs of each round trip
    /// (`SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`): a trapped process wakes the supervisor on
    /// its own CPU, where it then waits, and the answer wakes it on the supervisor's. Without
    /// it each leg is a wake-up on another CPU, an inter-processor interrupt (a VM exit on
    /// a virtual machine). Whether the kernel took it; the answers are the same either way.
    pub(crate) fn sync_wake_up(lfd: RawFd) -> bool {
        /// `SECCOMP_IOW(4, __u64)`: `_IOW('!', 4, u64)`.
        const SECCOMP_IOCTL_NOTIF_SET_FLAGS: libc::c_ulong = 0x4008_2104;
        const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: libc::c_ulong = 1;
        // SAFETY: an ioctl on our listener; the flags go by value.
        unsafe {
            libc::ioctl(
                lfd,
                SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
            ) == 0
        }
    }
}

pub struct Guard {
    pub rules: Arc<RwLock<ExecRules>>,
    pub cache: Arc<Cache>,
    /// What the agent can write: stamps of these files are never trusted.
    scope: WriteScope,
    /// (stamp, hash) of writable files already logged as allowed this session (log volume
    /// only; never consulted for a verdict).
    logged: Mutex<HashSet<(FileStamp, Hash)>>,
    /// Allowlist mode with `exec.ask_unknown`: where an exec of unknown content asks.
    approver: Option<Arc<dyn ExecApprover>>,
    /// Exec-ask state (boxed: most sessions never ask).
    asks: Box<AskState>,
    /// Names the rule that hides a path from the sandbox's view (set by `warden run`): an
    /// exec that fails with ENOENT on such a path is recorded as a sandbox decision.
    hidden: Option<HiddenLookup>,
    /// Names the rule behind a read-only path (set by `warden run`): a write open refused
    /// with EROFS is recorded as a sandbox decision.
    readonly: Option<HiddenLookup>,
    /// Write attempts recorded per path (see [`WRITES_PER_PATH`]).
    writes: Mutex<std::collections::HashMap<String, u64>>,
    /// `[files] ask_write`: writes to these protected files wait for a human.
    write_asks: Option<crate::writeask::WriteAsks>,
    /// Program interpreters (`PT_INTERP` paths) a pre-check allowed: not opened again by
    /// later pre-checks. The pre-check of an interpreter only turns a denial into `EACCES`
    /// before the exec; what the kernel mapped is decided by the post-exec check.
    /// The flag: the agent can change neither the interpreter nor what its path resolves to
    /// (see [`ExecClean::complete`]).
    /// Entries older than [`INTERP_FRESH`] are decided again (the rules may have changed, or
    /// the host replaced the file).
    interps: Mutex<HashMap<String, (bool, Instant)>>,
    /// The stamp of the executable an exec pre-check allowed, by pid, when its content came
    /// from the cache and nobody could write it: the post-exec check then only compares the
    /// loaded image's stamp with it.
    /// Entries older than [`EXEC_CLEAN_FOR`] are not used (an exec that failed leaves one
    /// behind; a thread's exec is reported under its leader's pid).
    exec_clean: Mutex<HashMap<u32, ExecClean>>,
    /// Reaps a multi-threaded process's exited threads while this guard seizes one of its
    /// threads (see [`crate::hold::Reaper`]).
    reaper: crate::hold::Reaper,
    /// The cgroup the agent's tree joined (see [`Guard::set_sandbox_cgroup`]).
    sandbox_cgroup: Option<PathBuf>,
    /// Sealed copies that executable mappings of files the agent can write are made from.
    snapshots: crate::snapshot::Snapshots,
    /// Hashes of files the agent can write, while unchanged (see [`crate::kept`]).
    kept: crate::kept::KeptHashes,
}

/// What an exec pre-check learnt of an image allowed on cached content nobody could write.
#[derive(Clone, Copy)]
struct ExecClean {
    stamp: FileStamp,
    at: Instant,
    /// Nothing else to check at the exec stop once the loaded image has `stamp`: a 64-bit
    /// x86-64 program (never `READ_IMPLIES_EXEC`) with no program interpreter, or one whose
    /// interpreter's file and path the agent cannot change (so the kernel maps the file
    /// decided).
    complete: bool,
}

/// How long an allowed program interpreter is not decided again by the pre-checks (nor,
/// when the agent cannot change it, at the exec stop).
const INTERP_FRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// A file at least this large, not in the hash cache, is announced on stderr before it is
/// hashed (see [`Guard::identify`]).
const NOTE_HASHING_FROM: u64 = 64 << 20;

/// How long a clean pre-check stands in for the post-exec check of the same image.
const EXEC_CLEAN_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// Entries kept in [`Guard::interps`] and [`Guard::exec_clean`] before they are emptied.
const PRECHECK_MEMO: usize = 1024;

#[derive(Default)]
struct AskState {
    /// Content a human allowed: for the session, and once (a count per hash, consumed by
    /// the post-exec check of the exec it was granted for).
    granted: Mutex<Granted>,
    /// Set by the pre-check when it would ask instead of deny (the supervisor thread only).
    ask: Mutex<Option<(Hash, String)>>,
}

#[derive(Default)]
struct Granted {
    session: HashSet<Hash>,
    once: std::collections::HashMap<Hash, u32>,
}

/// A human's allow for an exec ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Once,
    Session,
}

/// The channel to a human for an exec of unknown content (allowlist mode with
/// `exec.ask_unknown`). [`ExecApprover::ask`] blocks (on a thread of its own: the
/// supervisor keeps answering other notifications while the exec waits) until a human
/// answers or the deadline denies.
pub trait ExecApprover: Send + Sync {
    /// `argv` as the agent passed it, `path` the program, `sha256` its content (what the
    /// grant is bound to). `Err(why)` denies.
    fn ask(&self, argv: &[String], path: &str, sha256: &str, pid: u32) -> Result<Grant, String>;
}

/// For an absolute path the agent tried to exec and that does not exist in its view: the
/// (rule, reason) that hides it, or `None` when nothing does (it is simply absent).
pub type HiddenLookup = Arc<dyn Fn(&std::path::Path) -> Option<(String, String)> + Send + Sync>;

/// Whether a cached identity may be used for a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The agent cannot write it.
    Yes,
    /// The agent can (or may be able to) write it: hash afresh, never cache.
    No,
    /// Outside every write root, but owned by warden's uid or the agent's, or group- or
    /// world-writable (an agent of another session, or a writer that existed before, could
    /// hold it open for write): the cache may vouch for it only while nobody holds it open
    /// for write (a read-lease probe). A change behind an
    /// unchanged stamp needs a writer that existed when the hash was taken (a shared
    /// writable mapping dirtied before); a writer that opens later changes ctime (the cache
    /// takes no entry for a file changed in the last two seconds, timestamps being coarse).
    IfUnwritten,
}

/// The files the agent can write, or could have mapped writable: the hash cache never
/// vouches for them.
///
/// The agent writes only below its Landlock write roots and in its private tmpfs trees.
/// A file is trusted to keep the content its stamp was hashed with when, on the descriptor
/// the supervisor holds:
/// - its file system is not tmpfs/ramfs (every private tree is one), and
/// - the kernel's name for it (`/proc/self/fd/N`, not the path the agent passed) lies
///   outside every write root, and so do the directories above it by identity
///   ([`WriteScope::walked_outside`]), and it has a single link, or the agent's uid cannot write
///   it, or nobody holds it open for write ([`Trust::IfUnwritten`]). The agent cannot move
///   a file into or out of a write root (Landlock refuses links and renames from read-only
///   directories); a second link, made on the host, could be inside one, hence the link
///   count.
///
/// A device is never evidence: what lies beneath a write root may be on any device (a
/// btrfs subvolume the agent makes with one unprivileged ioctl has a device number of its
/// own, as has a file system the host mounted inside the workspace), and Landlock lets the
/// agent write all of it (attack review 84: a file in such a subvolume counted as not
/// writable, so it was mapped executable without a sealed copy, and rewritten).
///
/// Without Landlock confining writes ([`WriteScope::unconfined`], the default) nothing is
/// trusted and every decision hashes.
#[derive(Debug, Default)]
pub struct WriteScope {
    roots: Vec<PathBuf>,
    confined: bool,
    /// Placements already found (`true`: outside every write root), by mount, inode,
    /// ctime and link count. A file's own rename or link changes its ctime; a rename of
    /// a parent does not, and that is the one move it misses: the agent cannot make it
    /// (Landlock refuses renames out of read-only directories), and a file moved into a
    /// write root from outside still gets the writer check ([`Trust::IfUnwritten`]),
    /// whose stamp every write changes.
    placed: Mutex<HashMap<Placement, bool>>,
    /// [`WriteScope::walked_outside`]'s answers, kept as `placed`.
    walked: Mutex<HashMap<Placement, bool>>,
    /// The write roots in the agent's view ([`WriteScope::root_ids`]).
    root_ids: OnceLock<Vec<crate::mounts::Root>>,
    /// The agent's mount table, for [`WriteScope::walk_up`]; `placed` and `walked` hold
    /// answers for one generation of it ([`WriteScope::memo`]).
    reach: Mutex<(crate::mounts::Reach, u64)>,
    /// Whether a mount (by unique id: a mount's file system never changes) is of a type in
    /// [`UNTRUSTED_FS`], as `fstatfs` told.
    private_fs: Mutex<HashMap<u64, bool>>,
    /// warden's effective uid (it never changes in the supervisor).
    euid: OnceLock<u32>,
    /// Paths [`WriteScope::path_changeable`] found the agent cannot change, with the file
    /// they named and when: the answer stands for that file for [`INTERP_FRESH`], as the
    /// guard's interpreter decisions do (filled ahead by [`Guard::warm`] too).
    stable: Mutex<HashMap<String, StableFile>>,
    /// The host writable roots of the other sessions live when this one's first answer was
    /// needed ([`WriteScope::with_other_sessions`]).
    others: OnceLock<Vec<PathBuf>>,
    /// Where they are read from.
    other_roots: Option<OtherRoots>,
    /// When this scope was made (`CLOCK_REALTIME`, s and ns), before the agent's first
    /// process: a file whose inode changed since (a link or unlink moves its change time)
    /// is not vouched for by a read-only mount ([`WriteScope::under_root_writable`]).
    since: (i64, i64),
    /// Whether a read-only mount below a write root may vouch for a file at all: only once
    /// the other sessions are known ([`WriteScope::with_other_sessions`]); a scope made
    /// without them vouches for nothing there.
    relax: bool,
}

/// Reads the other live sessions' host writable roots (see [`WriteScope::with_other_sessions`]).
#[derive(Clone)]
pub struct OtherRoots(pub Arc<dyn Fn() -> Vec<PathBuf> + Send + Sync>);

impl std::fmt::Debug for OtherRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtherRoots")
    }
}

/// Value of [`WriteScope::stable`]: the file (dev, ino) the path named, and when.
type StableFile = ((u64, u64), Instant);

/// Key of [`WriteScope::placed`]: mount, dev, ino, ctime (s, ns), link count.
type Placement = (MountId, u64, u64, i64, i64, u64);

/// `st`'s [`Placement`] on `mount` (`None` without a mount id).
fn placement(st: &libc::stat, mount: Option<MountId>) -> Option<Placement> {
    mount.map(|m| {
        (
            m,
            st.st_dev,
            st.st_ino,
            st.st_ctime,
            st.st_ctime_nsec,
            st.st_nlink,
        )
    })
}

/// File systems whose stamps never vouch for content: tmpfs and ramfs (every private tree
/// is one); overlayfs (the package caches: the upper layer, on tmpfs, is the agent's, and a
/// writer of that layer's file is no writer of the overlay's inode for the lease check);
/// FUSE, NFS and SMB (content can change behind the kernel), as the BPF backend treats them.
const UNTRUSTED_FS: [i64; 7] = [
    0x0102_1994, // tmpfs
    0x8584_58f6, // ramfs
    0x794c_7630, // overlayfs
    0x6573_5546, // fuse
    0x6969,      // nfs
    0xfe53_4d42, // smb2
    0xff53_4d42, // cifs
];

/// Inserts into one of the guard's memo maps, emptying it first when it holds `cap` entries
/// (memos only: a forgotten entry costs a system call again, never a decision).
fn remember<K: Eq + std::hash::Hash, V>(m: &Mutex<HashMap<K, V>>, k: K, v: V, cap: usize) {
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    if m.len() >= cap {
        m.clear();
    }
    m.insert(k, v);
}

/// Entries kept in [`WriteScope::placed`] before it is emptied.
const PLACEMENTS_KEPT: usize = 4096;

/// The mount a file is on (`statx`): the unique id (Linux 6.8+, never reused), else the
/// reusable one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MountId {
    pub id: u64,
    pub unique: bool,
}

/// `stat(2)` of `path` (following links: `/proc/PID/exe` gives the loaded image).
fn stat_path(path: &str) -> std::io::Result<libc::stat> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a writable stat.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8; not in the libc crate yet).
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// `fstat` and the file's mount in one `statx` call (the guard's decision needs both, once
/// per exec, mapping and post-exec check). The `stat` is filled as `fstat` fills it, so
/// stamps taken either way are equal.
pub fn stat_fd(fd: BorrowedFd<'_>) -> std::io::Result<(libc::stat, Option<MountId>)> {
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx on a descriptor we hold, with an empty path; `sx` is writable.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS | STATX_MNT_ID_UNIQUE,
            &mut sx,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if sx.stx_mask & libc::STATX_BASIC_STATS != libc::STATX_BASIC_STATS {
        // A file system that leaves basic fields out: ask fstat for them.
        return fstat(fd).map(|st| (st, None));
    }
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    st.st_dev = libc::makedev(sx.stx_dev_major, sx.stx_dev_minor);
    st.st_ino = sx.stx_ino;
    st.st_mode = u32::from(sx.stx_mode);
    st.st_nlink = u64::from(sx.stx_nlink);
    st.st_uid = sx.stx_uid;
    st.st_gid = sx.stx_gid;
    st.st_rdev = libc::makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
    st.st_size = sx.stx_size as i64;
    st.st_blksize = i64::from(sx.stx_blksize);
    st.st_blocks = sx.stx_blocks as i64;
    st.st_atime = sx.stx_atime.tv_sec;
    st.st_atime_nsec = i64::from(sx.stx_atime.tv_nsec);
    st.st_mtime = sx.stx_mtime.tv_sec;
    st.st_mtime_nsec = i64::from(sx.stx_mtime.tv_nsec);
    st.st_ctime = sx.stx_ctime.tv_sec;
    st.st_ctime_nsec = i64::from(sx.stx_ctime.tv_nsec);
    let mount = if sx.stx_mask & STATX_MNT_ID_UNIQUE != 0 {
        Some(MountId {
            id: sx.stx_mnt_id,
            unique: true,
        })
    } else if sx.stx_mask & libc::STATX_MNT_ID != 0 {
        Some(MountId {
            id: sx.stx_mnt_id,
            unique: false,
        })
    } else {
        None
    };
    Ok((st, mount))
}

impl WriteScope {
    /// Writes confined (by Landlock) to `roots`: write roots and private tmpfs trees, as
    /// real paths (they are canonicalized here; the sandbox binds them at the same paths).
    pub fn confined(roots: impl IntoIterator<Item = PathBuf>) -> WriteScope {
        // Both spellings: the real path (a root outside the private trees is seen there) and
        // the given one (a root inside them is bound at the given path).
        let mut all: Vec<PathBuf> = Vec::new();
        for r in roots {
            if let Ok(c) = std::fs::canonicalize(&r) {
                all.push(c);
            }
            all.push(r);
        }
        all.sort();
        all.dedup();
        WriteScope {
            roots: all,
            confined: true,
            placed: Mutex::default(),
            walked: Mutex::default(),
            reach: Mutex::default(),
            root_ids: OnceLock::new(),
            private_fs: Mutex::default(),
            euid: OnceLock::new(),
            stable: Mutex::default(),
            others: OnceLock::new(),
            other_roots: None,
            since: {
                let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
                (t.tv_sec, t.tv_nsec)
            },
            relax: false,
        }
    }

    /// A file below another live session's writable root is writable: that session's agent
    /// can rewrite it under a mapping of this one's (attack review 91: a directory one
    /// session binds read-only is another's workspace). Read once, when first needed; a
    /// session that starts later cannot make this one's read-only binds writable (it locks
    /// them, see `warden_sandbox::placeholder::other_sessions`).
    ///
    /// `earliest`: the start (`CLOCK_REALTIME` seconds) of the earliest other live session:
    /// a change another session's agent made to a file before this one began (it unlinked
    /// a second name it keeps open: attack review 93) counts as this session's. `recorded`:
    /// whether this session is in the records the others read; without that, nothing on a
    /// read-only mount is vouched for.
    pub fn with_other_sessions(
        mut self,
        read: OtherRoots,
        earliest: Option<i64>,
        recorded: bool,
    ) -> WriteScope {
        self.other_roots = Some(read);
        if let Some(e) = earliest {
            self.since = self.since.min((e, 0));
        }
        // Change times as coarse as 2 s (vfat; ext4 with small inodes: 1 s).
        self.since.0 -= 2;
        self.relax = recorded;
        self
    }

    fn in_other_session(&self, name: &str) -> bool {
        let Some(read) = &self.other_roots else {
            return false;
        };
        let name = std::path::Path::new(name);
        self.others
            .get_or_init(|| (read.0)())
            .iter()
            .any(|r| name.starts_with(r))
    }

    /// Writes not confined: no stamp is trusted.
    pub fn unconfined() -> WriteScope {
        WriteScope::default()
    }

    /// Whether the cache may vouch for the file behind `fd` (stat `st`), opened for agent
    /// `pid`. Any doubt answers [`Trust::No`].
    ///
    /// Outside this session's write roots is not enough for [`Trust::Yes`]: the cache is
    /// shared by the user's sessions, and a file this agent cannot write may be written by
    /// another session's agent (a `files.read` directory that is another session's
    /// workspace), or sit on a device the scope does not list (an overlay's upper layer
    /// reports its own device). The stamp alone vouches for a file only when no agent of
    /// this user can write it at all: owned by neither warden's uid nor the agent's, and
    /// not group- or world-writable. Every other file gets the writer check
    /// ([`Trust::IfUnwritten`]): one held open for write, a writable shared mapping
    /// included, is hashed afresh and never cached, so content swapped in later behind an
    /// unchanged stamp (pages already dirty) cannot ride on an entry made while it was open.
    pub fn trusts(
        &self,
        pid: u32,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        mount: Option<MountId>,
    ) -> Trust {
        if !self.trusts_inner(pid, fd, st, mount) {
            return Trust::No;
        }
        let me = *self
            .euid
            .get_or_init(|| rustix::process::geteuid().as_raw());
        if st.st_uid == me || st.st_mode & 0o022 != 0 {
            return Trust::IfUnwritten;
        }
        let agent = warden_sys::procfs::Status::read(warden_sys::procfs::Proc::Pid(pid as i32))
            .ok()
            .and_then(|s| s.uid());
        if agent.is_some_and(|a| a != st.st_uid) {
            Trust::Yes
        } else {
            Trust::IfUnwritten
        }
    }

    fn trusts_inner(
        &self,
        pid: u32,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        mount: Option<MountId>,
    ) -> bool {
        if !self.confined {
            return false;
        }
        // A file system whose stamps prove nothing (or one whose type is unreadable).
        if self.untrusted_fs(fd, mount) != Some(false) {
            return false;
        }
        self.outside_roots(pid, fd, st, mount) == Some(true)
    }

    /// Whether this session's agent can write the file behind `fd` (stat `st`), judged by
    /// its name: under a write root. `shown` is the name `/proc/PID/maps` gives a mapping
    /// (for a descriptor opened through `map_files`, which names an overlay's layer file,
    /// not the path the agent sees); otherwise the kernel's name for the descriptor. Always
    /// by name, whatever the device (see [`WriteScope`]).
    ///
    /// Unknown (the name unreadable, a deleted file's name)
    /// answers yes; writes not confined answer no (nothing is confined, so nothing is
    /// promised: see [`crate::snapshot`]). A second hard link is not looked for: the agent
    /// cannot make one to a file outside the roots (Landlock refuses links across
    /// hierarchies without `REFER`), but one that existed before the session would let it
    /// write a file judged by its outside name (see `GUARANTEES.md`).
    pub fn writable(
        &self,
        pid: u32,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        mount: Option<MountId>,
        shown: Option<&str>,
    ) -> bool {
        if !self.confined {
            return false;
        }
        match shown {
            Some(name) => {
                name.ends_with(" (deleted)")
                    || !name.starts_with('/')
                    || self.under_root_writable(fd, st, std::path::Path::new(name))
                    || self.walked_outside(pid, name, st, mount) != Some(true)
            }
            None => self.outside_roots(pid, fd, st, mount) != Some(true),
        }
    }

    /// Whether the name `name` of the file behind `fd` is below a write root, on a mount
    /// that writes: writable by that name. Below a root on a read-only mount (a toolchain
    /// the sandbox binds read-only into the private home, whose tmpfs is a write root), the
    /// name proves nothing either way: [`WriteScope::walk_up`] looks for the other ways to
    /// write the file. Judged writable by name, `librustc_driver` (150 MB) was copied into a
    /// sealed file at each `rustc` start, and never cached (~0.7 s each). A file with a
    /// second hard link stays writable by name: the other name may be in the workspace (uv
    /// and pnpm install by hard link from a cache in the home: attack review 91); so does one
    /// whose inode changed since the session began: the agent may have opened that other
    /// name and unlinked it, which leaves one link and a descriptor that writes (attack
    /// review 92).
    fn under_root_writable(
        &self,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        name: &std::path::Path,
    ) -> bool {
        let file = st.st_mode & libc::S_IFMT != libc::S_IFDIR;
        let changed = (st.st_ctime, st.st_ctime_nsec) >= self.since;
        self.roots.iter().any(|r| name.starts_with(r))
            && (!self.relax
                || file && (st.st_nlink > 1 || changed)
                || rustix::fs::fstatfs(fd)
                    .map_or(true, |sf| sf.f_flags as u64 & libc::ST_RDONLY == 0))
    }

    /// Whether the agent can change what the absolute path `path` resolves to in process
    /// `pid`'s root, or the file there: `false` only when writes are confined and the walk
    /// (component by component, `O_PATH|O_NOFOLLOW`, symbolic links followed as the kernel
    /// would, `..` kept at the root) meets no directory, link or file the agent can write
    /// ([`WriteScope::writable`]), and ends on the file `(dev, ino)`. Every doubt answers yes.
    /// The root of the agent's processes is fixed (the sandbox refuses `chroot`, mounts and
    /// namespaces), so the answer holds for the whole session.
    pub fn path_changeable(&self, pid: u32, path: &str, file: (u64, u64)) -> bool {
        if !self.confined || !path.starts_with('/') {
            return true;
        }
        let memo = self
            .stable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .is_some_and(|(f, at)| *f == file && at.elapsed() < INTERP_FRESH);
        if memo {
            return false;
        }
        let stable = self.walk_stable(pid, path, file) == Some(true);
        if stable {
            remember(
                &self.stable,
                path.to_string(),
                (file, Instant::now()),
                PRECHECK_MEMO,
            );
        }
        !stable
    }

    fn walk_stable(&self, pid: u32, path: &str, file: (u64, u64)) -> Option<bool> {
        use rustix::fs::{openat, Mode, OFlags};
        let root: OwnedFd = std::fs::File::open(format!("/proc/{pid}/root"))
            .ok()?
            .into();
        let (root_st, _) = stat_fd(root.as_fd()).ok()?;
        let root_id = (root_st.st_dev, root_st.st_ino);
        // Directories from the root down to the current one (`..` pops).
        let mut dirs: Vec<OwnedFd> = Vec::new();
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut links = 0;
        let mut last: Option<(OwnedFd, libc::stat)> = None;
        while let Some(c) = todo.pop() {
            if c.is_empty() || c == "." {
                continue;
            }
            let dir = dirs.last().map_or(root.as_fd(), |d| d.as_fd());
            if let Some((_, st)) = &last {
                // A component after a non-directory.
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    return None;
                }
            }
            if c == ".." {
                let (st, _) = stat_fd(dir).ok()?;
                if (st.st_dev, st.st_ino) != root_id {
                    dirs.pop();
                }
                last = None;
                continue;
            }
            let fd = openat(
                dir,
                c.as_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()?;
            // procfs: its links (`/proc/1/cwd`, `fd/N`) follow live objects the agent can
            // change, not the text read here (attack review).
            #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
            if rustix::fs::fstatfs(&fd).ok()?.f_type as i64 == libc::PROC_SUPER_MAGIC as i64 {
                return None;
            }
            let (st, mount) = stat_fd(fd.as_fd()).ok()?;
            if self.writable(pid, fd.as_fd(), &st, mount, None) {
                return Some(false);
            }
            match st.st_mode & libc::S_IFMT {
                libc::S_IFLNK => {
                    links += 1;
                    if links > 40 {
                        return None;
                    }
                    let target = rustix::fs::readlinkat(&fd, "", Vec::new()).ok()?;
                    let target = target.to_str().ok()?.to_string();
                    if target.starts_with('/') {
                        dirs.clear();
                    }
                    todo.extend(target.split('/').rev().map(str::to_string));
                    last = None;
                }
                libc::S_IFDIR => {
                    dirs.push(fd);
                    last = None;
                }
                _ => last = Some((fd, st)),
            }
        }
        let (_, st) = last?;
        Some((st.st_dev, st.st_ino) == file)
    }

    /// Whether the file behind `fd` is on a file system in [`UNTRUSTED_FS`] (kept per
    /// mount); `None` when `fstatfs` fails.
    fn untrusted_fs(&self, fd: BorrowedFd<'_>, mount: Option<MountId>) -> Option<bool> {
        let unique = mount.filter(|m| m.unique).map(|m| m.id);
        let kept = || self.private_fs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = unique.and_then(|m| kept().get(&m).copied()) {
            return Some(p);
        }
        let sf = rustix::fs::fstatfs(fd).ok()?;
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
        let untrusted = UNTRUSTED_FS.contains(&(sf.f_type as i64));
        if let Some(m) = unique {
            remember(&self.private_fs, m, untrusted, PLACEMENTS_KEPT);
        }
        Some(untrusted)
    }

    /// Whether the file lies outside every write root, by the kernel's name for it and by
    /// its directories ([`WriteScope::walked_outside`]) (kept per mount, inode, ctime and
    /// link count); `None` when either is unknown.
    fn outside_roots(
        &self,
        pid: u32,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        mount: Option<MountId>,
    ) -> Option<bool> {
        self.memo(pid, &self.placed, placement(st, mount), || {
            let p = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
            let by_name = p.is_absolute() && !self.under_root_writable(fd, st, &p);
            Some(by_name && self.walked_outside(pid, p.to_str()?, st, mount)?)
        })
    }

    /// `m`'s answer for `key`, else `find`'s, kept when known. Answers are dropped when the
    /// agent's mount table changed since they were found (a mount can make a file writable
    /// by another name).
    fn memo(
        &self,
        pid: u32,
        m: &Mutex<HashMap<Placement, bool>>,
        key: Option<Placement>,
        find: impl FnOnce() -> Option<bool>,
    ) -> Option<bool> {
        {
            let mut r = self.reach.lock().unwrap_or_else(|p| p.into_inner());
            let now = r.0.generation(pid);
            if r.1 != now {
                r.1 = now;
                drop(r);
                for m in [&self.placed, &self.walked] {
                    m.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
            }
        }
        let kept = || m.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = key.and_then(|k| kept().get(&k).copied()) {
            return Some(known);
        }
        let found = find()?;
        if let Some(k) = key {
            remember(m, k, found, PLACEMENTS_KEPT);
        }
        Some(found)
    }

    /// Whether no directory above the file `st` (named `name` in the agent's view) is a write
    /// root, by identity: the directory holding `name` (checked to hold `st`), and each one
    /// above it by `..` (across mounts). Landlock's rules are on inodes, so a write root
    /// reached by a name outside every root (a bind mount of the workspace the host made
    /// elsewhere, a second mount of its file system) is as writable there: judged by name
    /// alone, a file under such a name was mapped executable uncopied, and rewritten (attack
    /// review 85). Kept per mount, inode, ctime and link count; `None` when unknown.
    fn walked_outside(
        &self,
        pid: u32,
        name: &str,
        st: &libc::stat,
        mount: Option<MountId>,
    ) -> Option<bool> {
        self.memo(pid, &self.walked, placement(st, mount), || {
            self.walk_up(pid, name, st)
        })
    }

    fn walk_up(&self, pid: u32, name: &str, st: &libc::stat) -> Option<bool> {
        use crate::mounts::place_at;
        use rustix::fs::OFlags;
        let roots = self.root_ids(pid)?;
        if roots.iter().any(|r| r.id == (st.st_dev, st.st_ino)) {
            return Some(false);
        }
        let p = std::path::Path::new(name);
        let (parent, file) = (p.parent()?, p.file_name()?);
        let file = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(file)).ok()?;
        let root = std::fs::File::open(format!("/proc/{pid}/root")).ok()?;
        let cur = warden_sys::open_in_root(&root, parent, OFlags::PATH | OFlags::DIRECTORY).ok()?;
        let mut reach = self.reach.lock().unwrap_or_else(|p| p.into_inner());
        let reach = &mut reach.0;
        // The file's own place in its file system (it may be a mount itself, a bind of one
        // file; or lie in a part of its file system bound into a write root).
        let here = place_at(cur.as_fd(), &file)?;
        if here.id != (st.st_dev, st.st_ino) {
            return None;
        }
        if reach.writable_file(pid, roots, here.mount, p)? {
            return Some(false);
        }
        if reach.read_only(pid, here.mount)? {
            // Not through this name (the agent can neither remount nor unmount): only
            // through a writable mount that shows the file, below a write root, or one made
            // of it (an overlay's layer, a loop image: [`crate::mounts::Reach`]'s parts).
            // One made of bytes that could not be placed (a relative or relinked layer name,
            // FUSE, a network file system) may write anything: nothing read-only is vouched
            // for then. (Files on writable mounts outside the roots are not held to that:
            // every one, the program interpreter included, would count as writable, and
            // the session's first exec would be refused; see GUARANTEES.md.)
            if reach.hidden_writer(pid, roots)? || self.in_other_session(name) {
                return None;
            }
            for (id, at) in reach.writable_mounts_showing(pid, here.mount, p)? {
                let fd = warden_sys::open_in_root(&root, &at, OFlags::PATH).ok()?;
                let top = place_at(fd.as_fd(), c"")?;
                // Covered by another mount, or the name leads elsewhere now: unknown.
                if top.mount != id || !top.mount_root {
                    return None;
                }
                if !climb(pid, roots, reach, fd)? {
                    return Some(false);
                }
            }
            return Some(true);
        }
        climb(pid, roots, reach, cur)
    }

    /// Every write root in the agent's view ([`crate::mounts::roots_in`]), found once. `None`
    /// when one that is there could not be looked at (tried again next time).
    fn root_ids(&self, pid: u32) -> Option<&[crate::mounts::Root]> {
        if let Some(d) = self.root_ids.get() {
            return Some(d);
        }
        let found = crate::mounts::roots_in(pid, &self.roots)?;
        let _ = self.root_ids.set(found);
        self.root_ids.get().map(Vec::as_slice)
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }
}

/// Whether the climb by `..` from `cur` (across mounts) reaches the top of the agent's
/// root without meeting a write root or a mount root whose mount shows a part the agent can
/// write ([`crate::mounts::Reach`]); `None` when a step cannot be looked at.
fn climb(
    pid: u32,
    roots: &[crate::mounts::Root],
    reach: &mut crate::mounts::Reach,
    cur: OwnedFd,
) -> Option<bool> {
    crate::mounts::climb(cur, &mut |at| {
        Some(
            roots.iter().any(|r| r.id == at.id)
                || at.mount_root && reach.writable(pid, roots, at.mount)?,
        )
    })
    .map(|hit| !hit)
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

enum Outcome {
    Allow,
    /// Allowed exec: trace it to verify the image the kernel actually loads.
    AllowExec,
    Deny(i32),
    /// Unknown content in allowlist mode: a human decides (content hash, program, argv).
    Ask(Hash, String, Vec<String>),
    /// A write open of an `ask_write` file: answered by its own thread.
    WriteAsk(Box<crate::writeask::Job>),
    /// An allowed mapping that needs more than the answer: see [`Mapping`].
    AllowMapping(Box<Mapping>),
}

/// What an allowed mapping needs besides the answer.
struct Mapping {
    /// The threads sharing the decision's state, stopped until the trapped thread is back
    /// from the system call ([`Hold`]).
    hold: Option<Hold>,
    /// A sealed copy to put at the mapped descriptor's number first ([`crate::snapshot`]).
    copy: Option<(i32, Arc<OwnedFd>)>,
    /// An `mprotect`'s range and the files the decision found there, read again once the
    /// kernel applied it.
    recheck: Option<Recheck>,
}

/// What an `mprotect(+PROT_EXEC)` decision read, compared once the kernel applied the change
/// and before any thread of the sandbox runs again. Defense in depth behind [`Hold`]: were a
/// thread sharing the address space left running (a hold that missed one), a file it mapped
/// over the range between the decision and the kernel's change would show here, and every
/// process sharing the address space is killed before the one that asked runs a single
/// instruction.
struct Recheck {
    addr: u64,
    len: u64,
    ids: Ids,
}

impl Recheck {
    /// `Err`: what changed. A range with nothing mapped any more is no change: the thread
    /// may unmap it before it is stopped (map, `mprotect(+X)`, `munmap` at once; attack
    /// review 87 had such a process killed), and nothing undecided is executable there.
    fn run(&self, pid: u32) -> Result<(), String> {
        let now = match range_ids(pid, self.addr, self.len) {
            Err(e) if e.starts_with("no mapping at ") => return Ok(()),
            r => r?,
        };
        match now.iter().find(|id| !self.ids.contains(id)) {
            None => Ok(()),
            Some((dev, ino)) => Err(format!(
                "the range {:#x}+{:#x} maps a file (device {dev:#x}, inode {ino}) that the decision did not see: something sharing the address space mapped it over the range while the decision was taken",
                self.addr, self.len
            )),
        }
    }
}

impl Guard {
    pub fn new(rules: ExecRules) -> Guard {
        Guard::with_cache(rules, Arc::new(Cache::default()))
    }

    pub fn with_cache(rules: ExecRules, cache: Arc<Cache>) -> Guard {
        Guard {
            rules: Arc::new(RwLock::new(rules)),
            cache,
            scope: WriteScope::unconfined(),
            logged: Mutex::default(),
            approver: None,
            asks: Box::default(),
            hidden: None,
            readonly: None,
            writes: Mutex::default(),
            write_asks: None,
            interps: Mutex::default(),
            exec_clean: Mutex::default(),
            reaper: crate::hold::Reaper::default(),
            sandbox_cgroup: None,
            snapshots: Default::default(),
            kept: Default::default(),
        }
    }

    /// `[files] ask_write`: a write open of one of these protected files asks a human
    /// (see [`crate::writeask`]); the filter must trap write opens
    /// ([`install_filter_opts`] with `ask_writes`).
    pub fn set_write_asks(&mut self, w: crate::writeask::WriteAsks) {
        self.write_asks = Some(w);
    }

    /// Allowlist mode: an exec of unknown content asks a human through `a` instead of
    /// being denied at once (executable mappings of unknown content are still denied).
    pub fn set_approver(&mut self, a: Arc<dyn ExecApprover>) {
        self.approver = Some(a);
    }

    /// A human's allow for `h` (session-wide, or a one-exec grant), if there is one.
    /// `consume`: the post-exec check uses up a one-exec grant.
    fn granted(&self, h: &Hash, consume: bool) -> Option<&'static str> {
        let mut g = self.asks.granted.lock().ok()?;
        if g.session.contains(h) {
            return Some("allowed for this session by a human (warden approve)");
        }
        match g.once.get_mut(h) {
            Some(n) if *n > 0 => {
                if consume {
                    *n -= 1;
                    if *n == 0 {
                        g.once.remove(h);
                    }
                }
                Some("allowed once by a human (warden approve)")
            }
            _ => None,
        }
    }

    /// Sets what the agent can write (before the session starts). Until this is called no
    /// cached stamp is trusted.
    pub fn set_write_scope(&mut self, scope: WriteScope) {
        self.scope = scope;
    }

    /// Sets the cgroup the agent's process tree joins before the agent's first instruction:
    /// its process list (`cgroup.procs`) names every process of the agent's tree, which an
    /// address-space hold stops, instead of scanning every process on the host
    /// ([`crate::hold::sandbox_groups`]; used only when it lists the trapped process).
    pub fn set_sandbox_cgroup(&mut self, dir: PathBuf) {
        self.sandbox_cgroup = Some(dir);
    }

    /// Sets how a write to a read-only path of the view is attributed to a rule.
    pub fn set_readonly_lookup(&mut self, f: HiddenLookup) {
        self.readonly = Some(f);
    }

    /// A write open (open/openat with a write flag, creat): recorded when the kernel will
    /// refuse it with EROFS, i.e. the file (or, for a new file, its directory) lies on a
    /// read-only mount of the agent's view. Observation only: the syscall continues and the
    /// mount decides. The path is resolved in the agent's root with `O_PATH` and only
    /// `fstatvfs`'d: nothing is read, written or kept.
    fn note_write(&self, n: &Notif) {
        let Some(lookup) = &self.readonly else { return };
        let (pid, a, nr) = (n.pid, n.data.args, n.data.nr as i64);
        let (dirfd, ptr, flags) = if nr == libc::SYS_open {
            (libc::AT_FDCWD, a[0], a[1] as i32)
        } else if nr == libc::SYS_openat {
            (a[0] as i32, a[1], a[2] as i32)
        } else {
            (
                libc::AT_FDCWD,
                a[0],
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            )
        };
        let Ok(path) = read_cstr(pid, ptr) else {
            return;
        };
        if path.is_empty() || path.starts_with("/proc/") {
            return;
        }
        let abs = if path.starts_with('/') {
            PathBuf::from(&path)
        } else {
            let base = if dirfd == libc::AT_FDCWD {
                format!("/proc/{pid}/cwd")
            } else {
                format!("/proc/{pid}/fd/{dirfd}")
            };
            match std::fs::read_link(&base) {
                Ok(b) => b.join(&path),
                Err(_) => return,
            }
        };
        let nofollow = flags & libc::O_NOFOLLOW != 0;
        let ro = match readonly_in_view(pid, &abs, nofollow) {
            Some(ro) => ro,
            // Absent: a create checks its directory, anything else fails with ENOENT.
            None if flags & libc::O_CREAT != 0 => match abs.parent() {
                Some(dir) => readonly_in_view(pid, dir, false).unwrap_or(false),
                None => false,
            },
            None => false,
        };
        if !ro {
            return;
        }
        let key = abs.display().to_string();
        let count = {
            let mut w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
            let c = w.entry(key.clone()).or_insert(0);
            *c += 1;
            *c
        };
        if count > WRITES_PER_PATH {
            return;
        }
        let (rule, reason) = lookup(&abs).unwrap_or_else(|| {
            (
                "readonly".to_string(),
                "write to a read-only part of the sandbox's view (Read-only file system)".into(),
            )
        });
        Decision::new(
            Layer::Sandbox,
            format!("pid {pid} ({})", comm(pid)),
            key,
            rule,
            V::Deny,
            reason,
        )
        .with("kind", "write")
        .with("seen_by", "seccomp")
        .emit();
    }

    /// Sets how an exec of a path absent from the view is attributed to a hiding rule.
    pub fn set_hidden_lookup(&mut self, f: HiddenLookup) {
        self.hidden = Some(f);
    }

    /// Records an exec that will fail with ENOENT because the view hides the path (only
    /// when a rule hides it; a path absent everywhere is not a block). Observation only:
    /// the verdict is the kernel's ENOENT either way.
    fn note_hidden(&self, pid: u32, path: &str, dirfd: i32) {
        let Some(lookup) = &self.hidden else { return };
        let abs = if path.starts_with('/') {
            std::path::PathBuf::from(path)
        } else {
            let base = if dirfd == libc::AT_FDCWD {
                format!("/proc/{pid}/cwd")
            } else {
                format!("/proc/{pid}/fd/{dirfd}")
            };
            match std::fs::read_link(&base) {
                Ok(b) => b.join(path),
                Err(_) => return,
            }
        };
        if let Some((rule, reason)) = lookup(&abs) {
            Decision::new(
                Layer::Sandbox,
                format!("pid {pid} ({})", comm(pid)),
                abs.display().to_string(),
                rule,
                V::Deny,
                reason,
            )
            .with("kind", "exec")
            .with("seen_by", "seccomp")
            .emit();
        }
    }

    /// Hash of the file behind `fd` for agent `pid`: from the cache only when the agent
    /// cannot have changed it behind its stamp. Returns (hash, quiet, clean): quiet when an
    /// allowed verdict on it need not be logged again; clean when the hash came from the
    /// cache for a file no agent could have written behind its stamp.
    fn identify(
        &self,
        pid: u32,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        mount: Option<MountId>,
    ) -> std::io::Result<(Hash, bool, bool)> {
        // Every hashing has a deadline; a file an agent may write is also capped in size
        // (one no agent can write is hashed whole, and cached).
        let trust = self.scope.trusts(pid, fd, st, mount);
        if trust == Trust::No {
            self.cache.forget(&FileStamp::of(st));
            let capped = Limit {
                max_bytes: Some(MAX_HASH_BYTES),
                deadline: Some(Instant::now() + HASH_DEADLINE),
            };
            let h = self.kept.hash(fd, st, |fd| sha256_fd_within(fd, capped))?;
            return Ok((h, self.logged_before(st, h), false));
        }
        // Outside the agent's reach: time for its size on a slow disk (Claude Code's
        // 381 MB binary from a cold disk took 11 s), announced when large and not cached;
        // past that, hashed on in the background, so that the next exec is a cache hit.
        let unwritten = trust == Trust::IfUnwritten;
        let size = st.st_size.max(0) as u64;
        let stamp = FileStamp::of(st);
        // Already being hashed in the background (an earlier decision's deadline passed):
        // denied at once, not hashed again on this thread (attack review 68: each retry of
        // a huge file held every decision of the session for the whole deadline again).
        if let Some(since) = self.cache.finishing_since(&stamp) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "warden has been hashing it in the background for {} s (an earlier exec or mapping of it missed the deadline); it is allowed or denied on its content once that ends (at most {} min)",
                    since.elapsed().as_secs(),
                    crate::cache::FINISH_DEADLINE.as_secs() / 60
                ),
            ));
        }
        let refused = unwritten && size > MAX_HASH_BYTES;
        if size >= NOTE_HASHING_FROM && !refused && !self.cache.contains(&stamp) {
            // Escaped: a file name is not the terminal's to interpret.
            let name = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| warden_event::text::printable_path(&p))
                .unwrap_or_else(|_| "a program".into());
            eprintln!(
                "warden: exec guard: hashing {name} ({} MiB) before deciding on it; its hash is kept, so this is done once",
                size >> 20
            );
        }
        let limit = Limit {
            max_bytes: unwritten.then_some(MAX_HASH_BYTES),
            deadline: Some(Instant::now() + deadline_for(size)),
        };
        let hashed = if unwritten {
            // A file held open for write is hashed afresh and not cached (the cache dropped
            // its entry): its content can change behind an unchanged stamp.
            self.cache
                .hash_unwritten_stamped(fd, st, limit)
                .map(|(h, writers, hit)| (h, writers == Some(false), hit))
        } else {
            self.cache
                .hash_stamped(fd, st, limit)
                .map(|(h, _, hit)| (h, true, hit))
        };
        match hashed {
            Ok((h, true, hit)) => Ok((h, hit, hit)),
            Ok((h, false, _)) => Ok((h, self.logged_before(st, h), false)),
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    && self.cache.finish_in_background(fd, st, unwritten) =>
            {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{e}; warden goes on hashing it in the background (at most {} min) and keeps the hash: run it again when that is done",
                        crate::cache::FINISH_DEADLINE.as_secs() / 60
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether an allowed decision on this (stamp, hash) of a file hashed afresh was logged
    /// already this session (and notes it).
    fn logged_before(&self, st: &libc::stat, h: Hash) -> bool {
        let mut l = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if l.len() > 50_000 {
            l.clear();
        }
        !l.insert((FileStamp::of(st), h))
    }

    fn enforce(&self) -> bool {
        self.rules
            .read()
            .map(|r| r.action == ExecAction::Enforce)
            .unwrap_or(true)
    }

    /// Records a decision; returns whether the action may proceed.
    fn conclude(
        &self,
        pid: u32,
        what: &dyn Fn() -> String,
        kind: &str,
        hash: Option<&Hash>,
        v: &Verdict,
        started: Instant,
        cached: bool,
    ) -> bool {
        let enforce = self.enforce();
        let verdict = if v.allowed {
            V::Allow
        } else if enforce {
            V::Deny
        } else {
            V::AuditDeny
        };
        // Cache hits on allowed content are not logged (they would flood the log).
        if !(v.allowed && cached) {
            let what = what();
            let what = what.as_str();
            let reason = if v.allowed {
                v.reason.clone()
            } else {
                format!(
                    "{kind} of {what} denied: {}. This is enforced by warden outside the agent, so copies, renames, loaders and interpreters of the same content are denied too; {}",
                    v.reason,
                    how_to_allow(v)
                )
            };
            let mut d = Decision::new(
                Layer::Exec,
                format!("pid {pid} ({})", comm(pid)),
                what,
                &v.rule,
                verdict,
                reason,
            )
            .with("kind", kind)
            .with("latency_us", started.elapsed().as_micros() as u64);
            if let Some(h) = hash {
                d = d.with("sha256", hex(h));
            }
            d.emit();
        }
        v.allowed || !enforce
    }

    /// Whether the policy is in allowlist mode (which decides anonymous code).
    fn allowlist(&self) -> bool {
        self.rules
            .read()
            .map(|r| r.mode == warden_policy::exec::ExecMode::Allowlist)
            .unwrap_or(true)
    }

    /// Memory about to become executable that holds code from no file: anonymous memory,
    /// pages written in a private mapping, or memory that stays writable. In allowlist mode
    /// only the programs of `exec.jit` (and the built-in JIT compilers) may make it: any other
    /// program doing so runs code no rule named. Attack review 101 ran an unlisted program
    /// through the trusted `python3` (ctypes: its bytes copied into anonymous memory, made
    /// executable, jumped to). Decided on the running program's own identity
    /// (`/proc/PID/exe`, hashed like any executable). `true`: allowed (or audit mode, or
    /// denylist mode, which does not decide it).
    fn anonymous_code(&self, pid: u32, kind: &str, started: Instant) -> bool {
        self.anonymous_code_if(pid, kind, started, || Ok(true))
    }

    /// [`Guard::anonymous_code`], where `is_code` (read only for a program not allowed to
    /// make code) says whether the memory in question holds code from no file.
    fn anonymous_code_if(
        &self,
        pid: u32,
        kind: &str,
        started: Instant,
        is_code: impl FnOnce() -> Result<bool, String>,
    ) -> bool {
        if !self.allowlist() {
            return true;
        }
        let exe = format!("/proc/{pid}/exe");
        let what = || {
            std::fs::read_link(&exe)
                .map(|p| format!("anonymous code of {}", p.display()))
                .unwrap_or_else(|_| "anonymous code".into())
        };
        let h = match std::fs::File::open(&exe)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let (st, mount) = stat_fd(f.as_fd()).map_err(|e| e.to_string())?;
                self.identify(pid, f.as_fd(), &st, mount)
                    .map(|(h, _, _)| h)
                    .map_err(|e| e.to_string())
            }) {
            Ok(h) => h,
            Err(e) => return self.fail(pid, &what(), kind, e, started),
        };
        let rule = self
            .rules
            .read()
            .ok()
            .and_then(|r| r.anonymous_code(Some(&h)));
        if rule.is_some() {
            return true;
        }
        match is_code() {
            Ok(false) => true,
            Ok(true) => {
                let v = Verdict {
                    allowed: false,
                    rule: "exec.anonymous_code".into(),
                    reason: "allowlist mode: this program may not make memory executable that holds code from no file (anonymous, written or writable memory); if it is a JIT compiler, add it to exec.jit".into(),
                };
                self.conclude(pid, &what, kind, Some(&h), &v, started, false)
            }
            Err(e) => self.fail(pid, &what(), kind, e, started),
        }
    }

    fn fail(&self, pid: u32, what: &str, kind: &str, err: String, started: Instant) -> bool {
        let v = Verdict {
            allowed: false,
            rule: "exec.fail_closed".into(),
            reason: format!("its identity could not be established ({err})"),
        };
        self.conclude(pid, &|| what.to_string(), kind, None, &v, started, false)
    }

    /// Decides on an open file (exec target or mapping).
    fn decide_fd(
        &self,
        pid: u32,
        what: &dyn Fn() -> String,
        kind: &str,
        fd: BorrowedFd<'_>,
        started: Instant,
        depth: u32,
    ) -> bool {
        match stat_fd(fd) {
            Ok(s) => self.decide_stat(pid, what, kind, fd, s, started, depth),
            Err(e) => self.fail(pid, &what(), kind, e.to_string(), started),
        }
    }

    /// [`Guard::decide_fd`] with the file's `stat_fd` already taken.
    fn decide_stat(
        &self,
        pid: u32,
        what: &dyn Fn() -> String,
        kind: &str,
        fd: BorrowedFd<'_>,
        (st, mount): (libc::stat, Option<MountId>),
        started: Instant,
        depth: u32,
    ) -> bool {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            // Devices (/dev/zero) and directories: anonymous memory or a kernel error.
            return true;
        }
        // A sealed copy this supervisor made (a later segment of a mapping made from it):
        // decided on the hash recorded when it was made.
        let copy = (st.st_nlink == 0)
            .then(|| self.snapshots.known(&st))
            .flatten();
        // memfd and O_TMPFILE/deleted files have no link left.
        if st.st_nlink == 0 && copy.is_none() {
            let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let allow = self.rules.read().map(|r| r.allow_memfd).unwrap_or(false);
            let v = Verdict {
                allowed: allow,
                rule: "exec.allow_memfd".into(),
                reason: if allow {
                    "memfd/anonymous content allowed by policy".into()
                } else {
                    format!("{link} is a memfd or deleted file, whose content no rule can name (set exec.allow_memfd = true to allow)")
                },
            };
            return self.conclude(pid, what, kind, None, &v, started, false);
        }
        let identified = match copy {
            Some(h) => Ok((h, self.logged_before(&st, h), false)),
            None => self.identify(pid, fd, &st, mount),
        };
        let (h, cached, clean) = match identified {
            Ok(x) => x,
            Err(e) if over_limit(&e) => {
                let v = Verdict {
                    allowed: false,
                    rule: "exec.hash_limit".into(),
                    reason: format!("its identity could not be established: {e}"),
                };
                return self.conclude(pid, what, kind, None, &v, started, false);
            }
            Err(e) => return self.fail(pid, &what(), kind, e.to_string(), started),
        };
        let mut v = self
            .rules
            .read()
            .map(|r| r.decide(&h))
            .unwrap_or_else(|_| Verdict {
                allowed: false,
                rule: "exec.fail_closed".into(),
                reason: "rules poisoned".into(),
            });
        // Unknown content in allowlist mode with an approval channel: a human's grant for
        // exactly this hash admits it; the pre-check of a direct exec asks for one.
        if !v.allowed && v.rule == "exec.mode:allowlist" && self.approver.is_some() {
            let exec = kind.starts_with("exec");
            let post = kind == "exec (post-exec check)";
            if let Some(why) = exec.then(|| self.granted(&h, post)).flatten() {
                v = Verdict {
                    allowed: true,
                    rule: "approval".into(),
                    reason: why.into(),
                };
            } else if kind == "exec" && depth == 0 && self.enforce() {
                // The human sees the kernel's name for the file opened (and hashed), not
                // only the spelling the agent chose.
                let given = what();
                let shown = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    .map(|p| p.display().to_string())
                    .ok()
                    .filter(|p| *p != given)
                    .map_or(given.clone(), |p| format!("{p} (as {given})"));
                if let Ok(mut a) = self.asks.ask.lock() {
                    *a = Some((h, shown));
                }
                return false;
            }
        }
        if !self.conclude(
            pid,
            what,
            kind,
            Some(&h),
            &v,
            started,
            cached && v.rule != "approval",
        ) {
            return false;
        }
        // The exec's own image, allowed on cached content nobody could write: the post-exec
        // check compares the loaded image's stamp with it (`ExecClean`).
        let clean = kind == "exec" && depth == 0 && clean && v.allowed && v.rule != "approval";
        let note_clean = |complete: bool| {
            if clean {
                let entry = ExecClean {
                    stamp: FileStamp::of(&st),
                    at: Instant::now(),
                    complete,
                };
                remember(&self.exec_clean, pid, entry, PRECHECK_MEMO);
            }
        };
        if kind == "exec" && depth < 4 {
            // What the kernel will run besides this file: a script's interpreter, an ELF
            // file's program interpreter (`PT_INTERP`: normally ld.so, but any file can be
            // named there, and the kernel maps and runs it without another exec).
            // A script's interpreter is exec'd in turn (its own interpreter looked up too);
            // a program interpreter is only mapped (the kernel reads no `PT_INTERP` of it),
            // so nothing is looked up past it. The post-exec check decides what was mapped.
            let head = Head::read(fd);
            if let Some(interp) = shebang(&head) {
                note_clean(false);
                return self.decide_interpreter(pid, &interp, started, depth + 1);
            }
            // A 64-bit x86-64 program never runs with READ_IMPLIES_EXEC: the ELF loader
            // clears it (`set_personality_64bit`) and sets it only for 32-bit images.
            let elf64 = elf_x86_64(&head);
            if let Some(interp) = elf_interp(&head) {
                let seen = self
                    .interps
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&interp)
                    .filter(|(_, at)| at.elapsed() < INTERP_FRESH)
                    .map(|(fixed, _)| *fixed);
                let fixed = match seen {
                    Some(fixed) => fixed,
                    None => match self.decide_interpreter_fixed(pid, &interp, started) {
                        Some(fixed) => {
                            let entry = (fixed, Instant::now());
                            remember(&self.interps, interp, entry, PRECHECK_MEMO);
                            fixed
                        }
                        None => return false,
                    },
                };
                note_clean(elf64 && fixed);
                return true;
            }
            note_clean(elf64);
            return true;
        }
        note_clean(false);
        true
    }

    /// Decides a program interpreter (`PT_INTERP`); `Some(fixed)` when allowed, `fixed`
    /// saying that the agent can change neither the file nor what its path resolves to
    /// ([`WriteScope::path_changeable`]): the file the kernel maps for it is then the one
    /// decided here.
    fn decide_interpreter_fixed(&self, pid: u32, interp: &str, started: Instant) -> Option<bool> {
        let f = match open_in_target(pid, interp, None) {
            Ok(f) => f,
            Err(e) => {
                self.fail(pid, interp, "exec", format!("interpreter: {e}"), started);
                return None;
            }
        };
        if !self.decide_fd(pid, &|| interp.to_string(), "exec", f.as_fd(), started, 4) {
            return None;
        }
        let fixed = fstat(f.as_fd()).is_ok_and(|st| {
            !self
                .scope
                .path_changeable(pid, interp, (st.st_dev, st.st_ino))
        });
        Some(fixed)
    }

    fn decide_interpreter(&self, pid: u32, interp: &str, started: Instant, depth: u32) -> bool {
        match open_in_target(pid, interp, None) {
            Ok(f) => self.decide_fd(
                pid,
                &|| interp.to_string(),
                "exec",
                f.as_fd(),
                started,
                depth,
            ),
            Err(e) => self.fail(pid, interp, "exec", format!("interpreter: {e}"), started),
        }
    }

    fn handle(&self, n: &Notif) -> Outcome {
        if let Ok(mut a) = self.asks.ask.lock() {
            *a = None;
        }
        let out = self.handle_inner(n);
        let asked = self.asks.ask.lock().ok().and_then(|mut a| a.take());
        match (out, asked) {
            (Outcome::Deny(_), Some((h, path))) => {
                let nr = n.data.nr as i64;
                let argv_ptr = if nr == libc::SYS_execve {
                    n.data.args[1]
                } else {
                    n.data.args[2]
                };
                let argv = read_argv(n.pid, argv_ptr)
                    .unwrap_or_else(|e| vec![format!("<argv unreadable: {e}>")]);
                Outcome::Ask(h, path, argv)
            }
            (o, _) => o,
        }
    }

    fn handle_inner(&self, n: &Notif) -> Outcome {
        let started = Instant::now();
        let pid = n.pid;
        let a = n.data.args;
        let nr = n.data.nr as i64;
        if nr == libc::SYS_open
            || nr == libc::SYS_openat
            || nr == libc::SYS_creat
            || nr == libc::SYS_openat2
        {
            if let Some(w) = &self.write_asks {
                match w.classify(pid, n.id, nr, a, &read_cstr) {
                    Ok(Some(job)) => return Outcome::WriteAsk(Box::new(job)),
                    Ok(None) => {}
                    // Unreadable: the kernel's own checks decide (they never grant a
                    // protected write).
                    Err(e) => tracing::debug!("write ask: pid {pid}: {e}"),
                }
            }
            if nr != libc::SYS_openat2 {
                self.note_write(n);
            }
            return Outcome::Allow;
        }
        let is_exec = nr == libc::SYS_execve || nr == libc::SYS_execveat;
        let mut hold = None;
        let mut copy = None;
        let mut recheck = None;
        let ok = if is_exec {
            self.exec_clean
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&pid);
            let (dirfd, path_ptr, flags) = if nr == libc::SYS_execve {
                (libc::AT_FDCWD, a[0], 0)
            } else {
                (a[0] as i32, a[1], a[4] as i32)
            };
            let path = match read_cstr(pid, path_ptr) {
                Ok(p) => p,
                Err(e) => {
                    return if self.fail(pid, "?", "exec", e.to_string(), started) {
                        Outcome::Allow
                    } else {
                        Outcome::Deny(libc::EACCES)
                    }
                }
            };
            let opened = if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
                take_fd(pid, dirfd)
            } else {
                open_in_target(pid, &path, Some(dirfd))
            };
            match opened {
                Ok(f) => self.decide_fd(pid, &|| path.clone(), "exec", f.as_fd(), started, 0),
                // A path the kernel will not find either: let the kernel say ENOENT (and
                // record it when the view hides it).
                Err(e) if e.errno == Some(libc::ENOENT) => {
                    self.note_hidden(pid, &path, dirfd);
                    true
                }
                Err(e) => self.fail(pid, &path, "exec", e.into(), started),
            }
        } else if nr == libc::SYS_mmap
            && (a[3] & libc::MAP_ANONYMOUS as u64 != 0 || a[2] & PROT_WRITE != 0)
            && !self.anonymous_code(pid, "mmap", started)
        {
            // Allowlist mode: executable memory that is anonymous, or writable (a private
            // mapping's written pages are nobody's file), from a program not allowed to make
            // code (see `anonymous_code`).
            false
        } else if nr == libc::SYS_mmap && a[3] & libc::MAP_ANONYMOUS as u64 != 0 {
            // Anonymous memory (trapped in allowlist mode only), allowed above.
            true
        } else if nr == libc::SYS_mmap {
            // Other threads share the descriptor table: held still until the kernel took
            // the file (see `crate::hold`).
            hold = match self.hold(pid, Shared::Descriptors, "mmap", started) {
                Ok(h) => h,
                Err(out) => return out,
            };
            match take_fd(pid, a[4] as i32) {
                Ok(f) => {
                    let raw = f.as_raw_fd();
                    let what = move || {
                        std::fs::read_link(format!("/proc/self/fd/{raw}"))
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|_| "?".into())
                    };
                    // A file the agent can write is mapped from a sealed copy, decided on
                    // the copy's own bytes (see `crate::snapshot`).
                    let st = match stat_fd(f.as_fd()) {
                        Ok(st) => st,
                        Err(e) => return self.fail_outcome(pid, "mmap", e.to_string(), started),
                    };
                    match self.writable_copy(pid, f.as_fd(), &st) {
                        Ok(None) => self.decide_stat(pid, &what, "mmap", f.as_fd(), st, started, 0),
                        Ok(Some(c)) => {
                            let ok = self.decide_fd(pid, &what, "mmap", c.as_fd(), started, 0);
                            copy = Some(c);
                            ok
                        }
                        Err(e) if over_limit(&e) => {
                            let v = Verdict {
                                allowed: false,
                                rule: "exec.hash_limit".into(),
                                reason: format!("its identity could not be established: {e}"),
                            };
                            self.conclude(pid, &what, "mmap", None, &v, started, false)
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                            let v = Verdict {
                                allowed: false,
                                rule: "exec.writable_code".into(),
                                reason: e.to_string(),
                            };
                            self.conclude(pid, &what, "mmap", None, &v, started, false)
                        }
                        Err(e) => self.fail(pid, &what(), "mmap", format!("copy: {e}"), started),
                    }
                }
                // EBADF: mmap would fail anyway.
                Err(e) if e.errno == Some(libc::EBADF) => true,
                Err(e) => self.fail(pid, "mmap", "mmap", e.into(), started),
            }
        } else {
            // Every file mapping the range touches (anonymous memory, e.g. a JIT's, is not
            // decided): a range that starts in anonymous memory and spans into a file
            // mapping is decided on that file too. Whoever shares the address space is held
            // still until the kernel applied the change: otherwise a file mapped over the
            // range after this read would become executable undecided.
            hold = match self.hold(pid, Shared::AddressSpace, "mprotect", started) {
                Ok(h) => h,
                Err(out) => return out,
            };
            // Allowlist mode: code from no file (anonymous memory, a private mapping's
            // written pages) or memory left writable, from a program not allowed to make
            // code (see `anonymous_code`). Read with the address space held.
            if !self.anonymous_code_if(pid, "mprotect", started, || {
                Ok(a[2] & PROT_WRITE != 0 || anonymous_in_range(pid, a[0], a[1])?)
            }) {
                return Outcome::Deny(libc::EACCES);
            }
            match mapping_files(pid, a[0], a[1]) {
                Ok((files, ids)) => {
                    recheck = Some(Recheck {
                        addr: a[0],
                        len: a[1],
                        ids,
                    });
                    files.iter().all(|(path, f)| {
                        let name = || path.clone();
                        match stat_fd(f.as_fd()) {
                            Ok(st) => {
                                self.not_writable_code(
                                    pid,
                                    &name,
                                    "mprotect",
                                    f.as_fd(),
                                    &st,
                                    started,
                                ) && self.decide_stat(
                                    pid,
                                    &name,
                                    "mprotect",
                                    f.as_fd(),
                                    st,
                                    started,
                                    0,
                                )
                            }
                            Err(e) => self.fail(pid, &name(), "mprotect", e.to_string(), started),
                        }
                    })
                }
                Err(e) => self.fail(pid, "mprotect", "mprotect", e, started),
            }
        };
        match (ok, hold, copy, recheck) {
            (false, ..) => Outcome::Deny(libc::EACCES),
            (true, ..) if is_exec => Outcome::AllowExec,
            (true, None, None, None) => Outcome::Allow,
            (true, hold, copy, recheck) => Outcome::AllowMapping(Box::new(Mapping {
                // An mprotect is checked again once applied, its thread stopped for it (one
                // traced by a program of the agent's cannot be: nothing else was found
                // sharing its address space, and it goes unchecked as before).
                hold: hold.or_else(|| {
                    recheck
                        .as_ref()
                        .filter(|_| untraced_or_ours(pid))
                        .map(|_| Hold::default())
                }),
                copy: copy.map(|c| (a[4] as i32, c)),
                recheck,
            })),
        }
    }

    /// Code the kernel would run straight from a file this session's agent can write, where
    /// no sealed copy can stand in: a program interpreter the kernel mapped (`PT_INTERP`),
    /// or a file mapping made executable in place (`mprotect`). A rewrite after the decision
    /// would run (the page cache is shared), so it is refused under `exec.writable_code`.
    /// `true`: not such a file (or audit mode).
    fn not_writable_code(
        &self,
        pid: u32,
        what: &dyn Fn() -> String,
        kind: &str,
        fd: BorrowedFd<'_>,
        (st, mount): &(libc::stat, Option<MountId>),
        started: Instant,
    ) -> bool {
        let writable = st.st_mode & libc::S_IFMT == libc::S_IFREG
            && st.st_nlink > 0
            && self.scope.writable(pid, fd, st, *mount, Some(&what()));
        if !writable {
            return true;
        }
        let how = if kind == "mprotect" {
            "map it with PROT_EXEC from the start instead (mmap maps a sealed copy)"
        } else {
            "run the interpreter as the program instead (`./ld.so ./program`), or keep it outside the directories the agent can write"
        };
        let v = Verdict {
            allowed: false,
            rule: "exec.writable_code".into(),
            reason: format!("the agent can write this file, and code the kernel runs straight from it would follow later writes; {how}"),
        };
        self.conclude(pid, what, kind, None, &v, started, false)
    }

    /// A sealed copy of the file behind `fd` (its `stat_fd`: `st`) when this session's agent
    /// can write it (`None`: map the file itself).
    fn writable_copy(
        &self,
        pid: u32,
        fd: BorrowedFd<'_>,
        (st, mount): &(libc::stat, Option<MountId>),
    ) -> std::io::Result<Option<Arc<OwnedFd>>> {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG
            || st.st_nlink == 0
            || !self.scope.writable(pid, fd, st, *mount, None)
        {
            return Ok(None);
        }
        // Written through this very descriptor (a JIT mapping a file twice, writable and
        // executable): the copy would split the two, and the file itself would run bytes no
        // decision saw. Refused instead (`exec.writable_code`).
        let mode = rustix::fs::fcntl_getfl(fd)? & rustix::fs::OFlags::RWMODE;
        if mode != rustix::fs::OFlags::RDONLY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "it is mapped executable through a descriptor open for writing to a file the agent can write: what runs would follow later writes (a JIT's double mapping); write the code to anonymous memory instead",
            ));
        }
        let limit = Limit {
            max_bytes: Some(MAX_HASH_BYTES),
            deadline: Some(Instant::now() + HASH_DEADLINE),
        };
        let name = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.snapshots.copy(fd, &name, limit).map(|(_, c)| Some(c))
    }

    /// [`Guard::fail`] as an answer.
    fn fail_outcome(&self, pid: u32, kind: &str, err: String, started: Instant) -> Outcome {
        if self.fail(pid, kind, kind, err, started) {
            Outcome::Allow
        } else {
            Outcome::Deny(libc::EACCES)
        }
    }

    /// Stops the threads sharing `shared` with `pid` for a decision (`Ok(None)`: there are
    /// none). A failure is decided like any other (denied in enforce mode).
    fn hold(
        &self,
        pid: u32,
        shared: Shared,
        kind: &str,
        started: Instant,
    ) -> Result<Option<Hold>, Outcome> {
        let cgroup = self.sandbox_cgroup.as_deref();
        Hold::others(pid, shared, cgroup, &self.reaper, &mut |p, st| {
            self.on_event(p, st)
        })
        .map_err(|e| {
            let why = format!("the threads sharing its state could not be held still: {e}");
            self.fail_outcome(pid, kind, why, started)
        })
    }

    /// Exec-event verification: decides on the image the kernel just loaded, and on every
    /// other file it mapped with it (the program interpreter: the kernel opens `PT_INTERP`'s
    /// path itself, after the pre-check read it, so a file swapped in between is only seen
    /// here).
    fn verify_exec(&self, pid: i32) -> bool {
        let started = Instant::now();
        let exe = format!("/proc/{pid}/exe");
        let what = || {
            std::fs::read_link(&exe)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| exe.clone())
        };
        const KIND: &str = "exec (post-exec check)";
        // The image the pre-check allowed, unchanged (same inode, size, mtime and ctime) and
        // clean then: that decision stands. Anything else is decided again.
        let pre = self
            .exec_clean
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(pid as u32))
            .filter(|c| c.at.elapsed() < EXEC_CLEAN_FOR);
        let loaded = pre.and_then(|_| stat_path(&exe).ok().map(|st| FileStamp::of(&st)));
        if let (Some(c), Some(l)) = (pre, loaded) {
            if c.complete && c.stamp == l {
                return true;
            }
        }
        // READ_IMPLIES_EXEC makes every readable mapping executable with no PROT_EXEC for
        // the filter to trap. The sandbox refuses `personality()` setting it, but the ELF
        // loader sets it itself for a 32-bit image without `PT_GNU_STACK`, and it is
        // inherited through exec. (A 32-bit program cannot make a system call in the sandbox
        // anyway: libseccomp kills foreign ABIs; only a far jump to 64-bit code would run.)
        match personality(pid) {
            Some(p) if p & READ_IMPLIES_EXEC == 0 => {}
            found => {
                let v = Verdict {
                    allowed: false,
                    rule: "exec.read_implies_exec".into(),
                    reason: match found {
                        Some(_) => "the kernel runs it with READ_IMPLIES_EXEC (a 32-bit program without PT_GNU_STACK, or inherited from one), which would make every readable mapping executable unchecked".into(),
                        None => "its personality could not be read".into(),
                    },
                };
                return self.conclude(pid as u32, &what, KIND, None, &v, started, false);
            }
        }
        let id = match (pre.map(|c| c.stamp), loaded) {
            (Some(p), Some(l)) if p == l => (l.dev, l.ino),
            _ => {
                let f = match std::fs::File::open(&exe) {
                    Ok(f) => f,
                    Err(e) => return self.fail(pid as u32, &what(), KIND, e.to_string(), started),
                };
                if !self.decide_fd(pid as u32, &what, KIND, f.as_fd(), started, 4) {
                    return false;
                }
                match fstat(f.as_fd()) {
                    Ok(st) => (st.st_dev, st.st_ino),
                    Err(e) => return self.fail(pid as u32, &what(), KIND, e.to_string(), started),
                }
            }
        };
        match files_mapped_besides(pid as u32, id, &what) {
            Ok(files) => files.iter().all(|(path, f, exe_itself)| {
                let name = || path.clone();
                match stat_fd(f.as_fd()) {
                    Ok(st) => {
                        (*exe_itself
                            || self.not_writable_code(
                                pid as u32,
                                &name,
                                KIND,
                                f.as_fd(),
                                &st,
                                started,
                            ))
                            && self.decide_stat(pid as u32, &name, KIND, f.as_fd(), st, started, 4)
                    }
                    Err(e) => self.fail(pid as u32, &name(), KIND, e.to_string(), started),
                }
            }),
            Err(e) => self.fail(pid as u32, &what(), KIND, e, started),
        }
    }

    /// Computes ahead what the first decisions need once per session and no decision
    /// changes, as process `pid` (the agent before its first exec) sees it: whether the
    /// agent can change the x86-64 program interpreter's path (the sandbox's view is fixed once it runs). Nothing is decided or logged here;
    /// a failure leaves the work to the first decision, as before.
    pub fn warm(&self, pid: i32) {
        if pid <= 0 || !self.scope.confined {
            return;
        }
        let pid = pid as u32;
        // The x86-64 glibc program interpreter, which nearly every program names: whether
        // the agent can change it (its walk, the larger part of a first exec's decision).
        let interp = "/lib64/ld-linux-x86-64.so.2";
        if let Ok(st) = open_in_target(pid, interp, None).and_then(|f| {
            fstat(f.as_fd()).map_err(|e| TargetError::other(format!("{interp}: {e}")))
        }) {
            let _ = self
                .scope
                .path_changeable(pid, interp, (st.st_dev, st.st_ino));
        }
    }

    /// The supervisor loop, on one thread: answers the filter's notifications and verifies
    /// every allowed exec at its `PTRACE_EVENT_EXEC` stop.
    ///
    /// A process is traced only across its own exec: when its `execve` is allowed by the
    /// pre-check, it is `PTRACE_SEIZE`d (options `TRACEEXEC | EXITKILL`) *before* the
    /// syscall is let through, stops once the kernel has loaded the new image, is verified
    /// on `/proc/PID/exe`, and is then detached (or killed). Forks are never stopped.
    /// Reaps `reap_pid` (the sandbox's first process, our child) and returns its status.
    ///
    /// SIGCHLD must be blocked in every thread of the process (`warden run` does so before
    /// spawning threads); it is read here through a signalfd.
    pub fn supervise(&self, listener: OwnedFd, reap_pid: i32) -> i32 {
        // SAFETY: signal mask and signalfd setup for this thread.
        let sfd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
        };
        let lfd = listener.as_raw_fd();
        let mut listener_open = true;
        let handed_over = notif::sync_wake_up(lfd);
        // Answers to exec asks arrive from their waiting threads on this channel; the
        // eventfd wakes the poll.
        // SAFETY: eventfd creation.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let (tx, rx) = std::sync::mpsc::channel::<(Notif, Hash, String, Result<Grant, String>)>();
        // Child events (ptrace stops, exits) raise SIGCHLD, which stays pending (so the
        // signalfd readable) until drained: waiting is needed only after it fired, the
        // signalfd drained first, so that an event after the last wait raises it again.
        let mut waits = true;
        let mut spin = Spin::new(handed_over);
        loop {
            // Reap and handle every pending ptrace event first.
            let mut stopped = false;
            if !std::mem::take(&mut waits) {
            } else if let Some(code) = self.drain_waits(reap_pid, &mut stopped) {
                // SAFETY: closing our signalfd and eventfd.
                unsafe {
                    libc::close(sfd);
                    if efd >= 0 {
                        libc::close(efd);
                    }
                };
                return code;
            }
            let mut fds = [
                libc::pollfd {
                    fd: sfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if listener_open { lfd } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: efd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if stopped {
                // An exec stop was let go: a dynamically linked program's loader maps
                // its libraries next.
                spin.expect(SPIN_AFTER_EXEC_STOP);
            }
            let r = spin.poll(&mut fds);
            if r < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return 1;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                waits = true;
                // One SIGCHLD is pending at most (a standard signal): one read drains it.
                let mut buf = [0u8; 128];
                // SAFETY: draining the signalfd.
                unsafe { libc::read(sfd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            }
            if efd >= 0 && fds[2].revents & libc::POLLIN != 0 {
                let mut v = 0u64;
                // SAFETY: draining the eventfd into a u64.
                unsafe { libc::read(efd, &mut v as *mut u64 as *mut libc::c_void, 8) };
                while let Ok((n, h, path, res)) = rx.try_recv() {
                    // A process gone while it waited gets no grant.
                    if !notif::id_valid(lfd, n.id) {
                        continue;
                    }
                    let out = match res {
                        Ok(g) => {
                            if let Ok(mut gr) = self.asks.granted.lock() {
                                match g {
                                    Grant::Session => {
                                        gr.session.insert(h);
                                    }
                                    Grant::Once => *gr.once.entry(h).or_insert(0) += 1,
                                }
                            }
                            Outcome::AllowExec
                        }
                        Err(why) => {
                            let v = Verdict {
                                allowed: false,
                                rule: "approval".into(),
                                reason: format!("its content (sha256:{}) is not in any allow rule or trust index, and the human's answer was: {why}", &hex(&h)[..16]),
                            };
                            self.conclude(
                                n.pid,
                                &|| path.clone(),
                                "exec",
                                Some(&h),
                                &v,
                                Instant::now(),
                                false,
                            );
                            Outcome::Deny(libc::EACCES)
                        }
                    };
                    self.respond(lfd, &n, out);
                }
            }
            if listener_open
                && fds[1].revents & (libc::POLLHUP | libc::POLLERR) != 0
                && fds[1].revents & libc::POLLIN == 0
            {
                listener_open = false;
                continue;
            }
            if listener_open && fds[1].revents & libc::POLLIN != 0 {
                let Some(n) = notif::receive(lfd) else {
                    continue;
                };
                let out = self.handle(&n);
                if let Outcome::WriteAsk(job) = out {
                    job.spawn(lfd);
                    continue;
                }
                if let Outcome::Ask(h, path, argv) = out {
                    match (&self.approver, efd >= 0) {
                        (Some(a), true) => {
                            let (a, tx) = (a.clone(), tx.clone());
                            let spawned = std::thread::Builder::new()
                                .name("warden-exec-ask".into())
                                .spawn(move || {
                                    let res = a.ask(&argv, &path, &hex(&h), n.pid);
                                    let _ = tx.send((n, h, path, res));
                                    let one = 1u64;
                                    // SAFETY: writing a u64 to the eventfd.
                                    unsafe {
                                        libc::write(
                                            efd,
                                            &one as *const u64 as *const libc::c_void,
                                            8,
                                        )
                                    };
                                });
                            if spawned.is_err() {
                                self.respond(lfd, &n, Outcome::Deny(libc::EACCES));
                            }
                        }
                        _ => self.respond(lfd, &n, Outcome::Deny(libc::EACCES)),
                    }
                    continue;
                }
                // What comes next, and soon: an allowed exec's stop, or a loader's next
                // mapping.
                spin.expect(match out {
                    Outcome::AllowExec => SPIN_AFTER_EXEC,
                    Outcome::AllowMapping(_) | Outcome::Allow => SPIN_AFTER_MAPPING,
                    _ => Duration::ZERO,
                });
                self.respond(lfd, &n, out);
            }
        }
    }

    /// Answers one notification (attaching the post-exec verifier for an allowed exec).
    fn respond(&self, lfd: RawFd, n: &Notif, out: Outcome) {
        // A plain answer to a process gone meanwhile fails harmlessly (ENOENT); anything
        // more (a seize, a descriptor put in place, threads held) is for a waiting one only.
        let plain = matches!(out, Outcome::Allow | Outcome::Deny(_));
        if !plain && !notif::id_valid(lfd, n.id) {
            return;
        }
        let out = match out {
            Outcome::AllowExec => {
                let opts = libc::PTRACE_O_TRACEEXEC | libc::PTRACE_O_EXITKILL;
                let watch = self.reaper.watch_thread(n.pid);
                // SAFETY: seizing our own sandboxed process, blocked in execve.
                let r = unsafe {
                    libc::ptrace(libc::PTRACE_SEIZE, n.pid as i32, 0, opts as libc::c_ulong)
                };
                let e = std::io::Error::last_os_error();
                drop(watch);
                if r == 0 || e.raw_os_error() == Some(libc::EPERM) && is_traced_by_us(n.pid) {
                    Outcome::Allow
                } else {
                    // Without the post-exec check there is no guarantee: deny.
                    let started = Instant::now();
                    if self.fail(
                        n.pid,
                        "exec",
                        "exec",
                        format!(
                            "cannot attach the exec verifier: {e} (tracer: {})",
                            tracer_of(n.pid)
                        ),
                        started,
                    ) {
                        Outcome::Allow
                    } else {
                        Outcome::Deny(libc::EACCES)
                    }
                }
            }
            o => o,
        };
        match out {
            Outcome::AllowMapping(m) => {
                let Mapping {
                    hold,
                    copy,
                    recheck,
                } = *m;
                if let Some((fd, c)) = copy {
                    if let Err(e) = crate::snapshot::install(lfd, n.id, n.pid, fd, &c) {
                        // ENOENT: the process is gone. Otherwise the file itself would be
                        // mapped, which nothing keeps from changing: fail closed.
                        if e.raw_os_error() != Some(libc::ENOENT) {
                            let why = format!("cannot put the sealed copy in place: {e}");
                            if self.fail(n.pid, "mapping", "mmap", why, Instant::now()) {
                                notif::allow(lfd, n.id);
                            } else {
                                notif::deny(lfd, n.id, libc::EACCES);
                            }
                        }
                        return;
                    }
                }
                notif::allow(lfd, n.id);
                let Some(h) = hold else { return };
                let check = |pid: u32| recheck.as_ref().map_or(Ok(()), |r| r.run(pid));
                let kind = if recheck.is_some() {
                    "mprotect"
                } else {
                    "mmap"
                };
                let why = match h.finish(n.pid, &check, &mut |p, st| self.on_event(p, st)) {
                    Ok(()) => return,
                    Err(Finish::NotBack(e)) => {
                        // What the kernel used can no longer be known: the process must not
                        // go on.
                        // SAFETY: kill of a process of this session by its (thread) id.
                        unsafe { libc::kill(n.pid as i32, libc::SIGKILL) };
                        format!("the mapping thread did not come back: {e}; process killed")
                    }
                    Err(Finish::Changed(e)) => format!(
                        "{e}; the process and every held process sharing its address space were killed"
                    ),
                };
                self.fail(n.pid, "mapping", kind, why, Instant::now());
            }
            Outcome::Allow | Outcome::AllowExec => notif::allow(lfd, n.id),
            // Never reached (asks are answered when the human did); fail closed.
            Outcome::Ask(..) | Outcome::WriteAsk(_) => notif::deny(lfd, n.id, libc::EACCES),
            Outcome::Deny(errno) => notif::deny(lfd, n.id, errno),
        }
    }

    /// Handles every waitable event without blocking; returns `reap_pid`'s status once it
    /// has exited.
    fn drain_waits(&self, reap_pid: i32, stopped: &mut bool) -> Option<i32> {
        loop {
            let mut st = 0;
            // SAFETY: non-blocking wait for tracees and our own children.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL | libc::WNOHANG) };
            if pid <= 0 {
                return None;
            }
            if pid == reap_pid && (libc::WIFEXITED(st) || libc::WIFSIGNALED(st)) {
                return Some(if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                });
            }
            if libc::WIFSTOPPED(st) {
                *stopped = true;
                self.on_event(pid, st);
            }
        }
    }

    /// Handles one ptrace stop of a tracee (`st` as `waitpid` reported it) and resumes it.
    fn on_event(&self, pid: i32, st: i32) {
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xff;
        // SAFETY: ptrace requests on a stopped tracee.
        unsafe {
            match event {
                libc::PTRACE_EVENT_EXEC => {
                    if self.verify_exec(pid) {
                        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                    } else {
                        libc::kill(pid, libc::SIGKILL);
                        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
                    }
                }
                libc::PTRACE_EVENT_STOP => {
                    // Group-stop while attached: keep job control working.
                    if matches!(
                        sig,
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                    ) {
                        libc::ptrace(libc::PTRACE_LISTEN, pid, 0, 0);
                    } else {
                        libc::ptrace(libc::PTRACE_CONT, pid, 0, 0);
                    }
                }
                _ => {
                    // A signal arrived while attached (e.g. the exec failed and the
                    // process went on): deliver it.
                    libc::ptrace(libc::PTRACE_CONT, pid, 0, sig as libc::c_ulong);
                }
            }
        }
    }
}

/// How long the supervisor keeps looking for the next event before it sleeps, after an
/// allowed `execve` (its exec stop follows once the kernel loaded the image), after an exec
/// stop (the program's loader maps its libraries next), and after an allowed mapping (the
/// loader's next library).
///
/// Why: each event is a round trip through the scheduler, and waking a thread that sleeps
/// on an idle CPU can cost more than the work itself. Measured on a 2-CPU virtual machine,
/// alternating rounds: 1,000 spawns of `/bin/true`, 834 µs each with no spin and 753 µs
/// with it (6 rounds; guard off ~590 µs); 30× `cc hello.c && ./a.out`, 1,428 and 1,463 ms
/// (medians of 12 rounds; means 1,470 and 1,476 ms). A spin without `sched_yield` made that
/// compile loop 12% slower: the answered process, woken on the spinning thread's CPU,
/// waited for it. With two busy loops on the two CPUs, spawns took either ~0.8 or ~4 ms
/// (the scheduler's slice), the fast way 3 times in 6 without the spin and 5 in 6 with it.
///
/// Where the kernel hands the CPU over on notifications ([`notif::sync_wake_up`], Linux
/// 6.6+) the spin is off by default. Measured on such a machine (2 CPUs, kernel 6.18,
/// 1,000 spawns a round, alternating rounds, medians): 6 rounds: guard off 844 µs, the spin
/// alone 1,119 µs (×1.32), neither 967 µs (×1.15), the hand-over with the spin 1,003 µs,
/// the hand-over alone 955 µs (×1.13); 10 more rounds: off 796 µs, hand-over with the spin
/// 977 µs (×1.23), hand-over alone 913 µs (×1.15). So on this machine the spin cost
/// ~50–150 µs a spawn, and the hand-over itself gains 10–60 µs (stop 32 measured it without
/// a spin on another machine: no gain). With two busy loops on both CPUs every variant was
/// bimodal (~0.9 or ~4 ms a spawn).
const SPIN_AFTER_EXEC: Duration = Duration::from_micros(400);
const SPIN_AFTER_EXEC_STOP: Duration = Duration::from_micros(300);
const SPIN_AFTER_MAPPING: Duration = Duration::from_micros(100);
/// A gap this long between two looks, with the thread's context switches up, means this
/// CPU went to another task, and the spin would only keep taking it back. Spinning then
/// pauses for [`SPIN_BACKOFF`]. (A pause doubled for each such gap in a row, up to 500 ms,
/// measured no better under load and stalled the spin for long stretches of a spawn loop.)
const SPIN_PREEMPTED: Duration = Duration::from_micros(40);
const SPIN_BACKOFF: Duration = Duration::from_millis(5);

/// The supervisor's wait for its next event: a bounded spin on a non-blocking `poll` and
/// `sched_yield` while one is expected soon (see [`SPIN_AFTER_EXEC`]), then a blocking one. The spin only makes
/// the answer come sooner; the events and the answers are the same either way.
struct Spin {
    until: Option<Instant>,
    backoff_until: Option<Instant>,
    off: bool,
}

impl Spin {
    /// `handed_over`: the kernel hands the CPU over on notifications ([`notif::sync_wake_up`]),
    /// which removes what the spin was for: the spin is then off unless `WARDEN_GUARD_SPIN=1`.
    /// Otherwise it is on unless `WARDEN_GUARD_SPIN=0` (a machine shared with other work).
    fn new(handed_over: bool) -> Spin {
        let env = std::env::var_os("WARDEN_GUARD_SPIN");
        Spin {
            until: None,
            backoff_until: None,
            off: if handed_over {
                env.is_none_or(|v| v != "1")
            } else {
                env.is_some_and(|v| v == "0")
            },
        }
    }

    /// The next event is likely within `window`.
    fn expect(&mut self, window: Duration) {
        if self.off || window.is_zero() {
            return;
        }
        let now = Instant::now();
        if self.backoff_until.is_some_and(|b| now < b) {
            return;
        }
        let until = now + window;
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
    }

    /// `poll(2)` on `fds`: spinning while an event is expected, then blocking.
    fn poll(&mut self, fds: &mut [libc::pollfd; 3]) -> libc::c_int {
        if let Some(until) = self.until.take() {
            let switches = context_switches();
            let mut last = Instant::now();
            while last < until {
                // SAFETY: poll on valid descriptors (a negative fd is ignored), no waiting.
                let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
                if r != 0 {
                    return r;
                }
                // A task waiting for this CPU (often the very process just answered, woken
                // here) runs first.
                // SAFETY: plain syscall.
                unsafe { libc::sched_yield() };
                let now = Instant::now();
                // A long gap: this CPU went to another task (the thread's context switches
                // went up), or only a pause of the CPU itself (a virtual machine's host),
                // which is no reason to stop.
                if now - last > SPIN_PREEMPTED && context_switches() != switches {
                    self.backoff_until = Some(now + SPIN_BACKOFF);
                    break;
                }
                last = now;
            }
        }
        // SAFETY: poll on valid descriptors (a negative fd is ignored).
        unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) }
    }
}

/// The calling thread's count of context switches, voluntary and not
/// (`getrusage(RUSAGE_THREAD)`).
fn context_switches() -> i64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return -1;
    }
    ru.ru_nivcsw + ru.ru_nvcsw
}

/// `/proc/PID/personality` (eight hex digits), in one read.
fn personality(pid: i32) -> Option<u32> {
    let f = rustix::fs::open(
        format!("/proc/{pid}/personality"),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut buf = [0u8; 32];
    let n = rustix::io::read(&f, &mut buf).ok()?;
    u32::from_str_radix(std::str::from_utf8(&buf[..n]).ok()?.trim(), 16).ok()
}

pub(crate) fn tracer_of(pid: u32) -> String {
    warden_sys::procfs::Status::read(pid)
        .ok()
        .and_then(|s| s.field("TracerPid").map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// Whether `pid` is already traced by this thread (TracerPid is the tracer's thread id):
/// a process whose earlier `execve` failed (ENOENT while searching PATH) stays attached
/// until its exec succeeds.
pub(crate) fn is_traced_by_us(pid: u32) -> bool {
    let me = rustix::thread::gettid().as_raw_nonzero().get();
    warden_sys::procfs::Status::read(pid)
        .ok()
        .and_then(|s| s.tracer_pid())
        .is_some_and(|t| t == me)
}

/// Whether `pid` is traced by nobody, or by this thread: one reading of its status (two
/// could straddle a tracer's attach).
fn untraced_or_ours(pid: u32) -> bool {
    let me = rustix::thread::gettid().as_raw_nonzero().get();
    warden_sys::procfs::Status::read(pid)
        .ok()
        .and_then(|s| s.tracer_pid())
        .is_some_and(|t| t == 0 || t == me)
}

/// The first bytes of a file, read with one `pread`: its `#!` line, and the ELF header,
/// program headers and interpreter name of a usual program (they sit in the first
/// kilobyte); whatever lies past them is read with a `pread` of its own.
struct Head<'a> {
    fd: BorrowedFd<'a>,
    buf: [u8; 1024],
    len: usize,
}

impl<'a> Head<'a> {
    fn read(fd: BorrowedFd<'a>) -> Head<'a> {
        let mut buf = [0u8; 1024];
        let len = rustix::io::pread(fd, &mut buf[..], 0).unwrap_or(0);
        Head { fd, buf, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// `len` bytes at `off` (fewer at the end of the file), `None` on a read error.
    fn at(&self, off: u64, len: usize) -> Option<std::borrow::Cow<'_, [u8]>> {
        if let Some(b) = usize::try_from(off)
            .ok()
            .and_then(|o| self.bytes().get(o..o.checked_add(len)?))
        {
            return Some(std::borrow::Cow::Borrowed(b));
        }
        let mut v = vec![0u8; len];
        let got = rustix::io::pread(self.fd, &mut v[..], off).ok()?;
        v.truncate(got);
        Some(std::borrow::Cow::Owned(v))
    }
}

/// First line of a script: the interpreter path, if it starts with `#!`.
fn shebang(head: &Head<'_>) -> Option<String> {
    let b = head.bytes();
    let buf = &b[..b.len().min(256)];
    if buf.len() < 3 || &buf[..2] != b"#!" {
        return None;
    }
    let line = &buf[2..];
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let text = String::from_utf8_lossy(&line[..end]);
    text.split_whitespace().next().map(str::to_string)
}

/// Whether an ELF file has a loadable segment (`PT_LOAD`).
/// A 64-bit little-endian x86-64 ELF file (`ELFCLASS64`, `EM_X86_64`).
fn elf_x86_64(head: &Head<'_>) -> bool {
    let b = head.bytes();
    b.len() >= 20 && b.starts_with(b"\x7fELF\x02\x01") && b[18..20] == [62, 0]
}

fn elf_has_load(head: &Head<'_>) -> bool {
    elf_segments(head).is_some_and(|(ph, entsize, _)| {
        ph.chunks_exact(entsize)
            .any(|e| e.get(..4) == Some(&1u32.to_le_bytes()[..]))
    })
}

/// An ELF file's program headers: (the table, entry size, 64-bit). Reads the ELF header and
/// every program header the kernel would read (it refuses more than 64 KiB of them; 32- and
/// 64-bit, little-endian as on this machine); a file that is not such an ELF file, or whose
/// headers do not parse, has none here (the kernel refuses to run a malformed one).
fn elf_segments<'h>(head: &'h Head<'_>) -> Option<(std::borrow::Cow<'h, [u8]>, usize, bool)> {
    let h = head.bytes();
    let h = &h[..h.len().min(64)];
    if h.len() < 52 || h[..4] != *b"\x7fELF" || h[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let wide = match h[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(h, 32)?, u16_at(h, 54)?, u16_at(h, 56)?)
    } else {
        (u64::from(u32_at(h, 28)?), u16_at(h, 42)?, u16_at(h, 44)?)
    };
    let (entsize, num) = (usize::from(phentsize), usize::from(phnum));
    // The kernel reads all of them (up to 64 KiB): a cap below that would miss a PT_INTERP
    // placed after it. More than the kernel takes: it refuses the exec.
    if entsize < if wide { 56 } else { 32 } || num == 0 || entsize * num > 65536 {
        return None;
    }
    let ph = head.at(phoff, entsize * num)?;
    Some((ph, entsize, wide))
}

/// An ELF file's program interpreter (`PT_INTERP`), if it names one.
fn elf_interp(head: &Head<'_>) -> Option<String> {
    let u32_at = |b: &[u8], o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let (ph, entsize, wide) = elf_segments(head)?;
    for e in ph.chunks_exact(entsize) {
        if u32_at(e, 0)? != 3 {
            continue; // not PT_INTERP
        }
        let (off, size) = if wide {
            (u64_at(e, 8)?, u64_at(e, 32)?)
        } else {
            (u64::from(u32_at(e, 4)?), u64::from(u32_at(e, 16)?))
        };
        let p = head.at(off, usize::try_from(size).ok()?.min(4096))?;
        let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
        return (end > 0).then(|| String::from_utf8_lossy(&p[..end]).into_owned());
    }
    None
}

/// The agent's argv array at `addr` (at most 256 arguments of at most 4 KiB each).
fn read_argv(pid: u32, addr: u64) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for i in 0..256u64 {
        let mut p = 0u64;
        let local = libc::iovec {
            iov_base: &mut p as *mut u64 as *mut libc::c_void,
            iov_len: 8,
        };
        let remote = libc::iovec {
            iov_base: (addr + i * 8) as *mut libc::c_void,
            iov_len: 8,
        };
        // SAFETY: reads 8 bytes of the agent's memory into `p`.
        let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n != 8 {
            return Err(format!("read argv: {}", std::io::Error::last_os_error()));
        }
        if p == 0 {
            return Ok(out);
        }
        out.push(read_cstr(pid, p).unwrap_or_else(|e| format!("<{e}>")));
    }
    out.push("…".into());
    Ok(out)
}

/// Reading a path or a struct out of the agent's memory failed (the syscall's arguments are
/// unreadable: the caller fails closed, or leaves the decision to the kernel).
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("read {what}: {source}")]
    Read {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("path is not UTF-8")]
    NotUtf8,
    #[error("path too long or unterminated")]
    Unterminated,
    #[error("{path}: {source}")]
    Link {
        path: String,
        source: std::io::Error,
    },
}

pub(crate) fn read_cstr(pid: u32, addr: u64) -> Result<String, MemError> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    let mut off = addr;
    while out.len() < 4096 {
        // Never read across a page boundary in one call (the next page may be unmapped).
        let room = (4096 - (off % 4096)) as usize;
        let want = room.min(buf.len());
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: want,
        };
        let remote = libc::iovec {
            iov_base: off as *mut libc::c_void,
            iov_len: want,
        };
        // SAFETY: reads the agent's memory into our buffer.
        let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n <= 0 {
            return Err(MemError::Read {
                what: "path",
                source: std::io::Error::last_os_error(),
            });
        }
        let n = n as usize;
        if let Some(z) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..z]);
            return String::from_utf8(out).map_err(|_| MemError::NotUtf8);
        }
        out.extend_from_slice(&buf[..n]);
        off += n as u64;
    }
    Err(MemError::Unterminated)
}

/// Why the agent's file could not be reached: the errno decides (never the text).
#[derive(Debug)]
pub(crate) struct TargetError {
    pub errno: Option<i32>,
    pub msg: String,
}

impl TargetError {
    fn os(what: impl std::fmt::Display, e: std::io::Error) -> TargetError {
        TargetError {
            errno: e.raw_os_error(),
            msg: format!("{what}: {e}"),
        }
    }

    fn other(msg: String) -> TargetError {
        TargetError { errno: None, msg }
    }
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<TargetError> for String {
    fn from(e: TargetError) -> String {
        e.msg
    }
}

/// Duplicates the agent's descriptor `fd` into the supervisor.
fn take_fd(pid: u32, fd: i32) -> Result<OwnedFd, TargetError> {
    let sys = |e: warden_sys::Error| TargetError {
        errno: e.errno().map(|n| n.raw_os_error()),
        msg: e.to_string(),
    };
    let p = match warden_sys::pidfd::open(pid as i32) {
        Ok(p) => p,
        // Not a thread-group leader (a mapping made by a worker thread): that thread's own
        // descriptor table, or on kernels before 6.9 its leader's when `kcmp` says they
        // share one (a thread may have unshared it).
        Err(_) => match warden_sys::pidfd::open_thread(pid as i32) {
            Ok(p) => p,
            Err(e) if e.errno() == Some(rustix::io::Errno::INVAL) => {
                let tgid = warden_sys::procfs::Status::read(pid)
                    .ok()
                    .and_then(|s| s.field("Tgid")?.parse::<i32>().ok())
                    .ok_or_else(|| TargetError::other(format!("no thread group for {pid}")))?;
                if !crate::hold::shares(pid as i32, tgid, crate::hold::Kcmp::Files) {
                    return Err(TargetError::other(format!(
                        "thread {pid} has a descriptor table of its own and this kernel has no \
                         PIDFD_THREAD (Linux 6.9) to read it"
                    )));
                }
                warden_sys::pidfd::open(tgid).map_err(sys)?
            }
            Err(e) => return Err(sys(e)),
        },
    };
    warden_sys::pidfd::getfd(&p, fd).map_err(sys)
}

/// The agent's pid inside its own pid namespace.
fn ns_pid(pid: u32) -> Option<String> {
    let s = warden_sys::procfs::Status::read(pid).ok()?;
    s.ns_pid().map(|p| p.to_string())
}

/// Opens `abs` (absolute, in the agent's view) `O_PATH` in the agent's root: nothing is read.
/// `nofollow`: the last component is not followed. The one opener of agent-view paths for
/// [`readonly_in_view`] and the write asks (`crate::writeask`).
pub(crate) fn path_in_view(pid: u32, abs: &std::path::Path, nofollow: bool) -> Option<OwnedFd> {
    use warden_sys::OFlags;
    let root = std::fs::File::open(format!("/proc/{pid}/root")).ok()?;
    let flags = if nofollow {
        OFlags::PATH | OFlags::NOFOLLOW
    } else {
        OFlags::PATH
    };
    warden_sys::open_in_root(&root, abs, flags).ok()
}

/// Whether `abs` (absolute, in the agent's view) lies on a read-only mount there; `None`
/// when it cannot be opened (absent).
fn readonly_in_view(pid: u32, abs: &std::path::Path, nofollow: bool) -> Option<bool> {
    let fd = path_in_view(pid, abs, nofollow)?;
    let st = rustix::fs::fstatvfs(&fd).ok()?;
    Some(st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Opens `path` as the agent would resolve it: in its root and cwd (or `dirfd`), with
/// `/proc/self` and `/proc/<its own pid>` paths mapped to the agent.
fn open_in_target(pid: u32, path: &str, dirfd: Option<i32>) -> Result<OwnedFd, TargetError> {
    let nspid = if path.starts_with("/proc/") {
        ns_pid(pid).unwrap_or_default()
    } else {
        String::new()
    };
    // Paths through procfs magic links name the agent itself.
    let mut p = path.to_string();
    let own = if nspid.is_empty() {
        "/proc/self/".to_string()
    } else {
        format!("/proc/{nspid}/")
    };
    for prefix in ["/proc/self/", "/proc/thread-self/", own.as_str()] {
        if let Some(rest) = p.strip_prefix(prefix) {
            if let Some(r) = rest.strip_prefix("root/") {
                p = format!("/{r}");
            } else if rest == "exe" {
                return std::fs::File::open(format!("/proc/{pid}/exe"))
                    .map(Into::into)
                    .map_err(|e| TargetError::os(format!("/proc/{pid}/exe"), e));
            } else if let Some(n) = rest.strip_prefix("fd/") {
                let n: i32 = n
                    .parse()
                    .map_err(|_| TargetError::other(format!("unsupported path {path}")))?;
                return take_fd(pid, n);
            } else if let Some(r) = rest.strip_prefix("cwd/") {
                p = r.to_string();
            }
            break;
        }
    }
    if p.starts_with("/proc/") {
        return Err(TargetError::other(format!(
            "{path}: exec through another process's /proc entry is not supported by the exec guard"
        )));
    }
    // Make the path absolute in the agent's mount namespace.
    let abs = if p.starts_with('/') {
        p
    } else {
        let base = match dirfd {
            Some(d) if d != libc::AT_FDCWD => format!("/proc/{pid}/fd/{d}"),
            _ => format!("/proc/{pid}/cwd"),
        };
        let b = std::fs::read_link(&base).map_err(|e| TargetError::os(&base, e))?;
        format!("{}/{p}", b.display())
    };
    let root = std::fs::File::open(format!("/proc/{pid}/root"))
        .map_err(|e| TargetError::os(format!("/proc/{pid}/root"), e))?;
    warden_sys::open_in_root(
        &root,
        std::path::Path::new(&abs),
        warden_sys::OFlags::RDONLY,
    )
    .map_err(|e| TargetError {
        errno: e.errno().map(|n| n.raw_os_error()),
        msg: format!("{abs}: {e}"),
    })
}

/// One file-backed line of `/proc/PID/maps`.
struct MappedFile {
    start: u64,
    end: u64,
    dev: u64,
    ino: u64,
    path: String,
}

/// Every line of `maps` (`/proc/PID/maps` text) as (start, end, file: `None` for anonymous
/// memory).
fn map_lines(maps: &str) -> impl Iterator<Item = (u64, u64, Option<MappedFile>)> + '_ {
    maps.lines().map(|line| {
        let mut it = line.split_whitespace();
        let range = it.next().unwrap_or("");
        let (s, e) = range.split_once('-').unwrap_or(("0", "0"));
        let (start, end) = (
            u64::from_str_radix(s, 16).unwrap_or(0),
            u64::from_str_radix(e, 16).unwrap_or(0),
        );
        let _perms = it.next();
        let _off = it.next();
        let (maj, min) = it
            .next()
            .unwrap_or("0:0")
            .split_once(':')
            .unwrap_or(("0", "0"));
        let dev = libc::makedev(
            u32::from_str_radix(maj, 16).unwrap_or(0),
            u32::from_str_radix(min, 16).unwrap_or(0),
        );
        let ino: u64 = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let path: String = it.collect::<Vec<_>>().join(" ");
        // Anonymous memory shows device 0:0 and inode 0. A file can show inode 0 on another
        // device: the first SysV shared memory segment (its inode number is the segment's
        // id; attack review 82 made a segment executable through a read-only attach and
        // wrote it through a writable one, taken for anonymous memory).
        let file = (ino != 0 || dev != 0).then_some(MappedFile {
            start,
            end,
            dev,
            ino,
            path,
        });
        (start, end, file)
    })
}

/// Opens the file behind one mapping: `/proc/PID/map_files/RANGE` (exactly the mapped file;
/// needs `CAP_CHECKPOINT_RESTORE` or `CAP_SYS_ADMIN`), else its path in the agent's view,
/// which must still be the mapped inode. A deleted file or memfd has no path: without
/// `map_files` it is an error (the caller fails closed).
fn open_mapped(pid: u32, m: &MappedFile) -> Result<OwnedFd, String> {
    let nameless = m.path.ends_with("(deleted)") || m.path.starts_with("/memfd:");
    match take_map_file(pid, m.start, m.end) {
        Ok(f) => return Ok(f),
        Err(e) if nameless => return Err(format!("{}: {e}", m.path)),
        Err(_) => {}
    }
    let f = open_in_target(pid, &m.path, None)?;
    let st = fstat(f.as_fd()).map_err(|e| e.to_string())?;
    if st.st_ino != m.ino || st.st_dev != m.dev {
        return Err(format!("{} was replaced after it was mapped", m.path));
    }
    Ok(f)
}

/// `/proc/PID/maps`, read without the `fstat` `read_to_string` makes for a size hint (a
/// procfs file has none): two `read`s for a process fresh from its exec.
/// Whether `[addr, addr + len)` of `pid`'s address space touches memory that is not a
/// file's content: an anonymous mapping (no inode: heap, stack, `MAP_ANONYMOUS`, a private
/// `/dev/zero`) or a file mapping with pages of its own (`Anonymous:` in `smaps`: written
/// copy-on-write pages of a private mapping). An error when nothing is mapped there.
fn anonymous_in_range(pid: u32, addr: u64, len: u64) -> Result<bool, String> {
    let smaps =
        std::fs::read_to_string(format!("/proc/{pid}/smaps")).map_err(|e| format!("smaps: {e}"))?;
    let end = addr
        .saturating_add(len.saturating_add(4095) & !4095)
        .max(addr + 1);
    let mut inside = false;
    let mut touched = false;
    for line in smaps.lines() {
        let mut f = line.split_ascii_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((s, e)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        }) {
            // A mapping's header: start-end perms offset dev inode [path].
            inside = e > addr && s < end;
            if inside {
                touched = true;
                let inode = f.nth(3).unwrap_or("0");
                let path = f.next().unwrap_or("");
                if inode == "0" || path.starts_with("/dev/zero") {
                    return Ok(true);
                }
            }
        } else if inside && first == "Anonymous:" && f.next().is_some_and(|kb| kb != "0") {
            return Ok(true);
        }
    }
    if !touched {
        return Err(format!("no mapping at {addr:#x}"));
    }
    Ok(false)
}

fn read_maps(pid: u32) -> Result<String, String> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(format!("/proc/{pid}/maps")).map_err(|e| format!("maps: {e}"))?;
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("maps: {e}")),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|_| "maps: not UTF-8".to_string())
}

/// The files behind every mapping that overlaps `[addr, addr + len)` (page-rounded);
/// anonymous mappings are skipped. No mapping at all in the range: an error (the kernel
/// would fail the call with `ENOMEM` anyway).
fn mapping_files(pid: u32, addr: u64, len: u64) -> Result<(Vec<(String, OwnedFd)>, Ids), String> {
    let maps = read_maps(pid)?;
    let lines = range_lines(&maps, addr, len)?;
    let ids = ids_of(&lines);
    let mut out = Vec::new();
    for m in lines.into_iter().flatten() {
        let f = open_mapped(pid, &m)?;
        out.push((m.path, f));
    }
    Ok((out, ids))
}

/// Files by (device, inode) as `maps` shows them, sorted, without repeats.
type Ids = Vec<(u64, u64)>;

fn ids_of(lines: &[Option<MappedFile>]) -> Ids {
    let mut ids: Ids = lines.iter().flatten().map(|m| (m.dev, m.ino)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The lines of `maps` that `[addr, addr + len)` (rounded to pages) touches; an error when
/// none does.
fn range_lines(maps: &str, addr: u64, len: u64) -> Result<Vec<Option<MappedFile>>, String> {
    let end = addr
        .saturating_add(len.saturating_add(4095) & !4095)
        .max(addr + 1);
    let out: Vec<_> = map_lines(maps)
        .filter(|&(s, e, _)| e > addr && s < end)
        .map(|(_, _, f)| f)
        .collect();
    if out.is_empty() {
        return Err(format!("no mapping at {addr:#x}"));
    }
    Ok(out)
}

/// The files (device and inode, as `maps` shows them) backing `[addr, addr + len)` in
/// `pid`'s address space, sorted and without repeats: what an `mprotect` decision read,
/// compared again once the kernel applied it ([`Recheck`]).
fn range_ids(pid: u32, addr: u64, len: u64) -> Result<Ids, String> {
    Ok(ids_of(&range_lines(&read_maps(pid)?, addr, len)?))
}

/// The files the kernel mapped at an exec besides the executable `exe` (dev, ino of
/// `/proc/PID/exe`, named `exe_path`): its program interpreter (`PT_INTERP`), which the kernel
/// opens by path on its own, after the pre-check read that path. One file per inode.
///
/// A file on an overlay (the package caches) is mapped as the layer's file: `maps` shows that
/// file's dev and inode, not the overlay's that `stat` gives. With `map_files` (root) every
/// such mapping is opened as it is and decided; without, the executable's own mappings are
/// known by their path: exactly one inode mapped under the executable's path, and only when
/// the executable's own inode is nowhere in `maps`. Anything else there is opened by path
/// and compared (a deleted file cannot be: it fails closed). The flag says a file opened
/// through `map_files` is known the same way to be the executable itself (decided, but not
/// subject to the rule for interpreters the agent can write).
fn files_mapped_besides(
    pid: u32,
    exe: (u64, u64),
    exe_path: &dyn Fn() -> String,
) -> Result<Vec<(String, OwnedFd, bool)>, String> {
    // The executable's name around the read of `maps` (see `exe_may_be_named`).
    let before = exe_path();
    let maps = read_maps(pid)?;
    let mut files: Vec<MappedFile> = Vec::new();
    // Whether `maps` shows the executable's own inode (always, except on an overlay).
    let mut exe_seen = false;
    for m in map_lines(&maps).filter_map(|(_, _, f)| f) {
        if (m.dev, m.ino) == exe {
            exe_seen = true;
        } else if !files.iter().any(|f| (f.dev, f.ino) == (m.dev, m.ino)) {
            files.push(m);
        }
    }
    let mut out = Vec::new();
    // Only when the executable's inode is nowhere in `maps` may a file under its name be the
    // executable (seen through an overlay's layer); see `exe_may_be_named`.
    let named = (!exe_seen)
        .then(|| exe_may_be_named(pid, &before, exe_path))
        .flatten();
    let is_exe = |m: &MappedFile| {
        named
            .as_ref()
            .is_some_and(|p| m.path == *p && files.iter().filter(|f| f.path == *p).count() == 1)
    };
    for m in &files {
        if let Ok(f) = take_map_file(pid, m.start, m.end) {
            // Its content decided all the same; a candidate must also have the executable's
            // bytes (the kernel keeps those write-protected while it runs).
            let exe_itself = is_exe(m) && same_content(f.as_fd(), pid);
            out.push((m.path.clone(), f, exe_itself));
            continue;
        }
        if is_exe(m) {
            continue;
        }
        out.push((m.path.clone(), open_mapped(pid, m)?, false));
    }
    Ok(out)
}

/// The executable's name, when a mapping under it may be taken for the executable: the same
/// name before and after `maps` was read (`before`, `now`), not an unlinked file's (the
/// kernel's `" (deleted)"` suffix, which a file may also carry as its real name), and a
/// program that maps something of itself (a `PT_LOAD`): one that maps nothing would leave
/// its name to whatever else is mapped under it. Found by an attack review: a program with
/// no `PT_LOAD` run through an unlinked name, its interpreter named `NAME (deleted)`.
fn exe_may_be_named(pid: u32, before: &str, now: &dyn Fn() -> String) -> Option<String> {
    let now = now();
    if now != before || now.ends_with(" (deleted)") {
        return None;
    }
    let exe = std::fs::File::open(format!("/proc/{pid}/exe")).ok()?;
    elf_has_load(&Head::read(exe.as_fd())).then_some(now)
}

/// Whether `f` has the same content as `/proc/PID/exe`.
fn same_content(f: BorrowedFd<'_>, pid: u32) -> bool {
    let Ok(exe) = std::fs::File::open(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let limit = Limit {
        max_bytes: Some(MAX_HASH_BYTES),
        deadline: Some(Instant::now() + HASH_DEADLINE),
    };
    matches!(
        (sha256_fd_within(f, limit), sha256_fd_within(exe.as_fd(), limit)),
        (Ok(a), Ok(b)) if a == b
    )
}

/// `/proc/PID/map_files/START-END`: the names there have no leading zeros (the ranges in
/// `maps` are zero-padded to eight digits).
fn take_map_file(pid: u32, start: u64, end: u64) -> std::io::Result<OwnedFd> {
    std::fs::File::open(format!("/proc/{pid}/map_files/{start:x}-{end:x}")).map(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_mapped_over_a_decided_range_is_caught_by_the_recheck() {
        let dir = std::env::temp_dir().join(format!("warden-recheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, [1u8; 4096]).unwrap();
        std::fs::write(&b, [2u8; 4096]).unwrap();
        let map = |f: &std::path::Path, at: *mut libc::c_void, flags| {
            let fd = std::fs::File::open(f).unwrap();
            // SAFETY: a fresh read-only mapping of a whole page, at a place this test owns.
            let p = unsafe { libc::mmap(at, 4096, libc::PROT_READ, flags, fd.as_raw_fd(), 0) };
            assert_ne!(p, libc::MAP_FAILED);
            p
        };
        let at = map(&a, std::ptr::null_mut(), libc::MAP_PRIVATE);
        let me = std::process::id();
        let (_, ids) = mapping_files(me, at as u64, 4096).unwrap();
        assert_eq!(ids.len(), 1);
        let r = Recheck {
            addr: at as u64,
            len: 4096,
            ids,
        };
        r.run(me).unwrap();
        map(&b, at, libc::MAP_PRIVATE | libc::MAP_FIXED);
        let e = r.run(me).unwrap_err();
        assert!(e.contains("did not see"), "{e}");
        // Unmapped (the thread may do so before it is stopped): nothing undecided is
        // executable there.
        // SAFETY: the page this test mapped.
        unsafe { libc::munmap(at, 4096) };
        r.run(me).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut p = [0; 2];
        // SAFETY: pipe2 fills the two descriptors we then own.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors from pipe2.
        unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) }
    }

    fn fds_of(fd: RawFd) -> [libc::pollfd; 3] {
        let p = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        [p(fd), p(-1), p(-1)]
    }

    /// `path_changeable` remembers a stable path only for the file it named, and never a
    /// path inside a write root.
    #[test]
    fn a_stable_path_is_remembered_for_its_file_only() {
        use std::os::unix::fs::MetadataExt;
        let d = std::env::temp_dir().join(format!("warden-stable-{}", std::process::id()));
        std::fs::create_dir_all(d.join("w")).unwrap();
        std::fs::write(d.join("w/f"), b"x").unwrap();
        let scope = WriteScope::confined([d.join("w")]);
        let pid = std::process::id();
        let id = |p: &str| {
            let m = std::fs::metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let sh = std::fs::canonicalize("/bin/sh").unwrap();
        let sh = sh.to_str().unwrap();
        assert!(!scope.path_changeable(pid, sh, id(sh)));
        assert!(scope.stable.lock().unwrap().contains_key(sh));
        // Another file under the same name: walked again, and it is not the one found.
        let other = id("/");
        assert!(scope.path_changeable(pid, sh, other));
        assert!(!scope.path_changeable(pid, sh, id(sh)));
        let inside = d.join("w/f");
        let inside = inside.to_str().unwrap();
        assert!(scope.path_changeable(pid, inside, id(inside)));
        assert!(!scope.stable.lock().unwrap().contains_key(inside));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Writes a byte into the pipe `w` after `d`, on a thread of its own.
    fn write_after(w: OwnedFd, d: Duration) -> std::thread::JoinHandle<OwnedFd> {
        std::thread::spawn(move || {
            std::thread::sleep(d);
            // SAFETY: one byte into our pipe.
            unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            w
        })
    }

    #[test]
    fn the_spin_catches_an_event_that_comes_while_it_looks() {
        let (r, w) = pipe();
        let mut spin = Spin::new(false);
        spin.off = false;
        spin.expect(Duration::from_millis(200));
        let writer = write_after(w, Duration::from_millis(2));
        let mut fds = fds_of(r.as_raw_fd());
        assert_eq!(spin.poll(&mut fds), 1);
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
        assert!(spin.until.is_none(), "a window is used once");
        drop(writer.join());
    }

    #[test]
    fn the_spin_waits_for_an_event_after_its_window_and_not_during_a_backoff() {
        let (r, w) = pipe();
        let mut spin = Spin::new(false);
        spin.off = false;
        spin.expect(Duration::ZERO);
        assert!(spin.until.is_none());
        spin.backoff_until = Some(Instant::now() + Duration::from_secs(60));
        spin.expect(Duration::from_millis(1));
        assert!(spin.until.is_none(), "no spin while backing off");
        spin.backoff_until = None;
        spin.expect(Duration::from_micros(300));
        // The window passes with nothing to read; then the blocking poll returns the event.
        let writer = write_after(w, Duration::from_millis(20));
        let mut fds = fds_of(r.as_raw_fd());
        let t = Instant::now();
        assert_eq!(spin.poll(&mut fds), 1);
        assert!(t.elapsed() >= Duration::from_millis(15));
        drop(writer.join());
    }

    use super::elf_interp;
    use std::os::fd::AsFd;

    /// `stat_fd` fills what `fstat` fills: the stamps the cache keys on are equal either way
    /// (a directory, a program, a fresh file), and the mount is named.
    #[test]
    fn stat_fd_agrees_with_fstat() {
        use crate::identity::{fstat, FileStamp};
        let tmp = std::env::temp_dir().join(format!("warden-statfd-{}", std::process::id()));
        std::fs::write(&tmp, b"x").expect("write");
        for p in [
            std::path::Path::new("/"),
            std::path::Path::new("/bin/true"),
            &tmp,
        ] {
            let f = std::fs::File::open(p).expect("open");
            let (a, mount) = super::stat_fd(f.as_fd()).expect("statx");
            let b = fstat(f.as_fd()).expect("fstat");
            assert!(FileStamp::of(&a) == FileStamp::of(&b), "{}", p.display());
            assert_eq!(
                (a.st_mode, a.st_nlink, a.st_uid, a.st_gid),
                (b.st_mode, b.st_nlink, b.st_uid, b.st_gid),
                "{}",
                p.display()
            );
            assert!(mount.is_some(), "{}: no mount id", p.display());
        }
        let _ = std::fs::remove_file(&tmp);
    }

    fn interp_of(bytes: &[u8]) -> Option<String> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "warden-elf-interp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, bytes).expect("write");
        let f = std::fs::File::open(&p).expect("open");
        let _ = std::fs::remove_file(&p);
        elf_interp(&super::Head::read(f.as_fd()))
    }

    #[test]
    fn program_interpreters_are_read_and_junk_has_none() {
        let sh = std::fs::read("/bin/sh").expect("/bin/sh");
        let i = interp_of(&sh).expect("a dynamically linked /bin/sh names ld.so");
        assert!(i.contains("ld-linux"), "{i}");
        // Every prefix of a real ELF file parses to nothing or to the same answer.
        for n in [0, 3, 4, 20, 52, 63, 64, 100, 500] {
            let got = interp_of(&sh[..n.min(sh.len())]);
            assert!(
                got.is_none() || got.as_deref() == Some(i.as_str()),
                "{n}: {got:?}"
            );
        }
        assert_eq!(interp_of(b"#!/bin/sh\necho hi\n"), None);
        // A PT_INTERP after 70 other headers (the kernel reads up to 64 KiB of them).
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&71u16.to_le_bytes());
        let path_off = 64 + 71 * 56;
        for i in 0..71 {
            let mut ph = [0u8; 56];
            if i == 70 {
                ph[..4].copy_from_slice(&3u32.to_le_bytes());
                ph[8..16].copy_from_slice(&(path_off as u64).to_le_bytes());
                ph[32..40].copy_from_slice(&8u64.to_le_bytes());
            }
            f.extend_from_slice(&ph);
        }
        f.extend_from_slice(b"/x/bbox\0");
        assert_eq!(interp_of(&f).as_deref(), Some("/x/bbox"));
        let mut bad = sh.clone();
        bad[56] = 0xff; // e_phnum: more headers than the file holds
        bad[57] = 0xff;
        let _ = interp_of(&bad);
    }
}
