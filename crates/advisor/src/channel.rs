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
