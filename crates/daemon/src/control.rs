//! The daemon's control socket, apart from BPF (so it is testable anywhere).
//!
//! The socket is mode 0666 on purpose: every local user may ask for an enforced session of
//! its own processes (`warden run` as that user), and the kernel's `SO_PEERCRED` tells the
//! daemon who asks; the handler decides from that alone. Because anyone can connect, every
//! connection is bounded (`warden-proto`):
//! - one request per connection, a `warden-proto` frame of at most [`MAX_REQUEST`] bytes that
//!   must arrive within [`REQUEST_DEADLINE`]; a shared [`IN_FLIGHT`] budget bounds the memory
//!   of all requests being read at once;
//! - at most [`CAPS`] connections at once (in total and per uid); a session's connection stays
//!   open for the session's life and counts against them; over the cap a connection gets an
//!   error frame and is closed, without a thread;
//! - a session's connection, once answered, is only drained (in 4 KiB reads) until it closes.
//!
//! A pre-framing client (a JSON line) gets one JSON line back saying to restart the daemon
//! and client from the same version.
//!
//! Requests and replies are the typed [`warden_proto::msg::daemon`] messages; a request that
//! does not decode gets a typed error reply (bad frame, unknown op, malformed field).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use warden_proto::accept::{self, Caps, Counts, PeerCred};
use warden_proto::frame::{self, FrameError, Limits, MemBudget, KIND_JSON};
use warden_proto::msg::daemon::{Reply, Request};
use warden_proto::msg::ErrorCode;

/// Largest request (a session's rule list: ~100 bytes per hash, a trust index included).
pub const MAX_REQUEST: usize = 32 * 1024 * 1024;
/// Largest reply a client accepts.
pub const MAX_REPLY: usize = 1024 * 1024;
/// Time for a whole request to arrive.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Memory for requests being read, across all connections.
pub const IN_FLIGHT: usize = 96 * 1024 * 1024;
pub const CAPS: Caps = Caps {
    total: 512,
    per_uid: 64,
};

/// What the daemon does with requests.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer` (a refusal is a [`Reply::Error`]).
    fn handle(&self, req: &Request, peer: PeerCred) -> Reply;
    /// A session's connection closed (its `warden run` is gone).
    fn session_closed(&self) {}
    /// After every connection (the daemon exits here once it was unloaded).
    fn after(&self) {}
}

/// Server settings (the constants above, smaller in tests).
#[derive(Clone)]
pub struct Settings {
    pub caps: Caps,
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            caps: CAPS,
            limits: Limits::new(MAX_REQUEST)
                .deadline(REQUEST_DEADLINE)
                .budget(MemBudget::new(IN_FLIGHT)),
        }
    }
}

/// A failure of the control socket: binding it (daemon side) or one request (client side).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("binding {path}: {source}")]
    Bind {
        path: String,
        source: std::io::Error,
    },
    #[error("chmod {path}: {source}")]
    Chmod {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot reach the warden daemon at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("daemon: encoding the request: {0}")]
    Encode(serde_json::Error),
    #[error("daemon: sending the request: {0}")]
    Send(FrameError),
    #[error("daemon: {0} (a daemon started from another warden version may not speak this protocol: restart `warden daemon`)")]
    Receive(FrameError),
    #[error("daemon: closed the connection without a reply")]
    NoReply,
    #[error("daemon reply: {0} (restart `warden daemon` from this warden version)")]
    Decode(serde_json::Error),
    /// The daemon answered with an error reply (its code says which refusal).
    #[error("daemon: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("daemon: unexpected reply to `{op}`: {reply}")]
    Unexpected { op: &'static str, reply: String },
}

