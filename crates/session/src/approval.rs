//! Pending approvals: actions the policy marks `ask` wait here for a human's answer.
//!
//! - A layer (the proxy for `[network] ask`, the seccomp exec guard for unknown content
//!   with `exec.ask_unknown`, the gate's asks with `[approvals] gate = "warden"` through the
//!   hook socket ([`gate_asker`]); the seccomp supervisor for a write to a `[files]
//!   ask_write` file ([`WriteApprover`], [`write_asks`]); the session's end for held
//!   agent-state changes with `[approvals] held = "ask"` ([`ask_held`])) calls
//!   [`Approvals::request`] with the exact [`Subject`] and blocks. The request
//!   gets an id, is listed by `warden approve` (through the control socket, which the
//!   agent cannot reach) and shown on the `warden run` terminal outside the agent's pty.
//! - The answer is [`Answer::AllowOnce`] (this one action), [`Answer::AllowSession`]
//!   (every later action with the *same* subject key in this session) or [`Answer::Deny`].
//!   Nothing is ever approved automatically: no answer before the deadline
//!   (`[approvals] timeout_secs`, default 120 s) is a deny, and so is a session that ends
//!   or a registry that is full.
//! - An approval is bound to exactly its subject: host and port for a connection (the
//!   resolved addresses are shown, and the proxy connects only to the addresses it
//!   showed), the SHA-256 of the content for an exec, the path and content hash for a
//!   write. An allow-session for host A never admits host B; for hash A never hash B.
//! - Every request and every answer is an audited [`Decision`] (layer `approval`, rule
//!   `approval`) naming who answered: `uid U (pid P) via the control socket`, `the user at
//!   the warden run terminal`, or `timeout`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use warden_event::{Decision, Layer, Verdict};

/// Requests waiting at once; past this a new request is denied at once (the agent cannot
/// grow the supervisor's memory or the human's list without bound).
pub const MAX_PENDING: usize = 64;
/// The longest listing of held changes asked about at once (bytes).
pub const MAX_HELD_SHOWN: usize = 64 * 1024;
/// The longest argv (bytes, all arguments) kept in an exec subject.
pub const MAX_ARGV_BYTES: usize = 16 * 1024;

/// What kind of action waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Network,
    Exec,
    Write,
    Gate,
    Held,
}

/// Exactly what would be allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A connection through warden's proxy: the host as asked, the port, and the addresses
    /// the proxy resolved (and will connect to, without resolving again).
    Network {
        host: String,
        port: u16,
        addrs: Vec<String>,
    },
    /// An exec: the full command line, the program's path and the SHA-256 of its content.
    Exec {
        argv: Vec<String>,
        path: String,
        sha256: String,
    },
    /// A write to a protected file (`[files] ask_write`): the path, the file's identity
    /// (device and inode, as warden opened it beneath its root) and the SHA-256 of its
    /// *current* content. The grant is one open for write of exactly that file with exactly
    /// that content; what the agent then writes is not known when the human answers.
    Write {
        path: String,
        sha256: String,
        #[serde(default)]
        dev: u64,
        #[serde(default)]
        ino: u64,
        #[serde(default)]
        size: u64,
        #[serde(default)]
        access: String,
    },
    /// A gate `ask`: the tool and what it would do (shown cut to a bound), and the SHA-256
    /// of the whole tool and description as the hook sent them, which the approval is bound
    /// to: two calls that differ only past what is shown are different subjects.
    Gate {
        tool: String,
        what: String,
        sha256: String,
    },
    /// Changes to executable agent state held at the session's end (warden-agentstate),
    /// one line per change (secret-looking values redacted), and the SHA-256 of the whole
    /// held record: what is applied on allow is exactly that record.
    Held {
        session: String,
        changes: Vec<String>,
        sha256: String,
    },
}

impl Subject {
    pub fn kind(&self) -> Kind {
        match self {
            Subject::Network { .. } => Kind::Network,
            Subject::Exec { .. } => Kind::Exec,
            Subject::Write { .. } => Kind::Write,
            Subject::Gate { .. } => Kind::Gate,
            Subject::Held { .. } => Kind::Held,
        }
    }

    /// What an approval is bound to: two subjects with the same key are the same action.
    /// (The addresses of a connection are shown, not bound: the proxy connects only to
    /// the addresses of the request the human saw, and every address is checked again.)
    pub fn key(&self) -> String {
        match self {
            Subject::Network { host, port, .. } => {
                format!(
                    "network {}:{port}",
                    host.trim_end_matches('.').to_ascii_lowercase()
                )
            }
            Subject::Exec { sha256, .. } => format!("exec sha256:{}", sha256.to_ascii_lowercase()),
            Subject::Write {
                path,
                sha256,
                dev,
                ino,
                ..
            } => {
                format!(
                    "write {path} inode {dev}:{ino} sha256:{}",
                    sha256.to_ascii_lowercase()
                )
            }
            Subject::Gate { tool, sha256, .. } => format!("gate {tool} sha256:{sha256}"),
            Subject::Held {
                session, sha256, ..
            } => format!("held {session} sha256:{sha256}"),
        }
    }

