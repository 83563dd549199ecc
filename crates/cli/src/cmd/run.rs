//! `warden run`: start a command inside the sandbox (owned by warden-sandbox) and supervise
//! it. Invariant: the supervisor stays single-threaded until the sandbox is forked.

use super::{fail, home_dir, load_policy, misc, workspace};
use crate::cli::{ExecBackendArg, RunArgs};
use crate::exit;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_event::{Decision, Layer, SessionLog, Verdict};
use warden_execguard::{rules::ExecRules, unotify::Guard};
use warden_sandbox::{cgroup::SessionCgroup, launch, plan, report, Launch};

/// Where session logs live: outside every path the sandbox can write (the sandbox's
/// `$HOME` is a private tmpfs, so the real file is not even visible inside).
pub fn state_dir(home: &Path) -> PathBuf {
    home.join(".local/state/warden")
}

pub fn new_session_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}-{:x}", t.as_millis(), std::process::id())
}

pub fn run(a: RunArgs, verbose: u8) -> anyhow::Result<i32> {
    let home = home_dir();
    let ws = workspace(&a.policy.workspace)?;
    if !a.allow_broad_workspace && (ws == Path::new("/") || home.starts_with(&ws)) {
        return Err(fail(
            exit::WORKSPACE,
            format!(
                "workspace {} contains your home directory; run warden from a project directory (or pass --allow-broad-workspace)",
                ws.display()
            ),
        ));
    }
    let loaded = load_policy(&a.policy, Some(&ws))?;
    let mut features = if a.best_effort {
        warden_sandbox::probe()
    } else {
        warden_sandbox::probe_fast()
    };
    if a.simulate_no_userns {
        features.user_namespaces = false;
    }
    // Hook decisions made inside the sandbox (`warden hook`, run by the agent) reach this
    // run's session log through a pipe: the agent holds the write end, we read, validate and
    // re-stamp every line (they are the agent side's reports, and are marked as such).
    let (hook_r, hook_w) = {
        use std::os::fd::FromRawFd;
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 into a 2-int array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(fail(
                exit::INTERNAL,
                format!("pipe: {}", std::io::Error::last_os_error()),
            ));
        }
        // SAFETY: fresh fds we own.
        unsafe {
            (
                std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            )
        }
    };
    // Without a network namespace the proxy listens on the host's loopback, and Landlock
    // (ABI 4+) lets the agent connect to that TCP port only. Bound now: no threads before the
    // sandbox is forked; the socket is close-on-exec, so the agent never holds it.
    let host_proxy = if !features.user_namespaces && features.landlock_abi >= 4 {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| fail(exit::INTERNAL, format!("proxy: bind 127.0.0.1:0: {e}")))?;
        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
        Some((l, port))
    } else {
        None
    };
    // Inside a warden sandbox the outer exec guard already traps and traces every
    // descendant (seccomp filters stack; its tracer auto-attaches), and ptrace is denied
    // here, so a nested warden adds no guard of its own.
    let nested_in_warden =
        features.nested && std::env::var_os("WARDEN_SANDBOX").is_some_and(|v| v == "1");
    let backend = if nested_in_warden {
        eprintln!("warden: nested in a warden sandbox: the outer exec guard covers this session");
        Backend::Off
    } else {
        exec_guard(&a, &loaded.policy, &home, verbose)?
    };
    let (guard, bpf_rules) = match backend {
        Backend::Off => (None, None),
        Backend::Seccomp(g) => (Some(g), None),
        Backend::Bpf(r) => (None, Some(r)),
    };
    let missing = report::missing(&features);
    let nested_ok = features.nested && !features.user_namespaces;
    if !missing.is_empty() {
        let mut msg = String::from("this machine cannot deliver the policy:\n");
        for g in &missing {
            msg.push_str(&format!(
                "  - missing: {} (needs {})\n",
                g.what, g.mechanism
            ));
        }
        if let Some(e) = &features.userns_error {
            msg.push_str(&format!("  user namespaces: {e}\n"));
        }
        if nested_ok {
            msg.push_str("  (running inside another sandbox: its restrictions still hold, and this one adds Landlock and seccomp on top)\n");
        }
        if !a.best_effort && !nested_ok {
            msg.push_str("nothing was run; `warden doctor` explains, `--best-effort` runs with the guarantees above missing");
            return Err(fail(exit::UNSUPPORTED, msg.trim_end()));
        }
        eprintln!(
            "{} {}",
            misc::warn_stderr("warden: warning:"),
            msg.trim_end()
        );
    }
    sweep_stale_placeholders(&state_dir(&home));
    let net_rules = warden_proxy::rules::NetRules::from_section(&loaded.policy.network)
        .map_err(|e| fail(exit::POLICY, format!("network policy: {e}")))?;
    drop(net_rules);
    let session_id = new_session_id();
    // Single-threaded here: every Decision of this process carries the session id.
    std::env::set_var("WARDEN_SESSION_ID", &session_id);
    let env: Vec<_> = std::env::vars_os().collect();
    // warden's own binary stays reachable (read + exec, never write) at the same path, so the
    // agent's hooks (`warden hook ...`, as `warden install` wrote them) run inside too.
    let own_exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok());
    let extra_read = agent_install_dir(&a.command[0], &env, &home)
        .into_iter()
        .chain(own_exe)
        .collect();
    let mut plan = plan::build(plan::PlanInput {
        policy: &loaded.policy,
        workspace: ws.clone(),
        home: home.clone(),
        command: a.command.clone(),
        session_id: session_id.clone(),
        features: &features,
        extra_env: {
            let mut e = match (&host_proxy, features.user_namespaces) {
                (_, true) => warden_proxy::proxy_env(warden_proxy::SANDBOX_PORT),
                (Some((_, port)), false) => warden_proxy::proxy_env(*port),
                (None, false) => Vec::new(),
            };
            e.push(("WARDEN_HOOK_FD".into(), launch::INHERITED_FD.to_string()));
            e
        },
        extra_read,
    });
    // The gate inside (`warden hook`) judges with this run's effective policy, read-only.
    plan.set_gate_policy(
        warden_policy::session::SessionPolicy {
            version: warden_policy::session::VERSION,
            session_id: session_id.clone(),
            profile: loaded.profile.clone(),
            workspace: ws.clone(),
            home: home.clone(),
            policy: loaded.policy.clone(),
        }
        .to_json(),
    );
    if a.dry_run {
        print!("{}", plan.describe());
        return Ok(exit::OK);
    }
    let log_path = state_dir(&home)
        .join("sessions")
        .join(format!("{session_id}.jsonl"));
    let log = SessionLog::open(&log_path).map_err(|e| {
        fail(
            exit::INTERNAL,
            format!("session log {}: {e}", log_path.display()),
        )
    })?;
    warden_event::init_tracing(Some(log), verbose);
    let who = format!("warden run ({})", loaded.profile);
    Decision::new(
        Layer::Sandbox,
        &who,
        a.command.join(" "),
        format!("profile:{}", loaded.profile),
        Verdict::Observe,
        "session start",
    )
    .with("session", session_id.as_str())
    .with("workspace", ws.display().to_string())
    .emit();
    for (k, glob) in &plan.scrubbed {
        Decision::new(
            Layer::Sandbox,
            &who,
            format!("env {k}"),
            "env.scrub",
            Verdict::Deny,
            format!("matches `{glob}`; pass it with env.pass in ~/.config/warden/policy.toml"),
        )
        .emit();
    }
    // Pids limit: the pid namespace's own pid_max where the kernel has it (free), else a
    // cgroup (moving a process into a cgroup v1 costs ~10 ms), else RLIMIT_NPROC.
    let pid_max = (features.user_namespaces && warden_sandbox::pidns_pid_max_supported())
        .then_some(plan.pids_max);
    // Under the BPF backend the daemon's session cgroup carries the pids limit instead (a
    // process is in one cgroup only, and the programs scope by that one).
    let cgroup = if pid_max.is_none() && features.cgroup_pids.is_some() && bpf_rules.is_none() {
        match SessionCgroup::create(&session_id, plan.pids_max) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("pids cgroup unavailable ({e}); using RLIMIT_NPROC");
                None
            }
        }
    } else {
        None
    };
    let landlock = warden_sandbox::lock::LandlockPlan {
        abi: features.landlock_abi,
        read: plan.landlock_read.clone(),
        write: plan.landlock_write.clone(),
        // No network namespace: only the proxy's port (Landlock rules name ports, not
        // addresses; see the README's guarantees table).
        connect_tcp: if features.user_namespaces {
            None
        } else {
            Some(
                host_proxy
                    .as_ref()
                    .map(|(_, p)| vec![*p])
                    .unwrap_or_default(),
            )
        },
        hard: !a.best_effort && features.landlock_abi >= 6,
    };
    let manifest = state_dir(&home)
        .join("placeholders")
        .join(format!("{session_id}.list"));
    let placeholders = launch::make_placeholders(&plan).map_err(|e| fail(exit::WORKSPACE, e))?;
    write_manifest(&manifest, &placeholders);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    // Network: the agent's namespace has only loopback; a bridge in the sandbox's init hands
    // each connection to 127.0.0.1:3128 to the proxy running here.
    let mut host_bridge = None;
    let (proxy_ctl, init_tasks) = if features.user_namespaces {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| fail(exit::INTERNAL, format!("socketpair: {e}")))?;
        let theirs = std::os::fd::OwnedFd::from(theirs);
        let task: warden_sandbox::InitTask = Box::new(move || {
            let l = std::net::TcpListener::bind(("127.0.0.1", warden_proxy::SANDBOX_PORT))
                .map_err(|e| {
                    format!(
                        "proxy bridge: bind 127.0.0.1:{}: {e}",
                        warden_proxy::SANDBOX_PORT
                    )
                })?;
            Ok(Box::new(move || warden_proxy::bridge::serve(l, theirs))
                as Box<dyn FnOnce() + Send>)
        });
        (Some(std::os::fd::OwnedFd::from(mine)), vec![task])
    } else if let Some((l, _)) = host_proxy {
        // The same fd-passing bridge, run by a thread of this process once the sandbox is
        // forked (see `supervise`).
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| fail(exit::INTERNAL, format!("socketpair: {e}")))?;
        host_bridge = Some((l, std::os::fd::OwnedFd::from(theirs)));
        (Some(std::os::fd::OwnedFd::from(mine)), Vec::new())
    } else {
        (None, Vec::new())
    };
    let plan_pids_max = plan.pids_max as u64;
    let l = Launch {
        rlimit_nproc: if cgroup.is_none() && pid_max.is_none() && bpf_rules.is_none() {
            Some(plan.pids_max as u64)
        } else {
            None
        },
        pid_max,
        inherit_fd: Some(hook_w),
        cgroup_procs: cgroup.as_ref().map(|c| c.path.join("cgroup.procs")),
        plan,
        landlock,
        hooks: if guard.is_some() {
            vec![Arc::new(ExecHook) as Arc<dyn warden_sandbox::AgentHook>]
        } else {
            Vec::new()
        },
        init_tasks,
        namespaces: features.user_namespaces,
        pty: tty,
    };
    let proxy = ProxyStart {
        hook_events: hook_r,
        host_bridge,
        policy: loaded.policy.clone(),
        ctl: proxy_ctl,
        hosts_file: a.proxy_hosts_file.clone(),
    };
    let pids_max = plan_pids_max;
    let result = supervise(
        l,
        tty,
        guard,
        bpf_rules.map(|r| (r, session_id.clone(), pids_max)),
        proxy,
    );
    launch::remove_placeholders(&placeholders);
    let _ = std::fs::remove_file(&manifest);
    if let Some(cg) = &cgroup {
        let hits = cg.max_events();
        if hits > 0 {
            Decision::new(
                Layer::Sandbox,
                &who,
                "fork",
                "process.pids_max",
                Verdict::Deny,
                format!("the pids limit was hit {hits} times"),
            )
            .emit();
        }
    }
    drop(cgroup);
    let code = result?;
    Decision::new(
        Layer::Sandbox,
        &who,
        a.command.join(" "),
        "session",
        Verdict::Observe,
        format!("session end, exit {code}"),
    )
    .emit();
    Ok(code)
}

