//! # warden-agentstate
//!
//! Owns the state filter for agent state files that mix safe state with executable
//! configuration (today Claude Code's `~/.claude.json`). Invariant held: nothing the agent
//! writes there becomes configuration the host's next plain `claude` run executes without a
//! human seeing it first.
//!
//! - [`session::StateSession::start`] (supervisor, before launch) snapshots the host file and
//!   writes a copy into warden's state directory, which the sandbox binds at the file's path.
//!   The copy exists even when the host has no file, so state persists from the first run.
//! - [`session::StateSession::finish`] (supervisor, after the sandbox is gone) parses the copy
//!   as hostile input ([`filter::parse_state`]: bounded, strict, typed errors), merges the
//!   safe keys the session changed into the host file ([`filter::merge`]), and holds changes
//!   to executable keys ([`filter::HELD_KEYS`]) in `~/.local/state/warden/held/<session>.json`.
//! - [`held`] lists, shows, applies and drops held changes (`warden held`, outside any
//!   sandbox; [`held::inside_sandbox`] and the home-directory identity check refuse inside).
//!
//! Every host file operation goes through a directory fd ([`fsat`]): `openat2` beneath with no
//! symlinks, `fstat` of what was opened, atomic replacement by `renameat`; a symlink or a
//! non-regular file where the state file should be is refused, never followed.

pub mod filter;
pub mod fsat;
pub mod held;
pub mod session;

pub use filter::{Change, StateError};
pub use session::{Report, StateSession};

/// The state files filtered for an agent (by the profile's `[agent] name`): file names
/// directly in `$HOME`.
pub fn filtered_files(agent: &str) -> &'static [&'static str] {
    match agent {
        "claude" => &[".claude.json"],
        _ => &[],
    }
}
