//! Kernels without IMA: the daemon feeds the programs' identity map (`wg_idents`).
//!
//! The BPF programs cannot hash there, so every decision looks up (s_dev, inode) in a map the
//! daemon fills, and requires the recorded ctime and size to match the file's; a miss or a
//! stale stamp is denied in enforce mode, and any open for write (or truncate) deletes the
//! entry in the kernel. Two feeds keep legitimate first use from failing:
//!
//! - **Execs.** A fanotify group with `FAN_OPEN_EXEC_PERM` marks every file system mounted
//!   on the host and, when a session starts, every file system in the session's mount
//!   namespace (its private tmpfs). The kernel raises the permission event when a file is
//!   opened for exec, *before* `bprm_check_security` runs; the daemon hashes the file through
//!   the event's descriptor (the very file being executed), records it, and only then answers
//!   `FAN_ALLOW`. Exec opens outside sessions are answered at once. If the daemon dies, the
//!   group goes with it: the events stop, misses are denied (fail closed).
//! - **Libraries.** Shared objects under the system library directories are hashed at start
//!   (through a persistent cache), so `mmap(PROT_EXEC)` by the loader finds them.
//!
//! A file that anyone holds open for write when its exec is announced (a shared writable
//! mapping counts; asked with a read lease) is not recorded, and its hash-cache entry is
//! dropped: its content can change behind an unchanged stamp (writes into pages dirtied
//! earlier fault nothing and update no timestamp). The cache also takes no entry for a file
//! changed in the last two seconds (timestamps as coarse as the clock tick).
//!
//! Cost (stated): events are answered by one thread, so while it hashes a large file opened
//! for exec by a session for the first time, exec opens elsewhere on the machine wait for it
//! (outside sessions the answer itself is immediate; hashes are cached by file stamp). That
//! wait is bounded like the seccomp guard's: a file an agent could write over 512 MiB is not
//! hashed, and no hashing runs past 10 s; such a file is not recorded, so its exec is denied.
//!
//! Not covered (stated): a shared object outside those directories that was never exec'd
//! (for example a freshly built `.so` loaded with `dlopen`) is denied on first mapping. With
//! IMA (stock Debian, Ubuntu, Fedora kernels) none of this is used.

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use warden_execguard::cache::Cache;
use warden_execguard::lsm::bpf::Pinned;

/// File systems that hold no executables (or cannot be marked).
const PSEUDO: &[&str] = &[
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "bpf",
    "devpts",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "efivarfs",
    "autofs",
    "rpc_pipefs",
    "nsfs",
];

/// Library directories hashed ahead.
pub const LIB_DIRS: &[&str] = &["/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib"];

/// The feeder could not start.
#[derive(Debug, thiserror::Error)]
pub enum FeederError {
    #[error("fanotify_init: {0}")]
    Init(std::io::Error),
}

pub struct Feeder {
    fan: OwnedFd,
}

/// The bound on hashing one session exec (the seccomp guard's): a deadline always, and the
/// size cap for a file an agent could have written (not root-owned, or group/world
/// writable). Over it the file is not recorded, and the program denies the exec.
fn exec_limit(fd: BorrowedFd<'_>) -> warden_execguard::identity::Limit {
    use warden_execguard::identity::{Limit, HASH_DEADLINE, MAX_HASH_BYTES};
    // A flat deadline here, not the session guard's size-based one: every exec on the
    // machine waits while the feeder hashes (attack review 68).
    let system = stat_fd(fd).is_some_and(|st| st.st_uid == 0 && st.st_mode & 0o022 == 0);
    Limit {
        max_bytes: (!system).then_some(MAX_HASH_BYTES),
        deadline: Some(std::time::Instant::now() + HASH_DEADLINE),
    }
}

fn stat_fd(fd: BorrowedFd<'_>) -> Option<libc::stat> {
    warden_execguard::identity::fstat(fd).ok()
}

