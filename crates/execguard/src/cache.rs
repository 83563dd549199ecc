//! The persistent content-hash cache: file stamp (dev, inode, size, mtime, ctime) → SHA-256.
//! A hit costs no hashing; any change to the file (including timestamps restored with
//! `touch -d`, which still moves ctime) misses. Shared by the exec guard's supervisor, the
//! rules' name resolution and the tool-call gate, each with its own file under warden's state
//! directory (outside anything the sandbox can write).

use crate::identity::{fstat, sha256_fd, FileStamp, Hash};
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
}

const CACHE_MAGIC: &[u8; 8] = b"WRDNHC01";
const ENTRY: usize = 8 * 3 + 16 * 2 + 32;

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({} entries)", self.len())
    }
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
        if b.len() < 8 + 32 || &b[..8] != CACHE_MAGIC || (b.len() - 40) % ENTRY != 0 {
            return Err(bad("bad header or length"));
        }
        let (body, sum) = b.split_at(b.len() - 32);
        if crate::identity::sha256_bytes(body)[..] != sum[..] {
            return Err(bad("checksum mismatch"));
        }
        let mut map = HashMap::new();
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
        })
    }

    /// Writes the cache (atomically: temp file + rename), merging what is on disk.
    pub fn save(&self, path: &std::path::Path) -> Result<(), String> {
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
        // Bounded: keep the file small enough to load in well under a millisecond.
        if map.len() > 50_000 {
            map = map.into_iter().take(50_000).collect();
        }
        let mut b = Vec::with_capacity(8 + map.len() * ENTRY + 32);
        b.extend_from_slice(CACHE_MAGIC);
        for (s, h) in &map {
            for v in [s.dev, s.ino, s.size] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            b.extend_from_slice(&s.mtime_ns.to_le_bytes());
            b.extend_from_slice(&s.ctime_ns.to_le_bytes());
            b.extend_from_slice(h);
        }
        let sum = crate::identity::sha256_bytes(&b);
        b.extend_from_slice(&sum);
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &b).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, path).map_err(|e| e.to_string())
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hash of the file behind `fd`, from the cache when its stamp is unchanged.
    pub fn hash(&self, fd: BorrowedFd<'_>) -> std::io::Result<(Hash, FileStamp, bool)> {
        let st = fstat(fd)?;
        let stamp = FileStamp::of(&st);
        if let Some(h) = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&stamp)
        {
            return Ok((*h, stamp, true));
        }
        let h = sha256_fd(fd)?;
        // Re-stat: a file written while we hashed it gets no cache entry.
        if FileStamp::of(&fstat(fd)?) == stamp {
            self.map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(stamp, h);
            self.dirty.store(true, Ordering::Relaxed);
        }
        Ok((h, stamp, false))
    }

    /// Hash of the file at `path` (opened read-only; the stamp is taken on the open file).
    pub fn hash_path(&self, path: &std::path::Path) -> std::io::Result<Hash> {
        let f = std::fs::File::open(path)?;
        self.hash(f.as_fd()).map(|(h, _, _)| h)
    }

    /// Whether entries were added since the cache was loaded.
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed)
    }

    /// Saves only when something was added; errors are returned for the caller to report.
    pub fn save_if_dirty(&self, path: &std::path::Path) -> Result<(), String> {
        if self.is_dirty() {
            self.save(path)
        } else {
            Ok(())
        }
    }
}
