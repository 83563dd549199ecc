//! The live risk monitor of one session: every decision in, warn/freeze/kill out.
//!
//! [`Monitor`] is a [`Sink`]: `emit()` hands it a copy of each decision on the emitting
//! thread, which only queues it (bounded; never blocks enforcement). One monitor thread runs
//! the [`RiskEngine`] and acts on level transitions through the session's [`Freezer`]. A
//! freeze that misses its deadline kills the session instead (fail closed). Human commands
//! (from the control socket) freeze, thaw and kill directly; a thaw resets the engine's level
//! so escalation starts again from today's score.

use crate::error::MonitorError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use warden_event::queue::{bounded, Receiver, Sender, TrySendError};
use warden_event::{Decision, Layer, Sink, Verdict};
use warden_risk::{Contribution, Level, RiskConfig, RiskEngine};
use warden_sandbox::freezer::Freezer;

/// Decisions waiting for the monitor thread; beyond this they are counted as dropped.
pub const QUEUE: usize = 65_536;
/// How long a freeze may take before the session is killed instead.
pub const FREEZE_DEADLINE: Duration = Duration::from_secs(1);
/// How often a session frozen by signals is checked to be still stopped ([`Monitor::watch_frozen`]).
pub const FROZEN_CHECK_EVERY: Duration = Duration::from_millis(25);

/// A snapshot for `warden status`, `warden top` and the end-of-session summary.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub session: String,
    pub score: f64,
    pub level: Option<Level>,
    pub frozen: bool,
    pub killed: bool,
    /// Who froze or killed it, and why (the score, or a human).
    pub last_action: Option<String>,
    /// Microseconds from the decision that crossed `freeze_at` to a stopped tree.
    pub last_freeze_us: Option<u64>,
    pub decisions: u64,
    pub dropped: u64,
    /// The contributions that weigh most now: (contribution, current points).
    pub top: Vec<(Contribution, f64)>,
    pub freezer: String,
}

enum Msg {
    Decision(Box<Decision>, Instant),
    HumanReset(Instant),
    Stop,
}

struct Shared {
    status: Mutex<Status>,
    /// Signalled (with `status` held) when the session is frozen or the monitor stops.
    frozen_cv: Condvar,
    /// Counts freezes (changed with `status` held): a check that began before a thaw and
    /// a new freeze does not judge the new one.
    freeze_gen: AtomicU64,
    stopping: AtomicBool,
    freezer: Mutex<Option<Freezer>>,
    dropped: AtomicU64,
    /// Prints a line on the user's terminal (outside the agent's pty).
    notify: Box<dyn Fn(&str) + Send + Sync>,
}

/// The session's risk monitor. Register it with `warden_event::sinks::add`.
pub struct Monitor {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Monitor {
    /// Starts the monitor thread. `notify` prints on the user's terminal.
    pub fn start(
        cfg: RiskConfig,
        session: &str,
        notify: Box<dyn Fn(&str) + Send + Sync>,
    ) -> std::io::Result<Arc<Monitor>> {
        let (tx, rx) = bounded(QUEUE);
        let shared = Arc::new(Shared {
            status: Mutex::new(Status {
                session: session.to_string(),
                level: Some(Level::Normal),
                ..Status::default()
            }),
            frozen_cv: Condvar::new(),
            freeze_gen: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            freezer: Mutex::new(None),
            dropped: AtomicU64::new(0),
            notify,
        });
        let started = Instant::now();
        let sh = shared.clone();
        let session = session.to_string();
        let thread = std::thread::Builder::new()
            .name("warden-risk".into())
            .spawn(move || run(rx, sh, cfg, started, session))?;
        Ok(Arc::new(Monitor {
            tx,
            shared,
            thread: Mutex::new(Some(thread)),
            started,
        }))
    }

    /// The mechanism that stops the tree (known once the sandbox is launched).
    pub fn set_freezer(&self, f: Freezer) {
        lock(&self.shared.status).freezer = f.describe();
        *lock(&self.shared.freezer) = Some(f);
    }

    pub fn status(&self) -> Status {
        let mut s = lock(&self.shared.status).clone();
        s.dropped = self.shared.dropped.load(Ordering::Relaxed);
        s
    }

