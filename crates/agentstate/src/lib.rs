//! # warden-agentstate
//!
//! Owns the state filter for agent files that mix safe state with executable configuration
//! (today Claude Code's `~/.claude.json` and `~/.claude/settings.json`). Invariant held:
//! nothing the agent writes there becomes configuration the host's next plain `claude` run
//! executes without a human seeing it first.
//!
//! - [`session::StateSession::start`] (supervisor, before launch) snapshots the host file and
//!   writes a copy into warden's state directory, which the sandbox binds at the file's path.
//!   The copy exists even when the host has no file, so state persists from the first run.
//! - [`session::StateSession::finish`] (supervisor, after the sandbox is gone) parses the copy
//!   as hostile input ([`filter::parse_state`]: bounded, strict, typed errors), merges the
//!   safe keys the session changed into the host file ([`filter::merge`]), and holds changes
//!   to executable keys ([`filter::HELD_KEYS`]) in `~/.local/state/warden/held/<session>.json`.
//! - [`refs`] finds the files the host's agent settings run from a writable directory
//!   (`bash ~/.claude/statusline-command.sh`), which the sandbox then locks read-only.
//! - [`held`] lists, shows, applies and drops held changes (`warden held`, outside any
//!   sandbox; [`held::inside_sandbox`] and the home-directory identity check refuse inside).
//!
//! Every host file operation goes through a directory fd ([`fsat`]): `openat2` beneath with no
//! symlinks, `fstat` of what was opened, atomic replacement by `renameat`; a symlink or a
//! non-regular file where the state file should be is refused, never followed. One exception
//! by design: when `$HOME` names the file's directory through a symlink (`~/.claude ->
//! dotfiles/claude`), the file is used in the real directory the sandbox's plan resolved and
//! recorded ([`held::RealPlace`]), opened only while it is that same directory (device, inode).

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod filter;
pub mod fsat;
pub mod held;
pub mod refs;
pub mod session;

pub use filter::{Change, Kind, StateError};
pub use session::{Report, StateSession};

/// One filtered file.
#[derive(Debug)]
pub struct FileSpec {
    /// Path relative to `$HOME` (no `..`, no leading `/`).
    pub rel: &'static str,
    pub kind: Kind,
    /// Create the host file at exit even when the session left it empty (Claude Code warns
    /// about a missing `~/.claude.json` when it finds a backup of it).
    pub always_create: bool,
}

const CLAUDE: &[FileSpec] = &[
    FileSpec {
        rel: ".claude.json",
        kind: Kind::ClaudeState,
        always_create: true,
    },
    FileSpec {
        rel: ".claude/settings.json",
        kind: Kind::ClaudeSettings,
        always_create: false,
    },
];

/// The files filtered for an agent (by the profile's `[agent] name`).
pub fn filtered_files(agent: &str) -> &'static [FileSpec] {
    match agent {
        "claude" => CLAUDE,
        _ => &[],
    }
}

/// The spec of a filtered file, by its path relative to `$HOME`.
pub fn spec_of(rel: &str) -> Option<&'static FileSpec> {
    CLAUDE.iter().find(|s| s.rel == rel)
}

/// `warden run --dry-run` lines: which files the agent would see as filtered copies.
pub fn describe(agent: &str) -> String {
    filtered_files(agent)
        .iter()
        .map(|f| {
            format!(
                "state filter ~/{}: the agent works on a copy; {} (warden held)\n",
                f.rel,
                match f.kind {
                    Kind::ClaudeState => "safe keys are written back, executable keys held",
                    Kind::ClaudeSettings => "known preferences are written back, the rest held",
                }
            )
        })
        .collect()
}

/// Creates, once and for good, the absent directories among `protect` entries inside the
/// agent's state directory (`~/.claude/commands`, `agents`, `~/.gemini/extensions`, ...), so that later runs lock
/// existing empty directories instead of making and removing a placeholder for each on every
/// run. Empty directories there mean "none" to the agent. Each is made with `mkdirat`
/// beneath the state directory, following no symlink; failures are ignored (the
/// placeholder path still locks the entry). `is_file` tells an entry that names a file
/// (`remote-settings-helper-consent`, which stop 42's run made a directory).
pub fn prepare_dirs(
    agent: &str,
    home: &std::path::Path,
    protect: &[String],
    is_file: impl Fn(&str) -> bool,
) {
    let prefix = match agent {
        "claude" => "~/.claude/",
        "codex" => "~/.codex/",
        "gemini" => "~/.gemini/",
        _ => return,
    };
    let Ok(home_dir) = fsat::Dir::open(home, "~") else {
        return;
    };
    let state_name = prefix.trim_start_matches("~/").trim_end_matches('/');
    home_dir.mkdir(state_name);
    let Ok(Some(state)) = home_dir.child(state_name) else {
        return;
    };
    for entry in protect {
        let Some(name) = entry.strip_prefix(prefix) else {
            continue;
        };
        let name = name.trim_end_matches('/');
        // `local`: Claude Code reads an existing `~/.claude/local` as a local install.
        if name.is_empty()
            || name.contains('/')
            || name.contains('.')
            || name == "local"
            || is_file(entry)
        {
            continue;
        }
        state.mkdir(name);
    }
}
