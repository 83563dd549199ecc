//! Content identity: the SHA-256 of a file's bytes, and the stamp that tells whether a file
//! may have changed since it was hashed.
//!
//! Implementation: the `sha2` crate, which detects the CPU's SHA extensions (SHA-NI on
//! x86-64, SHA2 on aarch64) at run time. `scripts/bench-exec.sh` measures it against `ring`
//! (BoringSSL's assembly) on the same buffer; on this CI's AMD EPYC (SHA-NI) both exceed
//! 1.5 GB/s per core, and `sha2` avoids a C/assembly build dependency.
//!
//! [`sha256_fd_within`] hashes under a [`Limit`] (a size cap and a deadline), for the exec
//! guard's decisions: a 16 GiB sparse file must not hold an agent's exec (and the
//! supervisor) for a minute. Over either, it fails ([`std::io::ErrorKind::FileTooLarge`],
//! [`std::io::ErrorKind::TimedOut`]) and the caller denies.

use sha2::{Digest, Sha256};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

pub use warden_policy::progrules::Hash;

/// (dev, inode, size, mtime, ctime). `ctime` is set by the kernel on every content or
/// metadata change and cannot be set by `touch -d`/`utimensat`, so a file modified after its
/// check and given back its old timestamps still gets a new stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileStamp {
    pub fn of(md: &libc::stat) -> FileStamp {
        FileStamp {
            dev: md.st_dev,
            ino: md.st_ino,
            size: md.st_size as u64,
            mtime_ns: md.st_mtime as i128 * 1_000_000_000 + md.st_mtime_nsec as i128,
            ctime_ns: md.st_ctime as i128 * 1_000_000_000 + md.st_ctime_nsec as i128,
        }
    }
}

pub fn fstat(fd: BorrowedFd<'_>) -> std::io::Result<libc::stat> {
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a borrowed open fd and `st` is a valid, writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

/// Hashes the whole file behind `fd` with `pread` (the fd's offset is not moved, so a
/// descriptor borrowed from another process is left as it was).
pub fn sha256_fd(fd: BorrowedFd<'_>) -> std::io::Result<Hash> {
    sha256_fd_within(fd, Limit::NONE)
}

/// Files larger than this that an agent can write are not hashed by the exec guard (the
/// same cap as the tool-call hook's): their exec or mapping is denied.
pub const MAX_HASH_BYTES: u64 = 512 << 20;

/// How long one exec decision may spend hashing a file an agent can write: past it, the
/// exec or mapping is denied (invariant 7: a missed deadline denies). A file no agent can
/// write gets [`deadline_for`] its size.
pub const HASH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest any one exec decision may spend hashing (a file no agent can write, however
/// large; see [`deadline_for`]). Decisions are made one at a time: every exec and mapping
/// of the session waits meanwhile.
pub const HASH_DEADLINE_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The slowest read rate [`deadline_for`] allows for: 32 MiB/s.
const HASH_FLOOR_RATE: u64 = 32 << 20;

/// How long hashing a file of `size` bytes that no agent can write may take:
/// [`HASH_DEADLINE`] plus one second per 32 MiB, at most [`HASH_DEADLINE_MAX`]. A large
/// agent binary (Claude Code's is 381 MB) read from a cold disk while builds write back
/// gigabytes took 11 s at 34 MB/s: the flat 10 s denied the agent its own first exec. The
/// first exec of such a file waits; every later one is a cache hit. (The cost: a file
/// outside the agent's reach that cannot be hashed in time holds the session's other
/// decisions for up to 30 s, once; it is then hashed on in the background.)
pub fn deadline_for(size: u64) -> std::time::Duration {
    (HASH_DEADLINE + std::time::Duration::from_secs(size / HASH_FLOOR_RATE)).min(HASH_DEADLINE_MAX)
}

/// Bounds on one hashing: bytes read and a wall-clock deadline (`None`: unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_bytes: Option<u64>,
    pub deadline: Option<std::time::Instant>,
}

impl Limit {
    pub const NONE: Limit = Limit {
        max_bytes: None,
        deadline: None,
    };
}

/// Whether an error from [`sha256_fd_within`] is a [`Limit`] it hit (not an I/O failure).
pub fn over_limit(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::FileTooLarge | std::io::ErrorKind::TimedOut
    )
}

/// [`sha256_fd`] within `limit`: a file larger than `max_bytes` (by its size before any byte
/// is read, or by what is read if it grows meanwhile) fails with `FileTooLarge`, a hashing
/// still running at `deadline` (checked after every MiB) with `TimedOut`.
pub fn sha256_fd_within(fd: BorrowedFd<'_>, limit: Limit) -> std::io::Result<Hash> {
    sha256_fd_into(fd, limit, &mut |_| Ok(()))
}

