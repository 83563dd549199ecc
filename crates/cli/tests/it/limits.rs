//! Integration tests for issue 11 §4 and parts of §6: the agent never holds host root's
//! identity, cannot exhaust the host's memory or disk, cannot act on the user's terminal
//! through escape sequences, sees only allowlisted device nodes, and `--dry-run` changes
//! nothing. Each attack runs inside `warden run` and is judged from the host afterwards;
//! each test also checks that the legitimate workflow still works.

use super::common::text as out;
use super::common::wait_until;
use super::common::Scratch;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    fn new(name: &str) -> T {
        T(Scratch::nested("warden-lt", name))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.warden();
        c.arg("run").args(args);
        c.current_dir(&self.ws).stdin(Stdio::null());
        c
    }

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

fn euid() -> u32 {
    // SAFETY: trivial getter.
    unsafe { libc::geteuid() }
}

#[test]
fn setuid_copy_made_inside_is_not_a_root_setuid_program_on_the_host() {
    let t = T::new("suid");
    // Every usual way of setting the bit, then plain work on the copy.
    let o = t.sh(
        "cp /bin/bash ./rootsh; chmod 4755 ./rootsh; chmod u+s ./rootsh; \
         install -m 4755 /bin/bash ./rootsh2; \
         /usr/bin/python3 -c 'import os; os.chmod(\"rootsh\", 0o4755)'; \
         cp -p /bin/bash ./rootsh3; chmod 6755 ./rootsh3; \
         ./rootsh -c 'echo copy-runs'; true",
    );
    let stdout = ok(&o);
    assert!(stdout.contains("copy-runs"), "{}", out(&o));
    for name in ["rootsh", "rootsh2", "rootsh3"] {
        let p = t.ws.join(name);
        let Ok(md) = std::fs::metadata(&p) else {
            continue;
        };
        let setid = md.permissions().mode() & 0o6000 != 0;
        assert!(
            !setid,
            "{name} on the host: uid {} mode {:o}\n{}",
            md.uid(),
            md.permissions().mode(),
            out(&o)
        );
    }
    assert!(t.ws.join("rootsh").exists(), "the copy itself must work");
    if euid() == 0 {
        // Run it as `nobody` on the host: no euid 0.
        let r = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(t.ws.join("rootsh"))
            .args([
                "-p",
                "-c",
                "id -u; cat /etc/shadow >/dev/null 2>&1 && echo SHADOW",
            ])
            .output()
            .expect("setpriv");
        let s = String::from_utf8_lossy(&r.stdout);
        assert_eq!(s.lines().next(), Some("65534"), "{s}");
        assert!(!s.contains("SHADOW"), "{s}");
    }
}

#[test]
fn agent_files_keep_the_invoking_users_ownership() {
    let t = T::new("owner");
    std::fs::write(t.ws.join("existing.txt"), "old\n").unwrap();
    std::fs::set_permissions(
        t.ws.join("existing.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let o = t.sh(
        "echo new > created.txt && mkdir -p sub/deeper && echo x > sub/deeper/f && \
         echo more >> existing.txt && cat existing.txt && ln -s created.txt link && \
         mv created.txt renamed.txt && echo ok-done",
    );
    let stdout = ok(&o);
    assert!(stdout.contains("old\nmore\nok-done"), "{}", out(&o));
    // SAFETY: trivial getter.
    let gid = unsafe { libc::getegid() };
    for rel in [
        "renamed.txt",
        "sub",
        "sub/deeper",
        "sub/deeper/f",
        "existing.txt",
    ] {
        let md = std::fs::metadata(t.ws.join(rel)).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (euid(), gid),
            "{rel} must belong to the invoking user"
        );
    }
    let l = std::fs::symlink_metadata(t.ws.join("link")).unwrap();
    assert_eq!(l.uid(), euid());
}

