//! # warden-event
//!
//! Owns the single event type for enforcement decisions ([`Decision`]) that every layer
//! (sandbox, exec guard, gate, proxy, ...) emits, and the sink that writes those events as
//! JSON lines to the session log. Emission goes through `tracing` (target
//! [`DECISION_TARGET`]); [`SessionLog`] is a `tracing_subscriber` layer that picks those events
//! out and appends them, one JSON object per line, to a file the sandbox cannot write.
//!
//! Decisions made inside the sandbox (`warden hook`) reach the supervisor's log through a
//! pipe as bounded frames ([`SessionLog::framed_pipe`] writes them, [`relay`] reads them with
//! a rate limit and a per-session budget; framing is `warden-proto`'s).
//!
//! [`text::printable`] is the one escaping function for agent-derived text on a terminal.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

pub mod queue;
pub mod relay;
pub mod text;
pub mod timing;
pub mod tty;

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// `tracing` target under which decisions are emitted.
pub const DECISION_TARGET: &str = "warden::decision";

/// Which enforcement layer made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Policy,
    Sandbox,
    Exec,
    Gate,
    Proxy,
    Risk,
    Approval,
}

/// The outcome of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
    Ask,
    /// Audit mode: the action was allowed but would have been denied in enforce mode.
    AuditDeny,
    /// Informational record (a post-tool event, a session start), no verdict taken.
    Observe,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Ask => "ask",
            Verdict::AuditDeny => "audit_deny",
            Verdict::Observe => "observe",
        }
    }
}

/// One enforcement decision. Every layer emits exactly this shape; layer-specific details go
/// in `extra` (hash, latency, host, bytes, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix time in milliseconds.
    pub ts_ms: u128,
    /// Session id (warden run session or agent session id).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub session: String,
    /// Who acted: a pid and program, an agent name, a tool-use id.
    pub who: String,
    /// What was attempted: a path, a command, a host.
    pub what: String,
    pub layer: Layer,
    /// The rule that decided, in the form `section.key` or `builtin:name`.
    pub rule: String,
    pub verdict: Verdict,
    /// A sentence a human (or the model) can read.
    pub reason: String,
    /// Layer-specific fields.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Decision {
    pub fn new(
        layer: Layer,
        who: impl Into<String>,
        what: impl Into<String>,
        rule: impl Into<String>,
        verdict: Verdict,
        reason: impl Into<String>,
    ) -> Self {
        Decision {
            ts_ms: now_ms(),
            session: std::env::var("WARDEN_SESSION_ID").unwrap_or_default(),
            who: who.into(),
            what: what.into(),
            layer,
            rule: rule.into(),
            verdict,
            reason: reason.into(),
            extra: serde_json::Map::new(),
        }
    }

    /// Adds a layer-specific field.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// Emits the decision: to every registered [`Sink`] (typed, in this thread), then through
    /// `tracing`, where a [`SessionLog`] layer writes it out.
    pub fn emit(&self) {
        sinks::deliver(self);
        let json = self.to_json();
        tracing::event!(
            target: DECISION_TARGET,
            tracing::Level::INFO,
            decision = %json,
            layer = ?self.layer,
            verdict = self.verdict.as_str(),
            "{}: {} {} ({})", self.verdict.as_str(), self.what, self.rule, self.reason
        );
    }
}

/// Typed consumers of every decision this process emits (the session's risk monitor, the
/// audit store). A sink must return quickly: it runs on the emitting thread, which may be an
/// enforcement path (the exec guard's supervisor), so it hands work off instead of doing it.
pub trait Sink: Send + Sync {
    fn decision(&self, d: &Decision);
}

pub mod sinks {
    //! The process-wide list of [`Sink`]s.
    use super::{Decision, Sink};
    use std::sync::{Arc, RwLock};

    static SINKS: RwLock<Vec<Arc<dyn Sink>>> = RwLock::new(Vec::new());

    /// Registers a sink for every decision emitted from now on.
    pub fn add(s: Arc<dyn Sink>) {
        if let Ok(mut v) = SINKS.write() {
            v.push(s);
        }
    }

    /// Removes every sink (the session ended).
    pub fn clear() {
        if let Ok(mut v) = SINKS.write() {
            v.clear();
        }
    }

