//! warden's one system-call layer, built on `rustix` so that the crates above it need no
//! `unsafe` for these calls and get a typed errno instead of text.
//!
//! It owns:
//! - [`fdpass`]: descriptors passed over unix sockets (`SCM_RIGHTS`), refusing a truncated
//!   control message (`MSG_CTRUNC`) and closing whatever arrived with a refused message;
//! - [`pipe_cloexec`] and [`socketpair_seqpacket`]: close-on-exec pipes and socket pairs;
//! - [`writable`], `access(W_OK)`; [`open_dir`], a directory by a trusted path;
//! - [`pidfd`]: `pidfd_open` and `pidfd_getfd`;
//! - [`open_beneath`] (and [`open_beneath_no_xdev`], on the directory's own mount) and
//!   [`open_no_links`]: `openat2` refusing symlinks and magic links (beneath a directory fd,
//!   or anywhere on a path);
//! - [`procfs`]: `/proc/<pid>/status` fields and `/proc/<pid>/cgroup` lines;
//! - [`shell`]: quoting a word for `sh`.
//!
//! Errors are [`Error`]: the failing call and its [`Errno`]. Callers decide on the errno
//! ([`Error::errno`]), never on the message text.
//!
//! The crate itself has no `unsafe` code (`forbid(unsafe_code)`): rustix holds it.

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod fdpass;
pub mod procfs;
pub mod shell;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

pub use rustix::fs::{FileType, Mode, OFlags};
pub use rustix::io::Errno;

/// A failed system call or a refused kernel answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `call` failed with `errno`.
    #[error("{call}: {errno}")]
    Sys { call: &'static str, errno: Errno },
    /// The control message was cut (`MSG_CTRUNC`): the peer sent more descriptors than this
    /// receiver takes. Every descriptor that did arrive was closed.
    #[error("recvmsg: control message truncated (MSG_CTRUNC): the peer sent more than {max} descriptors; all were closed")]
    Truncated { max: usize },
    /// A `/proc` file could not be read.
    #[error("{path}: {source}")]
    Proc {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Truncated { .. } => None,
            Error::Proc { source, .. } => source.raw_os_error().map(Errno::from_raw_os_error),
        }
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Sys { errno, .. } => errno.into(),
            Error::Proc { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        }
    }
}

pub(crate) fn sys(call: &'static str) -> impl FnOnce(Errno) -> Error {
    move |errno| Error::Sys { call, errno }
}

/// A close-on-exec pipe: (read end, write end).
/// A user's home directory from the password database (`/etc/passwd`): `~user/` in a path
/// a configuration names (git, agent settings) is expanded with it.
pub fn user_home(user: &str) -> Option<std::path::PathBuf> {
    if user.is_empty() {
        return None;
    }
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[0] == user)
        .map(|f| std::path::PathBuf::from(f[5]))
}

pub fn pipe_cloexec() -> Result<(OwnedFd, OwnedFd), Error> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(sys("pipe2"))
}

/// A close-on-exec `AF_UNIX` `SOCK_SEQPACKET` socket pair.
pub fn socketpair_seqpacket() -> Result<(OwnedFd, OwnedFd), Error> {
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(sys("socketpair"))
}

/// Whether `fd` is a socket of type `SOCK_SEQPACKET` (false for anything else, including a
/// closed fd).
pub fn is_seqpacket(fd: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_type(fd) == Ok(rustix::net::SocketType::SEQPACKET)
}

/// Whether `fd` is a socket of type `SOCK_STREAM`.
pub fn is_stream(fd: BorrowedFd<'_>) -> bool {
    rustix::net::sockopt::socket_type(fd) == Ok(rustix::net::SocketType::STREAM)
}

/// Sets `SO_PASSCRED`, so received messages carry the sender's pid ([`fdpass::Message::pid`]).
pub fn set_passcred(sock: BorrowedFd<'_>) -> Result<(), Error> {
    rustix::net::sockopt::set_socket_passcred(sock, true).map_err(sys("SO_PASSCRED"))
}

/// `open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)`: a directory by a path the caller
/// trusts (symlinks in it are followed; use [`open_beneath`] for agent-writable paths).
pub fn open_dir(path: &Path) -> Result<OwnedFd, Error> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open"))
}

/// The entries of the directory `dir` (without `.` and `..`): name and the type the
/// directory records (`Unknown` where the file system does not say; a mount point shows the
/// type of the entry under it). Read through a duplicate of the descriptor (`dir` keeps its
/// offset).
pub fn dir_entries(
    dir: impl AsFd,
) -> Result<Vec<(std::ffi::OsString, rustix::fs::FileType)>, Error> {
    use std::os::unix::ffi::OsStrExt;
    let mut d = rustix::fs::Dir::read_from(dir).map_err(sys("opendir"))?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e.map_err(sys("readdir"))?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push((
                std::ffi::OsStr::from_bytes(name).to_os_string(),
                e.file_type(),
            ));
        }
    }
    Ok(out)
}