#[test]
fn root_only_system_file_is_unreadable_inside() {
    if euid() != 0 {
        eprintln!("skipped: needs root (the case is root's agent identity)");
        return;
    }
    let t = T::new("rootonly");
    let sysdir = t.root.join("ssl-private");
    std::fs::create_dir_all(&sysdir).unwrap();
    std::fs::set_permissions(&sysdir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = sysdir.join("server.key");
    std::fs::write(&key, "ROOT-ONLY-KEY\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = sysdir.join("server.crt");
    std::fs::write(&public, "PUBLIC-CERT\n").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let p = t.policy(&format!("[files]\nread = [\"{}\"]\n", sysdir.display()));
    let o = t.sh_with(
        &["--policy", &p],
        &format!(
            "cat {crt}; cat {key} && echo LEAKED; cp {key} ./k 2>/dev/null && echo COPIED; \
             id -u; cat /proc/self/uid_map; true",
            crt = public.display(),
            key = key.display()
        ),
    );
    let stdout = ok(&o);
    assert!(stdout.contains("PUBLIC-CERT"), "{}", out(&o));
    assert!(
        !stdout.contains("ROOT-ONLY-KEY") && !stdout.contains("LEAKED"),
        "{}",
        out(&o)
    );
    assert!(!t.ws.join("k").exists(), "{}", out(&o));
    // The map says the agent's uid 0 is an unprivileged host uid.
    let map = stdout
        .lines()
        .find(|l| l.split_whitespace().count() == 3)
        .unwrap_or("");
    let host: u32 = map
        .split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    assert!(host >= 1000, "agent's host uid: {map:?}\n{}", out(&o));
}

#[test]
fn writing_past_the_tmp_limit_fails_with_enospc_and_the_session_continues() {
    let t = T::new("tmpsize");
    let p = t.policy("[process]\ntmp_size = \"8M\"\n");
    let o = t.sh_with(
        &["--policy", &p],
        "head -c 32M /dev/zero > /tmp/fill; echo \"fill=$?\"; sleep 0.3; rm -f /tmp/fill; \
         head -c 1M /dev/zero > /tmp/small && echo small-ok; echo after > after.txt",
    );
    let stdout = ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stdout.contains("fill=1"), "{}", out(&o));
    assert!(stderr.contains("No space left on device"), "{}", out(&o));
    assert!(stdout.contains("small-ok"), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(t.ws.join("after.txt")).unwrap_or_default(),
        "after\n",
        "the session must continue after ENOSPC"
    );
    assert!(
        stderr.contains("process.tmp_size"),
        "warden must name the limit:\n{}",
        out(&o)
    );
}

fn memory_cgroup_available() -> bool {
    // Same rule as the sandbox: v2 with the memory controller, or v1 memory.
    std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
        || std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|x| x == "memory"))
        || Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

#[test]
fn a_memory_hog_is_killed_by_the_session_limit_and_warden_names_it() {
    if euid() != 0 || !memory_cgroup_available() {
        eprintln!("skipped: no writable memory cgroup here");
        return;
    }
    let t = T::new("memhog");
    let p = t.policy("[process]\nmemory_max = \"128M\"\n");
    let o = t.sh_with(
        &["--policy", &p],
        "/usr/bin/python3 -c 'x = bytearray(512 * 1024 * 1024); print(\"HOG-SURVIVED\")'; \
         echo \"hog=$?\"; echo alive > alive.txt",
    );
    let stdout = ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stdout.contains("HOG-SURVIVED"), "{}", out(&o));
    assert!(
        stdout.contains("hog=137"),
        "killed by SIGKILL:\n{}",
        out(&o)
    );
    assert!(t.ws.join("alive.txt").exists(), "the session continues");
    assert!(
        stderr.contains("process.memory_max"),
        "warden must name the limit:\n{}",
        out(&o)
    );
    // Within the limit, work goes on.
    let o = t.sh_with(
        &["--policy", &p],
        "/usr/bin/python3 -c 'x = bytearray(16 * 1024 * 1024); print(\"SMALL-OK\")'",
    );
    assert!(ok(&o).contains("SMALL-OK"), "{}", out(&o));
}

