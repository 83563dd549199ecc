//! The session cgroup: a pids limit against fork bombs. cgroup v2 when its `pids`
//! controller is available, else the v1 `pids` hierarchy (hybrid layouts), else the caller
//! falls back to RLIMIT_NPROC. The cgroup is created per session and removed afterwards.

use std::path::{Path, PathBuf};

const V2: &str = "/sys/fs/cgroup";
const V2_HYBRID: &str = "/sys/fs/cgroup/unified";
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

fn writable_dir(p: &Path) -> bool {
    let c = match std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
        Ok(c) => c,
        Err(_) => return false,
    };
    // SAFETY: access(2) on a C string.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The parent under which session cgroups are made: (kind, path).
pub fn pids_root() -> Option<(&'static str, PathBuf)> {
    for base in [V2, V2_HYBRID] {
        let ctl = Path::new(base).join("cgroup.controllers");
        if let Ok(c) = std::fs::read_to_string(&ctl) {
            if c.split_whitespace().any(|x| x == "pids") && writable_dir(Path::new(base)) {
                return Some(("cgroup2", PathBuf::from(base)));
            }
        }
    }
    let v1 = Path::new(V1_PIDS);
    if v1.join("pids.max").exists() || v1.join("cgroup.procs").exists() {
        if writable_dir(v1) {
            return Some(("cgroup1", v1.to_path_buf()));
        }
    }
    None
}

/// A session cgroup; removed on drop (after its processes are gone).
pub struct SessionCgroup {
    pub path: PathBuf,
}

impl SessionCgroup {
    pub fn create(session: &str, pids_max: u32) -> Result<SessionCgroup, String> {
        let (kind, root) = pids_root().ok_or("no writable cgroup with the pids controller")?;
        let parent = root.join("warden-pids");
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        if kind == "cgroup2" {
            // Enable pids for children (ignore if already on).
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+pids");
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), "+pids");
        }
        let path = parent.join(session);
        std::fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cg = SessionCgroup { path };
        std::fs::write(cg.path.join("pids.max"), pids_max.to_string())
            .map_err(|e| format!("{}/pids.max: {e}", cg.path.display()))?;
        Ok(cg)
    }

    pub fn add(&self, pid: i32) -> Result<(), String> {
        std::fs::write(self.path.join("cgroup.procs"), pid.to_string())
            .map_err(|e| format!("{}/cgroup.procs: {e}", self.path.display()))
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
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
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
}
