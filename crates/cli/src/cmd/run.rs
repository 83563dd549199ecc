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
    let (mut guard, bpf_rules) = match backend {
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
        .flatten()
        .chain(own_exe)
        .collect();
    // A dry run changes nothing on the host: no sweep, and state dirs are only listed.
    let new_state_dirs = plan::missing_state_dirs(&loaded.policy, &home, &ws);
    if !a.dry_run {
        sweep_stale_placeholders(&state_dir(&home));
        plan::create_state_dirs(&loaded.policy, &home, &ws);
        let agent = loaded.policy.agent.name.as_deref().unwrap_or("");
        warden_agentstate::prepare_dirs(agent, &home, &loaded.policy.files.protect);
    }
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
        let agent = loaded.policy.agent.name.as_deref().unwrap_or("");
        print!("{}{}", plan.describe(), warden_agentstate::describe(agent));
        for d in &new_state_dirs {
            println!("would create state dir {}", d.display());
        }
        return Ok(exit::OK);
    }
    if features.user_namespaces {
        // A command the view hides fails here, saying why (not as a setup error, exit 4).
        if let Err(e) = plan.resolve_command() {
            return Err(fail(exit::NOT_FOUND, e.to_string()));
        }
        for n in &plan.notes {
            eprintln!("warden: note: {n}");
        }
        let hidden = plan.hidden_path_dirs();
        if !hidden.is_empty() {
            let list: Vec<String> = hidden.iter().map(|d| d.display().to_string()).collect();
            eprintln!(
                "warden: note: on PATH but hidden in the sandbox (files.read shows a directory): {}",
                list.join(", ")
            );
        }
    }
    // State filter (warden-agentstate): the agent works on a copy of ~/.claude.json.
    let agent_state = warden_agentstate::StateSession::start(
        loaded.policy.agent.name.as_deref().unwrap_or(""),
        &home,
        &state_dir(&home),
        &session_id,
    )
    .map_err(|e| fail(exit::INTERNAL, format!("agent state filter: {e}")))?;
    if let Some(s) = &agent_state {
        s.warnings
            .iter()
            .for_each(|w| eprintln!("warden: warning: {w}"));
        s.binds()
            .into_iter()
            .for_each(|(t, c)| plan.bind_copy(t, c));
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
    // Decisions before the sandbox exists are held for the audit store (no threads yet).
    let early = Arc::new(crate::cmd::session::Early::default());
    warden_event::sinks::add(early.clone());
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
    let memory_cgroup =
        warden_sandbox::limits::session_memory(&session_id, &plan, bpf_rules.is_some());
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
    // Before the placeholders: they are not the session's doing.
    let integrity = warden_sandbox::integrity::snapshot(&ws)
        .map_err(|e| tracing::warn!("integrity snapshot of {}: {e}", ws.display()))
        .ok()
        .map(|mut s| {
            warden_sandbox::integrity::snapshot_state(&mut s, &plan.agent_state_dirs());
            s
        });
    let placeholders = launch::make_placeholders(&plan).map_err(|e| fail(exit::WORKSPACE, e))?;
    let private_tmp = plan.private_tmp.clone();
    if let Some(t) = &private_tmp {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(t)
            .map_err(|e| {
                fail(
                    exit::INTERNAL,
                    format!("private TMPDIR {}: {e}", t.display()),
                )
            })?;
    }
    write_manifest(&manifest, &placeholders);
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdin());
    // Network: the agent's namespace has only loopback; a bridge in the sandbox's init hands
    // each connection to 127.0.0.1:3128 to the proxy running here.
    let mut host_bridge = None;
    let (proxy_ctl, init_tasks) = if features.user_namespaces {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| fail(exit::INTERNAL, format!("socketpair: {e}")))?;
        let theirs = std::os::fd::OwnedFd::from(theirs);
        // Plus the host loopback ports the policy allows (local model gateways).
        let gateway = warden_proxy::loopback_gateway_ports(&loaded.policy);
        let task: warden_sandbox::InitTask = Box::new(move || {
            let b = warden_proxy::bridge::bind(warden_proxy::SANDBOX_PORT, &gateway)?;
            Ok(Box::new(move || warden_proxy::bridge::serve_all(b, theirs))
                as Box<dyn FnOnce() + Send>)
        });
        (Some(std::os::fd::OwnedFd::from(mine)), vec![task])
    } else if let Some((l, _)) = host_proxy {
        if let Some(n) = warden_proxy::gateway_unavailable_note(&loaded.policy) {
            eprintln!("{} {n}", misc::warn_stderr("warden: warning:"));
        }
        // The same fd-passing bridge, run by a thread of this process once the sandbox is
        // forked (see `supervise`).
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| fail(exit::INTERNAL, format!("socketpair: {e}")))?;
        host_bridge = Some((l, std::os::fd::OwnedFd::from(theirs)));
        (Some(std::os::fd::OwnedFd::from(mine)), Vec::new())
    } else {
        (None, Vec::new())
    };
    if let Some(g) = guard.as_mut() {
        // Files the agent can write get no cached identity (see WriteScope).
        g.set_write_scope(if features.landlock_abi > 0 {
            warden_execguard::unotify::WriteScope::confined(
                plan.landlock_write.iter().chain(&plan.masks).cloned(),
            )
        } else {
            warden_execguard::unotify::WriteScope::unconfined()
        });
    }
    let plan_pids_max = plan.pids_max as u64;
    // The stop switch: a cgroup v2 leaf per session (freeze/thaw/kill), unless the tree
    // already sits in a pids cgroup or the daemon's cgroup (a process is in one v2 cgroup
    // only); then signals from outside.
    let leaf = if cgroup.is_none() && bpf_rules.is_none() {
        match warden_sandbox::freezer::SessionLeaf::create(&session_id) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::info!("no cgroup v2 leaf for the session ({e}); freeze uses signals");
                None
            }
        }
    } else {
        None
    };
    let running = crate::cmd::session::Running::slot();
    let risk_cfg = warden_risk::RiskConfig::from_section(&loaded.policy.risk)
        .map_err(|e| fail(exit::POLICY, format!("policy: {e}")))?;
    let freeze_timeout = loaded
        .policy
        .risk
        .freeze_timeout_secs
        .filter(|s| *s > 0)
        .map(std::time::Duration::from_secs);
    let audit_start = crate::cmd::session::AuditStart {
        store: warden_audit::default_store_path(&home),
        retention: warden_audit::Retention::with_policy(
            loaded.policy.audit.retention_days,
            loaded.policy.audit.max_mb,
        ),
        info: warden_audit::SessionInfo {
            id: session_id.clone(),
            agent: loaded
                .policy
                .agent
                .name
                .clone()
                .unwrap_or_else(|| a.command[0].clone()),
            profile: loaded.profile.to_string(),
            workspace: ws.display().to_string(),
            command: a.command.join(" "),
            pid: Some(std::process::id() as i64),
            start_ms: warden_audit::time::now_ms(),
        },
        early: early.clone(),
    };
    // Approvals: `ask` actions wait here for a human (control socket, Ctrl-] keys).
    let approvals = warden_session::Approvals::new(loaded.policy.approvals.timeout());
    if let (Some(g), Some(true)) = (guard.as_mut(), loaded.policy.exec.ask_unknown) {
        g.set_approver(Arc::new(crate::cmd::session::ExecApprover(
            approvals.clone(),
        )));
    } else if loaded.policy.exec.ask_unknown == Some(true) {
        eprintln!("warden: note: exec.ask_unknown needs the seccomp exec guard; unknown content is denied without asking");
    }
    let on_launch = crate::cmd::session::on_launch(
        risk_cfg,
        freeze_timeout,
        &state_dir(&home),
        &session_id,
        leaf.as_ref().map(|l| l.path.clone()),
        running.clone(),
        audit_start,
        approvals.clone(),
    );
    let l = Launch {
        rlimit_nproc: if cgroup.is_none() && pid_max.is_none() && bpf_rules.is_none() {
            Some(plan.pids_max as u64)
        } else {
            None
        },
        pid_max,
        inherit_fd: Some(hook_w),
        cgroup_procs: cgroup
            .as_ref()
            .map(|c| c.path.join("cgroup.procs"))
            .or_else(|| leaf.as_ref().map(|l| l.procs())),
        memory_cgroup_procs: memory_cgroup.as_ref().map(|c| c.procs()),
        best_effort: a.best_effort,
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
        gateway: features.user_namespaces,
        approver: Arc::new(crate::cmd::session::ProxyApprover(approvals)),
    };
    let pids_max = plan_pids_max;
    let watch = warden_sandbox::limits::Watch {
        agent_pid: 0,
        tmpfs: l.plan.limits.tmpfs.clone(),
        memory: memory_cgroup
            .as_ref()
            .map(|c| (c.path.clone(), c.v2, c.max)),
    };
    let result = supervise(
        l,
        tty,
        guard,
        bpf_rules.map(|r| (r, session_id.clone(), pids_max)),
        proxy,
        on_launch,
        watch,
        Some(crate::cmd::session::escape_handler(running.clone())),
    );
    let risk = crate::cmd::session::finish(
        &running,
        a.quiet,
        &session_id,
        result.as_ref().ok().copied(),
    );
    drop(leaf);
    drop(memory_cgroup);
    launch::remove_placeholders(&placeholders);
    if let Some(t) = &private_tmp {
        // remove_dir_all never follows symlinks (openat + O_NOFOLLOW, unlinkat).
        let _ = std::fs::remove_dir_all(t);
    }
    let _ = std::fs::remove_file(&manifest);
    if let Some(before) = &integrity {
        report_integrity(before, &ws, &who);
    }
    if let Some(s) = agent_state {
        eprint!("{}", s.finish().render(&session_id));
    }
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
    Ok(risk.map_or(code, |r| r.exit_code(code)))
}

