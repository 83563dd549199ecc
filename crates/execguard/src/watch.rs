//! Telling that a file the agent can write is unchanged since it was read, without reading it
//! again: an inotify watch placed on it before the read, and a probe for writers now.
//!
//! A file's bytes change only through a writer of its inode: `write`, `truncate`,
//! `fallocate`, a clone or copy into it, and a shared writable mapping. The first ones are
//! reported as they happen (`IN_MODIFY`); a shared writable mapping's writes are not, but
//! the end of every writer is (`IN_CLOSE_WRITE`, when its last reference goes, the mapping's
//! included). So a file whose watch (placed before it was read) reported nothing, whose
//! stamp is the one taken before the read, and that nobody holds open for writing now
//! ([`no_writer`]) holds the bytes read. This holds only where the file's own inode carries
//! its writers and events, and no other way leads to its bytes ([`Watcher::vouches_for`]):
//! not an overlay (which maps its layers' files), a network or FUSE file system, or one on a
//! virtual block device (a loop device's image is a file of its own).
//!
//! Used by [`crate::snapshot`] (a sealed copy stands for its file) and [`crate::kept`] (a
//! hash stands for a workspace program run again).

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, OnceLock};

/// What a watch reports: any change of the file's bytes, and the end of every writer.
const CHANGES: u32 = libc::IN_MODIFY | libc::IN_CLOSE_WRITE;

/// One inotify instance (its own queue: each user reads only its own reports).
#[derive(Default)]
pub(crate) struct Watcher {
    fd: OnceLock<Option<OwnedFd>>,
    /// Whether a device's files are ones [`Watcher::vouches_for`] (by `st_dev`).
    devices: Mutex<std::collections::HashMap<u64, bool>>,
}

/// What the queue held: the watches that reported, and whether it overflowed (then no watch
/// placed before can vouch for anything).
#[derive(Default)]
pub(crate) struct Reports {
    pub wds: HashSet<i32>,
    pub overflow: bool,
}

impl Reports {
    /// Whether watch `wd` may have seen a change.
    pub fn touched(&self, wd: i32) -> bool {
        self.overflow || self.wds.contains(&wd)
    }
}

impl Watcher {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd
            .get_or_init(|| {
                // SAFETY: inotify_init1 with flags; the descriptor is owned from here on.
                let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
                // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
                (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
            })
            .as_ref()
            .map(|f| f.as_fd())
    }

    /// Watches the file behind `file` (the same watch as before for a file watched
    /// already); `None` when no watch could be placed (no instance, the user's watch limit).
    pub fn add(&self, file: BorrowedFd<'_>) -> Option<i32> {
        let w = self.fd()?;
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()?;
        // SAFETY: a valid C string and an inotify descriptor we own.
        let r = unsafe { libc::inotify_add_watch(w.as_raw_fd(), path.as_ptr(), CHANGES) };
        (r >= 0).then_some(r)
    }

    /// Removes watch `wd` (a stale one fails harmlessly).
    pub fn remove(&self, wd: i32) {
        if let Some(w) = self.fd() {
            // SAFETY: removing a watch of an inotify descriptor we own.
            unsafe { libc::inotify_rm_watch(w.as_raw_fd(), wd) };
        }
    }

    /// Reads every report queued so far. No instance: everything counts as reported.
    pub fn drain(&self) -> Reports {
        let Some(w) = self.fd() else {
            return Reports {
                overflow: true,
                ..Reports::default()
            };
        };
        let mut out = Reports::default();
        let mut buf = [0u8; 4096];
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        while let Ok(n) = rustix::io::read(w, &mut buf) {
            if n == 0 {
                break;
            }
            let mut at = 0;
            while at + HEAD <= n {
                // SAFETY: a whole event header lies in the bytes read; read unaligned.
                let ev: libc::inotify_event =
                    unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
                out.overflow |= ev.mask & libc::IN_Q_OVERFLOW != 0;
                out.wds.insert(ev.wd);
                at += HEAD + ev.len as usize;
            }
        }
        out
    }

