//! # warden-daemon
//!
//! `warden daemon`: the root process that owns the BPF LSM backend of the exec guard on a
//! machine. The kernel layer (the programs, pinning, the maps, the probe) is
//! `warden_execguard::lsm`; this crate is what runs it:
//!
//! - [`daemon`] (re-exported at the root): load or re-attach the pinned programs, one session
//!   cgroup per `warden run` over a peer-checked socket, the decision ring buffer, unload;
//!   and its [`client`] for `warden run`, `warden doctor` and `warden daemon --status`.
//! - [`control`]: the socket's transport (framed, deadlines, capped connections), testable
//!   without BPF. The messages are `warden_proto::msg::daemon`'s.
//! - [`feeder`]: kernels without IMA — identities fed from userspace (fanotify
//!   exec-permission events, libraries hashed ahead).
// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod control;
pub mod daemon;
pub mod feeder;

pub use daemon::*;