    /// One line for a human. Every control character (escape sequences, newlines, carriage
    /// returns an agent could put in an argv or path to draw over the prompt on the user's
    /// terminal) is shown as `\xNN`, never sent raw.
    pub fn describe(&self) -> String {
        printable(&self.describe_raw())
    }

    fn describe_raw(&self) -> String {
        match self {
            Subject::Network { host, port, addrs } => {
                let a = if addrs.is_empty() {
                    String::new()
                } else {
                    format!(" (resolved: {})", addrs.join(", "))
                };
                format!("connect to {host}:{port}{a}")
            }
            Subject::Exec { argv, path, sha256 } => {
                format!("exec {} [{path}, sha256 {sha256}]", shell_words(argv))
            }
            Subject::Write {
                path,
                sha256,
                dev,
                ino,
                size,
                access,
            } => format!(
                "open protected file {path} for write ({access}); now {size} bytes, content sha256 {sha256}, inode {dev}:{ino}"
            ),
            Subject::Gate { tool, what, .. } => format!("{tool}: {what}"),
            Subject::Held {
                session,
                changes,
                sha256,
            } => format!(
                "apply {} held change(s) to executable agent state of session {session} (record sha256 {sha256}): {}",
                changes.len(),
                changes.join("; ")
            ),
        }
    }

    /// Bounds what an agent-supplied subject may hold.
    fn bounded(mut self) -> Subject {
        if let Subject::Exec { argv, .. } = &mut self {
            let mut total = 0;
            let mut keep = Vec::new();
            for a in argv.iter() {
                total += a.len() + 1;
                if total > MAX_ARGV_BYTES {
                    keep.push(format!("… ({} more arguments)", argv.len() - keep.len()));
                    break;
                }
                keep.push(a.clone());
            }
            *argv = keep;
        }
        self
    }
}

/// `s` with control and invisible format characters escaped (warden-event's one function).
pub use warden_event::text::printable;

fn shell_words(argv: &[String]) -> String {
    warden_sys::shell::join(argv)
}

/// A human's answer (a wire type: the control socket carries it).
pub use warden_proto::msg::control::Answer;

/// A request as `warden approve` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub id: u64,
    pub kind: Kind,
    pub subject: Subject,
    /// The policy rule that asked (`network.ask:*.example.com`).
    pub rule: String,
    /// Who asked (the agent, a pid).
    pub who: String,
    pub description: String,
    /// Unix ms when it was asked, and when it is denied if nobody answers.
    pub asked_ms: u128,
    pub deadline_ms: u128,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed: by which answer and by whom (`session` is true for an earlier
    /// allow-session answer reused).
    Allowed { answer: Answer, by: String },
    /// Denied, by whom or why (`timeout`, `session ended`, ...).
    Denied { by: String, reason: String },
}

impl Outcome {
    pub fn allowed(&self) -> bool {
        matches!(self, Outcome::Allowed { .. })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("no pending request {0} (answered already, timed out, or never asked; `warden approve` lists them)")]
    NotFound(u64),
}

struct Entry {
    req: Pending,
    key: String,
    answer: Option<(Answer, String)>,
}

#[derive(Default)]
struct State {
    next: u64,
    pending: BTreeMap<u64, Entry>,
    /// Subject keys a human allowed for the rest of the session.
    session: Vec<String>,
    closed: bool,
}

type Notify = Box<dyn Fn(&Pending) + Send + Sync>;

/// The session's pending-approval registry.
pub struct Approvals {
    state: Mutex<State>,
    cv: Condvar,
    timeout: Duration,
    notify: Mutex<Vec<Notify>>,
    /// The user's request-id counter (see [`Approvals::with_id_file`]).
    id_file: Option<std::path::PathBuf>,
}

/// Takes the next id from the user's counter file (created on first use, mode 0600).
fn bump_counter(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.lock()?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    let id = text
        .trim()
        .parse::<u64>()
        .unwrap_or(0)
        .saturating_add(1)
        .max(1);
    f.rewind()?;
    f.set_len(0)?;
    f.write_all(id.to_string().as_bytes())?;
    Ok(id)
}

