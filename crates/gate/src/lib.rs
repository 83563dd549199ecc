//! # warden-gate
//!
//! Owns the tool-call gate: `warden hook claude|codex|gemini` (each agent's hook protocol,
//! exactly: [`protocol`]), the judgement of one tool call against the shared policy
//! ([`judge`]), the static analysis of shell commands with a real bash parser ([`shell`]),
//! and `warden install`, which wires the hook into an agent's settings ([`install`]).
//!
//! Inside `warden run` the policy judged with is the run's own, handed over read-only by the
//! sandbox (`warden_policy::session`); where the gate has no objection it defers to the
//! agent's own permission checks instead of answering allow; every answer comes within a
//! deadline ([`protocol::Watchdog`]).
//!
//! Depends on the policy and event crates only: the compiled rules are
//! `warden_policy::{netrules, progrules}`, and a program's content identity comes from the
//! `warden_policy::progrules::Identity` the caller passes in (the exec guard's hash cache).

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
// The hook deadline's signal handler (protocol.rs) is the only unsafe code, allowed there.
#![deny(unsafe_code)]

pub mod install;
pub mod judge;
pub mod protocol;
pub mod shell;
