//! Starting the sandboxed process tree and supervising it.
//!
//! ```text
//! warden run (supervisor, outside)
//!   └─ stage1   PR_SET_PDEATHSIG(KILL); joins the user and network namespaces made early
//!        │      beside the plan ([`crate::idmap::Early`]: run by root, the user namespace
//!        │      maps the agent to an unprivileged host uid — see [`crate::idmap`]; otherwise
//!        │      the user's own ids); unshare(NS|PID|IPC|UTS). (Where they could not be
//!        │      made early: unshare(USER|NS|PID|NET|IPC|UTS) and maps its own uid/gid.)
//!        └─ init  (pid 1 of the new pid namespace) PDEATHSIG(KILL); builds the mount view;
//!             │   brings up loopback; runs init tasks (the proxy bridge); reaps; exits with
//!             │   the agent's status — which kills everything left in the namespace
//!             └─ agent  setsid (+ pty as controlling tty); rlimits; drops every capability;
//!                       no_new_privs; Landlock; seccomp; agent hooks (exec guard); execve
//! ```
//!
//! If the supervisor dies, stage1 and init die with it (PDEATHSIG) and the kernel kills the
//! whole pid namespace: the agent never continues unsupervised.
//!
//! Only the supervisor's single thread exists when it forks; children therefore may
//! allocate. Setup errors in any child are written to a close-on-exec pipe; the supervisor
//! reports them and exits with "unsupported" — the agent is never started half-sandboxed.

use crate::lock::LandlockPlan;
use crate::plan::Plan;
use crate::sys;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Runs inside the agent process right before execve, after every sandbox restriction.
/// A returned fd (e.g. a seccomp user-notification listener) is handed to the supervisor.
pub trait AgentHook: Send + Sync {
    fn before_exec(&self) -> std::io::Result<Option<OwnedFd>>;
    /// Runs in the supervisor before the sandbox's processes are forked (e.g. to finish
    /// compiling a seccomp program, so the agent only loads it). Any thread it used must be
    /// joined by then.
    fn prepare(&self) {}
}

/// Work for the sandbox's init process (in its namespaces, outside Landlock and seccomp),
/// e.g. the bridge from the sandbox's loopback to the proxy: the outer closure runs before
/// the agent is forked (bind listeners there, so the agent never races them); the closure
/// it returns runs on a thread of init afterwards.
pub type InitTask = Box<dyn FnOnce() -> Result<Box<dyn FnOnce() + Send>, String> + Send>;

pub struct Launch {
    pub plan: Plan,
    pub landlock: LandlockPlan,
    /// The Landlock rules of the read roots above hidden paths, built on a thread
    /// ([`crate::lock::prepare`]); joined before the fork.
    pub landlock_split: Option<crate::lock::Prepared>,
    pub hooks: Vec<Arc<dyn AgentHook>>,
    pub init_tasks: Vec<InitTask>,
    /// Use namespaces (false only in nested/best-effort mode).
    pub namespaces: bool,
    /// Set RLIMIT_NPROC (when no cgroup limit could be made).
    pub rlimit_nproc: Option<u64>,
    pub pty: bool,
    /// The file the agent process writes "0" to, to join the session cgroup before its exec
    /// (`cgroup.procs`, or v1 `tasks`: see [`crate::cgroup::join_file`]); stage 1 and init
    /// stay outside (see `join_cgroups`).
    pub cgroup_procs: Option<PathBuf>,
    /// Per-pid-namespace `pid_max` (Linux 6.14+): caps the tasks of the sandbox at no cost.
    pub pid_max: Option<u32>,
    /// An fd the agent inherits as [`INHERITED_FD`] (the write end of the hook-event pipe).
    pub inherit_fd: Option<OwnedFd>,
    /// More fds the agent inherits, each under the given number (above [`INHERITED_FD`]; e.g.
    /// the advisor's socket at 101). The supervisor's copies are closed when `launch` returns.
    pub inherit_fds: Vec<(i32, OwnedFd)>,
    /// The same for the session's memory cgroup, when it is another one.
    pub memory_cgroup_procs: Option<PathBuf>,
    /// The session's cgroup v2 directory laid out for spawning into (see
    /// [`crate::cgroup::Nest`]): stage 1 starts in its `init`, the agent in its `agent`
    /// (which must then be `cgroup_procs`'s directory), with no migration; where the kernel
    /// refuses, a fork and the agent's own join, as without it.
    pub nest: Option<crate::cgroup::Nest>,
    /// Make the hook-report socket ([`warden_policy::session::HOOK_SOCK`]) inside; its
    /// listening fd comes back as [`Session::hook_listener`]. Namespaces only.
    pub hook_socket: bool,
    /// When root's unprivileged agent identity cannot be set up (a file system without
    /// idmapped mounts): run with the agent as host uid 0 after a warning instead of refusing.
    pub best_effort: bool,
    /// The sandbox's seccomp filter, compiling since [`crate::filter::prepare`]; `None`:
    /// `launch` compiles it (in the supervisor, before forking).
    pub seccomp: Option<crate::filter::Prepared>,
    /// The agent's user and network namespaces, in the making since the session started
    /// (see [`crate::idmap::Early`]; root and ordinary users alike); `None`: made when needed.
    pub early_ns: Option<crate::idmap::Early>,
}

/// Whether SIGPIPE was ignored when warden started (set by `main`, before warden ignores it
/// for itself): the agent is started with the disposition warden inherited.
pub static SIGPIPE_WAS_IGNORED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// How long the agent's release waits for a pass of init's workspace guard over what the
/// host changed before it ([`crate::latch`]; a pass is one walk of the workspace at most).
pub const RELEASE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The fd number under which the agent receives [`Launch::inherit_fd`].
pub const INHERITED_FD: i32 = 100;

pub struct Session {
    pub stage1_pid: i32,
    /// The agent's pid in the supervisor's pid namespace (0 until [`Session::wait_agent`]).
    pub agent_pid: i32,
    /// Fds returned by the agent hooks, in hook order.
    pub agent_fds: Vec<OwnedFd>,
    /// The listening hook-report socket made inside (see [`Launch::hook_socket`]).
    pub hook_listener: Option<OwnedFd>,
    /// With [`Launch::hook_socket`]: the supervisor's own copy of [`Launch::inherit_fd`]
    /// (the hook pipe's write end) for the socket's forwarder. Every process of the sandbox
    /// closes its inherited copy (init and stage 1 explicitly, the agent at exec), so the
    /// pipe's EOF depends on the agent's tree and this copy only.
    pub hook_pipe: Option<OwnedFd>,
    /// The agent process hands over a hook listener (last of its fds).
    hook_socket: bool,
    err_read: OwnedFd,
    /// With namespaces (an init, its reports and pidfd; else stage 1 is the agent).
    namespaces: bool,
    /// Init's pidfd, sent by the agent process (see [`Session::wait_sandbox_gone`]).
    init_pidfd: Option<OwnedFd>,
    /// Stage 1's pidfd, opened while it was certainly our unreaped child (right after the
    /// fork): what ends the whole sandbox, whatever became of its pid.
    stage1_pidfd: OwnedFd,
    /// The agent process's pidfd, opened while it waits for its release (see
    /// [`Session::agent_pidfd`]).
    agent_pidfd: Option<OwnedFd>,
    /// Init's report of the agent's exit status, written once the namespace is empty and
    /// before init exits (see [`Session::wait_reported`]), after the placeholders its
    /// workspace guard made.
    exit_read: OwnedFd,
    /// The workspace guard's placeholders, as init reported them ([`Session::wait_reported`]).
    guard_placeholders: std::sync::Mutex<Vec<(PathBuf, bool, bool)>>,
    /// Init's early report was read ([`Session::wait_view`]).
    view_read: bool,
    fd_sock: OwnedFd,
    released: std::sync::atomic::AtomicBool,
    /// Shared with init's workspace guard ([`crate::latch`]); set before the go.
    latch: Option<crate::latch::Latch>,
    pub pty_master: Option<OwnedFd>,
    /// Which of fds 0-2 the agent took from the supervisor as they were (no pty, no output
    /// relay): what [`Session::release_with`] replaces.
    direct: [bool; 3],
    /// Without a pty: relays of the agent's stdout/stderr to the user's terminal through the
    /// escape-sequence filter (only for those that are terminals). See [`Session::join_output`].
    output_relays: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Cgroup files handed to the agent's identity for init's spawn into the nest, with their
    /// owner before; given back in [`Session::wait_agent`].
    lent: Vec<(PathBuf, u32, u32, u32)>,
}

pub fn resolve_command(
    cmd: &str,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<PathBuf, String> {
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let c = dir.join(cmd);
        if let Ok(md) = std::fs::metadata(&c) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(c);
            }
        }
    }
    Err(format!("{cmd}: command not found in PATH"))
}

