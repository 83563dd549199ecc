//! `warden run --warm`: a spare built ahead is claimed by the next run with the same inputs,
//! which must behave as a cold run would (judged from the host), and nothing else may claim it.

use super::common::text as out;
use super::common::{wait_until, Scratch};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

struct W {
    s: Scratch,
    runtime: PathBuf,
}

impl W {
    /// A scratch tree and a runtime directory of its own under `/run` (spares live only
    /// there: every sandbox has a private `/run`).
    fn new(name: &str) -> W {
        let s = Scratch::nested("warden-it-warm", name);
        let runtime = PathBuf::from(format!("/run/warden-it-warm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&runtime);
        std::fs::create_dir_all(&runtime).unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        W { s, runtime }
    }

    fn spares(&self) -> PathBuf {
        self.runtime.join("warden-warm")
    }

    /// What spares that ended unclaimed printed (the `.ended` records), for failure messages.
    fn ended(&self) -> String {
        let mut all = String::new();
        for e in std::fs::read_dir(self.spares())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "ended") {
                all += &format!("--- {}:\n", e.path().display());
                all += &std::fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        all
    }

    /// `warden run --warm [args] -- bash -c script` with `stdin` on its standard input; the
    /// environment carries `WARDEN_TIMING=1`, whose marks say whether a spare was claimed.
    fn run(&self, args: &[&str], script: &str, stdin: &str) -> Output {
        let mut c = self.s.warden();
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("WARDEN_TIMING", "1")
            .env("WARDEN_WARM_TTL_MS", "60000")
            .current_dir(&self.s.ws)
            .arg("run")
            .arg("--warm")
            .args(args)
            .args(["--", "/bin/bash", "-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The spare's socket, once one listens (none within 20 s: panics).
    fn wait_spare(&self) -> PathBuf {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(20), || {
            found = std::fs::read_dir(self.spares()).ok().and_then(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "sock"))
            });
            found.is_some()
        });
        assert!(ok, "no spare was made");
        found.unwrap()
    }

    /// Ends every spare of this test's runtime directory.
    fn end_spares(&self) {
        if let Ok(d) = std::fs::read_dir(self.spares()) {
            for e in d.flatten() {
                self.end_spare(&e.path());
            }
        }
    }

    /// `warden run --warm -- bash -c script`, stdin closed, output piped, with the
    /// environment of [`W::run`].
    fn command(&self, script: &str) -> std::process::Command {
        let mut c = self.s.warden();
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("WARDEN_TIMING", "1")
            .env("WARDEN_WARM_TTL_MS", "60000")
            .current_dir(&self.s.ws)
            .args(["run", "--warm", "--", "/bin/bash", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Ends the spare listening at `sock` (its pid from the socket's peer credentials).
    fn end_spare(&self, sock: &Path) {
        if let Some(pid) = spare_pid(sock) {
            // SAFETY: a signal to the spare this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether process `pid` still exists (and is not a zombie).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The pid of the spare listening at `sock`, from the socket's peer credentials.
fn spare_pid(sock: &Path) -> Option<i32> {
    let c = std::os::unix::net::UnixStream::connect(sock).ok()?;
    let pid = warden_proto::accept::peer_cred(&c).ok()?.pid;
    (pid > 1).then_some(pid)
}

impl Drop for W {
    /// Ends the spares and removes the runtime directory, again while a successor the last
    /// claimed run started is still binding its socket there (a removal racing it left
    /// empty directories under `/run`).
    fn drop(&mut self) {
        // (A string test: `Path::starts_with` compares whole components, so a path test
        // against this prefix never held and every runtime directory was left behind.)
        if !self
            .runtime
            .to_string_lossy()
            .starts_with("/run/warden-it-warm-")
        {
            return;
        }
        for _ in 0..40 {
            self.end_spares();
            let _ = std::fs::remove_dir_all(&self.runtime);
            if !self.runtime.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

fn claimed(o: &Output) -> bool {
    String::from_utf8_lossy(&o.stderr).contains("warm: claimed")
}

#[test]
fn a_warm_run_is_the_same_session_as_a_cold_one() {
    let t = W::new("same");
    let secret = t.s.home.join(".ssh/id_ed25519");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "TOPSECRET\n").unwrap();
    let script = r#"read line; echo "got $line"; cat "$HOME/.ssh/id_ed25519" 2>/dev/null | grep -q TOPSECRET && echo LEAK; echo planted > "$HOME/planted" 2>/dev/null; echo "$line" >> result.txt; echo err >&2; exit 7"#;
    let first = t.run(&[], script, "one\n");
    assert_eq!(first.status.code(), Some(7), "{}", out(&first));
    assert!(!claimed(&first), "nothing to claim yet:\n{}", out(&first));
    let sock = t.wait_spare();
    let second = t.run(&[], script, "two\n");
    assert!(
        claimed(&second),
        "the second run did not claim the spare:\n{}",
        out(&second)
    );
    assert_eq!(second.status.code(), Some(7), "{}", out(&second));
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("got two"),
        "stdin was not the claiming run's:\n{}",
        out(&second)
    );
    assert!(
        !stdout.contains("LEAK"),
        "a warm run read a secret:\n{}",
        out(&second)
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("err\n"),
        "stderr was not the claiming run's:\n{}",
        out(&second)
    );
    // Judged from the host: the workspace write landed, nothing outside it did.
    assert_eq!(
        std::fs::read_to_string(t.s.ws.join("result.txt")).unwrap(),
        "one\ntwo\n"
    );
    assert!(
        !t.s.home.join("planted").exists(),
        "a warm run wrote outside the workspace"
    );
    // The claimed spare's successor.
    let next = t.wait_spare();
    assert!(!sock.exists() || next != sock || std::fs::symlink_metadata(&next).is_ok());
    t.end_spare(&next);
}

#[test]
fn a_changed_policy_file_or_command_starts_cold() {
    let t = W::new("stale");
    let policy = t.s.root.join("policy.toml");
    std::fs::write(&policy, "[files]\ndeny = [\"notes.txt\"]\n").unwrap();
    std::fs::write(t.s.ws.join("notes.txt"), "NOTES\n").unwrap();
    let p = policy.display().to_string();
    let script = "grep -q NOTES notes.txt 2>/dev/null && echo READ || echo DENIED";
    let first = t.run(&["--policy", &p], script, "");
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("DENIED"),
        "{}",
        out(&first)
    );
    let sock = t.wait_spare();
    // Another command: cold, and the spare stays for its own.
    let other = t.run(&["--policy", &p], "echo other", "");
    assert!(!claimed(&other), "{}", out(&other));
    assert!(sock.exists(), "another command's run took the spare away");
    // A waiting spare's agent has not run: it is no session that could write here (the
    // integrity report said so of every spare beside a cold run).
    assert!(
        !String::from_utf8_lossy(&other.stderr).contains("other warden session"),
        "a waiting spare counted as a session that could write:\n{}",
        out(&other)
    );
    // The policy now lets the file be read: the spare built on the old one must not serve.
    let stale = spare_pid(&sock).expect("the spare's pid");
    std::fs::write(&policy, "[files]\ndeny = []\n").unwrap();
    let after = t.run(&["--policy", &p], script, "");
    assert!(
        !claimed(&after),
        "a spare of the old policy was claimed:\n{}",
        out(&after)
    );
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("READ"),
        "the new policy was not applied:\n{}",
        out(&after)
    );
    // The stale spare ended itself.
    assert!(
        wait_until(Duration::from_secs(10), || !alive(stale)),
        "the stale spare stayed"
    );
    t.end_spares();
}

#[test]
fn an_agent_cannot_claim_a_spare() {
    let t = W::new("inside");
    let first = t.run(&[], "true", "");
    assert!(first.status.success(), "{}", out(&first));
    let sock = t.wait_spare();
    // A session of another command tries the spare's socket, by its path and through /proc.
    let try_it = format!(
        r#"python3 - <<'PY'
import socket
for p in ["{sock}"]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p); s.send(b"x"); print("CONNECTED", p)
    except OSError as e:
        print("refused", e)
PY"#,
        sock = sock.display()
    );
    let inside = t.run(&[], &try_it, "");
    assert!(
        !String::from_utf8_lossy(&inside.stdout).contains("CONNECTED"),
        "the agent reached a spare's socket:\n{}",
        out(&inside)
    );
    // Judged from the host: the spare is still there and serves its own command.
    assert!(sock.exists(), "the spare is gone");
    let again = t.run(&[], "true", "");
    assert!(
        claimed(&again),
        "the spare no longer serves:\n{}",
        out(&again)
    );
    t.end_spare(&t.wait_spare());
}

#[test]
fn an_unclaimed_spare_ends_and_leaves_nothing_in_the_workspace() {
    let t = W::new("expire");
    let mut c = t.s.warden();
    c.env("XDG_RUNTIME_DIR", &t.runtime)
        .env("WARDEN_WARM_TTL_MS", "1500")
        .current_dir(&t.s.ws)
        .args(["run", "--warm", "--", "true"])
        .stdin(Stdio::null());
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let sock = t.wait_spare();
    assert!(
        wait_until(Duration::from_secs(20), || !sock.exists()),
        "the spare outlived its time to live"
    );
    // Its placeholders went with it.
    assert!(
        wait_until(Duration::from_secs(10), || !t.s.ws.join(".envrc").exists()),
        "the spare's placeholders stayed: {:?}",
        std::fs::read_dir(&t.s.ws)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
}

#[test]
fn no_spare_lives_where_an_agent_could_reach_its_socket() {
    // A runtime directory inside the workspace (an odd `XDG_RUNTIME_DIR`): an agent could
    // listen in a spare's place there and be handed the next run's terminal (attack review
    // 115, F1). Spares live under `/run` only: here, none is made and every run is cold.
    let mut t = W::new("visible");
    let _ = std::fs::remove_dir_all(&t.runtime);
    t.runtime = t.s.ws.join("xdg");
    std::fs::create_dir_all(&t.runtime).unwrap();
    std::fs::set_permissions(&t.runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    for _ in 0..2 {
        let o = t.run(&[], "echo ran", "");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("ran"),
            "{}",
            out(&o)
        );
        assert!(!claimed(&o), "{}", out(&o));
        std::thread::sleep(Duration::from_millis(800));
    }
    assert!(
        !t.spares().exists() || std::fs::read_dir(t.spares()).unwrap().next().is_none(),
        "a spare listens in the workspace"
    );
}

#[test]
fn a_claim_hands_its_terminal_only_to_a_warden_spare() {
    // Something else listening at a spare's name (here a host python of the same user):
    // the run must not hand it its fds, and starts cold (attack review 115, F1).
    let t = W::new("fake");
    let first = t.run(&[], "echo ran", "");
    assert!(first.status.success(), "{}", out(&first));
    let sock = t.wait_spare();
    let pid = spare_pid(&sock).expect("the spare's pid");
    // SAFETY: a signal to the spare this test made.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::fs::remove_file(&sock).unwrap();
    let log = t.s.root.join("fake.log");
    let fake = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            r#"
import socket, array, struct, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("{sock}"); s.listen(4)
c, _ = s.accept()
fds = array.array("i")
msg, anc, flags, addr = c.recvmsg(64, socket.CMSG_LEN(3 * fds.itemsize))
for level, kind, data in anc:
    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
open("{log}", "w").write("fds %d\n" % len(fds))
for fd in fds:
    os.write(fd, b"FAKE-SPARE-OUTPUT\n")
c.sendall(b"OK" + struct.pack("<i", 4242) + b"EX" + struct.pack("<i", 0))
"#,
            sock = sock.display(),
            log = log.display()
        ))
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || sock.exists()),
        "the fake never listened"
    );
    let o = t.run(&[], "echo ran", "");
    let mut fake = fake;
    let _ = fake.kill();
    let _ = fake.wait();
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("FAKE-SPARE-OUTPUT"),
        "the run handed its stdout to something that is not a spare:\n{}",
        out(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ran") && !claimed(&o),
        "the run did not start cold:\n{}",
        out(&o)
    );
    let got = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!got.contains("fds 3"), "the fake got the run's fds: {got}");
    t.end_spares();
}

#[test]
fn killing_the_claiming_run_ends_the_warm_session() {
    // As SIGKILL to a cold `warden run` ends its sandbox (parent-death signal), the claiming
    // run's death ends the spare's: judged from the host by a heartbeat that stops.
    let t = W::new("kill");
    let script = "while true; do date +%s%N >> hb; sleep 0.1; done";
    let mut c = t.command(script);
    c.stdout(Stdio::null()).stderr(Stdio::null());
    // The first run starts cold and leaves the spare once it ends: end it.
    let mut first = c.spawn().unwrap();
    let hb = t.s.ws.join("hb");
    assert!(
        wait_until(Duration::from_secs(20), || hb.exists()),
        "no heartbeat"
    );
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    first.wait().unwrap();
    let sock = t.wait_spare();
    std::fs::remove_file(&hb).unwrap();
    let mut second = c.spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || hb.exists()),
        "the warm run never ran"
    );
    assert!(!sock.exists(), "the spare was not claimed");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(second.id() as i32, libc::SIGKILL) };
    second.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let len = std::fs::metadata(&hb).unwrap().len();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        std::fs::metadata(&hb).unwrap().len(),
        len,
        "the warm session's agent outlived the run that claimed it"
    );
    t.end_spares();
}

