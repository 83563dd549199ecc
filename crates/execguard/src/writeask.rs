//! Writes to protected files that a human may allow (`[files] ask_write`), answered by the
//! seccomp supervisor ([`crate::unotify`]).
//!
//! ## What holds
//! - The file stays read-only for the agent (a read-only bind mount and Landlock, as every
//!   `files.protect` entry): nothing here widens the sandbox. The agent's own open of the
//!   file can only fail.
//! - The filter traps `open`/`openat` with a write flag (checked in the BPF program: opens
//!   for reading never trap), `creat`, and `openat2` (its flags live in memory the filter
//!   cannot read; the supervisor reads them and lets read opens continue at once; only the
//!   plain form, without resolve flags, is asked about).
//! - The supervisor reads the path, makes it absolute in the agent's view, and matches it
//!   by name against the ask entries. No match: the syscall continues and the kernel decides
//!   (a protected path fails with `EROFS`, exactly as without asks).
//! - A match: the supervisor opens the REAL file itself, from a directory descriptor of the
//!   writable root taken before the agent started, with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`
//!   ([`warden_sys::open_beneath_no_xdev`]), and `fstat`s it: a
//!   regular file with one link, the same (dev, inode) as the file the agent's path names in
//!   its view. It asks the session's approvals with the path, the (dev, inode) and the
//!   SHA-256 of the current content.
//! - On allow it finds the file again the same way and opens it for the access the agent
//!   asked (never `O_CREAT`; `O_TRUNC` is applied after the checks) through a detached mount
//!   of that file alone (`open_tree(OPEN_TREE_CLONE)`, `open_grant`), checks (dev, inode)
//!   and the content hash against what the human saw (changed content asks again; another
//!   inode is a deny), and injects that descriptor into the agent with
//!   `SECCOMP_IOCTL_NOTIF_ADDFD` (`SECCOMP_ADDFD_FLAG_SEND`): the agent's open returns it. A
//!   rename or a symlink swap of a parent while the request waits cannot redirect the grant:
//!   no path the agent can write is followed, and the inode must be the one shown.
//! - A grant is one open. Its descriptor's path is the file at the root of its own mount,
//!   so a re-open through any magic link, whatever the spelling (`/proc/self/fd/N`,
//!   `/proc/self/fd/../fd/N`, `/proc/self/root/proc/self/fd/N`, `/proc/PID/task/TID/../../
//!   fd/N`, a symlink to one), is judged by Landlock on that path: the walk up from the file
//!   stops at the detached mount's root without meeting a write rule (the file has none; the
//!   writable root's rule lies outside that mount) and the kernel refuses it with `EACCES`.
//!   No name is parsed for this. The links warden does parse (`/proc/*/fd/N`, `/dev/fd/N`,
//!   `/dev/std*`) that hold a grant (the kernel names such a file `/`) are refused by the
//!   supervisor too, and recorded; opening the file by its own path asks again.
//! - Cloning a mount needs `CAP_SYS_ADMIN` over the supervisor's mount namespace. A
//!   non-root `warden run` lacks it: a short-lived child sharing the supervisor's descriptor
//!   table makes the clone in a user and mount namespace of its own (`fchdir` to the root's
//!   descriptor, then `unshare`, which moves its working directory onto that namespace's
//!   copy of the mount; the file is found beneath it the same way) and hands it back in a
//!   reserved descriptor slot (`clone_in_userns`). Where that fails (no unprivileged user
//!   namespaces) the grant is refused with the reason: the file stays read-only.
//! - Deny, the deadline, a vanished process, and every error are `EACCES`, recorded with
//!   the rule and how to allow.
//!
//! ## What is not covered (stays denied)
//! - Creating a file that does not exist (under an ask directory): the open continues and
//!   the read-only mount refuses it. Create it on the host, then the write can ask.
//! - `rename` over the file, `unlink`, `truncate(2)` by path, `link`, `chmod`/`chown` by
//!   path: not trapped; the mount and Landlock refuse them.
//! - Paths through symlinks the agent made: they do not name an ask entry, so the kernel
//!   refuses them. Descriptor links (`/proc/*/fd/N`, `/dev/fd/N`, `/dev/std*`) are read
//!   (outside the agent's reach) and judged as the file they hold (a grant: refused, see
//!   above). A descriptor link that cannot be read (not open, its process gone) is refused
//!   with `EACCES` and recorded.
//! - A re-open of a grant through a magic link warden does not parse is refused by Landlock,
//!   not by warden: the agent gets `EACCES` but no decision is recorded. A run with
//!   `--best-effort` on a kernel without Landlock has no such refusal (the detached mount is
//!   writable): there a grant can be re-opened for write through its descriptor link.
//! - What the agent then writes through the granted descriptor is not known when the human
//!   answers: the approval is one open of that file, with that content, for write. The
//!   descriptor is the agent's for as long as it keeps it: writes anywhere in the file,
//!   `ftruncate`, clearing `O_APPEND`, passing it to children.

