//! Resource limits that keep the agent from exhausting the host: a size for every private
//! tmpfs and a memory limit on the whole session, with defaults derived from RAM, and a
//! monitor that tells the user which limit was hit and which policy key raises it.
//!
//! Defaults (R = physical RAM): `$HOME` R/16, `/tmp` R/16, `/var/tmp` R/32, `/dev/shm` R/32,
//! `/run` 64 MiB — together under R/4 — and `memory_max` R/2 for the session. Pages of the
//! private tmpfs mounts are charged to the session's memory cgroup as well, so with a
//! memory cgroup the sandbox as a whole never holds more than `memory_max`.
//!
//! Without a memory cgroup there is no per-session memory limit: RLIMIT_AS is not used as a
//! fallback, because it bounds address space per process (not memory, not the session), so
//! it breaks runtimes that reserve large virtual ranges (V8, Go, the JVM) while a fork
//! loop of small processes still exhausts RAM. `warden doctor` says which one holds.

use std::path::{Path, PathBuf};
use warden_policy::{ByteSize, ProcessSection};

/// Physical RAM in bytes.
pub fn ram_bytes() -> u64 {
    warden_policy::ram_bytes()
}

/// One private tmpfs and its size limit.
#[derive(Debug, Clone)]
pub struct TmpfsLimit {
    pub path: PathBuf,
    pub size: u64,
    /// The policy key that sets it.
    pub key: &'static str,
}

/// The limits of a session.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_max: u64,
    pub tmpfs: Vec<TmpfsLimit>,
}

/// The effective limits: policy values where set, else the defaults above.
pub fn from_policy(p: &ProcessSection, home: &Path, ram: u64) -> Limits {
    let d = ProcessSection::default_sizes(ram);
    let v = p.sizes();
    let pick = |i: usize| v[i].map_or(d[i], |b: ByteSize| b.0);
    let t = |path: PathBuf, i: usize| TmpfsLimit {
        path,
        size: pick(i),
        key: ProcessSection::SIZE_KEYS[i],
    };
    Limits {
        memory_max: pick(0),
        tmpfs: vec![
            t(home.to_path_buf(), 1),
            t("/tmp".into(), 2),
            t("/var/tmp".into(), 3),
            t("/run".into(), 4),
            t("/dev/shm".into(), 5),
        ],
    }
}

impl Limits {
    /// The size limit of the private tmpfs at `p`, if it is one.
    pub fn tmpfs_size(&self, p: &Path) -> Option<u64> {
        self.tmpfs.iter().find(|t| t.path == p).map(|t| t.size)
    }
}

/// What the monitor watches.
pub struct Watch {
    /// A process whose root is the sandbox's (the agent), to look at its tmpfs mounts.
    pub agent_pid: i32,
    pub tmpfs: Vec<TmpfsLimit>,
    /// The session's memory cgroup: (directory, v2?) and its limit.
    pub memory: Option<(PathBuf, bool, u64)>,
}