#[test]
fn an_agent_profiles_spare_is_stale_once_the_host_changed_the_agents_state() {
    // `--profile claude`: `~/.claude.json` is copied as the session starts and the OAuth
    // token is bound as a file; a host `claude` run in between changes them.
    let t = W::new("agent");
    let script = "cat ~/.claude/.credentials.json 2>/dev/null; true";
    let first = t.run(&["--profile", "claude"], script, "");
    assert!(first.status.success(), "{}", out(&first));
    let sock = t.wait_spare();
    let stale = spare_pid(&sock).expect("the spare's pid");
    let creds = t.s.home.join(".claude/.credentials.json");
    std::fs::create_dir_all(creds.parent().unwrap()).unwrap();
    std::fs::write(&creds, "{\"token\":\"rotated\"}").unwrap();
    let after = t.run(&["--profile", "claude"], script, "");
    assert!(
        !claimed(&after),
        "a spare of the old state was claimed:\n{}",
        out(&after)
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(stale)),
        "the stale spare stayed:\n{}",
        out(&after)
    );
    let _ = t.wait_spare();
    let again = t.run(&["--profile", "claude"], script, "");
    assert!(
        claimed(&again),
        "an unchanged state's spare was not claimed:\n{}",
        out(&again)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("rotated"),
        "the warm session does not see the host's token:\n{}",
        out(&again)
    );
    t.end_spares();
}

