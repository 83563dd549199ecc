//! The policy section ↔ advisor config, and the supervisor's key handling.

use warden_advisor::session::{scrub_key, take_key};
use warden_advisor::{AdvisorConfig, Api, GreyClass};
use warden_policy::advisor::{AdvisorSection, OnError, BUILTIN_CLASSES};
use warden_policy::Policy;

#[test]
fn policy_builtin_classes_match_the_classifier() {
    for n in BUILTIN_CLASSES {
        assert!(GreyClass::builtin(n).is_some(), "{n}");
    }
    for c in [
        GreyClass::SecretInArgs,
        GreyClass::NetworkSend,
        GreyClass::UnknownMcp,
        GreyClass::ForcePush,
        GreyClass::HistoryRewrite,
        GreyClass::DestructiveFiles,
    ] {
        assert!(BUILTIN_CLASSES.contains(&c.name()), "{c:?}");
    }
}

#[test]
fn every_section_key_reaches_the_config() {
    let p = Policy::parse(
        r#"[advisor]
enabled = true
endpoint = "http://127.0.0.1:9/v1/chat/completions"
api = "openai"
model = "m"
key_env = "WARDEN_ADVISOR_KEY"
timeout_ms = 1234
allow_resolution = ["db"]
disk_cache = true
ca_file = "/etc/ssl/certs/ca-certificates.crt"
on_error = "ask"
[[advisor.classes]]
name = "db"
programs = ["psql"]
"#,
        "user.toml",
    )
    .unwrap();
    let c = AdvisorConfig::from_policy(&p.advisor).unwrap();
    assert!(c.enabled);
    assert_eq!(c.api, Api::Openai);
    assert_eq!(
        (c.model.as_str(), c.key_env.as_str(), c.timeout_ms),
        ("m", "WARDEN_ADVISOR_KEY", 1234)
    );
    assert_eq!(c.allow_resolution, vec!["db".to_string()]);
    assert!(c.disk_cache);
    assert_eq!(c.on_error, OnError::Ask);
    assert_eq!(c.classes[0].programs, vec!["psql".to_string()]);
    // Unset keys: the advisor's defaults (fail mode ask, 3 s).
    let d = AdvisorConfig::from_policy(&AdvisorSection::default()).unwrap();
    assert_eq!(d, AdvisorConfig::default());
    assert_eq!(d.on_error, OnError::Ask);
    assert_eq!(d.timeout_ms, 3000);
}

#[test]
fn the_key_leaves_the_process_environment_and_the_sandbox_env() {
    // SAFETY (edition 2021 API): this test binary's only user of this variable.
    std::env::set_var("WARDEN_ADVISOR_WIRING_TEST_KEY", "sk-wiring-secret-42");
    assert_eq!(
        take_key("WARDEN_ADVISOR_WIRING_TEST_KEY").as_deref(),
        Some("sk-wiring-secret-42")
    );
    assert!(std::env::var_os("WARDEN_ADVISOR_WIRING_TEST_KEY").is_none());
    assert_eq!(take_key("WARDEN_ADVISOR_WIRING_TEST_KEY"), None);
    let mut env = vec![
        ("PATH".into(), "/usr/bin".into()),
        ("MY_KEY".into(), "v".into()),
    ];
    let mut scrubbed = Vec::new();
    scrub_key("MY_KEY", &mut env, &mut scrubbed);
    assert_eq!(env.len(), 1);
    assert_eq!(
        scrubbed,
        vec![("MY_KEY".to_string(), "advisor.key_env".to_string())]
    );
}
