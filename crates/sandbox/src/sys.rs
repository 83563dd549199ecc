//! Thin, checked wrappers over the raw syscalls the launcher uses in forked children.
//! Everything here returns a [`SysError`] with the failing call and path named and the errno
//! kept. Fd
//! passing, pipes and socket pairs are `warden-sys` (rustix), adapted here to the launch protocol.

// Deferred lints (issue 17): this file was being rewritten in parallel; fix and remove.
#![allow(
    clippy::undocumented_unsafe_blocks,
    clippy::manual_slice_size_calculation,
    clippy::collapsible_if
)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

pub use crate::error::SysError;

pub fn errno_str() -> String {
    std::io::Error::last_os_error().to_string()
}

pub fn cstr(p: &Path) -> Result<CString, SysError> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| SysError::Nul(p.to_path_buf()))
}

pub fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), SysError> {
    let t = cstr(target)?;
    let s = src.map(|s| CString::new(s).unwrap_or_default());
    let f = fstype.map(|s| CString::new(s).unwrap_or_default());
    let d = data.map(|s| CString::new(s).unwrap_or_default());
    // SAFETY: all pointers are valid C strings or NULL.
    let r = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            d.as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    if r != 0 {
        return Err(SysError::last(format!(
            "mount({}, {}, {})",
            src.unwrap_or("none"),
            target.display(),
            fstype.unwrap_or("-"),
        )));
    }
    Ok(())
}

/// Remounts a bind mount read-only, keeping the flags the kernel locks in a user namespace.
pub fn remount_ro(target: &Path) -> Result<(), SysError> {
    let t = cstr(target)?;
    // SAFETY: statvfs into a zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs with a valid C string, into the struct above.
    if unsafe { libc::statvfs(t.as_ptr(), &mut st) } != 0 {
        return Err(SysError::last(format!("statvfs({})", target.display())));
    }
    let keep = st.f_flag
        & (libc::ST_NOSUID
            | libc::ST_NODEV
            | libc::ST_NOEXEC
            | libc::ST_NOATIME
            | libc::ST_NODIRATIME
            | libc::ST_RELATIME);
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep as libc::c_ulong;
    mount(None, target, None, flags, None)
}

pub fn open_path(p: &Path) -> Result<OwnedFd, SysError> {
    let c = cstr(p)?;
    // SAFETY: open(2) with a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(SysError::last(format!("open({})", p.display())));
    }
    // SAFETY: fd is a fresh, owned descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a root the plan judged (`O_PATH`, no symbolic link followed anywhere on the path)
/// and checks it is the directory or file the plan recorded (`expected`: device, inode):
/// one swapped in after the checks is refused, never mounted.
pub fn open_root_checked(p: &Path, expected: Option<(u64, u64)>) -> Result<OwnedFd, SysError> {
    let fd = warden_sys::open_no_links(p, warden_sys::OFlags::PATH).map_err(|e| {
        SysError::io(
            format!(
                "open {} (no symbolic links followed; one there now was not when the plan was checked)",
                p.display()
            ),
            std::io::Error::from(e),
        )
    })?;
    if let Some((dev, ino)) = expected {
        // SAFETY: fstat into a zeroed struct on the fd we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(SysError::last(format!("fstat {}", p.display())));
        }
        if (st.st_dev, st.st_ino) != (dev, ino) {
            return Err(SysError::io(
                format!(
                    "{}: not the directory the plan checked (another was put there while the session started: by a concurrent session's agent?); refused",
                    p.display()
                ),
                std::io::Error::from_raw_os_error(libc::ESTALE),
            ));
        }
    }
    Ok(fd)
}

pub fn mkdir_p(p: &Path) -> Result<(), SysError> {
    std::fs::create_dir_all(p).map_err(|e| SysError::io(format!("mkdir {}", p.display()), e))
}

/// Makes sure `p` exists as a mount point. An existing entry is left alone: opening it for
/// writing would fail on a running binary (ETXTBSY) or a read-only file system, and a mount
/// point needs no write access.
pub fn touch(p: &Path) -> Result<(), SysError> {
    if std::fs::symlink_metadata(p).is_ok() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        mkdir_p(parent)?;
    }
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(p)
        .map(|_| ())
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(SysError::io(format!("create {}", p.display()), e)),
        })
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: writing from a valid buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        buf = &buf[n as usize..];
    }
}

pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), SysError> {
    Ok(warden_sys::pipe_cloexec()?)
}

pub fn socketpair_seqpacket() -> Result<(OwnedFd, OwnedFd), SysError> {
    Ok(warden_sys::socketpair_seqpacket()?)
}

