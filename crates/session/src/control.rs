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
//!   mount namespace), the agent still cannot thaw, inspect or approve for itself.
//! - How: one `warden-proto` frame per request and reply (JSON), at most 4 KiB per request,
//!   a 2 s deadline per connection, at most 16 connections at once.

use crate::approval::{Answer, Approvals, Pending};
use crate::monitor::{Monitor, Status};
use serde::{Deserialize, Serialize};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_proto::accept::{serve, Caps, Counts, PeerCred};
use warden_proto::frame::{read_frame, write_frame, Limits, KIND_JSON};

pub const MAX_REQUEST: usize = 4096;
pub const MAX_REPLY: usize = 1 << 20;
pub const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Status,
    Freeze,
    Thaw,
    Kill,
    /// List the pending approval requests.
    Pending,
    /// Answer one (`id` and `answer` in the request).
    Answer,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
}

impl Request {
    pub fn op(op: Op) -> Request {
        Request {
            op,
            id: None,
            answer: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: Option<Status>,
    /// For `pending` (and `answer`: the request answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
}

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

/// Whether `pid` belongs to the session (fail closed: anything not checkable is inside):
/// - another pid namespace than ours (the sandbox's);
/// - `no_new_privs` set while this supervisor has it clear: every sandboxed process has it
///   (Landlock and seccomp need it), it is inherited and cannot be cleared, and a shell the
///   human starts does not have it;
/// - a cgroup (v2 leaf, or any v1/v2 path) that names the session;
/// - a descendant of the sandbox's first process.
///
/// Without user namespaces (Landlock only, `--best-effort`) the socket's path can be
/// reachable from inside, so these checks are what refuses the agent there.
fn inside_session(pid: i32, check: &PeerCheck) -> bool {
    if pid <= 0 {
        return true;
    }
    let p = pid.to_string();
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    match (ns(&p), ns("self")) {
        (Some(a), Some(b)) if a == b => {}
        _ => return true,
    }
    use warden_sys::procfs::{self, Proc, Status};
    let nnp = |p: Proc| Status::read(p).ok().and_then(|s| s.no_new_privs());
    match (nnp(Proc::Pid(pid)), nnp(Proc::Me)) {
        (Some(true), Some(false)) => return true,
        (None, _) => return true,
        _ => {}
    }
    let Ok(cg) = procfs::cgroup(pid) else {
        return true;
    };
    let leaf = check
        .leaf
        .as_ref()
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
        return true;
    }
    if let Some(root) = check.stage1.filter(|s| *s > 0) {
        let mut cur = pid;
        for _ in 0..4096 {
            if cur == root {
                return true;
            }
            if cur <= 1 {
                break;
            }
            match Status::read(cur).ok().and_then(|s| s.ppid()) {
                Some(pp) => cur = pp,
                None => return true,
            }
        }
    }
    false
}

fn no_approvals() -> Reply {
    Reply {
        ok: false,
        message: "this session has no approval registry".into(),
        status: None,
        pending: Vec::new(),
    }
}

fn reply(s: &mut UnixStream, r: &Reply) {
    if let Ok(b) = serde_json::to_vec(r) {
        let _ = write_frame(s, KIND_JSON, &b, MAX_REPLY);
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
        std::thread::Builder::new()
            .name("warden-control".into())
            .spawn(move || {
                let counts = Arc::new(Counts::default());
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
                            reply(
                                &mut s,
                                &Reply {
                                    ok: false,
                                    message: format!(
                                        "uid {} may not control a session of uid {me}",
                                        peer.uid
                                    ),
                                    status: None,
                                    pending: Vec::new(),
                                },
                            );
                            return;
                        }
                        if inside_session(peer.pid, &check) {
                            reply(
                                &mut s,
                                &Reply {
                                    ok: false,
                                    message:
                                        "refused: the caller is inside the session it would control"
                                            .into(),
                                    status: None,
                                    pending: Vec::new(),
                                },
                            );
                            return;
                        }
                        let lim = Limits::new(MAX_REQUEST).deadline(DEADLINE);
                        let req = match read_frame(&mut s, &lim) {
                            Ok(Some(f)) => serde_json::from_slice::<Request>(&f.payload)
                                .map_err(|e| e.to_string()),
                            Ok(None) => return,
                            Err(e) => Err(e.to_string()),
                        };
                        let by =
                            format!("uid {} (pid {}) via the control socket", peer.uid, peer.pid);
                        let r = match req {
                            Err(e) => Reply {
                                ok: false,
                                message: format!("bad request: {e}"),
                                status: None,
                                pending: Vec::new(),
                            },
                            Ok(Request {
                                op: Op::Pending, ..
                            }) => match &approvals {
                                Some(a) => Reply {
                                    ok: true,
                                    message: String::new(),
                                    status: None,
                                    pending: a.list(),
                                },
                                None => no_approvals(),
                            },
                            Ok(Request {
                                op: Op::Answer,
                                id,
                                answer,
                            }) => match (&approvals, id, answer) {
                                (None, _, _) => no_approvals(),
                                (Some(a), Some(id), Some(ans)) => match a.answer(id, ans, &by) {
                                    Ok(p) => Reply {
                                        ok: true,
                                        message: format!(
                                            "request {id} answered {}: {}",
                                            ans.as_str(),
                                            p.description
                                        ),
                                        status: None,
                                        pending: vec![p],
                                    },
                                    Err(e) => Reply {
                                        ok: false,
                                        message: e.to_string(),
                                        status: None,
                                        pending: Vec::new(),
                                    },
                                },
                                _ => Reply {
                                    ok: false,
                                    message: "bad request: `answer` needs an id and an answer"
                                        .into(),
                                    status: None,
                                    pending: Vec::new(),
                                },
                            },
                            Ok(Request { op, .. }) => {
                                let res = match op {
                                    Op::Status => Ok(String::new()),
                                    Op::Freeze => monitor.freeze(&by).map(|_| "frozen".to_string()),
                                    Op::Thaw => monitor.thaw(&by).map(|_| "thawed".to_string()),
                                    Op::Kill => monitor.kill(&by).map(|_| "killed".to_string()),
                                    Op::Pending | Op::Answer => Ok(String::new()),
                                };
                                match res {
                                    Ok(m) => Reply {
                                        ok: true,
                                        message: m,
                                        status: Some(monitor.status()),
                                        pending: Vec::new(),
                                    },
                                    Err(e) => Reply {
                                        ok: false,
                                        message: e,
                                        status: Some(monitor.status()),
                                        pending: Vec::new(),
                                    },
                                }
                            }
                        };
                        reply(&mut s, &r);
                    },
                    |s, why| {
                        reply(
                            s,
                            &Reply {
                                ok: false,
                                message: format!("busy: {why:?}"),
                                status: None,
                                pending: Vec::new(),
                            },
                        )
                    },
                )
            })?;
        // SAFETY: chmod of the socket we just bound (its directory is already 0700).
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(ControlServer { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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

/// Sends one request to a running session and returns its reply.
pub fn request(state: &Path, session: &str, op: Op) -> Result<Reply, ControlError> {
    send(state, session, &Request::op(op))
}

/// Sends any request (e.g. an approval answer) to a running session.
pub fn send(state: &Path, session: &str, req: &Request) -> Result<Reply, ControlError> {
    let io = |e| ControlError::Io(session.to_string(), e);
    let mut s = UnixStream::connect(socket_path(state, session)).map_err(io)?;
    s.set_write_timeout(Some(DEADLINE)).map_err(io)?;
    let body = serde_json::to_vec(req)
        .map_err(|e| ControlError::Protocol(session.into(), e.to_string()))?;
    write_frame(&mut s, KIND_JSON, &body, MAX_REQUEST)
        .map_err(|e| ControlError::Protocol(session.into(), e.to_string()))?;
    let lim = Limits::new(MAX_REPLY).deadline(Duration::from_secs(5));
    match read_frame(&mut s, &lim) {
        Ok(Some(f)) => serde_json::from_slice(&f.payload)
            .map_err(|e| ControlError::Protocol(session.into(), e.to_string())),
        Ok(None) => Err(ControlError::Protocol(
            session.into(),
            "closed without a reply".into(),
        )),
        Err(e) => Err(ControlError::Protocol(session.into(), e.to_string())),
    }
}
