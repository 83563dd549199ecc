//! The BPF LSM side of the exec guard. This build contains the capability probe only; the
//! in-kernel backend (`warden daemon`) is issue 6.

pub mod bpf;
pub mod daemon;
pub mod feeder;
pub mod probe;
