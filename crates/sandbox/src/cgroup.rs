//! The session cgroups: a pids limit against fork bombs ([`SessionCgroup`]) and a memory
//! limit ([`MemoryCgroup`]). cgroup v2 when its `pids`
//! controller is available, else the v1 `pids` hierarchy (hybrid layouts), else the caller
//! falls back to RLIMIT_NPROC. The cgroup is created per session and removed afterwards.

use std::path::{Path, PathBuf};

const V2: &str = "/sys/fs/cgroup";
const V2_HYBRID: &str = "/sys/fs/cgroup/unified";
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

/// The parent under which session cgroups are made: (kind, path).
pub fn pids_root() -> Option<(&'static str, PathBuf)> {
    for base in [V2, V2_HYBRID] {
        let ctl = Path::new(base).join("cgroup.controllers");
        if let Ok(c) = std::fs::read_to_string(&ctl) {
            if c.split_whitespace().any(|x| x == "pids") && warden_sys::writable(Path::new(base)) {
                return Some(("cgroup2", PathBuf::from(base)));
            }
        }
    }
    let v1 = Path::new(V1_PIDS);
    if (v1.join("pids.max").exists() || v1.join("cgroup.procs").exists())
        && warden_sys::writable(v1)
    {
        return Some(("cgroup1", v1.to_path_buf()));
    }
    None
}

/// Why a session cgroup could not be made or joined.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup hierarchy with this controller that we may write.
    #[error("no writable cgroup with the {0} controller")]
    NoController(&'static str),
    /// A cgroup file or directory: its path and the error (with its errno).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CgroupError {
    fn at(path: PathBuf) -> impl FnOnce(std::io::Error) -> CgroupError {
        move |source| CgroupError::Io { path, source }
    }
}

/// A session cgroup; removed on drop (after its processes are gone).
pub struct SessionCgroup {
    /// Where the agent's tree goes (and `pids.max` stands).
    pub path: PathBuf,
    /// In the cgroup v2 hierarchy (else the v1 `pids` one).
    pub v2: bool,
    /// On v2, the session's directory around `path` ([`Nest`]).
    pub nest: Option<Nest>,
}

impl SessionCgroup {
    pub fn create(session: &str, pids_max: u32) -> Result<SessionCgroup, CgroupError> {
        let (kind, root) = pids_root().ok_or(CgroupError::NoController("pids"))?;
        let parent = root.join("warden-pids");
        std::fs::create_dir_all(&parent).map_err(CgroupError::at(parent.clone()))?;
        if kind == "cgroup2" {
            // Enable pids for children (ignore if already on).
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+pids");
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+pids");
        }
        let outer = parent.join(session);
        let (path, nest) = if kind == "cgroup2" {
            sweep_nests(&parent);
            let nest = Nest::create(outer.clone()).map_err(CgroupError::at(outer.clone()))?;
            let _ = std::fs::write(outer.join("cgroup.subtree_control"), "+pids");
            (nest.agent(), Some(nest))
        } else {
            std::fs::create_dir(&outer).map_err(CgroupError::at(outer.clone()))?;
            (outer, None)
        };
        let cg = SessionCgroup {
            path,
            v2: kind == "cgroup2",
            nest,
        };
        let max = cg.path.join("pids.max");
        std::fs::write(&max, pids_max.to_string()).map_err(CgroupError::at(max))?;
        Ok(cg)
    }