/// A random id base in 1,000,000–1,999,999,999 (only when the counter file is unusable).
fn random_base() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now_ms());
    1_000_000 + h.finish() % 1_999_000_000
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl Approvals {
    /// `timeout`: how long a request waits before it is denied (`[approvals]`).
    pub fn new(timeout: Duration) -> Arc<Approvals> {
        Arc::new(Approvals {
            state: Mutex::new(State {
                next: 1,
                ..Default::default()
            }),
            cv: Condvar::new(),
            timeout,
            notify: Mutex::new(Vec::new()),
            id_file: None,
        })
    }

    /// A registry whose request ids come from one counter per user (a file in the state
    /// directory, outside the sandbox, under an exclusive lock), so an id names one request
    /// across all the user's sessions: `warden approve 7` can never answer another
    /// session's request 7 that took the place of the one the human read. If the counter
    /// cannot be used, ids start at a random base far above it instead.
    pub fn with_id_file(timeout: Duration, path: std::path::PathBuf) -> Arc<Approvals> {
        let mut a = Approvals::new(timeout);
        if let Some(a) = Arc::get_mut(&mut a) {
            a.id_file = Some(path);
            if let Ok(st) = a.state.get_mut() {
                st.next = random_base();
            }
        }
        a
    }

    fn next_id(&self, st: &mut State) -> u64 {
        if let Some(id) = self.id_file.as_deref().and_then(|p| bump_counter(p).ok()) {
            return id;
        }
        let id = st.next;
        st.next += 1;
        id
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Called (on the requesting thread) for each new pending request: the terminal
    /// prompt, a desktop notification. Must not block.
    pub fn on_request(&self, f: Notify) {
        if let Ok(mut v) = self.notify.lock() {
            v.push(f);
        }
    }

    /// Asks a human and blocks until an answer, the deadline or the end of the session.
    /// Fails closed: every path but a human's allow (now, or an earlier allow-session for
    /// the same subject key) is a deny.
    pub fn request(&self, subject: Subject, rule: &str, who: &str) -> Outcome {
        self.request_until(subject, rule, who, None)
    }

    /// [`Self::request`], withdrawn (denied, and taken off the list) once `gone` is set: the
    /// requester gave up (a client closed its connection), so no human answers a ghost.
    pub fn request_until(
        &self,
        subject: Subject,
        rule: &str,
        who: &str,
        gone: Option<&std::sync::atomic::AtomicBool>,
    ) -> Outcome {
        self.request_inner(subject, rule, who, gone, false)
    }

    /// A request of warden's own at the session's end, after [`Self::close`] (which denies
    /// what the agent still had waiting): held changes ([`ask_held`]). Same deadline and
    /// answers; nothing else is admitted.
    pub fn request_final(&self, subject: Subject, rule: &str, who: &str) -> Outcome {
        self.request_inner(subject, rule, who, None, true)
    }

    fn request_inner(
        &self,
        subject: Subject,
        rule: &str,
        who: &str,
        gone: Option<&std::sync::atomic::AtomicBool>,
        after_close: bool,
    ) -> Outcome {
        let subject = subject.bounded();
        let key = subject.key();
        let description = subject.describe();
        let kind = subject.kind();
        let audit = |verdict: Verdict, by: &str, reason: &str, id: Option<u64>| {
            let mut d = Decision::new(
                Layer::Approval,
                by,
                &description,
                "approval",
                verdict,
                reason,
            )
            .with("kind", serde_json::to_value(kind).unwrap_or_default())
            .with(
                "subject",
                serde_json::to_value(&subject).unwrap_or_default(),
            )
            .with("asked_by_rule", rule)
            .with("requested_by", who);
            // The request row has no answer yet.
            if verdict != Verdict::Ask {
                d = d.with("answered_by", by);
            }
            if let Some(id) = id {
                d = d.with("request", id);
            }
            d.emit();
        };
        let Ok(mut st) = self.state.lock() else {
            let reason = "the approval registry is broken (a thread panicked); denied";
            audit(Verdict::Deny, "warden", reason, None);
            return Outcome::Denied {
                by: "warden".into(),
                reason: reason.into(),
            };
        };
        if st.session.contains(&key) {
            drop(st);
            let by = "an earlier allow-session answer";
            audit(
                Verdict::Allow,
                by,
                &format!("{key} was allowed for this session by a human"),
                None,
            );
            return Outcome::Allowed {
                answer: Answer::AllowSession,
                by: by.into(),
            };
        }
        if (st.closed && !after_close) || st.pending.len() >= MAX_PENDING {
            let closed = st.closed;
            drop(st);
            let reason = if closed {
                "the session is ending; no request can be answered".to_string()
            } else {
                format!(
                    "{MAX_PENDING} requests are already waiting for a human; this one is denied"
                )
            };
            audit(Verdict::Deny, "warden", &reason, None);
            return Outcome::Denied {
                by: "warden".into(),
                reason,
            };
        }
        let id = self.next_id(&mut st);
        let asked = now_ms();
        let req = Pending {
            id,
            kind,
            subject: subject.clone(),
            // Shown on the human's terminal (the prompt, `warden approve`) like the
            // description: a gate ask's rule comes from inside the sandbox.
            rule: printable(rule),
            who: printable(who),
            description: description.clone(),
            asked_ms: asked,
            deadline_ms: asked + self.timeout.as_millis(),
        };
        st.pending.insert(
            id,
            Entry {
                req: req.clone(),
                key: key.clone(),
                answer: None,
            },
        );
        drop(st);
        audit(
            Verdict::Ask,
            who,
            &format!(
                "waiting up to {} s for a human: `warden approve {id} --allow-once|--allow-session|--deny`, or Ctrl-] a/A/d on the warden run terminal",
                self.timeout.as_secs()
            ),
            Some(id),
        );
        if let Ok(v) = self.notify.lock() {
            for f in v.iter() {
                f(&req);
            }
        }
        let deadline = Instant::now() + self.timeout;
        let Ok(mut st) = self.state.lock() else {
            return Outcome::Denied {
                by: "warden".into(),
                reason: "the approval registry is broken".into(),
            };
        };
        let out = loop {
            if let Some((ans, by)) = st.pending.get(&id).and_then(|e| e.answer.clone()) {
                st.pending.remove(&id);
                break match ans {
                    Answer::Deny => Outcome::Denied {
                        reason: format!("denied by {by}"),
                        by,
                    },
                    a => Outcome::Allowed { answer: a, by },
                };
            }
            if st.closed && !after_close {
                st.pending.remove(&id);
                break Outcome::Denied {
                    by: "warden".into(),
                    reason: "the session ended before anyone answered".into(),
                };
            }
            if gone.is_some_and(|g| g.load(std::sync::atomic::Ordering::SeqCst)) {
                st.pending.remove(&id);
                break Outcome::Denied {
                    by: "warden".into(),
                    reason: "withdrawn: the requester gave up before anyone answered".into(),
                };
            }
            let now = Instant::now();
            if now >= deadline {
                st.pending.remove(&id);
                break Outcome::Denied {
                    by: "timeout".into(),
                    reason: format!(
                        "nobody answered within {} s ([approvals] timeout_secs); a deadline is a deny",
                        self.timeout.as_secs()
                    ),
                };
            }
            // With a withdrawal flag, look at it at least every 200 ms.
            let nap = if gone.is_some() {
                (deadline - now).min(Duration::from_millis(200))
            } else {
                deadline - now
            };
            st = match self.cv.wait_timeout(st, nap) {
                Ok((g, _)) => g,
                Err(_) => {
                    return Outcome::Denied {
                        by: "warden".into(),
                        reason: "the approval registry is broken".into(),
                    }
                }
            };
        };
        drop(st);
        match &out {
            Outcome::Allowed { answer, by } => audit(
                Verdict::Allow,
                by,
                &format!("{} by {by}", answer.as_str()),
                Some(id),
            ),
            Outcome::Denied { by, reason } => audit(Verdict::Deny, by, reason, Some(id)),
        }
        out
    }

    /// Answers a pending request. `by` names who answered (for the audit row). An
    /// allow-session answer also admits the other requests waiting for the same subject.
    pub fn answer(&self, id: u64, answer: Answer, by: &str) -> Result<Pending, ApprovalError> {
        let mut st = self.state.lock().map_err(|_| ApprovalError::NotFound(id))?;
        let e = st
            .pending
            .get_mut(&id)
            .filter(|e| e.answer.is_none())
            .ok_or(ApprovalError::NotFound(id))?;
        e.answer = Some((answer, by.to_string()));
        let req = e.req.clone();
        if answer == Answer::AllowSession {
            let key = e.key.clone();
            for o in st.pending.values_mut() {
                if o.key == key && o.answer.is_none() {
                    o.answer = Some((answer, by.to_string()));
                }
            }
            if !st.session.contains(&key) {
                st.session.push(key);
            }
        }
        drop(st);
        self.cv.notify_all();
        Ok(req)
    }

    /// Requests waiting for an answer, oldest first.
    pub fn list(&self) -> Vec<Pending> {
        self.state
            .lock()
            .map(|st| {
                st.pending
                    .values()
                    .filter(|e| e.answer.is_none())
                    .map(|e| e.req.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The session ends: every waiting request is denied, and new ones are denied at once.
    pub fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.cv.notify_all();
    }
}

/// `[network] ask` hosts through the registry (the proxy's side).
pub struct ProxyApprover(pub Arc<Approvals>);

impl warden_proxy::server::Approver for ProxyApprover {
    #[allow(clippy::too_many_arguments)]
    fn ask(
        &self,
        host: &str,
        port: u16,
        addrs: &[std::net::SocketAddr],
        rule: &str,
        method: &str,
        gone: &std::sync::atomic::AtomicBool,
    ) -> Result<String, String> {
        let subject = Subject::Network {
            host: host.to_string(),
            port,
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        };
        match self
            .0
            .request_until(subject, rule, &format!("agent ({method})"), Some(gone))
        {
            Outcome::Allowed { answer, by } => Ok(format!("{} by {by}", answer.as_str())),
            Outcome::Denied { reason, .. } => Err(reason),
        }
    }
}

/// Exec asks (unknown content in allowlist mode, `exec.ask_unknown`) through the registry
/// (the seccomp exec guard's side).
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
            Outcome::Allowed {
                answer: Answer::AllowSession,
                ..
            } => Ok(warden_execguard::unotify::Grant::Session),
            Outcome::Allowed { .. } => Ok(warden_execguard::unotify::Grant::Once),
            Outcome::Denied { reason, .. } => Err(reason),
        }
    }
}

/// Writes to protected files (`[files] ask_write`) through the registry (the seccomp
/// supervisor's side, [`warden_execguard::writeask`]). Allow-once admits this one open;
/// allow-session every later open of the same file (inode) with the same content.
pub struct WriteApprover(pub Arc<Approvals>);

impl warden_execguard::writeask::WriteApprover for WriteApprover {
    fn ask(
        &self,
        req: &warden_execguard::writeask::WriteRequest,
        gone: &std::sync::atomic::AtomicBool,
    ) -> Result<String, String> {
        let subject = Subject::Write {
            path: req.path.clone(),
            sha256: req.sha256.clone(),
            dev: req.dev,
            ino: req.ino,
            size: req.size,
            access: req.access.clone(),
        };
        match self
            .0
            .request_until(subject, &req.rule, &format!("pid {}", req.pid), Some(gone))
        {
            Outcome::Allowed { answer, by } => Ok(format!("{} by {by}", answer.as_str())),
            Outcome::Denied { reason, .. } => Err(reason),
        }
    }
}

/// The `[files] ask_write` entries of a session, anchored: each must lie in a writable
/// root (`roots`, opened here with `O_PATH` before the agent runs; the sandbox binds them
/// at their host paths). Entries elsewhere are returned as notes (they stay plain
/// protected paths).
pub fn write_asks(
    entries: &[String],
    expand: &dyn Fn(&str) -> std::path::PathBuf,
    roots: &[std::path::PathBuf],
) -> (Vec<warden_execguard::writeask::AskFile>, Vec<String>) {
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let mut opened: Vec<(std::path::PathBuf, Arc<std::os::fd::OwnedFd>)> = Vec::new();
    for e in entries {
        let path = expand(e.trim_end_matches('/'));
        // The deepest root holding it.
        let Some(root) = roots
            .iter()
            .filter(|r| path.starts_with(r) && path != **r)
            .max_by_key(|r| r.components().count())
        else {
            notes.push(format!(
                "files.ask_write: {} is not inside a writable root; it stays read-only without asking",
                path.display()
            ));
            continue;
        };
        let fd = match opened.iter().find(|(r, _)| r == root) {
            Some((_, fd)) => fd.clone(),
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                match std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
                    .open(root)
                {
                    Ok(f) => {
                        let fd = Arc::new(std::os::fd::OwnedFd::from(f));
                        opened.push((root.clone(), fd.clone()));
                        fd
                    }
                    Err(err) => {
                        notes.push(format!(
                            "files.ask_write: {}: cannot open {}: {err}; it stays read-only without asking",
                            path.display(),
                            root.display()
                        ));
                        continue;
                    }
                }
            }
        };
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        files.push(warden_execguard::writeask::AskFile {
            view: path.clone(),
            root: fd,
            rel,
            rule: format!("files.ask_write:{e}"),
        });
    }
    (files, notes)
}

