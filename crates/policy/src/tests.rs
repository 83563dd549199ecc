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

/// The build-time JSON form of every built-in profile is the same policy as its TOML, and
/// `sets.toml`'s JSON names the same sets.
#[test]
fn builtin_json_forms_equal_the_toml() {
    for (name, text) in PROFILES {
        let from_toml = Policy::parse(text, name).unwrap();
        let from_json = Policy::builtin(name).unwrap().unwrap();
        assert!(from_toml == from_json, "{name}: the JSON form differs");
    }
    assert!(Policy::builtin("nope").is_none());
    let sets: toml::Table = include_str!("../sets.toml").parse().unwrap();
    assert!(!sets.is_empty());
    for (name, v) in &sets {
        let want: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        assert_eq!(netrules::named_set_for_test(name).unwrap(), want, "{name}");
    }
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

/// Review R3: more secret spellings (passphrases, JWTs, cookies, OAuth, bearer, bare AUTH),
/// and a value rule: a URL with a password in its userinfo is scrubbed whatever the name,
/// unless `pass` names the variable. Ordinary variables (a proxy URL without a password)
/// still pass.
#[test]
fn env_scrub_covers_passphrases_jwts_and_url_passwords() {
    for profile in ["generic", "claude", "codex", "gemini"] {
        let p = builtin(profile);
        for k in [
            "GPG_PASSPHRASE",
            "PASSPHRASE",
            "DOCKER_AUTH_CONFIG",
            "CI_JOB_JWT",
            "JWT",
            "COOKIE",
            "session_cookie",
            "GITHUB_OAUTH",
            "MY_CREDS",
            "PGPASS",
            "PGPASSFILE",
            "AUTH",
            "AUTH_HEADER",
            "BEARER",
            "API_BEARER_TOKEN",
        ] {
            assert!(
                p.env.scrubbed(k, b"v").is_some(),
                "{profile}: {k} reaches the agent"
            );
        }
        for (k, v) in [
            (
                "MONGODB_URI",
                "mongodb+srv://app:hunter2@cluster0.example.net/db",
            ),
            ("REDIS_URL", "redis://:hunter2@localhost:6379/0"),
            (
                "PIP_INDEX_URL",
                "https://__token__:pypi-AgEI@pypi.example.com/simple",
            ),
            ("UV_INDEX_URL", "https://u:p@idx.example.com"),
            ("NPM_CONFIG_REGISTRY", "https://u:p@npm.example.com/"),
            ("EXTRA", "a https://x.example b,https://u:p@y.example"),
            // Attack review 100 (F4): a token as the lone user name.
            ("GIT_URL", "https://ghp_s13@github.com/x"),
            (
                "MIRROR",
                "see HTTPS://abcdef0123456789abcdef01@mirror.example/x",
            ),
            ("AZ", "https://glpat-x@gitlab.example/x"),
        ] {
            assert_eq!(
                p.env.scrubbed(k, v.as_bytes()),
                Some(crate::env::URL_PASSWORD_RULE),
                "{profile}: {k}={v} reaches the agent"
            );
        }
        // Review N6: known token formats under harmless names.
        for (k, v) in [
            ("GH", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            ("X", "sk-ant-api03-0123456789abcdefghij"),
            ("SLACK", "xoxb-1234567890-0123456789abcdef"),
            ("KEY_ID_ONLY", "AKIAIOSFODNN7EXAMPLE"),
            ("HDR", "Bearer glpat-0123456789abcdefghij"),
        ] {
            assert_eq!(
                p.env.scrubbed(k, v.as_bytes()),
                Some(crate::env::TOKEN_VALUE_RULE),
                "{profile}: {k}={v} reaches the agent"
            );
        }
        for (k, v) in [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/u"),
            ("TASK", "sk-short"),
            ("PKG", "my-npm_module-name"),
            ("DESC", "task-AKIA"),
            ("LANG", "C.UTF-8"),
            ("TERM", "xterm"),
            ("EDITOR", "vi"),
            ("SHELL", "/bin/bash"),
            ("http_proxy", "http://proxy.example:3128"),
            ("GIT_URL", "ssh://git@github.com/o/r.git"),
            ("BB", "https://alice@bitbucket.org/o/r.git"),
            ("https_proxy", "http://user@proxy.example:3128/"),
            ("EMPTY_PW", "https://user:@example.com"),
            ("ODD", "https://example.com/a:b@c"),
            ("XAUTHORITY", "/run/user/1000/xauth"),
        ] {
            assert!(
                p.env.scrubbed(k, v.as_bytes()).is_none(),
                "{profile}: {k}={v} scrubbed"
            );
        }
    }
    // A pass glob passes a variable whose value holds a URL password.
    let c = builtin("claude");
    assert!(c
        .env
        .scrubbed("ANTHROPIC_BASE_URL", b"https://u:p@proxy.example")
        .is_none());
    assert!(c.env.scrubbed("CLAUDE_CODE_OAUTH_TOKEN", b"x").is_none());
}

/// Review F7: secrets under other spellings and cases, and what everyday tools need.
#[test]
fn env_scrub_covers_common_secret_spellings_in_any_case() {
    for profile in ["generic", "claude", "codex", "gemini"] {
        let p = builtin(profile);
        for k in [
            "PGPASSWORD",
            "MYSQL_PWD",
            "GITHUB_PAT",
            "npm_config__authToken",
            "NPM_CONFIG_//registry.npmjs.org/:_authToken",
            "github_token",
            "SECRET",
            "TOKEN",
            "PASSWORD",
            "SLACK_WEBHOOK_URL",
            "DISCORD_WEBHOOK",
            "STRIPE_SECRET_KEY_LIVE",
            "HF_AUTH_TOKEN_RO",
            "SENDGRID_APIKEY",
            "GCP_PRIVATE_KEY_PEM",
            "azure_storage_connection_string",
            "my_credentials_file",
        ] {
            assert!(
                p.env.scrubbed_by(k).is_some(),
                "{profile}: {k} reaches the agent"
            );
        }
        for k in [
            "PATH", "HOME", "EDITOR", "LANG", "PWD", "OLDPWD", "TERM", "SHELL", "TZ",
        ] {
            assert!(p.env.scrubbed_by(k).is_none(), "{profile}: {k} scrubbed");
        }
    }
    // A profile's own agent credentials still pass, exactly as spelled.
    let c = builtin("claude");
    assert!(c.env.scrubbed_by("ANTHROPIC_AUTH_TOKEN").is_none());
    assert!(c.env.scrubbed_by("anthropic_auth_token").is_some());
    assert!(builtin("codex").env.scrubbed_by("OPENAI_API_KEY").is_none());
    assert!(builtin("gemini")
        .env
        .scrubbed_by("GEMINI_API_KEY")
        .is_none());
}

#[test]
fn glob() {
    use env::glob_match;
    assert!(glob_match("*_TOKEN", "GH_TOKEN"));
    assert!(!glob_match("*_TOKEN", "TOKEN"));
    assert!(glob_match("AWS_*", "AWS_"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "abbc"));
    assert!(!glob_match("*_TOKEN", "gh_token"));
    assert!(env::glob_match_ignore_case("*_TOKEN", "gh_token"));
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

#[test]
fn narrowing_compares_with_effective_values_defaults_included() {
    // No profile sets these; each is wider than its default (ask / enforce / no memfd / no
    // core dumps), so each must be refused.
    for widening in [
        "[gate]\nmcp_default = \"allow\"\n",
        "[gate]\nunknown_tool = \"allow\"\n",
        "[gate]\ndynamic = \"allow\"\n",
        "[gate]\nmcp_allow = [\"mcp__evil__*\"]\n",
        "[exec]\nallow_memfd = true\n",
        "[exec]\njit = [\"python3\"]\n",
        "[exec]\naction = \"audit\"\n",
        "[process]\ncore_dumps = true\n",
        "[agent]\nname = \"other\"\n",
        "[agent]\nstate = [\"~/.ssh\"]\n",
        "[env]\nset = { LD_PRELOAD = \"/x.so\" }\n",
    ] {
        for profile in ["generic", "claude"] {
            let base = builtin(profile);
            let mut p = base.clone();
            let doc = Policy::parse(widening, "ws").unwrap();
            let err = p.narrow(&doc, "ws");
            assert!(
                matches!(err, Err(PolicyError::Widening { .. })),
                "{profile} + {widening}: {err:?}"
            );
        }
    }
    // Stricter than the defaults is accepted and applied.
    let base = builtin("claude");
    let mut p = base.clone();
    p.narrow(
        &Policy::parse(
            "[gate]\nmcp_default = \"deny\"\nunknown_tool = \"deny\"\n[exec]\nmode = \"allowlist\"\n[process]\nnofile = 10\n",
            "ws",
        )
        .unwrap(),
        "ws",
    )
    .unwrap();
    assert_eq!(p.effective().mcp_default, gate::GateAnswer::Deny);
    assert_eq!(p.effective().exec_mode, exec::ExecMode::Allowlist);
    assert_eq!(p.effective().nofile, 10);
    assert_eq!(p.widens(&base), None);
    // Repeating what the base already grants is not widening.
    let mut p = base.clone();
    p.narrow(
        &Policy::parse(
            "[network]\nallow = [\"@anthropic\"]\n[files]\nread = [\"~/.cargo/bin\"]\n",
            "ws",
        )
        .unwrap(),
        "ws",
    )
    .unwrap();
    assert_eq!(p.widens(&base), None);
}

#[test]
fn widens_names_the_first_wider_setting() {
    let base = builtin("generic");
    let mut wider = base.clone();
    wider.gate.mcp_default = Some(gate::GateAnswer::Allow);
    assert_eq!(wider.widens(&base), Some("gate.mcp_default"));
    let mut wider = base.clone();
    wider.files.deny.pop();
    assert_eq!(wider.widens(&base), Some("files.deny"));
    let mut narrower = base.clone();
    narrower.process.pids_max = Some(1);
    assert_eq!(narrower.widens(&base), None);
    assert_eq!(base.widens(&narrower), Some("process.pids_max"));
}

#[test]
fn session_rules_match_the_sandbox_view() {
    let p = builtin("claude");
    let r = FileRules::session(&p, &anchors());
    let d = |path: &str, a| r.decide(std::path::Path::new(path), a);
    // The sandbox's private /tmp, /var/tmp and $HOME are scratch space there.
    assert!(d("/tmp/scratch.py", Access::Write).allowed);
    assert!(d("/var/tmp/x", Access::Write).allowed);
    assert!(d("/home/u/notes.txt", Access::Write).allowed);
    assert!(d("/tmp/scratch.py", Access::Read).allowed);
    // Credentials and persistence points stay refused inside them.
    assert_eq!(
        d("/home/u/.ssh/id_ed25519", Access::Read).rule,
        "files.deny"
    );
    assert_eq!(d("/home/u/.bashrc", Access::Write).rule, "files.protect");
    assert_eq!(
        d("/home/u/.config/warden/policy.toml", Access::Write).rule,
        "files.deny"
    );
    // Outside the private trees nothing changes.
    assert!(!d("/etc/passwd", Access::Write).allowed);
    assert!(!d("/srv/x", Access::Read).allowed);
    assert!(!d("/run/warden-gate/policy.json", Access::Write).allowed);
    // Outside a session /tmp is the host's and stays refused.
    let host = FileRules::new(&p, &anchors(), None);
    assert!(
        !host
            .decide(std::path::Path::new("/tmp/x"), Access::Write)
            .allowed
    );
    // files.read added by the user is honoured by both.
    let mut p2 = p.clone();
    p2.files.read.push("/srv/data".into());
    for r in [
        FileRules::new(&p2, &anchors(), None),
        FileRules::session(&p2, &anchors()),
    ] {
        let dd = r.decide(std::path::Path::new("/srv/data/a.csv"), Access::Read);
        assert!(dd.allowed && dd.rule == "files.read", "{dd:?}");
    }
}

#[test]
fn session_policy_round_trips_and_is_located_fail_closed() {
    use session::*;
    let s = SessionPolicy {
        version: VERSION,
        session_id: "s1".into(),
        profile: "claude".into(),
        workspace: "/home/u/proj".into(),
        home: "/home/u".into(),
        policy: builtin("claude"),
        known: Vec::new(),
        pinned: Vec::new(),
    };
    let back = SessionPolicy::from_json(s.to_json().as_bytes()).unwrap();
    assert_eq!(back, s);
    // Known files round-trip; a malformed hash or too many entries are refused.
    let mut k = s.clone();
    k.known.push(KnownFile {
        dev: 1,
        ino: 2,
        size: 3,
        mtime_ns: -4,
        ctime_ns: 1_700_000_000_123_456_789,
        sha256: "ab".repeat(32),
    });
    assert_eq!(SessionPolicy::from_json(k.to_json().as_bytes()).unwrap(), k);
    let mut bad = k.clone();
    bad.known[0].sha256 = "sha256:zz".into();
    assert!(SessionPolicy::from_json(bad.to_json().as_bytes()).is_err());
    let mut many = k.clone();
    many.known = vec![k.known[0].clone(); MAX_KNOWN + 1];
    assert!(SessionPolicy::from_json(many.to_json().as_bytes()).is_err());
    k.pinned.push(Pinned {
        sha256: "cd".repeat(32),
        size: 5,
        rule: "exec.deny:curl".into(),
    });
    assert_eq!(SessionPolicy::from_json(k.to_json().as_bytes()).unwrap(), k);
    let mut bad = k.clone();
    bad.pinned[0].sha256 = "+d".repeat(32);
    assert!(SessionPolicy::from_json(bad.to_json().as_bytes()).is_err());
    let mut many = k.clone();
    many.pinned = vec![k.pinned[0].clone(); MAX_KNOWN + 1];
    assert!(SessionPolicy::from_json(many.to_json().as_bytes()).is_err());
    assert!(SessionPolicy::from_json(b"{}").is_err());
    let mut v2 = s.clone();
    v2.version = 99;
    assert!(SessionPolicy::from_json(v2.to_json().as_bytes()).is_err());

    let dir = std::env::temp_dir().join(format!("warden-session-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("policy.json");
    // Nothing there and no env: outside.
    assert!(matches!(locate_at(&dir, &file, false), Location::Outside));
    // The env says inside but there is no policy: deny everything.
    assert!(matches!(locate_at(&dir, &file, true), Location::Broken(_)));
    // The directory without the file: broken, whatever the env says.
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(locate_at(&dir, &file, false), Location::Broken(_)));
    // A valid policy on a writable mount (what an agent could forge) is refused.
    std::fs::write(&file, s.to_json()).unwrap();
    match locate_at(&dir, &file, false) {
        Location::Broken(m) => assert!(m.contains("writable mount"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A symlink is not followed.
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
    assert!(matches!(locate_at(&dir, &file, false), Location::Broken(_)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn network_entries_accept_urls() {
    use network::entry_authority;
    assert_eq!(entry_authority("http://github.com").unwrap(), "github.com");
    assert_eq!(
        entry_authority("https://x.com:8443/path?q#f").unwrap(),
        "x.com:8443"
    );
    assert_eq!(
        entry_authority("example.org:8443").unwrap(),
        "example.org:8443"
    );
    assert!(entry_authority("https://user:pw@x.com/").is_err());
    assert!(entry_authority("ftp://x.com/").is_err());
    assert!(entry_authority("https:///x").is_err());
    assert!(Policy::parse(
        "[network]\nallow = [\"http://github.com\", \"https://x.com:8443/path\"]\n",
        "p"
    )
    .is_ok());
}

const ADVISOR_USER: &str = "[advisor]\nenabled = true\nendpoint = \"http://127.0.0.1:9/v1/messages\"\nmodel = \"m\"\nkey_env = \"WARDEN_ADVISOR_KEY\"\n";

#[test]
fn advisor_keys_are_refused_from_the_workspace_file_each_by_name() {
    for (doc, key) in [
        ("[advisor]\nenabled = false\n", "advisor.enabled"),
        ("[advisor]\nenabled = true\n", "advisor.enabled"),
        (
            "[advisor]\nendpoint = \"http://evil.example/v1\"\n",
            "advisor.endpoint",
        ),
        ("[advisor]\napi = \"openai\"\n", "advisor.api"),
        ("[advisor]\nmodel = \"x\"\n", "advisor.model"),
        ("[advisor]\nkey_env = \"OTHER_KEY\"\n", "advisor.key_env"),
        ("[advisor]\ntimeout_ms = 1\n", "advisor.timeout_ms"),
        (
            "[[advisor.classes]]\nname = \"x\"\nprograms = [\"psql\"]\n",
            "advisor.classes",
        ),
        (
            "[advisor]\nallow_resolution = []\n",
            "advisor.allow_resolution",
        ),
        ("[advisor]\ndisk_cache = true\n", "advisor.disk_cache"),
        ("[advisor]\nca_file = \"/tmp/ca.pem\"\n", "advisor.ca_file"),
        ("[advisor]\non_error = \"ask\"\n", "advisor.on_error"),
    ] {
        let mut p = builtin("generic");
        p.merge(&Policy::parse(ADVISOR_USER, "user").unwrap());
        let before = p.clone();
        let ws = Policy::parse(doc, "ws/.warden.toml").unwrap();
        match p.narrow(&ws, "ws/.warden.toml") {
            Err(PolicyError::Widening { key: k, file }) => {
                assert_eq!(k, key, "{doc}");
                assert_eq!(file, "ws/.warden.toml");
            }
            other => panic!("{doc}: {other:?}"),
        }
        assert_eq!(p.advisor, before.advisor, "{doc}: nothing applied");
    }
}

#[test]
fn advisor_section_from_the_workspace_file_is_refused_by_load() {
    let d = std::env::temp_dir().join(format!("warden-pol-adv-{}", std::process::id()));
    let ws = d.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(
        ws.join(".warden.toml"),
        "[advisor]\nendpoint = \"http://evil.example/v1/messages\"\n",
    )
    .unwrap();
    let user = d.join("user.toml");
    std::fs::write(&user, ADVISOR_USER).unwrap();
    let opts = LoadOptions {
        profile: Some("generic".into()),
        policy_file: Some(user.clone()),
        workspace: Some(ws.clone()),
        home: d.clone(),
        skip_machine_and_user: true,
    };
    let err = load(&opts).unwrap_err().to_string();
    assert!(err.contains("advisor.endpoint"), "{err}");
    assert!(err.contains(".warden.toml"), "{err}");
    std::fs::remove_file(ws.join(".warden.toml")).unwrap();
    let ok = load(&opts).unwrap();
    assert_eq!(
        ok.policy.advisor.endpoint.as_deref(),
        Some("http://127.0.0.1:9/v1/messages")
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn advisor_section_is_validated_precisely() {
    for (doc, want) in [
        ("[advisor]\nendpoint = \"ftp://x\"\n", "advisor.endpoint"),
        ("[advisor]\ntimeout_ms = 0\n", "advisor.timeout_ms = 0"),
        (
            "[advisor]\ntimeout_ms = 60000\n",
            "advisor.timeout_ms = 60000",
        ),
        (
            "[advisor]\nkey_env = \"sk-ant-123\"\n",
            "NAME of an environment variable",
        ),
        ("[advisor]\nmodel = \"\"\n", "advisor.model"),
        (
            "[[advisor.classes]]\nname = \"force_push\"\nprograms = [\"git\"]\n",
            "not a built-in class",
        ),
        (
            "[[advisor.classes]]\nname = \"db\"\n",
            "would match every call",
        ),
        (
            "[advisor]\nallow_resolution = [\"everything\"]\n",
            "`everything`",
        ),
        ("[advisor]\nmode = \"x\"\n", "unknown field `mode`"),
    ] {
        let err = Policy::parse(doc, "user.toml").unwrap_err().to_string();
        assert!(err.contains(want), "{doc}: {err}");
        assert!(err.starts_with("user.toml"), "{doc}: {err}");
    }
    Policy::parse(ADVISOR_USER, "user.toml").unwrap();
}

#[test]
fn advisor_effective_checks_completeness_and_key_isolation() {
    let mut p = builtin("generic");
    p.merge(&Policy::parse("[advisor]\nenabled = true\nmodel = \"m\"\n", "u").unwrap());
    let e = p
        .advisor
        .check_effective(&p.env.pass)
        .unwrap_err()
        .to_string();
    assert!(e.contains("advisor.endpoint is not set"), "{e}");
    // The claude profile passes ANTHROPIC_API_KEY to the agent: it cannot be the advisor's.
    let mut c = builtin("claude");
    c.merge(
        &Policy::parse(
            "[advisor]\nenabled = true\nendpoint = \"https://a.example/v1/messages\"\nmodel = \"m\"\nkey_env = \"ANTHROPIC_API_KEY\"\n",
            "u",
        )
        .unwrap(),
    );
    let e = c
        .advisor
        .check_effective(&c.env.pass)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("advisor.key_env `ANTHROPIC_API_KEY` would be passed into the sandbox by env.pass `ANTHROPIC_API_KEY`"),
        "{e}"
    );
    // A glob in env.pass counts too.
    let mut g = builtin("generic");
    g.merge(&Policy::parse(ADVISOR_USER, "u").unwrap());
    g.advisor.check_effective(&g.env.pass).unwrap();
    g.env.pass.push("WARDEN_ADV*".into());
    let e = g
        .advisor
        .check_effective(&g.env.pass)
        .unwrap_err()
        .to_string();
    assert!(e.contains("env.pass `WARDEN_ADV*`"), "{e}");
    // Layering: a later file overrides scalars, classes append by name.
    let mut m = builtin("generic");
    m.merge(&Policy::parse(ADVISOR_USER, "u").unwrap());
    m.merge(&Policy::parse("[advisor]\ntimeout_ms = 500\n", "f").unwrap());
    assert_eq!(m.advisor.timeout_ms, Some(500));
    assert_eq!(m.advisor.model.as_deref(), Some("m"));
    assert_eq!(m.widens(&builtin("generic")), Some("advisor"));
}

#[test]
fn network_ask_and_approvals_timeout() {
    let p = Policy::parse(
        "[network]\nask = [\"*.example.com\", \"host.test:8443\"]\n[approvals]\ntimeout_secs = 5\n",
        "user",
    )
    .unwrap();
    assert_eq!(p.network.ask.len(), 2);
    assert_eq!(p.approvals.timeout(), std::time::Duration::from_secs(5));
    assert_eq!(
        Policy::default().approvals.timeout(),
        std::time::Duration::from_secs(approvals::DEFAULT_TIMEOUT_SECS)
    );
    for (bad, want) in [
        (
            "[approvals]\ntimeout_secs = 0\n",
            "approvals.timeout_secs must be at least 1",
        ),
        ("[approvals]\ntimeout_secs = 100000\n", "at most 86400"),
        ("[approvals]\ntimeout = 5\n", "unknown field"),
        ("[network]\nask = [\"\"]\n", "network.ask: empty entry"),
        ("[network]\nask = [\"ftp://x.com\"]\n", "network.ask"),
    ] {
        let e = Policy::parse(bad, "p").unwrap_err().to_string();
        assert!(e.contains(want), "{bad}: {e}");
    }
    // From the workspace: a new ask entry widens (default deny becomes a question), so
    // does a longer wait; repeating the user's entries or a shorter wait narrows.
    let mut base = builtin("generic");
    base.merge(&p);
    for widening in [
        "[network]\nask = [\"evil.com\"]\n",
        "[approvals]\ntimeout_secs = 6\n",
        "[exec]\nask_unknown = true\n",
        "[files]\nask_write = [\".github/workflows\"]\n",
        "[approvals]\nheld = \"ask\"\n",
    ] {
        let mut b = base.clone();
        let doc = Policy::parse(widening, "ws").unwrap();
        match b.narrow(&doc, "ws") {
            Err(PolicyError::Widening { key, .. }) => {
                assert!(widening.contains(key.split('.').nth(1).unwrap()), "{key}")
            }
            other => panic!("{widening}: {other:?}"),
        }
    }
    let mut b = base.clone();
    b.narrow(
        &Policy::parse(
            "[network]\nask = [\"host.test:8443\"]\n[approvals]\ntimeout_secs = 2\n",
            "ws",
        )
        .unwrap(),
        "ws",
    )
    .unwrap();
    assert_eq!(b.approvals.timeout_secs, Some(2));
    assert_eq!(b.widens(&base), None);
    let mut wider = base.clone();
    wider.network.ask.push("new.test".into());
    assert_eq!(wider.widens(&base), Some("network.ask"));
}

#[test]
fn ask_write_entries_are_protected_and_only_the_users_own() {
    let mut p = builtin("generic");
    p.merge(
        &Policy::parse(
            "[files]\nask_write = [\".github/workflows\", \".mcp.json\"]\n",
            "user",
        )
        .unwrap(),
    );
    assert!(p.files.protect.contains(&".github/workflows".to_string()));
    assert!(p.files.protect.contains(&".mcp.json".to_string()));
    let base = builtin("generic");
    assert_eq!(p.widens(&base), Some("files.ask_write"));
    assert!(Policy::parse("[files]\nask_write = [\"\"]\n", "p").is_err());
}

#[test]
fn bad_network_patterns_are_errors_with_line_and_column() {
    for (text, line, col, needle) in [
        (
            "[network]\nallow = [\n  \"github.com\",\n  \"*\",\n]\n",
            4,
            3,
            "would allow every host",
        ),
        ("[network]\ndeny = [\"ex*ample.com\"]\n", 2, 9, "wildcard"),
        (
            "[network]\nallow = [\"a.com\", \"*.com\"]\n",
            2,
            19,
            "too broad",
        ),
        ("[network]\nask = [\"x.com:http\"]\n", 2, 8, "not a port"),
        (
            "[network]\nallow = [\"@nosuchset\"]\n",
            2,
            10,
            "unknown named set",
        ),
        (
            "\n[network]\nallow = [\"https://u:p@x.com/\"]\n",
            3,
            10,
            "credentials",
        ),
        ("[network]\nallow = [\"  \"]\n", 2, 10, "empty entry"),
    ] {
        match Policy::parse(text, "p.toml") {
            Err(PolicyError::Parse {
                file,
                line: l,
                col: c,
                msg,
            }) => {
                assert_eq!(
                    (file.as_str(), l, c),
                    ("p.toml", line, col),
                    "{text}: {msg}"
                );
                assert!(msg.contains(needle), "{text}: {msg}");
                assert!(msg.starts_with("network."), "{msg}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Good patterns of every kind still parse; the compiled rules decide.
    let p = Policy::parse(
        "[network]\nallow = [\"*.github.com\", \"example.org:8443\", \"127.1:4000\", \"@anthropic\", \"https://x.com/path\"]\n",
        "p.toml",
    )
    .unwrap();
    let n = crate::netrules::NetRules::from_section(&p.network).unwrap();
    assert!(n.decide_host("api.github.com", 443).allowed);
    assert!(!n.decide_host("github.com.evil", 443).allowed);
    assert!(n.decide_host("127.0.0.1", 4000).allowed);
    // A policy built in code gets the same checks, without a position.
    let mut p = Policy::default();
    p.network.allow.push("*".into());
    assert!(matches!(
        p.validate("code"),
        Err(PolicyError::Invalid { .. })
    ));
}

#[test]
fn bad_program_rules_are_errors_with_line_and_column() {
    for (text, line, col, needle) in [
        (
            "[exec]\ndeny = [\"curl\", \"sha256:abc\"]\n",
            2,
            17,
            "64 hex digits",
        ),
        ("[exec]\nallow = [\n\"index:\"]\n", 3, 1, "no trust index"),
        ("[exec]\ndeny = [\"\"]\n", 2, 9, "empty rule"),
    ] {
        match Policy::parse(text, "p.toml") {
            Err(PolicyError::Parse {
                line: l,
                col: c,
                msg,
                ..
            }) => {
                assert_eq!((l, c), (line, col), "{text}: {msg}");
                assert!(msg.contains(needle), "{text}: {msg}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let h = "ab".repeat(32);
    let p = Policy::parse(
        &format!("[exec]\ndeny = [\"curl\", \"/usr/bin/wget\", \"sha256:{h}\"]\n"),
        "p.toml",
    )
    .unwrap();
    assert_eq!(p.exec.deny.len(), 3);
}

/// Program rules resolve through the identity the caller supplies (the exec guard's hash
/// cache in warden); this one names files by their length.
#[test]
fn program_rules_resolve_names_and_paths_through_the_identity() {
    use crate::progrules::{ExecRules, Hash, Identity};
    use std::sync::Arc;
    struct ByLen;
    impl Identity for ByLen {
        fn of_path(&self, p: &std::path::Path) -> std::io::Result<Hash> {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&std::fs::metadata(p)?.len().to_le_bytes());
            Ok(h)
        }
        fn of_file(&self, fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Hash> {
            let f = std::fs::File::from(fd.try_clone_to_owned()?);
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&f.metadata()?.len().to_le_bytes());
            Ok(h)
        }
        fn index(&self, db: &std::path::Path) -> Result<Vec<Hash>, String> {
            Err(format!("no index {}", db.display()))
        }
    }
    let dir = std::env::temp_dir().join(format!("warden-progrules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("tool");
    std::fs::write(&f, "12345").unwrap();
    let mut p = Policy::default();
    p.exec.deny.push(f.display().to_string());
    let r = ExecRules::compile(&p, &dir, Arc::new(ByLen)).unwrap();
    let mut five = [0u8; 32];
    five[0] = 5;
    assert!(!r.decide(&five).allowed);
    assert!(r.decide(&[0u8; 32]).allowed);
    // Only a file of a denied file's size needs hashing; every size when a denial is a bare
    // hash (its size unknown), and in allowlist mode.
    assert!(r.must_hash(5) && !r.must_hash(6));
    assert_eq!(r.denied_files().len(), 1);
    assert_eq!(r.denied_files()[0].path, f);
    assert_eq!(r.denied_files()[0].size, 5);
    let mut q = p.clone();
    q.exec.deny.push(format!("sha256:{}", "ab".repeat(32)));
    assert!(ExecRules::compile(&q, &dir, Arc::new(ByLen))
        .unwrap()
        .must_hash(6));
    q.exec.deny.clear();
    assert!(!ExecRules::compile(&q, &dir, Arc::new(ByLen))
        .unwrap()
        .must_hash(6));
    q.exec.mode = Some(crate::exec::ExecMode::Allowlist);
    assert!(ExecRules::compile(&q, &dir, Arc::new(ByLen))
        .unwrap()
        .must_hash(6));
    // A refresh keeps what was denied: the file now holds other content (six bytes), and
    // both are denied (attack review 130: the old content, saved elsewhere, ran).
    let mut r = r;
    std::fs::write(&f, "123456").unwrap();
    r.refresh().unwrap();
    let mut six = [0u8; 32];
    six[0] = 6;
    assert!(!r.decide(&five).allowed && !r.decide(&six).allowed);
    assert!(r.must_hash(5) && r.must_hash(6) && !r.must_hash(7));
    std::fs::write(&f, "12345").unwrap();
    // An index the identity cannot read is fatal (the guard does not start half-configured).
    p.exec.allow.push("index:/nonexistent.db".into());
    let e = ExecRules::compile(&p, &dir, Arc::new(ByLen)).unwrap_err();
    assert!(e.contains("no index"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The typed errors print exactly what the string errors printed (users and the CLI tests
/// read these), and callers can match the variant instead of the text.
#[test]
fn typed_errors_keep_their_messages() {
    let msg = |text: &str| Policy::parse(text, "p.toml").unwrap_err().to_string();
    for (text, want) in [
        (
            "[network]\nallow = [\"a.com\", \"*.com\"]\n",
            "p.toml:2:19: network.allow: `*.com` is too broad (a whole top-level domain); name the domains",
        ),
        (
            "[network]\nask = [\"x.com:http\"]\n",
            "p.toml:2:8: network.ask: `x.com:http`: `http` is not a port",
        ),
        (
            "[network]\nallow = [\"@nosuchset\"]\n",
            "p.toml:2:10: network.allow: unknown named set `@nosuchset` (known: ",
        ),
        (
            "[network]\ndeny = [\"ftp://x.com\"]\n",
            "p.toml:2:9: network.deny: `ftp://x.com`: only http:// and https:// URLs (or bare hosts) can be network entries",
        ),
        (
            "[network]\nallow = [\"[fe80::zz]\"]\n",
            "p.toml:2:10: network.allow: `[fe80::zz]`: `fe80::zz` is not an IPv6 address",
        ),
        (
            "[network]\nallow = [\"1.2.3.999\"]\n",
            "p.toml:2:10: network.allow: `1.2.3.999`: `1.2.3.999` ends in a number but is not an IPv4 address",
        ),
        ("[network]\nallow = [\"  \"]\n", "p.toml:2:10: network.allow: empty entry"),
        (
            "[exec]\ndeny = [\"sha256:abc\"]\n",
            "p.toml:2:9: exec.deny: `sha256:abc` is not a sha256:<64 hex digits> hash",
        ),
        (
            "[exec]\nallow = [\"index:\"]\n",
            "p.toml:2:10: exec.allow: `index:` names no trust index file",
        ),
        (
            "[process]\npids_max = 0\n",
            "p.toml: process.pids_max must be at least 1",
        ),
        (
            "[process]\nmemory_max = \"2X\"\n",
            "p.toml:2:14: size `2X`: unknown suffix `X` (use K, M, G or T)",
        ),
        (
            "[audit]\nmax_mb = 0\n",
            "p.toml: audit.max_mb must be at least 1",
        ),
    ] {
        let got = msg(text);
        assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
    }
    // Narrowing names the key, as before.
    let mut base = Policy::parse("", "base").unwrap();
    let ws = Policy::parse("[network]\nallow = [\"x.com\"]\n", "ws").unwrap();
    let e = base.narrow(&ws, ".warden.toml").unwrap_err();
    assert!(matches!(&e, PolicyError::Widening { key, .. } if key == "network.allow"));
    assert_eq!(e.to_string(), ".warden.toml: a workspace policy may only narrow the policy, but it sets `network.allow`, which would widen it; move that setting to ~/.config/warden/policy.toml");
    // The typed variants are what callers match on.
    assert!(matches!(
        crate::netrules::check_entry("network.allow", "*"),
        Err(RuleError::InKey { ref err, .. }) if matches!(**err, RuleError::EveryHost { .. })
    ));
    assert!(matches!(
        ByteSize::parse("x"),
        Err(SizeError::NotANumber(_))
    ));
    let io = crate::load::parse_file(std::path::Path::new("/nonexistent/warden.toml")).unwrap_err();
    assert!(
        matches!(&io, PolicyError::Io { err, .. } if err.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(
        io.to_string()
            .starts_with("/nonexistent/warden.toml: cannot read: "),
        "{io}"
    );
}

#[test]
fn normalize_fast_path_agrees_with_the_component_walk() {
    let parts = [
        "", "/", "//", "a", ".", "..", "a/", "/a", "a/.", "./b", "../c", "d/..", ".x", "..y", "/.",
    ];
    let mut n = 0;
    for a in parts {
        for b in parts {
            for c in parts {
                let p = format!("{a}{b}{c}");
                if p.is_empty() {
                    continue;
                }
                let p = std::path::Path::new(&p);
                assert_eq!(normalize(p), normalize_components(p), "{}", p.display());
                n += 1;
            }
        }
    }
    assert!(n > 3000);
    assert_eq!(
        normalize(std::path::Path::new("/a/b/../c/./d/")),
        std::path::Path::new("/a/c/d")
    );
}

#[test]
fn append_unique_keeps_order_and_drops_repeats_in_both_forms() {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for n in [3usize, 40] {
        let mut dst: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
        let mut src: Vec<String> = (0..n).map(|i| format!("s{}", i % 5)).collect();
        src.push("d1".into());
        append_unique(&mut dst, &src);
        let mut want: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
        want.extend(v(&["s0", "s1", "s2"])[..].iter().cloned());
        if n > 3 {
            want.extend(v(&["s3", "s4"]));
        }
        assert_eq!(dst, want, "n={n}");
    }
}

#[test]
fn expand_agrees_with_join_then_normalize() {
    for (home, ws) in [
        ("/home/u", "/w/p"),
        ("/", "/"),
        ("/home/u/", "/w/p/"),
        ("//h", "/w/./p"),
    ] {
        let a = Anchors {
            home: PathBuf::from(home),
            workspace: PathBuf::from(ws),
        };
        for p in [
            "~",
            "~/",
            "~/.ssh",
            "~//etc/x",
            "~/a/../b",
            "rel",
            "rel/./x",
            "",
            "./x",
            "/abs",
            "/abs/../y",
            "~x",
        ] {
            let want = if p == "~" {
                normalize(&a.home)
            } else if let Some(rest) = p.strip_prefix("~/") {
                normalize(&a.home.join(rest))
            } else if p.starts_with('/') {
                normalize(std::path::Path::new(p))
            } else {
                normalize(&a.workspace.join(p))
            };
            assert_eq!(a.expand(p), want, "{home} {ws} {p}");
        }
    }
}

/// `SearchDirs` finds what `is_file` + `canonicalize` of each `dir/name` found: plain files
/// (through a symlinked directory too), symlinks to files (also dangling, to directories),
/// directories and missing names.
#[test]
fn search_dirs_resolve_as_is_file_and_canonicalize_do() {
    use crate::progrules::SearchDirs;
    use std::os::unix::fs::symlink;
    let t = std::env::temp_dir().join(format!("warden-searchdirs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&t);
    for d in ["real/bin", "other", "plain", "sub/dir"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("real/bin/tool"), "x").unwrap();
    std::fs::write(t.join("other/target"), "x").unwrap();
    std::fs::write(t.join("plain/tool"), "x").unwrap();
    symlink(t.join("real/bin"), t.join("linkbin")).unwrap();
    symlink("../other/target", t.join("plain/viaLink")).unwrap();
    symlink(t.join("nowhere"), t.join("plain/dangling")).unwrap();
    symlink(t.join("sub"), t.join("plain/todir")).unwrap();
    symlink("tool", t.join("real/bin/viaLink")).unwrap();
    let dirs: Vec<PathBuf> = ["linkbin", "plain", "missing", "real/bin", "sub"]
        .iter()
        .map(|d| t.join(d))
        .collect();
    let s = SearchDirs::of(dirs.clone());
    for name in [
        "tool", "viaLink", "dangling", "todir", "dir", "nope", "", ".", "..",
    ] {
        let mut want: Vec<PathBuf> = Vec::new();
        for d in &dirs {
            let c = d.join(name);
            if c.is_file() {
                let real = std::fs::canonicalize(&c).unwrap();
                if !want.contains(&real) {
                    want.push(real);
                }
            }
        }
        assert_eq!(s.all(name), want, "{name}");
        assert_eq!(s.first(name), want.first().cloned(), "{name}");
    }
    assert_eq!(s.all("tool").len(), 2);
    std::fs::remove_dir_all(&t).unwrap();
}

/// `under_bytes` of two `plain` spellings is `Path::starts_with`; anything not plain is
/// left to `Path` by the callers.
#[test]
fn under_bytes_agrees_with_path_starts_with_for_plain_spellings() {
    let parts = [
        "/", "/a", "/ab", "/a/b", "/a/b/", "/a//b", "/a/./b", "/a/../b", "a", "a/b", "/a/bc",
        "//a", "/.", "",
    ];
    let mut n = 0;
    for p in parts {
        for r in parts {
            let (pb, rb) = (p.as_bytes(), r.as_bytes());
            if plain(pb) && plain(rb) {
                n += 1;
                assert_eq!(
                    under_bytes(pb, rb),
                    std::path::Path::new(p).starts_with(r),
                    "{p:?} under {r:?}"
                );
            }
        }
    }
    assert!(n > 40, "{n}");
    for bad in ["/a/b/", "/a//b", "/a/./b", "//a", "/.", ""] {
        assert!(!plain(bad.as_bytes()), "{bad:?}");
    }
}
