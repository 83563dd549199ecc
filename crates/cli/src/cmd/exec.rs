//! `warden hash`, `warden index`, `warden exec`, and `explain --exec`: the exec guard's
//! commands (owned by warden-execguard).

use crate::cli::{ExecCmd, HashArgs, IndexArgs};

fn not_yet(what: &str) -> anyhow::Error {
    anyhow::anyhow!("{what} is not available in this build")
}

pub fn hash(_a: HashArgs) -> anyhow::Result<i32> {
    Err(not_yet("warden hash"))
}
pub fn index(_a: IndexArgs) -> anyhow::Result<i32> {
    Err(not_yet("warden index"))
}
pub fn exec(_c: ExecCmd) -> anyhow::Result<i32> {
    Err(not_yet("warden exec"))
}
/// Returns (allowed, rule, message).
pub fn explain_exec(_p: &warden_policy::Policy, _f: &std::path::Path) -> anyhow::Result<(bool, String, String)> {
    Err(not_yet("explain --exec"))
}