/// `[approvals] held = "ask"`: at the session's end, asks a human (`warden approve`,
/// `warden top`) whether to apply the changes the state filter held. Allow applies exactly
/// the record shown (its SHA-256 is checked again before `held::apply`, which refuses
/// conflicts with the host's file as `warden held apply` does); deny, the deadline or any
/// error keeps them held. Returns lines for the terminal.
pub fn ask_held(
    approvals: &Approvals,
    state: &std::path::Path,
    home: &std::path::Path,
    session: &str,
) -> Vec<String> {
    use warden_agentstate::held;
    let sha = |r: &held::HeldRecord| -> Option<String> {
        use sha2::Digest;
        let b = serde_json::to_vec(r).ok()?;
        Some(
            sha2::Sha256::digest(&b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect(),
        )
    };
    let keep = format!("they stay held: warden held apply {session}");
    let Some((rec, shown)) = held::load(state, session)
        .ok()
        .and_then(|r| sha(&r).map(|h| (r, h)))
    else {
        return vec![format!("warden: the held record cannot be read; {keep}")];
    };
    let changes: Vec<String> = rec
        .files
        .iter()
        .flat_map(|f| {
            f.changes
                .iter()
                .map(move |c| format!("~/{}: {}", f.file, held::describe(c, true)))
        })
        .collect();
    // The human must see every change: a record too large to show is not asked about.
    let size: usize = changes.iter().map(|c| c.len() + 2).sum();
    if size > MAX_HELD_SHOWN {
        return vec![format!(
            "warden: the held changes are too large to show in one request ({size} bytes); review them with `warden held show {session}`; {keep}"
        )];
    }
    let subject = Subject::Held {
        session: session.to_string(),
        changes,
        sha256: shown.clone(),
    };
    eprintln!(
        "warden: waiting up to {} s for a human to answer about the held changes (`warden approve`, `warden top`)",
        approvals.timeout().as_secs()
    );
    match approvals.request_final(subject, "approvals.held", "warden run (session end)") {
        Outcome::Denied { reason, .. } => {
            vec![format!(
                "warden: held changes not applied ({reason}); {keep}"
            )]
        }
        Outcome::Allowed { answer, by } => {
            let now = held::load(state, session).ok().and_then(|r| sha(&r));
            if now.as_deref() != Some(shown.as_str()) {
                return vec![format!(
                    "warden: the held record changed after it was shown; nothing applied; {keep}"
                )];
            }
            let applied = {
                let q = crate::session::quiet(state, std::path::Path::new(""));
                held::apply(state, home, session, false, &|p| q.busy(p))
            };
            let (verdict, reason, lines) = match applied {
                Ok(done) => (
                    Verdict::Allow,
                    format!("{} by {by}: applied {}", answer.as_str(), done.join("; ")),
                    done.iter()
                        .map(|d| format!("warden: applied {d}"))
                        .collect(),
                ),
                Err(e) => (
                    Verdict::Deny,
                    format!("allowed by {by} but not applied: {e}"),
                    vec![format!("warden: held changes not applied: {e}; {keep}")],
                ),
            };
            Decision::new(
                Layer::Approval,
                &by,
                format!("held changes of session {session} (record sha256 {shown})"),
                "approvals.held",
                verdict,
                reason,
            )
            .emit();
            lines
        }
    }
}

/// A gate `ask` sent by `warden hook` over the session's hook-report socket
/// (`[approvals] gate = "warden"`). Everything in it is the agent side's; it is bounded and
/// shown escaped.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateAskRequest {
    pub tool: String,
    pub what: String,
    pub rule: String,
    /// How long the hook can wait (its own deadline); the registry's timeout still caps it.
    pub wait_ms: u64,
}

