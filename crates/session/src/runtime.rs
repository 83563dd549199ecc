//! The session's runtime once the sandbox exists: the risk monitor, the control socket and
//! the audit writer ([`Running`], started by [`on_launch`]), the decisions held before any of
//! them may start ([`Early`]), the end of the session ([`finish`]) and the supervisor's key
//! sequence ([`escape_handler`]), which also answers approval requests (Ctrl-] a/A/d), and
//! the prompt that shows each request on the supervisor's terminal ([`approval_prompt`]).

use crate::approval::{Answer, Approvals, Pending};
use crate::config::AuditConfig;
use crate::ui::Ui;
use crate::{ControlServer, Monitor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warden_risk::RiskConfig;
use warden_sandbox::freezer::Freezer;

/// The monitor, control socket and audit writer of the running session.
pub struct Running {
    pub monitor: Arc<Monitor>,
    pub approvals: Arc<Approvals>,
    pub control: Option<ControlServer>,
    /// The audit writer, opened on a thread of its own (off the start-up path).
    pub audit: Option<std::thread::JoinHandle<Option<warden_audit::AuditWriter>>>,
    pub audit_store: PathBuf,
}

/// The audit store's sink for the whole session. Until the store is open (the supervisor is
/// single-threaded until the sandbox is forked, and the store then opens on a thread of its
/// own) decisions are held in memory, bounded; [`Early::attach`] hands them over, and from
/// then on every decision goes straight to the store under the same lock, so none is lost
/// or doubled in the hand-over.
#[derive(Default)]
pub struct Early(Mutex<EarlyState>);

#[derive(Default)]
pub struct EarlyState {
    held: Vec<warden_event::Decision>,
    sink: Option<AuditSink>,
}

impl Early {
    fn attach(&self, sink: AuditSink) {
        if let Ok(mut st) = self.0.lock() {
            for d in std::mem::take(&mut st.held) {
                warden_event::Sink::decision(&sink, &d);
            }
            st.sink = Some(sink);
        }
    }
}

impl warden_event::Sink for Early {
    fn decision(&self, d: &warden_event::Decision) {
        if let Ok(mut st) = self.0.lock() {
            match &st.sink {
                Some(s) => warden_event::Sink::decision(s, d),
                None if st.held.len() < 4096 => st.held.push(d.clone()),
                None => {}
            }
        }
    }
}

/// The audit store as a decision sink: warden's own decisions are rows; reports relayed from
/// inside the sandbox (`reported_by`) are stored as the agent's claims.
pub struct AuditSink {
    w: warden_audit::AuditWriter,
    session: String,
}

impl warden_event::Sink for AuditSink {
    fn decision(&self, d: &warden_event::Decision) {
        if d.extra.contains_key("reported_by") {
            let raw = d.to_json();
            self.w
                .record_claim(&self.session, warden_event::Layer::Gate, raw.as_bytes());
        } else {
            self.w.record(d.clone());
        }
    }
}

/// What the audit store needs to open a session.
pub struct AuditStart {
    pub config: AuditConfig,
    pub early: Arc<Early>,
}

pub type Slot = Arc<Mutex<Option<Running>>>;
pub type OnLaunch = Box<dyn FnOnce(i32)>;

impl Running {
    pub fn slot() -> Slot {
        Arc::new(Mutex::new(None))
    }
}

/// The risk monitor's settings for [`on_launch`].
pub struct RiskStart {
    pub config: RiskConfig,
    /// A frozen session nobody thaws is killed after this long.
    pub freeze_timeout: Option<std::time::Duration>,
    /// Whether the sandbox has namespaces (an init between stage 1 and the agent): the
    /// signal freezer then spares stage 1 and init ([`Freezer::Signals`]).
    pub namespaces: bool,
}

/// What the session calls once the sandbox exists (its stage1 pid), with threads allowed.
#[allow(clippy::too_many_arguments)] // each is one piece of the session that Session::start made
pub fn on_launch(
    risk: RiskStart,
    state: &Path,
    session: &str,
    leaf: Option<PathBuf>,
    slot: Slot,
    audit: AuditStart,
    ui: Ui,
    approvals: Arc<Approvals>,
) -> OnLaunch {
    let state = state.to_path_buf();
    let session = session.to_string();
    let RiskStart {
        config: cfg,
        freeze_timeout,
        namespaces,
    } = risk;
    Box::new(move |stage1: i32| {
        approvals.on_request(approval_prompt(&session, ui));
        let notify = Box::new(move |m: &str| {
            // Outside the agent's pty: our own stderr, on a line of its own (the terminal
            // may be in raw mode).
            ui.alert(m);
        });
        let monitor = match Monitor::start(cfg, &session, notify) {
            Ok(m) => m,
            Err(e) => {
                ui.warn(
                    "warden: warning:",
                    &format!("risk monitor not started: {e}"),
                );
                return;
            }
        };
        warden_event::timing::mark("on_launch: monitor started");
        monitor.set_freezer(match &leaf {
            Some(p) => Freezer::Cgroup(p.clone()),
            None => {
                monitor.watch_frozen();
                Freezer::Signals {
                    root: stage1,
                    below: if namespaces { 2 } else { 0 },
                }
            }
        });
        warden_event::sinks::add(monitor.clone());
        if let Some(t) = freeze_timeout {
            monitor.kill_frozen_after(t);
        }
        let control = match ControlServer::start(
            &state,
            &session,
            monitor.clone(),
            leaf.clone(),
            Some(approvals.clone()),
            Some(stage1),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warden: warning: no control socket for this session ({e}); `warden freeze` cannot reach it");
                None
            }
        };
        warden_event::timing::mark("on_launch: control socket");
        // The audit store: every decision of the session from here on (and the early ones).
        let store = audit.config.store.clone();
        let session2 = session.clone();
        let writer = std::thread::Builder::new()
            .name("audit-open".into())
            .spawn(move || open_audit(audit, &session2))
            .ok();
        if let Ok(mut g) = slot.lock() {
            *g = Some(Running {
                monitor,
                approvals,
                control,
                audit: writer,
                audit_store: store,
            });
        }
    })
}

