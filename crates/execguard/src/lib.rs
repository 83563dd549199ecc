//! # warden-execguard
//!
//! Owns content-addressed executable identity (SHA-256 of file content, [`identity`]), the
//! exec policy (`[exec]`: denylist/allowlist, enforce/audit, names resolved to hashes,
//! [`rules`]), the SQLite trust index ([`index`]), the persistent hash cache ([`cache`]), and
//! both enforcement backends: seccomp user notification plus exec-event verification,
//! supervised by `warden run` without root ([`unotify`]), and BPF LSM programs in the kernel,
//! loaded by `warden daemon` ([`lsm`]), with the threads that share a mapping decision's state
//! held still while it is taken ([`hold`]) and executable mappings of files the agent can
//! write made from sealed copies ([`snapshot`]), hashes of such files kept while they are
//! unchanged ([`kept`], [`watch`]), judged by what the agent can write through any mount
//! ([`mounts`]). The seccomp supervisor also answers writes to
//! protected files that a human may allow (`[files] ask_write`, [`writeask`]). Design and guarantees: `GUARANTEES.md`.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod cache;
pub mod hold;
pub mod identity;
pub mod index;
pub mod kept;
pub mod lsm;
pub mod mounts;
pub mod rules;
pub mod snapshot;
pub mod unotify;
pub mod watch;
pub mod writeask;
