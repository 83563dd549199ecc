//! The CLI side of the supervised session: starting the risk monitor and control socket once
//! the sandbox is launched (`warden run`), the end-of-session risk line, and
//! `warden freeze|thaw|kill|status` and `warden approve` (clients of the control socket), the
//! approval prompt on the `warden run` terminal (Ctrl-] a/A/d) and the proxy's approval
//! channel. The mechanisms live in warden-session.

use super::{fail, home_dir, misc};
use crate::cli::SessionArg;
use crate::exit;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warden_risk::RiskConfig;
use warden_sandbox::freezer::Freezer;
use warden_session::{control, Answer, Approvals, ControlServer, Monitor, Op, Subject};

/// The monitor, control socket and audit writer of the running session.
pub struct Running {
    pub monitor: Arc<Monitor>,
    pub approvals: Arc<Approvals>,
    pub control: Option<ControlServer>,
    pub audit: Option<warden_audit::AuditWriter>,
    pub audit_store: PathBuf,
}

/// Decisions emitted before the session's threads may start (the supervisor is single-
/// threaded until the sandbox is forked): held in memory, handed to the audit store once it
/// runs. Bounded.
#[derive(Default)]
pub struct Early(Mutex<Vec<warden_event::Decision>>);

impl warden_event::Sink for Early {
    fn decision(&self, d: &warden_event::Decision) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() < 4096 {
                v.push(d.clone());
            }
        }
    }
}

/// The audit store as a decision sink: warden's own decisions are rows; reports relayed from
/// inside the sandbox (`reported_by`) are stored as the agent's claims.
struct AuditSink {
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
    pub store: PathBuf,
    pub retention: warden_audit::Retention,
    pub info: warden_audit::SessionInfo,
    pub early: Arc<Early>,
}

pub type Slot = Arc<Mutex<Option<Running>>>;
pub type OnLaunch = Box<dyn FnOnce(i32)>;

impl Running {
    pub fn slot() -> Slot {
        Arc::new(Mutex::new(None))
    }
}