/// The end-of-session integrity report: on stderr for the human, and in the session log.
fn report_integrity(before: &warden_sandbox::integrity::Snapshot, ws: &Path, who: &str) {
    let r = warden_sandbox::integrity::compare(before, ws);
    eprint!("{}", r.render());
    if !r.entries.is_empty() || r.incomplete {
        Decision::new(
            Layer::Sandbox,
            who,
            "workspace",
            "integrity",
            Verdict::Observe,
            format!(
                "{} file(s) host tools run or load were created or changed",
                r.entries.len()
            ),
        )
        .with("integrity", serde_json::to_value(&r).unwrap_or_default())
        .emit();
    }
}

/// Records the placeholders of a session (and the supervisor's pid) so that a later run can
/// remove them if this supervisor is killed before it cleans up.
fn write_manifest(path: &Path, made: &[warden_sandbox::placeholder::Placeholder]) {
    warden_sandbox::placeholder::write_manifest(path, made)
}

/// Removes (still empty) placeholders left by sessions whose supervisor is gone.
fn sweep_stale_placeholders(state: &Path) {
    warden_sandbox::placeholder::sweep_stale(&state.join("placeholders"))
}

/// The agent's install directory when it lives under `$HOME` (which the sandbox replaces
/// with a private tmpfs), plus the command path itself when it is a symlink there, so e.g.
/// `~/.local/bin/claude -> ~/.local/share/claude/versions/X` keeps working
/// (see `warden_sandbox::resolve::install_dir`).
fn agent_install_dir(
    cmd: &str,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    home: &Path,
) -> Option<Vec<PathBuf>> {
    let p = launch::resolve_command(cmd, env).ok()?;
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir().ok()?.join(p)
    };
    let real = warden_sandbox::resolve::chain(&p)?.target;
    let dir = warden_sandbox::resolve::install_dir(&real, home)?;
    Some(if p != real && p.starts_with(home) {
        vec![dir, p]
    } else {
        vec![dir]
    })
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
    /// The bridge forwards allowed host loopback ports (network namespace only).
    gateway: bool,
    /// `[network] ask` hosts wait here for a human.
    approver: Arc<dyn warden_proxy::server::Approver>,
}