/// Opens the audit store, records the session's start and hands it the early decisions
/// (from then on [`Early`] writes to it). A store that cannot be opened leaves the session
/// recorded in its JSON-lines log only.
fn open_audit(audit: AuditStart, session: &str) -> Option<warden_audit::AuditWriter> {
    let AuditStart { config, early } = audit;
    let w = match warden_audit::AuditWriter::open(
        &config.store,
        warden_audit::WriterConfig {
            retention: config.retention,
            ..Default::default()
        },
    ) {
        Ok(w) => w,
        Err(e) => {
            // The terminal may be in raw mode: lines of their own.
            eprint!(
                "\r\nwarden: warning: audit store {}: {e}; this session is recorded only in its JSON-lines log\r\n",
                config.store.display()
            );
            return None;
        }
    };
    if let Err(e) = w.session_start(config.info) {
        eprint!("\r\nwarden: warning: audit store: {e}\r\n");
    }
    early.attach(AuditSink {
        w: w.clone(),
        session: session.to_string(),
    });
    Some(w)
}

/// The session's risk outcome, for the exit code and the summary.
pub struct RiskOutcome {
    /// The risk monitor or a human killed the session.
    pub killed: bool,
}

/// Whether the risk monitor or a human killed the session (final once the agent is gone).
pub fn killed(slot: &Slot) -> bool {
    slot.lock()
        .ok()
        .and_then(|g| g.as_ref().map(|r| r.monitor.status().killed))
        .unwrap_or(false)
}

