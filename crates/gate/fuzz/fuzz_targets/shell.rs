//! Shell analysis and judgement never panic on any text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = warden_gate::shell::analyze(s);
    let p = warden_policy::load::resolve_profile("generic", None, &mut Vec::new()).unwrap();
    let ctx = warden_gate::judge::Ctx::new(&p, "/tmp".into(), "/home/dev".into(), true, std::sync::Arc::new(warden_execguard::cache::Cache::default()));
    let _ = ctx.judge_shell(s);
});