impl Feeder {
    pub fn new() -> Result<Feeder, FeederError> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe {
            libc::fanotify_init(
                libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC,
                (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32,
            )
        };
        if fd < 0 {
            return Err(FeederError::Init(std::io::Error::last_os_error()));
        }
        Ok(Feeder {
            // SAFETY: fanotify_init returned a fresh descriptor nobody else owns.
            fan: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Marks every file system mounted in the mount namespace of `pid` (0: the daemon's own).
    pub fn mark_mounts_of(&self, pid: i32) -> usize {
        let (mi, prefix) = if pid == 0 {
            (
                std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
                String::new(),
            )
        } else {
            (
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
                format!("/proc/{pid}/root"),
            )
        };
        let mut n = 0;
        // Deduplicated within one call only: device numbers of ended sessions' tmpfs are
        // reused by new ones, and marking an already marked file system is harmless.
        let mut marked = HashSet::new();
        for l in mi.lines() {
            let (pre, post) = l.split_once(" - ").unwrap_or((l, ""));
            let fstype = post.split_whitespace().next().unwrap_or("");
            if PSEUDO.contains(&fstype) {
                continue;
            }
            let Some(mp) = pre.split_whitespace().nth(4) else {
                continue;
            };
            let mp = mp.replace("\\040", " ");
            let path = format!("{prefix}{mp}");
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            use std::os::unix::fs::MetadataExt;
            let dev = md.dev();
            if !marked.insert(dev) {
                continue;
            }
            let Ok(c) = std::ffi::CString::new(path.as_bytes()) else {
                continue;
            };
            // SAFETY: marking a path we name.
            let r = unsafe {
                libc::fanotify_mark(
                    self.fan.as_raw_fd(),
                    libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                    libc::FAN_OPEN_EXEC_PERM,
                    libc::AT_FDCWD,
                    c.as_ptr(),
                )
            };
            if r == 0 {
                n += 1;
            } else {
                tracing::warn!(
                    "fanotify mark {path} ({fstype}): {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        n
    }

    /// Answers permission events forever: hashes what sessions open for exec, then allows.
    pub fn serve(&self, pinned: &Pinned, cache: &Cache, in_session: impl Fn(i32) -> bool) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rustix::io::read(&self.fan, &mut buf[..]) {
                Ok(n) if n > 0 => n,
                Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {
                    tracing::error!("fanotify read: end of file");
                    return;
                }
                Err(e) => {
                    tracing::error!("fanotify read: {}", std::io::Error::from(e));
                    return;
                }
            };
            let mut off = 0usize;
            let meta = std::mem::size_of::<libc::fanotify_event_metadata>();
            while off + meta <= n {
                // SAFETY: the kernel wrote whole event records; read_unaligned copies one.
                let m: libc::fanotify_event_metadata =
                    unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
                if m.event_len as usize == 0 {
                    break;
                }
                off += m.event_len as usize;
                if m.fd < 0 {
                    continue;
                }
                // SAFETY: the event's fd is ours to close.
                let file = unsafe { OwnedFd::from_raw_fd(m.fd) };
                if m.mask & libc::FAN_OPEN_EXEC_PERM != 0 && in_session(m.pid) {
                    match cache.hash_unwritten_within(file.as_fd(), exec_limit(file.as_fd())) {
                        // Someone holds it open for write (a shared writable mapping counts):
                        // its content can still change behind the stamp the program checks,
                        // so nothing is recorded and the program denies the exec (which the
                        // kernel refuses with ETXTBSY anyway while the writer exists).
                        Ok((_, Some(true), _)) => {
                            tracing::info!(
                                "pid {} opens for exec a file open for write: not recorded",
                                m.pid
                            )
                        }
                        Ok((h, _, _)) => {
                            if let Some(md) = stat_fd(file.as_fd()) {
                                if let Err(e) = pinned.put_ident(&md, &h) {
                                    tracing::warn!("identity map: {e}");
                                }
                            }
                        }
                        // Not recorded: the program denies the exec (fail closed).
                        Err(e) => {
                            tracing::warn!("cannot hash a file pid {} opens for exec: {e}", m.pid)
                        }
                    }
                }
                let resp = libc::fanotify_response {
                    fd: file.as_raw_fd(),
                    response: libc::FAN_ALLOW,
                };
                // SAFETY: writing one response record.
                unsafe {
                    libc::write(
                        self.fan.as_raw_fd(),
                        (&resp as *const libc::fanotify_response).cast(),
                        std::mem::size_of::<libc::fanotify_response>(),
                    )
                };
            }
        }
    }
}

/// Hashes the shared objects under [`LIB_DIRS`] into the identity map. Returns the count.
pub fn prefill_libraries(pinned: &Pinned, cache: &Cache) -> usize {
    let mut n = 0;
    let mut stack: Vec<(std::path::PathBuf, u32)> = LIB_DIRS
        .iter()
        .map(|d| (Path::new(d).to_path_buf(), 0))
        .collect();
    let mut seen = HashSet::new();
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() && depth < 6 {
                stack.push((p, depth + 1));
            } else if ft.is_file() && e.file_name().to_string_lossy().contains(".so") {
                let Ok(f) = std::fs::File::open(&p) else {
                    continue;
                };
                let Some(md) = stat_fd(f.as_fd()) else {
                    continue;
                };
                if !seen.insert((md.st_dev, md.st_ino)) {
                    continue;
                }
                if let Ok((h, Some(false) | None, _)) = cache.hash_unwritten(f.as_fd()) {
                    if pinned.put_ident(&md, &h).is_ok() {
                        n += 1;
                    }
                }
            }
        }
    }
    n
}
