//! Every real Claude Code 2.1.330 payload round-trips into the exact output schema; Codex
//! and Gemini shapes; malformed and oversized input denies with exit 2.

use serde_json::{json, Value};
use warden_gate::protocol::{handle, Agent, HookEnv};

fn env(p: &warden_policy::Policy) -> HookEnv<'_> {
    HookEnv {
        policy: p,
        home: "/home/dev".into(),
        headless: true,
        cache: std::sync::Arc::new(warden_execguard::cache::Cache::default()),
        session: None,
        pinned: Vec::new(),
    }
}

fn policy() -> warden_policy::Policy {
    let mut p = warden_policy::load::resolve_profile("claude", None, &mut Vec::new()).unwrap();
    p.exec.deny = vec!["curl".into()];
    p
}

#[test]
fn claude_fixtures_round_trip() {
    let p = policy();
    let text = include_str!("data/hook-events-2.1.330.jsonl");
    let mut pre = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let out = handle(Agent::Claude, line.as_bytes(), &env(&p));
        let event = v["hook_event_name"].as_str().unwrap();
        if event == "PreToolUse" {
            pre += 1;
            if out.stdout.is_empty() {
                // No objection: defer to Claude Code's own permission checks.
                assert_eq!(out.code, 0);
                assert!(out.stderr.is_empty());
                continue;
            }
            let o: Value = serde_json::from_str(&out.stdout).unwrap();
            let h = &o["hookSpecificOutput"];
            assert_eq!(h["hookEventName"], "PreToolUse");
            let d = h["permissionDecision"].as_str().unwrap();
            assert!(
                ["deny", "ask"].contains(&d),
                "warden never answers allow: {d}"
            );
            assert!(h["permissionDecisionReason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()));
            assert_eq!(
                o.as_object().unwrap().len(),
                1,
                "no extra top-level keys: {o}"
            );
            assert_eq!(out.code, if d == "deny" { 2 } else { 0 });
        } else {
            assert_eq!(
                out,
                warden_gate::protocol::Output {
                    stdout: String::new(),
                    stderr: String::new(),
                    code: 0
                },
                "{event}"
            );
        }
    }
    assert_eq!(pre, 5);
}

#[test]
fn deny_is_exit_2_with_reason_on_stderr_for_every_agent() {
    let p = policy();
    for (agent, event, tool) in [
        (Agent::Claude, "PreToolUse", "Bash"),
        (Agent::Codex, "PreToolUse", "Bash"),
        (Agent::Gemini, "BeforeTool", "run_shell_command"),
    ] {
        let input = json!({"session_id": "s", "cwd": "/home/dev/project", "hook_event_name": event, "tool_name": tool, "tool_input": {"command": "c\\url http://x"}});
        let out = handle(agent, input.to_string().as_bytes(), &env(&p));
        assert_eq!(out.code, 2, "{agent:?}");
        assert!(
            out.stderr.contains("exec.deny:curl") && out.stderr.contains("outside the agent"),
            "{}",
            out.stderr
        );
        let o: Value = serde_json::from_str(&out.stdout).unwrap();
        if agent == Agent::Gemini {
            assert_eq!(o["decision"], "deny");
            assert!(o["reason"].as_str().unwrap().contains("curl"));
        } else {
            assert_eq!(o["hookSpecificOutput"]["permissionDecision"], "deny");
        }
        let ok = json!({"session_id": "s", "cwd": "/home/dev/project", "hook_event_name": event, "tool_name": tool, "tool_input": {"command": "cargo test"}});
        let out = handle(agent, ok.to_string().as_bytes(), &env(&p));
        assert_eq!(out.code, 0);
    }
}

#[test]
fn malformed_and_oversized_input_denies() {
    let p = policy();
    let big = vec![b' '; warden_gate::protocol::MAX_INPUT + 1];
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"[1,2]".to_vec(),
        b"{}".to_vec(),
        br#"{"hook_event_name":"PreToolUse","cwd":"/x"}"#.to_vec(),
        br#"{"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}"#.to_vec(),
        br#"{"hook_event_name":"PreToolUse","tool_name":"Bash","cwd":"/x","tool_input":"ls"}"#.to_vec(),
        br#"{"hook_event_name":"PreToolUse","tool_name":"Bash","cwd":"/x","tool_input":{"command":42}}"#.to_vec(),
        b"{\"hook_event_name\":\"PreToolUse\",\"tool_name\":\"Bash\",\"cwd\":\"/x\",\"tool_input\":{\"command\":\"ls\"}".to_vec(),
        big,
    ];
    for c in cases {
        let out = handle(Agent::Claude, &c, &env(&p));
        assert_eq!(
            out.code,
            2,
            "input {:?}",
            String::from_utf8_lossy(&c[..c.len().min(80)])
        );
        assert!(!out.stderr.is_empty());
    }
}