struct ChildCtx {
    plan: Plan,
    /// The sandbox's seccomp program, or why it could not be built (the agent fails then).
    seccomp: Result<crate::bpf::Program, String>,
    landlock: LandlockPlan,
    landlock_split: Option<Result<crate::lock::Split, crate::lock::LandlockError>>,
    hooks: Vec<Arc<dyn AgentHook>>,
    init_tasks: Vec<InitTask>,
    namespaces: bool,
    rlimit_nproc: Option<u64>,
    /// `cgroup.procs` of the session's cgroups (leaf, memory, pids), opened for writing by
    /// the supervisor: the agent process joins them (see [`join_cgroups`]).
    cgroup_fds: Vec<(RawFd, PathBuf)>,
    /// The nest's `agent` directory (`O_PATH`), for init to spawn the agent into.
    agent_cgroup: Option<(RawFd, PathBuf)>,
    /// Set in the agent process when it was spawned into that directory: its join is done.
    spawned_into: Option<PathBuf>,
    pid_max: Option<u32>,
    inherit_fd: Option<RawFd>,
    inherit_fds: Vec<(i32, RawFd)>,
    /// The prepared user namespace to join.
    userns: Option<RawFd>,
    /// The prepared network namespace to join, owned by `userns`.
    netns: Option<RawFd>,
    /// Joining `userns`, become its uid 0 (root's prepared agent identity); otherwise keep
    /// the user's own ids, which it maps to themselves.
    become_root: bool,
    /// Detached mounts prepared by the supervisor, attached by init (root only).
    prebound: Vec<(PathBuf, RawFd)>,
    /// Idmapped package caches prepared by the supervisor: overlay lower layers (root only).
    precache: Vec<(PathBuf, RawFd)>,
    exe: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    err_w: RawFd,
    fd_w: RawFd,
    /// Init writes the agent's exit status here (4 bytes, native endian) once every process
    /// of the namespace is gone.
    exit_w: RawFd,
    /// See [`crate::latch`]: handed to init's workspace guard.
    latch: Option<crate::latch::Latch>,
    hook_socket: bool,
    /// Init's listening hook-report socket, handed to the supervisor by the agent process.
    hook_listener: Option<RawFd>,
    pty_slave: Option<RawFd>,
    /// Without a pty: write ends of filtered pipes to use as the agent's fd 1 and 2.
    out_pipes: [Option<RawFd>; 2],
    /// `/dev/null`, opened by the supervisor: stage 1 and init put it on their standard fds
    /// once the agent has its own copies (see [`release_stdio`]).
    devnull: RawFd,
    uid: u32,
    gid: u32,
    last_cap: u32,
    supervisor: i32,
    /// The signals stage 1 ignores which were not ignored before (bit `1 << n`): init gives
    /// them their default back before it forks the agent (see [`GROUP_SIGNALS`]).
    ignored_by_stage1: u64,
    /// The mask to give the sandbox's processes back (see [`START_MASK`]).
    start_mask: Option<libc::sigset_t>,
    /// A pidfd stage 1 took of itself before forking init (-1 before that): init's
    /// PDEATHSIG only stands from its `prctl` on, so init checks through this that stage 1
    /// did not die first (a signal that abandons the start kills stage 1 at any moment).
    stage1_self: RawFd,
}

fn fail_child(err_w: RawFd, stage: &str, msg: &str) -> ! {
    sys::write_all(err_w, format!("{stage}: {msg}").as_bytes());
    // SAFETY: terminating a forked child.
    unsafe { libc::_exit(127) }
}

fn open_pty() -> Result<(OwnedFd, OwnedFd), String> {
    // SAFETY: standard pty allocation sequence.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(format!("posix_openpt: {}", sys::errno_str()));
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            return Err(format!("unlockpt: {}", sys::errno_str()));
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            return Err(format!("ptsname: {}", sys::errno_str()));
        }
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(format!("open pty slave: {}", sys::errno_str()));
        }
        // Copy the user's window size.
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(m, libc::TIOCSWINSZ, &ws);
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

/// Why [`launch`] did not produce a running sandbox.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command is not found, or hidden in the sandbox's view.
    #[error("exec: {0}")]
    NotFound(String),
    /// A stage of the sandbox's set-up failed in the child (`namespaces`, `mounts`,
    /// `landlock`, ...), as it reported on its error pipe.
    #[error("{stage}: {reason}")]
    Stage { stage: String, reason: String },
    /// Anything else (pipes, the pty, the agent's identity, the fork).
    #[error("{0}")]
    Setup(String),
}

impl LaunchError {
    /// The child's `stage: reason` report (a trailing NUL and errno, as the exec stage
    /// writes them, are dropped).
    fn from_child(msg: String) -> LaunchError {
        let msg = msg.split('\0').next().unwrap_or_default().to_string();
        match msg.split_once(": ") {
            Some((stage, reason)) if !stage.is_empty() && !stage.contains(char::is_whitespace) => {
                LaunchError::Stage {
                    stage: stage.to_string(),
                    reason: reason.to_string(),
                }
            }
            _ => LaunchError::Setup(msg),
        }
    }

    /// The set-up stage that failed in the child, if that is what happened.
    pub fn stage(&self) -> Option<&str> {
        match self {
            LaunchError::Stage { stage, .. } => Some(stage),
            _ => None,
        }
    }
}

impl From<String> for LaunchError {
    fn from(e: String) -> LaunchError {
        LaunchError::Setup(e)
    }
}

impl From<crate::error::SysError> for LaunchError {
    fn from(e: crate::error::SysError) -> LaunchError {
        LaunchError::Setup(e.into())
    }
}