#[test]
fn a_warm_agent_gets_the_signal_mask_and_the_signals_of_a_cold_one() {
    // Attack review 115, F3: the warm agent started with every signal the supervisor handles
    // blocked, so SIGTERM to `warden run` never reached its trap and `wait` hung.
    let t = W::new("signals");
    let mask = "grep SigBlk /proc/self/status";
    let cold = t.run(&[], mask, "");
    let _ = t.wait_spare();
    let warm = t.run(&[], mask, "");
    assert!(claimed(&warm), "{}", out(&warm));
    assert_eq!(
        String::from_utf8_lossy(&warm.stdout),
        String::from_utf8_lossy(&cold.stdout),
        "the warm agent's signal mask differs from the cold one's"
    );
    let next = t.wait_spare();
    t.end_spare(&next);
    let _ = std::fs::remove_file(&next);
    // The trap script, twice: the first run leaves its spare, the second claims it.
    let script = "trap 'echo got TERM; exit 5' TERM; echo up > up; sleep 30 & wait";
    for round in 0..2 {
        let _ = std::fs::remove_file(t.s.ws.join("up"));
        let child = t.command(script).spawn().unwrap();
        assert!(
            wait_until(Duration::from_secs(20), || t.s.ws.join("up").exists()),
            "round {round}: the agent never started"
        );
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(5), "round {round}:\n{}", out(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("got TERM"),
            "round {round}:\n{}",
            out(&o)
        );
        if round == 1 {
            assert!(claimed(&o), "the second round was not warm:\n{}", out(&o));
        }
        let _ = t.wait_spare();
    }
    t.end_spares();
}

