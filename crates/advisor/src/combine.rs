//! Combining the rules' answer with the advisor's verdict ([`combine`]): pure, total, and
//! the only place where an advisor verdict changes what the gate answers.
//!
//! | rules \ advisor | none / not grey | deny | ask | allow                         |
//! |-----------------|-----------------|------|-----|-------------------------------|
//! | deny            | deny            | deny | deny| deny                          |
//! | ask             | ask             | deny | ask | allow if the class permits, else ask |
//! | allow           | allow           | deny | ask | allow                         |
//!
//! A timeout, an error or an unparseable answer arrives here as a verdict of `ask`
//! ([`Source`] says why), so it tightens a rules `allow` of a grey call to `ask` and never
//! resolves anything.

use crate::class::Grey;
use serde::{Deserialize, Serialize};

/// A three-way answer (the gate's, the advisor's, the combination's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Allow,
    Ask,
    Deny,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Ask => "ask",
            Answer::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Answer> {
        match s {
            "allow" => Some(Answer::Allow),
            "ask" => Some(Answer::Ask),
            "deny" => Some(Answer::Deny),
            _ => None,
        }
    }

    pub fn verdict(self) -> warden_event::Verdict {
        match self {
            Answer::Allow => warden_event::Verdict::Allow,
            Answer::Ask => warden_event::Verdict::Ask,
            Answer::Deny => warden_event::Verdict::Deny,
        }
    }
}

/// The rules' judgement of a call (from `warden_gate::judge`), before headless mode turns an
/// `ask` into a `deny`: apply headless to the [`FinalAnswer`], after [`combine`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesAnswer {
    pub answer: Answer,
    pub rule: String,
    pub reason: String,
}

/// Where an advisor verdict came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The model answered (strict JSON, parsed).
    Model,
    /// The same call and context were answered before.
    Cache,
    /// The deadline passed: `ask`.
    Timeout,
    /// Transport, HTTP status, key or channel error: `ask`.
    Error,
    /// The model's answer was not the required JSON: `ask`.
    Malformed,
    /// The supervisor refused the request (not grey, over budget, advisor off): `ask`.
    Refused,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::Cache => "cache",
            Source::Timeout => "timeout",
            Source::Error => "error",
            Source::Malformed => "malformed",
            Source::Refused => "refused",
        }
    }
}

/// What one consultation produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorVerdict {
    pub verdict: Answer,
    /// One sentence for the human (the model's, clipped and stripped of control
    /// characters; or warden's own for a timeout or error).
    pub reason: String,
    pub source: Source,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub latency_ms: u64,
    /// SHA-256 (hex) of the exact prompt sent (or that would have been sent).
    #[serde(default)]
    pub prompt_sha256: String,
}

impl AdvisorVerdict {
    /// A non-answer: always `ask`.
    pub fn fallback(source: Source, reason: impl Into<String>) -> AdvisorVerdict {
        AdvisorVerdict {
            verdict: Answer::Ask,
            reason: crate::prompt::one_line(&reason.into(), 300),
            source,
            model: String::new(),
            latency_ms: 0,
            prompt_sha256: String::new(),
        }
    }

    pub fn cache_hit(&self) -> bool {
        self.source == Source::Cache
    }
}

/// The gate's answer after the advisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalAnswer {
    pub answer: Answer,
    /// The rule to report: the rules' own, or `advisor.<class>` when the advisor decided.
    pub rule: String,
    /// The sentence the human sees.
    pub reason: String,
    /// Whether the advisor's verdict changed or confirmed the answer.
    pub by_advisor: bool,
}

