use super::*;
use crate::files::{Access, FileRules};

fn anchors() -> Anchors {
    Anchors {
        home: "/home/u".into(),
        workspace: "/home/u/proj".into(),
    }
}

fn builtin(name: &str) -> Policy {
    load::resolve_profile(name, None, &mut Vec::new()).unwrap()
}

#[test]
fn every_builtin_profile_parses_and_validates() {
    for (name, _) in PROFILES {
        let p = builtin(name);
        assert!(
            !p.files.deny.is_empty(),
            "{name} keeps the credential denials"
        );
    }
    assert!(builtin("claude")
        .env
        .pass
        .contains(&"ANTHROPIC_API_KEY".to_string()));
    assert!(builtin("claude")
        .network
        .allow
        .contains(&"@anthropic".to_string()));
}

#[test]
fn unknown_key_is_an_error_with_line_and_column() {
    let err = Policy::parse("[files]\nread = [\"/x\"]\nreed = []\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("p.toml:3:1:"), "{err}");
    assert!(err.contains("reed"), "{err}");
}

#[test]
fn bad_value_is_an_error_with_position() {
    let err = Policy::parse("[process]\npids_max = \"lots\"\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("p.toml:2:12:"), "{err}");
    let err = Policy::parse("[exec]\nmode = \"sometimes\"\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("p.toml:2:"), "{err}");
}

#[test]
fn malformed_toml_is_an_error() {
    let err = Policy::parse("[files\n", "p.toml").unwrap_err().to_string();
    assert!(err.starts_with("p.toml:1:"), "{err}");
}

#[test]
fn unknown_profile_is_an_error() {
    let err = load::resolve_profile("nope", None, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, PolicyError::UnknownProfile(_)));
}

#[test]
fn root_as_readable_root_is_refused() {
    assert!(Policy::parse("[files]\nread = [\"/\"]\n", "p").is_err());
    assert!(Policy::parse("[files]\nread = [\"~\"]\n", "p").is_err());
}

#[test]
fn workspace_policy_can_narrow_but_not_widen() {
    let mut p = builtin("generic");
    let narrow = Policy::parse(
        "[files]\ndeny = [\"secrets\"]\n[process]\npids_max = 10\n[exec]\ndeny=[\"curl\"]\n",
        "ws",
    )
    .unwrap();
    p.narrow(&narrow, "ws").unwrap();
    assert_eq!(p.process.pids_max, Some(10));
    assert!(p.exec.deny.contains(&"curl".to_string()));
    for widening in [
        "[files]\nread = [\"/srv\"]\n",
        "[files]\nwrite = [\"/srv\"]\n",
        "[env]\npass = [\"AWS_SECRET_ACCESS_KEY\"]\n",
        "[network]\nallow = [\"evil.com\"]\n",
        "[exec]\nallow = [\"curl\"]\n",
        "[exec]\naction = \"audit\"\n",
        "extends = \"claude\"\n",
        "[gate]\ndynamic = \"allow\"\n",
        "[audit]\nretention_days = 1\n",
        "[audit]\nmax_mb = 100000\n",
    ] {
        let mut p = builtin("generic");
        let doc = Policy::parse(widening, "ws").unwrap();
        let err = p.narrow(&doc, "ws").unwrap_err();
        assert!(
            matches!(err, PolicyError::Widening { .. }),
            "{widening}: {err}"
        );
    }
    // Raising a limit is ignored (min wins).
    let mut p = builtin("generic");
    p.narrow(
        &Policy::parse("[process]\npids_max = 999999\n", "ws").unwrap(),
        "ws",
    )
    .unwrap();
    assert_eq!(p.process.pids_max, Some(4096));
}

#[test]
fn file_decisions_follow_the_documented_order() {
    let p = builtin("claude");
    let r = FileRules::new(&p, &anchors(), Some("/tmp/warden-x".into()));
    let d = |path: &str, a| r.decide(std::path::Path::new(path), a);
    assert_eq!(
        d("/home/u/.ssh/id_ed25519", Access::Read).rule,
        "files.deny"
    );
    assert!(!d("/home/u/.aws/credentials", Access::Read).allowed);
    assert!(!d("/home/u/other-project/x", Access::Read).allowed);
    assert_eq!(d("/home/u/other-project/x", Access::Read).rule, "default");
    assert!(d("/home/u/proj/src/main.rs", Access::Write).allowed);
    assert_eq!(
        d("/home/u/proj/.git/hooks/pre-commit", Access::Write).rule,
        "files.protect"
    );
    assert!(d("/home/u/proj/.git/hooks/pre-commit", Access::Read).allowed);
    assert!(d("/home/u/proj/.git/objects/ab", Access::Write).allowed);
    assert_eq!(
        d("/home/u/.claude/settings.json", Access::Write).rule,
        "files.protect"
    );
    assert_eq!(
        d("/home/u/.claude/projects/x.jsonl", Access::Write).rule,
        "agent.state"
    );
    assert_eq!(d("/usr/bin/ls", Access::Read).rule, "files.system");
    assert!(!d("/usr/bin/ls", Access::Write).allowed);
    assert!(!d("/etc/shadow", Access::Read).allowed);
    assert!(d("/tmp/warden-x/a", Access::Write).allowed);
    assert!(!d("/tmp/other", Access::Read).allowed);
    // `..` cannot launder a path.
    assert_eq!(
        d("/home/u/proj/../.ssh/id_rsa", Access::Read).rule,
        "files.deny"
    );
    assert!(!d("/home/u/.bashrc", Access::Write).allowed);
}

#[test]
fn env_scrub_and_pass() {
    let p = builtin("claude");
    assert!(p.env.scrubbed_by("GITHUB_TOKEN").is_some());
    assert!(p.env.scrubbed_by("AWS_ACCESS_KEY_ID").is_some());
    assert!(p.env.scrubbed_by("MY_SERVICE_SECRET").is_some());
    assert!(p.env.scrubbed_by("SSH_AUTH_SOCK").is_some());
    assert!(p.env.scrubbed_by("ANTHROPIC_API_KEY").is_none());
    assert!(p.env.scrubbed_by("PATH").is_none());
    assert!(p.env.scrubbed_by("HOME").is_none());
    assert!(builtin("generic")
        .env
        .scrubbed_by("ANTHROPIC_API_KEY")
        .is_some());
}

#[test]
fn glob() {
    use env::glob_match;
    assert!(glob_match("*_TOKEN", "GH_TOKEN"));
    assert!(!glob_match("*_TOKEN", "TOKEN"));
    assert!(glob_match("AWS_*", "AWS_"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "abbc"));
}

#[test]
fn sizes_parse_merge_and_only_narrow_from_the_workspace() {
    use crate::{ByteSize, ProcessSection};
    let p = Policy::parse(
        "[process]\nmemory_max = \"2G\"\ntmp_size = 1048576\nshm_size = \"64MiB\"\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.process.memory_max, Some(ByteSize(2 << 30)));
    assert_eq!(p.process.tmp_size, Some(ByteSize(1 << 20)));
    assert_eq!(p.process.shm_size, Some(ByteSize(64 << 20)));
    for bad in [
        "\"lots\"",
        "\"2X\"",
        "-1",
        "\"1K\"",
        "\"99999999999999999999G\"",
        "\"9999999T\"",
    ] {
        let e = Policy::parse(&format!("[process]\nmemory_max = {bad}\n"), "p.toml");
        assert!(e.is_err(), "{bad} must be rejected");
    }
    // A workspace may lower a size, never raise it, also where the base sets none
    // (the RAM-derived default is the effective value).
    let mut base = Policy::parse("[process]\ntmp_size = \"1G\"\n", "base").unwrap();
    let ws = Policy::parse(
        "[process]\ntmp_size = \"1T\"\nmemory_max = \"1T\"\nhome_size = \"8M\"\n",
        "ws",
    )
    .unwrap();
    base.narrow(&ws, "ws").unwrap();
    let d = ProcessSection::default_sizes(crate::ram_bytes());
    assert_eq!(base.process.tmp_size, Some(ByteSize(1 << 30)));
    assert_eq!(base.process.memory_max, Some(ByteSize(d[0])));
    assert_eq!(base.process.home_size, Some(ByteSize(8 << 20)));
    // Rendered policy re-parses.
    let again = Policy::parse(&base.to_toml(), "rendered").unwrap();
    assert_eq!(again.process, base.process);
}

#[test]
fn audit_section_parses_validates_and_layers() {
    let mut p = builtin("generic");
    assert_eq!(p.audit, audit::AuditSection::default());
    p.merge(&Policy::parse("[audit]\nretention_days = 30\nmax_mb = 200\n", "user").unwrap());
    assert_eq!(p.audit.retention_days, Some(30));
    assert_eq!(p.audit.max_mb, Some(200));
    p.merge(&Policy::parse("[audit]\nmax_mb = 50\n", "later").unwrap());
    assert_eq!(
        (p.audit.retention_days, p.audit.max_mb),
        (Some(30), Some(50))
    );
    for bad in ["[audit]\nretention_days = 0\n", "[audit]\nmax_mb = 0\n"] {
        assert!(
            matches!(Policy::parse(bad, "p"), Err(PolicyError::Invalid { .. })),
            "{bad}"
        );
    }
    let err = Policy::parse("[audit]\nkeep = 1\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("p.toml:2:1:"), "{err}");
    assert!(p.to_toml().contains("[audit]"));
    assert!(!builtin("generic").to_toml().contains("[audit]"));
}