/// `access(path, W_OK)`: whether our real uid may write `path` (false on any error).
pub fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// `openat2(dir, rel, flags | O_CLOEXEC | O_NOFOLLOW, mode)` with `RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: nothing in `rel` may leave `dir` or follow a
/// link. `mode` is used only with `O_CREAT`/`O_TMPFILE`. An empty `rel` is `ENOENT` (name
/// `.` for `dir` itself). [`open_beneath_no_xdev`] also stays on `dir`'s mount.
pub fn open_beneath(
    dir: impl AsFd,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Error> {
    beneath(dir, rel, flags, mode, rustix::fs::ResolveFlags::empty())
}

/// [`open_beneath`] that also never crosses a mount point (`RESOLVE_NO_XDEV`, `EXDEV`):
/// the file is on `dir`'s own mount, e.g. a writable root opened before the agent could
/// mount anything over a name below it.
pub fn open_beneath_no_xdev(
    dir: impl AsFd,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Error> {
    beneath(dir, rel, flags, mode, rustix::fs::ResolveFlags::NO_XDEV)
}

fn beneath(
    dir: impl AsFd,
    rel: &Path,
    flags: OFlags,
    mode: Mode,
    extra: rustix::fs::ResolveFlags,
) -> Result<OwnedFd, Error> {
    use rustix::fs::ResolveFlags;
    // (O_TMPFILE includes O_DIRECTORY's bit: test for all of it.)
    let mode = if flags.contains(OFlags::CREATE) || flags.contains(OFlags::TMPFILE) {
        mode
    } else {
        Mode::empty()
    };
    rustix::fs::openat2(
        dir,
        rel,
        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        mode,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | extra,
    )
    .map_err(sys("openat2"))
}

/// `openat2(AT_FDCWD, path, flags | O_CLOEXEC, 0)` with `RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS`: no component of `path` may be a link.
pub fn open_no_links(path: &Path, flags: OFlags) -> Result<OwnedFd, Error> {
    use rustix::fs::ResolveFlags;
    rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(sys("openat2"))
}

/// `openat2(root, path, flags | O_CLOEXEC, 0)` with `RESOLVE_IN_ROOT`: `path` resolved as a
/// process whose root is `root` would (`..` and absolute symlinks stay inside it), e.g.
/// through `/proc/<pid>/root` to see a sandboxed process's view.
///
/// A scoped lookup fails with `EAGAIN` when a rename or mount anywhere on the machine races
/// its `..` steps (openat2(2): "the caller should retry"); it is retried a few times, so a
/// concurrent mount (the workspace guard's) does not make the exec guard fail closed on an
/// ordinary exec (`/usr/bin/claude` is a link through `..`).
pub fn open_in_root(root: impl AsFd, path: &Path, flags: OFlags) -> Result<OwnedFd, Error> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root.as_fd(),
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            rustix::fs::ResolveFlags::IN_ROOT,
        ) {
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(sys("openat2")),
        }
    }
}

/// Process file descriptors.
pub mod pidfd {
    use super::{sys, Error};
    use std::os::fd::{AsFd, OwnedFd, RawFd};

    /// `pidfd_open(pid, 0)`: `pid` must lead its thread group.
    pub fn open(pid: i32) -> Result<OwnedFd, Error> {
        open_flags(pid, rustix::process::PidfdFlags::empty())
    }

    /// `pidfd_open(tid, PIDFD_THREAD)` (Linux 6.9): a descriptor for one thread, whose
    /// `pidfd_getfd` reads that thread's own descriptor table (it may have unshared it).
    /// Older kernels say `EINVAL`.
    pub fn open_thread(tid: i32) -> Result<OwnedFd, Error> {
        // PIDFD_THREAD is O_EXCL's bit.
        let thread = rustix::fs::OFlags::EXCL.bits();
        open_flags(tid, rustix::process::PidfdFlags::from_bits_retain(thread))
    }

    fn open_flags(pid: i32, flags: rustix::process::PidfdFlags) -> Result<OwnedFd, Error> {
        let pid = rustix::process::Pid::from_raw(pid).ok_or(Error::Sys {
            call: "pidfd_open",
            errno: rustix::io::Errno::INVAL,
        })?;
        rustix::process::pidfd_open(pid, flags).map_err(sys("pidfd_open"))
    }