use crate::identity::{fstat, hex, sha256_fd};
use crate::unotify::MemError;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use warden_event::{Decision, Layer, Verdict as V};

/// Write asks being handled at once; past this a new one is denied at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// How often changed content may be asked again within one open.
const MAX_ROUNDS: usize = 3;

/// One `files.ask_write` entry, anchored on the host.
#[derive(Debug, Clone)]
pub struct AskFile {
    /// The entry as the agent sees it (writable roots are bound at their host paths).
    pub view: PathBuf,
    /// The writable root holding it: an `O_PATH` directory descriptor opened before the
    /// agent ran.
    pub root: Arc<OwnedFd>,
    /// The entry below `root`.
    pub rel: PathBuf,
    /// `files.ask_write:<entry as written>`.
    pub rule: String,
}

/// What a human is asked to allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub path: String,
    pub sha256: String,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// The access asked for (`O_WRONLY|O_TRUNC`).
    pub access: String,
    pub rule: String,
    pub pid: u32,
}

/// The channel to a human (the session's approvals). Blocks until an answer, the deadline,
/// or `gone` (the process gave up). `Ok(by)` allows this one open.
pub trait WriteApprover: Send + Sync {
    fn ask(&self, req: &WriteRequest, gone: &AtomicBool) -> Result<String, String>;
}

/// The session's ask entries and who answers.
pub struct WriteAsks {
    files: Vec<AskFile>,
    approver: Arc<dyn WriteApprover>,
    in_flight: Arc<AtomicUsize>,
}

/// A trapped open that a decision is made about: an ask ([`Ask`]), or a refusal made when it
/// was read (a descriptor link that cannot be read: fail closed).
pub(crate) enum Job {
    Ask(Ask),
    Refuse {
        pid: u32,
        id: u64,
        /// The path as the agent gave it, made absolute.
        path: PathBuf,
        flags: i32,
        /// The recorded reason.
        reason: String,
    },
}

/// A trapped open that names an ask entry.
pub(crate) struct Ask {
    pid: u32,
    id: u64,
    /// Absolute path in the agent's view.
    abs: PathBuf,
    root: Arc<OwnedFd>,
    rel: PathBuf,
    rule: String,
    flags: i32,
    approver: Arc<dyn WriteApprover>,
    in_flight: Arc<AtomicUsize>,
}

/// What the supervisor answers for a trapped open.
pub(crate) enum Verdict {
    Continue,
    Deny(i32),
}

const WRITE_BITS: i32 = libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC;

/// `path` absolute and without `.`/`..`/empty components; `None` when it has `..` (never
/// matched: the kernel decides).
fn lexical(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn access_text(flags: i32) -> String {
    let mut v = vec![if flags & libc::O_RDWR != 0 {
        "O_RDWR"
    } else {
        "O_WRONLY"
    }];
    for (b, n) in [
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_CREAT, "O_CREAT"),
    ] {
        if flags & b != 0 {
            v.push(n);
        }
    }
    v.join("|")
}

fn io(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Opens `rel` below `root` without following any link, never leaving the root's mount
/// ([`warden_sys::open_beneath_no_xdev`]; `O_NOCTTY` added, never `O_CREAT`).
fn open_beneath(root: &OwnedFd, rel: &Path, flags: i32) -> Result<OwnedFd, warden_sys::Error> {
    let flags = (flags | libc::O_NOCTTY) & !libc::O_CREAT;
    warden_sys::open_beneath_no_xdev(
        root,
        rel,
        warden_sys::OFlags::from_bits_retain(flags as u32),
        warden_sys::Mode::empty(),
    )
}

const OPEN_TREE_CLONE: libc::c_uint = 1;

/// Opens `rel` below `root` for `flags` (never `O_CREAT` or `O_TRUNC`) through a detached
/// mount of that file alone ([`detached_file_mount`]), so the descriptor's path is the file
/// at the root of its own mount. A re-open of that descriptor through any magic link
/// (`/proc/*/fd/N` under any spelling, a symlink to one) is judged by Landlock on that path:
/// its walk up from the file stops at the detached mount's root without meeting a write
/// rule (the file itself has none; the writable root that does lies outside the mount), so
/// the kernel refuses it, whatever the name.
fn open_grant(root: &OwnedFd, rel: &Path, flags: i32) -> Result<OwnedFd, String> {
    let tree = detached_file_mount(root, rel)?;
    let flags = (flags | libc::O_NOCTTY | libc::O_CLOEXEC) & !(libc::O_CREAT | libc::O_TRUNC);
    // Our own descriptor, through our own procfs (there is no O_EMPTYPATH): nothing the
    // agent can write is resolved.
    let me = format!("/proc/self/fd/{}", tree.as_raw_fd());
    rustix::fs::open(
        me.as_str(),
        rustix::fs::OFlags::from_bits_retain(flags as u32),
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        format!(
            "open through the detached mount: {}",
            std::io::Error::from(e)
        )
    })
}

