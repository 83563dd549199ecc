//! Approvals through `warden run`: a `[network] ask` host blocks the agent's connection until
//! a human answers from outside (`warden approve`, run by this test process on the host, or
//! Ctrl-] a/A/d on the `warden run` terminal). Judged from the host: the test's own HTTP
//! server logs every request that reached it, so a denied or timed-out request is one the
//! server never saw. Hermetic HOME, loopback only; names come from a test hosts file read
//! by the proxy (`--proxy-hosts-file`, a supervisor flag the agent cannot set).

use super::common::{text, wait_until, warden, Scratch};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct T {
    s: Scratch,
    server: Child,
    port: u16,
    /// Extra `warden run` flags.
    flags: Vec<String>,
    /// Extra policy text.
    extra: String,
}

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.s
    }
}

impl T {
    fn new(name: &str) -> T {
        let s = Scratch::beside("warden-appr", name);
        let root = s.root.clone();
        let srv = root.join("srv");
        std::fs::create_dir_all(&srv).unwrap();
        for f in ["one", "two", "three", "four", "a1", "a2", "b1"] {
            std::fs::write(srv.join(f), format!("served {f}\n")).unwrap();
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // The server's own log (host side): one line per request that reached it.
        let log = std::fs::File::create(root.join("server.log")).unwrap();
        let server = Command::new("/usr/bin/python3")
            .args([
                "-u",
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
        std::fs::write(
            root.join("hosts"),
            "127.0.0.1 ask-a.test\n127.0.0.1 ask-b.test\n",
        )
        .unwrap();
        T {
            s,
            server,
            port,
            flags: Vec::new(),
            extra: String::new(),
        }
    }

    fn policy(&self, timeout: u64) -> PathBuf {
        let p = self.root.join("policy.toml");
        let port = self.port;
        std::fs::write(
            &p,
            format!(
                "[network]\nask = [\"ask-a.test:{port}\", \"ask-b.test:{port}\", \"127.0.0.1:{port}\"]\n[approvals]\ntimeout_secs = {timeout}\n{}",
                self.extra
            ),
        )
        .unwrap();
        p
    }

    fn run_args(&self, timeout: u64, script: &str) -> Vec<String> {
        let mut v: Vec<String> = vec![env!("CARGO_BIN_EXE_warden").into(), "run".into()];
        v.extend(self.flags.iter().cloned());
        v.extend([
            "--policy".into(),
            self.policy(timeout).display().to_string(),
            "--proxy-hosts-file".into(),
            self.root.join("hosts").display().to_string(),
            "--".into(),
            "/bin/bash".into(),
            "-c".into(),
            script.into(),
        ]);
        v
    }

    /// Starts `warden run` (no terminal) with the agent script.
    fn spawn(&self, timeout: u64, script: &str) -> Child {
        self.spawn_env(timeout, script, &[])
    }

    fn spawn_env(&self, timeout: u64, script: &str, env: &[(&str, String)]) -> Child {
        let args = self.run_args(timeout, script);
        Command::new(&args[0])
            .args(&args[1..])
            .current_dir(&self.ws)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("HOME", &self.home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `warden approve ...` from the host (outside the session).
    fn approve(&self, args: &[&str]) -> Output {
        warden(&self.home)
            .arg("approve")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn pending(&self) -> Vec<serde_json::Value> {
        let o = self.approve(&["--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
    }

    /// Waits for a pending request not in `seen`, returns it.
    fn next_pending(&self, seen: &[u64], limit: Duration) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(p) = self
                .pending()
                .into_iter()
                .find(|p| !seen.contains(&p["id"].as_u64().unwrap_or(0)))
            {
                return p;
            }
            assert!(
                t0.elapsed() < limit,
                "no new approval request within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn answer(&self, id: u64, flag: &str) {
        let o = self.approve(&[&id.to_string(), flag]);
        assert!(o.status.success(), "approve {id} {flag}: {}", text(&o));
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    fn reached(&self, path: &str) -> usize {
        self.server_log()
            .matches(&format!("\"GET /{path} HTTP"))
            .count()
    }
}

impl Drop for T {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn finish(c: Child) -> Output {
    c.wait_with_output().unwrap()
}

/// One curl through the proxy (HTTP_PROXY is set inside), printing body and status.
fn curl(host: &str, port: u16, path: &str) -> String {
    format!("curl -s -w '\\n{path}: code=%{{http_code}}\\n' http://{host}:{port}/{path}; ")
}

#[test]
fn allow_once_admits_one_request_and_the_next_asks_again_then_deny() {
    let t = T::new("once");
    let p = t.port;
    let script = format!(
        "{}{}",
        curl("ask-a.test", p, "one"),
        curl("ask-a.test", p, "two")
    );
    let child = t.spawn(30, &script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    // The request shows exactly what would be allowed: host:port and the resolved address.
    assert_eq!(first["kind"], "network", "{first}");
    assert_eq!(first["subject"]["host"], "ask-a.test", "{first}");
    assert_eq!(first["subject"]["port"], p, "{first}");
    assert_eq!(
        first["subject"]["addrs"],
        serde_json::json!([format!("127.0.0.1:{p}")]),
        "{first}"
    );
    // Nothing reached the server while it waits.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(t.reached("one"), 0, "{}", t.server_log());
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-once");
    // The second request asks again (allow-once is not allow-session).
    let second = t.next_pending(&[id1], Duration::from_secs(20));
    let id2 = second["id"].as_u64().unwrap();
    assert_ne!(id1, id2);
    t.answer(id2, "--deny");
    let o = finish(child);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("served one") && s.contains("one: code=200"),
        "{}",
        text(&o)
    );
    assert!(s.contains("two: code=403"), "{}", text(&o));
    assert!(
        s.contains("denied by warden approval") && s.contains("warden approve ID --allow-once"),
        "the 403 says why and how to allow it:\n{}",
        text(&o)
    );
    // Judged from the server's own log: one reached it, two never did.
    assert_eq!(t.reached("one"), 1, "{}", t.server_log());
    assert_eq!(t.reached("two"), 0, "{}", t.server_log());
    // The prompt was shown on the supervisor's terminal (stderr), with the keys.
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("APPROVAL") && e.contains("Ctrl-] a"),
        "{}",
        text(&o)
    );
    // Answering again, or an unknown id, is refused.
    let o = t.approve(&[&id1.to_string(), "--allow-once"]);
    assert!(!o.status.success(), "{}", text(&o));
    // The audit store has each request and answer, with who answered.
    let log = warden(&t.home).args(["log", "--json"]).output().unwrap();
    let l = String::from_utf8_lossy(&log.stdout);
    assert!(
        l.matches("\"approval\"").count() >= 4 && l.contains("via the control socket"),
        "{}",
        text(&log)
    );
}

#[test]
fn no_answer_is_a_deny_at_the_deadline() {
    let t = T::new("timeout");
    let p = t.port;
    let script = format!(
        "date +%s.%N > t0; {}date +%s.%N > t1",
        curl("ask-a.test", p, "three")
    );
    // A desktop session: a notify-send on PATH (a fake that records its arguments, on the
    // host) and a display.
    let bin = t.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let notified = t.root.join("notified");
    std::fs::write(
        bin.join("notify-send"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> {}\n",
            notified.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        bin.join("notify-send"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = t.spawn_env(2, &script, &[("PATH", path), ("DISPLAY", ":99".into())]);
    let _ = t.next_pending(&[], Duration::from_secs(20));
    // `warden top` lists the waiting request.
    let top = warden(&t.home).args(["top", "--once"]).output().unwrap();
    let ts = String::from_utf8_lossy(&top.stdout);
    assert!(
        ts.contains("1 approval request(s) waiting") && ts.contains("connect to ask-a.test"),
        "{}",
        text(&top)
    );
    let o = finish(child);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("three: code=403"), "{}", text(&o));
    assert!(
        s.contains("denied by warden approval") && s.contains("nobody answered within 2 s"),
        "{}",
        text(&o)
    );
    let secs = |f: &str| -> f64 {
        std::fs::read_to_string(t.ws.join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let waited = secs("t1") - secs("t0");
    assert!((1.9..15.0).contains(&waited), "waited {waited} s");
    assert_eq!(t.reached("three"), 0, "{}", t.server_log());
    assert!(t.pending().is_empty());
    let n = std::fs::read_to_string(&notified).unwrap_or_default();
    assert!(
        n.contains("warden: approval needed") && n.contains("connect to ask-a.test"),
        "desktop notification: {n:?}"
    );
}

#[test]
fn allow_session_for_one_host_does_not_admit_another() {
    let t = T::new("session");
    let p = t.port;
    let script = format!(
        "{}{}{}",
        curl("ask-a.test", p, "a1"),
        curl("ask-a.test", p, "a2"),
        curl("ask-b.test", p, "b1")
    );
    // A short deadline: a request that asked and got no answer would be denied.
    let child = t.spawn(3, &script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    assert_eq!(first["subject"]["host"], "ask-a.test", "{first}");
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-session");
    // a2 is admitted without a question; b1 asks: we deny it.
    let next = t.next_pending(&[id1], Duration::from_secs(20));
    assert_eq!(
        next["subject"]["host"], "ask-b.test",
        "the allow-session for ask-a must not cover ask-b, nor ask again for ask-a: {next}"
    );
    t.answer(next["id"].as_u64().unwrap(), "--deny");
    let o = finish(child);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("a1: code=200") && s.contains("a2: code=200"),
        "{}",
        text(&o)
    );
    assert!(s.contains("b1: code=403"), "{}", text(&o));
    assert_eq!(t.reached("a1") + t.reached("a2"), 2, "{}", t.server_log());
    assert_eq!(t.reached("b1"), 0, "{}", t.server_log());
}

#[test]
fn the_agent_cannot_approve_its_own_request() {
    agent_cannot_approve(T::new("inside"));
}

/// Without user namespaces (Landlock only): the agent shares the host's mount and pid
/// namespaces, so the socket's path may be reachable; the control socket's peer checks
/// (the session's cgroup leaf) still refuse it.
#[test]
fn the_agent_cannot_approve_its_own_request_without_namespaces() {
    let mut t = T::new("inside-nons");
    t.flags = vec!["--simulate-no-userns".into(), "--best-effort".into()];
    agent_cannot_approve(t);
}

fn agent_cannot_approve(t: T) {
    let p = t.port;
    let host_sessions = t.home.join(".local/state/warden/sessions");
    let warden = env!("CARGO_BIN_EXE_warden");
    // The agent asks, then tries every way it has to answer: its own `warden approve`
    // (if it can run the binary), the control socket at the host's path, any socket under
    // its own $HOME, and a forged Ctrl-] a / Ctrl-] A on its terminal and output.
    let py = format!(
        r#"
import glob, os, socket
paths = glob.glob("{hs}/*.sock") + glob.glob(os.path.expanduser("~/.local/state/warden/sessions/*.sock"))
print("sockets visible:", paths)
for p in paths:
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(p); print("CONNECTED", p)
    except OSError as e:
        print("connect failed", p, e.errno)
"#,
        hs = host_sessions.display()
    );
    std::fs::write(t.ws.join("probe.py"), py).unwrap();
    let script = format!(
        "curl -s -w '\\nfour: code=%{{http_code}}\\n' http://ask-a.test:{p}/four > out.txt & \
         sleep 1; \
         for i in 1 2 3; do {warden} approve 1 --allow-session; {warden} approve --json; done 2>&1 | sed 's/^/inside-approve: /'; \
         mkdir -p fake/.local/state/warden/sessions; \
         ln -sf {hs}/$WARDEN_SESSION_ID.sock fake/.local/state/warden/sessions/$WARDEN_SESSION_ID.sock; \
         HOME=$PWD/fake {warden} approve 1 --allow-session 2>&1 | sed 's/^/inside-approve-link: /'; \
         /usr/bin/python3 probe.py; \
         printf '\\035a\\035A' > /dev/tty 2>/dev/null; printf '\\035a\\035A'; printf '\\035A' >&2; \
         touch forged-done; wait; cat out.txt",
        hs = host_sessions.display()
    );
    let child = t.spawn(6, &script);
    let req = t.next_pending(&[], Duration::from_secs(20));
    // Wait until the agent has tried everything, then check the request still waits.
    let t0 = Instant::now();
    while !t.ws.join("forged-done").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "agent never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let still: Vec<u64> = t
        .pending()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    assert!(
        still.contains(&req["id"].as_u64().unwrap()),
        "the agent's attempts must not answer it: {still:?}"
    );
    let o = finish(child);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(!s.contains("CONNECTED"), "{}", text(&o));
    assert!(!s.contains("request 1 answered"), "{}", text(&o));
    // The attempt through a link to the real socket ran (and was refused or found nothing).
    assert!(s.contains("inside-approve-link: "), "{}", text(&o));
    assert!(s.contains("four: code=403"), "{}", text(&o));
    assert_eq!(t.reached("four"), 0, "{}", t.server_log());
}

/// With a terminal: `warden run` under `script` (a pty the test drives). The agent's forged
/// Ctrl-] sequences on its own pty do nothing; the human's Ctrl-] d and Ctrl-] a, typed on
/// the `warden run` terminal, deny and allow.
#[test]
fn terminal_keys_answer_and_the_agents_forged_keys_do_not() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no /usr/bin/script for a pty");
        return;
    }
    let t = T::new("tty");
    let p = t.port;
    let script = format!(
        "curl -s -w '\\none: code=%{{http_code}}\\n' http://ask-a.test:{p}/one > out1.txt & \
         sleep 1; printf '\\035a\\035A' > /dev/tty; printf '\\035a'; touch forged-done; wait; \
         curl -s -w '\\ntwo: code=%{{http_code}}\\n' http://ask-a.test:{p}/two > out2.txt; \
         cat out1.txt out2.txt > result.txt"
    );
    let args = t.run_args(20, &script);
    let cmd = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new("/usr/bin/script")
        .args(["-qfec", &cmd, "/dev/null"])
        .current_dir(&t.ws)
        .env("HOME", &t.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = child.stdin.take().unwrap();
    let first = t.next_pending(&[], Duration::from_secs(20));
    let t0 = Instant::now();
    while !t.ws.join("forged-done").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "agent never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let id1 = first["id"].as_u64().unwrap();
    assert!(
        t.pending().iter().any(|p| p["id"].as_u64() == Some(id1)),
        "the agent's forged Ctrl-] keys must not answer"
    );
    // The human: Ctrl-] d denies the oldest request.
    keys.write_all(b"\x1dd").unwrap();
    keys.flush().unwrap();
    let second = t.next_pending(&[id1], Duration::from_secs(20));
    // Ctrl-] a allows it once.
    keys.write_all(b"\x1da").unwrap();
    keys.flush().unwrap();
    let t0 = Instant::now();
    while !t.ws.join("result.txt").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "session never finished"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(keys);
    let o = finish(child);
    let r = std::fs::read_to_string(t.ws.join("result.txt")).unwrap();
    assert!(r.contains("one: code=403"), "{r}\n{}", text(&o));
    assert!(r.contains("two: code=200"), "{r}\n{}", text(&o));
    assert_eq!(t.reached("one"), 0, "{}", t.server_log());
    assert_eq!(t.reached("two"), 1, "{}", t.server_log());
    let _ = second;
    // The audit names the terminal as who answered.
    let log = warden(&t.home).args(["log", "--json"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&log.stdout).contains("warden run terminal"),
        "{}",
        text(&log)
    );
}

/// Allowlist mode with `exec.ask_unknown`: an exec of unknown content waits for a human.
/// Judged from the host: each program appends its name to a marker file (in the
/// workspace) only if it ran; allow-once admits one exec, allow-session admits the same
/// content (a copy under another name too) and never other content.
#[test]
fn exec_of_unknown_content_asks_and_is_bound_to_its_hash() {
    let t = T::new("exec");
    let allow = vec!["/usr/bin/bash".to_string(), "/usr/bin/true".to_string()];
    let list = super::common::allow_list_with_libraries(&allow);
    let policy = t.root.join("exec-policy.toml");
    std::fs::write(
        &policy,
        format!("[exec]\nmode = \"allowlist\"\nask_unknown = true\nallow = [{list}]\n[approvals]\ntimeout_secs = 4\n"),
    )
    .unwrap();
    // Two programs of unknown content (hash A, hash B): bash scripts would run bash (known),
    // so these are copies of `true` padded with one different byte each.
    use std::os::unix::fs::PermissionsExt;
    for (name, pad) in [("prog-a", 0u8), ("prog-b", 1u8)] {
        let mut b = std::fs::read("/usr/bin/true").unwrap();
        b.push(pad);
        std::fs::write(t.ws.join(name), b).unwrap();
        std::fs::set_permissions(t.ws.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::copy(t.ws.join("prog-a"), t.ws.join("prog-a-copy")).unwrap();
    let script = "./prog-a 1 && echo a1 >> ran; ./prog-a 2 && echo a2 >> ran; \
                  ./prog-a 3 && echo a3 >> ran; ./prog-a-copy && echo a-copy >> ran; \
                  ./prog-b && echo b >> ran; true";
    let child = warden(&t.home)
        .args([
            "run",
            "--no-index",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/bash",
            "-c",
            script,
        ])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let first = t.next_pending(&[], Duration::from_secs(20));
    assert_eq!(first["kind"], "exec", "{first}");
    let argv = first["subject"]["argv"].clone();
    assert_eq!(argv, serde_json::json!(["./prog-a", "1"]), "{first}");
    // The program as the kernel names the file that was opened and hashed.
    let shown = first["subject"]["path"].as_str().unwrap();
    assert!(
        shown.ends_with("/prog-a (as ./prog-a)") && shown.starts_with('/'),
        "{first}"
    );
    let hash_a = first["subject"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(hash_a.len(), 64, "{first}");
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-once");
    // Allow-once: the next exec of the same content asks again; allow it for the session.
    let second = t.next_pending(&[id1], Duration::from_secs(20));
    assert_eq!(
        second["subject"]["argv"],
        serde_json::json!(["./prog-a", "2"]),
        "{second}"
    );
    let id2 = second["id"].as_u64().unwrap();
    t.answer(id2, "--allow-session");
    // a3 and the copy (same hash) run without a question; prog-b (hash B) asks: deny.
    let third = t.next_pending(&[id1, id2], Duration::from_secs(20));
    assert_eq!(
        third["subject"]["argv"],
        serde_json::json!(["./prog-b"]),
        "allow-session for hash A must admit only hash A: {third}"
    );
    assert_ne!(third["subject"]["sha256"].as_str().unwrap(), hash_a);
    t.answer(third["id"].as_u64().unwrap(), "--deny");
    let o = finish(child);
    let ran = std::fs::read_to_string(t.ws.join("ran")).unwrap_or_default();
    assert_eq!(ran, "a1\na2\na3\na-copy\n", "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("./prog-b: Permission denied"),
        "{}",
        text(&o)
    );
}

/// A client that gives up (curl --max-time) withdraws its request: no ghost stays on the
/// list for a human to approve later.
#[test]
fn a_request_whose_client_gave_up_is_withdrawn() {
    let t = T::new("gaveup");
    let p = t.port;
    let script = format!(
        "curl -s --max-time 1 -o /dev/null http://ask-a.test:{p}/one; touch gave-up; sleep 2"
    );
    let child = t.spawn(30, &script);
    let _ = t.next_pending(&[], Duration::from_secs(20));
    let t0 = Instant::now();
    while !t.ws.join("gave-up").exists() {
        assert!(t0.elapsed() < Duration::from_secs(20), "curl never gave up");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    assert!(t.pending().is_empty(), "{:?}", t.pending());
    let o = finish(child);
    assert_eq!(t.reached("one"), 0, "{}", t.server_log());
    assert!(o.status.success(), "{}", text(&o));
}

/// `[approvals] gate = "warden"`: the gate's ask (an unknown MCP tool) does not go to the
/// agent's own prompt: `warden hook` inside waits until a human answers from outside. Allow
/// once lets that call through, the next identical call asks again and a deny denies; no
/// answer within the timeout denies too. Judged from the host by the hook's own answers
/// (written to files in the workspace) and the audit store.
#[test]
fn gate_asks_wait_for_a_human_outside_the_agent() {
    let mut t = T::new("gate");
    t.extra = "gate = \"warden\"\n".into();
    let payload = serde_json::json!({
        "session_id": "s1",
        "transcript_path": "/nonexistent",
        "cwd": t.ws.display().to_string(),
        "hook_event_name": "PreToolUse",
        "tool_name": "mcp__unknown_server__do_thing",
        "tool_input": {"x": 1},
        "tool_use_id": "toolu_gate1"
    });
    std::fs::write(t.ws.join("ask.json"), payload.to_string()).unwrap();
    let w = env!("CARGO_BIN_EXE_warden");
    let script = format!(
        "for i in 1 2 3; do {w} hook claude < ask.json > out$i.json; echo \"rc$i=$?\" >> rcs; done"
    );
    let child = t.spawn(3, &script);
    let first = t.next_pending(&[], Duration::from_secs(30));
    assert_eq!(first["subject"]["kind"], "gate", "{first}");
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-once");
    let second = t.next_pending(&[id1], Duration::from_secs(30));
    let id2 = second["id"].as_u64().unwrap();
    t.answer(id2, "--deny");
    // The third is never answered: the 3 s timeout denies it.
    let o = finish(child);
    assert!(o.status.success(), "{}", text(&o));
    let out =
        |i: u32| std::fs::read_to_string(t.ws.join(format!("out{i}.json"))).unwrap_or_default();
    let rcs = std::fs::read_to_string(t.ws.join("rcs")).unwrap_or_default();
    // warden's allow defers to the agent's own checks: no decision on stdout, exit 0.
    let decision = |i: u32| -> String {
        if out(i).trim().is_empty() && rcs.contains(&format!("rc{i}=0")) {
            return "allow".into();
        }
        serde_json::from_str::<serde_json::Value>(&out(i))
            .ok()
            .and_then(|v| {
                v["hookSpecificOutput"]["permissionDecision"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("(no decision: {} {rcs})", out(i)))
    };
    assert_eq!(decision(1), "allow", "allow-once: {}", out(1));
    assert_eq!(decision(2), "deny", "deny: {}", out(2));
    assert_eq!(decision(3), "deny", "timeout: {}", out(3));
    assert!(
        out(2).contains("warden approve"),
        "the deny says how a human answers: {}",
        out(2)
    );
    // The registry audited each request and answer (warden's own rows, not claims).
    let log = Command::new(w)
        .args(["log", "--json"])
        .env("HOME", &t.home)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&log.stdout);
    let rows: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"layer\":\"approval\"") && l.contains("\"origin\":\"warden\""))
        .collect();
    assert!(
        rows.iter()
            .any(|l| l.contains("allow_once") || l.contains("allow-once")),
        "{log}"
    );
    // The unanswered one ends at the deadline: the registry's timeout, or (on a loaded
    // machine) the hook giving up at the same deadline a moment earlier, which the
    // registry records as withdrawn. Either way it was denied (decision(3) above).
    assert!(
        rows.iter()
            .any(|l| l.contains("timeout") || l.contains("withdrawn")),
        "{log}"
    );
}

/// `warden top` on a terminal (a pty the test drives with `script`): the pending request is
/// listed with the selection mark, `d` denies it and `a` allows the next one once, through
/// the session's control socket (audited as such). Judged from the host: the server's log.
#[test]
fn top_keys_answer_through_the_control_socket() {
    if !std::path::Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no /usr/bin/script for a pty");
        return;
    }
    let t = T::new("top");
    let p = t.port;
    let script = format!(
        "{}{}",
        curl("ask-a.test", p, "one"),
        curl("ask-a.test", p, "two")
    );
    let child = t.spawn(30, &script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    let id1 = first["id"].as_u64().unwrap();
    let top_out = t.root.join("top.out");
    let mut top = Command::new("/usr/bin/script")
        .args([
            "-qfec",
            &format!("'{}' top", env!("CARGO_BIN_EXE_warden")),
            top_out.to_str().unwrap(),
        ])
        .env("HOME", &t.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut keys = top.stdin.take().unwrap();
    let screen = || std::fs::read_to_string(&top_out).unwrap_or_default();
    let wait_for = |what: &str| {
        let t0 = Instant::now();
        while !screen().contains(what) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "top never showed {what:?}:\n{}",
                screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // The request is listed, selected, with the keys.
    wait_for(&format!(">{id1:>4}"));
    assert!(screen().contains("a allow once"), "{}", screen());
    keys.write_all(b"d").unwrap();
    keys.flush().unwrap();
    let second = t.next_pending(&[id1], Duration::from_secs(20));
    let id2 = second["id"].as_u64().unwrap();
    // The next request becomes selected only once it is shown; then `a` allows it once.
    wait_for(&format!(">{id2:>4}"));
    keys.write_all(b"a").unwrap();
    keys.flush().unwrap();
    let o = finish(child);
    keys.write_all(b"q").unwrap();
    keys.flush().unwrap();
    drop(keys);
    let t0 = Instant::now();
    loop {
        if let Some(st) = top.try_wait().unwrap() {
            assert!(st.success(), "top: {st:?}\n{}", screen());
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "top did not quit on q:\n{}",
            screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("one: code=403"), "{}", text(&o));
    assert!(s.contains("two: code=200"), "{}", text(&o));
    assert_eq!(t.reached("one"), 0, "{}", t.server_log());
    assert_eq!(t.reached("two"), 1, "{}", t.server_log());
    assert!(
        screen().contains(&format!("request {id2} answered allow-once")),
        "{}",
        screen()
    );
    // Audited as answers through the control socket, one deny and one allow-once.
    let log = warden(&t.home).args(["log", "--json"]).output().unwrap();
    let l = String::from_utf8_lossy(&log.stdout);
    let answers = l
        .lines()
        .filter(|r| r.contains("via the control socket") && r.contains("\"approval\""))
        .count();
    assert!(answers >= 2, "{l}");
}

/// A workspace with a protected file `ci/deploy.yml` (content "original") that a human may
/// allow a write to (`[files] ask_write`), and a writable `other/deploy.yml`.
fn ask_write_setup(t: &T, timeout: u64) -> PathBuf {
    std::fs::create_dir_all(t.ws.join("ci")).unwrap();
    std::fs::create_dir_all(t.ws.join("other")).unwrap();
    std::fs::write(t.ws.join("ci/deploy.yml"), "original\n").unwrap();
    std::fs::write(t.ws.join("other/deploy.yml"), "other\n").unwrap();
    let p = t.root.join("write-policy.toml");
    std::fs::write(
        &p,
        format!(
            "[files]\nask_write = [\"ci/deploy.yml\"]\n[approvals]\ntimeout_secs = {timeout}\n"
        ),
    )
    .unwrap();
    p
}

fn spawn_write(t: &T, policy: &std::path::Path, script: &str) -> Child {
    warden(&t.home)
        .args([
            "run",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/bash",
            "-c",
            script,
        ])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    let o = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b)?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `[files] ask_write`: a write to the protected file waits; allow-once lets that one open
/// write the REAL file (judged on the host after the session); the next write asks again
/// (showing the new content's hash) and a deny leaves the host file as it was. Workspace
/// writes never ask.
#[test]
fn protected_write_asks_and_allow_once_writes_the_real_file() {
    let t = T::new("wask");
    let policy = ask_write_setup(&t, 30);
    let script = "echo legit > legit.txt && echo legit-ok >> log; \
                  printf 'approved\\n' > ci/deploy.yml && echo w1-ok >> log || echo w1-fail >> log; \
                  printf 'denied\\n' > ci/deploy.yml && echo w2-ok >> log || echo w2-fail >> log; \
                  echo more >> legit.txt && echo legit2-ok >> log";
    let child = spawn_write(&t, &policy, script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    assert_eq!(first["kind"], "write", "{first}");
    let path = first["subject"]["path"].as_str().unwrap();
    assert!(path.ends_with("/ci/deploy.yml"), "{first}");
    assert_eq!(
        first["subject"]["sha256"].as_str().unwrap(),
        sha256_hex(b"original\n"),
        "the request shows the current content's hash: {first}"
    );
    assert!(
        first["rule"]
            .as_str()
            .unwrap()
            .contains("files.ask_write:ci/deploy.yml"),
        "{first}"
    );
    // Nothing is written while it waits.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(t.ws.join("ci/deploy.yml")).unwrap(),
        "original\n"
    );
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-once");
    let second = t.next_pending(&[id1], Duration::from_secs(20));
    assert_eq!(
        second["subject"]["sha256"].as_str().unwrap(),
        sha256_hex(b"approved\n"),
        "{second}"
    );
    t.answer(second["id"].as_u64().unwrap(), "--deny");
    let o = finish(child);
    let log = std::fs::read_to_string(t.ws.join("log")).unwrap_or_default();
    assert_eq!(log, "legit-ok\nw1-ok\nw2-fail\nlegit2-ok\n", "{}", text(&o));
    // Judged on the host: the allowed write is in the real file, the denied one is not.
    assert_eq!(
        std::fs::read_to_string(t.ws.join("ci/deploy.yml")).unwrap(),
        "approved\n",
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("legit.txt")).unwrap(),
        "legit\nmore\n"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o)
    );
    // Only the two protected writes asked; the audit has the grant and the refusal.
    let log = warden(&t.home).args(["log", "--json"]).output().unwrap();
    let l = String::from_utf8_lossy(&log.stdout);
    let asks: Vec<&str> = l
        .lines()
        .filter(|r| r.contains("\"layer\":\"approval\"") && r.contains("\"verdict\":\"ask\""))
        .collect();
    assert_eq!(asks.len(), 2, "only the protected writes ask: {l}");
    assert!(
        !asks.iter().any(|r| r.contains("legit.txt")),
        "workspace writes never ask: {l}"
    );
    assert!(
        l.contains("warden opened the real file") && l.contains("files.ask_write:ci/deploy.yml"),
        "{l}"
    );
}

/// A grant is one open: re-opening the granted descriptor through `/proc/self/fd` (or
/// `/dev/fd`) for write is refused with EACCES and recorded (red-team finding: it passed on
/// the writable mount the grant carried); the file asks again only when opened by its own
/// path. Judged on the host.
#[test]
fn reopening_a_grant_through_proc_fd_is_refused_and_recorded() {
    let t = T::new("wask-reopen");
    let policy = ask_write_setup(&t, 10);
    let script = "exec 3>>ci/deploy.yml && echo grant-ok >> log || echo grant-fail >> log; \
                  echo granted >&3; \
                  (printf 'reopened\\n' > /proc/self/fd/3) 2>> err && echo reopen-ok >> log || echo reopen-fail >> log; \
                  (printf 'devfd\\n' > /dev/fd/3) 2>> err && echo devfd-ok >> log || echo devfd-fail >> log; \
                  echo legit > legit.txt && echo legit-ok >> log";
    let child = spawn_write(&t, &policy, script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    assert!(first["subject"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/ci/deploy.yml"));
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-once");
    let o = finish(child);
    let log = std::fs::read_to_string(t.ws.join("log")).unwrap_or_default();
    let err = std::fs::read_to_string(t.ws.join("err")).unwrap_or_default();
    assert_eq!(
        log,
        "grant-ok\nreopen-fail\ndevfd-fail\nlegit-ok\n",
        "{err}\n{}",
        text(&o)
    );
    assert_eq!(err.matches("Permission denied").count(), 2, "{err}");
    assert_eq!(
        std::fs::read_to_string(t.ws.join("ci/deploy.yml")).unwrap(),
        "original\ngranted\n",
        "only the granted open wrote: {}",
        text(&o)
    );
    let l = warden(&t.home).args(["log", "--json"]).output().unwrap();
    let l = String::from_utf8_lossy(&l.stdout);
    let asks = l
        .lines()
        .filter(|r| r.contains("\"layer\":\"approval\"") && r.contains("\"verdict\":\"ask\""))
        .count();
    assert_eq!(asks, 1, "the re-opens did not ask: {l}");
    let refused: Vec<&str> = l
        .lines()
        .filter(|r| r.contains("it holds a write grant"))
        .collect();
    assert_eq!(refused.len(), 2, "{l}");
    assert!(
        refused.iter().any(|r| r.contains("/dev/fd/3")),
        "{refused:?}"
    );
}

/// A grant re-opened through a descriptor link under any spelling warden does not parse
/// (`/proc/self/fd/../fd/N`, `/proc/self/root/proc/self/fd/N`, `/proc/PID/task/TID/../../fd/N`,
/// a symlink the agent made to `/proc/self/fd/N`) never yields a writable file: the grant is
/// opened through a detached mount of the file alone, which no write rule covers, so the
/// kernel (Landlock) refuses the re-open whatever the name (red-team finding: these passed
/// on the writable host mount the grant carried). Judged on the host: none of the markers is
/// in the real file; the granted write (before and after the attempts) is. Run as root and
/// as a user.
#[test]
fn reopening_a_grant_through_any_magic_link_spelling_never_writes() {
    let t = T::new("wask-spell");
    let policy = ask_write_setup(&t, 10);
    // Writable by any uid, so that run as root (the agent then has another uid) only the
    // sandbox can refuse the re-opens, not the file's mode.
    std::fs::set_permissions(
        t.ws.join("ci/deploy.yml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let script = "exec 3>>ci/deploy.yml && echo grant-ok >> log || echo grant-fail >> log; \
                  echo granted >&3; \
                  ln -s /proc/self/fd/3 lnk; \
                  (printf 'MARK-dotdot\\n' >> /proc/self/fd/../fd/3) 2>> err && echo dotdot-ok >> log || echo dotdot-fail >> log; \
                  (printf 'MARK-root\\n' >> /proc/self/root/proc/self/fd/3) 2>> err && echo root-ok >> log || echo root-fail >> log; \
                  (printf 'MARK-task\\n' >> /proc/$BASHPID/task/$BASHPID/../../fd/3) 2>> err && echo task-ok >> log || echo task-fail >> log; \
                  (printf 'MARK-symlink\\n' >> lnk) 2>> err && echo symlink-ok >> log || echo symlink-fail >> log; \
                  (printf 'MARK-trunc\\n' > /proc/self/fd/../fd/3) 2>> err && echo trunc-ok >> log || echo trunc-fail >> log; \
                  echo after >&3 && echo after-ok >> log; \
                  echo legit > legit.txt && echo legit-ok >> log";
    let child = spawn_write(&t, &policy, script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    assert!(first["subject"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/ci/deploy.yml"));
    let id1 = first["id"].as_u64().unwrap();
    t.answer(id1, "--allow-once");
    let o = finish(child);
    let log = std::fs::read_to_string(t.ws.join("log")).unwrap_or_default();
    let err = std::fs::read_to_string(t.ws.join("err")).unwrap_or_default();
    let host = std::fs::read_to_string(t.ws.join("ci/deploy.yml")).unwrap();
    assert!(
        !host.contains("MARK"),
        "a re-open of the grant wrote the host file: {host:?}\nlog: {log}\nerr: {err}\n{}",
        text(&o)
    );
    assert_eq!(
        host,
        "original\ngranted\nafter\n",
        "log: {log}\nerr: {err}\n{}",
        text(&o)
    );
    assert_eq!(
        log,
        "grant-ok\ndotdot-fail\nroot-fail\ntask-fail\nsymlink-fail\ntrunc-fail\nafter-ok\nlegit-ok\n",
        "err: {err}\n{}",
        text(&o)
    );
    assert_eq!(err.matches("Permission denied").count(), 5, "{err}");
    assert_eq!(
        std::fs::read_to_string(t.ws.join("legit.txt")).unwrap(),
        "legit\n"
    );
}

/// No answer is a deny: the host file keeps its content.
#[test]
fn protected_write_timeout_leaves_the_host_file() {
    let t = T::new("wask-timeout");
    let policy = ask_write_setup(&t, 2);
    let script = "printf 'late\\n' >> ci/deploy.yml && echo w-ok >> log || echo w-fail >> log";
    let child = spawn_write(&t, &policy, script);
    let first = t.next_pending(&[], Duration::from_secs(20));
    assert_eq!(
        first["subject"]["access"], "O_WRONLY|O_APPEND|O_CREAT",
        "{first}"
    );
    let o = finish(child);
    assert_eq!(
        std::fs::read_to_string(t.ws.join("log")).unwrap_or_default(),
        "w-fail\n",
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("ci/deploy.yml")).unwrap(),
        "original\n"
    );
}

/// While the request waits, the protected file's parent is moved away and replaced by a
/// directory with a decoy `deploy.yml` (or a symlink to `other/`). The agent itself cannot
/// do this (the locked file inside makes the rename fail with EBUSY, which the script
/// checks), so the swap is made on the host, as a concurrent process would. The human then
/// allows: the grant must not land on the file now at that path. Judged on the host: the
/// decoy and `other/deploy.yml` keep their content, and so does the real file.
#[test]
fn a_parent_swapped_during_the_ask_cannot_redirect_the_grant() {
    for (name, link) in [("wask-dir", false), ("wask-link", true)] {
        let t = T::new(name);
        let policy = ask_write_setup(&t, 30);
        let script = "( printf 'evil\\n' > ci/deploy.yml; echo \"w=$?\" > wrc ) & \
                      sleep 0.5; mv ci ci-agent 2>/dev/null && echo agent-moved > moved; wait";
        let child = spawn_write(&t, &policy, script);
        let first = t.next_pending(&[], Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(700));
        std::fs::rename(t.ws.join("ci"), t.ws.join("ci-old")).unwrap();
        if link {
            std::os::unix::fs::symlink("other", t.ws.join("ci")).unwrap();
        } else {
            std::fs::create_dir(t.ws.join("ci")).unwrap();
            std::fs::write(t.ws.join("ci/deploy.yml"), "decoy\n").unwrap();
        }
        t.answer(first["id"].as_u64().unwrap(), "--allow-once");
        let o = finish(child);
        assert!(
            !t.ws.join("moved").exists(),
            "{name}: the agent could move the locked file's parent: {}",
            text(&o)
        );
        let (victim, before) = if link {
            ("other/deploy.yml", "other\n")
        } else {
            ("ci/deploy.yml", "decoy\n")
        };
        assert_eq!(
            std::fs::read_to_string(t.ws.join(victim)).unwrap(),
            before,
            "{name}: the grant was redirected: {}",
            text(&o)
        );
        assert_eq!(
            std::fs::read_to_string(t.ws.join("ci-old/deploy.yml")).unwrap(),
            "original\n",
            "{name}: {}",
            text(&o)
        );
        let wrc = std::fs::read_to_string(t.ws.join("wrc")).unwrap_or_default();
        assert_ne!(wrc.trim(), "w=0", "{name}: {}", text(&o));
        assert!(!wrc.is_empty(), "{name}: {}", text(&o));
    }
}

/// `[approvals] held = "ask"`: at the session's end, changes to executable agent state that
/// the state filter held are asked about (every change shown, bound to the held record's
/// hash). Allow applies them to the host's `~/.claude.json`; deny keeps them held for
/// `warden held`. Judged on the host's file after the session.
#[test]
fn held_changes_are_asked_about_at_the_end_and_applied_only_on_allow() {
    for allow in [true, false] {
        let t = T::new(if allow { "held-allow" } else { "held-deny" });
        let cfg = t.home.join(".claude.json");
        std::fs::write(&cfg, r#"{"numStartups": 1, "theme": "dark"}"#).unwrap();
        let policy = t.root.join("held-policy.toml");
        std::fs::write(&policy, "[approvals]\nheld = \"ask\"\ntimeout_secs = 30\n").unwrap();
        let session = r#"{"numStartups": 2, "theme": "light", "mcpServers": {"evil": {"command": "/bin/sh", "args": ["-c", "touch /tmp/pwned-held"]}}}"#;
        let child = warden(&t.home)
            .args([
                "run",
                "--profile",
                "claude",
                "--policy",
                policy.to_str().unwrap(),
                "--",
                "/bin/bash",
                "-c",
                &format!("printf '%s' '{session}' > ~/.claude.json"),
            ])
            .current_dir(&t.ws)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let req = t.next_pending(&[], Duration::from_secs(30));
        assert_eq!(req["kind"], "held", "{req}");
        let d = req["description"].as_str().unwrap();
        assert!(
            d.contains("mcpServers") && d.contains("touch /tmp/pwned-held"),
            "every change is shown: {req}"
        );
        assert_eq!(
            req["subject"]["sha256"].as_str().unwrap().len(),
            64,
            "{req}"
        );
        // Not applied while it waits; safe keys are already written back.
        let host: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        assert!(host.get("mcpServers").is_none(), "{host}");
        assert_eq!(host["theme"], "light", "{host}");
        let id = req["id"].as_u64().unwrap();
        t.answer(id, if allow { "--allow-once" } else { "--deny" });
        let o = finish(child);
        assert!(o.status.success(), "{}", text(&o));
        let host: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        let list = warden(&t.home).args(["held", "list"]).output().unwrap();
        let list = String::from_utf8_lossy(&list.stdout).to_string();
        if allow {
            assert_eq!(
                host["mcpServers"]["evil"]["command"],
                "/bin/sh",
                "{host}\n{}",
                text(&o)
            );
            assert!(list.contains("no held changes"), "{list}");
        } else {
            assert!(host.get("mcpServers").is_none(), "{host}\n{}", text(&o));
            assert!(list.contains("mcpServers"), "still held: {list}");
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("they stay held"),
                "{}",
                text(&o)
            );
        }
    }
}

/// `openat2` carries its flags in memory the BPF filter cannot read: every call traps, the
/// supervisor reads the flags, lets a read continue and asks about a write. Judged on the
/// host's file.
#[test]
fn openat2_writes_ask_too_and_reads_do_not() {
    let t = T::new("wask-openat2");
    let policy = ask_write_setup(&t, 30);
    let py = r#"
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
def openat2(path, flags):
    how = ctypes.create_string_buffer(struct.pack("QQQ", flags, 0, 0), 24)
    return libc.syscall(437, -100, path.encode(), how, 24), ctypes.get_errno()
fd, e = openat2("ci/deploy.yml", os.O_RDONLY)
print("read", fd >= 0, os.read(fd, 100) if fd >= 0 else e)
fd, e = openat2("ci/deploy.yml", os.O_WRONLY | os.O_TRUNC)
print("write", fd >= 0, e)
if fd >= 0:
    os.write(fd, b"via openat2\n")
"#;
    std::fs::write(t.ws.join("o2.py"), py).unwrap();
    let child = spawn_write(&t, &policy, "/usr/bin/python3 o2.py > out.txt 2>&1");
    let req = t.next_pending(&[], Duration::from_secs(20));
    assert_eq!(req["subject"]["access"], "O_WRONLY|O_TRUNC", "{req}");
    t.answer(req["id"].as_u64().unwrap(), "--allow-once");
    let o = finish(child);
    let out = std::fs::read_to_string(t.ws.join("out.txt")).unwrap_or_default();
    assert!(
        out.contains("read True b'original\\n'"),
        "{out}\n{}",
        text(&o)
    );
    assert!(out.contains("write True"), "{out}\n{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(t.ws.join("ci/deploy.yml")).unwrap(),
        "via openat2\n",
        "{out}\n{}",
        text(&o)
    );
    // Only the write asked.
    assert!(t.pending().is_empty());
}

/// Root controlling a session of an unprivileged user: that session's supervisor cannot read
/// root's `/proc/<pid>/ns/pid`, so it cannot verify that root's command comes from outside.
/// It still refuses (fail closed), and says so instead of calling root "inside"; the
/// session's own user, from outside, controls it.
#[test]
fn root_against_another_users_session_is_refused_with_the_reason() {
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (runs a session as uid 65534)");
        return;
    }
    let s = Scratch::beside("warden-appr", "rootpeer");
    let as_nobody = || s.warden_as_nobody();
    let child = as_nobody()
        .args(["run", "--", "sleep", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sock = || super::common::session_id(&s.home);
    let ready = wait_until(Duration::from_secs(20), || sock().is_some());
    if !ready {
        let o = finish(child);
        panic!("no session socket:\n{}", text(&o));
    }
    let id = sock().unwrap();
    let o = warden(&s.home).args(["kill", &id]).output().unwrap();
    let err = text(&o);
    assert!(
        !o.status.success(),
        "root's kill must be refused:\n{}",
        text(&o)
    );
    assert!(
        err.contains("cannot verify that the caller (uid 0, pid ")
            && err.contains("/ns/pid unreadable (EACCES)")
            && err.contains("run the command as the session's user (uid 65534)"),
        "{}",
        text(&o)
    );
    assert!(!err.contains("inside the session"), "{}", text(&o));
    // The session's own user, outside it, kills it.
    let o = as_nobody().args(["kill", &id]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t0 = Instant::now();
    let out = finish(child);
    assert!(t0.elapsed() < Duration::from_secs(20), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("killed by uid 65534"),
        "{}",
        text(&out)
    );
}

/// A write open of a descriptor link whose target warden cannot read (here: not open) could
/// name a grant by the time the kernel resolves it: refused with EACCES and recorded (fail
/// closed), never left to the kernel. Opens by path and through readable links still work.
#[test]
fn an_unreadable_descriptor_link_is_refused_not_continued() {
    let t = T::new("wask-badlink");
    let policy = ask_write_setup(&t, 30);
    let script = "(printf x > /dev/fd/9) 2>> err && echo fd9-ok >> log || echo fd9-fail >> log; \
                  (printf x > /proc/self/fd/77) 2>> err && echo fd77-ok >> log || echo fd77-fail >> log; \
                  exec 4> legit.txt && echo via-link > /proc/self/fd/4 && echo link-ok >> log; \
                  echo out > other/deploy.yml && echo legit-ok >> log";
    let o = finish(spawn_write(&t, &policy, script));
    let log = std::fs::read_to_string(t.ws.join("log")).unwrap_or_default();
    assert_eq!(
        log,
        "fd9-fail\nfd77-fail\nlink-ok\nlegit-ok\n",
        "{}",
        text(&o)
    );
    let err = std::fs::read_to_string(t.ws.join("err")).unwrap_or_default();
    assert_eq!(err.matches("Permission denied").count(), 2, "{err}");
    assert_eq!(
        std::fs::read_to_string(t.ws.join("legit.txt")).unwrap(),
        "via-link\n"
    );
    let l = warden(&t.home).args(["log", "--json"]).output().unwrap();
    let l = String::from_utf8_lossy(&l.stdout);
    let refused: Vec<&str> = l
        .lines()
        .filter(|r| r.contains("write open of a descriptor link refused"))
        .collect();
    assert_eq!(refused.len(), 2, "{l}");
    assert!(
        refused.iter().any(|r| r.contains("/dev/fd/9")),
        "{refused:?}"
    );
}
