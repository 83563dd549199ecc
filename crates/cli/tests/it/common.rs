//! The scaffold every module shares: a scratch tree removed on drop, a hermetic `warden`
//! command (its own `$HOME`, none of the developer's config, state or warden variables),
//! output formatting, and a readiness poll.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The binary under test.
pub const WARDEN: &str = env!("CARGO_BIN_EXE_warden");

/// Variables warden reads that would let the developer's environment into a test: config
/// and state locations, the audit store, session markers, logging.
pub const SCRUBBED_ENV: &[&str] = &[
    "WARDEN_SANDBOX",
    "WARDEN_SESSION_ID",
    "WARDEN_HOOK_FD",
    "WARDEN_ADVISOR_FD",
    "WARDEN_AUDIT_DB",
    "WARDEN_LOG",
    "WARDEN_TIMING",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
];

/// A scratch tree under the temp dir, unique per module prefix, test name and process:
/// `root`, a fake `$HOME` at `root/home` and a workspace `ws`. Removed on drop.
pub struct Scratch {
    pub root: PathBuf,
    pub home: PathBuf,
    pub ws: PathBuf,
}

impl Scratch {
    fn make(prefix: &str, name: &str, ws_in_home: bool) -> Scratch {
        let root = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let home = root.join("home");
        let ws = if ws_in_home {
            home.join("proj")
        } else {
            root.join("ws")
        };
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        Scratch { root, home, ws }
    }

    /// The workspace is `home/proj` (the agent's project inside its home).
    pub fn nested(prefix: &str, name: &str) -> Scratch {
        Scratch::make(prefix, name, true)
    }

    /// The workspace is `root/ws`, beside `home`.
    pub fn beside(prefix: &str, name: &str) -> Scratch {
        Scratch::make(prefix, name, false)
    }

    /// `warden` with this tree's `$HOME` (see [`warden`]).
    pub fn warden(&self) -> Command {
        warden(&self.home)
    }

    /// `warden` run by an ordinary user (uid/gid 65534, no groups) with this tree's `$HOME`,
    /// in its workspace, stdin closed; the tree is given to that user first. Needs root.
    pub fn warden_as_nobody(&self) -> Command {
        let chown = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&self.root)
            .status()
            .expect("chown");
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(WARDEN)
            .env("HOME", &self.home)
            .current_dir(&self.ws)
            .stdin(std::process::Stdio::null());
        for v in SCRUBBED_ENV {
            c.env_remove(v);
        }
        c
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A hermetic `warden` command: `HOME` is `home`, and none of [`SCRUBBED_ENV`] is inherited,
/// so the developer's `~/.config/warden`, state and sessions never reach a test.
pub fn warden(home: &Path) -> Command {
    let mut c = Command::new(WARDEN);
    c.env("HOME", home);
    for v in SCRUBBED_ENV {
        c.env_remove(v);
    }
    c
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--stdout--\n{}\n--stderr--\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The id of a running session of the user whose `$HOME` is `home`: the name of its control
/// socket in warden's state dir (`None` until the session has one).
pub fn session_id(home: &Path) -> Option<String> {
    std::fs::read_dir(home.join(".local/state/warden/sessions"))
        .ok()?
        .flatten()
        .find_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".sock"))
                .map(str::to_string)
        })
}

/// Polls `ready` every 50 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The TOML list of `allow` entries for an allowlist policy: `files` and, canonical, every
/// library the dynamic loader maps for them (`ldd`), each quoted.
pub fn allow_list_with_libraries(files: &[String]) -> String {
    let mut allow = files.to_vec();
    let ldd = std::process::Command::new("ldd")
        .args(files)
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = l
            .split_whitespace()
            .find(|w| w.starts_with('/') && !w.ends_with(':'))
        {
            allow.push(std::fs::canonicalize(p).unwrap().display().to_string());
        }
    }
    allow
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ")
}