/// Records the placeholders of a session (and the supervisor's pid) so that a later run can
/// remove them if this supervisor is killed before it cleans up.
fn write_manifest(path: &Path, made: &[PathBuf]) {
    if made.is_empty() {
        return;
    }
    let mut text = format!("{}\n", std::process::id());
    for p in made {
        text.push_str(&p.to_string_lossy());
        text.push('\n');
    }
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::write(path, text);
}

/// Removes (still empty) placeholders left by sessions whose supervisor is gone.
fn sweep_stale_placeholders(state: &Path) {
    let Ok(rd) = std::fs::read_dir(state.join("placeholders")) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.lines();
        let alive = lines
            .next()
            .and_then(|l| l.parse::<i32>().ok())
            // SAFETY: signal 0 only checks for existence.
            .is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if alive {
            continue;
        }
        let made: Vec<PathBuf> = lines.map(PathBuf::from).collect();
        launch::remove_placeholders(&made);
        let _ = std::fs::remove_file(e.path());
    }
}

/// The agent's install directory when it lives under `$HOME` (which the sandbox replaces
/// with a private tmpfs): the directory holding the resolved executable, so e.g.
/// `~/.local/bin/claude -> ~/.local/share/claude/versions/X/claude` keeps working.
fn agent_install_dir(
    cmd: &str,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    home: &Path,
) -> Option<PathBuf> {
    let p = launch::resolve_command(cmd, env).ok()?;
    let real = std::fs::canonicalize(&p).ok()?;
    if !real.starts_with(home) {
        return None;
    }
    let dir = real.parent()?.to_path_buf();
    // Never expose the whole home directory this way.
    (dir != home).then_some(dir)
}

