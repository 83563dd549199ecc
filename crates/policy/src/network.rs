//! The `[network]` section: per-domain egress allowlist enforced by warden's proxy.
//! Owned by the proxy layer (`warden-proxy`).

use crate::append_unique;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Domains (`*.github.com`, `example.org:8443`) or named sets (`@anthropic`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Deny wins over allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl NetworkSection {
    pub(crate) fn validate(&self) -> Result<(), String> {
        for (key, list) in [("network.allow", &self.allow), ("network.deny", &self.deny)] {
            for r in list {
                if r.trim().is_empty() {
                    return Err(format!("{key}: empty entry"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &NetworkSection) {
        append_unique(&mut self.allow, &o.allow);
        append_unique(&mut self.deny, &o.deny);
    }

    pub(crate) fn narrow(&mut self, o: &NetworkSection) -> Result<(), String> {
        if !o.allow.is_empty() {
            return Err("network.allow".into());
        }
        append_unique(&mut self.deny, &o.deny);
        Ok(())
    }
}
