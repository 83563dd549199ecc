//! Sealed copies for executable mappings of files the agent can write.
//!
//! A private file mapping's clean pages follow the page cache, so a file the agent can write,
//! mapped executable and *then* rewritten in place (`pwrite`, `dd conv=notrunc`), would run
//! the new bytes although the decision was taken on the old ones: the kernel write-protects
//! only a running program's main image. So an allowed `mmap(PROT_EXEC)` of such a file
//! (a workspace or private-tmp file: [`crate::unotify::Trust::No`]) maps a copy instead:
//!
//! 1. the file is copied into a memfd while it is hashed (one read), within the same size
//!    and time bounds as any hashing of a file the agent can write;
//! 2. the memfd is sealed against every change (`F_SEAL_WRITE|SHRINK|GROW|SEAL`);
//! 3. the decision is taken on the copy's hash, i.e. on exactly the bytes that will be
//!    mapped;
//! 4. a fresh read-only description of the copy replaces the agent's descriptor at the same
//!    number (`SECCOMP_IOCTL_NOTIF_ADDFD` with `SECCOMP_ADDFD_FLAG_SETFD`, its close-on-exec
//!    flag and file position kept) before the kernel goes on with the mapping; the threads
//!    sharing the descriptor table are held still meanwhile ([`crate::hold`]).
//!
//! Later segments mapped from the same descriptor (`ld.so` maps a library's segments one by
//! one) come from the copy too: a memfd this module made is known by its inode (its
//! reference kept, so the inode number cannot be reused) and decided on its recorded hash.
//! Copies are shared by content and bounded ([`KEPT_BYTES`], [`KEPT`]); one evicted from
//! the table stays valid for the processes that mapped it, but is no longer known by inode.
//! A session makes at most [`MADE_BYTES`] of new copies; past that such mappings are
//! denied under `exec.hash_limit`.
//!
//! What the agent sees: `/proc/self/maps` names the mapping `/memfd:warden-copy:NAME
//! (deleted)` (profilers that symbolize by that name lose the file; `dl_iterate_phdr` and
//! debuggers' link maps keep the real path), and `fstat` of the descriptor after the mapping
//! gives the copy's identity.

use crate::identity::{Hash, Limit};
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

/// Copies kept at most (by count and by total size; the oldest go first).
pub const KEPT: usize = 64;
/// See [`KEPT`].
pub const KEPT_BYTES: u64 = 1 << 30;
/// New copies made in one session at most, in bytes. A copy lives as long as any mapping of
/// it, and its pages are charged to the supervisor, not to the agent's memory limit: without
/// a bound an agent could pin memory outside its limits by mapping ever new files. Copies of
/// equal content are shared, so rebuilding the same libraries costs nothing more.
pub const MADE_BYTES: u64 = 8 << 30;

struct Copy {
    hash: Hash,
    dev: u64,
    ino: u64,
    size: u64,
    fd: Arc<OwnedFd>,
}

/// The sealed copies this supervisor made, newest last.
#[derive(Default)]
pub struct Snapshots {
    copies: Mutex<VecDeque<Copy>>,
    /// Bytes of the copies made so far (see [`MADE_BYTES`]).
    made: std::sync::atomic::AtomicU64,
}

impl Snapshots {
    /// The hash of a copy this module made, known by the stat of a descriptor of it.
    pub fn known(&self, st: &libc::stat) -> Option<Hash> {
        let c = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        c.iter()
            .find(|c| c.dev == st.st_dev && c.ino == st.st_ino)
            .map(|c| c.hash)
    }

