//! The `[gate]` section: how the tool-call gate (`warden hook`) answers what the shared
//! policy does not decide. Owned by the gate layer (`warden-gate`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateAnswer {
    Allow,
    Ask,
    Deny,
}

/// What the gate answers where `[gate]` leaves a question unset.
pub const DEFAULT_ANSWER: GateAnswer = GateAnswer::Ask;

impl GateAnswer {
    /// Strictness: allow < ask < deny.
    pub fn rank(self) -> u8 {
        match self {
            GateAnswer::Allow => 0,
            GateAnswer::Ask => 1,
            GateAnswer::Deny => 2,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSection {
    /// Commands that cannot be resolved statically (`eval "$x"`, `$(cmd)` as a program name).
    /// In headless mode `ask` becomes `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<GateAnswer>,
    /// Tools the gate does not know. In headless mode `ask` becomes `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_tool: Option<GateAnswer>,
    /// MCP tools (`mcp__server__tool`, globs) that are allowed / denied; others get `mcp_default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_deny: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_default: Option<GateAnswer>,
}

impl GateSection {
    pub(crate) fn validate(&self) -> Result<(), crate::SectionError> {
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &GateSection) {
        if o.dynamic.is_some() {
            self.dynamic = o.dynamic;
        }
        if o.unknown_tool.is_some() {
            self.unknown_tool = o.unknown_tool;
        }
        if o.mcp_default.is_some() {
            self.mcp_default = o.mcp_default;
        }
        crate::append_unique(&mut self.mcp_allow, &o.mcp_allow);
        crate::append_unique(&mut self.mcp_deny, &o.mcp_deny);
    }

    /// Workspace documents may only make answers stricter than the *effective* answer
    /// (an unset answer is [`DEFAULT_ANSWER`], so `mcp_default = "allow"` widens).
    pub(crate) fn narrow(&mut self, o: &GateSection) -> Result<(), crate::Widens> {
        if o.mcp_allow.iter().any(|a| !self.mcp_allow.contains(a)) {
            return Err("gate.mcp_allow".into());
        }
        crate::append_unique(&mut self.mcp_deny, &o.mcp_deny);
        for (key, cur, new) in [
            ("gate.dynamic", &mut self.dynamic, o.dynamic),
            ("gate.unknown_tool", &mut self.unknown_tool, o.unknown_tool),
            ("gate.mcp_default", &mut self.mcp_default, o.mcp_default),
        ] {
            if let Some(n) = new {
                if n.rank() < cur.unwrap_or(DEFAULT_ANSWER).rank() {
                    return Err(key.into());
                }
                *cur = Some(n);
            }
        }
        Ok(())
    }
}
