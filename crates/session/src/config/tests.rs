//! `SessionConfig::resolve` over a matrix of machines: pure, no host state.

use super::*;

fn loaded() -> Loaded {
    warden_policy::load(&warden_policy::LoadOptions {
        home: PathBuf::from("/home/u"),
        skip_machine_and_user: true,
        ..Default::default()
    })
    .expect("builtin policy loads")
}

/// A machine that delivers everything (user namespaces, Landlock ABI 6, cgroup v2).
fn full() -> HostFeatures {
    HostFeatures {
        sandbox: Features {
            kernel: "6.8.0".into(),
            landlock_abi: 6,
            seccomp: true,
            seccomp_user_notif: true,
            user_namespaces: true,
            userns_error: None,
            cgroup_pids: Some("cgroup2:/sys/fs/cgroup/user.slice".into()),
            cgroup_memory: Some("cgroup2:/sys/fs/cgroup/user.slice".into()),
            fanotify: false,
            nested: false,
            uid: 1000,
        },
        pidns_pid_max: false,
        warden_env: false,
        daemon: None,
    }
}

fn opts() -> RunOptions {
    RunOptions {
        workspace: PathBuf::from("/home/u/proj"),
        home: PathBuf::from("/home/u"),
        command: vec!["claude".into(), "-p".into()],
        session_id: "s1".into(),
        best_effort: false,
        allow_broad_workspace: false,
        exec_guard: ExecChoice::Auto,
        no_index: false,
        proxy_hosts_file: None,
        quiet: false,
        verbose: 0,
    }
}

fn resolve(h: &HostFeatures, o: &RunOptions) -> Result<SessionConfig, ConfigError> {
    SessionConfig::resolve(&loaded(), h, o)
}

#[test]
fn full_machine_seccomp_backend() {
    let c = resolve(&full(), &opts()).expect("resolves");
    assert_eq!(c.exec, ExecBackend::Seccomp);
    assert_eq!(c.pids, PidLimit::PidsCgroup);
    assert_eq!(c.freezer, FreezerPlan::Signals);
    assert!(matches!(c.proxy, ProxyMode::NetnsBridge { .. }));
    assert_eq!(
        c.landlock,
        LandlockConfig {
            abi: 6,
            hard: true,
            connect: ConnectScope::Namespace
        }
    );
    assert!(c.missing.is_empty());
    assert!(c.notices.is_empty(), "{:?}", c.notices);
    assert_eq!(c.audit.info.command, "claude -p");
    assert_eq!(c.state_dir, PathBuf::from("/home/u/.local/state/warden"));
    let d = c.describe();
    assert!(d.contains("network allow"), "{d}");
    assert!(d.contains("127.0.0.1:3128"), "{d}");
}

#[test]
fn broad_workspace_refused_unless_allowed() {
    for ws in ["/", "/home", "/home/u"] {
        let mut o = opts();
        o.workspace = PathBuf::from(ws);
        let e = resolve(&full(), &o).expect_err(ws);
        assert_eq!(e.kind(), ErrorKind::Workspace);
        assert!(e.to_string().contains("--allow-broad-workspace"));
        o.allow_broad_workspace = true;
        assert!(resolve(&full(), &o).is_ok());
    }
}

/// Review F10: a workspace inside warden's own directories would let the agent write its
/// policy, state, audit store or index. Refused, whatever flag is given.
#[test]
fn workspace_inside_wardens_own_directories_refused() {
    for ws in [
        "/home/u/.local/state/warden",
        "/home/u/.local/state/warden/sessions",
        "/home/u/.config/warden",
        "/home/u/.config/warden/projects/x",
        "/home/u/.local/share/warden",
        "/etc/warden",
        "/var/lib/warden/x",
    ] {
        let mut o = opts();
        o.workspace = PathBuf::from(ws);
        for broad in [false, true] {
            o.allow_broad_workspace = broad;
            let e = resolve(&full(), &o).expect_err(ws);
            assert_eq!(e.kind(), ErrorKind::Workspace);
            assert!(
                e.to_string().contains("inside warden's own directory"),
                "{ws}: {e}"
            );
        }
    }
    for ws in [
        "/home/u/.config/warden-projects",
        "/home/u/proj/.config/warden",
    ] {
        let mut o = opts();
        o.workspace = PathBuf::from(ws);
        assert!(resolve(&full(), &o).is_ok(), "{ws}");
    }
}