/// `open_tree(OPEN_TREE_CLONE)` of `rel` below `root` (found with `RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`): a detached mount whose
/// root is the file. Cloning a mount needs `CAP_SYS_ADMIN` over our mount namespace; without
/// it (a non-root `warden run`) a short-lived child makes the clone in a user and mount
/// namespace of its own ([`clone_in_userns`]).
fn detached_file_mount(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, String> {
    let file = warden_sys::open_beneath_no_xdev(
        root,
        rel,
        warden_sys::OFlags::PATH,
        warden_sys::Mode::empty(),
    )
    .map_err(|e| e.to_string())?;
    // O_PATH|O_NOFOLLOW opens a trailing symlink itself: only a regular file is cloned.
    let st = fstat(file.as_fd()).map_err(|e| format!("fstat: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("{} is not a regular file", rel.display()));
    }
    // SAFETY: open_tree on a descriptor we own with an empty, NUL-terminated path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if r >= 0 {
        // SAFETY: a fresh descriptor from the kernel.
        return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(format!("open_tree: {e}"));
    }
    clone_in_userns(root, rel)
}

/// [`detached_file_mount`] for a caller without `CAP_SYS_ADMIN` over its mount namespace: a
/// child sharing our descriptor table (`CLONE_FILES`, its own memory and working directory)
/// `fchdir`s to `root`, enters a new user and mount namespace (`unshare` moves its working
/// directory to the copy of `root`'s mount, where it may clone), finds the file below it the
/// same way, clones its mount, and puts the clone in a descriptor slot reserved here. Only
/// raw system calls run in the child. Bounded: a child that does not finish in 5 s is killed.
fn clone_in_userns(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, String> {
    use std::os::unix::ffi::OsStrExt;
    let rel_c = std::ffi::CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| "the path has a NUL byte".to_string())?;
    // The slot the clone lands in (dup3 over it).
    let slot: OwnedFd = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("/dev/null: {}", std::io::Error::from(e)))?;
    let mut p = [0 as libc::c_int; 2];
    // SAFETY: pipe2 into a two-int array.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io("pipe"));
    }
    // SAFETY: fresh descriptors.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    let how: [u64; 3] = [
        // No O_NOFOLLOW: with RESOLVE_NO_SYMLINKS a trailing symlink is then ELOOP.
        (libc::O_PATH | libc::O_CLOEXEC) as u64,
        0,
        libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_XDEV,
    ];
    let (root_fd, slot_fd, wr_fd) = (root.as_raw_fd(), slot.as_raw_fd(), wr.as_raw_fd());
    let mut pidfd: libc::c_int = -1;
    // SAFETY: a fork-like clone (no CLONE_VM: the child runs on a copy of this stack) that
    // shares the descriptor table; the child runs only raw system calls and `_exit`s.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_FILES | libc::CLONE_PIDFD) as libc::c_ulong,
            0usize,
            &mut pidfd as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: the child: raw system calls on descriptors and memory it holds.
        unsafe { userns_child(root_fd, &rel_c, &how, slot_fd, wr_fd) }
    }
    if pid < 0 {
        return Err(io("clone"));
    }
    if pidfd < 0 {
        return Err("clone returned no pidfd".into());
    }
    // SAFETY: the pidfd the kernel just made.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut timed_out = true;
    while std::time::Instant::now() < deadline {
        // SAFETY: poll on one pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 {
            timed_out = false;
            break;
        }
    }
    if timed_out {
        // SAFETY: signal through the pidfd of our own child.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
    }
    // Reap it (the exec guard's tracer may have done so already: ECHILD is fine).
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid on our child's pidfd.
    unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd.as_raw_fd() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::__WALL,
        )
    };
    if timed_out {
        return Err("the mount helper did not finish within 5 s".into());
    }
    let mut b = [0u8; 8];
    // SAFETY: read into our buffer from our pipe (non-blocking).
    let n = unsafe { libc::read(rd.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 8) };
    if n == 8 {
        let stage = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let errno = i32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
        let what = match stage {
            1 => "fchdir to the writable root",
            2 => "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
            3 => "open the writable root in the new namespace",
            4 => "openat2 beneath the writable root",
            5 => "open_tree(OPEN_TREE_CLONE)",
            _ => "dup3",
        };
        return Err(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(errno)
        ));
    }
    drop(wr);
    // The slot now holds the clone: a regular file (still /dev/null if the child died).
    let st = fstat(slot.as_fd()).map_err(|e| format!("fstat: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err("the mount helper made no mount".into());
    }
    Ok(slot)
}

