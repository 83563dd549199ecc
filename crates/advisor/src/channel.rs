//! The hook ↔ supervisor channel for consultations.
//!
//! In `warden run` the hook runs inside the sandbox, where the advisor's key must never be.
//! So the hook only classifies (pure, no key), and for a grey call sends an
//! [`AdvisorRequest`] to the supervisor over a channel the sandbox holds one end of (a unix
//! socket pair or a socket in warden's state dir). The supervisor, outside the sandbox,
//! serves it with [`serve_one`]: it re-classifies the call itself (the hook's word is not
//! trusted), reads the transcript beneath its own root, adds warden's own recent decisions,
//! consults the model with its key, audits, and answers one [`AdvisorResponse`]. The hook
//! then [`combine`](crate::combine())s — inside the sandbox, but the worst a forged request
//! can get is an answer for the forger; the supervisor never widens anything itself.
//!
//! Both directions are single `warden-proto` frames with a size cap and a deadline; any
//! failure on the hook side is a verdict of `ask` ([`request`] never fails).

use crate::class::ToolCall;
use crate::combine::{AdvisorVerdict, RulesAnswer, Source};
use crate::transcript::{TranscriptLimits, TranscriptRoot};
use crate::{Advisor, Context, RecentDecisions};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::time::Duration;
use warden_proto::frame::{self, Limits, Timed, KIND_JSON};

pub const VERSION: u32 = 1;
/// Largest request frame (the call is clipped with [`ToolCall::bounded`] to fit).
pub const MAX_REQUEST: usize = 512 << 10;
/// Longest string value of a call sent over the channel.
pub const MAX_CALL_STRING: usize = 32 << 10;
pub const MAX_RESPONSE: usize = 16 << 10;
/// Time the supervisor gives a request frame to arrive.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Added to the advisor's own deadline on the hook side (the supervisor answers `ask` at its
/// deadline; this covers the transcript read and the frame round trip).
pub const HOOK_MARGIN: Duration = Duration::from_millis(750);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorRequest {
    pub v: u32,
    pub call: ToolCall,
    /// The rules' answer, before headless mode.
    pub rules: RulesAnswer,
    #[serde(default)]
    pub agent_session: String,
    /// From the hook payload; the supervisor reads it only beneath its transcript root.
    #[serde(default)]
    pub transcript_path: Option<String>,
}

