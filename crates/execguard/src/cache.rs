//! The persistent content-hash cache: file stamp (dev, inode, size, mtime, ctime) → SHA-256.
//! A hit costs no hashing; any change to the file (including timestamps restored with
//! `touch -d`, which still moves ctime) misses. Shared by the exec guard's supervisor, the
//! rules' name resolution and the tool-call gate, each with its own file under warden's state
//! directory (outside anything the sandbox can write).
//!
//! A stamp proves nothing about a file the agent can write: a write through a shared
//! writable mapping that was dirtied before the file was hashed changes the content and
//! leaves every stamp field as it was. The exec guard therefore never asks this cache about
//! such files (see `unotify::WriteScope`) and calls [`Cache::forget`] on their stamps, so an
//! entry for them (made by an earlier session or by policy resolution) is dropped and never
//! written back to disk.

use crate::identity::{fstat, sha256_fd_within, FileStamp, Hash, Limit};
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The verdict cache shared by the notification handler and the exec-event tracer.
#[derive(Default)]
pub struct Cache {
    map: Mutex<HashMap<FileStamp, Hash>>,
    /// Entries were added since load (worth saving).
    dirty: AtomicBool,
    /// Stamps that must not be saved (merged away from the file on disk too).
    forgotten: Mutex<std::collections::HashSet<FileStamp>>,
    /// Stamps being hashed by [`Cache::finish_in_background`], and since when.
    finishing: Mutex<HashMap<FileStamp, std::time::Instant>>,
}

/// How long [`Cache::finish_in_background`] goes on hashing one file.
pub const FINISH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(600);

const CACHE_MAGIC: &[u8; 8] = b"WRDNHC02";
/// The previous format (a SHA-256 trailer): read as an empty cache, then rewritten.
const CACHE_MAGIC_V1: &[u8; 8] = b"WRDNHC01";
/// Bytes of the checksum trailer.
const SUM: usize = 8;

/// Checksum of the cache file: against corruption, not tampering (whoever can write the
/// file could rewrite any checksum; the file is safe because no agent can reach it). 64
/// bits, eight bytes a step. Not SHA-256: its first use costs a CPU-feature probe
/// (`cpuid`, which traps under virtualisation) in every hook process, most of which hash
/// nothing else. Each step is a bijection of the state for a given word, so any change of
/// one word changes the result; the length is mixed in first.
fn checksum(b: &[u8]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15 ^ b.len() as u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        h = (h ^ w).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 32;
    }
    for &x in words.remainder() {
        h = (h ^ u64::from(x)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^= h >> 29;
    }
    h
}
const ENTRY: usize = 8 * 3 + 16 * 2 + 32;

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({} entries)", self.len())
    }
}

