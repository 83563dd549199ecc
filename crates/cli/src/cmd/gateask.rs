//! The gate's `ask` answered by a human through warden's approvals (`[approvals] gate =
//! "warden"`), outside the agent's loop: inside a `warden run` session the hook sends the
//! question over the session's hook-report socket and waits; the supervisor lists it for
//! `warden approve` and the `warden run` terminal. No answer, a timeout, a malformed reply
//! or any error is a deny. The wait is bounded by the agent's hook timeout (as `warden
//! install` writes it: 30 s), so at most [`MAX_WAIT`].

use std::time::Duration;
use warden_gate::judge::{Answer, Judgement};
use warden_gate::protocol::{AskResolver, Judged, Second, Watchdog};
use warden_policy::approvals::GateAsk;
use warden_session::approval::{GateAskAnswer, GateAskRequest};

/// The longest a hook waits for a human (inside the agents' 30 s hook timeout).
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// The wait for this policy, when gate asks go to warden.
pub fn wait(policy: &warden_policy::Policy) -> Option<Duration> {
    (policy.approvals.gate() == GateAsk::Warden).then(|| policy.approvals.timeout().min(MAX_WAIT))
}

/// What the human is asked about: the whole tool call, never the rules' short summary
/// (`Bash` commands are summarised by their first 200 characters, and an approval is bound
/// to what was sent).
fn whole(j: &Judged<'_>, cur: &Judgement) -> String {
    match j.input.get("command").and_then(|c| c.as_str()) {
        Some(cmd) if j.tool == "Bash" => format!("Bash `{cmd}`"),
        _ => format!("{} (input: {})", cur.what, j.input),
    }
}

/// Asks the supervisor about `cur` (an `ask`); returns the human's allow or a deny.
pub fn ask(j: &Judged<'_>, cur: &Judgement, wait: Duration, watchdog: &Watchdog) -> Second {
    let denied = |reason: String| Judgement {
        answer: Answer::Deny,
        rule: "approval".into(),
        what: cur.what.clone(),
        reason,
    };
    // Room to hear the supervisor's own timeout answer before the hook's deadline.
    watchdog.extend(wait + Duration::from_secs(3));
    let r = (|| -> Result<GateAskAnswer, String> {
        let path = std::path::Path::new(warden_policy::session::HOOK_SOCK);
        let mut s = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("cannot reach the session ({}: {e})", path.display()))?;
        let req = GateAskRequest {
            tool: j.tool.to_string(),
            what: whole(j, cur),
            rule: cur.rule.clone(),
            wait_ms: wait.as_millis() as u64,
        };
        let payload = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
        warden_proto::frame::write_frame(
            &mut s,
            warden_event::relay::KIND_ASK,
            &payload,
            warden_event::relay::MAX_FRAME,
        )
        .map_err(|e| e.to_string())?;
        let limits = warden_proto::frame::Limits::new(warden_event::relay::MAX_FRAME)
            .deadline(wait + Duration::from_secs(2));
        match warden_proto::frame::read_frame(&mut s, &limits) {
            Ok(Some(f)) if f.kind == warden_event::relay::KIND_ANSWER => {
                serde_json::from_slice(&f.payload).map_err(|_| "no answer (busy)".to_string())
            }
            Ok(_) => Err("the session closed the question".into()),
            Err(e) => Err(format!("no answer: {e}")),
        }
    })();
    let j2 = match r {
        Ok(a) if a.allow => Judgement {
            answer: Answer::Allow,
            rule: warden_gate::protocol::APPROVAL_RULE.into(),
            what: cur.what.clone(),
            reason: format!("approved outside the agent ({}); asked by {}", a.reason, cur.rule),
        },
        Ok(a) => denied(format!(
            "not approved ({}; answered by {}). It was asked by rule {}: a human answers with `warden approve` or Ctrl-] on the warden run terminal",
            a.reason, a.by, cur.rule
        )),
        Err(e) => denied(format!(
            "warden could not ask a human about this ({e}); denied (fail closed). Rule {} asks; set `[approvals] gate = \"agent\"` in your own policy to ask in the agent's prompt instead",
            cur.rule
        )),
    };
    warden_event::Decision::new(
        warden_event::Layer::Gate,
        "warden hook (gate ask)",
        cur.what.clone(),
        "approval",
        match j2.answer {
            Answer::Allow => warden_event::Verdict::Allow,
            _ => warden_event::Verdict::Deny,
        },
        j2.reason.clone(),
    )
    .with("tool", j.tool)
    .with("asked_by_rule", cur.rule.as_str())
    .emit();
    Second {
        resolves_ask: (j2.answer == Answer::Allow).then_some(AskResolver::Human),
        judgement: j2,
    }
}
