//! `warden run` (owned by warden-sandbox) and `explain --connect` (warden-proxy).

use crate::cli::RunArgs;

pub fn run(_a: RunArgs, _verbose: u8) -> anyhow::Result<i32> {
    anyhow::bail!("warden run is not available yet")
}

/// Returns (allowed, rule, message).
pub fn explain_connect(_p: &warden_policy::Policy, _h: &str) -> anyhow::Result<(bool, String, String)> {
    anyhow::bail!("explain --connect is not available in this build")
}
