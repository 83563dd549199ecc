//! # warden-proxy
//!
//! Owns network egress for sandboxed agents: an HTTP forward / CONNECT / SOCKS5 proxy that
//! resolves names itself, enforces `[network]` allow/deny with named domain sets, refuses
//! private and metadata addresses, and explains refusals in words.