#[test]
fn osc52_and_terminal_queries_never_reach_the_outer_terminal() {
    let t = T::new("osc52");
    // The agent prints the sequences; warden runs on a pty (script) so the agent gets its
    // own pty and the relay is in play; the raw bytes reaching the outer terminal are read.
    let payload: &[u8] = b"A\x1b]52;c;ZWNobyBwd25lZAo=\x07B\x1b[31mRED\x1b[0m\x1b]0;title\x07\
        \x1bP$qm\x1b\\\x1b[21tC\x1b]1337;File=name=eA==:QUJD\x07D\x1b_Gf=1;AA\x1b\\E\n";
    std::fs::write(t.ws.join("payload.bin"), payload).unwrap();
    let inner = "cat payload.bin";
    let warden = env!("CARGO_BIN_EXE_warden");
    // On a pty (the agent gets its own pty), and with stdin not a terminal but stdout one
    // (no pty: the agent's stdout/stderr go through filtered pipes).
    for redirect in ["", " </dev/null", " </dev/null 2>&1"] {
        let cmdline = format!("{warden} run -- /bin/bash -c '{inner}; {inner} >&2'{redirect}");
        check_osc_run(&t, &cmdline);
    }
}

fn check_osc_run(t: &T, cmdline: &str) {
    let mut child = Command::new("script")
        .args(["-qfec", cmdline, "/dev/null"])
        .current_dir(&t.ws)
        .env("HOME", &t.home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1)");
    let stdin = child.stdin.take();
    let o = child.wait_with_output().expect("script");
    drop(stdin);
    let raw = o.stdout.clone();
    let s = String::from_utf8_lossy(&raw);
    assert!(s.contains("AB\x1b[31mRED"), "{cmdline}: {s:?}\n{}", out(&o));
    assert!(s.contains("\x1b[31mRED\x1b[0m"), "colours are kept: {s:?}");
    assert!(
        s.contains("CDE"),
        "text after dropped sequences is kept: {s:?}"
    );
    for bad in [
        "]52;",
        "ZWNobyBwd25lZAo",
        "P$q",
        "[21t",
        "1337;File",
        "_Gf=",
    ] {
        assert!(
            !s.contains(bad),
            "{cmdline}: {bad:?} reached the terminal: {s:?}"
        );
    }
    assert!(s.contains("warden: dropped"), "the user is told: {s:?}");
}

#[test]
fn dev_holds_only_allowlisted_nodes() {
    let t = T::new("dev");
    let o = t.sh("ls -A /dev | tr '\\n' ' '; echo; \
         for d in sda vda nvme0n1 mem kmem port kmsg loop0 fuse net/tun console tty1 vcs; do \
           [ -e /dev/$d ] && echo \"PRESENT $d\"; done; \
         echo hi > /dev/null && echo null-ok; head -c 4 /dev/urandom | wc -c; \
         head -c 3 /dev/zero | wc -c; echo x > /dev/full || echo full-enospc; \
         ls /dev/pts | tr '\\n' ' '; echo; \
         script -qc 'echo in-a-new-pty' /dev/null; \
         echo shm > /dev/shm/x && cat /dev/shm/x; true");
    let stdout = ok(&o);
    assert!(!stdout.contains("PRESENT"), "{}", out(&o));
    assert!(stdout.contains("null-ok"), "{}", out(&o));
    assert!(stdout.contains("full-enospc"), "{}", out(&o));
    assert!(
        stdout.contains("in-a-new-pty"),
        "ptys must work: {}",
        out(&o)
    );
    assert!(stdout.contains("\nshm"), "{}", out(&o));
    let listing = stdout.lines().next().unwrap_or("");
    let mut names: Vec<&str> = listing.split_whitespace().collect();
    names.sort();
    let mut want = vec![
        "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty",
        "urandom", "zero",
    ];
    want.sort();
    assert_eq!(names, want, "{}", out(&o));
}