    /// Copies `src` into a sealed memfd while hashing it (within `limit`); returns the
    /// copy's hash and a descriptor of it (an existing copy of the same content is reused).
    ///
    /// The copy is named after the file (`/memfd:warden-copy:NAME` in `/proc/PID/maps`).
    pub fn copy(
        &self,
        src: BorrowedFd<'_>,
        name: &str,
        limit: Limit,
    ) -> std::io::Result<(Hash, Arc<OwnedFd>)> {
        use rustix::fs::{MemfdFlags, SealFlags};
        let base = name.rsplit('/').next().unwrap_or(name);
        let label: String = format!("warden-copy:{base}")
            .chars()
            .filter(|&c| c != '\0')
            .take(200)
            .collect();
        let mem = rustix::fs::memfd_create(
            label.as_str(),
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut size = 0u64;
        let hash = crate::identity::sha256_fd_into(src, limit, &mut |b| {
            size += b.len() as u64;
            write_all(mem.as_fd(), b)
        })?;
        rustix::fs::fcntl_add_seals(
            &mem,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        let mut c = self.copies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = c.iter().find(|c| c.hash == hash) {
            return Ok((hash, old.fd.clone()));
        }
        use std::sync::atomic::Ordering;
        let made = self.made.fetch_add(size, Ordering::Relaxed) + size;
        if made > MADE_BYTES {
            self.made.fetch_sub(size, Ordering::Relaxed);
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "this session made {} MiB of sealed copies of files the agent can write, the most it may ({} MiB)",
                    (made - size) >> 20,
                    MADE_BYTES >> 20
                ),
            ));
        }
        let st = crate::identity::fstat(mem.as_fd())?;
        let fd = Arc::new(mem);
        c.push_back(Copy {
            hash,
            dev: st.st_dev,
            ino: st.st_ino,
            size,
            fd: fd.clone(),
        });
        let mut total: u64 = c.iter().map(|c| c.size).sum();
        while c.len() > KEPT || (total > KEPT_BYTES && c.len() > 1) {
            if let Some(old) = c.pop_front() {
                total -= old.size;
            }
        }
        Ok((hash, fd))
    }
}

fn write_all(fd: BorrowedFd<'_>, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        match rustix::io::write(fd, b) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => b = &b[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Puts a fresh read-only description of `copy` at descriptor `fd` of the process waiting
/// in notification `id` (replacing what was there), with that descriptor's close-on-exec
/// flag and file position (`/proc/PID/fdinfo/FD`). `Err(ENOENT)`: the process is gone.
pub fn install(lfd: i32, id: u64, pid: u32, fd: i32, copy: &OwnedFd) -> std::io::Result<()> {
    let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("0")
            .to_string()
    };
    let flags = u64::from_str_radix(&field("flags:"), 8).unwrap_or(0);
    let pos: u64 = field("pos:").parse().unwrap_or(0);
    let fresh = std::fs::File::open(format!("/proc/self/fd/{}", copy.as_raw_fd()))?;
    rustix::fs::seek(&fresh, rustix::fs::SeekFrom::Start(pos))?;
    let add = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
        srcfd: fresh.as_raw_fd() as u32,
        newfd: fd as u32,
        newfd_flags: (flags & libc::O_CLOEXEC as u64) as u32,
    };
    // SAFETY: ioctl with the kernel's struct (the libc crate's, whose request number encodes
    // its size); the kernel installs `fresh` at `fd` in the waiting process.
    let r = unsafe { libc::ioctl(lfd, libc::SECCOMP_IOCTL_NOTIF_ADDFD, &add) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{fstat, sha256_bytes};
    use std::io::Write;

    /// A copy holds the file's bytes under their hash, refuses every write (also through a
    /// reopened read-write descriptor), is known by its inode, and is shared by content.
    #[test]
    fn copies_are_sealed_known_and_shared() {
        let dir = std::env::temp_dir().join(format!("warden-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lib.so");
        std::fs::File::create(&p)
            .unwrap()
            .write_all(&[7u8; 10_000])
            .unwrap();
        let s = Snapshots::default();
        let f = std::fs::File::open(&p).unwrap();
        let (h, c) = s.copy(f.as_fd(), "lib.so", Limit::NONE).unwrap();
        assert_eq!(h, sha256_bytes(&[7u8; 10_000]));
        assert!(rustix::io::write(c.as_fd(), b"x").is_err(), "sealed");
        let rw = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", c.as_raw_fd()));
        assert!(
            rw.is_err() || rustix::io::write(rw.unwrap().as_fd(), b"x").is_err(),
            "no write through a reopened descriptor"
        );
        let st = fstat(c.as_fd()).unwrap();
        assert_eq!(s.known(&st), Some(h));
        assert_eq!(s.known(&fstat(f.as_fd()).unwrap()), None);
        let (h2, c2) = s.copy(f.as_fd(), "lib.so", Limit::NONE).unwrap();
        assert_eq!(
            (h2, c2.as_raw_fd()),
            (h, c.as_raw_fd()),
            "shared by content"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