/// Installs the exec guard's seccomp filter in the agent, right before it execs.
struct ExecHook;
impl warden_sandbox::AgentHook for ExecHook {
    fn before_exec(&self) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
        warden_execguard::unotify::install_filter().map(Some)
    }
}

/// The exec-guard backend of a run.
enum Backend {
    Off,
    /// seccomp user notification + exec tracing, supervised by this process.
    Seccomp(Guard),
    /// BPF LSM programs of `warden daemon`: the session's cgroup is enforced in the kernel.
    Bpf(ExecRules),
}

/// Resolves the exec policy and picks the exec-guard backend: BPF LSM when a daemon serves
/// this machine (`auto` or `bpf`), else the seccomp backend. Errors here mean no run.
fn exec_guard(
    a: &RunArgs,
    policy: &warden_policy::Policy,
    home: &Path,
    verbose: u8,
) -> anyhow::Result<Backend> {
    if a.exec_guard == ExecBackendArg::Off {
        eprintln!(
            "{} the exec guard is off (--exec-guard off): executables are not checked by content",
            misc::warn_stderr("warden: warning:")
        );
        return Ok(Backend::Off);
    }
    let daemon = match a.exec_guard {
        ExecBackendArg::Bpf | ExecBackendArg::Auto => {
            warden_execguard::lsm::daemon::client::status(Path::new(
                warden_execguard::lsm::daemon::SOCKET,
            ))
        }
        _ => Err(String::new()),
    };
    if a.exec_guard == ExecBackendArg::Bpf {
        if let Err(e) = &daemon {
            return Err(fail(
                exit::UNSUPPORTED,
                format!("the BPF LSM exec-guard backend needs `warden daemon` running as root on a kernel that loads BPF LSM programs ({e}); see `warden doctor`, or use --exec-guard seccomp"),
            ));
        }
    }
    let (rules, cache) = exec_rules(policy, home, a.no_index, verbose)?;
    if daemon.is_ok() {
        if verbose > 0 {
            eprintln!("warden: exec guard: BPF LSM (warden daemon)");
        }
        return Ok(Backend::Bpf(rules));
    }
    Ok(Backend::Seccomp(Guard::with_cache(rules, cache)))
}