/// The hash cache could not be written.
#[derive(Debug, thiserror::Error)]
// Callers name the file (`hash cache <path>: ...`); the error is what the OS said.
#[error("{source}")]
pub struct SaveError {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

impl Cache {
    /// Loads the persistent hash cache (stamp → SHA-256). Missing: empty. Corrupted (bad
    /// magic, length or checksum): an error — the caller refuses to run rather than guess.
    pub fn load(path: &std::path::Path) -> Result<Cache, String> {
        let b = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Cache::default()),
            Err(e) => return Err(format!("hash cache {}: {e}", path.display())),
        };
        let bad = |why: &str| {
            format!(
                "hash cache {} is corrupted ({why}); remove it and warden rebuilds it",
                path.display()
            )
        };
        // A well-formed file of the previous format (its SHA-256 trailer not checked).
        if b.len() >= 40 && &b[..8] == CACHE_MAGIC_V1 && (b.len() - 40).is_multiple_of(ENTRY) {
            return Ok(Cache::default());
        }
        if b.len() < 8 + SUM || &b[..8] != CACHE_MAGIC || !(b.len() - 8 - SUM).is_multiple_of(ENTRY)
        {
            return Err(bad("bad header or length"));
        }
        let (body, sum) = b.split_at(b.len() - SUM);
        if checksum(body).to_le_bytes()[..] != sum[..] {
            return Err(bad("checksum mismatch"));
        }
        // Sized up front: growing entry by entry rehashed and re-faulted the table ~10 times.
        let mut map = HashMap::with_capacity((body.len() - 8) / ENTRY);
        for e in body[8..].chunks_exact(ENTRY) {
            let u = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap_or([0; 8]));
            let i = |o: usize| i128::from_le_bytes(e[o..o + 16].try_into().unwrap_or([0; 16]));
            let stamp = FileStamp {
                dev: u(0),
                ino: u(8),
                size: u(16),
                mtime_ns: i(24),
                ctime_ns: i(40),
            };
            let h: Hash = e[56..88].try_into().unwrap_or([0; 32]);
            map.insert(stamp, h);
        }
        Ok(Cache {
            map: Mutex::new(map),
            dirty: AtomicBool::new(false),
            forgotten: Mutex::default(),
            finishing: Mutex::default(),
        })
    }

    /// Writes the cache (atomically: temp file + rename), merging what is on disk.
    pub fn save(&self, path: &std::path::Path) -> Result<(), SaveError> {
        let mut map = Cache::load(path)
            .map(|c| c.map.into_inner().unwrap_or_default())
            .unwrap_or_default();
        map.extend(
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (*k, *v)),
        );
        for s in self
            .forgotten
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            map.remove(s);
        }
        // Bounded: keep the file small enough to load in well under a millisecond.
        if map.len() > 50_000 {
            map = map.into_iter().take(50_000).collect();
        }
        let mut b = Vec::with_capacity(8 + map.len() * ENTRY + SUM);
        b.extend_from_slice(CACHE_MAGIC);
        for (s, h) in &map {
            for v in [s.dev, s.ino, s.size] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&s.mtime_ns.to_le_bytes());
            b.extend_from_slice(&s.ctime_ns.to_le_bytes());
            b.extend_from_slice(h);
        }
        let sum = checksum(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        let err = |source| SaveError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &b).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash of the file behind `fd`, from the cache when its stamp is unchanged.
    pub fn hash(&self, fd: BorrowedFd<'_>) -> std::io::Result<(Hash, FileStamp, bool)> {
        self.hash_within(fd, Limit::NONE)
    }

    /// [`Cache::hash`] with a [`Limit`] on the hashing (a cached hash needs none).
    pub fn hash_within(
        &self,
        fd: BorrowedFd<'_>,
        limit: Limit,
    ) -> std::io::Result<(Hash, FileStamp, bool)> {
        self.hash_stamped(fd, &fstat(fd)?, limit)
    }

    /// [`Cache::hash_within`] for a caller that has just `fstat`ed `fd` (`st`).
    pub fn hash_stamped(
        &self,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        limit: Limit,
    ) -> std::io::Result<(Hash, FileStamp, bool)> {
        let stamp = FileStamp::of(st);
        if let Some(h) = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&stamp)
        {
            return Ok((*h, stamp, true));
        }
        let h = sha256_fd_within(fd, limit)?;
        // Re-stat: a file written while we hashed it gets no cache entry. Nor does one changed
        // in the last seconds: timestamps are as coarse as the kernel's clock tick (no
        // multigrain timestamps before 6.13), so a write in the same tick as the last one
        // would leave the stamp as it is.
        if FileStamp::of(&fstat(fd)?) == stamp && !recent(&stamp) {
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stamp, h);
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok((h, stamp, false))
    }

    /// Goes on hashing, on a thread of its own, the file behind `fd` (stat `st`) whose
    /// hashing missed an exec decision's deadline, and caches its hash when done (under
    /// [`Cache::hash_stamped`]'s checks: a file that changed meanwhile gets no entry), so
    /// that the next exec of it is a cache hit. For files no agent can write only (the
    /// cache vouches for nothing else); `unwritten`: only while nobody holds it open for
    /// write ([`Cache::hash_unwritten_stamped`]). One thread per stamp, for at most
    /// [`FINISH_DEADLINE`]; returns whether one is (now) at work on it.
    pub fn finish_in_background(
        self: &std::sync::Arc<Self>,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        unwritten: bool,
    ) -> bool {
        let stamp = FileStamp::of(st);
        let Ok(fd) = fd.try_clone_to_owned() else {
            return false;
        };
        {
            let mut f = self.finishing.lock().unwrap_or_else(|p| p.into_inner());
            if f.contains_key(&stamp) {
                return true;
            }
            // Bounded: a flood of huge files waits for the threads already at work.
            if f.len() >= 4 {
                return false;
            }
            f.insert(stamp, std::time::Instant::now());
        }
        let cache = std::sync::Arc::clone(self);
        let st = *st;
        let limit = Limit {
            max_bytes: None,
            deadline: Some(std::time::Instant::now() + FINISH_DEADLINE),
        };
        let spawned = std::thread::Builder::new()
            .name("warden-hash".into())
            .spawn(move || {
                let _ = if unwritten {
                    cache
                        .hash_unwritten_stamped(fd.as_fd(), &st, limit)
                        .map(|_| ())
                } else {
                    cache.hash_stamped(fd.as_fd(), &st, limit).map(|_| ())
                };
                cache
                    .finishing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&stamp);
            })
            .is_ok();
        if !spawned {
            self.finishing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&stamp);
        }
        spawned
    }

    /// Whether the cache holds a hash for `stamp`.
    pub fn contains(&self, stamp: &FileStamp) -> bool {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(stamp)
    }

    /// The hash cached for `stamp`, if any (nothing is hashed).
    pub fn get(&self, stamp: &FileStamp) -> Option<Hash> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stamp)
            .copied()
    }

    /// An in-memory cache holding `entries`, hashes a trusted party computed (the gate
    /// inside a session: [`warden_policy::session::KnownFile`]s from `warden run`). Not
    /// dirty: nothing to save.
    pub fn seeded(entries: impl IntoIterator<Item = (FileStamp, Hash)>) -> Cache {
        let c = Cache::default();
        c.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(entries);
        c
    }

    /// The [`warden_policy::session::KnownFile`]s of `files` this cache knows the hash of,
    /// with the real paths of what was opened: each opened read-only (non-blocking: a FIFO
    /// put in a file's place does not hold the caller) and `fstat`ed; nothing is hashed, and
    /// a file that is not regular or not cached is left out.
    pub fn known_files<'a>(
        &self,
        files: impl IntoIterator<Item = &'a std::path::Path>,
    ) -> Vec<(std::path::PathBuf, warden_policy::session::KnownFile)> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = Vec::new();
        for p in files {
            let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(p)
            else {
                continue;
            };
            let Ok(st) = fstat(f.as_fd()) else { continue };
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                continue;
            }
            use std::os::fd::AsRawFd;
            let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) else {
                continue;
            };
            let stamp = FileStamp::of(&st);
            if let Some(h) = self.get(&stamp) {
                out.push((
                    real,
                    warden_policy::session::KnownFile {
                        dev: stamp.dev,
                        ino: stamp.ino,
                        size: stamp.size,
                        mtime_ns: stamp.mtime_ns,
                        ctime_ns: stamp.ctime_ns,
                        sha256: warden_policy::progrules::hex(&h),
                    },
                ));
            }
        }
        out
    }

    /// Whether [`Cache::finish_in_background`] is still hashing `stamp`.
    pub fn finishing(&self, stamp: &FileStamp) -> bool {
        self.finishing_since(stamp).is_some()
    }

    /// Since when [`Cache::finish_in_background`] has been hashing `stamp` (if it is).
    pub fn finishing_since(&self, stamp: &FileStamp) -> Option<std::time::Instant> {
        self.finishing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(stamp)
            .copied()
    }

    /// Like [`Cache::hash`], but only when nobody holds the file open for write (a shared
    /// writable mapping holds it open): a file that has a writer is hashed afresh, its entry
    /// dropped and not recorded, since its content can change behind an unchanged stamp.
    /// Returns (hash, writers): `Some(true)` when a writer exists, `None` when that cannot be
    /// told (a file system without leases), in which case nothing is cached either.
    /// The third value: whether the hash came from the cache.
    pub fn hash_unwritten(
        &self,
        fd: BorrowedFd<'_>,
    ) -> std::io::Result<(Hash, Option<bool>, bool)> {
        self.hash_unwritten_within(fd, Limit::NONE)
    }

    /// [`Cache::hash_unwritten`] with a [`Limit`] on the hashing.
    pub fn hash_unwritten_within(
        &self,
        fd: BorrowedFd<'_>,
        limit: Limit,
    ) -> std::io::Result<(Hash, Option<bool>, bool)> {
        self.hash_unwritten_stamped(fd, &fstat(fd)?, limit)
    }

    /// [`Cache::hash_unwritten_within`] for a caller that has just `fstat`ed `fd` (`st`).
    /// The stat may precede the writer check: content written through a mapping since the
    /// entry was made has changed the stamp (the first write to a clean page updates
    /// ctime), whichever comes first.
    pub fn hash_unwritten_stamped(
        &self,
        fd: BorrowedFd<'_>,
        st: &libc::stat,
        limit: Limit,
    ) -> std::io::Result<(Hash, Option<bool>, bool)> {
        let writers = open_for_write(fd);
        if writers == Some(false) {
            let (h, _, hit) = self.hash_stamped(fd, st, limit)?;
            // A writer that appeared while we hashed: the entry may already be stale. A
            // cache hit hashed nothing (and made no entry): a writer arriving after the
            // stamp was read is no different from one arriving after this check.
            if hit || open_for_write(fd) == Some(false) {
                return Ok((h, Some(false), hit));
            }
            self.forget(&FileStamp::of(&fstat(fd)?));
            return Ok((sha256_fd_within(fd, limit)?, Some(true), false));
        }
        self.forget(&FileStamp::of(&fstat(fd)?));
        Ok((sha256_fd_within(fd, limit)?, writers, false))
    }

    /// Hash of the file at `path` (opened read-only; the stamp is taken on the open file).
    pub fn hash_path(&self, path: &std::path::Path) -> std::io::Result<Hash> {
        let f = std::fs::File::open(path)?;
        self.hash(f.as_fd()).map(|(h, _, _)| h)
    }

    /// Drops the entry for `stamp` (if any) and keeps it out of the file on disk: used for
    /// files the agent can write, whose stamps prove nothing.
    pub fn forget(&self, stamp: &FileStamp) {
        let had = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(stamp)
            .is_some();
        let mut f = self.forgotten.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: past this, the entries are gone from memory already; the file on disk may
        // keep a few, which the exec guard never consults for writable files anyway.
        if f.len() < 100_000 && f.insert(*stamp) && had {
            self.dirty.store(true, Ordering::Relaxed);
        }
    }

    /// Whether entries were added since the cache was loaded.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Saves only when something changed since the load or the last save (a rewrite is not
    /// free: replacing the file frees the old one's blocks, which some file systems discard
    /// synchronously); errors are returned for the caller to report.
    pub fn save_if_dirty(&self, path: &std::path::Path) -> Result<(), SaveError> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        self.save(path)
            .inspect_err(|_| self.dirty.store(true, Ordering::Relaxed))
    }
}