/// Binds the socket at `path` (replacing a stale one), mode 0666 (see the module doc).
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(|source| ControlError::Bind {
        path: path.display().to_string(),
        source,
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|source| {
        ControlError::Chmod {
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(l)
}

fn reply(c: &mut UnixStream, r: &Reply) {
    let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
    if let Ok(b) = r.encode() {
        let _ = frame::write_frame(c, KIND_JSON, &b, MAX_REPLY);
    }
}

/// Serves until the listener fails. Connection counts are exposed through `counts`.
pub fn serve<H: Handler>(l: UnixListener, h: Arc<H>, s: Settings, counts: Arc<Counts>) {
    let limits = s.limits.clone();
    accept::serve(
        l,
        s.caps,
        counts,
        move |mut c, peer, permit| {
            one(&mut c, peer, &*h, &limits);
            drop(c);
            drop(permit);
            h.after();
        },
        |c, why| {
            reply(
                c,
                &Reply::error(ErrorCode::Busy, format!("warden daemon is busy: {why}")),
            )
        },
    );
}

fn one<H: Handler>(c: &mut UnixStream, peer: PeerCred, h: &H, limits: &Limits) {
    let req = match frame::read_frame(c, limits) {
        Ok(Some(f)) => Request::decode(&f.payload),
        Ok(None) => return,
        Err(FrameError::BadMagic([b'{', _])) => {
            // A client from before framing speaks JSON lines.
            let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
            let r = Reply::error(ErrorCode::OldClient, "this warden daemon speaks framed requests: the client is older than the daemon; run `warden` and `warden daemon` from the same version");
            let line = r.encode().unwrap_or_default();
            let _ = c.write_all(&line);
            let _ = c.write_all(b"\n");
            return;
        }
        Err(e) => {
            tracing::warn!(
                "control connection from pid {} uid {}: {e}",
                peer.pid,
                peer.uid
            );
            reply(
                c,
                &Reply::error(ErrorCode::BadFrame, format!("bad request: {e}")),
            );
            return;
        }
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            reply(c, &Reply::from(e));
            return;
        }
    };
    let out = h.handle(&req, peer);
    reply(c, &out);
    // A session's client keeps the connection until its session ends; nothing more is read
    // from it than what it sends, in small pieces.
    if matches!(out, Reply::Session(_)) {
        let _ = c.set_read_timeout(None);
        let mut sink = [0u8; 4096];
        loop {
            match c.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        h.session_closed();
    }
}

/// Client side: sends one request and reads its reply within `timeout`. The connection is
/// returned (a session keeps it open).
pub fn request(
    socket: &Path,
    req: &Request,
    timeout: Duration,
) -> Result<(Reply, UnixStream), ControlError> {
    let mut c = UnixStream::connect(socket).map_err(|source| ControlError::Connect {
        path: socket.display().to_string(),
        source,
    })?;
    c.set_write_timeout(Some(timeout)).ok();
    let body = serde_json::to_vec(req).map_err(ControlError::Encode)?;
    frame::write_frame(&mut c, KIND_JSON, &body, MAX_REQUEST).map_err(ControlError::Send)?;
    let f = frame::read_frame(&mut c, &Limits::new(MAX_REPLY).deadline(timeout))
        .map_err(ControlError::Receive)?
        .ok_or(ControlError::NoReply)?;
    let r = Reply::decode(&f.payload).map_err(ControlError::Decode)?;
    if let Reply::Error(e) = r {
        return Err(ControlError::Refused {
            code: e.code,
            message: e.message,
        });
    }
    c.set_write_timeout(None).ok();
    Ok((r, c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    struct Echo {
        closed: AtomicUsize,
    }
    impl Handler for Echo {
        fn handle(&self, req: &Request, peer: PeerCred) -> Reply {
            use warden_proto::msg::daemon::{SessionOpened, Status};
            match req {
                Request::Status => Reply::Status(Status {
                    sessions: peer.uid as u64,
                    lost: 0,
                    decisions: 0,
                    pin_dir: PathBuf::new(),
                    root: PathBuf::new(),
                }),
                Request::Session(_) => Reply::Session(SessionOpened {
                    session: 1,
                    cgroup: PathBuf::new(),
                }),
                Request::Unload => Reply::error(ErrorCode::Forbidden, "not here"),
            }
        }
        fn session_closed(&self) {
            self.closed.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Server {
        sock: std::path::PathBuf,
        counts: Arc<Counts>,
        h: Arc<Echo>,
    }

    fn start(name: &str, caps: Caps, deadline: Duration, max: usize) -> Server {
        let dir = std::env::temp_dir().join(format!("warden-ctl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("d.sock");
        let l = bind(&sock).unwrap();
        let counts = Arc::new(Counts::default());
        let h = Arc::new(Echo {
            closed: AtomicUsize::new(0),
        });
        let s = Settings {
            caps,
            limits: Limits::new(max)
                .deadline(deadline)
                .budget(MemBudget::new(4 * max)),
        };
        let (h2, c2) = (h.clone(), counts.clone());
        std::thread::spawn(move || serve(l, h2, s, c2));
        Server { sock, counts, h }
    }

    fn status(s: &Server) -> Result<Reply, ControlError> {
        request(&s.sock, &Request::Status, Duration::from_secs(5)).map(|(v, _)| v)
    }

    /// A raw request payload and its reply.
    fn raw(s: &Server, payload: &[u8]) -> Reply {
        let mut c = UnixStream::connect(&s.sock).unwrap();
        frame::write_frame(&mut c, KIND_JSON, payload, 4096).unwrap();
        let f = frame::read_frame(
            &mut c,
            &Limits::new(MAX_REPLY).deadline(Duration::from_secs(5)),
        )
        .unwrap()
        .unwrap();
        serde_json::from_slice(&f.payload).unwrap()
    }

    fn code(r: &Reply) -> ErrorCode {
        match r {
            Reply::Error(e) => e.code,
            r => panic!("not an error: {r:?}"),
        }
    }

    fn message(r: &Reply) -> &str {
        match r {
            Reply::Error(e) => &e.message,
            r => panic!("not an error: {r:?}"),
        }
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn socket_is_world_connectable_and_answers() {
        let s = start("mode", CAPS, Duration::from_secs(2), 1 << 20);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s.sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        let Reply::Status(v) = status(&s).unwrap() else {
            panic!()
        };
        assert_eq!(v.sessions, u64::from(rustix::process::getuid().as_raw()));
        // A client from before the typed messages reads `ok` and `error`.
        let mut c = UnixStream::connect(&s.sock).unwrap();
        frame::write_frame(&mut c, KIND_JSON, br#"{"op":"unload"}"#, 4096).unwrap();
        let lim = Limits::new(MAX_REPLY).deadline(Duration::from_secs(5));
        let f = frame::read_frame(&mut c, &lim).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
        assert_eq!(
            (v["ok"].clone(), v["error"].clone()),
            (false.into(), "not here".into())
        );
        let r = raw(&s, br#"{"op":"nope"}"#);
        assert_eq!(code(&r), ErrorCode::UnknownOp);
        assert!(message(&r).contains("unknown op `nope`"), "{r:?}");
        let r = raw(&s, br#"{"op":"session","pid":"one"}"#);
        assert_eq!(code(&r), ErrorCode::BadField);
        assert!(
            message(&r).contains("pid") || message(&r).contains("invalid type"),
            "{r:?}"
        );
        let e = request(&s.sock, &Request::Unload, Duration::from_secs(5)).unwrap_err();
        assert!(
            matches!(&e, ControlError::Refused { code: ErrorCode::Forbidden, message } if message == "not here"),
            "{e}"
        );
    }

    #[test]
    fn many_idle_connections_are_capped_and_the_daemon_stays_responsive() {
        let caps = Caps {
            total: 40,
            per_uid: 30,
        };
        let s = start("flood", caps, Duration::from_secs(3), 1 << 20);
        // 200 connections that send nothing (slow loris): at most 30 are admitted for this
        // uid; the rest get a "busy" frame and are closed at once.
        let mut idle = Vec::new();
        let mut busy = 0;
        for _ in 0..200 {
            let mut c = UnixStream::connect(&s.sock).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            if let Ok(Some(f)) = frame::read_frame(&mut c, &Limits::new(MAX_REPLY)) {
                let v: Reply = serde_json::from_slice(&f.payload).unwrap();
                assert_eq!(code(&v), ErrorCode::Busy);
                assert!(message(&v).contains("busy"), "{v:?}");
                busy += 1;
            }
            idle.push(c);
        }
        assert!(busy >= 170, "only {busy} connections were refused");
        assert!(s.counts.total() <= 30, "{} admitted", s.counts.total());
        // The deadline frees the idle ones: the daemon answers again without any of them
        // closing.
        wait_for("idle connections to time out", || s.counts.total() == 0);
        assert!(matches!(status(&s).unwrap(), Reply::Status(_)));
        drop(idle);
    }

    #[test]
    fn oversize_and_garbage_requests_are_refused_without_reading_them() {
        let s = start("oversize", CAPS, Duration::from_secs(2), 4096);
        // Announces 1 GiB: refused from the header, the daemon reads nothing more.
        let mut c = UnixStream::connect(&s.sock).unwrap();
        c.write_all(&[b'W', b'F', frame::VERSION, KIND_JSON, 0x40, 0, 0, 0])
            .unwrap();
        let f = frame::read_frame(
            &mut c,
            &Limits::new(MAX_REPLY).deadline(Duration::from_secs(5)),
        )
        .unwrap()
        .unwrap();
        let v: Reply = serde_json::from_slice(&f.payload).unwrap();
        assert_eq!(code(&v), ErrorCode::BadFrame);
        assert!(message(&v).contains("exceeds the limit"), "{v:?}");
        // 50 MB of junk on another connection: refused at the first two bytes.
        let mut c = UnixStream::connect(&s.sock).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let junk = vec![b'x'; 50 << 20];
        let _ = c.write_all(&junk); // the daemon closes early: a broken pipe is expected
                                    // A pre-framing client gets a JSON line naming the problem.
        let mut c = UnixStream::connect(&s.sock).unwrap();
        c.write_all(b"{\"op\":\"status\"}\n").unwrap();
        let mut line = String::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.read_to_string(&mut line);
        assert!(line.contains("same version"), "{line}");
        // A valid frame with invalid JSON.
        let mut c = UnixStream::connect(&s.sock).unwrap();
        frame::write_frame(&mut c, KIND_JSON, b"{not json", 4096).unwrap();
        let f = frame::read_frame(
            &mut c,
            &Limits::new(MAX_REPLY).deadline(Duration::from_secs(5)),
        )
        .unwrap()
        .unwrap();
        let v: Reply = serde_json::from_slice(&f.payload).unwrap();
        assert_eq!(code(&v), ErrorCode::BadRequest);
        assert!(message(&v).contains("bad request"), "{v:?}");
        assert!(matches!(status(&s).unwrap(), Reply::Status(_)));
        wait_for("connections to close", || s.counts.total() == 0);
    }

    #[test]
    fn slow_request_hits_the_deadline() {
        let s = start("slow", CAPS, Duration::from_millis(300), 4096);
        let mut c = UnixStream::connect(&s.sock).unwrap();
        let f = frame::encode(KIND_JSON, br#"{"op":"status"}"#, 4096).unwrap();
        c.write_all(&f[..5]).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        let _ = c.write_all(&f[5..]);
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = frame::read_frame(&mut c, &Limits::new(MAX_REPLY))
            .unwrap()
            .unwrap();
        let v: Reply = serde_json::from_slice(&r.payload).unwrap();
        assert!(message(&v).contains("deadline"), "{v:?}");
    }

    #[test]
    fn sessions_hold_their_slot_until_closed() {
        let s = start("session", CAPS, Duration::from_secs(2), 4096);
        let req = Request::decode(br#"{"op":"session","pid":1}"#).unwrap();
        let (v, conn) = request(&s.sock, &req, Duration::from_secs(5)).unwrap();
        assert!(
            matches!(v, Reply::Session(ref o) if o.session == 1),
            "{v:?}"
        );
        std::thread::sleep(Duration::from_millis(300)); // past nothing: no deadline now
        assert_eq!(s.counts.total(), 1);
        drop(conn);
        wait_for("the session to close", || {
            s.h.closed.load(Ordering::SeqCst) == 1
        });
        wait_for("its slot", || s.counts.total() == 0);
    }
}