/// What `warden run` calls once the sandbox exists (its stage1 pid), with threads allowed.
#[allow(clippy::too_many_arguments)] // each is one piece of the session the CLI built
pub fn on_launch(
    cfg: RiskConfig,
    freeze_timeout: Option<std::time::Duration>,
    state: &Path,
    session: &str,
    leaf: Option<PathBuf>,
    slot: Slot,
    audit: AuditStart,
    approvals: Arc<Approvals>,
) -> OnLaunch {
    let state = state.to_path_buf();
    let session = session.to_string();
    Box::new(move |stage1: i32| {
        approvals.on_request(prompt(&session));
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
        let control = match ControlServer::start(
            &state,
            &session,
            monitor.clone(),
            leaf.clone(),
            Some(approvals.clone()),
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warden: warning: no control socket for this session ({e}); `warden freeze` cannot reach it");
                None
            }
        };
        // The audit store: every decision of the session from here on (and the early ones).
        let writer = match warden_audit::AuditWriter::open(
            &audit.store,
            warden_audit::WriterConfig {
                retention: audit.retention,
                ..Default::default()
            },
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!(
                    "warden: warning: audit store {}: {e}; this session is recorded only in its JSON-lines log",
                    audit.store.display()
                );
                None
            }
        };
        if let Some(w) = &writer {
            if let Err(e) = w.session_start(audit.info) {
                eprintln!("warden: warning: audit store: {e}");
            }
            let early = audit.early.0.lock().map(|mut v| std::mem::take(&mut *v));
            for d in early.unwrap_or_default() {
                w.record(d);
            }
            warden_event::sinks::clear();
            warden_event::sinks::add(monitor.clone());
            warden_event::sinks::add(Arc::new(AuditSink {
                w: w.clone(),
                session: session.clone(),
            }));
        }
        if let Ok(mut g) = slot.lock() {
            *g = Some(Running {
                monitor,
                approvals,
                control,
                audit: writer,
                audit_store: audit.store,
            });
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

/// Stops the monitor, closes the session in the audit store and prints the summary (unless
/// quiet). `code` is the agent's exit status.
pub fn finish(slot: &Slot, quiet: bool, session: &str, code: Option<i32>) -> Option<Outcome> {
    let r = slot.lock().ok()?.take()?;
    // Requests still waiting are denied (the agent is gone or going).
    r.approvals.close();
    r.monitor.stop();
    drop(r.control);
    let st = r.monitor.status();
    warden_event::sinks::clear();
    if let Some(w) = &r.audit {
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
        match w.close() {
            Ok(head) if !quiet => {
                if let Ok(summary) = warden_audit::AuditStore::open_read_only(&r.audit_store)
                    .and_then(|s| s.session_summary(session))
                {
                    eprintln!("{summary}");
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

/// Warden's key sequence on the `warden run` terminal (Ctrl-] then a key): the supervisor
/// reads it before the agent's pty could, so the agent can neither see nor type it.
pub fn escape_handler(slot: Slot) -> warden_sandbox::pty::EscapeHandler {
    Box::new(move |key: u8| {
        let say = |m: &str| eprint!("\r\n{}\r\n", misc::warn_stderr(m));
        if key == 0 {
            say("warden: Ctrl-] then f freeze · t thaw · k kill · s status · a allow once · A allow for the session · d deny (the oldest approval request) · Ctrl-] sends Ctrl-]");
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
            let Some(p) = approvals.list().into_iter().next() else {
                say("warden: no approval request is waiting");
                return;
            };
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
                .map(|_| "frozen: Ctrl-] t thaws, Ctrl-] k kills".to_string()),
            b't' | b'T' => m.thaw(by).map(|_| "thawed".to_string()),
            b'k' | b'K' => m.kill(by).map(|_| "killed".to_string()),
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
fn prompt_line(p: &warden_session::Pending) -> String {
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
fn prompt(session: &str) -> Box<dyn Fn(&warden_session::Pending) + Send + Sync> {
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
        eprint!("\r\n{}\r\n", misc::warn_stderr(&prompt_line(p)));
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

/// `[network] ask` hosts through the session's approval registry (the proxy's side).
pub struct ProxyApprover(pub Arc<Approvals>);

impl warden_proxy::server::Approver for ProxyApprover {
    fn ask(
        &self,
        host: &str,
        port: u16,
        addrs: &[std::net::SocketAddr],
        rule: &str,
        method: &str,
    ) -> Result<String, String> {
        let subject = Subject::Network {
            host: host.to_string(),
            port,
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        };
        match self.0.request(subject, rule, &format!("agent ({method})")) {
            warden_session::Outcome::Allowed { answer, by } => {
                Ok(format!("{} by {by}", answer.as_str()))
            }
            warden_session::Outcome::Denied { reason, .. } => Err(reason),
        }
    }
}

/// Exec asks (unknown content in allowlist mode) through the session's approval registry.
pub struct ExecApprover(pub Arc<Approvals>);

impl warden_execguard::unotify::ExecApprover for ExecApprover {
    fn ask(
        &self,
        argv: &[String],
        path: &str,
        sha256: &str,
        pid: u32,
    ) -> Result<warden_execguard::unotify::Grant, String> {
        let subject = Subject::Exec {
            argv: argv.to_vec(),
            path: path.to_string(),
            sha256: sha256.to_string(),
        };
        match self
            .0
            .request(subject, "exec.ask_unknown", &format!("pid {pid}"))
        {
            warden_session::Outcome::Allowed {
                answer: Answer::AllowSession,
                ..
            } => Ok(warden_execguard::unotify::Grant::Session),
            warden_session::Outcome::Allowed { .. } => Ok(warden_execguard::unotify::Grant::Once),
            warden_session::Outcome::Denied { reason, .. } => Err(reason),
        }
    }
}

/// `warden approve`: list pending requests, or answer one.
pub fn approve(a: crate::cli::ApproveArgs) -> anyhow::Result<i32> {
    let state = super::run::state_dir(&home_dir());
    let answer = if a.allow_once {
        Some(Answer::AllowOnce)
    } else if a.allow_session {
        Some(Answer::AllowSession)
    } else if a.deny {
        Some(Answer::Deny)
    } else {
        None
    };
    let Some(ans) = answer else {
        // List: one session, or every running one.
        let ids = match a.target.as_deref().or(a.session.as_deref()) {
            Some(s) => vec![control::find(&state, s).map_err(|e| fail(exit::USAGE, e))?],
            None => running_ids(&state),
        };
        let mut all = Vec::new();
        for id in ids {
            match control::request(&state, &id, Op::Pending) {
                Ok(r) if r.ok => all.extend(r.pending.into_iter().map(|p| (id.clone(), p))),
                Ok(r) => eprintln!("warden: session {id}: {}", r.message),
                Err(e) => eprintln!("warden: {e}"),
            }
        }
        if a.json {
            let v: Vec<serde_json::Value> = all
                .iter()
                .map(|(id, p)| {
                    let mut v = serde_json::to_value(p).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("session".into(), id.clone().into());
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else if all.is_empty() {
            println!("no approval request is waiting");
        } else {
            let now = warden_audit::time::now_ms() as u128;
            for (id, p) in &all {
                println!(
                    "{:>4}  session {id}  {}  (rule {}; asked by {}; denied in {} s)",
                    p.id,
                    p.description,
                    p.rule,
                    p.who,
                    p.deadline_ms.saturating_sub(now) / 1000
                );
            }
            println!("answer: warden approve ID --allow-once | --allow-session | --deny [--session SESSION]");
        }
        return Ok(exit::OK);
    };
    let Some(target) = a.target.as_deref() else {
        return Err(fail(
            exit::USAGE,
            "name the request: warden approve ID --allow-once|--allow-session|--deny (warden approve lists them)",
        ));
    };
    let req_id: u64 = target.parse().map_err(|_| {
        fail(
            exit::USAGE,
            format!("`{target}` is not a request id (a number from `warden approve`)"),
        )
    })?;
    // The session: named, or the one running session with a request of that id.
    let session = match a.session.as_deref() {
        Some(s) => control::find(&state, s).map_err(|e| fail(exit::USAGE, e))?,
        None => {
            let with: Vec<String> = running_ids(&state)
                .into_iter()
                .filter(|id| {
                    control::request(&state, id, Op::Pending)
                        .map(|r| r.pending.iter().any(|p| p.id == req_id))
                        .unwrap_or(false)
                })
                .collect();
            match with.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(fail(
                        exit::USAGE,
                        format!("no running session has a pending request {req_id} (`warden approve` lists them)"),
                    ))
                }
                many => {
                    return Err(fail(
                        exit::USAGE,
                        format!(
                            "request {req_id} is pending in several sessions ({}); add --session SESSION",
                            many.join(", ")
                        ),
                    ))
                }
            }
        }
    };
    let r = control::send(
        &state,
        &session,
        &control::Request {
            op: Op::Answer,
            id: Some(req_id),
            answer: Some(ans),
        },
    )
    .map_err(|e| fail(exit::INTERNAL, e))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!("session {session}: {}", r.message);
    }
    Ok(if r.ok { exit::OK } else { exit::DENIED })
}

/// A running session's pending approval requests (none when it cannot be asked).
fn pending_of(state: &Path, id: &str) -> Vec<warden_session::Pending> {
    control::request(state, id, Op::Pending)
        .map(|r| r.pending)
        .unwrap_or_default()
}

fn running_ids(state: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(control::socket_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".sock"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Running sessions (their control sockets) and their live status.
fn snapshot(state: &Path) -> Vec<(String, Result<warden_session::Status, String>)> {
    let mut ids: Vec<String> = std::fs::read_dir(control::socket_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".sock"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let st = control::request(state, &id, Op::Status)
                .map_err(|e| e.to_string())
                .and_then(|r| r.status.ok_or(r.message));
            (id, st)
        })
        .collect()
}

/// `warden top`: the running sessions, live (or one `--json` / `--once` snapshot).
pub fn top(a: crate::cli::TopArgs) -> anyhow::Result<i32> {
    let state = super::run::state_dir(&home_dir());
    if a.json {
        let v: Vec<serde_json::Value> = snapshot(&state)
            .into_iter()
            .map(|(id, st)| match st {
                Ok(s) => {
                    serde_json::json!({"session": id, "status": s, "approvals": pending_of(&state, &id)})
                }
                Err(e) => serde_json::json!({"session": id, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(exit::OK);
    }
    let live = !a.once && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last: std::collections::HashMap<String, (u64, std::time::Instant)> = Default::default();
    loop {
        let snap = snapshot(&state);
        let mut out = String::new();
        if live {
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&format!(
            "warden top — {} running session(s); Ctrl-C quits; warden freeze|thaw|kill SESSION\n\n",
            snap.len()
        ));
        out.push_str(&format!(
            "{:<20} {:>6} {:<8} {:>9} {:>8}  {}\n",
            "SESSION", "SCORE", "STATE", "DECISIONS", "PER SEC", "WEIGHS MOST"
        ));
        for (id, st) in &snap {
            match st {
                Ok(s) => {
                    let now = std::time::Instant::now();
                    let rate = last
                        .get(id)
                        .map(|(n, t)| {
                            (s.decisions.saturating_sub(*n)) as f64
                                / now.duration_since(*t).as_secs_f64().max(0.001)
                        })
                        .unwrap_or(0.0);
                    last.insert(id.clone(), (s.decisions, now));
                    let state = if s.killed {
                        "KILLED"
                    } else if s.frozen {
                        "FROZEN"
                    } else {
                        "running"
                    };
                    let top = s
                        .top
                        .first()
                        .map(|(c, v)| format!("{v:.0} {}", c.reason))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "{:<20} {:>6.0} {:<8} {:>9} {:>8.1}  {}\n",
                        id,
                        s.score,
                        state,
                        s.decisions,
                        rate,
                        top.chars().take(80).collect::<String>()
                    ));
                }
                Err(e) => out.push_str(&format!("{id:<20} (no answer: {e})\n")),
            }
        }
        // Approval requests waiting for a human, in every session.
        let waiting: Vec<(String, warden_session::Pending)> = snap
            .iter()
            .filter(|(_, st)| st.is_ok())
            .flat_map(|(id, _)| {
                pending_of(&state, id)
                    .into_iter()
                    .map(move |p| (id.clone(), p))
            })
            .collect();
        if !waiting.is_empty() {
            out.push_str(&format!(
                "\n{} approval request(s) waiting (warden approve ID --allow-once|--allow-session|--deny --session SESSION):\n",
                waiting.len()
            ));
            for (id, p) in &waiting {
                out.push_str(&format!(
                    "{:>4}  {id}  {}\n",
                    p.id,
                    p.description.chars().take(120).collect::<String>()
                ));
            }
        }
        print!("{out}");
        if !live {
            return Ok(exit::OK);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
