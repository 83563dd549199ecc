//! The live risk score and the kill switch, through `warden run` and the CLI: a scripted agent
//! runs the exec evasion corpus while a heartbeat ticks in its tree. Judged from the host:
//! the tree is frozen before the fifth evasion (the heartbeat file stops changing and the
//! corpus stops advancing), nothing inside could thaw it, `warden thaw` resumes it, and
//! `warden kill` ends it (the session exits 6). A benign session never warns.

use super::common::{session_id, warden, Scratch};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    fn new(name: &str) -> T {
        T(Scratch::nested("warden-risk", name))
    }
    fn warden(&self, args: &[&str]) -> std::process::Output {
        warden(&self.home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.ws.join(rel)).unwrap_or_default()
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const EVASIONS: &[&str] = &[
    "/usr/bin/curl --version",
    "/proc/self/root/usr/bin/curl --version",
    "./c-copy --version",
    "/usr/bin/python3 -c 'import subprocess; subprocess.run([\"/usr/bin/curl\", \"--version\"])'",
    "/lib64/ld-linux-x86-64.so.2 ./c-copy --version",
    "./c-renamed --version",
    "/usr/bin/perl -e 'exec \"/usr/bin/curl\", \"--version\"'",
    "./c-hard --version",
];

#[test]
fn evasion_corpus_freezes_the_tree_and_only_a_human_thaws_or_kills_it() {
    let t = T::new("escalate");
    let policy = t.root.join("policy.toml");
    std::fs::write(&policy, "[exec]\ndeny = [\"curl\"]\n").unwrap();
    // Before the corpus: the agent's own attempts at the stop switch (recorded, judged later).
    let mut script = String::from(
        "cp /usr/bin/curl c-copy; cp /usr/bin/curl c-renamed; ln c-copy c-hard; \
         ( while :; do date +%s%N >> hb; sleep 0.02; done ) & \
         for f in /sys/fs/cgroup/unified/warden-sessions/*/cgroup.freeze /sys/fs/cgroup/unified/warden-sessions/*/*/cgroup.freeze /sys/fs/cgroup/warden-sessions/*/cgroup.freeze /sys/fs/cgroup/warden-sessions/*/*/cgroup.freeze; do \
           echo 0 > \"$f\" 2>/dev/null && echo \"WROTE $f\" >> inside; done; \
         echo $$ > /sys/fs/cgroup/unified/cgroup.procs 2>/dev/null && echo MOVED >> inside; \
         ls \"$HOME/.local/state/warden/sessions\" >> inside 2>&1; \
         WARDEN thaw x >> inside 2>&1; \
         sleep 0.5; \n",
    )
    .replace("WARDEN", env!("CARGO_BIN_EXE_warden"));
    for (i, e) in EVASIONS.iter().enumerate() {
        script.push_str(&format!(
            "echo {i} >> progress; {e} >/dev/null 2>&1; sleep 0.3\n"
        ));
    }
    script.push_str("echo done >> progress; wait\n");
    let mut child = warden(&t.home)
        .args([
            "run",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/bash",
            "-c",
            &script,
        ])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the heartbeat", Duration::from_secs(20), || {
        !t.read("hb").is_empty()
    });
    let id = {
        let mut id = None;
        wait_for("the control socket", Duration::from_secs(10), || {
            id = session_id(&t.home);
            id.is_some()
        });
        id.unwrap()
    };
    // Frozen, by the score, before the fifth evasion (index 0 is the plain denial).
    wait_for("an automatic freeze", Duration::from_secs(30), || {
        let o = t.warden(&["status", &id, "--json"]);
        String::from_utf8_lossy(&o.stdout).contains("\"frozen\": true")
    });
    let progress = t.read("progress");
    let reached = progress
        .lines()
        .filter(|l| l.parse::<usize>().is_ok())
        .count();
    assert!(
        reached <= 5,
        "the corpus reached attempt {reached} before the freeze:\n{progress}"
    );
    assert!(!progress.contains("done"));
    // The tree is stopped: the heartbeat does not move.
    let a = t.read("hb");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(a, t.read("hb"), "the heartbeat advanced while frozen");
    assert_eq!(
        t.read("progress"),
        progress,
        "the corpus advanced while frozen"
    );
    // Nothing inside reached the switch.
    let inside = t.read("inside");
    assert!(!inside.contains("WROTE"), "{inside}");
    assert!(!inside.contains("MOVED"), "{inside}");
    assert!(
        !inside.contains(&id),
        "the agent saw the control socket: {inside}"
    );
    // Still frozen much later: decay does not thaw it.
    let o = t.warden(&["status", &id, "--json"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"frozen\": true"));
    // A human thaws: the heartbeat resumes.
    let o = t.warden(&["thaw", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let a = t.read("hb");
    wait_for("the heartbeat to resume", Duration::from_secs(5), || {
        t.read("hb") != a
    });
    // A human kills: the tree is gone and the session exits 6.
    let o = t.warden(&["kill", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the session survived kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(st.code(), Some(6), "{err}");
    assert!(err.contains("FROZEN"), "the user was told: {err}");
    let a = t.read("hb");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a, t.read("hb"), "a process of the tree survived");
    assert!(
        session_id(&t.home).is_none(),
        "the control socket outlived the session"
    );
}

#[test]
fn a_benign_session_never_warns() {
    let t = T::new("benign");
    std::fs::write(t.ws.join("main.c"), "int main(void){return 0;}\n").unwrap();
    let script = "set -e; export GIT_AUTHOR_NAME=a GIT_AUTHOR_EMAIL=a@b GIT_COMMITTER_NAME=a GIT_COMMITTER_EMAIL=a@b; \
        git init -q .; \
        for i in $(seq 1 20); do cc -o main main.c; ./main; echo $i > f$i; git add -A; \
        git commit -qm c$i; done; ls /nonexistent 2>/dev/null || true; \
        /usr/bin/python3 -c 'print(1)'; echo benign-ok";
    let o = warden(&t.home)
        .args(["run", "--", "/bin/bash", "-c", script])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("benign-ok"),
        "{err}"
    );
    assert!(
        !err.contains("risk score"),
        "a benign session warned: {err}"
    );
}

/// Ctrl-] then f/t/k on the `warden run` terminal freezes, thaws and kills; the same bytes
/// printed by the agent (its pty output) do nothing. Driven through a real pty (`script`).
#[test]
fn key_sequence_on_the_terminal_freezes_and_kills_and_the_agent_cannot_forge_it() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return;
    }
    use std::io::Write;
    let t = T::new("keys");
    let inner = format!(
        "{} run -- /bin/bash -c 'printf \"\\035f\\035k\"; while :; do date +%s%N >> hb; sleep 0.02; done'",
        env!("CARGO_BIN_EXE_warden")
    );
    let mut child = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .current_dir(&t.ws)
        .env("HOME", &t.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the heartbeat", Duration::from_secs(20), || {
        !t.read("hb").is_empty()
    });
    let id = {
        let mut id = None;
        wait_for("the control socket", Duration::from_secs(10), || {
            id = session_id(&t.home);
            id.is_some()
        });
        id.unwrap()
    };
    // The agent printed Ctrl-] f Ctrl-] k itself: nothing happened.
    std::thread::sleep(Duration::from_millis(300));
    let a = t.read("hb");
    wait_for("the heartbeat to move", Duration::from_secs(5), || {
        t.read("hb") != a
    });
    let status =
        |t: &T| String::from_utf8_lossy(&t.warden(&["status", &id, "--json"]).stdout).to_string();
    assert!(status(&t).contains("\"frozen\": false"), "{}", status(&t));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x1df").unwrap();
    stdin.flush().unwrap();
    wait_for(
        "a freeze from the terminal",
        Duration::from_secs(10),
        || status(&t).contains("\"frozen\": true"),
    );
    let a = t.read("hb");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a, t.read("hb"), "the heartbeat advanced while frozen");
    stdin.write_all(b"\x1dt").unwrap();
    stdin.flush().unwrap();
    wait_for("the heartbeat to resume", Duration::from_secs(10), || {
        t.read("hb") != a
    });
    stdin.write_all(b"\x1dk").unwrap();
    stdin.flush().unwrap();
    let t0 = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the session survived Ctrl-] k"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!st.success());
    let a = t.read("hb");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(a, t.read("hb"), "a process of the tree survived");
}