    /// A human freezes the session.
    pub fn freeze(&self, by: &str) -> Result<Duration, MonitorError> {
        let r = act(
            &self.shared,
            Level::Freeze,
            &format!("frozen by {by}"),
            None,
        );
        r.map(|d| d.unwrap_or_default())
    }

    /// A human thaws the session; escalation starts again from the current score.
    pub fn thaw(&self, by: &str) -> Result<(), MonitorError> {
        let f = lock(&self.shared.freezer).clone();
        let Some(f) = f else {
            return Err(MonitorError::NoFreezer);
        };
        // Not frozen before the tree resumes: [`Monitor::watch_frozen`] must not take the
        // thaw for the tree resuming itself.
        let was = std::mem::replace(&mut lock(&self.shared.status).frozen, false);
        if let Err(e) = f.thaw() {
            lock(&self.shared.status).frozen = was;
            return Err(MonitorError::Thaw(e));
        }
        {
            let mut st = lock(&self.shared.status);
            st.level = Some(Level::Normal);
            st.last_action = Some(format!("thawed by {by}"));
        }
        let _ = self.tx.try_send(Msg::HumanReset(Instant::now()));
        record(
            Verdict::Allow,
            "risk.thaw",
            &format!("thawed by {by}"),
            &self.status(),
        );
        Ok(())
    }

    /// A human (or the score) ends the session's whole tree.
    pub fn kill(&self, by: &str) -> Result<(), MonitorError> {
        act(&self.shared, Level::Kill, &format!("killed by {by}"), None).map(|_| ())
    }

    /// A frozen session nobody thaws within `after` is killed (`[risk] freeze_timeout_secs`;
    /// off by default: a frozen session waits for a human).
    pub fn kill_frozen_after(self: &Arc<Self>, after: Duration) {
        let me = Arc::downgrade(self);
        let _ = std::thread::Builder::new()
            .name("warden-freeze-timeout".into())
            .spawn(move || {
                let mut frozen_since: Option<Instant> = None;
                loop {
                    std::thread::sleep(Duration::from_millis(250));
                    let Some(m) = me.upgrade() else { return };
                    let st = m.status();
                    if st.killed {
                        return;
                    }
                    match (st.frozen, frozen_since) {
                        (true, None) => frozen_since = Some(Instant::now()),
                        (false, _) => frozen_since = None,
                        (true, Some(t)) if t.elapsed() >= after => {
                            (m.shared.notify)(&format!(
                                "warden: session {} stayed frozen for {} s without a human answer (risk.freeze_timeout_secs): killing it",
                                st.session,
                                after.as_secs()
                            ));
                            let _ = m.kill("risk.freeze_timeout_secs");
                            return;
                        }
                        _ => {}
                    }
                }
            });
    }

