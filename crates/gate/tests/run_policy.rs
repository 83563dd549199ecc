//! The gate's answers for issue 11 §5 / issue 12 frictions: defer instead of allow, an ask
//! that speaks to the human, Codex without ask, WHATWG URLs, paths resolved before judging,
//! session file rules equal to the sandbox's, hashing capped by size, install options.

use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use warden_gate::install::{self, Options, Scope};
use warden_gate::judge::{Answer, Ctx};
use warden_gate::protocol::{handle, render, Agent, HookEnv};

fn policy() -> warden_policy::Policy {
    let mut p = warden_policy::load::resolve_profile("claude", None, &mut Vec::new()).unwrap();
    p.exec.deny = vec!["curl".into()];
    p.network.allow.push("example.com".into());
    p
}

fn ctx(p: &warden_policy::Policy) -> Ctx<'_> {
    Ctx::new(
        p,
        "/home/dev/project".into(),
        "/home/dev".into(),
        false,
        std::sync::Arc::new(warden_execguard::cache::Cache::default()),
    )
}

fn pre(agent: Agent, tool: &str, input: Value) -> Vec<u8> {
    let ev = if agent == Agent::Gemini {
        "BeforeTool"
    } else {
        "PreToolUse"
    };
    json!({"session_id": "s", "cwd": "/home/dev/project", "hook_event_name": ev, "tool_name": tool, "tool_input": input}).to_string().into_bytes()
}

#[test]
fn no_objection_defers_instead_of_allowing() {
    let p = policy();
    let env = HookEnv {
        policy: &p,
        home: "/home/dev".into(),
        headless: false,
        cache: std::sync::Arc::new(warden_execguard::cache::Cache::default()),
        session: None,
        pinned: Vec::new(),
    };
    for (agent, tool) in [
        (Agent::Claude, "Bash"),
        (Agent::Codex, "Bash"),
        (Agent::Gemini, "run_shell_command"),
    ] {
        let out = handle(agent, &pre(agent, tool, json!({"command": "ls -la"})), &env);
        assert_eq!(out.code, 0, "{agent:?}");
        assert!(!out.stdout.contains("allow"), "{agent:?}: {}", out.stdout);
        let expected = if agent == Agent::Gemini { "{}" } else { "" };
        assert_eq!(out.stdout, expected, "{agent:?}");
    }
}

#[test]
fn ask_speaks_to_the_human_and_codex_gets_a_deny() {
    let p = policy();
    let j = ctx(&p).judge_tool("mcp__srv__tool", &json!({}));
    assert_eq!(j.answer, Answer::Ask);
    let m = j.message();
    assert!(m.starts_with("warden asks you to confirm: "), "{m}");
    assert!(!m.contains("stop and ask the user"), "{m}");
    let claude = render(Agent::Claude, "PreToolUse", &j);
    let o: Value = serde_json::from_str(&claude.stdout).unwrap();
    assert_eq!(o["hookSpecificOutput"]["permissionDecision"], "ask");
    assert_eq!(claude.code, 0);
    let codex = render(Agent::Codex, "PreToolUse", &j);
    assert_eq!(codex.code, 2, "Codex cannot ask: {codex:?}");
    assert!(
        codex.stderr.contains("Codex hooks cannot ask"),
        "{}",
        codex.stderr
    );
}

#[test]
fn urls_are_parsed_as_the_fetcher_parses_them() {
    let p = policy();
    let c = ctx(&p);
    let fetch = |u: &str| c.judge_tool("WebFetch", &json!({"url": u, "prompt": "x"}));
    assert_eq!(fetch("https://example.com/docs").answer, Answer::Allow);
    // Userinfo is not the host: this one really goes to example.com.
    assert_eq!(
        fetch("https://evil.com%2f@example.com/").answer,
        Answer::Allow
    );
    for evil in [
        "https://evil.com\\@example.com/",
        "https://evil.com\\\\@example.com/",
        "https://example.com@evil.com/",
        "https://evil.com#@example.com/",
        "https://evil.com?@example.com/",
        "HTTPS://EVIL.COM\\@example.com/",
        "evil.com\\@example.com/",
        "file:///etc/passwd",
        "not a url at all \u{0}",
    ] {
        let j = fetch(evil);
        assert_eq!(j.answer, Answer::Deny, "{evil}: {j:?}");
    }
    let j = fetch("https://evil.com\\@example.com/");
    assert!(j.reason.contains("evil.com"), "{j:?}");
}