    /// The file the agent process writes "0" to, to join (see [`join_file`]).
    pub fn join_file(&self) -> PathBuf {
        join_file(&self.path, self.v2)
    }

    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        let procs = self.path.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(CgroupError::at(procs))
    }

    /// Number of times the limit was hit (cgroup v2 `pids.events` / v1 `pids.events`).
    pub fn max_events(&self) -> u64 {
        std::fs::read_to_string(self.path.join("pids.events"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }
}

impl Drop for SessionCgroup {
    fn drop(&mut self) {
        // Kill stragglers (there should be none once the pid namespace is gone), then remove.
        rmdir_killing(&self.path);
        if let Some(n) = &self.nest {
            n.remove_soon();
        }
    }
}

/// Removes the cgroup `dir`, SIGKILLing what is still in it, for up to a second.
pub(crate) fn rmdir_killing(dir: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for p in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: only pids inside our own session cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Where a session memory cgroup can be made: (v2?, parent directory). cgroup v2 when its
/// `memory` controller is available at the root, else the v1 `memory` hierarchy, under the
/// memory cgroup this process is already in (so any limit already on us still applies).
pub fn memory_root() -> Option<(bool, PathBuf)> {
    for base in [V2, V2_HYBRID] {
        let ctl = Path::new(base).join("cgroup.controllers");
        if let Ok(c) = std::fs::read_to_string(&ctl) {
            if c.split_whitespace().any(|x| x == "memory") && warden_sys::writable(Path::new(base))
            {
                return Some((true, Path::new(base).join("warden-mem")));
            }
        }
    }
    let own = warden_sys::procfs::cgroup(warden_sys::procfs::Proc::Me).ok()?;
    let rel = warden_sys::procfs::cgroup_v1_path(&own, "memory")?;
    let dir = Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'));
    (dir.join("memory.limit_in_bytes").exists() && warden_sys::writable(&dir))
        .then_some((false, dir))
}

/// The session's memory cgroup (`memory.max`, or v1 `memory.limit_in_bytes`); removed on
/// drop. The kernel's OOM killer acts inside it only.
pub struct MemoryCgroup {
    pub path: PathBuf,
    pub v2: bool,
    pub max: u64,
    /// Made for the limit (and removed on drop); else the session's own v2 cgroup, which
    /// the agent's tree joins anyway (see [`MemoryCgroup::create`]).
    owned: bool,
}

impl MemoryCgroup {
    /// The session's memory limit. On cgroup v2, `within` is the v2 cgroup the agent's tree
    /// joins for its other purposes (the stop switch's leaf, the pids cgroup), if any: the
    /// limit is set there, because a process is in one v2 cgroup only. A second v2 cgroup
    /// joined after the first takes the tree out of it (on a pure v2 machine the agent ended
    /// in `warden-mem` alone: its pids cgroup, whose `pids.max` was the fork-bomb limit and
    /// whose `cgroup.procs` was the exec guard's list of the sandbox's processes, stood
    /// empty).
    pub fn create(
        session: &str,
        max: u64,
        within: Option<&Path>,
    ) -> Result<MemoryCgroup, CgroupError> {
        let (v2, parent) = memory_root().ok_or(CgroupError::NoController("memory"))?;
        let (path, owned) = match within.filter(|_| v2) {
            Some(dir) => {
                // The controller must be enabled in every ancestor's subtree_control, from
                // the hierarchy's root down (each holds no process: session cgroups are
                // leaves, and the root is exempt).
                let root = parent.parent().unwrap_or(Path::new(V2));
                let mut chain: Vec<&Path> = dir
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a.starts_with(root))
                    .collect();
                chain.reverse();
                for a in chain {
                    let _ = std::fs::write(a.join("cgroup.subtree_control"), "+memory");
                }
                (dir.to_path_buf(), false)
            }
            None => {
                if v2 {
                    std::fs::create_dir_all(&parent).map_err(CgroupError::at(parent.clone()))?;
                    if let Some(root) = parent.parent() {
                        let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
                    }
                    let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+memory");
                }
                sweep_stale(&parent);
                let path = parent.join(format!("warden-{session}"));
                std::fs::create_dir(&path).map_err(CgroupError::at(path.clone()))?;
                (path, true)
            }
        };
        let cg = MemoryCgroup {
            path,
            v2,
            max,
            owned,
        };
        let (limit, swap) = if v2 {
            ("memory.max", "memory.swap.max")
        } else {
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        let limit = cg.path.join(limit);
        std::fs::write(&limit, max.to_string()).map_err(CgroupError::at(limit))?;
        // No swapping around the limit where the kernel accounts swap (best effort: v1
        // without swap accounting has no such file).
        let _ = std::fs::write(
            cg.path.join(swap),
            if v2 { "0".to_string() } else { max.to_string() },
        );
        Ok(cg)
    }

    /// The file the agent process writes "0" to, to join; `None` when the limit stands on a
    /// cgroup the tree joins anyway.
    pub fn join_file(&self) -> Option<PathBuf> {
        self.owned.then(|| join_file(&self.path, self.v2))
    }

    /// Processes the kernel OOM-killed in this cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        crate::limits::oom_kills(&self.path, self.v2)
    }
}

/// Removes empty session memory cgroups left by supervisors that were killed (their drop
/// never ran). Session ids end in the supervisor's pid (hex); only those of dead pids are
/// touched, and `rmdir` of a cgroup that still has processes fails harmlessly.
fn sweep_stale(parent: &Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("warden-") else {
            continue;
        };
        if supervisor_dead(id) {
            let _ = std::fs::remove_dir(e.path());
        }
    }
}

