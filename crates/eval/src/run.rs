//! Runs one case against one system: setup on the host, the action inside the system, the
//! check on the host afterwards. Every step gets its own process group and a deadline; the
//! group is killed when the step ends, so nothing a case starts outlives it.

use crate::case::Case;
use crate::report::{Observation, Verdict};
use crate::system::{Ctx, System, WARDEN_POLICY};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Spawns per spawn-loop measurement.
pub const SPAWN_LOOP: usize = 100;

/// Host-side step deadline (setup, check, cleanup), seconds.
const STEP_TIMEOUT: u64 = 20;
/// The clean PATH every step and action gets (no per-user shims the sandboxes would hide).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a start-up measurement has no figure.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The scratch layout cannot be made.
    #[error("{0}")]
    Layout(std::io::Error),
    #[error("no timing in the output: {0}")]
    NoTiming(String),
    #[error("`{cmd}` ended {ended}: {tail}")]
    Failed {
        cmd: String,
        ended: Ended,
        tail: String,
    },
}

/// How a spawned step ended.
#[derive(Debug, Clone)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
    TimedOut,
    SpawnFailed(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exit(c) => write!(f, "exit:{c}"),
            Ended::Signal(s) => write!(f, "signal:{s}"),
            Ended::TimedOut => write!(f, "timeout"),
            Ended::SpawnFailed(e) => write!(f, "spawn-failed:{e}"),
        }
    }
}

/// Spawns `argv` in a new process group with `env` only, output to `log`, and waits up to
/// `timeout`. The whole group is killed afterwards unless `keep_group` (setup's listeners).
pub fn spawn_wait(
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    log: &Path,
    timeout: Duration,
    keep_group: bool,
) -> (Ended, Option<i32>) {
    spawn_wait_tty(argv, env, cwd, log, timeout, keep_group, None)
}

/// [`spawn_wait`], optionally with `tty` (a pty slave) as stdin and controlling terminal: the
/// child starts a new session (so its session id is its process group, killed the same way).
pub fn spawn_wait_tty(
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    log: &Path,
    timeout: Duration,
    keep_group: bool,
    tty: Option<&std::fs::File>,
) -> (Ended, Option<i32>) {
    let Some((prog, args)) = argv.split_first() else {
        return (Ended::SpawnFailed("empty command".into()), None);
    };
    let out = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        Ok(f) => f,
        Err(e) => return (Ended::SpawnFailed(format!("{}: {e}", log.display())), None),
    };
    let err = match out.try_clone() {
        Ok(f) => f,
        Err(e) => return (Ended::SpawnFailed(e.to_string()), None),
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdout(out)
        .stderr(err);
    match tty.map(|t| t.try_clone()) {
        Some(Ok(t)) => {
            cmd.stdin(Stdio::from(t));
            // SAFETY: only async-signal-safe syscalls between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Some(Err(e)) => return (Ended::SpawnFailed(format!("tty: {e}")), None),
        None => {
            cmd.stdin(Stdio::null()).process_group(0);
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return (Ended::SpawnFailed(format!("{prog}: {e}")), None),
    };
    let pgid = child.id() as i32;
    let start = Instant::now();
    let ended = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                break match (st.code(), st.signal()) {
                    (Some(c), _) => Ended::Exit(c),
                    (_, Some(s)) => Ended::Signal(s),
                    _ => Ended::Exit(-1),
                }
            }
            Ok(None) if start.elapsed() >= timeout => {
                kill_group(pgid);
                let _ = child.wait();
                break Ended::TimedOut;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => break Ended::SpawnFailed(e.to_string()),
        }
    };
    if !keep_group {
        kill_group(pgid);
    }
    (ended, Some(pgid))
}

pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall; a negative pid addresses the process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

fn token() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn tail(p: &Path, n: usize) -> String {
    let b = std::fs::read(p).unwrap_or_default();
    let s = &b[b.len().saturating_sub(n)..];
    String::from_utf8_lossy(s).into_owned()
}

