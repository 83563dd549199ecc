//! `warden doctor`.

use crate::cli::DoctorArgs;

pub fn doctor(_a: DoctorArgs) -> anyhow::Result<i32> {
    anyhow::bail!("warden doctor is not available yet")
}