/// Whether the supervisor of session `id` (`<ms>-<pid>`, both hex: `new_session_id`) is
/// gone: its pid names no process. A pid taken again since keeps the session's cgroups
/// until that process ends too (they are empty; nothing is lost).
fn supervisor_dead(id: &str) -> bool {
    let Some(pid) = id
        .rsplit_once('-')
        .and_then(|(_, h)| i32::from_str_radix(h, 16).ok())
    else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    pid > 0
        && unsafe { libc::kill(pid, 0) } != 0
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        if self.owned {
            rmdir_killing(&self.path);
        }
    }
}

/// A session's cgroup v2 directory `outer`, laid out for spawning straight into it:
/// `outer/init` holds warden's own processes in the sandbox (stage 1 and the namespace's
/// init, placed there by `clone3(CLONE_INTO_CGROUP)`), `outer/agent` the agent's tree (which
/// init spawns into it the same way). Both need no migration, so no RCU grace period
/// (see [`crate::sys::fork_into_cgroup`]); the kernel checks the spawner's write permission
/// on the destination and on the common ancestor, here `outer`. Limits, the stop switch and
/// the exec guard's process list are `outer/agent`'s: init is not the agent's to freeze,
/// kill or count.
#[derive(Debug, Clone)]
pub struct Nest {
    pub outer: PathBuf,
}

impl Nest {
    /// Makes `outer`, `outer/init` and `outer/agent`.
    pub fn create(outer: PathBuf) -> std::io::Result<Nest> {
        std::fs::create_dir(&outer)?;
        let nest = Nest { outer };
        for d in [nest.init(), nest.agent()] {
            if let Err(e) = std::fs::create_dir(&d) {
                nest.remove();
                return Err(e);
            }
        }
        Ok(nest)
    }

    pub fn init(&self) -> PathBuf {
        self.outer.join("init")
    }

    pub fn agent(&self) -> PathBuf {
        self.outer.join("agent")
    }

    /// Removes the three (each `rmdir`: a cgroup with processes stays). True when gone.
    ///
    /// At a session's end `init` usually still holds stage 1 and init, which finish the
    /// namespaces' teardown (an RCU grace period or more, ~20 ms here) after the agent's
    /// tree is gone; nothing waits for them. What stays is removed by a later session
    /// ([`sweep_nests`]).
    pub fn remove(&self) -> bool {
        let _ = std::fs::remove_dir(self.agent());
        let _ = std::fs::remove_dir(self.init());
        std::fs::remove_dir(&self.outer).is_ok() || !self.outer.exists()
    }

