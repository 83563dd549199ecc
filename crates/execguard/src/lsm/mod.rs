//! The BPF LSM backend of the exec guard: the kernel decides on the file it executes or maps.
//!
//! - [`probe`]: can this kernel load BPF LSM programs (and which LSMs are active)?
//! - [`bpf`]: the programs of `src/bpf/execguard.bpf.c` — loading, pinning under
//!   `/sys/fs/bpf/warden`, and the maps (sessions, rules, identities, events, counters).
//!
//! This is the kernel layer only. `warden daemon`, which loads these programs, owns the
//! session cgroups and serves the socket, is the `warden-daemon` crate.

pub mod bpf;
pub mod probe;