#[test]
fn a_repository_the_host_makes_while_a_spare_waits_means_a_cold_start() {
    // Attack review 116, F1: `git init` on the host while a spare waited left the new
    // `.git/hooks` and `.git/config` unlocked to the warm agent, and the end's guard stripped
    // the user's own hooks. Now it is a cold start, which locks them and leaves them be.
    let t = W::new("gitinit");
    let script = "printf '#!/bin/sh\\ntouch HOOKRAN\\n' > .git/hooks/pre-commit 2>/dev/null && echo PLANTED; git config core.fsmonitor 'touch FSMON' 2>/dev/null && echo CFG; true";
    let first = t.run(&[], script, "");
    assert!(first.status.success(), "{}", out(&first));
    let _ = t.wait_spare();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(&t.s.ws)
            .env("HOME", &t.s.home)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", out(&o));
    };
    git(&["init", "-q", "."]);
    let hooks = |ws: &Path| std::fs::read_dir(ws.join(".git/hooks")).unwrap().count();
    let before = hooks(&t.s.ws);
    assert!(before > 0, "git init made no sample hooks");
    let o = t.run(&[], script, "");
    assert!(
        !claimed(&o),
        "a spare built before the repository was claimed:\n{}",
        out(&o)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        !stdout.contains("PLANTED") && !stdout.contains("CFG"),
        "the agent wrote the repository's hooks or config:\n{}",
        out(&o)
    );
    // Judged from the host: nothing of the agent's is in the repository, and the host's own
    // repository is as git made it: the waiting spare's guard, before any agent ran, locked
    // it as a start does instead of stripping its hooks and config (`warden_sandbox::latch`).
    assert!(!t.s.ws.join(".git/hooks/pre-commit").exists());
    let cfg = std::fs::read_to_string(t.s.ws.join(".git/config")).unwrap();
    assert!(!cfg.contains("fsmonitor"), "{cfg}");
    assert_eq!(
        hooks(&t.s.ws),
        before,
        "the host's new repository lost git's sample hooks"
    );
    assert!(cfg.contains("repositoryformatversion"), "{cfg}");
    t.end_spares();
}