    /// `pidfd_send_signal(pidfd, sig, NULL, 0)`: a signal to that process and no other,
    /// whatever became of its pid (`ESRCH` once it has exited).
    pub fn send_signal(pidfd: impl AsFd, sig: i32) -> Result<(), Error> {
        let sig = rustix::process::Signal::from_named_raw(sig).ok_or(Error::Sys {
            call: "pidfd_send_signal",
            errno: rustix::io::Errno::INVAL,
        })?;
        rustix::process::pidfd_send_signal(pidfd, sig).map_err(sys("pidfd_send_signal"))
    }

    /// `pidfd_getfd(pidfd, fd, 0)`: a copy of the process's descriptor `fd` (close-on-exec).
    pub fn getfd(pidfd: impl AsFd, fd: RawFd) -> Result<OwnedFd, Error> {
        rustix::process::pidfd_getfd(pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
            .map_err(sys("pidfd_getfd"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn pipe_is_cloexec_and_carries_bytes() {
        let (r, w) = pipe_cloexec().unwrap();
        for fd in [&r, &w] {
            let fl = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(fl.contains(rustix::io::FdFlags::CLOEXEC));
        }
        std::fs::File::from(w).write_all(b"hi").unwrap();
        let mut s = String::new();
        std::fs::File::from(r).read_to_string(&mut s).unwrap();
        assert_eq!(s, "hi");
    }

    #[test]
    fn open_beneath_refuses_escape_and_symlinks() {
        let d = std::env::temp_dir().join(format!("warden-sys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), "x").unwrap();
        std::os::unix::fs::symlink("sub/f", d.join("link")).unwrap();
        let dir = open_dir(&d).unwrap();
        assert_eq!(
            open_dir(&d.join("sub/f")).unwrap_err().errno(),
            Some(Errno::NOTDIR)
        );
        assert!(open_beneath(&dir, Path::new("sub/f"), OFlags::RDONLY, Mode::empty()).is_ok());
        assert!(open_beneath(&dir, Path::new("."), OFlags::RDONLY, Mode::empty()).is_ok());
        let e = open_beneath(&dir, Path::new(""), OFlags::RDONLY, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::NOENT));
        let e = open_beneath(&dir, Path::new("link"), OFlags::RDONLY, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::LOOP));
        let e = open_beneath(&dir, Path::new("../x"), OFlags::RDONLY, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::XDEV));
        let e = open_beneath(&dir, Path::new("nope"), OFlags::RDONLY, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::NOENT));
        let io: std::io::Error = e.into();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(open_no_links(&d.join("sub/f"), OFlags::PATH).is_ok());
        let e = open_no_links(&d.join("link"), OFlags::PATH).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::LOOP));
        // A directory opened with O_DIRECTORY gets no mode (O_TMPFILE shares its bit).
        assert!(open_beneath(&dir, Path::new("sub"), OFlags::DIRECTORY, Mode::RWXU).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn open_beneath_no_xdev_stays_on_the_mount() {
        let d = std::env::temp_dir().join(format!("warden-sys-xdev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), "x").unwrap();
        std::os::unix::fs::symlink("sub/f", d.join("link")).unwrap();
        let dir = open_dir(&d).unwrap();
        let f = OFlags::RDONLY;
        assert!(open_beneath_no_xdev(&dir, Path::new("sub/f"), f, Mode::empty()).is_ok());
        let e = open_beneath_no_xdev(&dir, Path::new("link"), f, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::LOOP));
        let e = open_beneath_no_xdev(&dir, Path::new("../x"), f, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::XDEV));
        // /proc is a mount of its own below /: reached beneath /, refused without XDEV.
        let root = open_dir(Path::new("/")).unwrap();
        let cpu = Path::new("proc/cpuinfo");
        assert!(open_beneath(&root, cpu, f, Mode::empty()).is_ok());
        let e = open_beneath_no_xdev(&root, cpu, f, Mode::empty()).unwrap_err();
        assert_eq!(e.errno(), Some(Errno::XDEV));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn writable_paths() {
        assert!(writable(&std::env::temp_dir()));
        assert!(!writable(Path::new("/nonexistent/warden-sys")));
        assert!(!writable(Path::new("a\0b")));
    }

    #[test]
    fn socket_types() {
        let (a, _b) = socketpair_seqpacket().unwrap();
        assert!(is_seqpacket(a.as_fd()));
        assert!(!is_stream(a.as_fd()));
        let (s, _t) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(is_stream(s.as_fd()));
        let (r, _w) = pipe_cloexec().unwrap();
        assert!(!is_seqpacket(r.as_fd()));
    }

    #[test]
    fn pidfd_of_self() {
        let p = pidfd::open(std::process::id() as i32).unwrap();
        let (r, _w) = pipe_cloexec().unwrap();
        use std::os::fd::AsRawFd;
        let copy = pidfd::getfd(&p, r.as_raw_fd()).unwrap();
        assert_ne!(copy.as_raw_fd(), r.as_raw_fd());
        assert!(pidfd::open(0).is_err());
    }
}
