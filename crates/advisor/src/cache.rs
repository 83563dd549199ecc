//! Answers cached by the SHA-256 of the exact call and context ([`crate::prompt::cache_key`]):
//! in memory with a size cap (oldest evicted first), and optionally on disk in a directory
//! of the user's state dir that only the supervisor writes (never the sandbox). Only model
//! answers are cached; timeouts and errors are not.
//!
//! Disk entries are opened beneath a directory fd with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, must be regular files, are read bounded, and are written to a
//! fresh `O_EXCL` temp file then renamed.

use crate::combine::Answer;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

pub const MEMORY_ENTRIES: usize = 1024;
/// Disk entries older than this are ignored.
pub const DISK_TTL_MS: u128 = 7 * 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub verdict: Answer,
    pub reason: String,
    pub model: String,
    pub prompt_sha256: String,
    pub ts_ms: u128,
}

#[derive(Default)]
struct Mem {
    map: HashMap<String, Entry>,
    order: VecDeque<String>,
}

pub struct Cache {
    mem: Mutex<Mem>,
    cap: usize,
    disk: Option<OwnedFd>,
}

impl Cache {
    pub fn memory(cap: usize) -> Cache {
        Cache {
            mem: Mutex::new(Mem::default()),
            cap: cap.max(1),
            disk: None,
        }
    }

    /// Adds a disk layer in `dir` (created 0700 if missing; must be a real directory).
    pub fn with_disk(mut self, dir: &Path) -> std::io::Result<Cache> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let c = CString::new(dir.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: open(2) with a valid C string.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        self.disk = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(self)
    }

    pub fn get(&self, key: &str) -> Option<Entry> {
        if let Ok(m) = self.mem.lock() {
            if let Some(e) = m.map.get(key) {
                return Some(e.clone());
            }
        }
        let e = self.disk_get(key)?;
        if warden_event::now_ms().saturating_sub(e.ts_ms) > DISK_TTL_MS {
            return None;
        }
        self.mem_put(key, e.clone());
        Some(e)
    }

    pub fn put(&self, key: &str, e: Entry) {
        self.mem_put(key, e.clone());
        if let Err(err) = self.disk_put(key, &e) {
            tracing::warn!("advisor cache: cannot write entry: {err}");
        }
    }

    pub fn len(&self) -> usize {
        self.mem.lock().map(|m| m.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn mem_put(&self, key: &str, e: Entry) {
        let Ok(mut m) = self.mem.lock() else { return };
        if m.map.insert(key.to_string(), e).is_none() {
            m.order.push_back(key.to_string());
        }
        while m.map.len() > self.cap {
            match m.order.pop_front() {
                Some(old) => {
                    m.map.remove(&old);
                }
                None => break,
            }
        }
    }

    fn valid_key(key: &str) -> bool {
        key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit())
    }

    fn disk_get(&self, key: &str) -> Option<Entry> {
        let dir = self.disk.as_ref()?;
        if !Self::valid_key(key) {
            return None;
        }
        let fd = openat2(
            dir,
            &format!("{key}.json"),
            libc::O_RDONLY | libc::O_NONBLOCK,
            0,
        )
        .ok()?;
        let mut f = std::fs::File::from(fd);
        let md = f.metadata().ok()?;
        if !md.is_file() || md.len() > 16 << 10 {
            return None;
        }
        let mut s = String::new();
        (&mut f).take(16 << 10).read_to_string(&mut s).ok()?;
        serde_json::from_str(&s).ok()
    }

    fn disk_put(&self, key: &str, e: &Entry) -> std::io::Result<()> {
        let Some(dir) = self.disk.as_ref() else {
            return Ok(());
        };
        if !Self::valid_key(key) {
            return Ok(());
        }
        let tmp = format!(".{key}.{}.tmp", std::process::id());
        let fd = openat2(
            dir,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
            0o600,
        )?;
        let mut f = std::fs::File::from(fd);
        let body = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        let res = f.write_all(&body).and_then(|_| f.sync_data());
        let (t, d) = (
            CString::new(tmp.as_str()).map_err(std::io::Error::other)?,
            CString::new(format!("{key}.json")).map_err(std::io::Error::other)?,
        );
        if let Err(err) = res {
            // SAFETY: unlinkat of a name in a directory fd we own.
            unsafe { libc::unlinkat(dir.as_raw_fd(), t.as_ptr(), 0) };
            return Err(err);
        }
        // SAFETY: renameat within one directory fd we own.
        let rc =
            unsafe { libc::renameat(dir.as_raw_fd(), t.as_ptr(), dir.as_raw_fd(), d.as_ptr()) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // SAFETY: as above.
            unsafe { libc::unlinkat(dir.as_raw_fd(), t.as_ptr(), 0) };
            return Err(err);
        }
        Ok(())
    }
}

/// `openat2(dir, rel, flags)` beneath `dir`, following no symlink or magic link.
pub(crate) fn openat2(dir: &OwnedFd, rel: &str, flags: i32, mode: u64) -> std::io::Result<OwnedFd> {
    if rel.contains('\0') {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(warden_sys::open_beneath(
        dir,
        std::path::Path::new(rel),
        warden_sys::OFlags::from_bits_retain(flags as u32),
        warden_sys::Mode::from_raw_mode(mode as u32),
    )?)
}
