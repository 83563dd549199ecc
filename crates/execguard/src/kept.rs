//! Hashes of files the agent can write, kept while the file is unchanged.
//!
//! A program the agent can write (a test binary in the workspace's `target/`, a script) is
//! hashed afresh at every decision: the persistent cache never vouches for it
//! ([`crate::unotify::Trust::No`]). Each run of it was hashed twice, at the pre-check and
//! at the exec stop: a 24 MB test binary cost ~40 ms a run. Its hash is now kept for the
//! session while [`crate::watch`] tells the file is unchanged since it was read: the same
//! stamp, no report from an inotify watch placed before the read, nobody holding it open for
//! writing now, on a file system where that suffices ([`crate::watch::Watcher::vouches_for`],
//! strictly: ext4, xfs or f2fs on a physical block device, or tmpfs).
//!
//! This is the decision's input, so it must hold exactly. The exec stop decides on the
//! image the kernel loaded; from the exec's open on the kernel refuses every writer
//! (`ETXTBSY`), and the exec itself fails while one exists. A writer that came and went
//! between the read and the exec, a shared writable mapping's included, was reported when
//! its last reference went (`IN_CLOSE_WRITE`), before its write access was dropped, so
//! before the exec could succeed: the exec stop reads the reports first and hashes afresh.
//! Kept only in memory, for this session, at most [`KEPT`] files.

use crate::identity::{FileStamp, Hash};
use crate::watch::{no_writer, Watcher};
use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::Mutex;

/// Files whose hash is kept at most (past that the table starts again).
pub const KEPT: usize = 1024;

struct Entry {
    stamp: FileStamp,
    wd: i32,
    hash: Hash,
}

/// The kept hashes of one supervisor (see the module's doc).
#[derive(Default)]
pub struct KeptHashes {
    watch: Watcher,
    /// By (device, inode).
    table: Mutex<HashMap<(u64, u64), Entry>>,
}

impl KeptHashes {
    /// The hash of the file behind `fd` (stat `st`): the kept one while the file is
    /// unchanged, else `read`'s, kept when nothing changed the file while it was read.
    pub fn hash(
        &self,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        read: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<Hash>,
    ) -> std::io::Result<Hash> {
        if !self.watch.vouches_for(fd, st, true) {
            return read(fd);
        }
        let stamp = FileStamp::of(st);
        let key = (stamp.dev, stamp.ino);
        {
            let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
            self.forget_changed(&mut t);
            if let Some(e) = t.get(&key) {
                if e.stamp == stamp && no_writer(fd) {
                    return Ok(e.hash);
                }
            }
            // An older stamp of the same file: its watch is the one placed below.
            t.remove(&key);
        }
        // Placed before the read: a change from here on is reported.
        let wd = self.watch.add(fd);
        let hashed = read(fd);
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let changed = self.forget_changed(&mut t);
        let unchanged = crate::identity::fstat(fd).is_ok_and(|now| FileStamp::of(&now) == stamp);
        match (&hashed, wd) {
            (Ok(h), Some(wd)) if !changed.touched(wd) && unchanged => {
                if t.len() >= KEPT {
                    for e in t.values() {
                        self.watch.remove(e.wd);
                    }
                    t.clear();
                }
                t.insert(
                    key,
                    Entry {
                        stamp,
                        wd,
                        hash: *h,
                    },
                );
            }
            (_, Some(wd)) => self.watch.remove(wd),
            _ => {}
        }
        hashed
    }

    /// Reads the watch's reports and drops every entry they name (all of them when the
    /// queue overflowed) with its watch.
    fn forget_changed(&self, t: &mut HashMap<(u64, u64), Entry>) -> crate::watch::Reports {
        let changed = self.watch.drain();
        t.retain(|_, e| {
            let gone = changed.touched(e.wd);
            if gone {
                self.watch.remove(e.wd);
            }
            !gone
        });
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{sha256_bytes, sha256_fd_within, Limit};
    use std::os::fd::AsFd;

    /// A hash is kept while its file is unchanged (the next decision does not read it), and
    /// every change is seen: a write with the old times put back, a shared writable
    /// mapping's writes once it is gone, a truncate, a writer holding the file.
    #[test]
    fn a_hash_stands_for_its_file_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("warden-kept-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("prog");
        std::fs::write(&p, [7u8; 10_000]).unwrap();
        let open = || std::fs::File::open(&p).unwrap();
        let probe = open();
        let st = crate::identity::fstat(probe.as_fd()).unwrap();
        let k = KeptHashes::default();
        if !k.watch.vouches_for(probe.as_fd(), &st, true) {
            eprintln!(
                "skipped: {} is not on a file system a watch vouches for",
                dir.display()
            );
            std::fs::remove_dir_all(&dir).unwrap();
            return;
        }
        let reads = std::cell::Cell::new(0);
        let hash = |f: &std::fs::File| {
            let st = crate::identity::fstat(f.as_fd()).unwrap();
            k.hash(f.as_fd(), &st, |fd| {
                reads.set(reads.get() + 1);
                sha256_fd_within(fd, Limit::NONE)
            })
            .unwrap()
        };
        let h = hash(&open());
        assert_eq!(h, sha256_bytes(&[7u8; 10_000]));
        assert_eq!((hash(&open()), reads.get()), (h, 1), "kept, not read again");
        let changes = crate::watch::tests::changes(&p);
        for (i, change) in changes.iter().enumerate() {
            let before = reads.get();
            change();
            let hn = hash(&open());
            assert_eq!(reads.get(), before + 1, "change {i}: read again");
            assert_eq!(hn, sha256_bytes(&std::fs::read(&p).unwrap()), "change {i}");
            assert_eq!(hash(&open()), hn, "change {i}: the new content is kept");
            assert_eq!(reads.get(), before + 1, "change {i}: kept in turn");
        }
        // A writer holding the file: read every time while it does.
        let before = reads.get();
        {
            let _w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            hash(&open());
            hash(&open());
            assert_eq!(reads.get(), before + 2, "a writer holds it");
        }
        hash(&open());
        assert_eq!(reads.get(), before + 3, "its end is a change");
        hash(&open());
        assert_eq!(reads.get(), before + 3, "then kept");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
