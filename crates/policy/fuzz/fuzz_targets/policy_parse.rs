//! Policy parsing must never panic: any input is either a policy or a precise error, and a
//! parsed policy survives validation, merging, narrowing and rendering.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Policy::parse(text, "fuzz.toml") {
        Ok(p) => {
            let mut base = Policy::parse(warden_policy::builtin_profile("claude").unwrap(), "builtin").unwrap();
            base.merge(&p);
            let mut n = Policy::parse(warden_policy::builtin_profile("generic").unwrap(), "builtin").unwrap();
            let _ = n.narrow(&p, "ws");
            let rendered = base.to_toml();
            // What we render must parse again.
            Policy::parse(&rendered, "rendered").expect("rendered policy must re-parse");
            let anchors = warden_policy::Anchors { home: "/home/u".into(), workspace: "/home/u/p".into() };
            let rules = warden_policy::files::FileRules::new(&base, &anchors, None);
            for path in ["/home/u/.ssh/id_rsa", "/home/u/p/x", "/etc/passwd"] {
                let _ = rules.decide(std::path::Path::new(path), warden_policy::files::Access::Read);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
        }
    }
});
