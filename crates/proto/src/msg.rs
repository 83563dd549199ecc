//! The typed messages carried in [`crate::frame`] frames (kind [`crate::frame::KIND_JSON`]).
//!
//! Two sockets speak them, each with one request and one reply per exchange:
//! - [`daemon`]: the root daemon's socket (`/run/warden/daemon.sock`, any local user may
//!   connect): `status`, `session` (place a process tree in an enforced cgroup), `unload`.
//! - [`control`]: a running session's control socket (its own uid only): `status`, `freeze`,
//!   `thaw`, `kill`, `pending` (list approval requests) and `answer` (answer one).
//!
//! Requests are JSON objects tagged by `"op"`. Decoding never panics: a payload that is not
//! JSON, has no `op`, names an op this build does not know, or carries a malformed field is
//! a [`DecodeError`], whose [`ErrorCode`] and message go back to the peer as the reply.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Why a request was refused, as the peer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame itself was bad (oversize, deadline, not a frame).
    BadFrame,
    /// Not a JSON object, or no `op`.
    BadRequest,
    /// An `op` this build does not know.
    UnknownOp,
    /// A known op with a missing or malformed field.
    BadField,
    /// The peer may not do this (uid, inside the session, not root).
    Forbidden,
    /// Too many connections.
    Busy,
    /// The request was valid but could not be carried out.
    Failed,
    /// A client from before framing (JSON lines).
    OldClient,
}

/// A request that could not be decoded (see [`ErrorCode`] for the classes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Deserialize)]
struct OpOnly<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
}

/// Decodes a request tagged by `op` whose known op names are `ops`, telling apart bad JSON,
/// an unknown op and a malformed field.
fn decode<T: serde::de::DeserializeOwned>(payload: &[u8], ops: &[&str]) -> Result<T, DecodeError> {
    let head: OpOnly<'_> = serde_json::from_slice(payload).map_err(|e| DecodeError {
        code: ErrorCode::BadRequest,
        message: format!("bad request: not a JSON object: {e}"),
    })?;
    let op = head.op.ok_or_else(|| DecodeError {
        code: ErrorCode::BadRequest,
        message: "bad request: no `op`".into(),
    })?;
    if !ops.contains(&op.as_ref()) {
        let mut shown: String = op.chars().take(64).collect();
        shown.retain(|c| !c.is_control());
        return Err(DecodeError {
            code: ErrorCode::UnknownOp,
            message: format!("unknown op `{shown}` (known: {})", ops.join(", ")),
        });
    }
    serde_json::from_slice(payload).map_err(|e| DecodeError {
        code: ErrorCode::BadField,
        message: format!("bad request: `{op}`: {e}"),
    })
}

/// The root daemon's socket.
pub mod daemon {
    use super::*;
    use std::path::PathBuf;

    /// Known request ops.
    pub const OPS: &[&str] = &["status", "session", "unload"];

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum Request {
        /// Counters and pin locations.
        Status,
        /// Place `pid` (the caller or its child) and its tree in a new session cgroup.
        Session(SessionRequest),
        /// Detach and unpin the programs (root outside any sandbox only).
        Unload,
    }

    impl Request {
        /// Decodes one request payload (never panics; see [`DecodeError`]).
        pub fn decode(payload: &[u8]) -> Result<Request, DecodeError> {
            decode(payload, OPS)
        }
    }

