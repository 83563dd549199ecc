//! # warden-execguard
//!
//! Owns content-addressed executable identity (SHA-256 of file content, [`identity`]), the
//! exec policy (`[exec]`: denylist/allowlist, enforce/audit, names resolved to hashes,
//! [`rules`]), the SQLite trust index ([`index`]), and the enforcement backend for kernels
//! without BPF LSM: seccomp user notification plus exec-event verification, supervised by
//! `warden run` without root ([`unotify`]). Design and guarantees: `GUARANTEES.md`.

pub mod cache;
pub mod identity;
pub mod index;
pub mod lsm;
pub mod rules;
pub mod unotify;
