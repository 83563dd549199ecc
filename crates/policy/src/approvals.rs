//! The `[approvals]` section: how long an `ask` waits for a human (the session's approval
//! registry in `warden-session` applies it). A deadline is a deny.

use serde::{Deserialize, Serialize};

/// `approvals.timeout_secs` when no layer sets it.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// The longest a request may wait (one day): a longer wait is a typo, not a policy.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Who answers the gate's `ask` (a tool call the rules neither allow nor deny).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateAsk {
    /// The agent's own permission prompt (its UI, inside the agent's loop).
    #[default]
    Agent,
    /// warden's approvals, outside the agent's reach (`warden approve`, the `warden run`
    /// terminal): inside a `warden run` session the hook waits for that answer. The
    /// agent's hook timeout bounds the wait (as installed: 30 s, so at most 25 s here).
    Warden,
}

/// What happens to changes of executable agent state held at the end of a session
/// (warden-agentstate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldAsk {
    /// Kept for `warden held apply|drop` (the default).
    #[default]
    Keep,
    /// Also asked at the session's end (`warden approve`, `warden top`): allow applies them,
    /// bound to exactly the held record shown; deny or no answer keeps them held.
    Ask,
}

/// `[approvals]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// Seconds a pending request waits for an answer before it is denied (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Who answers the gate's asks (default `agent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateAsk>,
    /// Held executable-state changes: `keep` (default) or `ask` at the session's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldAsk>,
}

impl ApprovalsSection {
    pub fn validate(&self) -> Result<(), crate::SectionError> {
        match self.timeout_secs {
            Some(0) => Err(crate::SectionError::Invalid("approvals.timeout_secs must be at least 1 (a request with no time to be answered would always be denied; remove the `ask` entries instead)".into())),
            Some(n) if n > MAX_TIMEOUT_SECS => Err(crate::SectionError::Invalid(format!(
                "approvals.timeout_secs is {n}; at most {MAX_TIMEOUT_SECS} (one day)"
            ))),
            _ => Ok(()),
        }
    }

    pub fn merge(&mut self, over: &ApprovalsSection) {
        if over.timeout_secs.is_some() {
            self.timeout_secs = over.timeout_secs;
        }
        if over.gate.is_some() {
            self.gate = over.gate;
        }
        if over.held.is_some() {
            self.held = over.held;
        }
    }

    /// What happens to held changes at the session's end.
    pub fn held(&self) -> HeldAsk {
        self.held.unwrap_or_default()
    }

    /// Who answers the gate's asks.
    pub fn gate(&self) -> GateAsk {
        self.gate.unwrap_or_default()
    }

    /// The effective timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// A workspace file may only shorten the wait (a sooner deny), never lengthen it; it may
    /// move the gate's asks out of the agent's reach (`gate = "warden"`), never back.
    pub fn narrow(&mut self, ws: &ApprovalsSection) -> Result<(), crate::Widens> {
        match ws.gate {
            Some(GateAsk::Warden) => self.gate = Some(GateAsk::Warden),
            Some(GateAsk::Agent) if self.gate() == GateAsk::Warden => {
                return Err("approvals.gate".into())
            }
            _ => {}
        }
        // Asking about held changes keeps the session waiting at its end: only the user's
        // own policy turns it on; a workspace may turn it off.
        match ws.held {
            Some(HeldAsk::Ask) if self.held() != HeldAsk::Ask => {
                return Err("approvals.held".into())
            }
            Some(h) => self.held = Some(h),
            None => {}
        }
        if let Some(n) = ws.timeout_secs {
            let eff = self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
            if n > eff {
                return Err("approvals.timeout_secs".into());
            }
            self.timeout_secs = Some(n);
        }
        Ok(())
    }
}