#[test]
fn a_repository_the_host_makes_below_the_workspace_while_a_spare_waits_is_locked_as_the_hosts() {
    // A repository in a subdirectory is not in the checked set: the claim is warm. Until the
    // agent is released, what appears is the host's: the spare's guard locks it as a cold
    // start at the claim would (read-only, kept as git made it), not as one the agent made
    // (hooks emptied, config reduced). Judged from the host, after the session.
    let t = W::new("subinit");
    let script = "printf '#!/bin/sh\\ntouch HOOKRAN\\n' > sub/.git/hooks/pre-commit 2>/dev/null && echo PLANTED; git -C sub config core.fsmonitor 'touch FSMON' 2>/dev/null && echo CFG; echo made > made.txt";
    let first = t.run(&[], script, "");
    assert!(first.status.success(), "{}", out(&first));
    let _ = t.wait_spare();
    let o = std::process::Command::new("git")
        .args(["init", "-q", "sub"])
        .current_dir(&t.s.ws)
        .env("HOME", &t.s.home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let list = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let hooks = t.s.ws.join("sub/.git/hooks");
    let (hooks_before, cfg_before) = (
        list(&hooks),
        std::fs::read(t.s.ws.join("sub/.git/config")).unwrap(),
    );
    assert!(!hooks_before.is_empty(), "git init made no sample hooks");
    // The spare's guard decides the host's change at once; a claim racing it would be a
    // host change during a session (README, warm start).
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = std::fs::remove_file(t.s.ws.join("made.txt"));
    let o = t.run(&[], script, "");
    assert!(claimed(&o), "not a warm start:\n{}\n{}", out(&o), t.ended());
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        !stdout.contains("PLANTED") && !stdout.contains("CFG"),
        "the agent wrote the host's repository:\n{}",
        out(&o)
    );
    // The legitimate work landed.
    assert!(t.s.ws.join("made.txt").exists(), "{}", out(&o));
    assert_eq!(
        list(&hooks),
        hooks_before,
        "the host's repository's hooks changed:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read(t.s.ws.join("sub/.git/config")).unwrap(),
        cfg_before,
        "the host's repository's config changed:\n{}",
        out(&o)
    );
    t.end_spares();
}

