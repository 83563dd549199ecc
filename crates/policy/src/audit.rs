//! The `[audit]` section: retention limits of the audit store (`warden-audit` applies them).

use serde::{Deserialize, Serialize};

/// `[audit]`: how long and how much of the audit store is kept. Unset keys keep the store's
/// defaults (90 days, 1024 MB).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Rows older than this many days are pruned (a checkpoint keeps the chain verifiable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// The store is pruned, oldest rows first, when it grows past this many MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_mb: Option<u64>,
    /// Record write attempts that the sandbox refuses with EROFS (protected paths, read-only
    /// roots). Off by default: every write open then traps to the supervisor (measured in
    /// the README's "Blocked attempts" table). Needs the seccomp exec-guard backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_writes: Option<bool>,
}

impl AuditSection {
    pub fn validate(&self) -> Result<(), crate::SectionError> {
        if self.retention_days == Some(0) {
            return Err(crate::SectionError::Invalid(
                "audit.retention_days must be at least 1".into(),
            ));
        }
        if self.max_mb == Some(0) {
            return Err(crate::SectionError::Invalid(
                "audit.max_mb must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn merge(&mut self, over: &AuditSection) {
        if over.retention_days.is_some() {
            self.retention_days = over.retention_days;
        }
        if over.max_mb.is_some() {
            self.max_mb = over.max_mb;
        }
        if over.record_writes.is_some() {
            self.record_writes = over.record_writes;
        }
    }

    /// A workspace file (which the agent can write) may not change what is kept of the
    /// record of what the agent did: any `[audit]` key there is an error naming it.
    pub fn narrow(&self, ws: &AuditSection) -> Result<(), crate::Widens> {
        if ws.retention_days.is_some() {
            return Err("audit.retention_days".into());
        }
        if ws.max_mb.is_some() {
            return Err("audit.max_mb".into());
        }
        if ws.record_writes.is_some() {
            return Err("audit.record_writes".into());
        }
        Ok(())
    }
}
