//! The `[approvals]` section: how long an `ask` waits for a human (the session's approval
//! registry in `warden-session` applies it). A deadline is a deny.

use serde::{Deserialize, Serialize};

/// `approvals.timeout_secs` when no layer sets it.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// The longest a request may wait (one day): a longer wait is a typo, not a policy.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// `[approvals]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// Seconds a pending request waits for an answer before it is denied (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

impl ApprovalsSection {
    pub fn validate(&self) -> Result<(), String> {
        match self.timeout_secs {
            Some(0) => Err("approvals.timeout_secs must be at least 1 (a request with no time to be answered would always be denied; remove the `ask` entries instead)".into()),
            Some(n) if n > MAX_TIMEOUT_SECS => Err(format!(
                "approvals.timeout_secs is {n}; at most {MAX_TIMEOUT_SECS} (one day)"
            )),
            _ => Ok(()),
        }
    }

    pub fn merge(&mut self, over: &ApprovalsSection) {
        if over.timeout_secs.is_some() {
            self.timeout_secs = over.timeout_secs;
        }
    }

    /// The effective timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }

    /// A workspace file may only shorten the wait (a sooner deny), never lengthen it.
    pub fn narrow(&mut self, ws: &ApprovalsSection) -> Result<(), String> {
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