#[test]
fn pidns_pid_max_wins_and_keeps_a_leaf() {
    let mut h = full();
    h.pidns_pid_max = true;
    let c = resolve(&h, &opts()).expect("resolves");
    assert_eq!(c.pids, PidLimit::PidNamespace);
    assert_eq!(c.freezer, FreezerPlan::CgroupLeaf);
}

#[test]
fn no_pids_cgroup_means_rlimit_and_leaf() {
    let mut h = full();
    h.sandbox.cgroup_pids = None;
    let c = resolve(&h, &opts()).expect("resolves");
    assert_eq!(c.pids, PidLimit::RlimitNproc);
    assert_eq!(c.freezer, FreezerPlan::CgroupLeaf);
}

#[test]
fn cgroup_v1_pids_cgroup_is_used_and_freezes_by_signals() {
    let mut h = full();
    h.sandbox.cgroup_pids = Some("cgroup1:/sys/fs/cgroup/pids".into());
    let c = resolve(&h, &opts()).expect("resolves");
    assert_eq!(c.pids, PidLimit::PidsCgroup);
    assert_eq!(c.freezer, FreezerPlan::Signals);
}

#[test]
fn bpf_backend_when_the_daemon_answers() {
    let mut h = full();
    h.daemon = Some(Ok(()));
    let c = resolve(&h, &opts()).expect("resolves");
    assert_eq!(c.exec, ExecBackend::Bpf);
    assert_eq!(c.pids, PidLimit::DaemonCgroup);
    assert_eq!(c.freezer, FreezerPlan::Signals);
    // pid_max still wins, but the tree lives in the daemon's cgroup: no leaf.
    h.pidns_pid_max = true;
    let c = resolve(&h, &opts()).expect("resolves");
    assert_eq!(c.pids, PidLimit::PidNamespace);
    assert_eq!(c.freezer, FreezerPlan::Signals);
}

#[test]
fn bpf_required_without_daemon_is_unsupported() {
    let mut h = full();
    h.daemon = Some(Err("connect: no such file".into()));
    let mut o = opts();
    o.exec_guard = ExecChoice::Bpf;
    let e = resolve(&h, &o).expect_err("no daemon");
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("no such file"));
    // auto falls back to seccomp
    o.exec_guard = ExecChoice::Auto;
    assert_eq!(resolve(&h, &o).expect("auto").exec, ExecBackend::Seccomp);
}

#[test]
fn exec_guard_off_warns() {
    let mut o = opts();
    o.exec_guard = ExecChoice::Off;
    let c = resolve(&full(), &o).expect("resolves");
    assert_eq!(c.exec, ExecBackend::OffByFlag);
    assert!(matches!(&c.notices[..], [Notice::Warn(w)] if w.contains("--exec-guard off")));
}

#[test]
fn no_userns_refused_without_best_effort() {
    let mut h = full();
    h.sandbox.user_namespaces = false;
    h.sandbox.userns_error = Some("EPERM".into());
    let e = resolve(&h, &opts()).expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    let m = e.to_string();
    assert!(m.contains("missing: credentials"), "{m}");
    assert!(m.contains("user namespaces: EPERM"), "{m}");
    assert!(m.contains("nothing was run"), "{m}");
}

