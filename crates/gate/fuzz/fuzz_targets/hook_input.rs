//! Any hook input gets an answer in the protocol: never a panic; anything that is not a
//! well-formed event is a deny (exit 2).
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_gate::protocol::{handle, Agent, HookEnv};

fuzz_target!(|data: &[u8]| {
    let mut p = warden_policy::load::resolve_profile("claude", None, &mut Vec::new()).unwrap();
    p.exec.deny = vec!["curl".into()];
    let env = HookEnv { policy: &p, home: "/home/dev".into(), headless: true, cache: std::sync::Arc::new(warden_execguard::cache::Cache::default()), session: data.first().is_some_and(|b| b & 1 == 1).then(|| "/home/dev/project".into()), pinned: Vec::new() };
    for agent in [Agent::Claude, Agent::Gemini] {
        let out = handle(agent, data, &env);
        assert!(out.code == 0 || out.code == 2);
        let parsed: Option<serde_json::Value> = serde_json::from_slice(data).ok();
        let is_event = parsed.as_ref().and_then(|v| v.get("hook_event_name")).and_then(|e| e.as_str()).is_some_and(|e| !e.is_empty());
        if !is_event {
            assert_eq!(out.code, 2, "malformed input must deny");
        }
        if out.code == 2 {
            assert!(!out.stderr.is_empty());
        }
    }
});