/// `warden top --json` sees two concurrent sessions with their live status.
#[test]
fn top_json_lists_two_concurrent_sessions() {
    let t = T::new("top");
    std::fs::create_dir_all(t.ws.join("b")).unwrap();
    let spawn = |dir: &Path| {
        warden(&t.home)
            .args(["run", "--quiet", "--", "/bin/bash", "-c", "sleep 30"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn(&t.ws);
    let mut b = spawn(&t.ws.join("b"));
    let count = || {
        std::fs::read_dir(t.home.join(".local/state/warden/sessions"))
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for("two control sockets", Duration::from_secs(20), || {
        count() == 2
    });
    let o = t.warden(&["top", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert!(r["status"]["frozen"] == false, "{r}");
        let id = r["session"].as_str().unwrap();
        assert!(t.warden(&["kill", id]).status.success());
    }
    assert!(!a.wait().unwrap().success());
    assert!(!b.wait().unwrap().success());
}

/// A timer that sends the agent's own process a SIGCONT (with a handler, so the kernel does not
/// park it) resumed a tree frozen by signals (no cgroup v2 leaf: an ordinary user here), and
/// that process's `kill(-1, SIGCONT)` the rest, while `warden status` said FROZEN. Now a
/// frozen tree that runs again is killed: whether it keeps running (`wake-all`), or runs for
/// a moment each second and stops itself again (`self-stop`, attack review 75: it read stopped
/// at every look and wrote 61 lines in 60 s; the scheduler's run count gives it away). Judged
/// from the host: the session ends (exit 6) saying why, and the heartbeats stop for good.
#[test]
fn a_tree_frozen_by_signals_that_resumes_itself_is_killed() {
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (runs the session as uid 65534)");
        return;
    }
    for (mode, period_ms) in [("wake-all", 200), ("self-stop", 1000)] {
        let s = Scratch::beside("warden-risk", &format!("selfthaw-{mode}"));
        std::fs::write(
            s.ws.join("tcont.py"),
            r#"import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
signal.signal(signal.SIGCONT, lambda *a: None)
sev = ctypes.create_string_buffer(64)
ctypes.c_int.from_buffer(sev, 8).value = signal.SIGCONT  # sigev_signo
ctypes.c_int.from_buffer(sev, 12).value = 0              # SIGEV_SIGNAL
tid = ctypes.c_void_p()
assert libc.timer_create(1, sev, ctypes.byref(tid)) == 0, ctypes.get_errno()
ns = int(sys.argv[2]) * 1_000_000
spec = (ctypes.c_long * 4)(ns // 10**9, ns % 10**9, ns // 10**9, ns % 10**9)
assert libc.timer_settime(tid, 0, spec, None) == 0, ctypes.get_errno()
while True:
    with open("hb2", "a") as f:
        f.write(f"{time.time()}\n")
    if sys.argv[1] == "wake-all":
        os.kill(-1, signal.SIGCONT)
        time.sleep(0.05)
    else:
        os.kill(os.getpid(), signal.SIGSTOP)
"#,
        )
        .unwrap();
        let child = s
            .warden_as_nobody()
            .args([
                "run",
                "--",
                "bash",
                "-c",
                &format!(
                    "python3 tcont.py {mode} {period_ms} & while :; do date +%s%N >> hb; sleep 0.05; done"
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let read = |f: &str| std::fs::read_to_string(s.ws.join(f)).unwrap_or_default();
        wait_for("a heartbeat", Duration::from_secs(20), || {
            read("hb").lines().count() > 3
        });
        let id = session_id(&s.home).expect("the session's socket");
        let as_nobody = |args: &[&str]| {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_warden"))
                .args(args)
                .env("HOME", &s.home)
                .stdin(Stdio::null());
            c.output().unwrap()
        };
        let frozen = as_nobody(&["freeze", &id]);
        let t0 = Instant::now();
        let mut child = child;
        while child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ended = t0.elapsed();
        if child.try_wait().unwrap().is_none() {
            let _ = as_nobody(&["kill", &id]);
        }
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            frozen.status.success(),
            "{mode}: freeze: {}\n{err}",
            String::from_utf8_lossy(&frozen.stderr)
        );
        assert!(
            ended < Duration::from_secs(10),
            "{mode}: the frozen session that resumed itself was not ended within 10 s\n{err}"
        );
        assert_eq!(o.status.code(), Some(6), "{mode}: {err}");
        assert!(err.contains("ran again"), "{mode}: {err}");
        let after = (read("hb"), read("hb2"));
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            after,
            (read("hb"), read("hb2")),
            "{mode}: a heartbeat went on after the session ended"
        );
    }
}

/// The sandbox's init kills its whole namespace at once on its kill signal from outside (what
/// the signal freezer's kill sends after its own pass over /proc, which a chain of short-lived
/// forks outruns), without waiting for the agent process to die; the same signal sent from
/// inside changes nothing.
#[test]
fn init_kills_its_namespace_on_its_kill_signal_from_outside_only() {
    let t = T::new("killnow");
    let sig = libc::SIGRTMIN() + 6;
    let script = format!(
        "(trap '' TERM; while :; do date +%s%N >> hb; sleep 0.02; done) & \
         kill -s {sig} 1; echo $? > sent-inside; sleep 0.5; touch READY; \
         exec sleep 300"
    );
    let child = warden(&t.home)
        .args(["run", "--", "bash", "-c", &script])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("READY", Duration::from_secs(20), || {
        t.ws.join("READY").exists()
    });
    // Still running after the agent's own try.
    let a = t.read("hb");
    std::thread::sleep(Duration::from_millis(200));
    assert_ne!(
        a,
        t.read("hb"),
        "the heartbeat stopped after the inside signal"
    );
    // Init: the child of the child (stage 1) of warden.
    let kids = |p: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{p}/task/{p}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect()
    };
    let inits: Vec<u32> = kids(child.id()).into_iter().flat_map(kids).collect();
    assert_eq!(inits.len(), 1, "one init expected: {inits:?}");
    // SAFETY: signalling the sandbox's init, a process of this test's own session.
    assert_eq!(unsafe { libc::kill(inits[0] as i32, sig) }, 0);
    let t0 = Instant::now();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the namespace was not ended ({:?})\n{err}",
        t0.elapsed()
    );
    // The agent process (`sleep 300`) was killed: 128 + SIGKILL.
    assert_eq!(o.status.code(), Some(137), "{err}");
    let after = t.read("hb");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(after, t.read("hb"), "the heartbeat went on");
}
