//! `warden run` (owned by warden-sandbox).

use crate::cli::RunArgs;

pub fn run(_a: RunArgs, _verbose: u8) -> anyhow::Result<i32> {
    anyhow::bail!("warden run is not available yet")
}
