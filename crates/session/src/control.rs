//! The session's control socket: a human outside the sandbox freezes, thaws, kills or
//! inspects a running session, and lists and answers its pending approvals
//! (`warden approve`; the answer is audited as `uid U (pid P) via the control socket`).
//!
//! - Where: `<state>/sessions/<id>.sock` (`<state>` is `~/.local/state/warden`), in a
//!   directory of mode 0700. Inside the sandbox `$HOME` is a private tmpfs, so the socket is
//!   not even in the agent's view.
//! - Who: `SO_PEERCRED` must show the session's own uid (or root), and the peer must not be a
//!   process of the session itself (its pid namespace, `no_new_privs`, a cgroup naming the
//!   session, descent from the sandbox's first process): where the path is visible (no
//!   mount namespace), the agent still cannot thaw, inspect or approve for itself. A peer
//!   that cannot be checked (a session of an unprivileged user cannot read root's
//!   `/proc/N/ns/pid`) is refused too, with what could not be read and whom to run as.
//! - How: one `warden-proto` frame per request and reply, at most 4 KiB per request, a 2 s
//!   deadline per connection, at most 16 connections at once. The messages are
//!   [`warden_proto::msg::control`]'s: a request that does not decode gets a reply with
//!   `ok: false` and an [`ErrorCode`] (bad frame, unknown op, malformed field).

use crate::approval::{Approvals, Pending};
use crate::monitor::{Monitor, Status};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_proto::accept::{serve, Caps, Counts, PeerCred};
use warden_proto::frame::{read_frame, write_frame, Limits, KIND_JSON};

pub const MAX_REQUEST: usize = 4096;
pub const MAX_REPLY: usize = 1 << 20;
pub const DEADLINE: Duration = Duration::from_secs(2);

/// A request (the wire type of [`warden_proto::msg::control`]).
pub use warden_proto::msg::control::Request;
pub use warden_proto::msg::ErrorCode;

/// A reply: the session's [`Status`] and approval requests ([`Pending`]).
pub type Reply = warden_proto::msg::control::Reply<Status, Pending>;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no running session matches {0:?} (see `warden sessions`)")]
    NoSession(String),
    #[error("{0:?} matches several running sessions: {1}")]
    Ambiguous(String, String),
    #[error("session {0}: {1}")]
    Io(String, std::io::Error),
    #[error("session {0}: bad reply: {1}")]
    Protocol(String, String),
}

/// Where the sockets of running sessions live.
pub fn socket_dir(state: &Path) -> PathBuf {
    state.join("sessions")
}

pub fn socket_path(state: &Path, session: &str) -> PathBuf {
    socket_dir(state).join(format!("{session}.sock"))
}

/// The listening socket of one session; the file is removed on drop.
pub struct ControlServer {
    path: PathBuf,
    /// Connections being served (their handlers hold a permit until the reply is written).
    in_flight: Arc<Counts>,
}

/// What tells a peer of the session apart from a human's process.
#[derive(Debug, Clone, Default)]
pub struct PeerCheck {
    /// The session's cgroup v2 leaf, when it has one.
    pub leaf: Option<PathBuf>,
    /// The session id: a cgroup (v1 or v2) whose path names it is the session's.
    pub session: String,
    /// The sandbox's first process: its descendants are the session's.
    pub stage1: Option<i32>,
}

/// Whether a peer is a process of the session ([`peer_verdict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerVerdict {
    /// A process outside the session (a human's).
    Outside,
    /// A process of the session: why.
    Inside(&'static str),
    /// What could not be read to tell (refused: fail closed), e.g.
    /// `/proc/N/ns/pid unreadable (EACCES)`.
    Unverifiable(String),
}

/// The errno's name for the common cases, else the error's text.
fn errno_text(e: &std::io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::ESRCH) => "ESRCH",
        _ => return e.to_string(),
    };
    name.to_string()
}