/// (path, kind, mode, uid, size, mtime, content) of one entry.
type Entry = (PathBuf, String, u32, u32, u64, i64, Vec<u8>);

/// Every entry under `root`.
fn snapshot(root: &Path) -> Vec<Entry> {
    let mut v = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let md = std::fs::symlink_metadata(&d).unwrap();
        let kind = if md.is_dir() {
            "d"
        } else if md.file_type().is_symlink() {
            "l"
        } else {
            "f"
        };
        let content = if md.is_file() {
            std::fs::read(&d).unwrap_or_default()
        } else if md.file_type().is_symlink() {
            std::fs::read_link(&d)
                .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        v.push((
            d.clone(),
            kind.into(),
            md.mode(),
            md.uid(),
            md.size(),
            md.mtime_nsec() + md.mtime() * 1_000_000_000,
            content,
        ));
        if md.is_dir() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    v.sort();
    v
}

#[test]
fn dry_run_changes_nothing_on_the_host() {
    let t = T::new("dryrun");
    std::fs::write(t.ws.join("main.rs"), "fn main() {}\n").unwrap();
    // A stale placeholder manifest from a dead supervisor: a real run sweeps it.
    let ph = t.ws.join(".mcp.json");
    std::fs::write(&ph, "").unwrap();
    let state = t.home.join(".local/state/warden/placeholders");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("dead.list"),
        format!("2147483000\n{}\n", ph.display()),
    )
    .unwrap();
    let before = snapshot(&t.root);
    let o = t
        .cmd(&["--dry-run", "--profile", "claude", "--", "/bin/true"])
        .output()
        .unwrap();
    let stdout = ok(&o);
    assert!(stdout.contains("would create state dir"), "{}", out(&o));
    assert!(stdout.contains("memory.max"), "{}", out(&o));
    let after = snapshot(&t.root);
    assert!(before == after, "--dry-run changed the tree:\n{}", out(&o));
    // The same run for real does change it (so the snapshot can see a change).
    let o = t
        .cmd(&["--profile", "claude", "--", "/bin/true"])
        .output()
        .unwrap();
    ok(&o);
    assert!(snapshot(&t.root) != before, "a real run creates state dirs");
}

#[test]
fn root_refuses_a_workspace_without_idmapped_mounts_unless_best_effort() {
    if euid() != 0 || Command::new("unshare").arg("--help").output().is_err() {
        eprintln!("skipped: needs root and unshare(1)");
        return;
    }
    let t = T::new("noidmap");
    // A ramfs (no idmapped mounts) in a private mount namespace of this test only.
    let mnt = t.root.join("ramfs");
    std::fs::create_dir_all(&mnt).unwrap();
    let warden = env!("CARGO_BIN_EXE_warden");
    let script = format!(
        "mount -t ramfs none {m} && mkdir -p {m}/home/ws && cd {m}/home/ws && \
         HOME={m}/home {w} run -- /bin/sh -c 'touch strict' ; echo \"strict=$?\"; \
         HOME={m}/home {w} run --best-effort -- /bin/sh -c 'touch loose'; echo \"loose=$?\"; \
         ls {m}/home/ws",
        m = mnt.display(),
        w = warden
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(s.contains("strict=4"), "{}", out(&o));
    assert!(
        e.contains("idmapped") && e.contains("ramfs") && e.contains("--best-effort"),
        "{}",
        out(&o)
    );
    assert!(!s.contains("strict\n"), "nothing ran: {}", out(&o));
    assert!(s.contains("loose=0") && s.contains("loose"), "{}", out(&o));
    assert!(e.contains("warning"), "{}", out(&o));
}

#[test]
fn the_sandbox_dies_with_the_supervisor_under_the_agent_identity() {
    // Builtins only (no exec), so the exec guard's own fail-closed path cannot stand in for
    // the sandbox being killed.
    let t = T::new("pdeath");
    let marker = t.ws.join("alive");
    let mut c = t.cmd(&[]);
    c.args([
        "--",
        "/bin/bash",
        "-c",
        "while :; do echo > alive; read -t 0.1 < /dev/zero; done",
    ]);
    let mut child = c.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !marker.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(marker.exists(), "the agent ran");
    // SAFETY: killing our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = std::fs::remove_file(&marker);
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        !marker.exists(),
        "the agent kept running after the supervisor died"
    );
}

