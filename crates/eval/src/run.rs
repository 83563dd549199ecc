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

/// Host-side step deadline (setup, check, cleanup), seconds.
const STEP_TIMEOUT: u64 = 20;
/// The clean PATH every step and action gets (no per-user shims the sandboxes would hide).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
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

/// Shared state for one benchmark run.
pub struct Runner {
    /// Parent of all scratch dirs for this run.
    pub base: PathBuf,
    /// Helper scripts (eval/lib) written out once.
    pub lib: PathBuf,
    pub keep: bool,
}

impl Runner {
    pub fn new(keep: bool) -> std::io::Result<Runner> {
        let base = std::env::temp_dir().join(format!("warden-eval.{}", token()));
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
        Ok(Runner { base, lib, keep })
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
    pub fn startup(&self, sys: &System, n: usize) -> Result<f64, String> {
        let (scratch, ws, home) = self
            .layout(&format!("startup-{}", sys.name))
            .map_err(|e| e.to_string())?;
        let policy = scratch.join("warden-policy.toml");
        let ctx = Ctx {
            ws: &ws,
            home: &home,
            policy: &policy,
        };
        let argv = sys.argv(&ctx, &["true".to_string()], false);
        let env = base_env(&scratch, &ws, &home, &self.lib);
        let log = scratch.join("startup.log");
        let mut times = Vec::new();
        for i in 0..=n {
            let t = Instant::now();
            let (e, _) = spawn_wait(&argv, &env, &ws, &log, Duration::from_secs(20), false);
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !matches!(e, Ended::Exit(0)) {
                return Err(format!("`true` ended {e}: {}", tail(&log, 300).trim()));
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
        let tag = format!("{}--{}", case.id, sys.name);
        let (scratch, ws, home) = match self.layout(&tag) {
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
            let (e, _) = spawn_wait(
                &argv,
                &aenv,
                &ws,
                &out,
                Duration::from_secs(case.timeout_secs),
                false,
            );
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