/// Forks the sandbox (stage 1, which builds the rest) and returns at once: the supervisor
/// may start its threads while the sandbox is built, then calls [`Session::wait_agent`].
pub fn launch(mut l: Launch) -> Result<Session, LaunchError> {
    warden_event::timing::mark("launch");
    let deny_udp = !l.plan.net_isolated;
    let seccomp = l
        .seccomp
        .take()
        .unwrap_or_else(|| crate::filter::prepare(deny_udp));
    // With namespaces the command must be visible in the view (see `Plan::resolve_command`);
    // without them, Landlock alone decides at exec.
    let path = if l.namespaces {
        l.plan
            .resolve_command()
            .map_err(|e| LaunchError::NotFound(e.to_string()))?
    } else {
        resolve_command(&l.plan.command[0], &l.plan.env)?
    };
    let exe = sys::cstr(&path)?;
    let argv: Vec<CString> = l
        .plan
        .command
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| format!("argument {a:?} contains NUL")))
        .collect::<Result<_, _>>()?;
    let envp: Vec<CString> = l
        .plan
        .env
        .iter()
        .filter_map(|(k, v)| {
            let mut b = k.as_encoded_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_encoded_bytes());
            CString::new(b).ok()
        })
        .collect();
    // Opened here, written by the agent process (see `join_cgroups`): the open uses our
    // credentials and cgroup namespace, as the kernel checks a migration against the opener.
    let cgroup_files: Vec<(OwnedFd, PathBuf)> = l
        .cgroup_procs
        .iter()
        .chain(l.memory_cgroup_procs.iter())
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .map(|f| (OwnedFd::from(f), p.clone()))
                .map_err(|e| format!("cgroup: {}: {e}", p.display()))
        })
        .collect::<Result<_, _>>()?;
    let (err_r, err_w) = sys::pipe_cloexec()?;
    let (exit_r, exit_w) = sys::pipe_cloexec()?;
    // Init's guard learns from it whether the agent was released (without namespaces there
    // is no init, and no guard).
    let latch = if l.namespaces {
        Some(crate::latch::Latch::new().map_err(|e| format!("release latch: {e}"))?)
    } else {
        None
    };
    let hook_socket_wanted = l.hook_socket && l.namespaces;
    let (fd_r, fd_w) = sys::socketpair_seqpacket()?;
    sys::set_passcred(&fd_r)?;
    let (pty_master, pty_slave) = if l.pty {
        let (m, s) = open_pty()?;
        (Some(m), Some(s))
    } else {
        (None, None)
    };
    // No pty but the user's stdout/stderr is a terminal: the agent writes into a pipe whose
    // other end is copied to that terminal through the escape-sequence filter.
    let mut out_pipes: [Option<(OwnedFd, OwnedFd)>; 2] = [None, None];
    if !l.pty {
        for (i, fd) in [1, 2].into_iter().enumerate() {
            if warden_event::tty::is_terminal(fd) {
                out_pipes[i] = Some(sys::pipe_cloexec()?);
            }
        }
    }
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63);
    // SAFETY: trivial getters.
    let (uid, gid, me) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
    warden_event::timing::mark("launch: before identity");
    let prepared = prepare_identity(
        &l.plan,
        l.namespaces,
        l.best_effort,
        uid,
        gid,
        &mut l.early_ns,
    )?;
    // Not root: the early namespaces map the user's own ids (where they cannot be
    // finished, stage 1 makes both itself, as it always did).
    let own_ns = match l.early_ns.take() {
        Some(e) if l.namespaces && prepared.is_none() && uid != 0 => e
            .finish_own(uid, gid)
            .map_err(|e| tracing::debug!("early namespaces: {e}"))
            .ok(),
        _ => None,
    };
    warden_event::timing::mark("launch: identity prepared");
    if let Some(p) = &prepared {
        // Root: let the agent's host uid re-open its own stdio (`> /dev/stdout`).
        let created: Vec<_> = (pty_slave.iter().map(|s| s.as_fd()))
            .chain(out_pipes.iter().flatten().map(|(_, w)| w.as_fd()))
            .collect();
        for (fd, e) in crate::stdio::hand_to_agent(p.ids.uid, p.ids.gid, &created) {
            tracing::debug!("stdio: fd {fd} stays unopenable by the agent: {e}");
        }
    }
    // The nest's directories, and (run by root) init's right to spawn into `agent`: init holds
    // the agent's host identity, and the kernel checks it on the destination's and the common
    // ancestor's `cgroup.procs` (cgroupfs is not in the sandbox's view: the agent, which
    // holds no capability, cannot reach them; nor init's fds, see `cap_ptrace_access_check`).
    // They are taken back before the agent runs anything of its own (`Session::wait_agent`):
    // owned by the agent's uid, they could be `chmod`ed from inside (Landlock governs opens,
    // not `chmod`), and any host process could then move the agent's out of its cgroup
    // (attack review 65).
    let mut lent: Vec<(PathBuf, u32, u32, u32)> = Vec::new();
    let nest_fds = l.nest.as_ref().and_then(|n| {
        if let Some(p) = &prepared {
            for f in n.spawn_checked() {
                use std::os::unix::fs::MetadataExt;
                let Ok(md) = std::fs::metadata(&f) else {
                    continue;
                };
                match std::os::unix::fs::chown(&f, Some(p.ids.uid), Some(p.ids.gid)) {
                    Ok(()) => lent.push((f, md.uid(), md.gid(), md.mode() & 0o7777)),
                    Err(e) => tracing::debug!("cgroup nest: chown {}: {e}", f.display()),
                }
            }
        }
        let init = sys::open_path(&n.init()).ok()?;
        let agent = sys::open_path(&n.agent()).ok()?;
        Some((init, agent, n.agent()))
    });
    // Every build thread is joined here: the forks below need a single-threaded supervisor.
    let seccomp = seccomp.wait(deny_udp);
    let landlock_split = l.landlock_split.take().map(crate::lock::Prepared::wait);
    for h in &l.hooks {
        h.prepare();
    }
    warden_event::timing::mark("launch: filters compiled");
    let ctx = ChildCtx {
        plan: l.plan,
        seccomp,
        landlock: l.landlock,
        landlock_split,
        hooks: l.hooks,
        init_tasks: l.init_tasks,
        namespaces: l.namespaces,
        rlimit_nproc: l.rlimit_nproc,
        cgroup_fds: cgroup_files
            .iter()
            .map(|(f, p)| (f.as_raw_fd(), p.clone()))
            .collect(),
        agent_cgroup: nest_fds
            .as_ref()
            .map(|(_, a, p)| (a.as_raw_fd(), p.clone())),
        spawned_into: None,
        pid_max: l.pid_max,
        inherit_fd: l.inherit_fd.as_ref().map(|f| f.as_raw_fd()),
        inherit_fds: l
            .inherit_fds
            .iter()
            .map(|(n, f)| (*n, f.as_raw_fd()))
            .collect(),
        userns: (prepared.as_ref().map(|p| p.userns.as_raw_fd()))
            .or(own_ns.as_ref().map(|(u, _)| u.as_raw_fd())),
        netns: (prepared.as_ref().map(|p| p.netns.as_raw_fd()))
            .or(own_ns.as_ref().map(|(_, n)| n.as_raw_fd())),
        become_root: prepared.is_some(),
        prebound: prepared
            .as_ref()
            .map(|p| {
                p.mounts
                    .iter()
                    .map(|(path, fd)| (path.clone(), fd.as_raw_fd()))
                    .collect()
            })
            .unwrap_or_default(),
        precache: prepared
            .as_ref()
            .map(|p| {
                p.caches
                    .iter()
                    .map(|(path, fd)| (path.clone(), fd.as_raw_fd()))
                    .collect()
            })
            .unwrap_or_default(),
        exe,
        argv,
        envp,
        err_w: err_w.as_raw_fd(),
        fd_w: fd_w.as_raw_fd(),
        exit_w: exit_w.as_raw_fd(),
        latch: latch.clone(),
        hook_socket: hook_socket_wanted,
        hook_listener: None,
        pty_slave: pty_slave.as_ref().map(|s| s.as_raw_fd()),
        out_pipes: [0, 1].map(|i| out_pipes[i].as_ref().map(|(_, w)| w.as_raw_fd())),
        devnull: devnull.as_raw_fd(),
        uid,
        gid,
        last_cap,
        supervisor: me,
        ignored_by_stage1: 0,
        stage1_self: -1,
        start_mask: *START_MASK.lock().unwrap_or_else(|p| p.into_inner()),
    };
    // Free heap memory goes back to the kernel first: stage 1 and init share every page
    // the fork leaves mapped, so each one the supervisor writes later (its heap reused by
    // the threads it starts now) would be copied, with a TLB shootdown, instead of faulted
    // in fresh (~100 copy-on-write faults fewer per session, 4% less CPU time).
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    // SAFETY: the supervisor is single-threaded here (documented invariant of `warden run`).
    let pid = unsafe { fork_into(nest_fds.as_ref().map(|(i, _, _)| i.as_raw_fd())) };
    if pid < 0 {
        return Err(format!("fork: {}", sys::errno_str()).into());
    }
    if pid == 0 {
        drop(err_r);
        drop(fd_r);
        drop(pty_master);
        stage1(ctx);
    }
    drop(ctx);
    // Stage 1 is our child and nothing reaps it before this returns.
    let stage1_pidfd = match warden_sys::pidfd::open(pid) {
        Ok(f) => f,
        Err(e) => {
            // SAFETY: killing our own unreaped child (the pid namespace dies with it).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            reap(pid);
            return Err(format!("pidfd_open(stage 1): {e}").into());
        }
    };
    drop(nest_fds);
    drop(devnull);
    drop(prepared);
    drop(own_ns);
    drop(cgroup_files);
    let hook_pipe = if hook_socket_wanted {
        l.inherit_fd
    } else {
        None
    };
    let has_relay = [out_pipes[0].is_some(), out_pipes[1].is_some()];
    let mut output_relays = Vec::new();
    for (i, p) in out_pipes.into_iter().enumerate() {
        if let Some((r, w)) = p {
            drop(w);
            let to = i as RawFd + 1;
            // Spawned with every signal blocked (the new thread inherits the mask): SIGCHLD
            // and the rest belong to the supervisor's signalfd and sigwait threads.
            output_relays.push(with_signals_blocked(move || {
                std::thread::spawn(move || {
                    let d = crate::pty::copy_filtered(r.as_raw_fd(), to);
                    crate::pty::note_dropped(&d);
                })
            }));
        }
    }
    drop(err_w);
    drop(exit_w);
    drop(fd_w);
    drop(pty_slave);
    Ok(Session {
        stage1_pid: pid,
        agent_pid: 0,
        agent_fds: Vec::new(),
        hook_listener: None,
        hook_pipe,
        hook_socket: hook_socket_wanted,
        err_read: err_r,
        namespaces: l.namespaces,
        init_pidfd: None,
        stage1_pidfd,
        agent_pidfd: None,
        exit_read: exit_r,
        guard_placeholders: std::sync::Mutex::new(Vec::new()),
        view_read: false,
        fd_sock: fd_r,
        released: std::sync::atomic::AtomicBool::new(false),
        latch,
        direct: [
            pty_master.is_none(),
            pty_master.is_none() && !has_relay[0],
            pty_master.is_none() && !has_relay[1],
        ],
        pty_master,
        output_relays: std::sync::Mutex::new(output_relays),
        lent,
    })
}

/// In init's reports, the bits of a placeholder record's length that say "directory"
/// and "marked with the plan's token".
const GUARD_DIR: u32 = 1 << 31;
const GUARD_MARKED: u32 = 1 << 30;
/// In init's exit report, a record of no path with both bits: "nothing of the sandbox runs
/// any more", sent before the guard's last pass (see [`Session::wait_reported_then`]).
const EMPTIED: u32 = GUARD_DIR | GUARD_MARKED;

/// Init's placeholder records (`u32` length with [`GUARD_DIR`]/[`GUARD_MARKED`], then the
/// workspace-relative path) for `list`, then the zero `u32` that ends them (unusable paths
/// are skipped).
fn placeholder_records(list: &[(PathBuf, bool, bool)]) -> Vec<u8> {
    let mut msg = Vec::new();
    for (rel, is_dir, marked) in list {
        let b = std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str());
        if !b.is_empty() && b.len() <= libc::PATH_MAX as usize {
            let dir = if *is_dir { GUARD_DIR } else { 0 };
            let mark = if *marked { GUARD_MARKED } else { 0 };
            msg.extend_from_slice(&(b.len() as u32 | dir | mark).to_ne_bytes());
            msg.extend_from_slice(b);
        }
    }
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg
}

/// Placeholder records of [`placeholder_records`] read from `fd` up to their zero terminator
/// (`None`: the pipe ended or a record is malformed). An [`EMPTIED`] mark on the way calls
/// `on_emptied` (once).
fn read_records(
    fd: RawFd,
    mut on_emptied: Option<Box<dyn FnOnce() + '_>>,
) -> Option<Vec<(PathBuf, bool, bool)>> {
    let mut made = Vec::new();
    loop {
        let mut head = [0u8; 4];
        read_full(fd, &mut head)?;
        let head = u32::from_ne_bytes(head);
        if head == 0 {
            return Some(made);
        }
        if head == EMPTIED {
            if let Some(f) = on_emptied.take() {
                f();
            }
            continue;
        }
        let len = (head & !(GUARD_DIR | GUARD_MARKED)) as usize;
        if len > libc::PATH_MAX as usize {
            return None;
        }
        let mut b = vec![0u8; len];
        read_full(fd, &mut b)?;
        made.push((
            PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(b)),
            head & GUARD_DIR != 0,
            head & GUARD_MARKED != 0,
        ));
    }
}

/// The pid (in our namespace) a pidfd refers to, from its fdinfo; `None`: not a pidfd.
fn pidfd_pid(fd: &OwnedFd) -> Option<i32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads exactly `b.len()` bytes from `fd` (`None`: it ended first, or failed).
fn read_full(fd: RawFd, b: &mut [u8]) -> Option<()> {
    let mut got = 0;
    while got < b.len() {
        // SAFETY: reading into the rest of a buffer of ours.
        let n = unsafe {
            libc::read(
                fd,
                b[got..].as_mut_ptr() as *mut libc::c_void,
                b.len() - got,
            )
        };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return None;
        }
        got += n as usize;
    }
    Some(())
}

/// The signal mask this process had before warden first blocked signals of its own
/// ([`save_start_mask`]). Stage 1 puts it back first thing: the sandbox's processes, the
/// agent included, start with the mask warden was started with, not with what the
/// supervisor blocks for its signal thread.
static START_MASK: std::sync::Mutex<Option<libc::sigset_t>> = std::sync::Mutex::new(None);

