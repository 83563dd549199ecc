//! The advisor in `warden hook` and `warden run` (the work lives in warden-advisor):
//! [`hook_stage`] is the second stage after the gate's rules inside a session; `warden run`
//! uses [`warden_advisor::session::Wiring`] directly.
//!
//! The stage is consulted only for grey calls the rules did not deny, may only make the
//! answer stricter (never looser than the rules, whatever the advisor or a prompt injection
//! says), turns an `ask` into `deny` in headless mode, and records its decision (layer gate,
//! rule `advisor`).

use warden_advisor::channel::fdpass;
use warden_advisor::hook::decide_in_session;
use warden_advisor::{AdvisorConfig, Answer as AAnswer, Classifier, RulesAnswer, ToolCall};
use warden_event::{Decision, Layer, Verdict};
use warden_gate::judge::{Answer, Judgement};
use warden_gate::protocol::{AskResolver, Judged, Second};

fn to_advisor(a: Answer) -> AAnswer {
    match a {
        Answer::Allow => AAnswer::Allow,
        Answer::Ask => AAnswer::Ask,
        Answer::Deny => AAnswer::Deny,
    }
}

fn to_gate(a: AAnswer) -> Answer {
    match a {
        AAnswer::Allow => Answer::Allow,
        AAnswer::Ask => Answer::Ask,
        AAnswer::Deny => Answer::Deny,
    }
}

/// The advisor stage for a session whose policy enables it (None otherwise).
pub fn hook_stage(
    policy: &warden_policy::Policy,
    headless: bool,
) -> Option<impl Fn(&Judged<'_>) -> Option<Second>> {
    if !policy.advisor.is_enabled() {
        return None;
    }
    // The session's policy was validated by `warden run`; a section that does not convert
    // here still fails closed: no config means every grey call takes `on_error = deny`.
    let cfg = AdvisorConfig::from_policy(&policy.advisor).unwrap_or_else(|e| {
        tracing::warn!("advisor: {e}");
        AdvisorConfig {
            enabled: true,
            on_error: warden_advisor::config::OnError::Deny,
            ..Default::default()
        }
    });
    let classifier = Classifier::from_config(&cfg).with_known_mcp(
        policy
            .gate
            .mcp_allow
            .iter()
            .chain(&policy.gate.mcp_deny)
            .cloned(),
    );
    let channel = fdpass::from_env();
    Some(move |j: &Judged<'_>| {
        let rules = RulesAnswer {
            answer: to_advisor(j.rules.answer),
            rule: j.rules.rule.clone(),
            reason: j.rules.reason.clone(),
        };
        let call = ToolCall::new(j.tool, j.input.clone()).with_cwd(j.cwd);
        let d = decide_in_session(
            &cfg,
            &classifier,
            &call,
            rules.clone(),
            j.agent_session,
            j.transcript_path,
            channel,
        );
        let v = d.advisor?;
        let mut f = d.answer;
        // Stricter only, with one exception the user opts into per class
        // (`advisor.allow_resolution`; the combiner allows it only for those classes): an
        // advisor `allow` resolves a grey `ask`. Never a deny, and never headless.
        let resolves =
            rules.answer == AAnswer::Ask && f.answer == AAnswer::Allow && f.by_advisor && !headless;
        if resolves {
            f.rule = format!("{}{}", warden_gate::protocol::ADVISOR_RESOLVED, f.rule);
            f.reason = format!(
                "{} (a grey `ask` resolved by the advisor: advisor.allow_resolution lists this class; the advisor reads text the agent can write)",
                f.reason
            );
        } else if f.answer < rules.answer {
            f.answer = rules.answer;
            f.reason = format!(
                "{}; the advisor would allow it ({}), but it may only make the gate stricter",
                rules.reason, v.reason
            );
            f.rule = rules.rule.clone();
        }
        if headless && f.answer == AAnswer::Ask {
            f.answer = AAnswer::Deny;
            f.reason = format!("{} (headless: no human to ask; denied)", f.reason);
        }
        let verdict = match f.answer {
            AAnswer::Allow => Verdict::Allow,
            AAnswer::Ask => Verdict::Ask,
            AAnswer::Deny => Verdict::Deny,
        };
        Decision::new(
            Layer::Gate,
            "warden hook (advisor)",
            call.summary(),
            "advisor",
            verdict,
            f.reason.clone(),
        )
        .with("tool", j.tool)
        .with("agent_session", j.agent_session)
        .with("advisor_rule", f.rule.as_str())
        .with("source", v.source.as_str())
        .with("advisor_verdict", v.verdict.as_str())
        .with("rules_answer", rules.answer.as_str())
        .with("rules_rule", rules.rule.as_str())
        .with("latency_ms", v.latency_ms)
        .emit();
        Some(Second {
            judgement: Judgement {
                answer: to_gate(f.answer),
                rule: f.rule,
                what: j.rules.what.clone(),
                reason: f.reason,
            },
            resolves_ask: resolves.then_some(AskResolver::Advisor),
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_advisors_copy_of_the_hook_deadline_is_the_gates() {
        assert_eq!(
            warden_advisor::session::HOOK_DEADLINE_MS as u128,
            warden_gate::protocol::DEADLINE.as_millis()
        );
    }
}