#[test]
fn the_host_s_git_at_work_below_the_workspace_while_a_spare_waits_is_not_disturbed() {
    // A burst of the host's git (repositories made and configured, commits) while a spare
    // waits: the spare locks what the host made only once it settled (a lock between
    // `git init`'s renames failed them), never ends over a file git replaced under its lock
    // (it did: "cannot lock sub/.git/config: No such file or directory", and the claim
    // started cold), and a claim right after the burst is warm and finds every repository
    // locked as the host's. Judged from the host, after the session.
    let t = W::new("gitburst");
    let script = "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do [ -d r$i ] || continue; printf '#!/bin/sh\\ntouch HOOKRAN\\n' > r$i/.git/hooks/pre-commit 2>/dev/null && echo PLANTED$i; git -C r$i config core.fsmonitor 'touch FSMON' 2>/dev/null && echo CFG$i; done; echo made > made.txt";
    // The same command both times: the claim's key is the run's inputs.
    let first = t.run(&[], script, "");
    assert!(first.status.success(), "{}", out(&first));
    std::fs::remove_file(t.s.ws.join("made.txt")).unwrap();
    let _ = t.wait_spare();
    let burst = "set -e; for i in 1 2 3 4 5 6 7 8 9 10 11 12; do git init -q r$i; git -C r$i config user.name host; git -C r$i config user.email h@x; git -C r$i config core.autocrlf false; git -C r$i commit -q --allow-empty -m one; done; echo BURST-OK";
    let o = std::process::Command::new("/bin/sh")
        .args(["-c", burst])
        .current_dir(&t.s.ws)
        .env("HOME", &t.s.home)
        .output()
        .unwrap();
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("BURST-OK"),
        "the host's git failed while the spare waited:\n{}\n{}",
        out(&o),
        t.ended()
    );
    let config = |i: u32| std::fs::read(t.s.ws.join(format!("r{i}/.git/config"))).unwrap();
    let before: Vec<_> = (1..=12).map(config).collect();
    let o = t.run(&[], script, "");
    assert!(claimed(&o), "not a warm start:\n{}\n{}", out(&o), t.ended());
    assert!(o.status.success(), "{}", out(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        !stdout.contains("PLANTED") && !stdout.contains("CFG"),
        "the agent wrote the host's repositories:\n{}",
        out(&o)
    );
    assert!(t.s.ws.join("made.txt").exists(), "{}", out(&o));
    for i in 1..=12 {
        assert!(
            !t.s.ws.join(format!("r{i}/.git/hooks/pre-commit")).exists(),
            "r{i}: a hook landed"
        );
        assert_eq!(
            config(i),
            before[i as usize - 1],
            "r{i}: the config changed"
        );
    }
    // The host's git still works there, and runs nothing of the agent's.
    let o = std::process::Command::new("git")
        .args(["-C", "r3", "commit", "-q", "--allow-empty", "-m", "two"])
        .current_dir(&t.s.ws)
        .env("HOME", &t.s.home)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    assert!(!t.s.ws.join("r3/HOOKRAN").exists() && !t.s.ws.join("r3/FSMON").exists());
    t.end_spares();
}

