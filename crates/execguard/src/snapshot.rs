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
//! A copy also stands for the file it was made from while that file is unchanged: the same
//! stamp ([`FileStamp`]: inode, size, modification and change times) and no change reported
//! by an inotify watch placed on it before it was read (`IN_MODIFY`, `IN_CLOSE_WRITE`: a
//! `write`, `truncate`, `fallocate`, clone or copy into it, and the end of every writer,
//! a shared writable mapping's included), and no writer now (a shared writable mapping's
//! writes are reported only when it goes), on a local file system that is not an overlay
//! (whose mappings are its layers' files): see [`crate::watch`]. A workspace library mapped again (each Python
//! process importing a virtual environment's `numpy`, each `rustc` loading a proc-macro)
//! then maps the kept copy without reading the file again. This is speed, not a decision:
//! what is mapped is always a sealed copy decided on its own hash, so a change the watch
//! missed (a file system whose bytes change under it: a network one, an overlay's layer
//! written directly) would map the previous, decided bytes, never undecided ones.
//!
//! What the agent sees: `/proc/self/maps` names the mapping `/memfd:warden-copy:NAME
//! (deleted)` (profilers that symbolize by that name lose the file; `dl_iterate_phdr` and
//! debuggers' link maps keep the real path), and `fstat` of the descriptor after the mapping
//! gives the copy's identity.

use crate::identity::{FileStamp, Hash, Limit};
use crate::watch::{no_writer, Reports, Watcher};
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
    /// The files it stands for while they are unchanged (see the module's doc).
    sources: Vec<Source>,
}

/// A file a copy was made from: its stamp when it was read, and the inotify watch (placed
/// before the read) that reports its changes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Source {
    stamp: FileStamp,
    wd: i32,
}

/// The sealed copies this supervisor made, newest last.
#[derive(Default)]
pub struct Snapshots {
    copies: Mutex<VecDeque<Copy>>,
    /// Bytes of the copies made so far (see [`MADE_BYTES`]).
    made: std::sync::atomic::AtomicU64,
    /// The inotify instance watching the sources (see [`crate::watch`]).
    watch: Watcher,
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
    /// copy's hash and a descriptor of it. A kept copy that stands for `src` (unchanged
    /// since: see the module's doc) is returned without reading it; an existing copy of the
    /// same content is reused.
    ///
    /// The copy is named after the file (`/memfd:warden-copy:NAME` in `/proc/PID/maps`).
    pub fn copy(
        &self,
        src: BorrowedFd<'_>,
        name: &str,
        limit: Limit,
    ) -> std::io::Result<(Hash, Arc<OwnedFd>)> {
        let st = crate::identity::fstat(src)?;
        let stamp = FileStamp::of(&st);
        let mut wd = None;
        if self.watch.vouches_for(src, &st, false) {
            let mut c = self.copies.lock().unwrap_or_else(|p| p.into_inner());
            self.forget_changed(&mut c);
            if let Some(kept) = c
                .iter()
                .find(|c| c.sources.iter().any(|s| s.stamp == stamp))
            {
                if no_writer(src) {
                    return Ok((kept.hash, kept.fd.clone()));
                }
            }
            // Placed before the read: a change from here on is reported.
            wd = self.watch.add(src);
        }
        let made = self.made_copy(src, name, limit, stamp, wd);
        if let (Err(_), Some(wd)) = (&made, wd) {
            let c = self.copies.lock().unwrap_or_else(|p| p.into_inner());
            self.unwatch(&c, wd);
        }
        made
    }

