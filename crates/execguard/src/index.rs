//! The trust index: SQLite, one row per indexed file with its stamp and SHA-256. Built by
//! `warden index`; re-indexing re-hashes only files whose (dev, inode, size, mtime, ctime)
//! changed. Allowlist mode trusts every hash in it.

use crate::identity::{fstat, hex, sha256_fd, FileStamp, Hash};
use rusqlite::{params, Connection, OpenFlags};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

pub struct Index {
    db: Connection,
}

pub const DEFAULT_ROOTS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/opt",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
];

pub fn default_path(home: &Path) -> PathBuf {
    home.join(".local/share/warden/index.db")
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IndexStats {
    pub files: u64,
    pub hashed: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub bytes_hashed: u64,
    pub errors: u64,
}

/// A trust index that cannot be built, opened or read.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Sql(#[from] rusqlite::Error),
    #[error("does not exist; build it with `warden index`")]
    Missing,
    #[error("not a readable index: {0}")]
    Unreadable(rusqlite::Error),
    #[error("corrupted: {0}")]
    Corrupted(String),
    #[error("not a warden index: {0}")]
    NotAnIndex(rusqlite::Error),
}

impl Index {
    pub fn create(path: &Path) -> Result<Index, IndexError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER,
               mtime_ns TEXT, ctime_ns TEXT, sha256 BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS files_sha ON files(sha256);",
        )
        ?;
        Ok(Index { db })
    }

    /// Opens an index that must exist and be a valid warden index.
    pub fn open_existing(path: &Path) -> Result<Index, IndexError> {
        if !path.exists() {
            return Err(IndexError::Missing);
        }
        let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let ok: String = db
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(IndexError::Unreadable)?;
        if ok != "ok" {
            return Err(IndexError::Corrupted(ok));
        }
        db.query_row("SELECT count(*) FROM files", [], |r| r.get::<_, i64>(0))
            .map_err(IndexError::NotAnIndex)?;
        Ok(Index { db })
    }

    pub fn hashes(&self) -> Result<Vec<Hash>, IndexError> {
        let mut st = self.db.prepare("SELECT DISTINCT sha256 FROM files")?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for r in rows {
            let v = r?;
            let h: Hash = v
                .as_slice()
                .try_into()
                .map_err(|_| IndexError::Corrupted("a hash is not 32 bytes".into()))?;
            out.push(h);
        }
        Ok(out)
    }

    pub fn lookup(&self, h: &Hash) -> Option<String> {
        self.db
            .query_row(
                "SELECT path FROM files WHERE sha256 = ?1 LIMIT 1",
                params![h.as_slice()],
                |r| r.get(0),
            )
            .ok()
    }

    /// Indexes every regular file under `roots`, re-hashing only changed files.
    pub fn update(&mut self, roots: &[PathBuf], progress: bool) -> Result<IndexStats, IndexError> {
        let mut files = Vec::new();
        for r in roots {
            walk(r, &mut files);
        }
        let bar = if progress {
            let b = indicatif::ProgressBar::new(files.len() as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} hashing [{bar:40}] {pos}/{len} {bytes_per_sec} {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Some(b)
        } else {
            None
        };
        let mut stats = IndexStats::default();
        let tx = self.db.transaction()?;
        {
            let mut get =
                tx.prepare("SELECT dev, ino, size, mtime_ns, ctime_ns FROM files WHERE path = ?1")?;
            let mut put = tx
                .prepare("INSERT OR REPLACE INTO files(path, dev, ino, size, mtime_ns, ctime_ns, sha256) VALUES (?1,?2,?3,?4,?5,?6,?7)")
                ?;
            for p in &files {
                stats.files += 1;
                if let Some(b) = &bar {
                    b.inc(1);
                }
                let Ok(f) = std::fs::File::open(p) else {
                    stats.errors += 1;
                    continue;
                };
                let Ok(md) = fstat(f.as_fd()) else {
                    stats.errors += 1;
                    continue;
                };
                let s = FileStamp::of(&md);
                let key = p.to_string_lossy().into_owned();
                let old: Option<(i64, i64, i64, String, String)> = get
                    .query_row(params![key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })
                    .ok();
                let stamp = (
                    s.dev as i64,
                    s.ino as i64,
                    s.size as i64,
                    s.mtime_ns.to_string(),
                    s.ctime_ns.to_string(),
                );
                if old.as_ref() == Some(&stamp) {
                    stats.unchanged += 1;
                    continue;
                }
                match sha256_fd(f.as_fd()) {
                    Ok(h) => {
                        stats.hashed += 1;
                        stats.bytes_hashed += s.size;
                        if let Some(b) = &bar {
                            b.set_message(format!("{} {}", &hex(&h)[..8], key));
                        }
                        put.execute(params![
                            key,
                            stamp.0,
                            stamp.1,
                            stamp.2,
                            stamp.3,
                            stamp.4,
                            h.as_slice()
                        ])?;
                    }
                    Err(_) => stats.errors += 1,
                }
            }
        }
        // Drop rows for files that no longer exist under the indexed roots.
        {
            let mut all = tx.prepare("SELECT path FROM files")?;
            let paths: Vec<String> = all.query_map([], |r| r.get(0))?.flatten().collect();
            for p in paths {
                let pb = PathBuf::from(&p);
                if roots.iter().any(|r| pb.starts_with(r)) && !pb.is_file() {
                    tx.execute("DELETE FROM files WHERE path = ?1", params![p])?;
                    stats.removed += 1;
                }
            }
        }
        tx.commit()?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        Ok(stats)
    }
}

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return;
    };
    if md.is_file() {
        use std::os::unix::fs::PermissionsExt;
        // Executables and shared objects (what exec and executable mappings can load).
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if md.permissions().mode() & 0o111 != 0 || name.contains(".so") {
            out.push(p.to_path_buf());
        }
    } else if md.is_dir() {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                walk(&e.path(), out);
            }
        }
    }
}