    /// [`Nest::remove`], and when `init` still holds stage 1 and init (their namespaces'
    /// teardown outlives the agent's tree by ~20 ms), a detached child that removes the
    /// directories once they are gone (polling every 5 ms, for up to 2 s), so the session
    /// ends without waiting for them and leaves nothing behind. Where that child cannot
    /// start, a later session's [`sweep_nests`] removes them.
    pub fn remove_soon(&self) {
        if self.remove() {
            return;
        }
        let bytes = self.outer.as_os_str().as_encoded_bytes();
        let mut args = crate::sys::LightArgs::new([0; 4]);
        let Some(dst) = args.path.get_mut(..bytes.len()) else {
            return;
        };
        dst.copy_from_slice(bytes);
        let _ = crate::sys::light_child(clean_nest, args);
    }

    /// The `cgroup.procs` files the spawner (init, after the agent's identity took over)
    /// must be able to write: the destination's and the common ancestor's.
    pub fn spawn_checked(&self) -> [PathBuf; 2] {
        [
            self.outer.join("cgroup.procs"),
            self.agent().join("cgroup.procs"),
        ]
    }
}

/// [`Nest::remove_soon`]'s child: closes every descriptor (a pipe of the caller's would not
/// see EOF while it lives), then removes `agent` and `init` under the path it got as soon as
/// `init` is empty, then the path itself.
extern "C" fn clean_nest(p: *mut libc::c_void) -> libc::c_int {
    use crate::sys::raw3;
    // SAFETY: `p` is the `LightArgs` that `light_child` placed in this child's mapping, its
    // path NUL-terminated (the buffer is longer than any path copied into it); only raw
    // system calls follow, on this child's own stack and descriptors.
    unsafe {
        let a = &*(p as *const crate::sys::LightArgs);
        raw3(libc::SYS_close_range, 0, u32::MAX as usize, 0);
        let dfd = raw3(
            libc::SYS_openat,
            libc::AT_FDCWD as usize,
            a.path.as_ptr() as usize,
            (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as usize,
        );
        if dfd < 0 {
            return 0;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 5_000_000,
        };
        for _ in 0..400 {
            let at = libc::AT_REMOVEDIR as usize;
            raw3(
                libc::SYS_unlinkat,
                dfd as usize,
                c"agent".as_ptr() as usize,
                at,
            );
            let r = raw3(
                libc::SYS_unlinkat,
                dfd as usize,
                c"init".as_ptr() as usize,
                at,
            );
            if r == 0 || r == -(libc::ENOENT as isize) {
                break;
            }
            raw3(
                libc::SYS_nanosleep,
                &pause as *const libc::timespec as usize,
                0,
                0,
            );
        }
        raw3(libc::SYS_close, dfd as usize, 0, 0);
        raw3(
            libc::SYS_unlinkat,
            libc::AT_FDCWD as usize,
            a.path.as_ptr() as usize,
            libc::AT_REMOVEDIR as usize,
        );
    }
    0
}

/// Removes the nests under `parent` left by earlier sessions: those whose supervisor is
/// gone ([`supervisor_dead`]) and older than a minute. A live session's nest stays whatever
/// its age: `rmdir` refuses a cgroup with processes, but the agent's is empty until init
/// spawns the agent, and a start that took over a minute under load (attack review 128)
/// lost it to another session's sweep ("cannot give …/agent/cgroup.procs back: No such file
/// or directory").
pub fn sweep_nests(parent: &Path) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    for e in rd.flatten() {
        if !supervisor_dead(&e.file_name().to_string_lossy()) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if old && e.file_type().is_ok_and(|t| t.is_dir()) {
            Nest { outer: e.path() }.remove();
        }
    }
}