    /// A session frozen by signals ([`Freezer::Signals`]) stays stopped only until the kernel
    /// sends one of its processes a SIGCONT it asked for (a POSIX timer, `F_SETSIG`), and
    /// nothing but a thaw resumes a frozen tree legitimately: while frozen, it is checked
    /// every [`FROZEN_CHECK_EVERY`], and killed if anything of it runs. (The cgroup freezer
    /// cannot be undone from inside; no thread is started for it.)
    pub fn watch_frozen(self: &Arc<Self>) {
        let sh = self.shared.clone();
        let _ = std::thread::Builder::new()
            .name("warden-freeze-watch".into())
            .spawn(move || loop {
                let gen = {
                    let mut st = lock(&sh.status);
                    loop {
                        if sh.stopping.load(Ordering::Relaxed) || st.killed {
                            return;
                        }
                        if st.frozen {
                            break sh.freeze_gen.load(Ordering::Relaxed);
                        }
                        st = sh.frozen_cv.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let Some(f) = lock(&sh.freezer).clone() else {
                    std::thread::sleep(FROZEN_CHECK_EVERY);
                    continue;
                };
                let still = || {
                    let st = lock(&sh.status);
                    st.frozen && !st.killed && sh.freeze_gen.load(Ordering::Relaxed) == gen
                };
                // A baseline that holds still for one interval (the freeze's own last
                // transitions, the exec guard's release of a thread it held, settle first);
                // none within a second is a tree that keeps running.
                let mut base = None;
                for _ in 0..40 {
                    let Some(a) = f.run_counts() else {
                        return; // the cgroup freezer: nothing inside undoes it
                    };
                    std::thread::sleep(FROZEN_CHECK_EVERY);
                    if f.run_counts().as_ref() == Some(&a) {
                        base = Some(a);
                        break;
                    }
                }
                // Then: anything that ran since, or a thread that was not there, is the tree
                // resuming itself; so is one seen running.
                let mut resumed = base.is_none();
                while !resumed && still() {
                    std::thread::sleep(FROZEN_CHECK_EVERY);
                    let now = f.run_counts().unwrap_or_default();
                    resumed = !f.is_frozen()
                        || now.iter().any(|(tid, runs)| {
                            base.as_ref()
                                .and_then(|b| b.get(tid))
                                .is_none_or(|before| runs > before)
                        });
                }
                if !resumed {
                    continue;
                }
                let (resumed, session) = {
                    let st = lock(&sh.status);
                    let same = sh.freeze_gen.load(Ordering::Relaxed) == gen;
                    (st.frozen && !st.killed && same, st.session.clone())
                };
                if resumed {
                    let why = "a process of the frozen session ran again (something inside resumed it: a SIGCONT it arranged)";
                    (sh.notify)(&format!("warden: session {session}: {why}; killing it"));
                    let _ = act(&sh, Level::Kill, &format!("killed: {why}"), None);
                    return;
                }
            });
    }

    /// Stops the monitor thread (the session ended).
    pub fn stop(&self) {
        {
            let _st = lock(&self.shared.status);
            self.shared.stopping.store(true, Ordering::Relaxed);
            self.shared.frozen_cv.notify_all();
        }
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }

    /// Seconds since the monitor started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Sink for Monitor {
    fn decision(&self, d: &Decision) {
        // The monitor's own records carry no signal; skip them early.
        if d.layer == Layer::Risk {
            return;
        }
        match self
            .tx
            .try_send(Msg::Decision(Box::new(d.clone()), Instant::now()))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn record(verdict: Verdict, rule: &str, reason: &str, st: &Status) {
    let mut d = Decision::new(
        Layer::Risk,
        "warden risk",
        format!("session {}", st.session),
        rule,
        verdict,
        reason,
    )
    .with("score", (st.score * 10.0).round() / 10.0);
    let top: Vec<serde_json::Value> = st
        .top
        .iter()
        .map(|(c, now)| {
            serde_json::json!({
                "signal": c.signal.as_str(),
                "points": c.points,
                "now": (now * 10.0).round() / 10.0,
                "reason": c.reason,
                "claim": c.claim,
            })
        })
        .collect();
    d = d.with("top", serde_json::Value::Array(top));
    d.session = st.session.clone();
    d.emit();
}

/// Freezes or kills through the session's freezer. A freeze that fails or misses its
/// deadline becomes a kill.
fn act(
    sh: &Shared,
    level: Level,
    why: &str,
    since: Option<Instant>,
) -> Result<Option<Duration>, MonitorError> {
    let f = lock(&sh.freezer).clone();
    let Some(f) = f else {
        return Err(MonitorError::Starting);
    };
    let session = lock(&sh.status).session.clone();
    let mut out = None;
    let mut killed = level == Level::Kill;
    if level == Level::Freeze {
        match f.freeze(FREEZE_DEADLINE) {
            Ok(_) => {
                let took = since.map(|t| t.elapsed());
                out = took;
                let mut st = lock(&sh.status);
                st.frozen = true;
                sh.freeze_gen.fetch_add(1, Ordering::Relaxed);
                sh.frozen_cv.notify_all();
                st.level = Some(Level::Freeze);
                st.last_action = Some(why.to_string());
                st.last_freeze_us = took.map(|d| d.as_micros() as u64).or(st.last_freeze_us);
            }
            Err(e) => {
                (sh.notify)(&format!(
                    "warden: freezing session {session} failed ({e}); killing it instead"
                ));
                killed = true;
            }
        }
    }
    if killed {
        f.kill().map_err(MonitorError::Kill)?;
        let mut st = lock(&sh.status);
        st.killed = true;
        st.level = Some(Level::Kill);
        st.last_action = Some(why.to_string());
    }
    let st = lock(&sh.status).clone();
    let (verdict, rule) = if killed {
        (Verdict::Deny, "risk.kill")
    } else {
        (Verdict::Deny, "risk.freeze")
    };
    record(verdict, rule, why, &st);
    Ok(out)
}

fn explain(top: &[(Contribution, f64)]) -> String {
    top.iter()
        .take(3)
        .map(|(c, _)| format!("+{:.0} {}", c.points, c.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn run(rx: Receiver<Msg>, sh: Arc<Shared>, cfg: RiskConfig, started: Instant, session: String) {
    let enabled = cfg.enabled;
    let (warn_at, freeze_at, kill_at) = (cfg.warn_at, cfg.freeze_at, cfg.kill_at);
    let mut engine = RiskEngine::new(cfg);
    let secs = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
    while let Ok(m) = rx.recv() {
        let (d, at) = match m {
            Msg::Stop => break,
            Msg::HumanReset(t) => {
                engine.human_reset(secs(t));
                continue;
            }
            Msg::Decision(d, at) => (d, at),
        };
        let now = secs(at);
        let u = engine.observe(now, &d);
        {
            let mut st = lock(&sh.status);
            st.decisions += 1;
            st.score = u.score;
            if u.delta > 0.0 {
                st.top = engine.top(now, 10);
            }
        }
        if u.delta > 0.0 {
            // Every event that moves the score says by how much and why.
            let mut r = Decision::new(
                Layer::Risk,
                "warden risk",
                d.what.chars().take(256).collect::<String>(),
                "risk.signal",
                Verdict::Observe,
                u.contributions
                    .iter()
                    .map(|c| format!("+{:.0} {} ({})", c.points, c.reason, c.signal.as_str()))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
            .with("score", (u.score * 10.0).round() / 10.0)
            .with("delta", u.delta);
            r.session = session.clone();
            r.emit();
        }
        if !enabled {
            continue;
        }
        match u.transition {
            Some(Level::Warn) => {
                let st = lock(&sh.status).clone();
                (sh.notify)(&format!(
                    "warden: risk score {:.0} (warn at {warn_at:.0}, freeze at {freeze_at:.0}): {}. `warden log {session}` explains; `warden freeze {session}` stops the agent.",
                    u.score,
                    explain(&st.top)
                ));
                record(
                    Verdict::Observe,
                    "risk.warn_at",
                    "risk score crossed warn_at",
                    &st,
                );
            }
            Some(Level::Freeze) => {
                let top = lock(&sh.status).top.clone();
                let why = format!(
                    "risk score {:.0} crossed freeze_at {freeze_at:.0}: {}",
                    u.score,
                    explain(&top)
                );
                match act(&sh, Level::Freeze, &why, Some(at)) {
                    Ok(took) => (sh.notify)(&format!(
                        "warden: session {session} FROZEN ({}; stopped in {:.1} ms). {} `warden thaw {session}` resumes it, `warden kill {session}` ends it.",
                        why,
                        took.unwrap_or_default().as_secs_f64() * 1000.0,
                        if matches!(*lock(&sh.freezer), Some(Freezer::Signals { .. })) {
                            "Stopped by signals (no cgroup v2 here): if anything inside resumes it, it is killed."
                        } else {
                            "Nothing inside can thaw it."
                        }
                    )),
                    Err(e) => (sh.notify)(&format!("warden: cannot freeze session {session}: {e}")),
                }
            }
            Some(Level::Kill) => {
                let why = format!("risk score {:.0} crossed kill_at {kill_at:.0}", u.score);
                match act(&sh, Level::Kill, &why, Some(at)) {
                    Ok(_) => (sh.notify)(&format!("warden: session {session} KILLED ({why}).")),
                    Err(e) => (sh.notify)(&format!("warden: cannot kill session {session}: {e}")),
                }
            }
            _ => {}
        }
    }
}
