//! What this machine can deliver: probed, never assumed. Used by `warden run` to refuse
//! (or, with `--best-effort`, to list missing guarantees) and by `warden doctor`.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub kernel: String,
    /// Landlock ABI version (0: unavailable).
    pub landlock_abi: i32,
    /// seccomp filters can be installed.
    pub seccomp: bool,
    /// seccomp user notification (SECCOMP_RET_USER_NOTIF) is available.
    pub seccomp_user_notif: bool,
    /// A user namespace (with mount, pid, net, ipc, uts namespaces) can be created.
    pub user_namespaces: bool,
    pub userns_error: Option<String>,
    /// Where a pids limit can be set: `cgroup2:<path>`, `cgroup1:<path>`, or None.
    pub cgroup_pids: Option<String>,
    /// Where the session memory limit goes: `cgroup2:<dir>`, `cgroup1:<dir>`, or None.
    pub cgroup_memory: Option<String>,
    /// fanotify permission events can be initialised (needs CAP_SYS_ADMIN).
    pub fanotify: bool,
    /// This process already runs under a seccomp filter / no_new_privs (nested in a sandbox).
    pub nested: bool,
    pub uid: u32,
}

pub fn kernel_release() -> String {
    // SAFETY: uname fills a plain struct.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) == 0 {
            return std::ffi::CStr::from_ptr(u.release.as_ptr())
                .to_string_lossy()
                .into_owned();
        }
    }
    "unknown".into()
}

fn seccomp_action_avail(action: u32) -> bool {
    // SECCOMP_GET_ACTION_AVAIL = 2
    let a = action;
    // SAFETY: the kernel reads one u32.
    unsafe { libc::syscall(libc::SYS_seccomp, 2u32, 0u32, &a as *const u32) == 0 }
}

/// Forks a child that tries to create the namespaces the sandbox uses.
fn probe_userns() -> Result<(), crate::error::SysError> {
    // SAFETY: fork in a probe; the child only makes syscalls and _exits.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(crate::error::SysError::last("fork"));
        }
        if pid == 0 {
            let flags = libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS;
            let r = libc::unshare(flags);
            let code = if r == 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(code.min(255));
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 {
            Ok(())
        } else {
            let errno = libc::WEXITSTATUS(st);
            Err(crate::error::SysError::io(
                "unshare(CLONE_NEWUSER|NEWNS|NEWPID|NEWNET)",
                std::io::Error::from_raw_os_error(errno),
            ))
        }
    }
}

fn probe_fanotify() -> bool {
    // FAN_CLASS_CONTENT = 0x4
    // SAFETY: plain syscall; fd closed.
    unsafe {
        let fd = libc::fanotify_init(0x4 | libc::FAN_CLOEXEC, libc::O_RDONLY as u32);
        if fd >= 0 {
            libc::close(fd);
            true
        } else {
            false
        }
    }
}

/// Full probe (forks a child to try the namespaces; initialises fanotify). For `doctor`
/// and `--best-effort`.
pub fn probe() -> Features {
    probe_with(true)
}

/// Cheap probe for the `warden run` fast path: namespaces are assumed and verified by the
/// launch itself (which refuses with the exact error if they fail); fanotify is not probed.
/// Inside another sandbox (seccomp or `no_new_privs` already set: a nested warden) the
/// namespaces are probed all the same: there they usually fail, and the run must know it
/// before it plans a view it cannot build (it said "cannot list /" instead).
pub fn probe_fast() -> Features {
    probe_with(false)
}

fn probe_with(full: bool) -> Features {
    let status = warden_sys::procfs::Status::read(warden_sys::procfs::Proc::Me).ok();
    let field = |name| status.as_ref().and_then(|s| s.field(name));
    let nested = field("Seccomp").is_some_and(|v| v != "0") || field("NoNewPrivs") == Some("1");
    let userns = if full || nested {
        probe_userns()
    } else {
        Ok(())
    };
    Features {
        kernel: kernel_release(),
        landlock_abi: crate::lock::abi_version(),
        seccomp: seccomp_action_avail(0x7fff_0000), // SECCOMP_RET_ALLOW
        seccomp_user_notif: seccomp_action_avail(0x7fc0_0000),
        user_namespaces: userns.is_ok(),
        userns_error: userns.err().map(|e| e.to_string()),
        cgroup_pids: crate::cgroup::pids_root().map(|(k, p)| format!("{k}:{}", p.display())),
        cgroup_memory: crate::cgroup::memory_root()
            .map(|(v2, p)| format!("{}:{}", if v2 { "cgroup2" } else { "cgroup1" }, p.display())),
        fanotify: full && probe_fanotify(),
        nested,
        // SAFETY: trivial.
        uid: unsafe { libc::getuid() },
    }
}
