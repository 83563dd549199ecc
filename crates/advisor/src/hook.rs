//! The hook's side in one call ([`decide`]): what `warden hook` adds after the rules judged
//! a `PreToolUse`. Inside `warden run` it classifies the call (pure), and only for a grey call
//! that the rules did not deny does it consult the supervisor over the inherited channel
//! ([`crate::channel::fdpass`]); then it [`combine`]s. Outside `warden run` there is no
//! channel and the rules' answer stands: the advisor never runs where its key would be
//! visible to the agent.

use crate::channel::{fdpass, AdvisorRequest};
use crate::class::{Classifier, ToolCall};
use crate::combine::{combine, AdvisorVerdict, Answer, FinalAnswer, RulesAnswer};
use crate::config::AdvisorConfig;

/// The hook's decision for one call, and the advisor's verdict when it was consulted.
#[derive(Debug, Clone)]
pub struct Decided {
    pub answer: FinalAnswer,
    pub advisor: Option<AdvisorVerdict>,
}

/// `rules` must be the gate's answer *before* headless mode turns `ask` into `deny`; apply
/// headless to the result.
pub fn decide(
    cfg: &AdvisorConfig,
    classifier: &Classifier,
    call: &ToolCall,
    rules: RulesAnswer,
    agent_session: &str,
    transcript_path: Option<&str>,
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
    let Some(fd) = fdpass::from_env() else {
        return keep(&rules);
    };
    let req = AdvisorRequest::new(call, rules.clone(), agent_session, transcript_path);
    let v = fdpass::consult(fd, &req, cfg.timeout_ms);
    Decided {
        answer: combine(&rules, Some(&v), Some(&grey)),
        advisor: Some(v),
    }
}
