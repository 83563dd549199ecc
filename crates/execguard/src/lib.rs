//! # warden-execguard
//!
//! Owns content-addressed executable identity (SHA-256 of file content), the exec policy
//! (`[exec]`: denylist/allowlist, enforce/audit, names resolved to hashes), the trust index,
//! and the enforcement backends: seccomp user notification supervised by `warden run`
//! (no root) and the BPF LSM backend (root, `warden daemon`).