    pub(crate) fn deliver(d: &Decision) {
        if let Ok(v) = SINKS.read() {
            for s in v.iter() {
                s.decision(d);
            }
        }
    }
}

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Appends decision events as JSON lines. The file is opened `O_APPEND`, mode 0600.
pub struct SessionLog {
    file: Mutex<File>,
    path: PathBuf,
    /// Writes `warden-proto` frames (the hook pipe) instead of JSON lines.
    framed: bool,
}

impl SessionLog {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(SessionLog {
            file: Mutex::new(file),
            path: path.to_path_buf(),
            framed: false,
        })
    }

    /// A log on an already open file (the hook-event pipe inherited inside `warden run`).
    pub fn from_file(file: std::fs::File, label: &Path) -> Self {
        SessionLog {
            file: Mutex::new(file),
            path: label.to_path_buf(),
            framed: false,
        }
    }

    /// A log on the hook-event pipe of `warden run`: each decision is one frame of at most
    /// [`relay::MAX_FRAME`] bytes, written with one `write` (atomic on a pipe, so concurrent
    /// hooks never interleave); longer decisions are shortened to fit.
    pub fn framed_pipe(file: std::fs::File, label: &Path) -> Self {
        SessionLog {
            file: Mutex::new(file),
            path: label.to_path_buf(),
            framed: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one decision directly (used where no subscriber is installed).
    pub fn write(&self, d: &Decision) -> std::io::Result<()> {
        self.write_line(&d.to_json())
    }

    fn write_line(&self, line: &str) -> std::io::Result<()> {
        if self.framed {
            let payload = relay::fit(line);
            let frame = warden_proto::frame::encode(
                warden_proto::frame::KIND_JSON,
                payload.as_bytes(),
                relay::MAX_FRAME,
            )
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            return f.write_all(&frame);
        }
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        f.write_all(&buf)
    }
}

struct JsonField(Option<String>);

impl tracing::field::Visit for JsonField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "decision" {
            self.0 = Some(format!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "decision" {
            self.0 = Some(value.to_string());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SessionLog {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != DECISION_TARGET {
            return;
        }
        let mut v = JsonField(None);
        event.record(&mut v);
        if let Some(line) = v.0 {
            if let Err(e) = self.write_line(&line) {
                eprintln!(
                    "warden: cannot write session log {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

/// A layer that receives every event, e.g. the audit store's
/// (`warden_audit::AuditWriter::tracing_layer`), for [`init_tracing_with`].
pub type ExtraLayer =
    Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static>;

/// Installs the global subscriber: human-readable diagnostics on stderr filtered by
/// `WARDEN_LOG` (default `warn`), plus the optional session log for decisions.
pub fn init_tracing(session_log: Option<SessionLog>, verbose: u8) {
    init_tracing_with(session_log, None, verbose)
}

/// [`init_tracing`] plus one more layer that sees every decision (the audit store).
pub fn init_tracing_with(session_log: Option<SessionLog>, extra: Option<ExtraLayer>, verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    // `WARDEN_LOG`: a level, or targets with levels (`warden_proxy=debug,info`). A target
    // filter, not `EnvFilter`: that one's span and field matching brought a regular
    // expression engine and its Unicode tables into every process, ~4,000 of the binary's
    // 24,000 load-time relocations, paid by each hook call.
    let filter = std::env::var("WARDEN_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(default));
    // Colour on a terminal only (never into pipes or files), and never with NO_COLOR.
    let ansi =
        crate::tty::is_terminal(2) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_filter(filter);
    let _ = tracing_subscriber::registry()
        .with(extra)
        .with(stderr)
        .with(session_log)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_roundtrips_and_lands_in_session_log() {
        let dir = std::env::temp_dir().join(format!("warden-event-test-{}", std::process::id()));
        let path = dir.join("s.jsonl");
        let log = SessionLog::open(&path).unwrap();
        let d = Decision::new(
            Layer::Exec,
            "pid 1 (sh)",
            "/usr/bin/curl",
            "exec.deny",
            Verdict::Deny,
            "denied",
        )
        .with("sha256", "ab");
        use tracing_subscriber::prelude::*;
        let sub = tracing_subscriber::registry().with(log);
        tracing::subscriber::with_default(sub, || d.emit());
        let text = std::fs::read_to_string(&path).unwrap();
        let back: Decision = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back, d);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