    /// Which execs a session's programs allow.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Mode {
        #[default]
        Denylist,
        Allowlist,
    }

    fn yes() -> bool {
        true
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SessionRequest {
        pub pid: i32,
        /// The `warden run` session id (named in the daemon's events).
        #[serde(default)]
        pub session_id: String,
        #[serde(default)]
        pub mode: Mode,
        /// False: audit only.
        #[serde(default = "yes")]
        pub enforce: bool,
        #[serde(default)]
        pub allow_memfd: bool,
        #[serde(default = "yes")]
        pub transitive: bool,
        #[serde(default)]
        pub rules: Vec<HashRule>,
        /// The session cgroup's `pids.max` (the sandbox relies on it).
        #[serde(default)]
        pub pids_max: Option<u64>,
    }

    /// One content hash and what the programs do with it.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct HashRule {
        /// SHA-256, 64 lowercase hex digits.
        #[serde(with = "hex32")]
        pub hash: [u8; 32],
        /// `F_DENY`, `F_ALLOW`, `F_BUILDER` bits (the BPF programs' flags).
        #[serde(default)]
        pub flags: u32,
        /// The rule as the policy spells it (`exec.deny:curl`).
        #[serde(default = "exec_rule")]
        pub rule: String,
    }

    fn exec_rule() -> String {
        "exec".into()
    }

    mod hex32 {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
            let mut out = String::with_capacity(64);
            for b in h {
                out.push_str(&format!("{b:02x}"));
            }
            s.serialize_str(&out)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
            let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
            let b = s.as_bytes();
            if b.len() != 64 {
                return Err(D::Error::custom(format!(
                    "a SHA-256 is 64 hex digits, got {}",
                    b.len()
                )));
            }
            let nib = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            };
            let mut h = [0u8; 32];
            for (i, pair) in b.chunks(2).enumerate() {
                match (nib(pair[0]), nib(pair[1])) {
                    (Some(a), Some(b)) => h[i] = a << 4 | b,
                    _ => return Err(D::Error::custom("a SHA-256 is 64 hex digits")),
                }
            }
            Ok(h)
        }
    }

    /// A reply, tagged by `reply`. On the wire it also carries `ok` (false for an error),
    /// and an error's message is its `error` field: what clients from before the typed
    /// messages read ([`Reply::encode`]).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "reply", rename_all = "snake_case")]
    pub enum Reply {
        Status(Status),
        Session(SessionOpened),
        Unloaded,
        Error(ErrorReply),
    }

    #[derive(Serialize)]
    struct Envelope<'a> {
        ok: bool,
        #[serde(flatten)]
        reply: &'a Reply,
    }

    impl Reply {
        pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
            Reply::Error(ErrorReply {
                code,
                message: message.into(),
            })
        }

        /// The reply's payload (with `ok`).
        pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
            serde_json::to_vec(&Envelope {
                ok: !matches!(self, Reply::Error(_)),
                reply: self,
            })
        }

        /// A reply payload from the daemon.
        pub fn decode(payload: &[u8]) -> Result<Reply, serde_json::Error> {
            serde_json::from_slice(payload)
        }
    }

    impl From<DecodeError> for Reply {
        fn from(e: DecodeError) -> Reply {
            Reply::error(e.code, e.message)
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct ErrorReply {
        pub code: ErrorCode,
        #[serde(rename = "error")]
        pub message: String,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Status {
        pub sessions: u64,
        pub lost: u64,
        pub decisions: u64,
        pub pin_dir: PathBuf,
        pub root: PathBuf,
    }

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct SessionOpened {
        /// The session cgroup's id (its kernfs inode).
        pub session: u64,
        pub cgroup: PathBuf,
    }
}

/// A running session's control socket.
pub mod control {
    use super::*;

    /// Known request ops.
    pub const OPS: &[&str] = &["status", "freeze", "thaw", "kill", "pending", "answer"];

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case")]
    pub enum Request {
        Status,
        Freeze,
        Thaw,
        Kill,
        /// List the pending approval requests.
        Pending,
        /// Answer pending request `id`.
        Answer {
            id: u64,
            answer: Answer,
        },
    }

    impl Request {
        /// Decodes one request payload (never panics; see [`DecodeError`]).
        pub fn decode(payload: &[u8]) -> Result<Request, DecodeError> {
            decode(payload, OPS)
        }

        pub fn op(&self) -> &'static str {
            match self {
                Request::Status => "status",
                Request::Freeze => "freeze",
                Request::Thaw => "thaw",
                Request::Kill => "kill",
                Request::Pending => "pending",
                Request::Answer { .. } => "answer",
            }
        }
    }

    /// A human's answer to an approval request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Answer {
        AllowOnce,
        AllowSession,
        Deny,
    }

    impl Answer {
        pub fn as_str(self) -> &'static str {
            match self {
                Answer::AllowOnce => "allow-once",
                Answer::AllowSession => "allow-session",
                Answer::Deny => "deny",
            }
        }
    }

    /// A reply. `S` is the session's status and `P` a pending approval request; both are the
    /// session runtime's types (`warden_session::Status`, `warden_session::Pending`), which
    /// this crate does not know.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(bound(
        serialize = "S: Serialize, P: Serialize",
        deserialize = "S: Deserialize<'de>, P: Deserialize<'de>"
    ))]
    pub struct Reply<S, P> {
        pub ok: bool,
        #[serde(default)]
        pub message: String,
        /// Why it was refused, when `ok` is false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub error: Option<ErrorCode>,
        #[serde(default = "none")]
        pub status: Option<S>,
        /// For `pending`; for `answer`, the request answered.
        #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
        pub pending: Vec<P>,
    }

    fn none<S>() -> Option<S> {
        None
    }

    impl<S, P> Reply<S, P> {
        pub fn ok(message: impl Into<String>) -> Self {
            Reply {
                ok: true,
                message: message.into(),
                error: None,
                status: None,
                pending: Vec::new(),
            }
        }

        pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
            Reply {
                ok: false,
                message: message.into(),
                error: Some(code),
                status: None,
                pending: Vec::new(),
            }
        }

        pub fn with_status(mut self, s: S) -> Self {
            self.status = Some(s);
            self
        }

        pub fn with_pending(mut self, p: Vec<P>) -> Self {
            self.pending = p;
            self
        }
    }

    impl<S, P> From<DecodeError> for Reply<S, P> {
        fn from(e: DecodeError) -> Self {
            Reply::error(e.code, e.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_requests_keep_their_wire_form() {
        use control::{Answer, Request};
        for (wire, req) in [
            (r#"{"op":"status"}"#, Request::Status),
            (r#"{"op":"kill"}"#, Request::Kill),
            (r#"{"op":"pending"}"#, Request::Pending),
            (
                r#"{"op":"answer","id":7,"answer":"allow_once"}"#,
                Request::Answer {
                    id: 7,
                    answer: Answer::AllowOnce,
                },
            ),
        ] {
            assert_eq!(Request::decode(wire.as_bytes()).unwrap(), req);
            assert_eq!(serde_json::to_string(&req).unwrap(), wire);
        }
    }

    #[test]
    fn bad_control_requests_get_precise_errors() {
        use control::Request;
        let code = |s: &str| Request::decode(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("{not json"), ErrorCode::BadRequest);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":7}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":"thaww"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"op":"answer","id":1}"#), ErrorCode::BadField);
        assert_eq!(
            code(r#"{"op":"answer","id":-1,"answer":"deny"}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"op":"answer","id":1,"answer":"maybe"}"#),
            ErrorCode::BadField
        );
        let e = Request::decode(br#"{"op":"answer","id":1,"answer":"maybe"}"#).unwrap_err();
        assert!(e.message.contains("maybe"), "{e}");
        let e = Request::decode(b"{\"op\":\"x\\u001b[2J\"}").unwrap_err();
        assert!(!e.message.contains('\u{1b}'), "{e}");
    }

    #[test]
    fn daemon_replies_carry_ok_and_error_for_older_clients() {
        use daemon::{Reply, SessionOpened};
        let r = Reply::Session(SessionOpened {
            session: 9,
            cgroup: "/sys/fs/cgroup/warden/s1".into(),
        });
        let v: serde_json::Value = serde_json::from_slice(&r.encode().unwrap()).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["session"], 9);
        assert_eq!(Reply::decode(&r.encode().unwrap()).unwrap(), r);
        let e = Reply::error(ErrorCode::Forbidden, "no");
        let v: serde_json::Value = serde_json::from_slice(&e.encode().unwrap()).unwrap();
        assert_eq!(
            (v["ok"].clone(), v["error"].clone()),
            (false.into(), "no".into())
        );
        assert_eq!(Reply::decode(&e.encode().unwrap()).unwrap(), e);
        let u = Reply::Unloaded;
        assert_eq!(Reply::decode(&u.encode().unwrap()).unwrap(), u);
    }

    #[test]
    fn daemon_requests_round_trip_and_check_hashes() {
        use daemon::{HashRule, Mode, Request, SessionRequest};
        let r = Request::Session(SessionRequest {
            pid: 42,
            session_id: "s1".into(),
            mode: Mode::Allowlist,
            enforce: false,
            allow_memfd: true,
            transitive: true,
            rules: vec![HashRule {
                hash: [0xab; 32],
                flags: 3,
                rule: "exec.deny:curl".into(),
            }],
            pids_max: Some(100),
        });
        let wire = serde_json::to_vec(&r).unwrap();
        assert_eq!(Request::decode(&wire).unwrap(), r);
        // Defaults for what an older client leaves out.
        let Request::Session(s) = Request::decode(br#"{"op":"session","pid":1}"#).unwrap() else {
            panic!()
        };
        assert!(s.enforce && s.transitive && !s.allow_memfd && s.mode == Mode::Denylist);
        let code = |s: &str| Request::decode(s.as_bytes()).unwrap_err().code;
        assert_eq!(code(r#"{"op":"session"}"#), ErrorCode::BadField);
        assert_eq!(
            code(r#"{"op":"session","pid":1,"rules":[{"hash":"zz"}]}"#),
            ErrorCode::BadField
        );
        assert_eq!(
            code(r#"{"op":"session","pid":1,"mode":"graylist"}"#),
            ErrorCode::BadField
        );
        assert_eq!(code(r#"{"op":"reload"}"#), ErrorCode::UnknownOp);
        let bad_hex = format!(
            r#"{{"op":"session","pid":1,"rules":[{{"hash":"{}"}}]}}"#,
            "g".repeat(64)
        );
        assert_eq!(code(&bad_hex), ErrorCode::BadField);
        // Multi-byte characters in a 64-byte string do not panic.
        let mb = format!(
            r#"{{"op":"session","pid":1,"rules":[{{"hash":"{}"}}]}}"#,
            "é".repeat(32)
        );
        assert_eq!(code(&mb), ErrorCode::BadField);
    }
}