#[test]
fn no_userns_best_effort_uses_host_loopback_proxy() {
    let mut h = full();
    h.sandbox.user_namespaces = false;
    let mut o = opts();
    o.best_effort = true;
    let c = resolve(&h, &o).expect("best effort");
    assert!(!c.missing.is_empty());
    assert_eq!(c.proxy, ProxyMode::HostLoopback);
    assert_eq!(c.landlock.connect, ConnectScope::ProxyPortOnly);
    // best effort never demands every Landlock right
    assert!(!c.landlock.hard);
    assert!(c
        .notices
        .iter()
        .any(|n| matches!(n, Notice::Warn(w) if w.starts_with("this machine cannot deliver"))));
}

#[test]
fn landlock_abi_matrix() {
    for (abi, hard, proxy) in [
        (0, false, ProxyMode::None),
        (4, false, ProxyMode::HostLoopback),
        (6, false, ProxyMode::HostLoopback),
    ] {
        let mut h = full();
        h.sandbox.user_namespaces = false;
        h.sandbox.landlock_abi = abi;
        let mut o = opts();
        o.best_effort = true;
        let c = resolve(&h, &o).expect("best effort");
        assert_eq!(c.landlock.abi, abi);
        assert_eq!(c.landlock.hard, hard, "abi {abi}");
        assert_eq!(c.proxy, proxy, "abi {abi}");
    }
    // With namespaces, ABI 4 runs too; without --best-effort both are hard.
    for (abi, hard) in [(4, true), (6, true)] {
        let mut h = full();
        h.sandbox.landlock_abi = abi;
        let c = resolve(&h, &opts()).expect("resolves");
        assert_eq!(c.landlock.hard, hard, "abi {abi}");
    }
    // ABI 0 with namespaces: writes cannot be confined, refused.
    let mut h = full();
    h.sandbox.landlock_abi = 0;
    assert_eq!(
        resolve(&h, &opts()).expect_err("abi 0").kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn nested_in_warden_turns_the_guard_off_and_runs() {
    let mut h = full();
    h.sandbox.nested = true;
    h.sandbox.user_namespaces = false;
    h.warden_env = true;
    let c = resolve(&h, &opts()).expect("nested runs without --best-effort");
    assert!(c.nested_in_warden);
    assert_eq!(c.exec, ExecBackend::OffNested);
    assert!(
        matches!(&c.notices[0], Notice::Note(n) if n.starts_with("nested in a warden sandbox"))
    );
    assert!(c
        .notices
        .iter()
        .any(|n| matches!(n, Notice::Warn(w) if w.contains("running inside another sandbox"))));
    // nested in something else: guard stays on
    h.warden_env = false;
    let c = resolve(&h, &opts()).expect("nested elsewhere");
    assert!(!c.nested_in_warden);
    assert_eq!(c.exec, ExecBackend::Seccomp);
}

#[test]
fn network_allowlist_and_gateway_ports_are_described() {
    let mut l = loaded();
    l.policy.network.allow = vec!["example.org".into(), "127.0.0.1:11434".into()];
    let c = SessionConfig::resolve(&l, &full(), &opts()).expect("resolves");
    match &c.proxy {
        ProxyMode::NetnsBridge { gateway_ports } => assert_eq!(gateway_ports, &vec![11434]),
        p => panic!("{p:?}"),
    }
    let d = c.describe();
    assert!(d.contains("example.org"), "{d}");
    assert!(d.contains("gateway   host loopback ports 11434"), "{d}");
}

#[test]
fn risk_config_and_freeze_timeout() {
    let mut l = loaded();
    l.policy.risk.freeze_timeout_secs = Some(0);
    let c = SessionConfig::resolve(&l, &full(), &opts()).expect("0 means none");
    assert_eq!(c.freeze_timeout, None);
    l.policy.risk.freeze_timeout_secs = Some(30);
    let c = SessionConfig::resolve(&l, &full(), &opts()).expect("30 s");
    assert_eq!(c.freeze_timeout, Some(Duration::from_secs(30)));
    l.policy.risk.warn_at = Some(f64::NAN);
    let e = SessionConfig::resolve(&l, &full(), &opts()).expect_err("NaN");
    assert_eq!(e.kind(), ErrorKind::Policy);
}