impl AdvisorRequest {
    pub fn new(
        call: &ToolCall,
        rules: RulesAnswer,
        agent_session: &str,
        transcript_path: Option<&str>,
    ) -> AdvisorRequest {
        AdvisorRequest {
            v: VERSION,
            call: call.bounded(MAX_CALL_STRING),
            rules,
            agent_session: crate::prompt::clip(agent_session, 128),
            transcript_path: transcript_path.map(|p| crate::prompt::clip(p, 4096)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorResponse {
    pub v: u32,
    pub verdict: AdvisorVerdict,
}

/// Hook side: sends one request and waits for the answer until `deadline` (use the policy's
/// `timeout_ms` plus [`HOOK_MARGIN`]). Every failure is a verdict of `ask`.
pub fn request<S: Read + Write + Timed>(
    stream: &mut S,
    req: &AdvisorRequest,
    deadline: Duration,
) -> AdvisorVerdict {
    let fail =
        |what: String| AdvisorVerdict::fallback(Source::Error, format!("advisor channel: {what}"));
    let body = match serde_json::to_vec(req) {
        Ok(b) => b,
        Err(e) => return fail(e.to_string()),
    };
    if let Err(e) = frame::write_frame(stream, KIND_JSON, &body, MAX_REQUEST) {
        return fail(e.to_string());
    }
    match frame::read_frame(stream, &Limits::new(MAX_RESPONSE).deadline(deadline)) {
        Ok(Some(f)) if f.kind == KIND_JSON => {
            match serde_json::from_slice::<AdvisorResponse>(&f.payload) {
                Ok(r) if r.v == VERSION => r.verdict,
                Ok(r) => fail(format!("version {} (this side speaks {VERSION})", r.v)),
                Err(e) => fail(format!("bad response ({e})")),
            }
        }
        Ok(Some(f)) => fail(format!("unexpected frame kind {}", f.kind)),
        Ok(None) => fail("the supervisor closed the channel".into()),
        Err(warden_proto::FrameError::Deadline(d)) => AdvisorVerdict::fallback(
            Source::Timeout,
            format!("the advisor did not answer within {} ms", d.as_millis()),
        ),
        Err(e) => fail(e.to_string()),
    }
}

/// Supervisor side: the verdict for one decoded request.
pub fn answer(
    advisor: &Advisor,
    req: &AdvisorRequest,
    transcripts: Option<&TranscriptRoot>,
    recent: Option<&RecentDecisions>,
) -> AdvisorVerdict {
    if req.v != VERSION {
        return AdvisorVerdict::fallback(
            Source::Refused,
            format!("advisor request version {} unsupported", req.v),
        );
    }
    // Re-classify: the request comes from inside the sandbox.
    let Some(grey) = advisor.classifier().classify(&req.call) else {
        // Not what an honest hook sends: recorded, not scored.
        warden_event::Decision::new(
            warden_event::Layer::Gate,
            "advisor",
            req.call.summary(),
            "advisor.refused",
            warden_event::Verdict::Observe,
            "advisor request for a call that is not grey; refused",
        )
        .with("tool", req.call.tool.as_str())
        .with("agent_session", req.agent_session.as_str())
        .emit();
        return AdvisorVerdict::fallback(
            Source::Refused,
            "not a grey call; the advisor is consulted only for grey calls",
        );
    };
    let user_prompts = match (transcripts, req.transcript_path.as_deref()) {
        (Some(root), Some(p)) => match root.read_user_prompts(p, TranscriptLimits::default()) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("advisor: {e}");
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    let ctx = Context {
        user_prompts,
        recent_decisions: recent.map(|r| r.snapshot()).unwrap_or_default(),
    };
    advisor.consult_as(&req.call, &grey, &req.rules, &ctx, &req.agent_session)
}

/// Supervisor side: reads one request frame from `stream` (bounded, with a deadline),
/// answers it, writes one response frame. Returns false when the peer closed cleanly.
pub fn serve_one<S: Read + Write + Timed>(
    stream: &mut S,
    advisor: &Advisor,
    transcripts: Option<&TranscriptRoot>,
    recent: Option<&RecentDecisions>,
) -> Result<bool, warden_proto::FrameError> {
    let Some(f) = frame::read_frame(stream, &Limits::new(MAX_REQUEST).deadline(READ_DEADLINE))?
    else {
        return Ok(false);
    };
    let verdict = if f.kind != KIND_JSON {
        AdvisorVerdict::fallback(Source::Refused, "unexpected frame kind")
    } else {
        match serde_json::from_slice::<AdvisorRequest>(&f.payload) {
            Ok(req) => answer(advisor, &req, transcripts, recent),
            Err(e) => AdvisorVerdict::fallback(
                Source::Refused,
                format!(
                    "malformed advisor request ({})",
                    crate::prompt::one_line(&e.to_string(), 120)
                ),
            ),
        }
    };
    let body = serde_json::to_vec(&AdvisorResponse {
        v: VERSION,
        verdict,
    })
    .map_err(|e| warden_proto::FrameError::Io(std::io::Error::other(e)))?;
    frame::write_frame(stream, KIND_JSON, &body, MAX_RESPONSE)?;
    Ok(true)
}

/// The fd number under which `warden run` should pass the sandbox's end of the advisor
/// socket (next to the hook-event pipe at 100), announced as `WARDEN_ADVISOR_FD`.
pub const INHERITED_FD: i32 = 101;
pub const ENV_FD: &str = "WARDEN_ADVISOR_FD";
/// Consultations served at once; a request beyond it is dropped (the hook sees the channel
/// close and answers `ask`).
pub const MAX_IN_FLIGHT: usize = 8;

/// What the supervisor serves with: the advisor (with its key), the transcript root, and
/// warden's own recent decisions.
pub struct Server {
    pub advisor: Advisor,
    pub transcripts: Option<TranscriptRoot>,
    pub recent: Option<std::sync::Arc<RecentDecisions>>,
}

/// The advisor channel between the sandbox and the supervisor, without any file system
/// path: a `SOCK_SEQPACKET` socket pair made by the supervisor. The sandbox's end is
/// inherited by the agent (and so by its hooks) as [`INHERITED_FD`]. For each consultation
/// the hook makes a private stream socket pair, sends one end over the inherited socket
/// (`SCM_RIGHTS`), and talks [`request`] on the other. Nothing else in the sandbox can read
/// the answer on that private pair, so a process in the sandbox can ask the advisor (within
/// the rate limit) but cannot answer in its name.
pub mod fdpass {
    use super::*;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Supervisor: the (supervisor end, sandbox end) pair, both close-on-exec (the launcher
    /// `dup2`s the sandbox end to [`INHERITED_FD`], which clears it for the agent only).
    pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
        Ok(warden_sys::socketpair_seqpacket()?)
    }

    /// Hook: the inherited advisor socket, when `WARDEN_ADVISOR_FD` names a seqpacket
    /// socket. None outside `warden run` (then there is no advisor: the rules' answer stands).
    pub fn from_env() -> Option<RawFd> {
        let fd: RawFd = std::env::var(ENV_FD).ok()?.parse().ok()?;
        if fd < 3 {
            return None;
        }
        // SAFETY: only the socket type of the number is asked for (a closed or reused fd
        // is EBADF or not a seqpacket socket); nothing is read or written through it.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        warden_sys::is_seqpacket(borrowed).then_some(fd)
    }

    /// Hook: a private stream to the supervisor for one consultation.
    pub fn open(inherited: RawFd) -> std::io::Result<UnixStream> {
        let (mine, theirs) = UnixStream::pair()?;
        send_fd(inherited, theirs.as_fd())?;
        drop(theirs);
        Ok(mine)
    }

    /// Hook: one whole consultation through the inherited socket. Every failure is `ask`.
    pub fn consult(inherited: RawFd, req: &AdvisorRequest, timeout_ms: u64) -> AdvisorVerdict {
        match open(inherited) {
            Ok(mut s) => request(&mut s, req, Duration::from_millis(timeout_ms) + HOOK_MARGIN),
            Err(e) => AdvisorVerdict::fallback(
                Source::Error,
                format!("advisor channel: cannot reach the supervisor ({e})"),
            ),
        }
    }

    fn send_fd(sock: RawFd, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        // SAFETY: `sock` is the inherited advisor socket the caller names for this call;
        // sendmsg only uses the number, and a closed one is EBADF.
        let sock = unsafe { BorrowedFd::borrow_raw(sock) };
        match warden_sys::fdpass::send(sock, b"A", &[fd])? {
            1 => Ok(()),
            _ => Err(std::io::Error::other("advisor channel: short send")),
        }
    }

    /// Supervisor: one passed fd, or None when the sandbox's end is closed for good.
    /// Messages without exactly one stream socket are skipped (their fds closed); so are
    /// messages whose control data was cut (`MSG_CTRUNC`).
    fn recv_fd(sock: BorrowedFd<'_>) -> Option<std::io::Result<OwnedFd>> {
        use warden_sys::{fdpass, Errno};
        let mut byte = [0u8; 1];
        // Room for a few fds: a sender passing more gets them all closed.
        let m = match fdpass::recv(sock, &mut byte, 8, fdpass::RecvOptions::default()) {
            Ok(m) => m,
            Err(e) => {
                return match e.errno() {
                    Some(Errno::BADF | Errno::NOTSOCK | Errno::INVAL) => None,
                    Some(_) => Some(Err(e.into())),
                    None => Some(Err(std::io::Error::other(
                        "advisor channel: a message without exactly one socket",
                    ))),
                };
            }
        };
        if m.len == 0 {
            return None;
        }
        let mut got = m.fds;
        if got.len() != 1 {
            return Some(Err(std::io::Error::other(
                "advisor channel: a message without exactly one socket",
            )));
        }
        let fd = got.pop()?;
        if !warden_sys::is_stream(fd.as_fd()) {
            return Some(Err(std::io::Error::other(
                "advisor channel: the passed fd is not a stream socket",
            )));
        }
        Some(Ok(fd))
    }

    /// Supervisor: serves consultations until the sandbox's end is closed (every holder in
    /// the sandbox exited). Run it on a thread of its own. At most [`MAX_IN_FLIGHT`] at once.
    pub fn serve(sock: OwnedFd, server: Arc<Server>) {
        let busy = Arc::new(AtomicUsize::new(0));
        loop {
            let fd = match recv_fd(sock.as_fd()) {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!("{e}");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                Some(Ok(fd)) => fd,
            };
            if busy.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                busy.fetch_sub(1, Ordering::SeqCst);
                tracing::warn!(
                    "advisor: {MAX_IN_FLIGHT} consultations in flight; one dropped (ask)"
                );
                continue;
            }
            let (server, busy2) = (server.clone(), busy.clone());
            let spawned = std::thread::Builder::new()
                .name("warden-advisor".into())
                .spawn(move || {
                    let mut s = UnixStream::from(fd);
                    let _ = s.set_write_timeout(Some(READ_DEADLINE));
                    if let Err(e) = serve_one(
                        &mut s,
                        &server.advisor,
                        server.transcripts.as_ref(),
                        server.recent.as_deref(),
                    ) {
                        tracing::debug!("advisor channel: {e}");
                    }
                    busy2.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}
