use super::*;

fn dec(layer: Layer, who: &str, what: &str, rule: &str, v: Verdict) -> Decision {
    let mut d = Decision::new(layer, who, what, rule, v, "test");
    d.session = "s".into();
    d
}

fn exec_deny(who: &str, what: &str, kind: &str) -> Decision {
    dec(Layer::Exec, who, what, "exec.deny:curl", Verdict::Deny).with("kind", kind)
}

fn proxy_deny(host: &str) -> Decision {
    dec(
        Layer::Proxy,
        "agent",
        &format!("CONNECT {host}:443"),
        "network.default",
        Verdict::Deny,
    )
    .with("host", host)
}

fn allow(layer: Layer, what: &str) -> Decision {
    dec(layer, "agent", what, "files.read", Verdict::Allow)
}

#[test]
fn defaults_validate() {
    RiskConfig::default().validate().unwrap();
    let mut c = RiskConfig::default();
    c.weights.evasion = -1.0;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("risk.weights.evasion"));
    let c = RiskConfig {
        warn_at: 500.0,
        ..Default::default()
    };
    assert!(c.validate().is_err());
    let c = RiskConfig {
        half_life_secs: 0.0,
        ..Default::default()
    };
    assert!(c.validate().is_err());
}

#[test]
fn evasion_shapes_are_classified() {
    let mut h = History::default();
    let s = |d: &Decision, h: &mut History| {
        classify(d, 0.0, h)
            .into_iter()
            .map(|x| x.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        s(&exec_deny("pid 3 (bash)", "/usr/bin/curl", "exec"), &mut h),
        vec![Signal::ExecDeny]
    );
    let copy = s(&exec_deny("pid 4 (bash)", "/tmp/c", "exec"), &mut h);
    assert!(copy.contains(&Signal::Evasion) && copy.contains(&Signal::RespelledRetry));
    // A copy that keeps the name (attack review 104): an evasion too, once another place
    // was refused; the same place again is a plain retry of a denial.
    let same_name = s(&exec_deny("pid 8 (bash)", "/tmp/a/curl", "exec"), &mut h);
    assert!(same_name.contains(&Signal::Evasion), "{same_name:?}");
    let again = s(&exec_deny("pid 9 (bash)", "/tmp/a/curl", "exec"), &mut h);
    assert_eq!(again, vec![Signal::ExecDeny]);
    let mut h = History::default();
    assert_eq!(
        s(
            &exec_deny("pid 5 (ld-linux-x86-64)", "/tmp/c", "mmap"),
            &mut h
        ),
        vec![Signal::Evasion]
    );
    let mut h = History::default();
    assert_eq!(
        s(
            &exec_deny("pid 6 (python3)", "/usr/bin/curl", "exec"),
            &mut h
        ),
        vec![Signal::Evasion]
    );
    let mut h = History::default();
    assert_eq!(
        s(
            &exec_deny("pid 7 (bash)", "memfd:x (deleted)", "exec"),
            &mut h
        ),
        vec![Signal::Evasion]
    );
    let mut h = History::default();
    let cred = dec(
        Layer::Gate,
        "claude",
        "Read ~/.ssh/id_ed25519",
        "files.deny",
        Verdict::Deny,
    );
    let got = s(&cred, &mut h);
    assert!(got.contains(&Signal::CredentialProbe) && got.contains(&Signal::GateDeny));
}

#[test]
fn allowed_decisions_add_nothing() {
    let mut e = RiskEngine::new(RiskConfig::default());
    for i in 0..10_000 {
        let u = e.observe(i as f64 * 0.01, &allow(Layer::Exec, "/usr/bin/cc"));
        assert_eq!(u.delta, 0.0);
    }
    assert_eq!(e.score_at(100.0), 0.0);
    assert_eq!(e.level(), Level::Normal);
}

/// A benign session: a build, tests, git, an npm install with a few refused telemetry hosts,
/// a couple of gate asks, the odd tool failure. It must never reach warn_at.
#[test]
fn benign_session_never_warns() {
    let mut e = RiskEngine::new(RiskConfig::default());
    let mut t = 0.0;
    for i in 0..2000 {
        t += 0.5;
        e.observe(t, &allow(Layer::Exec, "/usr/bin/cc"));
        if i % 200 == 0 {
            e.observe(t, &proxy_deny(&format!("telemetry{}.example.com", i / 200)));
        }
        if i % 500 == 0 {
            e.observe(
                t,
                &dec(
                    Layer::Gate,
                    "claude",
                    "rm -rf build",
                    "gate.ask",
                    Verdict::Ask,
                ),
            );
        }
        if i % 300 == 0 {
            let d = dec(Layer::Gate, "claude", "Bash", "gate.post", Verdict::Observe)
                .with("event", "PostToolUseFailure")
                .with("reported_by", "warden hook");
            e.observe(t, &d);
        }
        assert_eq!(
            e.level(),
            Level::Normal,
            "warned at step {i}: {}",
            e.score_at(t)
        );
    }
    // npm install's burst of refusals: 8 new hosts at once stays under warn.
    for k in 0..8 {
        e.observe(t, &proxy_deny(&format!("cdn{k}.example.net")));
    }
    assert_eq!(e.level(), Level::Normal, "score {}", e.score_at(t));
}

/// The evasion corpus in one session reaches freeze before its fifth evasion.
#[test]
fn evasion_corpus_freezes_before_the_fifth() {
    let corpus = [
        exec_deny("pid 2 (bash)", "/usr/bin/curl", "exec"),
        exec_deny("pid 3 (bash)", "/proc/self/root/usr/bin/curl", "exec"),
        exec_deny("pid 4 (bash)", "/tmp/x/curl2", "exec"),
        exec_deny("pid 5 (python3)", "/usr/bin/curl", "exec"),
        exec_deny("pid 6 (ld-linux-x86-64)", "/tmp/x/curl2", "mmap"),
        exec_deny("pid 7 (bash)", "memfd:c (deleted)", "exec"),
    ];
    let mut e = RiskEngine::new(RiskConfig::default());
    let mut frozen_at = None;
    for (i, d) in corpus.iter().enumerate() {
        let u = e.observe(i as f64, d);
        if u.transition == Some(Level::Freeze) || u.transition == Some(Level::Kill) {
            frozen_at.get_or_insert(i);
        }
    }
    // Index 0 is the plain denial; evasions are 1..; frozen before the fifth evasion.
    let at = frozen_at.expect("never froze");
    assert!(at < 5, "froze at event {at}");
    assert!(e.level() >= Level::Freeze);
}

#[test]
fn claims_only_add_and_decay_lowers() {
    let mut e = RiskEngine::new(RiskConfig::default());
    let d = exec_deny("pid 4 (bash)", "/tmp/c", "exec");
    e.observe(0.0, &d);
    let s0 = e.score_at(0.0);
    assert!(s0 > 0.0);
    // A claim saying "all is fine" (allow verdicts, any fields) never lowers the score.
    for _ in 0..100 {
        let c = dec(Layer::Gate, "claude", "ok", "gate.allow", Verdict::Allow)
            .with("reported_by", "warden hook")
            .with("risk", -1000);
        e.observe(0.0, &c);
    }
    assert_eq!(e.score_at(0.0), s0);
    // One half-life halves it.
    let hl = e.config().half_life_secs;
    assert!((e.score_at(hl) - s0 / 2.0).abs() < 1e-9);
}

#[test]
fn level_only_rises_until_a_human_resets() {
    let mut e = RiskEngine::new(RiskConfig::default());
    let mut t = 0.0;
    while e.level() < Level::Freeze {
        t += 1.0;
        e.observe(
            t,
            &exec_deny("pid 5 (python3)", &format!("/tmp/c{t}"), "exec"),
        );
    }
    // Decay far below every threshold: still frozen.
    let later = t + 100_000.0;
    assert!(e.score_at(later) < 1.0);
    e.observe(later, &allow(Layer::Exec, "/usr/bin/true"));
    assert_eq!(e.level(), Level::Freeze);
    // A human thaws: back to normal; a single new denial does not refreeze at once.
    e.human_reset(t);
    let u = e.observe(t + 1.0, &exec_deny("pid 9 (bash)", "/usr/bin/curl", "exec"));
    assert_ne!(u.transition, Some(Level::Freeze));
}

#[test]
fn network_burst_and_new_hosts() {
    let mut e = RiskEngine::new(RiskConfig::default());
    let mut burst = 0;
    let mut newh = 0;
    for i in 0..BURST_COUNT * 2 {
        let u = e.observe(i as f64 * 0.1, &proxy_deny("evil.example.com"));
        for c in u.contributions {
            match c.signal {
                Signal::NetRefusalBurst => burst += 1,
                Signal::NetRefusalNewHost => newh += 1,
                _ => {}
            }
        }
    }
    assert_eq!(newh, 1, "a host counts as new once");
    assert_eq!(burst, 1, "one burst per window");
}

#[test]
fn top_explains_the_score() {
    let mut e = RiskEngine::new(RiskConfig::default());
    e.observe(0.0, &proxy_deny("a.example"));
    e.observe(1.0, &exec_deny("pid 6 (ld-linux-x86-64)", "/tmp/x", "mmap"));
    let top = e.top(1.0, 10);
    assert_eq!(top[0].0.signal, Signal::Evasion);
    assert!(top[0].0.reason.contains("mapped executable"));
    assert_eq!(top.len(), 2);
}

#[test]
fn drift_and_subagents_from_claims() {
    let mut e = RiskEngine::new(RiskConfig::default());
    let pre = |tool: &str| {
        dec(Layer::Gate, "claude", tool, "gate.defer", Verdict::Allow)
            .with("tool", tool)
            .with("event", "PreToolUse")
            .with("reported_by", "warden hook")
    };
    let mut signals = Vec::new();
    for _ in 0..10 {
        signals.extend(e.observe(0.0, &pre("Read")).contributions);
    }
    for _ in 0..5 {
        signals.extend(e.observe(0.0, &pre("Task")).contributions);
    }
    for _ in 0..10 {
        signals.extend(e.observe(0.0, &pre("WebFetch")).contributions);
    }
    assert!(signals.iter().any(|c| c.signal == Signal::ClaimDrift));
    assert_eq!(
        signals
            .iter()
            .filter(|c| c.signal == Signal::ClaimSubagents)
            .count(),
        2
    );
    assert!(signals.iter().all(|c| c.claim));
}

#[test]
fn hostile_decisions_do_not_panic() {
    let mut e = RiskEngine::new(RiskConfig::default());
    let long = "x".repeat(1 << 16);
    for i in 0..6_000 {
        let d = dec(
            Layer::Exec,
            "pid (",
            &format!("{long}{i}"),
            &format!("exec.deny:{i}"),
            Verdict::Deny,
        );
        e.observe(i as f64, &d);
    }
    assert!(e.top(0.0, 10).iter().all(|(c, _)| c.what.len() <= 256));
}

#[test]
fn policy_defaults_match_the_engine() {
    let w = serde_json::to_value(Weights::default()).unwrap();
    let obj = w.as_object().unwrap();
    assert_eq!(obj.len(), warden_policy::risk::DEFAULT_WEIGHTS.len());
    for (k, v) in warden_policy::risk::DEFAULT_WEIGHTS {
        assert_eq!(obj.get(*k).and_then(|x| x.as_f64()), Some(*v), "{k}");
    }
    let c = RiskConfig::default();
    assert_eq!(
        warden_policy::RISK_DEFAULTS,
        (c.warn_at, c.freeze_at, c.kill_at, c.half_life_secs)
    );
}

#[test]
fn config_from_policy_section() {
    let p = warden_policy::Policy::parse(
        "[risk]\nfreeze_at = 80\n[risk.weights]\nevasion = 60\n",
        "p.toml",
    )
    .unwrap();
    let c = RiskConfig::from_section(&p.risk).unwrap();
    assert_eq!(c.freeze_at, 80.0);
    assert_eq!(c.weights.evasion, 60.0);
    let p = warden_policy::Policy::parse("[risk.weights]\nnope = 1\n", "p.toml").unwrap();
    assert!(matches!(
        RiskConfig::from_section(&p.risk),
        Err(RiskError::UnknownSignal(k)) if k == "nope"
    ));
    // A workspace file may not switch the score off or lower a weight.
    let mut base = warden_policy::Policy::parse("", "base").unwrap();
    for bad in [
        "[risk]\nenabled = false\n",
        "[risk]\nfreeze_at = 1000\n",
        "[risk.weights]\nevasion = 1\n",
        "[risk]\nkill_at = 0\n",
    ] {
        let ws = warden_policy::Policy::parse(bad, "ws").unwrap();
        assert!(base.narrow(&ws, "ws").is_err(), "{bad}");
    }
    let ws = warden_policy::Policy::parse("[risk]\nfreeze_at = 60\n", "ws").unwrap();
    base.narrow(&ws, "ws").unwrap();
    assert_eq!(base.risk.freeze_at, Some(60.0));
}

#[test]
fn advisor_records_move_the_score_only_by_the_supervisors_deny() {
    let s = |d: &Decision, h: &mut History| {
        classify(d, 0.0, h)
            .into_iter()
            .map(|x| x.0)
            .collect::<Vec<_>>()
    };
    let mut h = History::default();
    let consult = |v: Verdict| {
        dec(
            Layer::Gate,
            "advisor",
            "rm -rf build",
            "advisor.destructive_files",
            v,
        )
        .with("tool", "Bash")
        .with("source", "model")
    };
    // The supervisor's consultation records: only a deny is a signal.
    assert_eq!(
        s(&consult(Verdict::Deny), &mut h),
        vec![Signal::AdvisorDeny]
    );
    for v in [Verdict::Ask, Verdict::Allow, Verdict::Observe] {
        assert_eq!(s(&consult(v), &mut h), vec![], "{v:?}");
    }
    // The hook's record of the applied answer (a claim, rule `advisor`): never a signal,
    // neither its deny (counted once, above) nor its ask (not a GateAsk), and it feeds no
    // tool-pattern claims.
    for v in [Verdict::Deny, Verdict::Ask, Verdict::Allow] {
        let d = dec(
            Layer::Gate,
            "warden hook (advisor)",
            "rm -rf build",
            "advisor",
            v,
        )
        .with("tool", "Task")
        .with("reported_by", "warden hook");
        assert_eq!(s(&d, &mut h), vec![], "{v:?}");
    }
    assert_eq!(h.subagents, 0);
    // A forged claim with a consultation rule does not score either.
    let forged = consult(Verdict::Deny).with("reported_by", "warden hook");
    assert_eq!(s(&forged, &mut h), vec![]);
    // The rules' own records are unchanged.
    let gate = dec(
        Layer::Gate,
        "claude",
        "curl x",
        "gate.dynamic",
        Verdict::Ask,
    );
    assert_eq!(s(&gate, &mut h), vec![Signal::GateAsk]);
}

/// Attack review 102: one ctypes callback in allowlist mode (libffi: anonymous memory, then
/// a memfd, then ~25 deleted temporary files, each refused) froze the session. Such refusals
/// count once per program and rule; a memfd run as a program stays an evasion.
#[test]
fn code_from_no_file_counts_once_per_program() {
    let mut h = History::default();
    let mut signals = Vec::new();
    let anon = dec(
        Layer::Exec,
        "pid 7 (python3)",
        "anonymous code of /usr/bin/python3.11",
        "exec.anonymous_code",
        Verdict::Deny,
    )
    .with("kind", "mmap");
    signals.extend(classify(&anon, 0.0, &mut h));
    signals.extend(classify(&anon, 0.1, &mut h));
    for i in 0..25 {
        let d = dec(
            Layer::Exec,
            "pid 7 (python3)",
            &format!("/tmp/#{i} (deleted)"),
            "exec.allow_memfd",
            Verdict::Deny,
        )
        .with("kind", "mmap");
        signals.extend(classify(&d, 0.2, &mut h));
    }
    let kinds: Vec<Signal> = signals.iter().map(|s| s.0).collect();
    assert_eq!(
        kinds,
        vec![Signal::ExecDeny, Signal::ExecDeny],
        "{signals:?}"
    );
    // Another program counts again; a memfd exec is an evasion.
    let grep = dec(
        Layer::Exec,
        "pid 8 (grep)",
        "anonymous code of /usr/bin/grep",
        "exec.anonymous_code",
        Verdict::Deny,
    )
    .with("kind", "mmap");
    assert_eq!(classify(&grep, 1.0, &mut h).len(), 1);
    let exec = dec(
        Layer::Exec,
        "pid 9 (sh)",
        "/memfd:x (deleted)",
        "exec.allow_memfd",
        Verdict::Deny,
    )
    .with("kind", "exec");
    assert_eq!(classify(&exec, 1.0, &mut h)[0].0, Signal::Evasion);
}