/// Stops the monitor, closes the session in the audit store and prints the summary (unless
/// quiet). `code` is the agent's exit status.
pub fn finish(
    slot: &Slot,
    quiet: bool,
    session: &str,
    code: Option<i32>,
    ui: Ui,
) -> Option<RiskOutcome> {
    let r = slot.lock().ok()?.take()?;
    // Requests still waiting are denied (the agent is gone or going).
    r.approvals.close();
    r.monitor.stop();
    drop(r.control);
    let st = r.monitor.status();
    warden_event::timing::mark("finish: monitor stopped");
    let writer = r.audit.and_then(|t| t.join().ok().flatten());
    warden_event::timing::mark("finish: audit thread joined");
    warden_event::sinks::clear();
    if let Some(w) = &writer {
        let _ = w.session_end(warden_audit::SessionEnd {
            id: session.to_string(),
            end_ms: warden_audit::time::now_ms(),
            exit_status: code.map(i64::from),
            reason: if st.killed {
                format!(
                    "killed by warden ({})",
                    st.last_action.clone().unwrap_or_default()
                )
            } else {
                "exited".into()
            },
        });
        warden_event::timing::mark("finish: session_end written");
        let (summary, closed) = w.close_with_summary((!quiet).then_some(session));
        warden_event::timing::mark("finish: audit closed");
        match closed {
            Ok(head) if !quiet => {
                if let Some(Ok(summary)) = summary {
                    eprintln!("{}", warden_event::text::printable_lines(&summary));
                }
                eprintln!(
                    "warden: audit head {head} (`warden log {session}` shows the session; `warden audit verify` checks the chain)"
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("warden: warning: audit store: {e}"),
        }
    }
    if !quiet && (st.score >= 1.0 || st.killed || st.last_action.is_some()) {
        let mut line = format!("warden: risk score {:.0}", st.score);
        if let Some(a) = &st.last_action {
            line.push_str(&format!("; {a}"));
        }
        if let Some((c, _)) = st.top.first() {
            line.push_str(&format!("; weighed most: {}", c.reason));
        }
        ui.warn_line(&line);
    }
    Some(RiskOutcome { killed: st.killed })
}

/// Warden's key sequence on the `warden run` terminal (Ctrl-] then a key): the supervisor
/// reads it before the agent's pty could, so the agent can neither see nor type it.
pub fn escape_handler(slot: Slot, ui: Ui) -> warden_sandbox::pty::EscapeHandler {
    Box::new(move |key: u8| {
        let say = |m: &str| ui.alert(m);
        if key == 0 {
            say("warden: Ctrl-] then f freeze · t thaw · k kill · s status · a allow once · A allow for the session · d deny (a/A answer the one waiting approval request; d denies the oldest) · Ctrl-] sends Ctrl-]");
            return;
        }
        let running = match slot.lock() {
            Ok(g) => g.as_ref().map(|r| (r.monitor.clone(), r.approvals.clone())),
            Err(_) => None,
        };
        let Some((m, approvals)) = running else {
            say("warden: the session's monitor is not running");
            return;
        };
        if let Some(ans) = match key {
            b'a' => Some(Answer::AllowOnce),
            b'A' => Some(Answer::AllowSession),
            b'd' | b'D' => Some(Answer::Deny),
            _ => None,
        } {
            let by = "the user at the warden run terminal (Ctrl-])";
            let waiting = approvals.list();
            let Some(p) = waiting.first().cloned() else {
                say("warden: no approval request is waiting");
                return;
            };
            // A key names no request: with several waiting, the prompt on screen may not be
            // the one a key would answer (the agent can scroll the oldest away and ask again
            // harmlessly). A deny of the oldest is harmless; an allow takes an id.
            if waiting.len() > 1 && ans != Answer::Deny {
                for w in &waiting {
                    say(&prompt_line(w));
                }
                say(&format!(
                    "warden: {} requests are waiting, so Ctrl-] a/A allows none of them: answer one by its id with `warden approve ID --allow-once` from another terminal (Ctrl-] d denies the oldest)",
                    waiting.len()
                ));
                return;
            }
            match approvals.answer(p.id, ans, by) {
                Ok(p) => say(&format!(
                    "warden: request {} answered {}: {}",
                    p.id,
                    ans.as_str(),
                    p.description
                )),
                Err(e) => say(&format!("warden: {e}")),
            }
            if let Some(next) = approvals.list().into_iter().next() {
                say(&prompt_line(&next));
            }
            return;
        }
        let by = "the user at the warden run terminal (Ctrl-])";
        let res = match key {
            b'f' | b'F' => m
                .freeze(by)
                .map(|_| "frozen: Ctrl-] t thaws, Ctrl-] k kills".to_string())
                .map_err(|e| e.to_string()),
            b't' | b'T' => m
                .thaw(by)
                .map(|_| "thawed".to_string())
                .map_err(|e| e.to_string()),
            b'k' | b'K' => m
                .kill(by)
                .map(|_| "killed".to_string())
                .map_err(|e| e.to_string()),
            b's' | b'S' => {
                let st = m.status();
                Ok(format!(
                    "risk score {:.0}{}{}; {} decisions; top: {}",
                    st.score,
                    if st.frozen { ", FROZEN" } else { "" },
                    if st.killed { ", KILLED" } else { "" },
                    st.decisions,
                    st.top
                        .first()
                        .map(|(c, _)| c.reason.clone())
                        .unwrap_or_else(|| "-".into())
                ))
            }
            _ => Err(
                "unknown key (f freeze, t thaw, k kill, s status, a/A/d answer an approval)"
                    .to_string(),
            ),
        };
        match res {
            Ok(msg) => say(&format!("warden: {msg}")),
            Err(e) => say(&format!("warden: {e}")),
        }
    })
}

/// The line that shows a pending approval on the `warden run` terminal.
fn prompt_line(p: &Pending) -> String {
    let left = p
        .deadline_ms
        .saturating_sub(warden_audit::time::now_ms() as u128)
        / 1000;
    // The description is already free of control characters; keep the line bounded (the
    // full request, argv included, is in `warden approve --json`).
    let mut desc: String = p.description.chars().take(600).collect();
    if desc.len() < p.description.len() {
        desc.push_str("… (full request: warden approve --json)");
    }
    format!(
        "warden: APPROVAL {} waiting: {} (rule {}). Ctrl-] a allow once · Ctrl-] A allow for this session · Ctrl-] d deny · or `warden approve {} --allow-once` from another terminal · denied in {left} s without an answer",
        p.id, desc, p.rule, p.id
    )
}

/// Shows each new approval request on the supervisor's own stderr (the user's terminal,
/// outside the agent's pty: the agent cannot draw over it or answer it).
///
/// Also a desktop notification when `notify-send` is on PATH and a display or session bus
/// is set (off in headless runs), at most one every 2 s. It runs outside the sandbox as
/// the user, with the request as plain arguments (no shell).
pub fn approval_prompt(session: &str, ui: Ui) -> Box<dyn Fn(&Pending) + Send + Sync> {
    let session = session.to_string();
    let desktop = ["DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    let notify_send = desktop
        .then(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("notify-send"))
                    .find(|p| p.is_file())
            })
        })
        .flatten();
    let last: Mutex<Option<std::time::Instant>> = Mutex::new(None);
    Box::new(move |p| {
        ui.alert(&prompt_line(p));
        let Some(bin) = &notify_send else { return };
        if let Ok(mut l) = last.lock() {
            if l.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(2)) {
                return;
            }
            *l = Some(std::time::Instant::now());
        }
        let body = format!(
            "{} (session {session}). Answer: warden approve {} --allow-once | --deny, or Ctrl-] a / d on the warden run terminal.",
            p.description, p.id
        );
        if let Ok(mut c) = std::process::Command::new(bin)
            .args(["-a", "warden", "warden: approval needed"])
            .arg(body)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            std::thread::spawn(move || {
                let _ = c.wait();
            });
        }
    })
}