fn exec_rules(
    policy: &warden_policy::Policy,
    home: &Path,
    no_index: bool,
    verbose: u8,
) -> anyhow::Result<(ExecRules, std::sync::Arc<warden_execguard::cache::Cache>)> {
    use warden_policy::exec::ExecMode;
    let cache = std::sync::Arc::new(
        warden_execguard::cache::Cache::load(&hash_cache_path(home))
            .map_err(|e| fail(exit::POLICY, e))?,
    );
    let mut rules = ExecRules::from_policy_cached(policy, home, cache.clone())
        .map_err(|e| fail(exit::POLICY, format!("exec policy: {e}")))?;
    for n in &rules.notes {
        if n.starts_with("warning") {
            eprintln!("{} {}", misc::warn_stderr("warden:"), n);
        } else if verbose > 0 {
            eprintln!("warden: {n}");
        }
    }
    if rules.mode == ExecMode::Allowlist {
        let has_index = policy.exec.allow.iter().any(|r| r.starts_with("index:"));
        let default = warden_execguard::index::default_path(home);
        if default.exists() {
            rules
                .add_index(&default)
                .map_err(|e| fail(exit::POLICY, format!("exec policy: {e}")))?;
        } else if !has_index && !no_index {
            return Err(fail(
                exit::POLICY,
                format!(
                    "allowlist mode needs a trust index, and {} does not exist: run `warden index` first (or pass --no-index to trust only the explicit exec.allow rules)",
                    default.display()
                ),
            ));
        }
    }
    Ok((rules, cache))
}