#[test]
fn paths_are_resolved_before_judging() {
    let p = policy();
    let c = ctx(&p);
    for path in [
        "/home/dev/.ssh/id_rsa",
        "~/.ssh/id_rsa",
        "$HOME/.ssh/id_rsa",
        "${HOME}/.ssh/id_rsa",
        "/proc/self/cwd/../.ssh/id_rsa",
        "/proc/thread-self/cwd/../.ssh/id_rsa",
        "/proc/self/root/home/dev/.ssh/id_rsa",
        "/home/dev/project/../.ssh/id_rsa",
        "../.ssh/id_rsa",
        "/home/dev/project/./sub/../../.ssh/./id_rsa",
    ] {
        let j = c.judge_tool("Read", &json!({"file_path": path}));
        assert_eq!(j.answer, Answer::Deny, "{path}: {j:?}");
        assert_eq!(j.rule, "files.deny", "{path}: {j:?}");
    }
    for cmd in [
        "cat $HOME/.ssh/id_rsa",
        "cat \"${HOME}/.ssh/id_rsa\"",
        "cat /proc/self/cwd/../.ssh/id_rsa",
        "cat ~/.ssh/id_rsa",
        "echo x >> $HOME/.bashrc",
    ] {
        let j = c.judge_shell(cmd);
        assert_eq!(j.answer, Answer::Deny, "{cmd}: {j:?}");
    }
    // HOME changed before use: not static.
    let j = c.judge_shell("HOME=/tmp; cat $HOME/x");
    assert_ne!(j.answer, Answer::Allow, "{j:?}");
    // The workflow still works.
    assert_eq!(
        c.judge_tool("Read", &json!({"file_path": "/proc/self/cwd/src/main.rs"}))
            .answer,
        Answer::Allow
    );
    assert_eq!(c.judge_shell("cat $HOME/.gitconfig").answer, Answer::Allow);
}

#[test]
fn session_file_rules_are_the_sandbox_rules() {
    let mut p = policy();
    p.files.read.push("/srv/data".into());
    let outside = ctx(&p);
    let inside = ctx(&p).in_session(std::path::Path::new("/home/dev/project"), Vec::new());
    let write = |c: &Ctx, f: &str| c.judge_tool("Write", &json!({"file_path": f, "content": "x"}));
    // Below the workspace, the rules stay anchored at the session's workspace.
    let sub = Ctx::new(
        &p,
        "/home/dev/project/sub".into(),
        "/home/dev".into(),
        false,
        std::sync::Arc::new(warden_execguard::cache::Cache::default()),
    )
    .in_session(std::path::Path::new("/home/dev/project"), Vec::new());
    assert_eq!(
        write(&sub, "/home/dev/project/README.md").answer,
        Answer::Allow
    );
    assert_eq!(write(&sub, "../.git/hooks/pre-commit").answer, Answer::Deny);
    assert_eq!(write(&sub, "../.mcp.json").answer, Answer::Deny);
    // The sandbox's private /tmp and $HOME are writable scratch inside a run.
    assert_eq!(write(&inside, "/tmp/scratch.py").answer, Answer::Allow);
    assert_eq!(write(&inside, "/home/dev/notes.md").answer, Answer::Allow);
    assert_eq!(write(&outside, "/tmp/scratch.py").answer, Answer::Deny);
    // Persistence points and credentials stay refused in both.
    for c in [&outside, &inside] {
        assert_eq!(write(c, "/home/dev/.bashrc").answer, Answer::Deny);
        assert_eq!(
            write(c, "/home/dev/project/.git/hooks/pre-commit").answer,
            Answer::Deny
        );
        assert_eq!(
            c.judge_tool("Read", &json!({"file_path": "/home/dev/.aws/credentials"}))
                .answer,
            Answer::Deny
        );
        // A path the user added to files.read is readable in both.
        assert_eq!(
            c.judge_tool("Read", &json!({"file_path": "/srv/data/a.csv"}))
                .answer,
            Answer::Allow
        );
    }
}

