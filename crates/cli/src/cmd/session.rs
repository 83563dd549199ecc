//! The CLI side of the supervised session: starting the risk monitor and control socket once
//! the sandbox is launched (`warden run`), the end-of-session risk line, and
//! `warden freeze|thaw|kill|status` (clients of the control socket). The mechanisms live in
//! warden-session.

use super::{fail, home_dir, misc};
use crate::cli::SessionArg;
use crate::exit;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warden_risk::RiskConfig;
use warden_sandbox::freezer::Freezer;
use warden_session::{control, ControlServer, Monitor, Op};

/// The monitor and control socket of the running session.
pub struct Running {
    pub monitor: Arc<Monitor>,
    pub control: Option<ControlServer>,
}

pub type Slot = Arc<Mutex<Option<Running>>>;
pub type OnLaunch = Box<dyn FnOnce(i32)>;

impl Running {
    pub fn slot() -> Slot {
        Arc::new(Mutex::new(None))
    }
}

/// What `warden run` calls once the sandbox exists (its stage1 pid), with threads allowed.
pub fn on_launch(
    cfg: RiskConfig,
    freeze_timeout: Option<std::time::Duration>,
    state: &Path,
    session: &str,
    leaf: Option<PathBuf>,
    slot: Slot,
) -> OnLaunch {
    let state = state.to_path_buf();
    let session = session.to_string();
    Box::new(move |stage1: i32| {
        let notify = Box::new(|m: &str| {
            // Outside the agent's pty: our own stderr, on a line of its own (the terminal
            // may be in raw mode).
            eprint!("\r\n{}\r\n", misc::warn_stderr(m));
        });
        let monitor = match Monitor::start(cfg, &session, notify) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("warden: warning: risk monitor not started: {e}");
                return;
            }
        };
        monitor.set_freezer(match &leaf {
            Some(p) => Freezer::Cgroup(p.clone()),
            None => Freezer::Signals(stage1),
        });
        warden_event::sinks::add(monitor.clone());
        if let Some(t) = freeze_timeout {
            monitor.kill_frozen_after(t);
        }
        let control = match ControlServer::start(&state, &session, monitor.clone(), leaf.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warden: warning: no control socket for this session ({e}); `warden freeze` cannot reach it");
                None
            }
        };
        if let Ok(mut g) = slot.lock() {
            *g = Some(Running { monitor, control });
        }
    })
}

/// The session's risk outcome, for the exit code and the summary.
pub struct Outcome {
    pub killed: bool,
}

impl Outcome {
    /// A session the risk monitor or a human killed exits 6 ("action denied").
    pub fn exit_code(&self, agent: i32) -> i32 {
        if self.killed {
            exit::DENIED
        } else {
            agent
        }
    }
}

/// Stops the monitor and prints the risk line (unless quiet).
pub fn finish(slot: &Slot, quiet: bool) -> Option<Outcome> {
    let r = slot.lock().ok()?.take()?;
    warden_event::sinks::clear();
    r.monitor.stop();
    drop(r.control);
    let st = r.monitor.status();
    if !quiet && (st.score >= 1.0 || st.killed || st.last_action.is_some()) {
        let mut line = format!("warden: risk score {:.0}", st.score);
        if let Some(a) = &st.last_action {
            line.push_str(&format!("; {a}"));
        }
        if let Some((c, _)) = st.top.first() {
            line.push_str(&format!("; weighed most: {}", c.reason));
        }
        eprintln!("{}", misc::warn_stderr(&line));
    }
    Some(Outcome { killed: st.killed })
}

/// `warden freeze|thaw|kill|status SESSION`.
pub fn control(a: SessionArg, op: Op) -> anyhow::Result<i32> {
    let state = super::run::state_dir(&home_dir());
    let id = control::find(&state, &a.session).map_err(|e| fail(exit::USAGE, e))?;
    let r = control::request(&state, &id, op).map_err(|e| fail(exit::INTERNAL, e))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        if !r.message.is_empty() {
            println!("session {id}: {}", r.message);
        }
        if let Some(st) = &r.status {
            println!(
                "risk score {:.1}, level {:?}{}{}",
                st.score,
                st.level.unwrap_or(warden_risk::Level::Normal),
                if st.frozen { ", FROZEN" } else { "" },
                if st.killed { ", KILLED" } else { "" }
            );
            if let Some(us) = st.last_freeze_us {
                println!("last automatic freeze took {:.1} ms", us as f64 / 1000.0);
            }
            println!(
                "decisions seen {}, not scored (queue full) {}",
                st.decisions, st.dropped
            );
            println!("stop switch: {}", st.freezer);
            for (c, now) in &st.top {
                println!(
                    "  {:>5.1} (was +{:.0}) {}{}",
                    now,
                    c.points,
                    c.reason,
                    if c.claim { " [claim from inside]" } else { "" }
                );
            }
        }
    }
    Ok(if r.ok { exit::OK } else { exit::DENIED })
}