#[test]
fn a_claim_with_other_limits_or_priority_starts_cold() {
    // Attack review 116, F2: resource limits, nice and the OOM score are the run's, as cold.
    // Each run goes through the same shell, which sets them (`:` sets nothing).
    let t = W::new("limits");
    let script = "ulimit -n; nice";
    let wrapped = |prefix: &str| {
        let c = t.command(script);
        let mut sh = std::process::Command::new("/bin/sh");
        sh.arg("-c")
            .arg(format!("{prefix} exec \"$0\" \"$@\""))
            .arg(super::common::WARDEN)
            .args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.current_dir(&t.s.ws)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let o = sh.output().unwrap();
        assert!(o.status.success(), "{prefix}\n{}", out(&o));
        o
    };
    let _ = wrapped(":;");
    let _ = t.wait_spare();
    // The control: the same shell, nothing changed, claims.
    let same = wrapped(":;");
    assert!(
        claimed(&same),
        "the control run did not claim:\n{}",
        out(&same)
    );
    let _ = t.wait_spare();
    for prefix in ["ulimit -n 200;", "renice -n 5 $$ >/dev/null;"] {
        let o = wrapped(prefix);
        assert!(
            !claimed(&o),
            "{prefix}: a spare of other limits was claimed:\n{}",
            out(&o)
        );
        let _ = t.wait_spare();
    }
    t.end_spares();
}

#[test]
fn sockets_of_dead_spares_do_not_switch_warm_start_off() {
    // Attack review 116, F3: four sockets left by killed spares counted as four spares.
    let t = W::new("dead");
    std::fs::create_dir_all(t.spares()).unwrap();
    std::fs::set_permissions(t.spares(), std::fs::Permissions::from_mode(0o700)).unwrap();
    for i in 0..4 {
        let l = std::os::unix::net::UnixListener::bind(t.spares().join(format!("dead{i}.sock")))
            .unwrap();
        drop(l);
    }
    let first = t.run(&[], "true", "");
    assert!(first.status.success(), "{}", out(&first));
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::read_dir(t.spares())
            .unwrap()
            .flatten()
            .any(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".sock") && !n.starts_with("dead")
            })),
        "no spare was made beside the dead sockets"
    );
    t.end_spares();
}

#[test]
fn a_policy_reached_through_a_retargeted_link_means_a_cold_start() {
    // The sideways move on the checked set: `extends` through a linked directory whose link
    // the host retargets between the spare's build and the claim (the resolved path is still
    // the old file). The claim must start cold with the new policy.
    let t = W::new("extends");
    let (d1, d2, cur) = (
        t.s.root.join("d1"),
        t.s.root.join("d2"),
        t.s.root.join("cur"),
    );
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    std::fs::write(
        d1.join("base.toml"),
        "extends = \"generic\"\n[files]\ndeny = []\n",
    )
    .unwrap();
    std::fs::write(
        d2.join("base.toml"),
        "extends = \"generic\"\n[files]\ndeny = [\"notes.txt\"]\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&d1, &cur).unwrap();
    let policy = t.s.root.join("pol.toml");
    std::fs::write(
        &policy,
        format!("extends = \"{}\"\n", cur.join("base.toml").display()),
    )
    .unwrap();
    std::fs::write(t.s.ws.join("notes.txt"), "NOTES\n").unwrap();
    let p = policy.display().to_string();
    let script = "grep -q NOTES notes.txt 2>/dev/null && echo READ || echo DENIED";
    let first = t.run(&["--policy", &p], script, "");
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("READ"),
        "{}",
        out(&first)
    );
    let _ = t.wait_spare();
    // The link now names the stricter file.
    std::fs::remove_file(&cur).unwrap();
    std::os::unix::fs::symlink(&d2, &cur).unwrap();
    let after = t.run(&["--policy", &p], script, "");
    assert!(
        !claimed(&after),
        "a spare of the old policy was claimed:\n{}",
        out(&after)
    );
    assert!(
        String::from_utf8_lossy(&after.stdout).contains("DENIED"),
        "the agent read a file the new policy denies:\n{}",
        out(&after)
    );
    t.end_spares();
}