/// The errno name the action's output suggests, for `BLOCKED (errno)` cells.
pub fn errno_hint(out: &str) -> Option<&'static str> {
    const PATTERNS: &[(&str, &str)] = &[
        ("Operation not permitted", "EPERM"),
        ("Permission denied", "EACCES"),
        ("Read-only file system", "EROFS"),
        ("Network is unreachable", "ENETUNREACH"),
        ("Connection refused", "ECONNREFUSED"),
        ("No such process", "ESRCH"),
        ("No such file or directory", "ENOENT"),
        ("Resource temporarily unavailable", "EAGAIN"),
        ("Device or resource busy", "EBUSY"),
        ("Cannot assign requested address", "EADDRNOTAVAIL"),
        ("Function not implemented", "ENOSYS"),
        ("Invalid cross-device link", "EXDEV"),
        ("Text file busy", "ETXTBSY"),
    ];
    PATTERNS
        .iter()
        .filter_map(|(pat, name)| out.find(pat).map(|i| (i, *name)))
        .min_by_key(|(i, _)| *i)
        .map(|(_, n)| n)
}

/// A pty pair (master, slave) with the slave in raw mode, or None.
fn open_pty() -> Option<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds; null name/termios/winsize are allowed.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: fresh fds we own.
    let (m, s) = unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) };
    use std::os::fd::AsRawFd;
    // SAFETY: tcgetattr/tcsetattr on an fd we own, with a zeroed struct filled by the kernel.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(s.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
    Some((m, s))
}

/// Reads whatever input is queued on a tty without blocking (at most 64 KiB).
fn drain_input(slave: &std::fs::File) -> Vec<u8> {
    use std::os::fd::AsRawFd;
    let fd = slave.as_raw_fd();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // SAFETY: fcntl/read on an fd we own, into a buffer of the stated length.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        while out.len() < 65536 {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
    }
    out
}

/// Shared state for one benchmark run.
pub struct Runner {
    /// Scratch dirs made so far (names them `NNN-system`, short for the same reason).
    seq: std::cell::Cell<usize>,
    /// Parent of all scratch dirs for this run.
    pub base: PathBuf,
    /// Helper scripts (eval/lib) written out once.
    pub lib: PathBuf,
    pub keep: bool,
}

impl Runner {
    pub fn new(keep: bool) -> std::io::Result<Runner> {
        // Not /tmp: some peers (codex) make /tmp writable, and a fake home or "outside"
        // directory under it would score their escapes on an artefact of this benchmark.
        let root = [Path::new("/var/tmp")]
            .into_iter()
            .find(|p| p.is_dir())
            .map(Path::to_path_buf)
            .unwrap_or_else(std::env::temp_dir);
        // Short: warden keeps a unix socket under the fake $HOME (SUN_LEN is 108 bytes).
        let base = root.join(format!("wev.{}", &token()[..8]));
        std::fs::create_dir_all(&base)?;
        let lib = base.join("lib");
        std::fs::create_dir_all(&lib)?;
        for (name, text) in crate::embedded::LIB {
            let file = Path::new(name)
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default();
            std::fs::write(lib.join(file), text)?;
        }
        Ok(Runner {
            seq: std::cell::Cell::new(0),
            base,
            lib,
            keep,
        })
    }