/// The most descriptors one launch message carries (its count travels in one byte).
const MAX_PASSED: usize = 255;

/// Sends a one-byte message carrying `fds` (possibly none) over a unix socket.
pub fn send_fds(sock: RawFd, fds: &[RawFd]) -> Result<(), SysError> {
    if fds.len() > MAX_PASSED {
        return Err(SysError::TooManyFds {
            n: fds.len(),
            max: MAX_PASSED,
        });
    }
    // SAFETY: `sock` and `fds` are the caller's open descriptors for the whole call (it holds
    // them across it); sendmsg only reads their numbers.
    let (sock, fds): (BorrowedFd<'_>, Vec<BorrowedFd<'_>>) = unsafe {
        (
            BorrowedFd::borrow_raw(sock),
            fds.iter().map(|f| BorrowedFd::borrow_raw(*f)).collect(),
        )
    };
    warden_sys::fdpass::send(sock, &[fds.len() as u8], &fds)?;
    Ok(())
}

/// Receives the message sent by [`send_fds`], with the sender's pid (SO_PASSCRED, translated
/// to our pid namespace; 0 without SO_PASSCRED). Returns None on EOF. A message with more
/// descriptors than [`send_fds`] sends is refused (all of them closed).
pub fn recv_fds(sock: &OwnedFd) -> Result<Option<(Vec<OwnedFd>, i32)>, SysError> {
    let mut byte = [0u8; 1];
    let m = warden_sys::fdpass::recv(
        sock,
        &mut byte,
        MAX_PASSED,
        warden_sys::fdpass::RecvOptions::default(),
    )?;
    if m.len == 0 {
        return Ok(None);
    }
    Ok(Some((m.fds, m.pid.unwrap_or(0))))
}

pub fn set_passcred(sock: &OwnedFd) -> Result<(), SysError> {
    Ok(warden_sys::set_passcred(sock.as_fd())?)
}

/// Brings up the loopback interface in the current network namespace (nothing to do when
/// the early namespaces' holder did already: see [`crate::idmap::Early`]).
pub fn loopback_up() -> Result<(), SysError> {
    // SAFETY: ioctl on a datagram socket with an ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(SysError::last("socket"));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            let e = SysError::last("SIOCGIFFLAGS lo");
            libc::close(s);
            return Err(e);
        }
        let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if ifr.ifr_ifru.ifru_flags & up == up {
            libc::close(s);
            return Ok(());
        }
        ifr.ifr_ifru.ifru_flags |= up;
        let r = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        let e = SysError::last("SIOCSIFFLAGS lo");
        libc::close(s);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

/// Drops every capability: bounding set, ambient set, effective/permitted/inheritable, and
/// locks the securebits so that uid 0 regains nothing on exec.
pub fn drop_all_caps(last_cap: u32) -> Result<(), SysError> {
    // SAFETY: prctl/capset with plain integers and a zeroed capability struct.
    unsafe {
        for cap in 0..=last_cap {
            // Already absent (nested sandbox): nothing to drop.
            if libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) != 1 {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(SysError::last(format!("PR_CAPBSET_DROP {cap}")));
            }
        }
        // NOROOT, NO_SETUID_FIXUP, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE, each locked.
        let bits: libc::c_ulong = 0b1110_1111;
        let cur = libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0);
        if cur < 0 || (cur as libc::c_ulong & bits) != bits {
            if libc::prctl(
                libc::PR_SET_SECUREBITS,
                bits | cur.max(0) as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(SysError::last("PR_SET_SECUREBITS"));
            }
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        #[repr(C)]
        struct Hdr {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let hdr = Hdr {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) != 0 {
            return Err(SysError::last("capset"));
        }
    }
    Ok(())
}

/// Sets a limit, never above the current hard limit (raising it needs privilege).
pub fn set_rlimit(res: libc::__rlimit_resource_t, v: u64) -> Result<(), SysError> {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    unsafe { libc::getrlimit(res, &mut cur) };
    let v = v.min(cur.rlim_max);
    let l = libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(res, &l) } != 0 {
        return Err(SysError::last(format!("setrlimit({res})")));
    }
    Ok(())
}