/// The supervisor's answer to a [`GateAskRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub struct GateAskAnswer {
    pub allow: bool,
    pub by: String,
    pub reason: String,
}

/// Longest tool name / description / rule kept from a gate ask.
const GATE_FIELD_MAX: usize = 2048;

fn cut(mut s: String) -> String {
    if s.len() > GATE_FIELD_MAX {
        let mut end = GATE_FIELD_MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" …[cut]");
    }
    s
}

/// Gate asks through the registry: answers a `KIND_ASK` frame of the hook-report socket.
/// Malformed input, a hook that hangs up, its deadline and every error are denies.
pub fn gate_asker(approvals: Arc<Approvals>) -> warden_event::relay::Asker {
    Arc::new(
        move |payload: &[u8], conn: &std::os::unix::net::UnixStream| {
            let answer = |allow: bool, by: &str, reason: String| {
                serde_json::to_vec(&GateAskAnswer {
                    allow,
                    by: by.to_string(),
                    reason,
                })
                .unwrap_or_default()
            };
            let req: GateAskRequest = match serde_json::from_slice(payload) {
                Ok(r) => r,
                Err(e) => return answer(false, "warden", format!("malformed gate ask: {e}")),
            };
            let sha256 = {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(req.tool.as_bytes());
                h.update([0u8]);
                h.update(req.what.as_bytes());
                h.finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            };
            let subject = Subject::Gate {
                tool: cut(req.tool),
                what: cut(req.what),
                sha256,
            };
            let rule = cut(req.rule);
            // The hook's deadline, or the hook hanging up, withdraws the request.
            let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let deadline = Instant::now() + Duration::from_millis(req.wait_ms.min(86_400_000));
            let watcher = conn.try_clone().ok().map(|c| {
                let (gone, done) = (gone.clone(), done.clone());
                std::thread::spawn(move || {
                    use std::os::fd::AsRawFd;
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        let mut p = libc::pollfd {
                            fd: c.as_raw_fd(),
                            events: libc::POLLRDHUP,
                            revents: 0,
                        };
                        // SAFETY: poll on one valid pollfd.
                        let r = unsafe { libc::poll(&mut p, 1, 100) };
                        let hung_up = r > 0
                            && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0;
                        if hung_up || Instant::now() >= deadline {
                            gone.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                    }
                })
            });
            let outcome =
                approvals.request_until(subject, &rule, "warden hook (gate ask)", Some(&gone));
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(w) = watcher {
                let _ = w.join();
            }
            match outcome {
                Outcome::Allowed { answer: a, by } => {
                    answer(true, &by, format!("{} by {by}", a.as_str()))
                }
                Outcome::Denied { by, reason } => answer(false, &by, reason),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(host: &str) -> Subject {
        Subject::Network {
            host: host.into(),
            port: 443,
            addrs: vec!["192.0.2.1".into()],
        }
    }
    fn exec(hash: &str) -> Subject {
        Subject::Exec {
            argv: vec!["tool".into(), "--x".into()],
            path: "/tmp/tool".into(),
            sha256: hash.into(),
        }
    }

    /// Runs `request` on a thread and returns its outcome's receiver once it is pending.
    fn ask(a: &Arc<Approvals>, s: Subject) -> (u64, std::sync::mpsc::Receiver<Outcome>) {
        let before: Vec<u64> = a.list().iter().map(|p| p.id).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        let a2 = a.clone();
        std::thread::spawn(move || {
            let _ = tx.send(a2.request(s, "test.ask", "agent"));
        });
        for _ in 0..500 {
            if let Some(p) = a.list().iter().find(|p| !before.contains(&p.id)) {
                return (p.id, rx);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("request never became pending");
    }

    #[test]
    fn a_deadline_is_a_deny() {
        let a = Approvals::new(Duration::from_millis(100));
        let t = Instant::now();
        let out = a.request(net("a.test"), "r", "agent");
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(
            matches!(out, Outcome::Denied { ref by, .. } if by == "timeout"),
            "{out:?}"
        );
        assert!(a.list().is_empty());
        // A late answer finds nothing.
        assert_eq!(
            a.answer(1, Answer::AllowOnce, "u"),
            Err(ApprovalError::NotFound(1))
        );
    }

    /// Two sessions of one user never hand out the same id (a human's `warden approve 1`
    /// names one request, never another session's request 1).
    #[test]
    fn ids_are_unique_across_a_users_sessions() {
        let dir = std::env::temp_dir().join(format!("warden-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("approval-ids");
        let a = Approvals::with_id_file(Duration::from_secs(10), file.clone());
        let b = Approvals::with_id_file(Duration::from_secs(10), file.clone());
        let (ia, ra) = ask(&a, net("a.test"));
        let (ib, rb) = ask(&b, net("b.test"));
        let (ia2, ra2) = ask(&a, net("c.test"));
        assert!(ia != ib && ib != ia2 && ia != ia2, "{ia} {ib} {ia2}");
        // Session a cannot be answered with b's id, and the other way round.
        assert!(a.answer(ib, Answer::AllowOnce, "u").is_err());
        assert!(b.answer(ia, Answer::AllowOnce, "u").is_err());
        for (r, id, x) in [(&a, ia, ra), (&b, ib, rb), (&a, ia2, ra2)] {
            r.answer(id, Answer::Deny, "u").unwrap();
            assert!(!x.recv().unwrap().allowed());
        }
        // An unusable counter: ids from a random base, far from the small ones.
        let c = Approvals::with_id_file(Duration::from_secs(10), dir.join("no/such/dir/ids"));
        let (ic, rc) = ask(&c, net("d.test"));
        assert!(ic >= 1_000_000, "{ic}");
        c.answer(ic, Answer::Deny, "u").unwrap();
        assert!(!rc.recv().unwrap().allowed());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn allow_once_admits_one_request_and_the_next_asks_again() {
        let a = Approvals::new(Duration::from_secs(10));
        let (id, rx) = ask(&a, net("a.test"));
        let p = a.answer(id, Answer::AllowOnce, "uid 1").unwrap();
        assert_eq!(p.subject, net("a.test"));
        assert!(rx.recv().unwrap().allowed());
        // Answering twice is an error, not a second allow.
        assert!(a.answer(id, Answer::AllowOnce, "uid 1").is_err());
        let (id2, rx2) = ask(&a, net("a.test"));
        assert_ne!(id, id2);
        a.answer(id2, Answer::Deny, "uid 1").unwrap();
        assert!(!rx2.recv().unwrap().allowed());
    }

    #[test]
    fn allow_session_is_bound_to_its_subject() {
        let a = Approvals::new(Duration::from_millis(300));
        let (id, rx) = ask(&a, net("a.test"));
        a.answer(id, Answer::AllowSession, "terminal").unwrap();
        assert!(rx.recv().unwrap().allowed());
        // The same host and port: no question.
        assert!(a.request(net("A.TEST."), "r", "agent").allowed());
        // Another host, or another port, asks (and times out: deny).
        assert!(!a.request(net("b.test"), "r", "agent").allowed());
        let other_port = Subject::Network {
            host: "a.test".into(),
            port: 8443,
            addrs: vec![],
        };
        assert!(!a.request(other_port, "r", "agent").allowed());
        // Exec: hash A never admits hash B.
        let (id, rx) = ask(&a, exec("aa"));
        a.answer(id, Answer::AllowSession, "terminal").unwrap();
        assert!(rx.recv().unwrap().allowed());
        assert!(a.request(exec("AA"), "r", "agent").allowed());
        assert!(!a.request(exec("bb"), "r", "agent").allowed());
    }

    fn write(ino: u64, hash: &str) -> Subject {
        Subject::Write {
            path: "/w/ci/deploy.yml".into(),
            sha256: hash.into(),
            dev: 1,
            ino,
            size: 9,
            access: "O_WRONLY|O_TRUNC".into(),
        }
    }

    #[test]
    fn a_write_allow_session_is_bound_to_the_inode_and_content() {
        let a = Approvals::new(Duration::from_millis(300));
        let (id, rx) = ask(&a, write(7, "aa"));
        a.answer(id, Answer::AllowSession, "terminal").unwrap();
        assert!(rx.recv().unwrap().allowed());
        // The same file with the same content: no question (the access is shown, not bound).
        let mut again = write(7, "AA");
        if let Subject::Write { access, .. } = &mut again {
            *access = "O_RDWR".into();
        }
        assert!(a.request(again, "r", "agent").allowed());
        // Other content, or another inode at the same path: asked (and timed out: deny).
        assert!(!a.request(write(7, "bb"), "r", "agent").allowed());
        assert!(!a.request(write(8, "aa"), "r", "agent").allowed());
    }

    #[test]
    fn concurrent_waiters_are_answered_separately() {
        let a = Approvals::new(Duration::from_secs(10));
        let (i1, r1) = ask(&a, net("a.test"));
        let (i2, r2) = ask(&a, net("b.test"));
        let (i3, r3) = ask(&a, net("a.test"));
        assert_eq!(a.list().len(), 3);
        a.answer(i2, Answer::Deny, "u").unwrap();
        assert!(!r2.recv().unwrap().allowed());
        // The others still wait.
        assert!(r1.try_recv().is_err() && r3.try_recv().is_err());
        assert_eq!(a.list().len(), 2);
        // An allow-session for a.test releases both a.test waiters.
        a.answer(i1, Answer::AllowSession, "u").unwrap();
        assert!(r1.recv().unwrap().allowed());
        assert!(r3.recv().unwrap().allowed());
        assert!(a.answer(i3, Answer::Deny, "u").is_err());
        assert!(a.list().is_empty());
    }

    #[test]
    fn a_withdrawn_request_leaves_the_list_denied() {
        let a = Approvals::new(Duration::from_secs(10));
        let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a2, g2) = (a.clone(), gone.clone());
        let t =
            std::thread::spawn(move || a2.request_until(net("a.test"), "r", "agent", Some(&g2)));
        for _ in 0..500 {
            if !a.list().is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let id = a.list()[0].id;
        gone.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(!t.join().unwrap().allowed());
        assert!(a.list().is_empty());
        assert!(a.answer(id, Answer::AllowOnce, "u").is_err());
    }

    #[test]
    fn closing_denies_waiters_and_new_requests() {
        let a = Approvals::new(Duration::from_secs(10));
        let (_, rx) = ask(&a, net("a.test"));
        a.close();
        assert!(!rx.recv().unwrap().allowed());
        assert!(!a.request(net("a.test"), "r", "agent").allowed());
    }

    #[test]
    fn the_pending_list_is_bounded() {
        let a = Approvals::new(Duration::from_secs(5));
        let mut rxs = Vec::new();
        for i in 0..MAX_PENDING {
            rxs.push(ask(&a, net(&format!("h{i}.test"))));
        }
        let t = Instant::now();
        assert!(!a.request(net("over.test"), "r", "agent").allowed());
        assert!(t.elapsed() < Duration::from_secs(1));
        a.close();
        for (_, rx) in rxs {
            assert!(!rx.recv().unwrap().allowed());
        }
    }

    #[test]
    fn descriptions_never_carry_control_characters() {
        let s = Subject::Exec {
            argv: vec![
                "x\x1b]52;c;ZXZpbA==\x07".into(),
                "\r\nwarden: APPROVAL 9\u{202e}".into(),
            ],
            path: "/tmp/\x1b[2J".into(),
            sha256: "ab".into(),
        };
        let d = s.describe();
        assert!(
            !d.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{d:?}"
        );
        assert!(
            d.contains("\\x1b]52") && d.contains("\\x0d\\x0a") && d.contains("\\u{202e}"),
            "{d}"
        );
    }

    #[test]
    fn invisible_format_characters_are_shown_escaped() {
        let d = printable("ls\u{061c}\u{200b}\u{2028}\u{2060}\u{feff}\u{00ad}x");
        assert_eq!(d, "ls\\u{061c}\\u{200b}\\u{2028}\\u{2060}\\u{feff}\\xadx");
    }

    #[test]
    fn exec_argv_is_bounded_and_quoted() {
        let s = Subject::Exec {
            argv: vec!["x".repeat(MAX_ARGV_BYTES), "y".into()],
            path: "/p".into(),
            sha256: "ab".into(),
        }
        .bounded();
        let Subject::Exec { argv, .. } = &s else {
            unreachable!()
        };
        assert!(
            argv.len() <= 2 && argv.iter().map(|a| a.len()).sum::<usize>() < 2 * MAX_ARGV_BYTES
        );
        assert!(shell_words(&["a b".into(), "it's".into()]).contains("'it'\\''s'"));
    }
}
