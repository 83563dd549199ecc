//! The BPF LSM backend of the exec guard: the kernel decides on the file it executes or maps.
//!
//! - [`probe`]: can this kernel load BPF LSM programs (and which LSMs are active)?
//! - [`bpf`]: the programs of `src/bpf/execguard.bpf.c` — loading, pinning under
//!   `/sys/fs/bpf/warden`, and the maps (sessions, rules, identities, events, counters).
//! - [`control`]: the daemon's socket transport (framed, deadlines, capped), testable without BPF.
//! - [`daemon`]: `warden daemon` — session cgroups over a peer-checked socket, the decision
//!   ring buffer, re-attach on restart, unload; and its client for `warden run`.
//! - [`feeder`]: kernels without IMA — identities fed from userspace (fanotify exec-permission
//!   events, libraries hashed ahead).

pub mod bpf;
pub mod control;
pub mod daemon;
pub mod feeder;
pub mod probe;