/// Run by root, init spawns the agent straight into `<session>/agent` with the agent's host
/// identity, for which the nest's two `cgroup.procs` files are lent to that uid; they are
/// taken back before the agent runs anything. Owned by the agent's uid, they could be
/// `chmod 666`ed from inside (Landlock governs opens, not `chmod`), and then any host user
/// could move the agent's processes out of the cgroup that freeze and kill act on (attack
/// review 65). Judged from the host during the session: the files' owner and mode, and
/// the agent in `<session>/agent`. Inside, `/sys` and every cgroup mount below it are
/// read-only (a `chmod` there fails with EROFS whoever owns the file).
#[test]
fn the_agents_cgroup_files_are_not_its_own() {
    // SAFETY: trivial getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (the agent identity)");
        return;
    }
    let t = T::new("cgnest");
    let mut c = t.cmd(&[]);
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c.args([
        "--",
        "/bin/bash",
        "-c",
        "cg=$(sed -n 's/^0:://p' /proc/self/cgroup); for b in /sys/fs/cgroup /sys/fs/cgroup/unified; do [ -e $b$cg ] && d=$b$cg; done; \
         chmod 666 $d/cgroup.procs $d/../cgroup.procs 2> chmod.err; \
         awk 'index($5, \"/sys\") == 1 {print $5, $6}' /proc/self/mountinfo | grep -E '^/sys( |/fs/cgroup)' > sys.txt; echo $d > cg.txt; \
         while [ ! -e go ]; do read -t 0.05 < /dev/zero; done",
    ]);
    let child = c.spawn().unwrap();
    let cg = t.ws.join("cg.txt");
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read_to_string(&cg)
            .is_ok_and(|s| s.ends_with('\n'))),
        "the agent did not start"
    );
    let dir = PathBuf::from(std::fs::read_to_string(&cg).unwrap().trim());
    let files = [dir.join("cgroup.procs"), dir.join("../cgroup.procs")];
    let seen: Vec<(u32, u32)> = files
        .iter()
        .map(|f| {
            let m = std::fs::metadata(f).unwrap();
            (m.uid(), m.mode() & 0o777)
        })
        .collect();
    std::fs::write(t.ws.join("go"), "").unwrap();
    let o = child.wait_with_output().unwrap();
    if dir.file_name().is_some_and(|n| n == "agent") {
        for (f, (uid, mode)) in files.iter().zip(&seen) {
            assert_eq!(*uid, 0, "{} is owned by uid {uid}", f.display());
            assert_eq!(mode & 0o022, 0, "{} has mode {mode:o}", f.display());
        }
    } else {
        eprintln!("no cgroup nest here ({}): nothing lent", dir.display());
    }
    // The host's sysfs and the cgroup mounts below it are read-only in the view.
    let sys = std::fs::read_to_string(t.ws.join("sys.txt")).unwrap_or_default();
    assert!(
        sys.starts_with("/sys "),
        "no /sys mount seen inside: {sys:?}"
    );
    for l in sys.lines() {
        assert!(
            l.split(' ')
                .nth(1)
                .is_some_and(|o| o.split(',').any(|f| f == "ro")),
            "writable inside: {l}"
        );
    }
    let err = std::fs::read_to_string(t.ws.join("chmod.err")).unwrap_or_default();
    assert!(
        err.contains("Operation not permitted") || err.contains("Read-only"),
        "the agent's chmod did not fail as expected: {err:?} {o:?}"
    );
}

