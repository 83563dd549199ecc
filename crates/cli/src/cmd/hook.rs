//! `warden hook`, `warden install`, `warden uninstall` (owned by warden-gate).

use crate::cli::{HookArgs, InstallArgs};

pub fn hook(_a: HookArgs) -> anyhow::Result<i32> {
    // Fail closed: exit 2 blocks the tool in every supported agent.
    eprintln!("warden hook: not available in this build; denying");
    Ok(2)
}
pub fn install(_a: InstallArgs) -> anyhow::Result<i32> {
    anyhow::bail!("warden install is not available in this build")
}
pub fn uninstall(_a: InstallArgs) -> anyhow::Result<i32> {
    anyhow::bail!("warden uninstall is not available in this build")
}