fn supervise(
    l: Launch,
    tty: bool,
    guard: Option<Guard>,
    bpf: Option<(ExecRules, String, u64)>,
    proxy: ProxyStart,
    on_launch: crate::cmd::session::OnLaunch,
    mut watch: warden_sandbox::limits::Watch,
    mut escape: Option<warden_sandbox::pty::EscapeHandler>,
) -> anyhow::Result<i32> {
    let mut session = launch(l).map_err(|e| {
        let hint = if e.starts_with("namespaces") {
            "\nthis machine cannot create the sandbox's namespaces; `warden doctor` explains, `--best-effort` runs without them"
        } else {
            ""
        };
        if let Some(why) = e.strip_prefix("exec: ") {
            return fail(exit::NOT_FOUND, why.to_string());
        }
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
    // Threads may start from here on (they inherit the mask): the risk monitor and the
    // session's control socket.
    on_launch(session.stage1_pid);
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
    // Hook decisions from inside: bounded frames, rate-limited, counted (warden_event::relay).
    let hook_relay = warden_event::relay::spawn(proxy.hook_events);
    if let Some((l, theirs)) = proxy.host_bridge {
        std::thread::spawn(move || warden_proxy::bridge::serve(l, theirs));
    }
    let _proxy = match proxy.ctl {
        Some(ctl) => Some(
            warden_proxy::start(
                &proxy.policy,
                warden_proxy::ProxyOptions {
                    hosts_file: proxy.hosts_file,
                    loopback_gateway: proxy.gateway,
                    approver: Some(proxy.approver),
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
    let out = session
        .pty_master
        .as_ref()
        .map(|m| warden_sandbox::pty::relay_with(m, escape.take()));
    watch.agent_pid = session.agent_pid;
    let monitor = warden_sandbox::limits::Monitor::start(watch);
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
        // The agent's own execve failing is not a missing kernel feature: report it as a
        // shell would (127 not found, 126 not executable).
        if let Some(why) = e.strip_prefix("exec: ") {
            let code = if why.contains("os error 13") {
                126
            } else {
                exit::NOT_FOUND
            };
            return Err(fail(code, format!("cannot run {why}")));
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
    session.join_output();
    monitor.finish();
    drop(raw);
    // The sandbox is gone: the pipe closes and the relay writes its drop counts.
    hook_relay.finish(std::time::Duration::from_secs(2));
    Ok(code)
}
