//! # warden-gate
//!
//! Owns the tool-call gate: `warden hook claude|codex|gemini` (each agent's hook protocol,
//! exactly), the static analysis of shell commands with a real bash parser, and
//! `warden install` which wires the hook into an agent's settings.