#[test]
fn a_planted_symlink_never_gets_a_host_directory_bound_writable() {
    let t = T::new("symroot");
    // A host directory the agent must never write, and a writable root inside the workspace
    // that an earlier session replaced with a symlink to it.
    let host = t.root.join("host-etc");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("passwd"), "root:x:0:0\n").unwrap();
    let p = t.policy("[files]\nwrite = [\"cache\"]\n");
    std::os::unix::fs::symlink(&host, t.ws.join("cache")).unwrap();
    let o = t.sh_with(&["--policy", &p], "echo evil >> cache/passwd; echo ran");
    assert_eq!(
        std::fs::read_to_string(host.join("passwd")).unwrap(),
        "root:x:0:0\n",
        "the host file was written:\n{}",
        out(&o)
    );
    // Refused as a policy error (exit 3) before anything runs, for any user (the idmapped
    // bind's own refusal, exit 4, is behind it when warden runs as root).
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("symlink"),
        "{}",
        out(&o)
    );
    // --best-effort does not override it (its fallback would follow the symlink).
    let o = t.sh_with(
        &["--policy", &p, "--best-effort"],
        "echo evil >> cache/passwd; echo ran",
    );
    // Refused as a policy error (exit 3) before anything runs, for any user (the idmapped
    // bind's own refusal, exit 4, is behind it when warden runs as root).
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert_eq!(
        std::fs::read_to_string(host.join("passwd")).unwrap(),
        "root:x:0:0\n",
        "{}",
        out(&o)
    );
    // The legitimate layout (a real directory) works.
    std::fs::remove_file(t.ws.join("cache")).unwrap();
    std::fs::create_dir(t.ws.join("cache")).unwrap();
    let o = t.sh_with(&["--policy", &p], "echo ok > cache/f && cat cache/f");
    assert!(ok(&o).contains("ok"), "{}", out(&o));
    assert_eq!(std::fs::metadata(t.ws.join("cache/f")).unwrap().uid(), 0);
}

