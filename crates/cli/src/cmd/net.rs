//! `explain --connect` (the decision lives in warden-proxy).

use super::fail;
use crate::exit;

/// Returns (allowed, rule, message).
pub fn explain_connect(
    p: &warden_policy::Policy,
    h: &str,
) -> anyhow::Result<(bool, String, String)> {
    warden_proxy::explain(p, h).map_err(|e| fail(exit::POLICY, e))
}