    fn made_copy(
        &self,
        src: BorrowedFd<'_>,
        name: &str,
        limit: Limit,
        stamp: FileStamp,
        wd: Option<i32>,
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
        // The file stands for the copy when nothing was reported on it during the read,
        // and its stamp is still the one taken before.
        let source = wd.and_then(|wd| {
            let changed = self.forget_changed(&mut c);
            let now = crate::identity::fstat(src).map(|st| FileStamp::of(&st));
            (!changed.touched(wd) && now.is_ok_and(|n| n == stamp)).then_some(Source { stamp, wd })
        });
        if let Some(i) = c.iter().position(|c| c.hash == hash) {
            let old = &mut c[i];
            if let Some(s) = source {
                old.sources
                    .retain(|o| o.stamp.ino != s.stamp.ino || o.stamp.dev != s.stamp.dev);
                old.sources.push(s);
            }
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
            sources: source.into_iter().collect(),
        });
        let mut total: u64 = c.iter().map(|c| c.size).sum();
        while c.len() > KEPT || (total > KEPT_BYTES && c.len() > 1) {
            if let Some(old) = c.pop_front() {
                total -= old.size;
                for s in &old.sources {
                    self.unwatch(&c, s.wd);
                }
            }
        }
        Ok((hash, fd))
    }
}

impl Snapshots {
    /// Reads the watch's reports and drops every source they name (all of them when the
    /// queue overflowed) with its watch; returns the reports.
    fn forget_changed(&self, copies: &mut VecDeque<Copy>) -> Reports {
        let changed = self.watch.drain();
        let mut dropped = changed.wds.clone();
        for c in copies.iter_mut() {
            c.sources.retain(|s| {
                let gone = changed.touched(s.wd);
                if gone {
                    dropped.insert(s.wd);
                }
                !gone
            });
        }
        for wd in dropped {
            self.watch.remove(wd);
        }
        changed
    }

    /// Removes watch `wd` unless a kept copy's source still uses it.
    fn unwatch(&self, copies: &VecDeque<Copy>, wd: i32) {
        if !copies.iter().any(|c| c.sources.iter().any(|s| s.wd == wd)) {
            self.watch.remove(wd);
        }
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

    /// A kept copy stands for its file while the file is unchanged: the next copy of it is
    /// not read (a limit of 1 byte would refuse a read). Every change is seen: a write (same
    /// size, old times put back), a shared writable mapping's writes once it is gone, a
    /// truncate; a changed file is read again and gets its own copy.
    #[test]
    fn a_copy_stands_for_its_file_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("warden-snapsrc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lib.so");
        std::fs::write(&p, [7u8; 10_000]).unwrap();
        let s = Snapshots::default();
        let tiny = Limit {
            max_bytes: Some(1),
            deadline: None,
        };
        let open = || std::fs::File::open(&p).unwrap();
        let (h, c) = s.copy(open().as_fd(), "lib.so", Limit::NONE).unwrap();
        let (h2, c2) = s
            .copy(open().as_fd(), "lib.so", tiny)
            .expect("kept, not read");
        assert_eq!((h2, c2.as_raw_fd()), (h, c.as_raw_fd()));
        let changes = crate::watch::tests::changes(&p);
        // A writer holding the file (a shared writable mapping's writes are reported only
        // once it is gone): the file is read again.
        {
            let _w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            assert!(
                s.copy(open().as_fd(), "lib.so", tiny).is_err(),
                "a writer holds it"
            );
        }
        // Its end is a change: read again, then kept.
        assert!(
            s.copy(open().as_fd(), "lib.so", tiny).is_err(),
            "a writer was there"
        );
        s.copy(open().as_fd(), "lib.so", Limit::NONE).unwrap();
        s.copy(open().as_fd(), "lib.so", tiny).expect("kept again");
        let mut seen = vec![h];
        for (i, change) in changes.iter().enumerate() {
            change();
            assert!(
                s.copy(open().as_fd(), "lib.so", tiny).is_err(),
                "change {i}: the changed file must be read again"
            );
            let (hn, _) = s.copy(open().as_fd(), "lib.so", Limit::NONE).unwrap();
            assert_eq!(
                hn,
                crate::identity::sha256_bytes(&std::fs::read(&p).unwrap())
            );
            assert!(!seen.contains(&hn), "change {i}");
            seen.push(hn);
            s.copy(open().as_fd(), "lib.so", tiny)
                .expect("the new content is kept in turn");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