/// [`sha256_fd_within`], handing every chunk read to `sink` as well (one read of the file
/// for a hash and a copy: [`crate::snapshot`]).
pub fn sha256_fd_into(
    fd: BorrowedFd<'_>,
    limit: Limit,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Hash> {
    use std::io::{Error, ErrorKind};
    let too_large = |size: u64, max: u64| {
        Error::new(
            ErrorKind::FileTooLarge,
            format!(
                "it is {} MiB, over the exec guard's {} MiB hashing limit for files an agent can write",
                size >> 20,
                max >> 20
            ),
        )
    };
    if let Some(max) = limit.max_bytes {
        let size = fstat(fd)?.st_size.max(0) as u64;
        if size > max {
            return Err(too_large(size, max));
        }
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off: u64 = 0;
    let started = std::time::Instant::now();
    loop {
        if limit
            .deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(Error::new(
                ErrorKind::TimedOut,
                format!(
                    "hashing it did not finish within the exec guard's deadline ({} MiB read in {:.1} s)",
                    off >> 20,
                    started.elapsed().as_secs_f64()
                ),
            ));
        }
        let n = match rustix::io::pread(fd, &mut buf[..], off) {
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        sink(&buf[..n])?;
        off += n as u64;
        if let Some(max) = limit.max_bytes.filter(|m| off > *m) {
            return Err(too_large(off, max));
        }
    }
    Ok(h.finalize().into())
}

pub fn sha256_file(path: &Path) -> std::io::Result<Hash> {
    let f = std::fs::File::open(path)?;
    use std::os::fd::AsFd;
    sha256_fd(f.as_fd())
}

pub fn sha256_bytes(b: &[u8]) -> Hash {
    Sha256::digest(b).into()
}

pub use warden_policy::progrules::{hex, parse_hex};

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn known_vector_and_hex_roundtrip() {
        let h = sha256_bytes(b"abc");
        assert_eq!(
            hex(&h),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hex(&format!("sha256:{}", hex(&h))), Some(h));
        assert_eq!(parse_hex("xyz"), None);
    }
    #[test]
    fn large_files_no_agent_can_write_get_a_longer_bounded_deadline() {
        assert_eq!(deadline_for(0), HASH_DEADLINE);
        assert_eq!(deadline_for(31 << 20), HASH_DEADLINE);
        // Claude Code's native binary: 381 MB, 11 s from a cold disk at 34 MB/s.
        let claude = deadline_for(381_000_000);
        assert_eq!(claude, HASH_DEADLINE + std::time::Duration::from_secs(11));
        assert!(claude.as_secs_f64() > 381.0 / 34.0 * 1.8, "{claude:?}");
        assert_eq!(deadline_for(u64::MAX), HASH_DEADLINE_MAX);
    }

    #[test]
    fn limits_refuse_large_and_slow_hashing() {
        let p = std::env::temp_dir().join(format!("warden-id-lim-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        // Sparse: 3 MiB of size, no blocks.
        f.set_len(3 << 20).unwrap();
        use std::os::fd::AsFd;
        let e = sha256_fd_within(
            f.as_fd(),
            Limit {
                max_bytes: Some(2 << 20),
                deadline: None,
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert!(over_limit(&e) && e.to_string().contains("3 MiB"), "{e}");
        let e = sha256_fd_within(
            f.as_fd(),
            Limit {
                max_bytes: None,
                deadline: Some(std::time::Instant::now()),
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        let within = Limit {
            max_bytes: Some(3 << 20),
            deadline: Some(std::time::Instant::now() + HASH_DEADLINE),
        };
        assert_eq!(
            sha256_fd_within(f.as_fd(), within).unwrap(),
            sha256_bytes(&vec![0u8; 3 << 20])
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn file_hash_matches_bytes_and_stamp_sees_restored_timestamps() {
        let p = std::env::temp_dir().join(format!("warden-id-{}", std::process::id()));
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_bytes(b"abc"));
        let f = std::fs::File::open(&p).unwrap();
        use std::os::fd::AsFd;
        let s1 = FileStamp::of(&fstat(f.as_fd()).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"abd").unwrap();
        // Restore the old mtime (what `touch -d` does).
        let ts = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: (s1.mtime_ns / 1_000_000_000) as i64,
                tv_nsec: (s1.mtime_ns % 1_000_000_000) as i64,
            },
        ];
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(
            // SAFETY: `c` is a NUL-terminated path and `ts` holds the two timespecs utimensat reads.
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) },
            0
        );
        let s2 = FileStamp::of(&fstat(f.as_fd()).unwrap());
        assert_eq!(s1.mtime_ns, s2.mtime_ns, "mtime restored");
        assert_ne!(s1, s2, "ctime must still differ");
        std::fs::remove_file(&p).unwrap();
    }
}