/// Saves the calling thread's signal mask as the one the sandbox gets (once: later calls
/// keep the first). Call it before blocking anything.
pub fn save_start_mask() {
    let mut g = START_MASK.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        // SAFETY: reading this thread's mask into a zeroed set.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) == 0 {
                *g = Some(cur);
            }
        }
    }
}

/// The mask [`save_start_mask`] saved (None before it ran): what a process warden starts in
/// its place (a warm spare) must start with.
pub fn start_mask() -> Option<libc::sigset_t> {
    *START_MASK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` with every signal blocked in the calling thread (threads it spawns inherit
/// that mask), then restores the mask.
fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset manipulation on zeroed structs; pthread_sigmask on this thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

/// Run by root with namespaces: the agent's unprivileged identity (see [`crate::idmap`]).
/// A failure refuses the run, or with `best_effort` warns and keeps host uid 0.
fn prepare_identity(
    plan: &Plan,
    namespaces: bool,
    best_effort: bool,
    uid: u32,
    gid: u32,
    early: &mut Option<crate::idmap::Early>,
) -> Result<Option<crate::idmap::Prepared>, String> {
    if !namespaces {
        return Ok(None);
    }
    let Some(ids) = crate::idmap::agent_ids() else {
        return Ok(None);
    };
    let readonly: Vec<PathBuf> = plan
        .binds
        .iter()
        .filter(|b| !b.writable)
        .map(|b| b.path.clone())
        .collect();
    let copies: Vec<(PathBuf, PathBuf)> = plan
        .binds
        .iter()
        .filter_map(|b| b.source.as_ref().map(|s| (b.path.clone(), s.clone())))
        .collect();
    match crate::idmap::prepare(
        early.take(),
        ids,
        uid,
        gid,
        crate::idmap::Roots {
            writable: &plan.writable_roots,
            readonly: &readonly,
            copies: &copies,
            caches: &plan.caches,
            root_ids: &plan.root_ids,
            cache_ids: &plan.cache_ids,
        },
    ) {
        Ok(p) => Ok(Some(p)),
        Err(crate::idmap::PrepareError::Refused(e)) => Err(format!(
            "agent identity: a bind source is unsafe to open as root: {e}"
        )),
        Err(e) if best_effort => {
            eprintln!("warden: warning: the agent runs as host root (uid 0, no capabilities), because its unprivileged identity could not be set up: {e}");
            Ok(None)
        }
        Err(e) => Err(format!(
            "agent identity: warden runs as root, and the agent must not hold root's identity on the host; it runs as uid {} through idmapped mounts of its writable roots, which failed: {e}. Run warden as an ordinary user, move the workspace to a file system with idmapped mounts (ext4, xfs, btrfs, tmpfs), or pass --best-effort to run with the agent as host root",
            ids.uid
        )),
    }
}

/// Why the agent did not start ([`Session::wait_started`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartFailure {
    /// The agent's own `execve` failed with `errno`; `message` names the path and the error.
    #[error("exec: {message}")]
    Exec { message: String, errno: i32 },
    /// Setup failed before the exec: the stage and the reason.
    #[error("{0}")]
    Setup(String),
}

impl StartFailure {
    /// Reads what the child wrote on its error pipe (`stage: reason`, and for the exec stage
    /// a NUL and the errno after the reason).
    fn from_child(msg: String) -> StartFailure {
        if let Some((message, errno)) = msg
            .strip_prefix("exec: ")
            .and_then(|rest| rest.rsplit_once('\0'))
        {
            if let Ok(errno) = errno.parse() {
                return StartFailure::Exec {
                    message: message.to_string(),
                    errno,
                };
            }
        }
        StartFailure::Setup(msg)
    }
}

fn read_all(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a stack buffer.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
            )
        };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reap(pid: i32) -> i32 {
    let mut st = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        break;
    }
    decode_status(st)
}

fn decode_status(st: i32) -> i32 {
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else if libc::WIFSIGNALED(st) {
        128 + libc::WTERMSIG(st)
    } else {
        1
    }
}

impl Session {
    /// Waits until the sandbox is built: the agent process has handed over its hooks' fds
    /// (and the hook listener) and waits for [`Session::release`]. Until then only
    /// `stage1_pid` and the pty are known; the supervisor starts what needs no more in the
    /// meantime (the build takes milliseconds). On a setup failure stage 1 is reaped and
    /// the child's report returned.
    /// Waits for init's early report (with namespaces): init writes it whole once the
    /// sandbox's view is built and its guard holds, before it forks the agent, so it is read
    /// whatever its size (a pipe without a reader would block init, and the agent would
    /// never exist). It ends early (nothing) when init died first. Whether it came: from
    /// then on stage 1's root and mount table are the agent's (init's `pivot_root` moved
    /// stage 1's root too, and they share the mount namespace), and stage 1 is our child,
    /// its pid ours until we reap it. Read once; [`Session::wait_agent`] reads it if this
    /// was not called.
    pub fn wait_view(&mut self) -> bool {
        if !self.namespaces || self.view_read {
            return false;
        }
        self.view_read = true;
        match (
            read_records(self.exit_read.as_raw_fd(), None),
            self.guard_placeholders.lock(),
        ) {
            (Some(early), Ok(mut g)) => {
                *g = early;
                true
            }
            _ => false,
        }
    }

    pub fn wait_agent(&mut self) -> Result<(), LaunchError> {
        // Init's early report first (see `wait_view`).
        self.wait_view();
        let received = sys::recv_fds(&self.fd_sock);
        // The agent process exists now (it sends its fds once spawned and confined), or
        // never will: what was lent for its spawn goes back before it runs anything.
        let given_back = self.give_back();
        let received = match received {
            Ok(r) => r,
            Err(e) => {
                self.kill_sandbox();
                reap(self.stage1_pid);
                return Err(e.into());
            }
        };
        let (mut fds, pid) = match received {
            Some(x) => x,
            None => {
                let msg = read_all(&self.err_read);
                // Init's exit report (its guard's later placeholders) before the wait for
                // stage 1, which waits for init, which may wait for this read.
                if self.namespaces {
                    let _ = self.wait_reported();
                }
                reap(self.stage1_pid);
                return Err(if msg.is_empty() {
                    LaunchError::Setup("sandbox setup failed before the agent started".into())
                } else {
                    LaunchError::from_child(msg)
                });
            }
        };
        if let Err(e) = given_back {
            // Fail closed: the agent's identity would keep the right to `chmod` them.
            self.kill_sandbox();
            reap(self.stage1_pid);
            return Err(LaunchError::Setup(e));
        }
        // The agent process sends the hook listener last, init's pidfd before it.
        self.hook_listener = if self.hook_socket { fds.pop() } else { None };
        if self.namespaces {
            match fds.pop() {
                // A pidfd (its fdinfo names a pid), not of the agent itself.
                Some(fd) if pidfd_pid(&fd).is_some_and(|p| p > 0 && p != pid) => {
                    self.init_pidfd = Some(fd)
                }
                _ => {
                    self.kill_sandbox();
                    reap(self.stage1_pid);
                    return Err(LaunchError::Setup(
                        "the agent process sent no pidfd of its init".into(),
                    ));
                }
            }
        }
        self.agent_fds = fds;
        self.agent_pid = pid;
        // It waits for its release: alive, so its pid is still its own. Signals reach it
        // through this alone.
        match warden_sys::pidfd::open(pid) {
            Ok(fd) => self.agent_pidfd = Some(fd),
            Err(e) => {
                self.kill_sandbox();
                reap(self.stage1_pid);
                return Err(LaunchError::Setup(format!(
                    "pidfd_open(the agent process, pid {pid}): {e}"
                )));
            }
        }
        Ok(())
    }

    /// Ends the whole sandbox: SIGKILL to stage 1 through its pidfd (init's parent-death
    /// signal follows, then the kernel empties the namespace). Nothing once it is gone.
    /// Returns whether the signal was sent.
    pub fn kill_sandbox(&self) -> bool {
        warden_sys::pidfd::send_signal(&self.stage1_pidfd, libc::SIGKILL).is_ok()
    }

    /// A pidfd of stage 1: signalled, it ends the whole sandbox (init's parent-death signal,
    /// then the kernel empties the namespace). `None` where the kernel gave none.
    pub fn stage1_pidfd(&self) -> Option<OwnedFd> {
        self.stage1_pidfd.try_clone().ok()
    }

    /// A pidfd of the agent process (once [`Session::wait_agent`] returned): signals sent
    /// through it reach that process or none, never one that got its pid later.
    pub fn agent_pidfd(&self) -> Option<OwnedFd> {
        self.agent_pidfd.as_ref().and_then(|f| f.try_clone().ok())
    }

    /// Waits until no process of the sandbox can run any more: stage 1 is reaped already
    /// (by [`Session::wait`] or the exec guard's thread) but, when init died without its
    /// exit report, the kernel may still be killing the rest of its namespace. Init's pidfd
    /// polls readable once init has exited, which happens only after every other process of
    /// the namespace is gone. Without a deadline: what waits for this (the placeholders'
    /// removal) must not run while an agent process still can; after 2 s it says so.
    pub fn wait_sandbox_gone(&self) {
        let Some(fd) = &self.init_pidfd else {
            return;
        };
        let mut warned = false;
        loop {
            let mut pfd = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one fd of ours.
            let r = unsafe { libc::poll(&mut pfd, 1, 2000) };
            if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if r > 0 && pfd.revents & libc::POLLIN != 0 {
                return;
            }
            if r != 0 {
                // A failed poll is no answer: nothing is removed on it (the pidfd was
                // checked when received, so this is not expected to last).
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
            if !warned {
                eprintln!("warden: the sandbox's processes are not gone 2 s after its init died; waiting for them before the workspace's placeholders are removed");
                warned = true;
            }
        }
    }

    /// Gives the lent cgroup files back to their owners, with their modes as they were (an
    /// agent of another session could have changed a mode while this one's were lent).
    fn give_back(&mut self) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let mut res = Ok(());
        for (f, uid, gid, mode) in std::mem::take(&mut self.lent) {
            let back = std::os::unix::fs::chown(&f, Some(uid), Some(gid))
                .and_then(|()| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)));
            if let Err(e) = back {
                res = Err(format!(
                    "cgroup: cannot give {} back to uid {uid}: {e}",
                    f.display()
                ));
            }
        }
        res
    }

    /// Lets the agent exec. Until then it waits (after handing over its fds), so the
    /// supervisor can attach everything that must see the agent's first exec.
    /// Lets the agent exec. Refused (and the agent is not released) when init's workspace
    /// guard failed to lock what the host changed in the workspace before now, or is still
    /// at it after [`RELEASE_DEADLINE`] ([`crate::latch`]): the caller ends the sandbox.
    pub fn release(&self) -> Result<(), String> {
        self.unlatch()?;
        if !self.released.swap(true, Ordering::SeqCst) {
            sys::write_all(self.fd_sock.as_raw_fd(), b"g");
        }
        Ok(())
    }

    /// The latch's part of [`Session::release`] alone: from here on, init's guard treats
    /// what appears in the workspace as the agent's (a warm spare takes it before it
    /// accepts a claim, and refuses the claim when it fails).
    pub fn unlatch(&self) -> Result<(), String> {
        match &self.latch {
            Some(l) => l.release(RELEASE_DEADLINE).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Releases the agent with other standard descriptors than the ones it took at its fork
    /// (a claimed warm spare: `stdio` are the claiming run's fds 0-2): those it took as they
    /// were are replaced by `stdio`'s before its execve (the rest are the pty's or the output
    /// relays', which write to the supervisor's own fds 1 and 2); the pty takes the window
    /// size of `stdio[0]` when that is a terminal. Fails when the agent was released or is
    /// gone.
    pub fn release_with(&self, stdio: [BorrowedFd<'_>; 3]) -> Result<(), String> {
        self.unlatch()?;
        if self.released.swap(true, Ordering::SeqCst) {
            return Err("the agent was already released".into());
        }
        if let Some(m) = &self.pty_master {
            // SAFETY: ioctls with a winsize struct on fds we hold.
            unsafe {
                let mut ws: libc::winsize = std::mem::zeroed();
                if libc::ioctl(stdio[0].as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
                    libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws);
                }
            }
        }
        let mut mask = 0u8;
        let mut fds = Vec::new();
        for (i, fd) in stdio.into_iter().enumerate() {
            if self.direct[i] {
                mask |= 1 << i;
                fds.push(fd);
            }
        }
        warden_sys::fdpass::send(&self.fd_sock, &[b'c', mask], &fds)
            .map(|_| ())
            .map_err(|e| format!("releasing the agent: {e}"))
    }

    /// Waits until the agent's execve happened (Ok) or setup failed (Err with the reason).
    /// Call after starting whatever serves `agent_fds` (the exec guard answers the execve).
    pub fn wait_started(&self) -> Result<(), StartFailure> {
        if let Err(e) = self.release() {
            self.kill_sandbox();
            return Err(StartFailure::Setup(e));
        }
        let msg = read_all(&self.err_read);
        if msg.is_empty() {
            Ok(())
        } else {
            Err(StartFailure::from_child(msg))
        }
    }

    /// Waits until the filtered output relays (no-pty mode) have copied everything; call
    /// after the sandbox ended.
    pub fn join_output(&self) {
        let relays = match self.output_relays.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(_) => return,
        };
        for t in relays {
            let _ = t.join();
        }
    }

    /// Waits for the sandbox to end; returns the agent's exit status (128+N for signal N).
    pub fn wait(&self) -> i32 {
        reap(self.stage1_pid)
    }

    /// Waits until init reports the agent's exit status, which it does once every process
    /// of the sandbox is gone (killed and reaped) and before it exits itself. The kernel's
    /// teardown of the namespaces (mount trees, an RCU grace period or more) then runs
    /// while the supervisor does its end-of-session work; [`Session::wait`] reaps later.
    /// `None` when no report came (no namespaces, or init died): use [`Session::wait`].
    pub fn wait_reported(&self) -> Option<i32> {
        self.wait_reported_then(|| {})
    }

    /// [`Session::wait_reported`], calling `on_emptied` as soon as init says nothing of the
    /// sandbox runs any more: before its workspace guard's last pass, so that work which
    /// only reads the workspace (the integrity report's walk) can overlap that pass.
    /// Not called when init died first.
    pub fn wait_reported_then(&self, on_emptied: impl FnOnce()) -> Option<i32> {
        // An EMPTIED mark, records (u32: path length, with GUARD_DIR and GUARD_MARKED; the
        // workspace-relative path) of the placeholders not in the early report, then a zero
        // u32 and the status (i32).
        let made = read_records(self.exit_read.as_raw_fd(), Some(Box::new(on_emptied)))?;
        if let Ok(mut g) = self.guard_placeholders.lock() {
            g.extend(made);
        }
        let mut st = [0u8; 4];
        read_full(self.exit_read.as_raw_fd(), &mut st)?;
        Some(i32::from_ne_bytes(st))
    }

    /// The placeholders init's workspace guard made (workspace-relative, whether a
    /// directory, whether marked with the plan's token), outermost first: those of its
    /// early report once [`Session::wait_agent`] returned, all once
    /// [`Session::wait_reported`] returned a status.
    pub fn guard_placeholders(&self) -> Vec<(PathBuf, bool, bool)> {
        self.guard_placeholders
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }
}

/// `fork`, into the cgroup `cgroup` when given and the kernel agrees (see
/// [`sys::fork_into_cgroup`]); else a plain fork, and stage 1 stays where we are.
///
/// # Safety
/// As `fork`: the caller is single-threaded.
unsafe fn fork_into(cgroup: Option<RawFd>) -> libc::pid_t {
    match cgroup.map(sys::fork_into_cgroup) {
        Some(Ok(pid)) => pid,
        Some(Err(e)) => {
            tracing::debug!("clone3(CLONE_INTO_CGROUP): errno {e}; forking");
            // SAFETY: as the caller's.
            unsafe { libc::fork() }
        }
        // SAFETY: as the caller's.
        None => unsafe { libc::fork() },
    }
}

fn stage1(mut c: ChildCtx) -> ! {
    let err_w = c.err_w;
    if let Some(m) = &c.start_mask {
        // SAFETY: setting this single-threaded child's mask from a set we own. A signal
        // the supervisor had pending is not inherited: nothing arrives here unblocked.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, m, std::ptr::null_mut()) };
    }
    // SAFETY: prctl/getppid are plain syscalls.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != c.supervisor {
            libc::_exit(1);
        }
    }
    if !c.namespaces {
        // Nested or best-effort without namespaces: only the per-process restrictions.
        agent(c);
    }
    for s in GROUP_SIGNALS {
        // SAFETY: ignoring a signal in a single-threaded child.
        if unsafe { libc::signal(s, libc::SIG_IGN) } != libc::SIG_IGN {
            c.ignored_by_stage1 |= 1 << s;
        }
    }
    // Before the sandbox's user namespace: the guard's watches count against the invoking
    // user's inotify limits, not against the sandbox's (see `cap_inotify`).
    if let Err(e) = crate::guard::premake_inotify() {
        fail_child(
            err_w,
            "inotify",
            &format!("cannot make the workspace guard's inotify instances: {e} (fs.inotify.max_user_instances)"),
        );
    }
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    if let Some(ns) = c.userns {
        if let Err(e) = crate::idmap::enter(ns, c.become_root) {
            fail_child(err_w, "agent identity", &e.to_string());
        }
        flags &= !libc::CLONE_NEWUSER;
        // The network namespace made beside it (owned by it: joining takes the capability
        // stage 1 now holds there).
        if let Some(net) = c.netns {
            // SAFETY: setns on an fd the supervisor opened, in a single-threaded child.
            if unsafe { libc::setns(net, libc::CLONE_NEWNET) } != 0 {
                fail_child(
                    err_w,
                    "namespaces",
                    &format!("setns(network namespace): {}", sys::errno_str()),
                );
            }
            flags &= !libc::CLONE_NEWNET;
        }
        // Changing the euid cleared PDEATHSIG (commit_creds): arm it again, then make sure
        // the supervisor did not die in between.
        // SAFETY: prctl/getppid are plain syscalls.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if libc::getppid() != c.supervisor {
                libc::_exit(1);
            }
        }
    }
    warden_event::timing::mark("stage1 unshare");
    // SAFETY: unshare in a single-threaded child.
    if unsafe { libc::unshare(flags) } != 0 {
        fail_child(
            err_w,
            "namespaces",
            &format!("unshare(USER|NS|PID|NET|IPC|UTS): {}", sys::errno_str()),
        );
    }
    if c.userns.is_none() {
        let maps = [
            ("/proc/self/setgroups", "deny".to_string()),
            ("/proc/self/uid_map", format!("{0} {0} 1", c.uid)),
            ("/proc/self/gid_map", format!("{0} {0} 1", c.gid)),
        ];
        for (f, v) in maps {
            if let Err(e) = std::fs::write(f, v) {
                fail_child(err_w, "namespaces", &format!("{f}: {e}"));
            }
        }
    }
    c.stage1_self = match warden_sys::pidfd::open(std::process::id() as i32) {
        Ok(fd) => fd.into_raw_fd(),
        Err(e) => fail_child(err_w, "namespaces", &format!("pidfd_open(stage 1): {e}")),
    };
    // SAFETY: fork from a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail_child(err_w, "namespaces", &format!("fork: {}", sys::errno_str()));
    }
    if pid == 0 {
        c.supervisor = 0;
        init(c);
    }
    // SAFETY: closing our own pidfd (init has its copy).
    unsafe { libc::close(c.stage1_self) };
    // stage1 only relays init's exit status.
    // SAFETY: closing our copies so that EOF reaches the supervisor.
    unsafe {
        libc::close(c.err_w);
        libc::close(c.exit_w);
        libc::close(c.fd_w);
        // The hook pipe's write end: EOF must reach the supervisor once init is gone.
        if let Some(fd) = c.inherit_fd {
            libc::close(fd);
        }
        if let Some(s) = c.pty_slave {
            libc::close(s);
        }
    }
    release_stdio(c.devnull, !warden_event::timing::enabled());
    let code = reap(pid);
    warden_event::timing::mark("stage1: init reaped");
    // SAFETY: exiting a forked child.
    unsafe { libc::_exit(code) }
}

/// Stage 1 and init hold the user's standard fds only until the agent has its own copies:
/// a reader of the agent's output (`$(warden run …)`, `warden run … | grep`) sees EOF when
/// the agent's tree is gone, not after the namespaces' teardown, which runs in their exit
/// and can take a grace period or more.
fn release_stdio(devnull: RawFd, stderr_too: bool) {
    let n = if stderr_too { 3 } else { 2 };
    for fd in 0..n {
        // SAFETY: dup2 of an fd we own onto a standard fd, in a single-threaded child.
        unsafe { libc::dup2(devnull, fd) };
    }
}

/// The signals a terminal or `kill -- -PGID` sends to the whole process group. The
/// supervisor forwards them to the agent, which decides what they mean (and ends the
/// sandbox when it does not, see `warden_session`'s signal thread); stage 1, which only
/// waits for init, ignores them, and init (default dispositions, a pid namespace's init)
/// gets none. Otherwise stage 1 died of the first one, init with it (its parent-death
/// signal): the agent was killed before it could act on its own copy (a clean shutdown),
/// and init never reported, so nothing said when the namespace was empty.
const GROUP_SIGNALS: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The signal that tells the sandbox's init to kill every other process of its namespace at
/// once (`kill(-1, SIGKILL)`), as it does when the agent process has exited: the signal
/// freezer's kill ([`crate::freezer::Freezer::kill`]) sends it after its own pass, which a
/// chain of short-lived forks can outrun. A real-time signal nothing sends by accident
/// (glibc keeps the first few for itself). Init acts on it only when it comes from outside
/// its namespace (`SI_USER` from a pid it cannot see: `si_pid` 0), though an agent that
/// sent it would only end its own session.
pub fn kill_now_signal() -> libc::c_int {
    libc::SIGRTMIN() + 6
}

/// Init's agent process, once forked (0 before).
static INIT_AGENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn init_kill_now(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel's siginfo for this delivery (SA_SIGINFO); kill(2) and _exit(2) are
    // async-signal-safe, and from a pid namespace's init kill(-1) reaches every process in
    // it but init. Before the agent exists there is nothing to end in order: init goes, as
    // it did of its parent-death signal when that was SIGKILL.
    unsafe {
        if !info.is_null() && (*info).si_code == libc::SI_USER && (*info).si_pid() == 0 {
            if INIT_AGENT.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                libc::_exit(1);
            }
            libc::kill(-1, libc::SIGKILL);
        }
    }
}

/// Init's handler for [`kill_now_signal`], unblocked (the mask warden was started with may
/// hold it). Installed before the agent is forked; returns the disposition and mask it
/// replaced, which the agent process restores ([`restore_kill_now`]).
fn init_take_kill_now() -> (libc::sigaction, libc::sigset_t) {
    let sig = kill_now_signal();
    // SAFETY: installing a handler and unblocking one signal in a single-threaded child;
    // zeroed sigaction/sigset_t are valid values to be filled in.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = init_kill_now as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, &sa, &mut old);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, &mut mask);
        (old, mask)
    }
}

/// The agent process: [`kill_now_signal`]'s disposition and the mask as before init took it.
fn restore_kill_now(saved: &(libc::sigaction, libc::sigset_t)) {
    // SAFETY: restoring values saved by `init_take_kill_now`, in a single-threaded child.
    unsafe {
        libc::sigaction(kill_now_signal(), &saved.0, std::ptr::null_mut());
        libc::sigprocmask(libc::SIG_SETMASK, &saved.1, std::ptr::null_mut());
    }
}

fn init(mut c: ChildCtx) -> ! {
    let err_w = c.err_w;
    // Stage 1's death (the supervisor's: stage 1 dies with it) is init's kill signal, not
    // SIGKILL: init kills the rest of its namespace at once and then ends it as after any
    // exit of the agent, with the workspace guard's last pass. A `kill -9` of warden (or the
    // OOM killer's) killed init too, and a git config the agent rewrote behind the guard's
    // lock kept its fsmonitor. Nothing of the agent runs meanwhile: every process of the
    // namespace has SIGKILL pending, the exec guard's tracer took its tracees with it
    // (`PTRACE_O_EXITKILL`) and its notifications fail with ENOSYS.
    let before = init_take_kill_now();
    // SAFETY: prctl, poll and close are plain syscalls on values and an fd of ours.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            kill_now_signal() as libc::c_ulong,
            0,
            0,
            0,
        );
        // Stage 1 may have died before the `prctl` (killed by a signal that abandoned the
        // start): nothing would then end this namespace, whose agent would wait for a
        // release that never comes. Its pidfd is readable once it has exited.
        let mut p = libc::pollfd {
            fd: c.stage1_self,
            events: libc::POLLIN,
            revents: 0,
        };
        if libc::poll(&mut p, 1, 0) != 0 {
            libc::_exit(1);
        }
        libc::close(c.stage1_self);
    }
    // What stage 1 ignored goes back to its default: the agent, forked from here, keeps the
    // dispositions warden was started with. Init itself, a pid namespace's init with
    // default dispositions, gets none of them (the kernel drops them) until it forwards them.
    for s in GROUP_SIGNALS {
        if c.ignored_by_stage1 & (1 << s) != 0 {
            // SAFETY: a signal's default disposition, in a single-threaded child.
            unsafe { libc::signal(s, libc::SIG_DFL) };
        }
    }
    warden_event::timing::mark("init: build_view");
    let mut guard = match crate::mounts::build_view(&c.plan, &c.prebound, &c.precache) {
        Ok(g) => g,
        Err(e) => fail_child(err_w, "mounts", &e.to_string()),
    };
    guard.set_latch(c.latch.take());
    warden_event::timing::mark("init: view built");
    for (_, fd) in std::mem::take(&mut c.prebound)
        .into_iter()
        .chain(std::mem::take(&mut c.precache))
    {
        // SAFETY: closing the prepared mount fds, now attached.
        unsafe { libc::close(fd) };
    }
    for ns in [c.userns.take(), c.netns.take()].into_iter().flatten() {
        // SAFETY: as above.
        unsafe { libc::close(ns) };
    }
    if c.hook_socket {
        match crate::mounts::hook_socket() {
            Ok(fd) => c.hook_listener = Some(fd),
            Err(e) => fail_child(err_w, "hook socket", &e.to_string()),
        }
    }
    if let Some(n) = c.pid_max {
        if let Err(e) = std::fs::write(
            "/proc/sys/kernel/pid_max",
            n.max(crate::MIN_PID_MAX).to_string(),
        ) {
            fail_child(
                err_w,
                "pids limit",
                &format!("/proc/sys/kernel/pid_max (per pid namespace, Linux 6.14+): {e}"),
            );
        }
    }
    if let Err(e) = cap_inotify() {
        fail_child(err_w, "inotify limits", &e);
    }
    if let Err(e) = sys::loopback_up() {
        fail_child(err_w, "network", &e.to_string());
    }
    warden_event::timing::mark("init: hook socket, pid_max, lo");
    let mut runners = Vec::new();
    for t in std::mem::take(&mut c.init_tasks) {
        match t() {
            Ok(r) => runners.push(r),
            Err(e) => fail_child(err_w, "init", &e),
        }
    }
    warden_event::timing::mark("init: tasks run");
    // The placeholders the guard made so far, before the agent exists: the supervisor
    // records them (in its manifest too) while the agent is still held, so a session
    // killed later (its init with it, before the exit report) still has them removed.
    let early = guard.placeholders();
    sys::write_all(c.exit_w, &placeholder_records(&early));
    let sent = early.len();
    // SAFETY: fork from a single-threaded process.
    let into = c.agent_cgroup.as_ref().map(|(fd, _)| *fd);
    let (pid, placed) = match into.map(sys::fork_into_cgroup) {
        Some(Ok(pid)) => (pid, true),
        // SAFETY: fork from a single-threaded process.
        _ => (unsafe { libc::fork() }, false),
    };
    if pid < 0 {
        fail_child(err_w, "init", &format!("fork: {}", sys::errno_str()));
    }
    if pid == 0 {
        restore_kill_now(&before);
        if placed {
            c.spawned_into = c.agent_cgroup.take().map(|(_, p)| p);
        }
        agent(c);
    }
    INIT_AGENT.store(pid, std::sync::atomic::Ordering::SeqCst);
    // Init keeps stderr (its threads' diagnostics); stdin/stdout are the agent's alone.
    release_stdio(c.devnull, false);
    // Init forwards no signal: the supervisor does, once (the agent, a session of its own,
    // gets none of the group's); with default dispositions, the kernel drops them for init.
    // SAFETY: closing our copies of fds.
    unsafe {
        libc::close(c.err_w);
        libc::close(c.fd_w);
        if let Some(s) = c.pty_slave {
            libc::close(s);
        }
        // The hook pipe belongs to the agent's tree: its EOF must not wait for init's exit.
        if let Some(fd) = c.inherit_fd {
            libc::close(fd);
        }
        // The hook listener is the supervisor's (the agent process hands it over).
        if let Some(fd) = c.hook_listener {
            libc::close(fd);
        }
        // The session's cgroups are the agent's (it joined them itself).
        for (fd, _) in &c.cgroup_fds {
            libc::close(*fd);
        }
    }
    for r in runners {
        std::thread::spawn(r);
    }
    guard.spawn();
    loop {
        let mut st = 0;
        // SAFETY: reaping children of the namespace's init.
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r == pid {
            // The agent is gone: end what is left in the namespace, then the guard's last
            // pass (nothing can race it now), then exit.
            warden_event::timing::mark("init: agent exited");
            // SAFETY: from a pid namespace's init, kill(-1) reaches every process in it but
            // init; reaping our own children.
            unsafe {
                libc::kill(-1, libc::SIGKILL);
                while libc::waitpid(-1, std::ptr::null_mut(), 0) > 0
                    || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {
                }
            }
            warden_event::timing::mark("init: namespace emptied");
            sys::write_all(c.exit_w, &EMPTIED.to_ne_bytes());
            guard.finish();
            warden_event::timing::mark("init: guard finished");
            // Nothing of the sandbox runs any more: tell the supervisor now, so it need not
            // wait for the namespaces' teardown; with the placeholders the guard made, which
            // it removes with its own.
            // (Those not in the early report.)
            let all = guard.placeholders();
            let mut msg = placeholder_records(all.get(sent..).unwrap_or_default());
            msg.extend_from_slice(&decode_status(st).to_ne_bytes());
            sys::write_all(c.exit_w, &msg);
            detach_placeholder_mounts(&c.plan);
            // SAFETY: exiting init kills every process left in the namespace.
            unsafe { libc::_exit(decode_status(st)) };
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            // SAFETY: as above.
            unsafe { libc::_exit(1) };
        }
    }
}

/// Init's last act, after its exit report: detaches the mounts of each writable root that
/// holds placeholders (the root's bind and the read-only mounts on its placeholders) in one
/// lazy unmount, so one RCU grace period, here, off the supervisor's path. Otherwise each
/// placeholder stays a mount point of this namespace until stage 1 has exited, and each of
/// the supervisor's unlinks of one waits for a grace period of its own (≈0.1–0.3 ms each,
/// one after the other). Nothing runs in the namespace any more and it dies right after;
/// the view is a slave of the host's tree, so nothing propagates out. Failures (a root that
/// is not a mount of ours) change nothing: the supervisor's unlinks then pay as before.
fn detach_placeholder_mounts(plan: &Plan) {
    for root in crate::placeholder::writable_roots(plan) {
        if !plan
            .placeholders
            .iter()
            .any(|(p, _)| p.starts_with(&root) && *p != root)
        {
            continue;
        }
        let Ok(c) = CString::new(root.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: umount2 with a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) };
    }
}

/// The agent process joins the session's cgroups (v2 leaf: freezer and kill; memory; pids)
/// through files the supervisor opened, as its last step before waiting for the go, so
/// before it runs anything of the agent's, and everything it starts inherits them.
///
/// A process's move through `cgroup.procs` after a quiet period waits for an RCU grace
/// period (the kernel's global `cgroup_threadgroup_rwsem`; 5–38 ms measured on this 2-core
/// machine; [`crate::cgroup::prewarm`] starts one early). A v1 cgroup is joined through
/// `tasks` instead, which moves this (only) thread without that lock (0.04 ms): the agent
/// process has one thread here. A v2 cgroup cannot be joined that way. Stage 1 and the namespace's init
/// stay outside the session cgroups: they run warden's code only, are not the agent's to
/// signal, and die with the agent's tree. A failed join ends the launch (fail closed).
fn join_cgroups(files: &[(RawFd, PathBuf)], spawned_into: Option<&std::path::Path>, err_w: RawFd) {
    for (fd, p) in files {
        if spawned_into.is_some() && p.parent() == spawned_into {
            // Already there from its first instruction (see `Launch::nest`).
            // SAFETY: closing our copy, unused.
            unsafe { libc::close(*fd) };
            continue;
        }
        // SAFETY: writing "0" (this process, or its one thread) to an open cgroup file.
        let n = unsafe { libc::write(*fd, b"0".as_ptr() as *const libc::c_void, 1) };
        if n != 1 {
            fail_child(
                err_w,
                "cgroup",
                &format!("join {}: {}", p.display(), sys::errno_str()),
            );
        }
        // SAFETY: closing our copy, used.
        unsafe { libc::close(*fd) };
    }
}

fn agent(mut c: ChildCtx) -> ! {
    let err_w = c.err_w;
    // The exit report is init's alone: the agent never holds its write end.
    // SAFETY: closing our copy of a pipe end.
    unsafe { libc::close(c.exit_w) };
    let f = |stage: &str, e: String| -> ! { fail_child(err_w, stage, &e) };
    // SAFETY: session, terminal and fd setup in a single-threaded child.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::setsid() < 0 {
            f("session", format!("setsid: {}", sys::errno_str()));
        }
        if let Some(s) = c.pty_slave {
            if libc::ioctl(s, libc::TIOCSCTTY, 0) != 0 {
                f("pty", format!("TIOCSCTTY: {}", sys::errno_str()));
            }
            for t in 0..3 {
                libc::dup2(s, t);
            }
            libc::close(s);
        } else {
            for (i, w) in c.out_pipes.iter().enumerate() {
                if let Some(w) = w {
                    libc::dup2(*w, i as i32 + 1);
                }
            }
        }
        // Every inherited fd above stderr is closed at exec (ours included).
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            4u32, /* CLOSE_RANGE_CLOEXEC */
        );
        // ...except the one fd the supervisor passes on (dup2 clears close-on-exec).
        // A source already sitting on a target number would be clobbered by an earlier dup2.
        let targets = || {
            std::iter::once(crate::launch::INHERITED_FD).chain(c.inherit_fds.iter().map(|t| t.0))
        };
        let sources = || {
            c.inherit_fd
                .into_iter()
                .chain(c.inherit_fds.iter().map(|t| t.1))
        };
        if sources().any(|s| targets().any(|t| t == s)) {
            f("fds", "an inherited fd already has a target number".into());
        }
        if let Some(fd) = c.inherit_fd {
            if libc::dup2(fd, crate::launch::INHERITED_FD) < 0 {
                f("fds", format!("dup2: {}", sys::errno_str()));
            }
        }
        for (target, fd) in &c.inherit_fds {
            if *target <= crate::launch::INHERITED_FD || libc::dup2(*fd, *target) < 0 {
                f("fds", format!("dup2 to {target}: {}", sys::errno_str()));
            }
        }
    }
    if let Err(e) = std::env::set_current_dir(&c.plan.workspace) {
        f(
            "workspace",
            format!("chdir {}: {e}", c.plan.workspace.display()),
        );
    }
    let limits = [
        (libc::RLIMIT_NOFILE, Some(c.plan.nofile)),
        (
            libc::RLIMIT_CORE,
            if c.plan.core_dumps { None } else { Some(0) },
        ),
        (libc::RLIMIT_NPROC, c.rlimit_nproc),
    ];
    for (res, v) in limits {
        if let Some(v) = v {
            if let Err(e) = sys::set_rlimit(res, v) {
                f("rlimits", e.into());
            }
        }
    }
    if let Err(e) = sys::drop_all_caps(c.last_cap) {
        f("capabilities", e.into());
    }
    // SAFETY: prctl is a plain syscall.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        f("no_new_privs", sys::errno_str());
    }
    warden_event::timing::mark("agent: landlock");
    // SAFETY: with a pty, fd 0 is its slave (dup2 above) and stays open through the call.
    let own_tty = c
        .pty_slave
        .map(|_| unsafe { std::os::fd::BorrowedFd::borrow_raw(0) });
    if let Err(e) = crate::lock::apply(&c.landlock, c.landlock_split.take(), own_tty) {
        f("landlock", e.into());
    }
    warden_event::timing::mark("agent: landlock applied");
    // Init's pidfd, for the supervisor: it polls readable only once init has exited, which
    // the kernel lets happen only after every other process of the namespace is gone. What
    // must outlive the agent's tree (the placeholders) waits for it when init died without
    // its exit report. Taken before the filters, which are the agent's.
    let init_pidfd = if c.namespaces {
        // SAFETY: getppid is a plain syscall.
        let ppid = unsafe { libc::getppid() };
        match warden_sys::pidfd::open(ppid) {
            Ok(fd) if ppid == 1 => Some(fd),
            Ok(_) => f("init pidfd", format!("the parent is pid {ppid}, not init")),
            Err(e) => f("init pidfd", e.to_string()),
        }
    } else {
        None
    };
    match &c.seccomp {
        Ok(p) => {
            if let Err(e) = p.load(false) {
                f("seccomp", format!("seccomp: load: {e}"));
            }
        }
        Err(e) => f("seccomp", e.clone()),
    }
    let mut fds: Vec<OwnedFd> = Vec::new();
    for h in &c.hooks {
        match h.before_exec() {
            Ok(Some(fd)) => fds.push(fd),
            Ok(None) => {}
            Err(e) => f("agent hook", e.to_string()),
        }
    }
    warden_event::timing::mark("agent: filters installed");
    // The hooks' fds, init's pidfd, the hook listener: the supervisor takes them from the end.
    fds.extend(init_pidfd);
    let mut raw: Vec<RawFd> = fds.iter().map(|x| x.as_raw_fd()).collect();
    raw.extend(c.hook_listener);
    if let Err(e) = sys::send_fds(c.fd_w, &raw) {
        f("fd passing", e.into());
    }
    drop(fds);
    if let Some(fd) = c.hook_listener {
        // SAFETY: our copy of the listener, now the supervisor's.
        unsafe { libc::close(fd) };
    }
    join_cgroups(&c.cgroup_fds, c.spawned_into.as_deref(), err_w);
    warden_event::timing::mark("agent: joined cgroups");
    // Wait for the supervisor's go (it attaches the exec guard first). EOF: it is gone.
    // `c` and a mask: a claimed warm spare's standard fds come with it, for those the
    // agent took as they were (`Session::release_with`).
    let mut go = [0u8; 2];
    // SAFETY: our end of the channel, open until the close below.
    let chan = unsafe { std::os::fd::BorrowedFd::borrow_raw(c.fd_w) };
    match warden_sys::fdpass::recv(chan, &mut go, 3, Default::default()) {
        Ok(m) if m.len == 1 && go[0] == b'g' && m.fds.is_empty() => {}
        Ok(m) if m.len == 2 && go[0] == b'c' => {
            let mut given = m.fds.into_iter();
            for target in 0..3 {
                if go[1] & (1 << target) == 0 {
                    continue;
                }
                let Some(fd) = given.next() else {
                    f("supervisor", "a standard fd is missing from the go".into());
                };
                // SAFETY: dup2 onto a standard fd of this single-threaded child.
                if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
                    f("fds", format!("dup2 to {target}: {}", sys::errno_str()));
                }
            }
            if given.next().is_some() {
                f("supervisor", "the go carried more fds than it names".into());
            }
        }
        _ => f(
            "supervisor",
            "the supervisor went away before the agent started".into(),
        ),
    }
    // SAFETY: closing the fd channel before exec.
    unsafe { libc::close(c.fd_w) };
    // The agent gets the SIGPIPE disposition warden was started with. warden ignores it for
    // itself (a closed pipe is an error to report), and an ignored signal stays ignored
    // across execve: `yes | head -1` in the agent's shell printed "Broken pipe" errors.
    if !SIGPIPE_WAS_IGNORED.load(Ordering::Relaxed) {
        // SAFETY: restoring a signal's default disposition in this single-threaded child.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let mut argv: Vec<*const libc::c_char> = c.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = c.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    warden_event::timing::mark("agent: execve");
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings.
    unsafe { libc::execve(c.exe.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    let e = std::io::Error::last_os_error();
    // The errno travels after a NUL so the supervisor decides on it, not on the text.
    f(
        "exec",
        format!(
            "{}: {e}\0{}",
            c.exe.to_string_lossy(),
            e.raw_os_error().unwrap_or(0)
        ),
    )
}

/// The agent's inotify budget: a quarter of the invoking user's watches and half of its
/// instances (`fs.inotify.max_user_watches`, `max_user_instances`) for the sandbox's user
/// namespace, whose own limits (`/proc/sys/user/max_inotify_*`) a watch counts against as well
/// as its parents'. An agent that takes all it may leaves the host's own watchers (editors,
/// IDEs) the rest (attack review 109, F3): the workspace guard's walk takes another quarter at
/// most, on instances made outside (`guard::premake_inotify`), so the host keeps half. The
/// agent cannot raise it: it has no `CAP_SYS_RESOURCE`.
fn cap_inotify() -> Result<(), String> {
    for (host, own) in [
        (
            "/proc/sys/fs/inotify/max_user_watches",
            "/proc/sys/user/max_inotify_watches",
        ),
        (
            "/proc/sys/fs/inotify/max_user_instances",
            "/proc/sys/user/max_inotify_instances",
        ),
    ] {
        let n: u64 = std::fs::read_to_string(host)
            .map_err(|e| format!("{host}: {e}"))?
            .trim()
            .parse()
            .map_err(|e| format!("{host}: {e}"))?;
        let share = if own.ends_with("watches") {
            n / 4
        } else {
            n / 2
        };
        std::fs::write(own, share.max(1).to_string()).map_err(|e| format!("{own}: {e}"))?;
    }
    // fanotify's groups and marks the same way, at half (attack review 114, F3), where the
    // kernel counts them per user namespace (Linux 5.13+; older kernels lack both files,
    // and an unprivileged fanotify with them).
    for (host, own) in [
        (
            "/proc/sys/fs/fanotify/max_user_groups",
            "/proc/sys/user/max_fanotify_groups",
        ),
        (
            "/proc/sys/fs/fanotify/max_user_marks",
            "/proc/sys/user/max_fanotify_marks",
        ),
    ] {
        let Ok(text) = std::fs::read_to_string(host) else {
            continue;
        };
        let n: u64 = text.trim().parse().map_err(|e| format!("{host}: {e}"))?;
        std::fs::write(own, (n / 2).max(1).to_string()).map_err(|e| format!("{own}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::StartFailure;

    /// Init's placeholder records: their encoding, unusable paths skipped, and a report far
    /// larger than a pipe holds read whole through one (the writer blocks until the reader
    /// has read: the supervisor reads init's early report before anything else).
    /// The "nothing runs any more" mark ahead of init's exit records calls back once and
    /// is not a record.
    #[test]
    fn the_emptied_mark_calls_back_and_is_no_record() {
        use super::{placeholder_records, read_records, EMPTIED};
        use std::os::fd::AsRawFd;
        use std::path::PathBuf;
        let list = vec![(PathBuf::from("a/b"), false, true)];
        let mut msg = EMPTIED.to_ne_bytes().to_vec();
        msg.extend(placeholder_records(&list));
        let (r, w) = warden_sys::pipe_cloexec().unwrap();
        crate::sys::write_all(w.as_raw_fd(), &msg);
        let mut called = 0;
        let got = read_records(r.as_raw_fd(), Some(Box::new(|| called += 1))).unwrap();
        assert_eq!(got, list);
        assert_eq!(called, 1);
    }

    #[test]
    fn placeholder_records_round_trip_through_a_pipe_whatever_their_size() {
        use super::{placeholder_records, read_records, GUARD_DIR, GUARD_MARKED};
        use std::os::fd::AsRawFd;
        use std::path::PathBuf;
        let list: Vec<(PathBuf, bool, bool)> = vec![
            (PathBuf::from("sub/tools"), true, true),
            (PathBuf::new(), false, false),
            (PathBuf::from("sub/inc.cfg"), false, true),
            (PathBuf::from("x".repeat(100)), false, false),
        ];
        let all = placeholder_records(&list);
        assert_eq!(all.len(), (4 + 9) + (4 + 11) + (4 + 100) + 4);
        let head = u32::from_ne_bytes(all[..4].try_into().unwrap());
        assert_eq!(head, 9 | GUARD_DIR | GUARD_MARKED);
        assert_eq!(&all[4..13], b"sub/tools");
        assert_eq!(&all[all.len() - 4..], &[0u8; 4]);
        let big: Vec<(PathBuf, bool, bool)> = (0..5000)
            .map(|i| {
                (
                    PathBuf::from(format!("deep/repo{i}/tools/git-hooks")),
                    i % 2 == 0,
                    i % 3 == 0,
                )
            })
            .collect();
        let msg = placeholder_records(&big);
        assert!(msg.len() > 128 * 1024);
        let (r, w) = warden_sys::pipe_cloexec().unwrap();
        let writer = std::thread::spawn(move || {
            crate::sys::write_all(w.as_raw_fd(), &msg);
            crate::sys::write_all(w.as_raw_fd(), &7i32.to_ne_bytes());
        });
        assert_eq!(read_records(r.as_raw_fd(), None).unwrap(), big);
        let mut st = [0u8; 4];
        super::read_full(r.as_raw_fd(), &mut st).unwrap();
        assert_eq!(i32::from_ne_bytes(st), 7);
        writer.join().unwrap();
        // A report cut short is none.
        let (r, w) = warden_sys::pipe_cloexec().unwrap();
        crate::sys::write_all(w.as_raw_fd(), &all[..20]);
        drop(w);
        assert!(read_records(r.as_raw_fd(), None).is_none());
    }

    #[test]
    fn start_failure_carries_the_exec_errno() {
        assert_eq!(
            StartFailure::from_child(format!(
                "exec: /w/x: Permission denied (os error 13){}13",
                char::from(0)
            )),
            StartFailure::Exec {
                message: "/w/x: Permission denied (os error 13)".into(),
                errno: 13
            }
        );
        // Text alone decides nothing: without the errno it is a setup failure.
        let f = StartFailure::from_child("exec: /w/x: Permission denied (os error 13)".into());
        assert!(matches!(f, StartFailure::Setup(_)));
        let f = StartFailure::from_child("seccomp: EINVAL".into());
        assert_eq!(f.to_string(), "seccomp: EINVAL");
    }
}

#[cfg(test)]
mod launch_error_tests {
    use super::LaunchError;

    #[test]
    fn the_childs_report_is_typed_by_stage() {
        let e = LaunchError::from_child("namespaces: unshare(USER): EPERM".into());
        assert_eq!(e.stage(), Some("namespaces"));
        assert_eq!(e.to_string(), "namespaces: unshare(USER): EPERM");
        let e = LaunchError::from_child("exec: /x: No such file\u{0}2".into());
        assert_eq!(e.stage(), Some("exec"));
        assert_eq!(e.to_string(), "exec: /x: No such file");
        // Free text is not mistaken for a stage.
        let e = LaunchError::from_child("sandbox went away: early".into());
        assert_eq!(e.stage(), None);
        assert_eq!(e.to_string(), "sandbox went away: early");
    }
}