/// The file a single-threaded process writes "0" to, to move itself into the cgroup `dir`:
/// v2 `cgroup.procs`; v1 `tasks`. Moving the calling thread alone (v1 `tasks`, "0") skips
/// the kernel's global `cgroup_threadgroup_rwsem`, whose writer first waits for an RCU grace
/// period: 0.04 ms against 9–38 ms through `cgroup.procs` on this kind of machine. For a
/// process with one thread (the agent before its exec) moving the thread is moving the
/// process. cgroup v2 refuses a thread move between domain cgroups.
pub fn join_file(dir: &Path, v2: bool) -> PathBuf {
    dir.join(if v2 { "cgroup.procs" } else { "tasks" })
}

/// Starts a cgroup migration early, off the critical path.
///
/// The first write to any `cgroup.procs` after a quiet period takes the kernel's global
/// `cgroup_threadgroup_rwsem` for writing, which waits for an RCU grace period (7–20 ms on
/// a loaded 2-core machine); writes that follow within a grace period cost ~0.2 ms. The
/// agent process joins up to three cgroups just before its exec (the v2 leaf, a v1 memory
/// cgroup, a pids cgroup), so a short-lived child moves itself into the v2 cgroup it
/// already sits in (a migration to where it is: no effect) as soon as the session's cgroups
/// exist, and the grace period runs while the sandbox is built. A process, not a thread
/// (the supervisor must stay single-threaded until it forks the sandbox), but one that
/// shares our memory ([`crate::sys::light_child`]): no copy, no copy-on-write faults while
/// the sandbox is set up. Returns the child's
/// pid (reap it with [`reap_prewarm`]); nothing happens where that file is not writable.
pub fn prewarm() -> Option<i32> {
    let own = warden_sys::procfs::cgroup(warden_sys::procfs::Proc::Me).ok()?;
    let rel = warden_sys::procfs::cgroup_v2_path(&own)?
        .trim_start_matches('/')
        .to_string();
    let procs = [V2_HYBRID, V2]
        .iter()
        .map(|r| Path::new(r).join(&rel).join("cgroup.procs"))
        .filter(|p| warden_sys::writable(p))
        .find_map(|p| std::ffi::CString::new(p.into_os_string().into_encoded_bytes()).ok())?;
    let bytes = procs.as_bytes_with_nul();
    let mut args = crate::sys::LightArgs::new([0; 4]);
    args.path.get_mut(..bytes.len())?.copy_from_slice(bytes);
    let pid = crate::sys::light_child(join_own_cgroup, args)?;
    (pid > 0).then_some(pid)
}

/// [`prewarm`]'s child: writes "0" (itself) to the `cgroup.procs` file named by its path.
extern "C" fn join_own_cgroup(p: *mut libc::c_void) -> libc::c_int {
    use crate::sys::raw3;
    // SAFETY: `p` is the `LightArgs` that `light_child` placed in this child's mapping, its
    // path NUL-terminated; only raw system calls follow.
    unsafe {
        let a = &*(p as *const crate::sys::LightArgs);
        let fd = raw3(
            libc::SYS_openat,
            libc::AT_FDCWD as usize,
            a.path.as_ptr() as usize,
            (libc::O_WRONLY | libc::O_CLOEXEC) as usize,
        );
        if fd >= 0 {
            raw3(libc::SYS_write, fd as usize, b"0".as_ptr() as usize, 1);
        }
    }
    0
}

/// Reaps the child of [`prewarm`] (long done by the end of a session).
pub fn reap_prewarm(pid: Option<i32>) {
    if let Some(pid) = pid {
        // SAFETY: waiting for our own child; ECHILD if someone reaped it already.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::supervisor_dead;

    #[test]
    fn only_a_gone_supervisor_s_cgroups_are_swept() {
        let me = format!("1a2b3c-{:x}", std::process::id());
        assert!(!supervisor_dead(&me), "a live supervisor's session");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = format!("1a2b3c-{:x}", child.id());
        child.wait().unwrap();
        assert!(supervisor_dead(&gone), "a reaped supervisor's session");
        for bad in ["", "nodash", "1a2b-zz", "1a2b-0"] {
            assert!(!supervisor_dead(bad), "{bad:?}");
        }
    }
}
