//! The completeness test: ONE `warden run` session (hermetic `$HOME`, loopback only, risk
//! freezing off) runs a slice of the sandbox, exec, network and gate corpora next to an
//! ordinary workflow. From the host, after the session, each block is judged as blocked by
//! its effect (the real file, a host-side git run, the server's request log, the hook's
//! exit code), and each must appear in `warden log --json` for that session with its layer
//! and rule. The ordinary workflow in the same session (build a file, git commit, an allowed
//! connection) must have worked.
//!
//! What the sandbox refuses without any hook being called is recorded by the mechanisms in
//! `warden_sandbox::seen` (fanotify on hidden files), the exec guard's seccomp notification
//! (execs of hidden paths; EROFS'd writes with `[audit] record_writes`), the proxy and the
//! relay of hook reports. The attempts that stay invisible are listed in the README
//! ("Blocked attempts: what is recorded"); this test covers the recorded ones.

use super::common::{wait_until, warden, Scratch};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const W: &str = env!("CARGO_BIN_EXE_warden");

struct T {
    s: Scratch,
    server: Child,
    port: u16,
}

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.s
    }
}

impl T {
    fn new() -> T {
        let s = Scratch::beside("warden-complete", "session");
        let root = s.root.clone();
        let srv = root.join("srv");
        for d in [&srv, &s.home.join(".ssh")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(srv.join("hello.txt"), "hello through warden\n").unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // The server's request log (stderr) is how the host judges the denied request.
        let log = std::fs::File::create(root.join("server.log")).unwrap();
        let server = Command::new("/usr/bin/python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(&srv)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        T { s, server, port }
    }

    fn host_git(&self, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(&self.ws)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap()
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.join(rel)).unwrap_or_else(|e| format!("<{rel}: {e}>"))
    }
}

impl Drop for T {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A real Claude Code PreToolUse payload (captured from 2.1.330), re-aimed at this
/// workspace and at `command`.
fn claude_bash_payload(ws: &Path, command: &str) -> String {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../gate/tests/data/hook-events-2.1.330.jsonl");
    let text = std::fs::read_to_string(&fixtures).unwrap();
    let mut v: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["hook_event_name"] == "PreToolUse" && v["tool_name"] == "Bash")
        .expect("a Bash PreToolUse event in the fixtures");
    v["cwd"] = serde_json::json!(ws);
    v["tool_input"]["command"] = serde_json::json!(command);
    v.to_string()
}

/// One expected block: judged blocked from the host (`blocked`), and found in the log by
/// layer, rule and a fragment of `what` (or of `who`).
struct Block {
    name: &'static str,
    layer: &'static str,
    rule: &'static str,
    what: &'static str,
    kind: Option<&'static str>,
}

fn rows(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn every_block_of_one_session_is_in_the_log_with_its_rule() {
    let t = T::new();
    let p = t.port;
    // Host-side fixtures: a secret in the workspace (files.deny), a credential directory
    // with an executable in it, a repository with one commit.
    std::fs::write(t.ws.join("secret.env"), "API_KEY=TOPSECRET-ws\n").unwrap();
    std::fs::write(t.home.join(".ssh/id_ed25519"), "TOPSECRET-key\n").unwrap();
    std::fs::write(t.home.join(".ssh/run.sh"), "#!/bin/sh\necho RAN-FROM-SSH\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            t.home.join(".ssh/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    std::fs::write(t.ws.join("README"), "project\n").unwrap();
    for a in [
        &["init", "-q"][..],
        &["-c", "user.email=t@t", "-c", "user.name=t", "add", "README"],
        &[
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "first",
        ],
    ] {
        assert!(t.host_git(a).status.success(), "host git {a:?}");
    }
    std::fs::write(
        t.ws.join("gate.json"),
        claude_bash_payload(&t.ws, "curl -s https://example.com/"),
    )
    .unwrap();
    let hosts = t.root.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 test.local\n127.0.0.1 other.local\n").unwrap();
    let policy = t.root.join("policy.toml");
    std::fs::write(
        &policy,
        "[files]\ndeny = [\"secret.env\"]\n\
         [exec]\ndeny = [\"curl\"]\n\
         [network]\nallow = [\"test.local\", \"127.0.0.1\"]\n\
         [risk]\nenabled = false\n\
         [audit]\nrecord_writes = true\n",
    )
    .unwrap();
    // Each attempt leaves <name>.rc / <name>.out in the workspace for the host to judge.
    let script = format!(
        r#"
set -u
try() {{ name=$1; shift; "$@" > $name.out 2>&1; echo $? > $name.rc; }}
# --- blocks ---
cp /usr/bin/curl ./curl-copy
try exec_copy ./curl-copy --version
try exec_interp /usr/bin/python3 -c 'import subprocess,sys; sys.exit(subprocess.run(["/usr/bin/curl","--version"]).returncode)'
try exec_ldso /lib64/ld-linux-x86-64.so.2 /usr/bin/curl --version
try write_hook sh -c 'echo "echo PWNED" > .git/hooks/pre-commit'
try write_config sh -c 'printf "[core]\n\tfsmonitor = evil\n" >> .git/config'
try write_mcp sh -c 'echo "{{\"mcpServers\":{{}}}}" > .mcp.json'
try exec_proc_root /proc/self/root/usr/bin/curl --version
echo "${{GITHUB_TOKEN:-unset}}" > env_secret.out
try read_secret cat secret.env
try read_shadow cat /etc/shadow
try exec_hidden "$HOME/.ssh/run.sh"
try net_denied /usr/bin/python3 -c '
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://other.local:{p}/denied-by-warden")
    print("FETCHED")
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
'
{w} hook claude < gate.json > gate.out 2> gate.err; echo $? > gate.rc
try why_secret {w} why secret.env
# --- the ordinary workflow ---
printf 'int main(void) {{ return 0; }}\n' > prog.c
echo built > build.txt
git -c user.email=a@a -c user.name=agent add build.txt prog.c
git -c user.email=a@a -c user.name=agent commit -qm 'agent work' > commit.out 2>&1; echo $? > commit.rc
try net_allowed /usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen("http://test.local:{p}/hello.txt").read().decode().strip())'
"#,
        w = W
    );
    let o = warden(&t.home)
        .args(["run", "--policy"])
        .arg(&policy)
        .arg("--proxy-hosts-file")
        .arg(&hosts)
        .args(["--", "/bin/bash", "-c", &script])
        .current_dir(&t.ws)
        .env("GITHUB_TOKEN", "ghp_TOPSECRET")
        .stdin(Stdio::null())
        .output()
        .expect("spawn warden run");
    let ctx = format!(
        "warden run: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{ctx}");

    // ---- judged from the host: every attempt was blocked ----
    for name in ["exec_copy", "exec_interp", "exec_ldso", "exec_proc_root"] {
        assert_ne!(
            t.read(&format!("{name}.rc")).trim(),
            "0",
            "{name} ran\n{ctx}"
        );
        assert!(
            !t.read(&format!("{name}.out")).contains("curl 8")
                && !t.read(&format!("{name}.out")).contains("Protocols:"),
            "{name}: curl ran: {}",
            t.read(&format!("{name}.out"))
        );
    }
    assert!(
        !t.ws.join(".git/hooks/pre-commit").exists(),
        "a hook was planted\n{ctx}"
    );
    assert!(
        std::fs::read_to_string(t.ws.join(".mcp.json"))
            .unwrap_or_default()
            .is_empty(),
        ".mcp.json was written\n{ctx}"
    );
    assert_eq!(
        t.read("env_secret.out").trim(),
        "unset",
        "the token reached the agent"
    );
    let cfg = std::fs::read_to_string(t.ws.join(".git/config")).unwrap();
    assert!(!cfg.contains("fsmonitor"), "git config changed: {cfg}");
    for (name, secret) in [("read_secret", "TOPSECRET-ws"), ("read_shadow", "root:")] {
        assert!(
            !t.read(&format!("{name}.out")).contains(secret),
            "{name} leaked: {}",
            t.read(&format!("{name}.out"))
        );
    }
    assert_ne!(t.read("exec_hidden.rc").trim(), "0");
    assert!(!t.read("exec_hidden.out").contains("RAN-FROM-SSH"));
    let net = t.read("net_denied.out");
    assert!(
        net.starts_with("403") && !net.contains("FETCHED"),
        "net_denied: {net}"
    );
    // The 403 body says which rule and how a human allows it.
    assert!(
        net.contains("rule: network.default") && net.contains("allow = [\"other.local\"]"),
        "403 body: {net}"
    );
    let server_log = std::fs::read_to_string(t.root.join("server.log")).unwrap_or_default();
    assert!(
        !server_log.contains("denied-by-warden"),
        "the denied request reached the server: {server_log}"
    );
    assert_eq!(t.read("gate.rc").trim(), "2", "{}", t.read("gate.out"));
    let gate: serde_json::Value = serde_json::from_str(
        t.read("gate.out")
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or("{}"),
    )
    .unwrap();
    assert_eq!(
        gate["hookSpecificOutput"]["permissionDecision"], "deny",
        "{gate}"
    );
    // `warden why` inside named the hiding rule and the way to lift it.
    let why = t.read("why_secret.out");
    assert!(
        why.contains("files.deny:secret.env") && why.contains("a human removes"),
        "why: {why}"
    );
    assert_eq!(t.read("why_secret.rc").trim(), "6", "{why}");

    // ---- the ordinary workflow worked ----
    assert_eq!(t.read("build.txt"), "built\n");
    assert_eq!(t.read("commit.rc").trim(), "0", "{}", t.read("commit.out"));
    let log = t.host_git(&["log", "--format=%s"]);
    assert!(
        String::from_utf8_lossy(&log.stdout).starts_with("agent work\nfirst"),
        "host git log: {}",
        String::from_utf8_lossy(&log.stdout)
    );
    assert_eq!(
        t.read("net_allowed.out").trim(),
        "hello through warden",
        "{}",
        t.read("net_allowed.out")
    );

    // ---- every block is in the session's log, with layer and rule ----
    let lo = warden(&t.home)
        .args(["log", "--json"])
        .current_dir(&t.ws)
        .output()
        .unwrap();
    assert!(lo.status.success(), "warden log: {lo:?}");
    let rows = rows(&lo);
    let session = rows
        .iter()
        .find(|r| r["kind"] == "session_start")
        .and_then(|r| r["session"].as_str())
        .expect("a session_start row")
        .to_string();
    assert!(
        rows.iter().all(|r| r["session"] == session.as_str()),
        "one session only"
    );
    let ws = t.ws.display().to_string();
    let home = t.home.display().to_string();
    let expected = [
        Block {
            name: "exec by copy",
            layer: "exec",
            rule: "exec.deny:curl",
            what: "curl-copy",
            kind: Some("exec"),
        },
        Block {
            name: "exec from an interpreter",
            layer: "exec",
            rule: "exec.deny:curl",
            what: "/usr/bin/curl",
            kind: Some("exec"),
        },
        Block {
            name: "exec through ld.so",
            layer: "exec",
            rule: "exec.deny:curl",
            what: "/usr/bin/curl",
            kind: Some("mmap"),
        },
        Block {
            name: "write to .git/hooks",
            layer: "sandbox",
            rule: "files.protect:.git/hooks",
            what: ".git/hooks/pre-commit",
            kind: Some("write"),
        },
        Block {
            name: "exec through /proc/self/root",
            layer: "exec",
            rule: "exec.deny:curl",
            what: "/proc/self/root/usr/bin/curl",
            kind: Some("exec"),
        },
        Block {
            name: "write to an absent protected path (.mcp.json)",
            layer: "sandbox",
            rule: "files.protect:.mcp.json",
            what: ".mcp.json",
            kind: Some("write"),
        },
        Block {
            name: "secret scrubbed from the environment",
            layer: "sandbox",
            rule: "env.scrub",
            what: "env GITHUB_TOKEN",
            kind: None,
        },
        Block {
            name: "write to .git/config",
            layer: "sandbox",
            rule: "files.protect:.git/config",
            what: ".git/config",
            kind: Some("write"),
        },
        Block {
            name: "read of a hidden secret",
            layer: "sandbox",
            rule: "files.deny:secret.env",
            what: "secret.env",
            kind: None,
        },
        Block {
            name: "read of /etc/shadow",
            layer: "sandbox",
            rule: "files.deny:/etc/shadow",
            what: "/etc/shadow",
            kind: None,
        },
        Block {
            name: "exec of a hidden path",
            layer: "sandbox",
            rule: "files.deny:~/.ssh",
            what: ".ssh/run.sh",
            kind: Some("exec"),
        },
        Block {
            name: "network to a non-allowed host",
            layer: "proxy",
            rule: "network.default",
            what: "other.local",
            kind: None,
        },
        Block {
            name: "gate decision (hook report, a claim)",
            layer: "gate",
            rule: "exec.deny:curl",
            what: "curl",
            kind: None,
        },
    ];
    let mut missing = Vec::new();
    for b in &expected {
        let found = rows.iter().any(|r| {
            let verdict = r["verdict"].as_str().unwrap_or_default();
            let claimed = r["claimed_verdict"].as_str().unwrap_or_default();
            let what = r["what"].as_str().unwrap_or_default();
            let kind_ok = b.kind.is_none_or(|k| {
                r["extra"]["kind"].as_str() == Some(k)
                    || r["extra"]["kind"]
                        .as_str()
                        .is_some_and(|x| x.starts_with(k))
            });
            r["layer"] == b.layer
                && r["rule"].as_str().is_some_and(|x| x.starts_with(b.rule))
                && (verdict == "deny" || claimed == "deny")
                && (what.contains(b.what) || what.contains(&b.what.replace("~", &home)))
                && kind_ok
        });
        if !found {
            missing.push(b.name);
        }
    }
    let denials: Vec<String> = rows
        .iter()
        .filter(|r| r["verdict"] == "deny" || r["claimed_verdict"] == "deny")
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r["layer"], r["rule"], r["what"], r["extra"]["kind"], r["kind"]
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "blocks missing from `warden log --json` for session {session} (workspace {ws}): {missing:?}\nthe denials recorded:\n{}\n{ctx}",
        denials.join("\n")
    );
}