/// The child of [`clone_in_userns`]: never returns. On failure it writes (stage, errno) to
/// `wr` and exits 1, closing what it opened in the shared table.
///
/// # Safety
/// Runs in a fork-like child of a multi-threaded process: only raw system calls.
unsafe fn userns_child(
    root: RawFd,
    rel: &std::ffi::CStr,
    how: &[u64; 3],
    slot: RawFd,
    wr: RawFd,
) -> ! {
    // SAFETY: raw system calls on descriptors and memory this child holds.
    unsafe {
        let fail = |stage: u32, opened: &[libc::c_int]| -> ! {
            let errno = *libc::__errno_location();
            for &fd in opened {
                libc::close(fd);
            }
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&stage.to_ne_bytes());
            b[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(wr, b.as_ptr() as *const libc::c_void, 8);
            libc::_exit(1)
        };
        if libc::fchdir(root) != 0 {
            fail(1, &[]);
        }
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            fail(2, &[]);
        }
        let cwd = libc::open(
            c".".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if cwd < 0 {
            fail(3, &[]);
        }
        let f = libc::syscall(
            libc::SYS_openat2,
            cwd,
            rel.as_ptr(),
            how.as_ptr(),
            std::mem::size_of::<[u64; 3]>(),
        ) as libc::c_int;
        if f < 0 {
            fail(4, &[cwd]);
        }
        let t = libc::syscall(
            libc::SYS_open_tree,
            f,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        ) as libc::c_int;
        if t < 0 {
            fail(5, &[cwd, f]);
        }
        if libc::dup3(t, slot, libc::O_CLOEXEC) < 0 {
            fail(6, &[cwd, f, t]);
        }
        libc::close(t);
        libc::close(f);
        libc::close(cwd);
        libc::_exit(0)
    }
}

/// (dev, inode) of what `abs` names in the agent's view (`O_PATH`, nothing opened).
fn id_in_view(pid: u32, abs: &Path, nofollow: bool) -> Option<(u64, u64)> {
    let fd = crate::unotify::path_in_view(pid, abs, nofollow)?;
    fstat(fd.as_fd()).ok().map(|st| ident(&st))
}

/// (dev, inode) of a stat.
#[allow(clippy::unnecessary_cast)] // their widths differ between targets
fn ident(st: &libc::stat) -> (u64, u64) {
    (st.st_dev as u64, st.st_ino as u64)
}