/// Whether `pid` belongs to the session (fail closed: anything not checkable is
/// [`PeerVerdict::Unverifiable`], which is refused like inside):
/// - another pid namespace than ours (the sandbox's);
/// - `no_new_privs` set while this supervisor has it clear: every sandboxed process has it
///   (Landlock and seccomp need it), it is inherited and cannot be cleared, and a shell the
///   human starts does not have it;
/// - a cgroup (v2 leaf, or any v1/v2 path) that names the session;
/// - a descendant of the sandbox's first process.
///
/// Without user namespaces (Landlock only, `--best-effort`) the socket's path can be
/// reachable from inside, so these checks are what refuses the agent there. A session of an
/// unprivileged user cannot read root's `/proc/N/ns/pid` (ptrace access): root's commands
/// against it are unverifiable, and the refusal says so.
pub fn peer_verdict(pid: i32, check: &PeerCheck) -> PeerVerdict {
    use PeerVerdict::{Inside, Outside, Unverifiable};
    if pid <= 0 {
        return Unverifiable(format!(
            "the caller's pid is {pid} (not in this pid namespace)"
        ));
    }
    let ns = |p: &str| {
        let path = format!("/proc/{p}/ns/pid");
        std::fs::read_link(&path).map_err(|e| format!("{path} unreadable ({})", errno_text(&e)))
    };
    match (ns(&pid.to_string()), ns("self")) {
        (Ok(a), Ok(b)) if a == b => {}
        (Ok(_), Ok(_)) => return Inside("another pid namespace"),
        (Err(e), _) | (_, Err(e)) => return Unverifiable(e),
    }
    use warden_sys::procfs::{self, Proc, Status};
    let nnp = |p: Proc| Status::read(p).ok().and_then(|s| s.no_new_privs());
    match (nnp(Proc::Pid(pid)), nnp(Proc::Me)) {
        (Some(true), Some(false)) => return Inside("no_new_privs is set"),
        (None, _) => return Unverifiable(format!("no_new_privs in /proc/{pid}/status unreadable")),
        _ => {}
    }
    let cg = match procfs::cgroup(pid) {
        Ok(cg) => cg,
        Err(e) => return Unverifiable(format!("/proc/{pid}/cgroup unreadable ({e})")),
    };
    // The leaf is `<session>/agent` (crate::cgroup::Nest): its session directory names it.
    let leaf = check
        .leaf
        .as_ref()
        .and_then(|l| l.parent())
        .and_then(|l| l.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    let names_session = procfs::cgroup_paths(&cg).any(|path| {
        path.split('/').any(|c| {
            (!leaf.is_empty() && c == leaf)
                || (!check.session.is_empty() && c.contains(check.session.as_str()))
        })
    });
    if names_session {
        return Inside("a cgroup of the session");
    }
    if let Some(root) = check.stage1.filter(|s| *s > 0) {
        let mut cur = pid;
        for _ in 0..4096 {
            if cur == root {
                return Inside("a descendant of the sandbox");
            }
            if cur <= 1 {
                break;
            }
            match Status::read(cur).ok().and_then(|s| s.ppid()) {
                Some(pp) => cur = pp,
                None => {
                    return Unverifiable(format!(
                        "the parent of pid {cur} in /proc/{cur}/status unreadable"
                    ))
                }
            }
        }
    }
    Outside
}

/// The refusal for a peer that is not [`PeerVerdict::Outside`]; `session_uid` is the uid
/// the session runs as.
pub fn refusal(verdict: &PeerVerdict, uid: u32, pid: i32, session_uid: u32) -> Option<String> {
    match verdict {
        PeerVerdict::Outside => None,
        PeerVerdict::Inside(why) => Some(format!(
            "refused: the caller (uid {uid}, pid {pid}) is inside the session it would control ({why})"
        )),
        PeerVerdict::Unverifiable(what) => Some(format!(
            "refused: cannot verify that the caller (uid {uid}, pid {pid}) is outside the session: {what}; run the command as the session's user (uid {session_uid})"
        )),
    }
}

fn no_approvals() -> Reply {
    Reply::error(ErrorCode::Failed, "this session has no approval registry")
}

fn reply(s: &mut UnixStream, r: &Reply) {
    if let Ok(b) = serde_json::to_vec(r) {
        let _ = write_frame(s, KIND_JSON, &b, MAX_REPLY);
    }
}

/// Carries out one decoded request from `by` (who asks, for the audit).
fn answer(req: Request, monitor: &Monitor, approvals: Option<&Approvals>, by: &str) -> Reply {
    let done = |res: Result<&str, crate::MonitorError>| match res {
        Ok(m) => Reply::ok(m).with_status(monitor.status()),
        Err(e) => Reply::error(ErrorCode::Failed, e.to_string()).with_status(monitor.status()),
    };
    match req {
        Request::Status => done(Ok("")),
        Request::Freeze => done(monitor.freeze(by).map(|_| "frozen")),
        Request::Thaw => done(monitor.thaw(by).map(|_| "thawed")),
        Request::Kill => done(monitor.kill(by).map(|_| "killed")),
        Request::Pending => match approvals {
            Some(a) => Reply::ok("").with_pending(a.list()),
            None => no_approvals(),
        },
        Request::Answer { id, answer: ans } => match approvals {
            None => no_approvals(),
            Some(a) => match a.answer(id, ans, by) {
                Ok(p) => Reply::ok(format!(
                    "request {id} answered {}: {}",
                    ans.as_str(),
                    p.description
                ))
                .with_pending(vec![p]),
                Err(e) => Reply::error(ErrorCode::Failed, e.to_string()),
            },
        },
    }
}

impl ControlServer {
    /// Binds the socket and serves it on a thread. `leaf` is the session's cgroup leaf,
    /// when it has one, and `stage1` the sandbox's first process: peers of the session are
    /// refused ([`PeerCheck`]). `approvals`: the session's pending requests (`warden
    /// approve`), if it has a registry.
    pub fn start(
        state: &Path,
        session: &str,
        monitor: Arc<Monitor>,
        leaf: Option<PathBuf>,
        approvals: Option<Arc<Approvals>>,
        stage1: Option<i32>,
    ) -> std::io::Result<ControlServer> {
        let check = PeerCheck {
            leaf,
            session: session.to_string(),
            stage1,
        };
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let dir = socket_dir(state);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        // The directory may predate us: make sure it is ours and private.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let path = socket_path(state, session);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        // SAFETY: trivial getter.
        let me = unsafe { libc::getuid() };
        let counts = Arc::new(Counts::default());
        let in_flight = counts.clone();
        std::thread::Builder::new()
            .name("warden-control".into())
            .spawn(move || {
                let caps = Caps {
                    total: 16,
                    per_uid: 16,
                };
                serve(
                    listener,
                    caps,
                    counts,
                    move |mut s, peer: PeerCred, _permit| {
                        if peer.uid != me && peer.uid != 0 {
                            let m =
                                format!("uid {} may not control a session of uid {me}", peer.uid);
                            reply(&mut s, &Reply::error(ErrorCode::Forbidden, m));
                            return;
                        }
                        let verdict = peer_verdict(peer.pid, &check);
                        if let Some(m) = refusal(&verdict, peer.uid, peer.pid, me) {
                            reply(&mut s, &Reply::error(ErrorCode::Forbidden, m));
                            return;
                        }
                        let lim = Limits::new(MAX_REQUEST).deadline(DEADLINE);
                        let req = match read_frame(&mut s, &lim) {
                            Ok(Some(f)) => Request::decode(&f.payload).map_err(Reply::from),
                            Ok(None) => return,
                            Err(e) => Err(Reply::error(
                                ErrorCode::BadFrame,
                                format!("bad request: {e}"),
                            )),
                        };
                        let by =
                            format!("uid {} (pid {}) via the control socket", peer.uid, peer.pid);
                        let r = match req {
                            Ok(req) => answer(req, &monitor, approvals.as_deref(), &by),
                            Err(r) => r,
                        };
                        reply(&mut s, &r);
                    },
                    |s, why| reply(s, &Reply::error(ErrorCode::Busy, format!("busy: {why:?}"))),
                )
            })?;
        // SAFETY: chmod of the socket we just bound (its directory is already 0700).
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(ControlServer { path, in_flight })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    /// No new connections (the socket goes), then a short wait for the replies in flight: an
    /// answer that ends the session (the held-state ask at its end) still reaches whoever
    /// gave it, though the process exits right after.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let until = std::time::Instant::now() + Duration::from_secs(1);
        while self.in_flight.total() > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Running sessions whose id starts with `prefix` (the sockets present).
pub fn find(state: &Path, prefix: &str) -> Result<String, ControlError> {
    let mut found: Vec<String> = std::fs::read_dir(socket_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".sock"))
                        .map(str::to_string)
                })
                .filter(|id| id.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    if let Some(exact) = found.iter().find(|f| f.as_str() == prefix) {
        return Ok(exact.clone());
    }
    match found.len() {
        0 => Err(ControlError::NoSession(prefix.to_string())),
        1 => Ok(found.remove(0)),
        _ => Err(ControlError::Ambiguous(
            prefix.to_string(),
            found.join(", "),
        )),
    }
}

/// Sends one request (`Request::Freeze`, `Request::Answer { id, answer }`, ...) to a
/// running session and returns its reply.
pub fn request(state: &Path, session: &str, req: Request) -> Result<Reply, ControlError> {
    send(state, session, &req)
}

/// Sends one request to a running session and returns its reply.
pub fn send(state: &Path, session: &str, req: &Request) -> Result<Reply, ControlError> {
    let io = |e| ControlError::Io(session.to_string(), e);
    let mut s = UnixStream::connect(socket_path(state, session)).map_err(io)?;
    s.set_write_timeout(Some(DEADLINE)).map_err(io)?;
    let body = serde_json::to_vec(req)
        .map_err(|e| ControlError::Protocol(session.into(), e.to_string()))?;
    // A refusal (peer checks) is sent before the request is read, and the server closes:
    // the write may then fail (EPIPE) with the refusal already waiting to be read.
    let wrote = write_frame(&mut s, KIND_JSON, &body, MAX_REQUEST)
        .map_err(|e| ControlError::Protocol(session.into(), e.to_string()));
    let lim = Limits::new(MAX_REPLY).deadline(Duration::from_secs(5));
    match (read_frame(&mut s, &lim), wrote) {
        (Ok(Some(f)), _) => serde_json::from_slice(&f.payload)
            .map_err(|e| ControlError::Protocol(session.into(), e.to_string())),
        (_, Err(e)) => Err(e),
        (Ok(None), Ok(())) => Err(ControlError::Protocol(
            session.into(),
            "closed without a reply".into(),
        )),
        (Err(e), Ok(())) => Err(ControlError::Protocol(session.into(), e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_proto::msg::control::Answer;

    fn raw(path: &Path, payload: &[u8]) -> Reply {
        let mut s = UnixStream::connect(path).unwrap();
        write_frame(&mut s, KIND_JSON, payload, MAX_REQUEST).unwrap();
        let lim = Limits::new(MAX_REPLY).deadline(Duration::from_secs(5));
        let f = read_frame(&mut s, &lim).unwrap().unwrap();
        serde_json::from_slice(&f.payload).unwrap()
    }

    #[test]
    fn peer_verdicts_and_their_refusals() {
        let check = PeerCheck {
            leaf: None,
            session: "t-peer-verdict-no-such-session".into(),
            stage1: None,
        };
        // SAFETY: trivial getter.
        let me = unsafe { libc::getpid() };
        assert_eq!(peer_verdict(me, &check), PeerVerdict::Outside);
        assert!(matches!(
            peer_verdict(0, &check),
            PeerVerdict::Unverifiable(_)
        ));
        let gone = peer_verdict(i32::MAX, &check);
        assert_eq!(
            gone,
            PeerVerdict::Unverifiable(format!("/proc/{}/ns/pid unreadable (ENOENT)", i32::MAX))
        );
        let below = PeerCheck {
            stage1: Some(me),
            ..check.clone()
        };
        assert_eq!(
            peer_verdict(me, &below),
            PeerVerdict::Inside("a descendant of the sandbox")
        );
        assert_eq!(refusal(&PeerVerdict::Outside, 0, 1, 0), None);
        let m = refusal(
            &PeerVerdict::Unverifiable("/proc/7/ns/pid unreadable (EACCES)".into()),
            0,
            7,
            1000,
        )
        .unwrap();
        assert_eq!(
            m,
            "refused: cannot verify that the caller (uid 0, pid 7) is outside the session: \
             /proc/7/ns/pid unreadable (EACCES); run the command as the session's user (uid 1000)"
        );
        let m = refusal(&PeerVerdict::Inside("no_new_privs is set"), 1000, 9, 1000).unwrap();
        assert!(
            m.contains("inside the session") && m.contains("no_new_privs"),
            "{m}"
        );
    }

    #[test]
    fn typed_requests_and_precise_refusals() {
        let state = std::env::temp_dir().join(format!("warden-ctl-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let id = "t-control";
        let monitor =
            Monitor::start(warden_risk::RiskConfig::default(), id, Box::new(|_| {})).unwrap();
        let approvals = Approvals::new(Duration::from_secs(30));
        let srv = ControlServer::start(&state, id, monitor, None, Some(approvals), None).unwrap();
        let st = request(&state, id, Request::Status).unwrap();
        assert!(st.ok, "{st:?}");
        assert_eq!(st.status.unwrap().session, id);
        let p = request(&state, id, Request::Pending).unwrap();
        assert!(p.ok && p.pending.is_empty(), "{p:?}");
        let a = request(
            &state,
            id,
            Request::Answer {
                id: 99,
                answer: Answer::Deny,
            },
        )
        .unwrap();
        assert!(!a.ok && a.error == Some(ErrorCode::Failed), "{a:?}");
        for (payload, code) in [
            (&br#"{"op":"unfreeze"}"#[..], ErrorCode::UnknownOp),
            (br#"{"op":"answer","id":1}"#, ErrorCode::BadField),
            (
                br#"{"op":"answer","id":1,"answer":"sure"}"#,
                ErrorCode::BadField,
            ),
            (b"{nope", ErrorCode::BadRequest),
            (br#"{"id":1}"#, ErrorCode::BadRequest),
        ] {
            let r = raw(srv.path(), payload);
            assert!(!r.ok, "{r:?}");
            assert_eq!(r.error, Some(code), "{r:?}");
        }
        // Still serving after all of that.
        assert!(request(&state, id, Request::Status).unwrap().ok);
        drop(srv);
        let _ = std::fs::remove_dir_all(&state);
    }
}