/// Closes `fd` in a child process of its own, for a file whose last close blocks (a
/// fanotify group waits for an SRCU grace period, 5 ms or more). A thread does not do: the
/// process cannot exit while one of its threads sits in such a close, so the wait landed on
/// the session's exit. The child ([`light_child`]; it makes only raw close, close_range,
/// read and exit calls) first drops its copies of every other fd, including the user's
/// stdout/stderr, then waits on a pipe until our copy of `fd` is closed, so that its own
/// close is the last one. Nobody waits for it: once we exit, it is reparented and reaped.
/// Falls back to closing here.
pub fn close_elsewhere(fd: OwnedFd) {
    let Ok((r, w)) = pipe_cloexec() else {
        drop(fd);
        return;
    };
    let (f, rr) = (fd.as_raw_fd(), r.as_raw_fd());
    if light_child(close_after_eof, LightArgs::new([f, rr, 0, 0])).is_none() {
        tracing::debug!("close_elsewhere: no child; closing here");
    }
    drop(fd);
    drop(w);
    drop(r);
}

/// [`close_elsewhere`]'s child: `a[0]` the fd to close last, `a[1]` the pipe's read end.
extern "C" fn close_after_eof(p: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `p` is the `LightArgs` that `light_child` placed in this child's own mapping;
    // only raw system calls follow (see `light_child`).
    unsafe {
        let a = &*(p as *const LightArgs);
        let (f, rr) = (a.fds[0], a.fds[1]);
        let (lo, hi) = (f.min(rr) as usize, f.max(rr) as usize);
        // Every fd but these two goes (this child's copies: its table is its own).
        if lo > 0 {
            raw3(libc::SYS_close_range, 0, lo - 1, 0);
        }
        if hi > lo + 1 {
            raw3(libc::SYS_close_range, lo + 1, hi - 1, 0);
        }
        raw3(libc::SYS_close_range, hi + 1, u32::MAX as usize, 0);
        let mut b = 0u8;
        // EOF once the parent closed its write end (after its copy of `fd`).
        while raw3(libc::SYS_read, rr as usize, &mut b as *mut u8 as usize, 1) > 0 {}
        raw3(libc::SYS_close, f as usize, 0, 0);
    }
    0
}

/// What a [`light_child`] gets: four numbers and a NUL-terminated path, copied into the
/// child's own mapping (the parent may free its copies at once).
#[repr(C)]
pub(crate) struct LightArgs {
    pub fds: [i32; 4],
    pub path: [u8; 4096],
}

impl LightArgs {
    pub(crate) fn new(fds: [i32; 4]) -> Box<LightArgs> {
        Box::new(LightArgs {
            fds,
            path: [0; 4096],
        })
    }
}

/// Size of a [`light_child`]'s mapping: its arguments at the bottom, its stack above.
const LIGHT_MAP: usize = 64 * 1024;

/// Starts a child process that shares this process's memory (`CLONE_VM`; its descriptor
/// table, signal handlers and credentials are its own copies) to run `body` on a stack of
/// its own, then exit. Unlike a fork nothing is copied, and neither side takes
/// copy-on-write faults while it lives (a fork of the supervisor copies its page tables,
/// and each page either side writes afterwards is copied: with threads on the other CPU,
/// with a TLB shootdown each). `body` must make raw system calls only ([`raw3`]) on what
/// `args` holds: it runs with the forking thread's TLS (errno, malloc's arenas) while that
/// thread goes on. The mapping (64 KiB) is left to the process's exit: the child may
/// outlive every reference we hold. Returns the child's pid; `None` when it could not
/// start (the caller falls back).
pub(crate) fn light_child(
    body: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    args: Box<LightArgs>,
) -> Option<i32> {
    // SAFETY: a fresh private anonymous mapping; the arguments are copied to its start and
    // the stack pointer handed to clone is its 16-byte-aligned end. glibc's `clone` runs
    // `body` there and exits with its value.
    unsafe {
        let m = libc::mmap(
            std::ptr::null_mut(),
            LIGHT_MAP,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        if m == libc::MAP_FAILED {
            return None;
        }
        std::ptr::copy_nonoverlapping(&*args as *const LightArgs, m as *mut LightArgs, 1);
        let top = (m as usize + LIGHT_MAP) & !15;
        let pid = libc::clone(
            body,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::SIGCHLD,
            m,
        );
        if pid <= 0 {
            libc::munmap(m, LIGHT_MAP);
            return None;
        }
        Some(pid)
    }
}

/// `fork()` that places the child in the cgroup v2 directory `cgroup` (an fd, `O_PATH`
/// will do) from its first instruction: `clone3(CLONE_INTO_CGROUP)`, Linux 5.7+. No
/// migration happens, so none of a migration's cost: a move through `cgroup.procs` takes
/// the kernel's global `cgroup_threadgroup_rwsem` for writing, which first waits for an RCU
/// grace period (5–38 ms measured on this kind of machine). The kernel checks the caller's
/// write permission on the destination's and the common ancestor's `cgroup.procs`, as for
/// such a write. `Err(errno)` when the kernel refuses (nothing was created: fall back to
/// `fork` and a migration).
///
/// Like `fork` in a single-threaded process, except that glibc's bookkeeping of `fork`
/// does not run: the child's cached thread id (used by error-checking and robust mutexes
/// only; glibc's `raise` asks the kernel) stays the parent's, and no `atfork` handler runs.
/// Callers are single-threaded and register none.
pub(crate) fn fork_into_cgroup(cgroup: RawFd) -> Result<libc::pid_t, i32> {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup as u64,
    };
    // SAFETY: clone3 without CLONE_VM: the child gets a copy of this (single-threaded)
    // process, as with fork; the struct outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(r as libc::pid_t)
    }
}