fn read_mem(pid: u32, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: reads the agent's memory into our buffer.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if n as usize != buf.len() {
        return Err(MemError::Read {
            what: "open_how",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl WriteAsks {
    pub fn new(files: Vec<AskFile>, approver: Arc<dyn WriteApprover>) -> WriteAsks {
        WriteAsks {
            files,
            approver,
            in_flight: Arc::default(),
        }
    }

    pub fn files(&self) -> &[AskFile] {
        &self.files
    }

    /// The entry that `abs` (lexically absolute, in the agent's view) names, and the path
    /// below its root.
    fn lookup(&self, abs: &Path) -> Option<(&AskFile, PathBuf)> {
        self.files.iter().find_map(|f| {
            abs.strip_prefix(&f.view).ok().map(|rest| {
                let rel = if rest.as_os_str().is_empty() {
                    f.rel.clone()
                } else {
                    f.rel.join(rest)
                };
                (f, rel)
            })
        })
    }

    /// A trapped open: `Ok(None)` when it is not a write to an ask entry (the syscall
    /// continues), `Ok(Some(job))` when a human decides. `Err` is an unreadable request
    /// (continue: the kernel's own checks decide, and they never grant a protected write).
    pub(crate) fn classify(
        &self,
        pid: u32,
        id: u64,
        nr: i64,
        a: [u64; 6],
        read_cstr: &dyn Fn(u32, u64) -> Result<String, MemError>,
    ) -> Result<Option<Job>, MemError> {
        let (dirfd, ptr, flags) = if nr == libc::SYS_open {
            (libc::AT_FDCWD, a[0], a[1] as i32)
        } else if nr == libc::SYS_openat {
            (a[0] as i32, a[1], a[2] as i32)
        } else if nr == libc::SYS_creat {
            (
                libc::AT_FDCWD,
                a[0],
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            )
        } else if nr == libc::SYS_openat2 {
            // Only the plain form is asked about: a mode without O_CREAT, resolve flags or an
            // extended struct are left to the kernel (which validates them, and refuses a
            // protected write with EROFS as always).
            let mut b = [0u8; 24];
            if a[3] != 24 {
                return Ok(None);
            }
            read_mem(pid, a[2], &mut b)?;
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&b[i * 8..i * 8 + 8]);
                u64::from_ne_bytes(w)
            };
            let (flags, mode, resolve) = (word(0), word(1), word(2));
            let creat = flags & (libc::O_CREAT as u64) != 0;
            if resolve != 0 || (mode != 0 && !creat) || flags > u32::MAX as u64 {
                return Ok(None);
            }
            (a[0] as i32, a[1], flags as i32)
        } else {
            return Ok(None);
        };
        // O_CREAT|O_EXCL of an existing file fails with EEXIST, of an absent one with
        // EROFS: the kernel says which; nothing to ask.
        let excl = flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL;
        // O_DIRECTORY (and O_TMPFILE, which includes it) never opens a regular file.
        let not_file = flags & (libc::O_PATH | libc::O_DIRECTORY) != 0;
        if flags & WRITE_BITS == 0 || not_file || excl {
            return Ok(None);
        }
        let path = read_cstr(pid, ptr)?;
        if path.is_empty() {
            return Ok(None);
        }
        let abs = if path.starts_with('/') {
            PathBuf::from(&path)
        } else {
            let base = if dirfd == libc::AT_FDCWD {
                format!("/proc/{pid}/cwd")
            } else {
                format!("/proc/{pid}/fd/{dirfd}")
            };
            std::fs::read_link(&base)
                .map_err(|source| MemError::Link { path: base, source })?
                .join(&path)
        };
        let Some(abs) = lexical(&abs) else {
            return Ok(None);
        };
        // A descriptor link names the file that descriptor holds (a grant re-opened this
        // way asks again; it would otherwise pass on the writable mount the grant carries).
        // A link that cannot be read could hold a grant: refused (fail closed).
        let abs = match fd_link_target(pid, &abs) {
            // A file at the root of a detached mount (the kernel names it `/`): a grant
            // (see `open_grant`). The kernel refuses this open whatever the link's name;
            // recorded here for the names warden parses.
            Ok(Some(target)) if target == Path::new("/") => {
                return Ok(Some(Job::Refuse {
                    pid,
                    id,
                    path: abs,
                    flags,
                    reason: "write open of a descriptor link refused: it holds a write grant (a file at the root of its own detached mount), and a grant is one open; open the file by its own path to ask again".to_string(),
                }))
            }
            Ok(Some(target)) => match lexical(&target) {
                Some(t) => t,
                None => return Ok(None),
            },
            Ok(None) => abs,
            Err(why) => {
                return Ok(Some(Job::Refuse {
                    pid,
                    id,
                    path: abs,
                    flags,
                    reason: format!(
                        "write open of a descriptor link refused: warden could not read which file it holds ({why}), so it cannot tell whether that is a file under ask_write or a grant re-opened (fail closed); open the file by its own path"
                    ),
                }))
            }
        };
        let Some((f, rel)) = self.lookup(&abs) else {
            return Ok(None);
        };
        Ok(Some(Job::Ask(Ask {
            pid,
            id,
            abs,
            root: f.root.clone(),
            rel,
            rule: f.rule.clone(),
            flags,
            approver: self.approver.clone(),
            in_flight: self.in_flight.clone(),
        })))
    }
}

/// For a descriptor link in the agent's view (`/proc/<pid>/fd/N`, `/proc/self/fd/N`,
/// `/proc/<pid>/task/<tid>/fd/N`, `/dev/fd/N`, `/dev/stdin|stdout|stderr`): the path of the
/// file that descriptor holds, as the host names it (the link is read through the agent's
/// own procfs, from outside its reach). `Ok(None)` when `abs` is no such link; `Err` (what
/// could not be read, and why) when it is one and cannot be read: the descriptor may not be
/// open now but be by the time the kernel resolves the path, so the caller refuses.
fn fd_link_target(pid: u32, abs: &Path) -> Result<Option<PathBuf>, String> {
    let Some(s) = abs.to_str() else {
        return Ok(None);
    };
    let s = match s {
        "/dev/stdin" => "/proc/self/fd/0".to_string(),
        "/dev/stdout" => "/proc/self/fd/1".to_string(),
        "/dev/stderr" => "/proc/self/fd/2".to_string(),
        _ => match s.strip_prefix("/dev/fd/") {
            Some(n) => format!("/proc/self/fd/{n}"),
            None => s.to_string(),
        },
    };
    let Some((who, tail)) = s.strip_prefix("/proc/").and_then(|r| r.split_once('/')) else {
        return Ok(None);
    };
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    let fd_tail = match tail.split('/').collect::<Vec<_>>().as_slice() {
        ["fd", n] if digits(n) => true,
        ["task", t, "fd", n] if digits(t) && digits(n) => true,
        _ => false,
    };
    if !fd_tail {
        return Ok(None);
    }
    let who = match who {
        "self" | "thread-self" => {
            let st = warden_sys::procfs::Status::read(warden_sys::procfs::Proc::Pid(pid as i32))
                .map_err(|e| format!("the agent's pid in its namespace: {e}"))?;
            st.ns_pid()
                .ok_or_else(|| format!("/proc/{pid}/status has no NSpid"))?
                .to_string()
        }
        w if digits(w) => w.to_string(),
        _ => return Ok(None),
    };
    let link = format!("/proc/{pid}/root/proc/{who}/{tail}");
    std::fs::read_link(&link)
        .map(Some)
        .map_err(|e| format!("{link}: {e}"))
}

fn respond(lfd: RawFd, id: u64, v: Verdict) {
    match v {
        Verdict::Continue => crate::unotify::notif::allow(lfd, id),
        Verdict::Deny(e) => crate::unotify::notif::deny(lfd, id, e),
    }
}

fn id_valid(lfd: RawFd, id: u64) -> bool {
    crate::unotify::notif::id_valid(lfd, id)
}

impl Job {
    /// Answers the notification: a refusal at once, an ask on a thread of its own.
    pub(crate) fn spawn(self, lfd: RawFd) {
        match self {
            Job::Ask(a) => a.spawn(lfd),
            Job::Refuse {
                pid,
                id,
                path,
                flags,
                reason,
            } => {
                tracing::info!("write ask: pid {pid}: {}: {reason}", path.display());
                Decision::new(
                    Layer::Sandbox,
                    format!("pid {pid}"),
                    path.display().to_string(),
                    "files.ask_write".to_string(),
                    V::Deny,
                    reason,
                )
                .with("kind", "write")
                .with("answered_by", "warden")
                .with("access", access_text(flags))
                .emit();
                respond(lfd, id, Verdict::Deny(libc::EACCES));
            }
        }
    }
}

impl Ask {
    /// Handles the job on a thread of its own (the human's answer can take minutes) with
    /// its own duplicate of the listener; the notification is always answered.
    pub(crate) fn spawn(self, lfd: RawFd) {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.deny(
                lfd,
                format!("{MAX_IN_FLIGHT} protected-write requests are already waiting"),
                "warden",
            );
            return;
        }
        // SAFETY: F_DUPFD_CLOEXEC of the listener we hold.
        let dup = unsafe { libc::fcntl(lfd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.deny(
                lfd,
                "cannot duplicate the seccomp listener".into(),
                "warden",
            );
            return;
        }
        // SAFETY: fresh fd.
        let listener = unsafe { OwnedFd::from_raw_fd(dup) };
        let job = Arc::new(self);
        let j = job.clone();
        let spawned = std::thread::Builder::new()
            .name("warden-write-ask".into())
            .spawn(move || {
                j.run(listener.as_raw_fd());
                j.in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            job.in_flight.fetch_sub(1, Ordering::SeqCst);
            job.deny(lfd, format!("cannot start the ask: {e}"), "warden");
        }
    }

    fn record(&self, verdict: V, by: &str, reason: String) {
        Decision::new(
            Layer::Sandbox,
            format!("pid {}", self.pid),
            self.abs.display().to_string(),
            self.rule.clone(),
            verdict,
            reason,
        )
        .with("kind", "write")
        .with("answered_by", by)
        .with("access", access_text(self.flags))
        .emit();
    }

    fn deny(&self, lfd: RawFd, why: String, by: &str) {
        self.record(
            V::Deny,
            by,
            format!(
                "write to a protected file refused ({why}); it stays read-only unless a human allows the write while it waits: `warden approve ID --allow-once` (listed by `warden approve`), `warden top`, or Ctrl-] a on the warden run terminal"
            ),
        );
        respond(lfd, self.id, Verdict::Deny(libc::EACCES));
    }

    fn run(&self, lfd: RawFd) {
        // The file as it is on the host, opened beneath its root. Until it is established
        // that the agent's path names that very file, nothing is asked: the open continues
        // and the kernel decides (it refuses a protected write with EROFS; a path that
        // resolves elsewhere through the agent's own links is that other file's business).
        let cur = match open_beneath(&self.root, &self.rel, libc::O_RDONLY) {
            Ok(f) => f,
            Err(_) => {
                respond(lfd, self.id, Verdict::Continue);
                return;
            }
        };
        let Ok(st) = fstat(cur.as_fd()) else {
            return self.deny(lfd, io("fstat"), "warden");
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            respond(lfd, self.id, Verdict::Continue);
            return;
        }
        if st.st_nlink != 1 {
            return self.deny(
                lfd,
                format!(
                    "it has {} hard links: a write would change another name too",
                    st.st_nlink
                ),
                "warden",
            );
        }
        let shown = ident(&st);
        // The agent's path must name that very file in its view; otherwise this is not a
        // write to the ask entry and the kernel decides (a protected path stays refused).
        let nofollow = self.flags & libc::O_NOFOLLOW != 0;
        if id_in_view(self.pid, &self.abs, nofollow) != Some(shown) {
            respond(lfd, self.id, Verdict::Continue);
            return;
        }
        let Ok(mut hash) = sha256_fd(cur.as_fd()).map(|h| hex(&h)) else {
            return self.deny(lfd, io("hash"), "warden");
        };
        let mut size = st.st_size as u64;
        drop(cur);
        for _ in 0..MAX_ROUNDS {
            let req = WriteRequest {
                path: self.abs.display().to_string(),
                sha256: hash.clone(),
                dev: shown.0,
                ino: shown.1,
                size,
                access: access_text(self.flags),
                rule: self.rule.clone(),
                pid: self.pid,
            };
            let gone = AtomicBool::new(false);
            let done = AtomicBool::new(false);
            let answer = std::thread::scope(|s| {
                s.spawn(|| {
                    while !done.load(Ordering::SeqCst) {
                        if !id_valid(lfd, self.id) {
                            gone.store(true, Ordering::SeqCst);
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                });
                let a = self.approver.ask(&req, &gone);
                done.store(true, Ordering::SeqCst);
                a
            });
            let by = match answer {
                Ok(by) => by,
                Err(why) => return self.deny(lfd, why, "approval"),
            };
            // Allowed: open the real file for the access asked, beneath its root again.
            let access = self.flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_APPEND);
            let w = match open_grant(&self.root, &self.rel, access) {
                Ok(f) => f,
                Err(e) => {
                    return self.deny(lfd, format!("the allowed file cannot be opened: {e}"), &by)
                }
            };
            let r = match open_beneath(&self.root, &self.rel, libc::O_RDONLY) {
                Ok(f) => f,
                Err(e) => {
                    return self.deny(lfd, format!("the allowed file cannot be opened: {e}"), &by)
                }
            };
            let (Ok(ws), Ok(rs)) = (fstat(w.as_fd()), fstat(r.as_fd())) else {
                return self.deny(lfd, io("fstat"), &by);
            };
            let wid = ident(&ws);
            let rid = ident(&rs);
            if wid != shown || rid != shown || ws.st_nlink != 1 {
                return self.deny(
                    lfd,
                    format!(
                        "the file was replaced while the request waited (inode {}:{} shown, {}:{} now); ask again",
                        shown.0, shown.1, wid.0, wid.1
                    ),
                    &by,
                );
            }
            let Ok(now) = sha256_fd(r.as_fd()).map(|h| hex(&h)) else {
                return self.deny(lfd, io("hash"), &by);
            };
            if now != hash {
                // Another content than the human saw: ask again about this one.
                hash = now;
                size = rs.st_size as u64;
                continue;
            }
            if self.flags & libc::O_TRUNC != 0 {
                if let Err(e) = rustix::fs::ftruncate(&w, 0) {
                    let e = std::io::Error::from(e);
                    return self.deny(lfd, format!("truncate: {e}"), &by);
                }
            }
            // libseccomp 2.5 has no call for this one; the struct and the request number
            // are the libc crate's (the request encodes the struct's size).
            let add = libc::seccomp_notif_addfd {
                id: self.id,
                flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
                srcfd: w.as_raw_fd() as u32,
                newfd: 0,
                newfd_flags: (self.flags & libc::O_CLOEXEC) as u32,
            };
            // SAFETY: ioctl with the kernel's struct; the kernel answers the agent's open
            // with a new descriptor of `w`.
            let r = unsafe { libc::ioctl(lfd, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &add) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                // ENOENT: the process is gone (or gave up); nothing to answer.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    self.deny(lfd, format!("cannot hand the file to the agent: {e}"), &by);
                }
                return;
            }
            self.record(
                V::Allow,
                &by,
                format!(
                    "{} allowed by {by}: warden opened the real file (inode {}:{}, content sha256 {hash}) and handed the agent its descriptor as fd {r}",
                    access_text(self.flags),
                    shown.0,
                    shown.1
                ),
            );
            return;
        }
        self.deny(
            lfd,
            format!("the file's content changed {MAX_ROUNDS} times while it was asked about"),
            "warden",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dotdot_never_match() {
        assert_eq!(
            lexical(Path::new("/w/./.github//workflows/ci.yml")),
            Some(PathBuf::from("/w/.github/workflows/ci.yml"))
        );
        assert_eq!(lexical(Path::new("/w/x/../.mcp.json")), None);
    }

    #[test]
    fn open_beneath_refuses_links_and_escapes() {
        let d = std::env::temp_dir().join(format!("warden-wa-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/dir")).unwrap();
        std::fs::write(d.join("root/dir/f"), "x").unwrap();
        std::fs::write(d.join("outside"), "o").unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("root/dir/link")).unwrap();
        std::os::unix::fs::symlink("dir", d.join("root/dirlink")).unwrap();
        let root: OwnedFd = std::fs::File::open(d.join("root")).unwrap().into();
        assert!(open_beneath(&root, Path::new("dir/f"), libc::O_RDONLY).is_ok());
        for bad in ["dir/link", "dirlink/f", "../outside", "/etc/passwd"] {
            assert!(
                open_beneath(&root, Path::new(bad), libc::O_RDONLY).is_err(),
                "{bad}"
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A grant is the root of its own detached mount (the kernel names it `/`), opened for
    /// write on the real file; made in-process with `CAP_SYS_ADMIN` and by the user-namespace
    /// helper without it, which refuses links like `open_beneath`.
    #[test]
    fn a_grant_is_a_file_at_the_root_of_its_own_mount() {
        let d = std::env::temp_dir().join(format!("warden-wa-grant-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("root/dir")).unwrap();
        std::fs::write(d.join("root/dir/f"), "x\n").unwrap();
        std::os::unix::fs::symlink("f", d.join("root/dir/link")).unwrap();
        let root: OwnedFd = std::fs::File::open(d.join("root")).unwrap().into();
        let check = |w: OwnedFd, what: &str| {
            let link = std::fs::read_link(format!("/proc/self/fd/{}", w.as_raw_fd())).unwrap();
            assert_eq!(link, Path::new("/"), "{what}");
            let mut f = std::fs::File::from(w);
            std::io::Write::write_all(&mut f, b"y\n").unwrap();
        };
        match open_grant(&root, Path::new("dir/f"), libc::O_WRONLY | libc::O_APPEND) {
            Ok(w) => check(w, "open_grant"),
            Err(e) => panic!("open_grant: {e}"),
        }
        let tree = clone_in_userns(&root, Path::new("dir/f")).unwrap();
        let w = rustix::fs::open(
            format!("/proc/self/fd/{}", tree.as_raw_fd()).as_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::APPEND | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        check(w, "clone_in_userns");
        assert_eq!(
            std::fs::read_to_string(d.join("root/dir/f")).unwrap(),
            "x\ny\ny\n"
        );
        for bad in ["dir/link", "../root/dir/f", "/etc/passwd"] {
            assert!(clone_in_userns(&root, Path::new(bad)).is_err(), "{bad}");
            assert!(detached_file_mount(&root, Path::new(bad)).is_err(), "{bad}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn access_is_named() {
        assert_eq!(
            access_text(libc::O_WRONLY | libc::O_TRUNC | libc::O_CREAT),
            "O_WRONLY|O_TRUNC|O_CREAT"
        );
        assert_eq!(
            access_text(libc::O_RDWR | libc::O_APPEND),
            "O_RDWR|O_APPEND"
        );
    }
}