    fn layout(&self, tag: &str) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
        let scratch = self.base.join(tag);
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)?;
        }
        let ws = scratch.join("ws");
        let home = scratch.join("home");
        for d in [&ws, &home, &scratch.join("outside")] {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(scratch.join("warden-policy.toml"), WARDEN_POLICY)?;
        Ok((scratch, ws, home))
    }

    /// Start-up latency of `true` inside `sys`: the median of `n` runs, in milliseconds.
    pub fn startup(&self, sys: &System, n: usize) -> Result<f64, MeasureError> {
        self.median_ms(sys, &["true".to_string()], n, false)
    }

    /// Cost of one spawn inside `sys`, in microseconds: a loop of [`SPAWN_LOOP`] `/bin/true`
    /// runs timed inside the system (so start-up is excluded), median of `n`.
    pub fn spawn_loop(&self, sys: &System, n: usize) -> Result<f64, MeasureError> {
        let script = format!(
            "s=$(date +%s%N); i=0; while [ $i -lt {SPAWN_LOOP} ]; do /bin/true; i=$((i+1)); done; \
             e=$(date +%s%N); echo \"EVAL_MS $(( (e-s)/1000 ))\""
        );
        let ms = self.median_ms(sys, &["bash".into(), "-c".into(), script], n, true)?;
        Ok(ms * 1000.0 / SPAWN_LOOP as f64)
    }

    /// Median wall time of `cmd` in `sys`, in ms; with `inner`, the time the command itself
    /// reports on a line `EVAL_MS <microseconds>`.
    fn median_ms(
        &self,
        sys: &System,
        cmd: &[String],
        n: usize,
        inner: bool,
    ) -> Result<f64, MeasureError> {
        let (scratch, ws, home) = self
            .layout(&format!("up-{}", sys.name))
            .map_err(MeasureError::Layout)?;
        let policy = scratch.join("warden-policy.toml");
        let ctx = Ctx {
            scratch: &scratch,
            ws: &ws,
            home: &home,
            policy: &policy,
        };
        let argv = sys.argv(&ctx, cmd, false);
        let env = base_env(&scratch, &ws, &home, &self.lib);
        let log = scratch.join("startup.log");
        let mut times = Vec::new();
        for i in 0..=n {
            let _ = std::fs::remove_file(&log);
            let t = Instant::now();
            let (e, _) = spawn_wait(&argv, &env, &ws, &log, Duration::from_secs(20), false);
            let mut ms = t.elapsed().as_secs_f64() * 1000.0;
            if inner {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                let us = out
                    .lines()
                    .filter_map(|l| l.strip_prefix("EVAL_MS "))
                    .filter_map(|v| v.trim().parse::<f64>().ok())
                    .next_back();
                match us {
                    Some(us) => ms = us / 1000.0,
                    None => return Err(MeasureError::NoTiming(tail(&log, 300).trim().to_string())),
                }
            }
            if !matches!(e, Ended::Exit(0)) {
                return Err(MeasureError::Failed {
                    cmd: cmd.join(" "),
                    ended: e,
                    tail: tail(&log, 300).trim().to_string(),
                });
            }
            if i > 0 {
                times.push(ms);
            }
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        Ok(times.get(times.len() / 2).copied().unwrap_or(f64::NAN))
    }

    /// Runs `case` against `sys` and judges it from the host.
    pub fn run(&self, case: &Case, sys: &System) -> Observation {
        let mut obs = Observation::new(case, sys);
        if let crate::system::Kind::Absent(why) = &sys.kind {
            obs.verdict = Verdict::Skipped;
            obs.detail = why.clone();
            return obs;
        }
        if let Some(why) = sys.not_expressible(case) {
            obs.verdict = Verdict::NotExpressible;
            obs.detail = why;
            return obs;
        }
        if let Some(n) = case
            .needs
            .iter()
            .find(|n| crate::system::which_in(n, PATH).is_none())
        {
            obs.verdict = Verdict::Skipped;
            obs.detail = format!("needs `{n}`, not installed");
            return obs;
        }
        // SAFETY: geteuid has no preconditions.
        if case.root && unsafe { libc::geteuid() } != 0 {
            obs.verdict = Verdict::Skipped;
            obs.detail = "setup needs root".into();
            return obs;
        }
        let t0 = Instant::now();
        self.seq.set(self.seq.get() + 1);
        let tag = format!("{:03}-{}", self.seq.get(), sys.name);
        let laid = self.layout(&tag).and_then(|(s, w, h)| {
            std::fs::write(s.join("CASE"), format!("{}\n", case.id))?;
            Ok((s, w, h))
        });
        let (scratch, ws, home) = match laid {
            Ok(x) => x,
            Err(e) => {
                obs.verdict = Verdict::Error;
                obs.detail = format!("scratch dir: {e}");
                return obs;
            }
        };
        let env = base_env(&scratch, &ws, &home, &self.lib);
        let step = |script: &str, name: &str, keep: bool| {
            spawn_wait(
                &["bash".into(), "-c".into(), script.into()],
                &env,
                if name == "check" { &ws } else { &scratch },
                &scratch.join(format!("{name}.log")),
                Duration::from_secs(STEP_TIMEOUT),
                keep,
            )
        };
        let mut setup_pgid = None;
        let mut verdict = None;
        if !case.setup.trim().is_empty() {
            let (e, pg) = step(&case.setup, "setup", true);
            setup_pgid = pg;
            if !matches!(e, Ended::Exit(0)) {
                verdict = Some((
                    Verdict::Error,
                    format!(
                        "setup ended {e}: {}",
                        tail(&scratch.join("setup.log"), 300).trim()
                    ),
                ));
            }
        }
        if verdict.is_none() {
            // The action's environment: the base plus what setup put in action.env (KEY=VALUE).
            // The secret token is never in the action's environment: only reading it counts.
            let mut aenv: Vec<_> = env.iter().filter(|(k, _)| k != "TOKEN").cloned().collect();
            if let Ok(extra) = std::fs::read_to_string(scratch.join("action.env")) {
                for l in extra.lines() {
                    if let Some((k, v)) = l.split_once('=') {
                        aenv.retain(|(x, _)| x != k);
                        aenv.push((k.to_string(), v.to_string()));
                    }
                }
            }
            let policy = scratch.join("warden-policy.toml");
            let ctx = Ctx {
                scratch: &scratch,
                ws: &ws,
                home: &home,
                policy: &policy,
            };
            let argv = sys.argv(
                &ctx,
                &["bash".into(), "-c".into(), case.action.clone()],
                true,
            );
            obs.invocation = argv.clone();
            let out = scratch.join("action.out");
            let pty = if case.tty { open_pty() } else { None };
            if case.tty && pty.is_none() {
                obs.verdict = Verdict::Error;
                obs.detail = "cannot open a pty for this case".into();
                return obs;
            }
            let (e, _) = spawn_wait_tty(
                &argv,
                &aenv,
                &ws,
                &out,
                Duration::from_secs(case.timeout_secs),
                false,
                pty.as_ref().map(|(_, slave)| slave),
            );
            if let Some((_master, slave)) = &pty {
                // What waits in the terminal's input queue is what the user's shell reads next.
                let _ = std::fs::write(scratch.join("tty-input"), drain_input(slave));
            }
            let _ = std::fs::write(scratch.join("system.status"), format!("{e}\n"));
            obs.action_status = e.to_string();
            obs.output_tail = tail(&out, 1500);
            let (c, _) = step(&case.check, "check", false);
            verdict = Some(match c {
                Ended::Exit(0) => (Verdict::Escaped, String::new()),
                Ended::Exit(1) => (Verdict::Blocked, String::new()),
                other => (
                    Verdict::Error,
                    format!(
                        "check ended {other}: {}",
                        tail(&scratch.join("check.log"), 300).trim()
                    ),
                ),
            });
            if let Some((Verdict::Blocked, _)) = &verdict {
                obs.errno = errno_hint(&obs.output_tail).map(String::from);
            }
        }
        if !case.cleanup.trim().is_empty() {
            let _ = step(&case.cleanup, "cleanup", false);
        }
        if let Some(pg) = setup_pgid {
            kill_group(pg);
        }
        let (v, d) = verdict.unwrap_or((Verdict::Error, "no verdict".into()));
        obs.verdict = v;
        obs.detail = d;
        obs.millis = t0.elapsed().as_millis() as u64;
        if !self.keep {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        obs
    }

    pub fn finish(&self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }
}

/// The environment of every step: a clean, minimal one, never the caller's (which may hold
/// real secrets that an `env` action would print into the report).
pub fn base_env(scratch: &Path, ws: &Path, home: &Path, lib: &Path) -> Vec<(String, String)> {
    let s = |p: &Path| p.display().to_string();
    let denied = crate::system::which_in("curl", PATH)
        .map(|p| s(&p))
        .unwrap_or_else(|| "/usr/bin/curl".into());
    vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), s(home)),
        (
            "USER".into(),
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
        ("SHELL".into(), "/bin/bash".into()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("SCRATCH".into(), s(scratch)),
        ("WS".into(), s(ws)),
        ("OUTSIDE".into(), s(&scratch.join("outside"))),
        ("EVAL_LIB".into(), s(lib)),
        ("ACTION_OUT".into(), s(&scratch.join("action.out"))),
        ("DENIED".into(), denied),
        ("TOKEN".into(), format!("evalsecret{}", token())),
        ("PORT".into(), free_port().to_string()),
        ("PORT2".into(), free_port().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(setup: &str, action: &str, check: &str, timeout: u64) -> Case {
        let mut c = crate::case::parse(
            "t/t-x.toml",
            "id = \"t-x\"\nclass = \"exec\"\ndescription = \"d\"\naction = \"a\"\ncheck = \"c\"\n",
        )
        .unwrap();
        c.setup = setup.into();
        c.action = action.into();
        c.check = check.into();
        c.timeout_secs = timeout;
        c
    }

    #[test]
    fn verdicts_come_from_the_check_not_the_action() {
        let r = Runner::new(false).unwrap();
        let none = crate::system::resolve("none", Path::new("/bin/true")).unwrap();
        let esc = r.run(
            &case("", "echo hi > m; exit 3", "[ -e \"$WS/m\" ]", 5),
            &none,
        );
        assert_eq!(esc.verdict, Verdict::Escaped, "{esc:?}");
        let blk = r.run(&case("", "ls /nonexistent-x", "[ -e \"$WS/m\" ]", 5), &none);
        assert_eq!(blk.verdict, Verdict::Blocked, "{blk:?}");
        assert_eq!(blk.errno.as_deref(), Some("ENOENT"));
        let err = r.run(&case("", "true", "exit 3", 5), &none);
        assert_eq!(err.verdict, Verdict::Error);
        assert!(err.detail.contains("check ended exit:3"), "{err:?}");
        let bad_setup = r.run(&case("echo broken >&2; exit 1", "true", "true", 5), &none);
        assert_eq!(bad_setup.verdict, Verdict::Error);
        assert!(
            bad_setup.detail.contains("setup ended exit:1: broken"),
            "{bad_setup:?}"
        );
        // The action never sees the secret token; setup's action.env reaches it.
        let env = r.run(
            &case(
                "echo \"X_FROM_SETUP=$TOKEN\" >> \"$SCRATCH/action.env\"",
                "echo \"[$TOKEN]\"; echo \"$X_FROM_SETUP\"",
                "grep -q '^\\[\\]$' \"$ACTION_OUT\" && grep -q evalsecret \"$ACTION_OUT\"",
                5,
            ),
            &none,
        );
        assert_eq!(env.verdict, Verdict::Escaped, "{env:?}");
        r.finish();
    }

    #[test]
    fn a_deadline_kills_the_whole_group() {
        let r = Runner::new(false).unwrap();
        let none = crate::system::resolve("none", Path::new("/bin/true")).unwrap();
        let t = Instant::now();
        let o = r.run(
            &case("", "sleep 30 & echo $! > \"$SCRATCH/bg\"; sleep 30", "p=$(cat \"$SCRATCH/bg\"); sleep 0.2; ! kill -0 $p 2>/dev/null || grep -q '^State:.*Z' /proc/$p/status", 1),
            &none,
        );
        assert!(t.elapsed() < Duration::from_secs(10));
        assert_eq!(o.action_status, "timeout");
        assert_eq!(
            o.verdict,
            Verdict::Escaped,
            "the background sleep outlived the deadline: {o:?}"
        );
        r.finish();
    }
}