/// Combines the rules' answer with the advisor's verdict. Total and pure:
/// - a rules `deny` is returned unchanged, whatever the advisor says;
/// - for a call that is not grey, or without a verdict, the rules' answer stands;
/// - the advisor may tighten (`allow`→`ask`/`deny`, `ask`→`deny`);
/// - it may resolve `ask`→`allow` only when `grey.may_resolve_to_allow`;
/// - a timeout / error / malformed answer is an `ask` verdict, so it never loosens.
pub fn combine(
    rules: &RulesAnswer,
    advisor: Option<&AdvisorVerdict>,
    grey: Option<&Grey>,
) -> FinalAnswer {
    let keep = || FinalAnswer {
        answer: rules.answer,
        rule: rules.rule.clone(),
        reason: rules.reason.clone(),
        by_advisor: false,
    };
    let (Some(v), Some(g)) = (advisor, grey) else {
        return keep();
    };
    if rules.answer == Answer::Deny {
        return keep();
    }
    let rule = g.rule();
    let who = if v.model.is_empty() {
        "advisor".to_string()
    } else {
        format!("advisor ({})", v.model)
    };
    let said = |a: Answer, note: &str| FinalAnswer {
        answer: a,
        rule: rule.clone(),
        reason: format!("{who}: {}{note}", v.reason),
        by_advisor: true,
    };
    match (rules.answer, v.verdict) {
        (_, Answer::Deny) => said(Answer::Deny, ""),
        (Answer::Allow, Answer::Ask) => said(Answer::Ask, ""),
        (Answer::Allow, Answer::Allow) => FinalAnswer {
            by_advisor: true,
            ..keep()
        },
        (Answer::Ask, Answer::Ask) => FinalAnswer {
            answer: Answer::Ask,
            rule: rules.rule.clone(),
            reason: format!("{}; {who}: {}", rules.reason, v.reason),
            by_advisor: true,
        },
        (Answer::Ask, Answer::Allow) if g.may_resolve_to_allow => said(Answer::Allow, ""),
        (Answer::Ask, Answer::Allow) => FinalAnswer {
            answer: Answer::Ask,
            rule: rules.rule.clone(),
            reason: format!(
                "{}; {who} would allow it ({}), but class `{}` may not be resolved to allow by the advisor",
                rules.reason,
                v.reason,
                g.classes
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join("`, `")
            ),
            by_advisor: false,
        },
        (Answer::Deny, _) => keep(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::GreyClass;

    fn v(a: Answer) -> AdvisorVerdict {
        AdvisorVerdict {
            verdict: a,
            reason: "r".into(),
            source: Source::Model,
            model: "m".into(),
            latency_ms: 1,
            prompt_sha256: String::new(),
        }
    }

    fn r(a: Answer) -> RulesAnswer {
        RulesAnswer {
            answer: a,
            rule: "gate.x".into(),
            reason: "because".into(),
        }
    }

    #[test]
    fn exhaustive_table() {
        let all = [Answer::Allow, Answer::Ask, Answer::Deny];
        for may in [false, true] {
            let g = Grey {
                classes: vec![GreyClass::ForcePush],
                may_resolve_to_allow: may,
            };
            for ra in all {
                for va in all {
                    let f = combine(&r(ra), Some(&v(va)), Some(&g));
                    // Never loosens a deny; never loosens anything past the table.
                    if ra == Answer::Deny {
                        assert_eq!(f.answer, Answer::Deny);
                        assert_eq!(f.rule, "gate.x");
                    }
                    if va == Answer::Deny {
                        assert_eq!(f.answer, Answer::Deny);
                    }
                    if ra == Answer::Ask && va == Answer::Allow {
                        assert_eq!(f.answer, if may { Answer::Allow } else { Answer::Ask });
                    }
                    if ra == Answer::Allow && va == Answer::Ask {
                        assert_eq!(f.answer, Answer::Ask);
                    }
                    // Looser than the rules only in the one resolvable cell.
                    if f.answer < ra {
                        assert!(may && ra == Answer::Ask && va == Answer::Allow);
                    }
                }
                // Not grey, or no verdict: the rules stand.
                assert_eq!(combine(&r(ra), Some(&v(Answer::Allow)), None).answer, ra);
                assert_eq!(combine(&r(ra), None, Some(&g)).answer, ra);
            }
        }
    }

    #[test]
    fn fallbacks_are_ask() {
        let g = Grey {
            classes: vec![GreyClass::DestructiveFiles],
            may_resolve_to_allow: true,
        };
        for s in [
            Source::Timeout,
            Source::Error,
            Source::Malformed,
            Source::Refused,
        ] {
            let f = AdvisorVerdict::fallback(s, "x");
            assert_eq!(
                combine(&r(Answer::Ask), Some(&f), Some(&g)).answer,
                Answer::Ask
            );
            assert_eq!(
                combine(&r(Answer::Deny), Some(&f), Some(&g)).answer,
                Answer::Deny
            );
        }
    }
}