/// Whether `stamp`'s ctime is within the last two seconds (or in the future).
fn recent(stamp: &FileStamp) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    now - stamp.ctime_ns < 2_000_000_000
}

/// Whether some process holds the file behind `fd` open for write (a writable shared mapping
/// counts: it holds its file open). Asked with a read lease, which the kernel refuses with
/// `EAGAIN` exactly then. `None`: no lease could be asked for (file system, or neither the
/// file's owner nor `CAP_LEASE`).
pub fn open_for_write(fd: BorrowedFd<'_>) -> Option<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl lease requests on a descriptor we hold; the lease is dropped at once.
    unsafe {
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) == 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK);
            return Some(false);
        }
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Some(true),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    /// The file round-trips; a flipped byte or a cut is refused; a file of the previous
    /// format reads as empty.
    #[test]
    fn hashing_past_the_deadline_finishes_in_the_background_and_is_then_a_hit() {
        use super::*;
        use std::sync::Arc;
        let p = std::env::temp_dir().join(format!("warden-cache-bg-{}", std::process::id()));
        std::fs::write(&p, vec![7u8; 3 << 20]).unwrap();
        // The cache takes no entry for a file changed in the last two seconds.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let f = std::fs::File::open(&p).unwrap();
        let st = fstat(f.as_fd()).unwrap();
        let cache = Arc::new(Cache::default());
        let now = Limit {
            max_bytes: None,
            deadline: Some(std::time::Instant::now()),
        };
        let e = cache.hash_stamped(f.as_fd(), &st, now).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(cache.finish_in_background(f.as_fd(), &st, true));
        drop(f);
        let stamp = FileStamp::of(&st);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while cache.finishing(&stamp) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!cache.finishing(&stamp), "background hashing never ended");
        let f = std::fs::File::open(&p).unwrap();
        let (h, _, hit) = cache.hash_stamped(f.as_fd(), &st, now).unwrap();
        assert!(hit, "the background hash was not cached");
        assert_eq!(h, crate::identity::sha256_bytes(&vec![7u8; 3 << 20]));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn the_cache_file_round_trips_and_refuses_damage() {
        use super::*;
        let dir = std::env::temp_dir().join(format!("warden-cache-sum-{}", std::process::id()));
        let path = dir.join("c.bin");
        let c = Cache::default();
        let st = FileStamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: 5,
        };
        c.map.lock().unwrap().insert(st, [7u8; 32]);
        c.save(&path).unwrap();
        let back = Cache::load(&path).unwrap();
        assert_eq!(back.map.lock().unwrap().get(&st), Some(&[7u8; 32]));
        let good = std::fs::read(&path).unwrap();
        for at in [8, 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(Cache::load(&path).is_err(), "byte {at} flipped");
        }
        std::fs::write(&path, &good[..good.len() - 8]).unwrap();
        assert!(Cache::load(&path).is_err(), "cut");
        let mut v1 = b"WRDNHC01".to_vec();
        v1.extend_from_slice(&[0u8; ENTRY + 32]);
        std::fs::write(&path, &v1).unwrap();
        assert!(Cache::load(&path).unwrap().is_empty(), "previous format");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