/// A system call made with the `syscall` instruction: no errno, no TLS, no libc state (for
/// [`light_child`] bodies). Returns the kernel's value (negative: -errno).
///
/// # Safety
/// As the system call itself.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn raw3(nr: libc::c_long, a: usize, b: usize, c: usize) -> isize {
    let ret: isize;
    // SAFETY: the x86-64 system call convention; rcx and r11 are clobbered by `syscall`.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Elsewhere: libc's `syscall`, whose errno write [`light_child`]'s callers accept there.
///
/// # Safety
/// As the system call itself.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn raw3(nr: libc::c_long, a: usize, b: usize, c: usize) -> isize {
    // SAFETY: as the caller's.
    let r = unsafe { libc::syscall(nr, a, b, c) };
    if r < 0 {
        -(std::io::Error::last_os_error().raw_os_error().unwrap_or(1) as isize)
    } else {
        r as isize
    }
}

/// `clone(f, stack_top, flags, arg)` with every signal blocked in the child from birth (it
/// inherits the mask, restored here right after): a handler of the supervisor's must never
/// run in a child that shares its memory (`CLONE_VM`). Returns the pid, or ≤ 0 on failure.
///
/// # Safety
/// `stack_top` must be the 16-byte aligned top of a stack, and `arg` point to data, both
/// alive for as long as the child runs; `f` must make only raw system calls.
pub unsafe fn clone_signals_blocked(
    f: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    stack_top: usize,
    flags: libc::c_int,
    arg: *mut libc::c_void,
) -> libc::pid_t {
    // SAFETY: sigset manipulation on local values; the clone's contract is the caller's.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(f, stack_top as *mut libc::c_void, flags, arg);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fd handed to `close_elsewhere` is closed by its child, after ours: a pipe's write
    /// end given to it reaches EOF at its reader, and the child is gone by then.
    #[test]
    fn close_elsewhere_closes_in_a_child_that_then_exits() {
        let (r, w) = pipe_cloexec().expect("pipe");
        close_elsewhere(w);
        let mut p = libc::pollfd {
            fd: r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on our own pipe end, bounded.
        let n = unsafe { libc::poll(&mut p, 1, 10_000) };
        assert_eq!(n, 1, "EOF within 10 s");
        let mut b = [0u8; 1];
        // SAFETY: a read on our pipe end, readable now.
        let n = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 1) };
        assert_eq!(n, 0, "EOF once the child closed the last write end");
    }

    /// A light child shares our memory but has its own descriptor table: what it closes
    /// stays open here, and it exits with its body's value.
    #[test]
    fn a_light_child_runs_its_body_with_its_own_descriptors() {
        extern "C" fn body(p: *mut libc::c_void) -> libc::c_int {
            // SAFETY: the args light_child placed; raw calls only.
            unsafe {
                let a = &*(p as *const LightArgs);
                raw3(libc::SYS_close, a.fds[0] as usize, 0, 0);
                raw3(
                    libc::SYS_write,
                    a.fds[1] as usize,
                    b"k".as_ptr() as usize,
                    1,
                );
            }
            7
        }
        let (r, w) = pipe_cloexec().expect("pipe");
        let keep = std::fs::File::open("/dev/null").expect("open");
        let pid = light_child(
            body,
            LightArgs::new([keep.as_raw_fd(), w.as_raw_fd(), 0, 0]),
        )
        .expect("light child");
        let mut st = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 7, "{st:#x}");
        let mut b = [0u8; 1];
        // SAFETY: reading the byte the child wrote.
        assert_eq!(
            unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 1) },
            1
        );
        assert_eq!(&b, b"k");
        // SAFETY: fcntl on our own fd: still open here.
        assert!(unsafe { libc::fcntl(keep.as_raw_fd(), libc::F_GETFD) } >= 0);
    }
}
