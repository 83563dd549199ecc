//! # warden-gate
//!
//! Owns the tool-call gate: `warden hook claude|codex|gemini` (each agent's hook protocol,
//! exactly: [`protocol`]), the judgement of one tool call against the shared policy
//! ([`judge`]), the static analysis of shell commands with a real bash parser ([`shell`]),
//! and `warden install`, which wires the hook into an agent's settings ([`install`]).

pub mod install;
pub mod judge;
pub mod protocol;
pub mod shell;
