//! `warden daemon` (owned by warden-execguard's BPF backend).

use crate::cli::DaemonArgs;

pub fn daemon(_a: DaemonArgs) -> anyhow::Result<i32> {
    anyhow::bail!("warden daemon is not available in this build")
}