/// The persistent stamp → SHA-256 cache (outside anything the sandbox can write).
pub fn hash_cache_path(home: &Path) -> PathBuf {
    state_dir(home).join("hash-cache.bin")
}

struct ProxyStart {
    /// Read end of the hook-event pipe.
    hook_events: std::os::fd::OwnedFd,
    /// No network namespace: the host-loopback listener and the bridge's end of the pair.
    host_bridge: Option<(std::net::TcpListener, std::os::fd::OwnedFd)>,
    policy: warden_policy::Policy,
    ctl: Option<std::os::fd::OwnedFd>,
    hosts_file: Option<PathBuf>,
}

fn supervise(
    l: Launch,
    tty: bool,
    guard: Option<Guard>,
    bpf: Option<(ExecRules, String, u64)>,
    proxy: ProxyStart,
) -> anyhow::Result<i32> {
    let mut session = launch(l).map_err(|e| {
        let hint = if e.starts_with("namespaces") {
            "\nthis machine cannot create the sandbox's namespaces; `warden doctor` explains, `--best-effort` runs without them"
        } else {
            ""
        };
        fail(exit::UNSUPPORTED, format!("sandbox setup failed: {e}{hint}"))
    })?;
    // Signals: forwarded to the agent by a dedicated thread.
    // SAFETY: building and applying a signal mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGWINCH,
        ] {
            libc::sigaddset(&mut set, s);
        }
        // SIGCHLD is blocked too (in every thread, which inherit this mask): the exec guard
        // reads it through a signalfd.
        let mut all = set;
        libc::sigaddset(&mut all, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
        set
    };
    let agent = session.agent_pid;
    let master = session.pty_master.as_ref().map(|m| {
        use std::os::fd::AsRawFd;
        m.as_raw_fd()
    });
    std::thread::spawn(move || loop {
        let mut sig = 0;
        // SAFETY: sigwait on the blocked set.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        if sig == libc::SIGWINCH {
            if let Some(m) = master {
                // SAFETY: ioctl with a winsize struct.
                unsafe {
                    let mut ws: libc::winsize = std::mem::zeroed();
                    if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                        libc::ioctl(m, libc::TIOCSWINSZ, &ws);
                    }
                }
            }
        } else if agent > 0 {
            // SAFETY: signalling our own agent process.
            unsafe { libc::kill(agent, sig) };
        }
    });
    // The proxy (threads may start now: the sandbox is forked).
    {
        let r = proxy.hook_events;
        std::thread::spawn(move || relay_hook_events(r));
    }
    if let Some((l, theirs)) = proxy.host_bridge {
        std::thread::spawn(move || warden_proxy::bridge::serve(l, theirs));
    }
    let _proxy = match proxy.ctl {
        Some(ctl) => Some(
            warden_proxy::start(
                &proxy.policy,
                warden_proxy::ProxyOptions {
                    hosts_file: proxy.hosts_file,
                },
                ctl,
            )
            .map_err(|e| fail(exit::POLICY, format!("proxy: {e}")))?,
        ),
        None => None,
    };
    // The exec guard: one thread answers the filter's notifications and verifies each
    // allowed exec at its exec stop; it also reaps the sandbox and returns its status.
    let tracer = match guard {
        Some(g) => {
            let g = Arc::new(g);
            let listener = session.agent_fds.remove(0);
            let refresher = g.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(30));
                let fresh = refresher
                    .rules
                    .read()
                    .map(|r| r.clone())
                    .ok()
                    .and_then(|mut r| r.refresh().ok().map(|_| r));
                if let (Some(r), Ok(mut w)) = (fresh, refresher.rules.write()) {
                    *w = r;
                }
            });
            let stage1 = session.stage1_pid;
            let cache_path = hash_cache_path(&home_dir());
            Some(std::thread::spawn(move || {
                let code = g.supervise(listener, stage1);
                if let Err(e) = g.cache.save(&cache_path) {
                    tracing::warn!("hash cache {}: {e}", cache_path.display());
                }
                code
            }))
        }
        None => None,
    };
    // BPF backend: the daemon places the whole sandbox (it waits for "go" and forks nothing
    // until then) in an enforced session cgroup before the agent may exec.
    let _bpf_session = match bpf {
        Some((rules, sid, pids_max)) => match warden_execguard::lsm::daemon::client::open_session(
            Path::new(warden_execguard::lsm::daemon::SOCKET),
            session.stage1_pid,
            &rules,
            &rules.build_tool_hashes(),
            &sid,
            pids_max,
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                // SAFETY: killing our own sandbox, which has not been released.
                unsafe { libc::kill(session.stage1_pid, libc::SIGKILL) };
                session.wait();
                return Err(fail(
                    exit::UNSUPPORTED,
                    format!("the BPF exec guard could not take the session: {e}"),
                ));
            }
        },
        None => None,
    };
    let raw = if tty {
        warden_sandbox::pty::RawMode::enter()
    } else {
        None
    };
    let out = session.pty_master.as_ref().map(warden_sandbox::pty::relay);
    if let Err(e) = session.wait_started() {
        drop(raw);
        match tracer {
            Some(t) => {
                let _ = t.join();
            }
            None => {
                session.wait();
            }
        }
        return Err(fail(
            exit::UNSUPPORTED,
            format!("sandbox setup failed: {e}"),
        ));
    }
    let code = match tracer {
        Some(t) => t.join().unwrap_or(1),
        None => session.wait(),
    };
    if let Some(t) = out {
        let _ = t.join();
    }
    drop(raw);
    Ok(code)
}

/// Copies the hook decisions reported from inside the sandbox into this run's session log:
/// one JSON decision per line (at most 64 KiB), re-stamped with this session, marked as
/// reported from inside; anything else is counted and dropped.
fn relay_hook_events(r: std::os::fd::OwnedFd) {
    use std::io::BufRead;
    let mut rd = std::io::BufReader::new(std::fs::File::from(r));
    let mut line = Vec::new();
    let mut bad = 0u64;
    loop {
        line.clear();
        match std::io::Read::take(&mut rd, 64 * 1024).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        match serde_json::from_slice::<Decision>(&line) {
            Ok(mut d) if d.layer == Layer::Gate => {
                d.session = std::env::var("WARDEN_SESSION_ID").unwrap_or_default();
                d.extra.insert(
                    "reported_by".into(),
                    "warden hook inside the sandbox".into(),
                );
                d.emit();
            }
            _ => bad += 1,
        }
        if !line.ends_with(b"\n") {
            // An over-long line: skip to its end.
            let mut skip = Vec::new();
            let _ = rd.read_until(b'\n', &mut skip);
        }
    }
    if bad > 0 {
        tracing::warn!("{bad} malformed hook event lines from inside the sandbox were dropped");
    }
}