/// The agent re-opens its own stdio (`> /dev/stdout`, `> /dev/stderr`), also when warden runs
/// as root and the agent's host uid is unprivileged, on every path the supervisor sets up:
/// the caller's pipes, a pty, and filtered pipes (stdin not a terminal, stdout one). It
/// still cannot open a second copy of the hook-event pipe it inherits (fd 100), and the
/// user's own redirect target keeps its owner.
#[test]
fn agent_reopens_its_own_stdout_and_stderr() {
    let t = T::new("devstdout");
    let script = "echo out-via-dev > /dev/stdout && echo err-via-dev > /dev/stderr && \
        echo OK-REOPEN; [ -e /proc/self/fd/100 ] && echo HOOK-FD-PRESENT; \
        (exec 3</proc/self/fd/100) 2>/dev/null && echo HOOK-FD-READ; \
        (: > /proc/self/fd/100) 2>/dev/null && echo HOOK-FD-REOPENED; true";
    // The caller's pipes (stdin, stdout, stderr): the agent writes them through its fds but
    // cannot re-open them. A stdin pipe re-opened for writing would carry the agent's text
    // to whatever reads that pipe after the session (`... | bash`, as root): judged from
    // the test's own copy of the read end, after the session. And they keep their owner.
    let (reader, writer) = std::io::pipe().unwrap();
    let mine = reader.try_clone().unwrap();
    let owner = std::fs::metadata(format!("/proc/self/fd/{}", mine.as_raw_fd()))
        .unwrap()
        .uid();
    let attack = "(echo INJECTED > /proc/self/fd/0) 2>/dev/null && echo STDIN-REOPENED; \
        (echo x > /dev/stdout) 2>/dev/null && echo STDOUT-REOPENED; echo through-fd-1; \
        [ -e /proc/self/fd/100 ] && echo HOOK-FD-PRESENT; \
        (exec 3</proc/self/fd/100) 2>/dev/null && echo HOOK-FD-READ; \
        (: > /proc/self/fd/100) 2>/dev/null && echo HOOK-FD-REOPENED; true";
    let o = t
        .cmd(&[])
        .args(["--", "/bin/bash", "-c", attack])
        .stdin(Stdio::from(reader))
        .output()
        .expect("spawn warden");
    let stdout = ok(&o);
    drop(writer);
    let mut left = String::new();
    let mut mine = mine;
    mine.read_to_string(&mut left).unwrap();
    assert!(
        !left.contains("INJECTED"),
        "the agent wrote into the caller's stdin pipe"
    );
    assert!(!stdout.contains("STDIN-REOPENED"), "{}", out(&o));
    assert!(!stdout.contains("STDOUT-REOPENED"), "{}", out(&o));
    assert!(stdout.contains("through-fd-1"), "{}", out(&o));
    assert_eq!(
        std::fs::metadata(format!("/proc/self/fd/{}", mine.as_raw_fd()))
            .unwrap()
            .uid(),
        owner
    );
    assert!(stdout.contains("HOOK-FD-PRESENT"), "{}", out(&o));
    assert!(!stdout.contains("HOOK-FD-READ"), "{}", out(&o));
    assert!(!stdout.contains("HOOK-FD-REOPENED"), "{}", out(&o));
    // A pty (stdin a terminal), and filtered pipes (stdin not a terminal, stdout one).
    let warden = env!("CARGO_BIN_EXE_warden");
    for redirect in ["", " </dev/null"] {
        let cmdline = format!("{warden} run -- /bin/bash -c '{script}' 2>&1{redirect}");
        let o = Command::new("script")
            .args(["-qfec", &cmdline, "/dev/null"])
            .current_dir(&t.ws)
            .env("HOME", &t.home)
            .stdin(Stdio::piped())
            .output()
            .expect("script(1)");
        let s = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{cmdline}:\n{}", out(&o));
        for want in ["out-via-dev", "err-via-dev", "OK-REOPEN", "HOOK-FD-PRESENT"] {
            assert!(s.contains(want), "{cmdline}: {want} missing:\n{}", out(&o));
        }
        for bad in ["HOOK-FD-READ", "HOOK-FD-REOPENED"] {
            assert!(!s.contains(bad), "{cmdline}: {bad}:\n{}", out(&o));
        }
    }
    // The user's own file as stdout: written through the fd, never handed to the agent.
    let file = t.root.join("out.txt");
    let f = std::fs::File::create(&file).unwrap();
    let before = std::fs::metadata(&file).unwrap();
    let o = t
        .cmd(&[])
        .args(["--", "/bin/bash", "-c", "echo through-the-fd"])
        .stdout(f)
        .output()
        .expect("spawn warden");
    assert!(o.status.success(), "{}", out(&o));
    let after = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (after.uid(), after.gid(), after.mode()),
        (before.uid(), before.gid(), before.mode())
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "through-the-fd\n");
}

#[test]
fn an_open_files_limit_below_warden_s_fds_is_a_precise_error_and_nothing_runs() {
    // Attack review 116, F5: under `ulimit -n 100` (soft and hard) every run failed late,
    // with exit 4, "the machine lacks a kernel feature". Now it is refused first, saying
    // which limit to raise; one above it works (the control).
    let t = T::new("nofile");
    let run = |n: u32| {
        let c = t.cmd(&[]);
        let mut sh = Command::new("/bin/sh");
        sh.arg("-c")
            .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
            .arg(c.get_program())
            .args(c.get_args())
            .args(["--", "/bin/sh", "-c", "echo ran > ran.txt"]);
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => sh.env(k, v),
                None => sh.env_remove(k),
            };
        }
        sh.current_dir(&t.ws).stdin(Stdio::null());
        sh.output().unwrap()
    };
    let o = run(100);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("open-files limit is 100") && err.contains("ulimit -n"),
        "{}",
        out(&o)
    );
    assert!(
        !t.ws.join("ran.txt").exists(),
        "the command ran:\n{}",
        out(&o)
    );
    let o = run(200);
    assert!(o.status.success(), "{}", out(&o));
    assert!(t.ws.join("ran.txt").exists(), "{}", out(&o));
}
