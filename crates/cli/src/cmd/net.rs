//! `explain --connect` (owned by warden-proxy).

/// Returns (allowed, rule, message).
pub fn explain_connect(_p: &warden_policy::Policy, _h: &str) -> anyhow::Result<(bool, String, String)> {
    anyhow::bail!("explain --connect is not available in this build")
}
