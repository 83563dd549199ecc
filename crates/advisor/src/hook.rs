//! The hook's side in one call ([`decide`], [`decide_in_session`]): what `warden hook` adds
//! after the rules judged a `PreToolUse`. Inside `warden run` it classifies the call (pure),
//! and only for a grey call that the rules did not deny does it consult the supervisor over
//! the inherited channel ([`crate::channel::fdpass`]); then it [`combine`]s.
//!
//! A consultation without a usable answer (no channel, unreachable model, timeout, error,
//! malformed reply, rate limit) takes the policy's `on_error`: `ask` (default: a human
//! decides; headless, a deny), or `deny` with a message saying how to turn the advisor off. A rules `deny` always stands.
//! Outside `warden run` ([`decide`] without a channel) the rules' answer stands: the advisor
//! never runs where its key would be visible to the agent.

use crate::channel::{fdpass, AdvisorRequest};
use crate::class::{Classifier, Grey, ToolCall};
use crate::combine::{combine, AdvisorVerdict, Answer, FinalAnswer, RulesAnswer, Source};
use crate::config::{AdvisorConfig, OnError};
use std::os::fd::RawFd;

/// The hook's decision for one call, and the advisor's verdict when it was consulted.
#[derive(Debug, Clone)]
pub struct Decided {
    pub answer: FinalAnswer,
    pub advisor: Option<AdvisorVerdict>,
}

/// `rules` must be the gate's answer *before* headless mode turns `ask` into `deny`; apply
/// headless to the result. Without a channel in the environment the rules stand.
pub fn decide(
    cfg: &AdvisorConfig,
    classifier: &Classifier,
    call: &ToolCall,
    rules: RulesAnswer,
    agent_session: &str,
    transcript_path: Option<&str>,
) -> Decided {
    match fdpass::from_env() {
        Some(fd) => decide_in_session(
            cfg,
            classifier,
            call,
            rules,
            agent_session,
            transcript_path,
            Some(fd),
        ),
        None => Decided {
            answer: combine(&rules, None, None),
            advisor: None,
        },
    }
}

/// As [`decide`], inside a `warden run` session whose policy enables the advisor: a missing
/// channel (`channel` None) is an error like any other, i.e. `on_error`.
pub fn decide_in_session(
    cfg: &AdvisorConfig,
    classifier: &Classifier,
    call: &ToolCall,
    rules: RulesAnswer,
    agent_session: &str,
    transcript_path: Option<&str>,
    channel: Option<RawFd>,
) -> Decided {
    let keep = |rules: &RulesAnswer| Decided {
        answer: combine(rules, None, None),
        advisor: None,
    };
    if !cfg.enabled || rules.answer == Answer::Deny {
        return keep(&rules);
    }
    let Some(grey) = classifier.classify(call) else {
        return keep(&rules);
    };
    let v = match channel {
        Some(fd) => {
            let req = AdvisorRequest::new(call, rules.clone(), agent_session, transcript_path);
            fdpass::consult(fd, &req, cfg.timeout_ms)
        }
        None => AdvisorVerdict::fallback(
            Source::Error,
            format!(
                "no advisor channel in this session ({} is unset or not the supervisor's socket)",
                crate::channel::ENV_FD
            ),
        ),
    };
    let usable = matches!(v.source, Source::Model | Source::Cache);
    if !usable && cfg.on_error == OnError::Deny {
        return Decided {
            answer: fail_deny(&grey, &v),
            advisor: Some(v),
        };
    }
    Decided {
        answer: combine(&rules, Some(&v), Some(&grey)),
        advisor: Some(v),
    }
}

/// The `on_error = "deny"` answer: what was denied, why, and how a human allows it.
fn fail_deny(grey: &Grey, v: &AdvisorVerdict) -> FinalAnswer {
    FinalAnswer {
        answer: Answer::Deny,
        rule: grey.rule(),
        reason: format!(
            "warden: this grey call ({}) needs the advisor, which was unreachable or gave no usable answer ({}: {}); denied (fail closed). To go on without it, set advisor.on_error = \"ask\" or advisor.enabled = false in ~/.config/warden/policy.toml",
            grey.names().join(", "),
            v.source.as_str(),
            v.reason
        ),
        by_advisor: true,
    }
}