#[test]
fn a_huge_program_is_hashed_only_when_a_denial_could_match_it() {
    let dir = std::env::temp_dir().join(format!("warden-gate-huge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let prog = dir.join("huge-tool");
    let f = std::fs::File::create(&prog).unwrap();
    f.set_len(64 << 30).unwrap(); // sparse: 64 GiB, no blocks
    drop(f);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A copy of a denied program under another name, of the same size: hashed, denied.
    let curl = warden_policy::progrules::resolve_name("curl", Path::new("/home/dev"));
    if let Some(real) = curl.first() {
        std::fs::copy(real, dir.join("fetch")).unwrap();
    }
    let judge = |p: &warden_policy::Policy, cmd: &str| {
        let c = Ctx::new(
            p,
            dir.clone(),
            "/home/dev".into(),
            true,
            std::sync::Arc::new(warden_execguard::cache::Cache::default()),
        );
        let t = Instant::now();
        let j = c.judge_shell(cmd);
        (j, t.elapsed())
    };
    // Every denial has a known size (`curl`'s), and 64 GiB is none of them: the content
    // cannot be denied content, and no byte is read.
    let p = policy();
    let (j, took) = judge(&p, "./huge-tool --version");
    assert_eq!(j.answer, Answer::Allow, "{j:?}");
    assert!(took.as_millis() < 1000, "took {took:?}");
    if !curl.is_empty() {
        let (j, _) = judge(&p, "./fetch https://example.com");
        assert_eq!(j.answer, Answer::Deny, "{j:?}");
        assert_eq!(j.rule, "exec.deny:curl", "{j:?}");
    }
    // A `sha256:` denial's size is unknown: the program must be hashed, and is too large.
    let mut p = policy();
    p.exec.deny.push(format!("sha256:{}", "ab".repeat(32)));
    let (j, took) = judge(&p, "./huge-tool --version");
    assert_eq!(j.answer, Answer::Deny, "{j:?}");
    assert_eq!(j.rule, "exec.fail_closed", "{j:?}");
    assert!(j.reason.contains("hashing limit"), "{j:?}");
    assert!(took.as_millis() < 1000, "took {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn install_defaults_and_options() {
    let user: Value = serde_json::from_str(
        r#"{"theme": "dark", "zeta": 1, "alpha": {"b": 2, "a": 1}, "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "true"}]}]}}"#,
    )
    .unwrap();
    // Managed scope without the explicit option: the hook only.
    let m = install::install(
        user.clone(),
        Agent::Claude,
        Scope::Managed,
        "/usr/bin/warden",
    )
    .unwrap();
    assert!(m.get("allowManagedHooksOnly").is_none(), "{m}");
    let m = install::install_with(
        user.clone(),
        Agent::Claude,
        Scope::Managed,
        "/usr/bin/warden",
        Options {
            managed_hooks_only: true,
        },
    )
    .unwrap();
    assert_eq!(m["allowManagedHooksOnly"], true);
    assert!(install::install_with(
        user.clone(),
        Agent::Claude,
        Scope::User,
        "w",
        Options {
            managed_hooks_only: true
        }
    )
    .is_err());
    // Uninstall removes what install added, and only that.
    let back = install::uninstall_with(
        m,
        Options {
            managed_hooks_only: true,
        },
    )
    .unwrap();
    assert_eq!(back, user);
    // The user's key order survives (serde_json preserve_order).
    let u = install::install(user.clone(), Agent::Claude, Scope::User, "w").unwrap();
    let keys: Vec<&String> = u.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["theme", "zeta", "alpha", "hooks"]);
    let inner: Vec<&String> = u["alpha"].as_object().unwrap().keys().collect();
    assert_eq!(inner, ["b", "a"]);
    // Gemini reads its timeout in milliseconds.
    let g = install::install(json!({}), Agent::Gemini, Scope::User, "w").unwrap();
    assert_eq!(g["hooks"]["BeforeTool"][0]["hooks"][0]["timeout"], 30_000);
    let c = install::install(json!({}), Agent::Claude, Scope::User, "w").unwrap();
    assert_eq!(c["hooks"]["PreToolUse"][0]["hooks"][0]["timeout"], 30);
}

/// Only a typed resolver may turn the rules' `ask` into `allow`: a second stage that merely
/// names the approval rule cannot, and nothing loosens a deny.
#[test]
fn only_a_typed_resolver_loosens_an_ask() {
    use warden_gate::judge::Judgement;
    use warden_gate::protocol::{handle_with, AskResolver, Judged, Second, APPROVAL_RULE};
    let p = policy();
    let env = HookEnv {
        policy: &p,
        home: "/home/dev".into(),
        headless: false,
        cache: std::sync::Arc::new(warden_execguard::cache::Cache::default()),
        session: None,
        pinned: Vec::new(),
    };
    let ask = pre(Agent::Claude, "Bash", json!({"command": "eval \"$CMD\""}));
    let deny = pre(
        Agent::Claude,
        "Bash",
        json!({"command": "curl https://evil.example"}),
    );
    let rules_only = handle(Agent::Claude, &ask, &env);
    assert!(
        rules_only.stdout.contains("\"ask\""),
        "{}",
        rules_only.stdout
    );
    assert!(handle(Agent::Claude, &deny, &env)
        .stdout
        .contains("\"deny\""));
    let second = |resolves: Option<AskResolver>| {
        move |j: &Judged<'_>| {
            Some(Second {
                judgement: Judgement {
                    answer: Answer::Allow,
                    rule: APPROVAL_RULE.into(),
                    what: j.rules.what.clone(),
                    reason: "second stage".into(),
                },
                resolves_ask: resolves,
            })
        }
    };
    let named_only = second(None);
    let out = handle_with(Agent::Claude, &ask, &env, Some(&named_only));
    assert_eq!(
        out.stdout, rules_only.stdout,
        "a rule name alone loosened an ask"
    );
    let human = second(Some(AskResolver::Human));
    let out = handle_with(Agent::Claude, &ask, &env, Some(&human));
    assert_eq!(out.stdout, "", "a human's allow resolves the ask (defer)");
    let out = handle_with(Agent::Claude, &deny, &env, Some(&human));
    assert!(
        out.stdout.contains("\"deny\""),
        "a deny was loosened: {}",
        out.stdout
    );
}
