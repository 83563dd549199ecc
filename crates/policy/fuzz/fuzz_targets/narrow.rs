//! The narrowing rule: for any base policy and any workspace document, `narrow` either
//! refuses the document or yields a policy that is nowhere wider than the base, compared as
//! the layers apply it (defaults included): `merged.widens(&base) == None`.
//!
//! Policies are built from the input by picking values for every key (including leaving it
//! unset, so the built-in defaults are exercised), and half of the bases start from a
//! built-in profile.
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use warden_policy::exec::{ExecAction, ExecMode};
use warden_policy::gate::GateAnswer;
use warden_policy::Policy;

const PATHS: &[&str] = &["~/.ssh", "/srv", "~/.cargo/bin", "/usr", "secrets", "/tmp/x", "~"];
const NAMES: &[&str] = &["curl", "wget", "python3", "nc", "/usr/bin/env"];
const HOSTS: &[&str] = &["example.com", "@anthropic", "*.github.com", "evil.com:443", "http://x.org"];
const VARS: &[&str] = &["AWS_*", "GITHUB_TOKEN", "*_KEY", "PATH", "LD_PRELOAD"];
const MCP: &[&str] = &["mcp__a__*", "mcp__b__x", "mcp__*"];

fn list(u: &mut Unstructured, from: &[&str]) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=3)?;
    let mut v = Vec::new();
    for _ in 0..n {
        let s = u.choose(from)?.to_string();
        if !v.contains(&s) && !s.ends_with(':') {
            v.push(s);
        }
    }
    Ok(v)
}

fn opt<T: Copy>(u: &mut Unstructured, from: &[T]) -> Result<Option<T>> {
    Ok(if u.arbitrary::<bool>()? { Some(*u.choose(from)?) } else { None })
}

fn policy(u: &mut Unstructured) -> Result<Policy> {
    let mut p = Policy::default();
    p.files.read = list(u, PATHS)?;
    p.files.write = list(u, PATHS)?;
    p.files.system = list(u, PATHS)?;
    p.files.deny = list(u, PATHS)?;
    p.files.protect = list(u, PATHS)?;
    p.files.ask_write = list(u, PATHS)?;
    p.env.pass = list(u, VARS)?;
    p.env.scrub = list(u, VARS)?;
    if u.arbitrary::<bool>()? {
        p.env.set.insert(u.choose(&["LD_PRELOAD", "FOO"])?.to_string(), u.choose(&["1", "2"])?.to_string());
    }
    p.agent.name = opt(u, &["claude", "codex"])?.map(str::to_string);
    p.agent.state = list(u, PATHS)?;
    p.agent.install = list(u, PATHS)?;
    p.process.pids_max = opt(u, &[1u32, 100, 4096, 100_000])?;
    p.process.nofile = opt(u, &[10u64, 65536, 1 << 20])?;
    p.process.core_dumps = opt(u, &[true, false])?;
    p.exec.mode = opt(u, &[ExecMode::Denylist, ExecMode::Allowlist])?;
    p.exec.action = opt(u, &[ExecAction::Enforce, ExecAction::Audit])?;
    p.exec.allow_memfd = opt(u, &[true, false])?;
    p.exec.allow = list(u, NAMES)?;
    p.exec.deny = list(u, NAMES)?;
    p.network.allow = list(u, HOSTS)?;
    p.network.deny = list(u, HOSTS)?;
    p.network.ask = list(u, HOSTS)?;
    p.exec.ask_unknown = opt(u, &[true, false])?;
    p.approvals.timeout_secs = opt(u, &[1u64, 2, 120, 3600])?;
    let answers = [GateAnswer::Allow, GateAnswer::Ask, GateAnswer::Deny];
    p.gate.dynamic = opt(u, &answers)?;
    p.gate.unknown_tool = opt(u, &answers)?;
    p.gate.mcp_default = opt(u, &answers)?;
    p.gate.mcp_allow = list(u, MCP)?;
    p.gate.mcp_deny = list(u, MCP)?;
    Ok(p)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut base) = policy(&mut u) else { return };
    if u.arbitrary::<bool>().unwrap_or(false) {
        let name = ["generic", "claude", "codex", "gemini"][data.len() % 4];
        let mut b = warden_policy::load::resolve_profile(name, None, &mut Vec::new()).unwrap();
        b.merge(&base);
        base = b;
    }
    let Ok(ws) = policy(&mut u) else { return };
    let mut merged = base.clone();
    if merged.narrow(&ws, "ws.toml").is_ok() {
        if let Some(key) = merged.widens(&base) {
            panic!("narrow() accepted a widening of `{key}`\nbase: {base:?}\nws: {ws:?}\nmerged: {merged:?}");
        }
        // Narrowing the result again with the same document changes nothing wider either.
        let mut again = merged.clone();
        if again.narrow(&ws, "ws.toml").is_ok() {
            assert_eq!(again.widens(&base), None);
        }
    }
});