    /// Whether a watch and a writer probe can vouch for the bytes of files like the one
    /// behind `fd`: a local file system whose inodes carry their own writers and events
    /// (ext4, xfs, f2fs, tmpfs; btrfs too for sealed copies, see `strict`), and, for one on
    /// a block device, not a virtual one (loop, device-mapper, md, nbd: what they are made
    /// of can be written without any event on the file). `strict`: the file system's
    /// device must be known (btrfs's files carry an anonymous device number, so its
    /// device cannot be told from them).
    pub fn vouches_for(&self, fd: BorrowedFd<'_>, st: &libc::stat, strict: bool) -> bool {
        #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
        let Ok(kind) = rustix::fs::fstatfs(fd).map(|sf| sf.f_type as i64) else {
            return false;
        };
        const EXT: i64 = 0xEF53;
        const XFS: i64 = 0x5846_5342;
        const BTRFS: i64 = 0x9123_683E;
        const TMPFS: i64 = 0x0102_1994;
        const F2FS: i64 = 0xF2F5_2010;
        match kind {
            TMPFS => true,
            BTRFS => !strict,
            EXT | XFS | F2FS if !strict => true,
            EXT | XFS | F2FS => {
                let dev = st.st_dev;
                let mut known = self.devices.lock().unwrap_or_else(|p| p.into_inner());
                *known.entry(dev).or_insert_with(|| plain_block_device(dev))
            }
            _ => false,
        }
    }
}

/// Whether block device `dev` is a physical one (not below `/sys/devices/virtual`: loop,
/// device-mapper, md, nbd, zram, ...).
fn plain_block_device(dev: u64) -> bool {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return false;
    }
    std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).is_ok_and(|p| {
        let p = p.to_string_lossy();
        p.starts_with("/sys/devices/") && !p.starts_with("/sys/devices/virtual/")
    })
}

/// `fcntl`'s `F_SETSIG` (Linux, all architectures; not in the `libc` crate).
const F_SETSIG: libc::c_int = 10;

/// Whether nobody has the file behind `fd` open for writing now, a shared writable mapping
/// included (whose writes are reported only once it is gone): a read lease is granted only
/// then (`F_SETLEASE`, released at once; a lease break in between is signalled with
/// `SIGURG`, ignored, not `SIGIO`). `false` when it cannot be told (not the file's owner
/// without `CAP_LEASE`, a file system without leases).
pub(crate) fn no_writer(fd: BorrowedFd<'_>) -> bool {
    // Non-blocking: a lease someone holds is broken, not waited for (an agent's write lease
    // held the supervisor 45 s per mapping: attack review 92); that counts as a writer.
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    else {
        return false;
    };
    let raw = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with plain integer arguments.
    unsafe {
        libc::fcntl(raw, F_SETSIG, libc::SIGURG) == 0
            && libc::fcntl(raw, libc::F_SETLEASE, libc::F_RDLCK) == 0
            && libc::fcntl(raw, libc::F_SETLEASE, libc::F_UNLCK) == 0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::os::fd::AsRawFd;
    use std::path::Path;

    /// Changes of `p`'s bytes that a watch must report, each behind a stamp as close to
    /// the old one as can be made: a write with the old modification time put back, a
    /// shared writable mapping's write (no event until it goes), a truncate.
    pub(crate) fn changes(p: &Path) -> Vec<Box<dyn Fn() + '_>> {
        let old = std::fs::metadata(p).unwrap().modified().unwrap();
        vec![
            Box::new(move || {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                rustix::io::pwrite(&f, &[8u8; 16], 0).unwrap();
                f.set_modified(old).unwrap();
            }),
            Box::new(move || {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(p)
                    .unwrap();
                // SAFETY: a shared writable mapping of a file we hold, unmapped below.
                unsafe {
                    let m = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        f.as_raw_fd(),
                        0,
                    );
                    assert_ne!(m, libc::MAP_FAILED);
                    *(m as *mut u8) = 9;
                    libc::munmap(m, 4096);
                }
            }),
            Box::new(move || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(5_000)
                    .unwrap();
            }),
        ]
    }
}