/// Number of OOM kills recorded by a memory cgroup (v2 `memory.events`, v1
/// `memory.oom_control`).
pub fn oom_kills(dir: &Path, v2: bool) -> u64 {
    let f = if v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    std::fs::read_to_string(dir.join(f))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The message shown when the memory limit killed something.
pub fn memory_message(kills: u64, max: u64) -> String {
    format!(
        "warden: the session hit its memory limit ({}, process.memory_max): the kernel killed {kills} process(es) inside the sandbox; raise process.memory_max in your policy (~/.config/warden/policy.toml) to allow more",
        ByteSize(max).human()
    )
}

/// The message shown when a private tmpfs is full.
pub fn tmpfs_message(t: &TmpfsLimit) -> String {
    format!(
        "warden: the sandbox's private {} is full ({} limit, {}): writes there fail with ENOSPC; raise {} in your policy to allow more",
        t.path.display(),
        ByteSize(t.size).human(),
        t.key,
        t.key
    )
}

/// Whether the file system of `fd` has no free blocks (fstatvfs, read-only).
fn is_full(fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: fstatvfs into a zeroed struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open fd we own and `st` a valid, writable statvfs.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    st.f_blocks > 0 && st.f_bavail == 0
}

/// An `O_PATH` handle on the sandbox's private tmpfs at `p` (through the agent's root), kept
/// for the session so the last check works after the sandbox is gone. Opened before the
/// agent runs any code; checked to be a tmpfs. Never written through.
fn open_tmpfs(agent_pid: i32, p: &Path) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    let rel = p.strip_prefix("/").unwrap_or(p);
    let full = PathBuf::from(format!("/proc/{agent_pid}/root")).join(rel);
    let c = std::ffi::CString::new(full.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: open(2) with O_PATH; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: fstatfs into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is the fd we just opened and own; `st` a valid, writable statfs.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 || st.f_type != libc::TMPFS_MAGIC {
        return None;
    }
    Some(fd)
}

/// Watches the limits for the session's lifetime (a detached thread): prints to the user's
/// terminal (stderr) once per limit when it is hit. `stop` ends it.
pub fn spawn_monitor(
    w: Watch,
    stop: std::sync::mpsc::Receiver<()>,
) -> std::thread::JoinHandle<Vec<String>> {
    let fds: Vec<Option<std::os::fd::OwnedFd>> = w
        .tmpfs
        .iter()
        .map(|t| open_tmpfs(w.agent_pid, &t.path))
        .collect();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut full = vec![false; w.tmpfs.len()];
        let mut kills = 0u64;
        let mut check = |said: &mut Vec<String>| {
            if let Some((dir, v2, max)) = &w.memory {
                let k = oom_kills(dir, *v2);
                if k > kills {
                    kills = k;
                    let m = memory_message(k, *max);
                    eprint!("\r\n{m}\r\n");
                    said.push(m);
                }
            }
            for (i, t) in w.tmpfs.iter().enumerate() {
                let Some(fd) = &fds[i] else { continue };
                let now = is_full(fd);
                if now && !full[i] {
                    let m = tmpfs_message(t);
                    eprint!("\r\n{m}\r\n");
                    said.push(m);
                }
                full[i] = now;
            }
        };
        loop {
            check(&mut said);
            // Wakes at once when the sender is dropped (the session ended).
            match stop.recv_timeout(std::time::Duration::from_millis(50)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        check(&mut said);
        said
    })
}

/// The running monitor of a session's limits.
pub struct Monitor {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Monitor {
    pub fn start(w: Watch) -> Monitor {
        let (stop, rx) = std::sync::mpsc::channel();
        let thread = spawn_monitor(w, rx);
        Monitor {
            stop: Some(stop),
            thread,
        }
    }

    /// Tells the monitor to make its last check and stop, without waiting: the session's
    /// other end-of-session steps overlap its wake-up (see [`Monitor::finish`]).
    pub fn signal(&mut self) {
        drop(self.stop.take());
    }

    /// Stops the monitor after a last check; what it reported goes to the session log.
    pub fn finish(mut self) {
        self.signal();
        if let Ok(said) = self.thread.join() {
            for m in said {
                tracing::info!("{m}");
            }
        }
    }
}

/// The session's memory cgroup, or None (with a warning in the session log) when this
/// machine has none that warden can write. Under the BPF exec-guard backend a cgroup v2
/// memory cgroup is not used: the daemon's session cgroup holds the processes there.
pub fn session_memory(
    session: &str,
    memory_max: u64,
    bpf: bool,
    within: Option<&std::path::Path>,
) -> Option<crate::cgroup::MemoryCgroup> {
    if bpf && crate::cgroup::memory_root().is_some_and(|(v2, _)| v2) {
        tracing::warn!("memory limit: not applied under the BPF exec-guard backend on cgroup v2");
        return None;
    }
    if crate::cgroup::memory_root().is_none() {
        // Usual for an unprivileged user on cgroup v2 without delegation; `warden doctor`
        // says so. The tmpfs sizes still hold.
        tracing::info!("no writable memory cgroup: the session has no memory limit");
        return None;
    }
    match crate::cgroup::MemoryCgroup::create(session, memory_max, within) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("memory limit unavailable ({e}): the session has no memory limit");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_stay_well_under_half_of_ram() {
        let ram = 16u64 << 30;
        let l = from_policy(&ProcessSection::default(), Path::new("/home/u"), ram);
        let sum: u64 = l.tmpfs.iter().map(|t| t.size).sum();
        assert!(sum <= ram / 4 + (64 << 20), "{sum}");
        assert_eq!(l.memory_max, ram / 2);
        assert_eq!(l.tmpfs_size(Path::new("/tmp")), Some(1 << 30));
    }

    #[test]
    fn policy_values_win() {
        let p = ProcessSection {
            tmp_size: Some(ByteSize(8 << 20)),
            memory_max: Some(ByteSize(1 << 30)),
            ..Default::default()
        };
        let l = from_policy(&p, Path::new("/h"), 8 << 30);
        assert_eq!(l.tmpfs_size(Path::new("/tmp")), Some(8 << 20));
        assert_eq!(l.memory_max, 1 << 30);
    }
}
