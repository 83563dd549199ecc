//! # warden-sandbox
//!
//! Owns the agent sandbox started by `warden run`: user, mount, pid, network, IPC and UTS
//! namespaces; the mount view (a root of its own, pivoted into, showing only the policy's
//! roots; private tmpfs over `$HOME`, `/tmp`, `/run`; the workspace
//! and the agent's own directories bound back in; denied files hidden, also where the host's
//! bind mounts show them ([`mountinfo`]) and, in read-only roots under the private home, in
//! directories of the sandbox's own; protected paths read-only even when absent); Landlock file
//! rules, split around denied paths in read-only roots ([`lock`]), and signal/abstract-socket
//! scoping; the
//! seccomp filter (compiled in the supervisor, loaded by the agent as a finished program:
//! [`bpf`]); no_new_privs, capability dropping and resource limits; the pids and
//! memory cgroups and private tmpfs sizes ([`limits`]); the session's stop switch
//! ([`freezer`]); the agent's unprivileged host identity when started by root ([`idmap`]);
//! the allowlisted `/dev`; the new session and pty with its escape-sequence filter
//! ([`termfilter`]); the agent's stdio objects under root ([`stdio`]); and environment scrubbing. It also probes what the machine can deliver
//! ([`probe`]), which `warden run` and `warden doctor` report. [`resolve`] follows agent
//! installs through symlinks and resolves the command as the view will show it; [`agents`]
//! holds what a known agent must be told about running inside warden (Codex's sandbox
//! mode), shown to it as read-only files; [`redact`] shows the user's git configuration
//! without the credentials it holds.
//!
//! The workspace side: [`guard`] (run by the sandbox's init) pins the containers of protected
//! paths and guards git repositories at any depth for the whole session; [`placeholder`]
//! makes and removes the placeholders of absent protected paths; [`seen`] records opens of
//! hidden files (fanotify inode marks on the sandbox's own private files); [`integrity`] is the
//! end-of-session report of what host tools would run or load; [`latch`] tells init's guard whether
//! agent code may have run yet. Every privileged operation on an
//! agent-writable path goes through [`fsat`] (directory fds, `openat2` beneath a root with
//! symlinks refused, fd-based mounts).

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod agents;
pub mod bpf;
pub mod cgroup;
pub mod error;
pub mod filter;
pub mod freezer;
pub mod fsat;
pub mod gitrefs;
pub mod guard;
pub mod idmap;
pub mod integrity;
pub mod latch;
pub mod lateclose;
pub mod launch;
pub mod limits;
pub mod lock;
pub mod mountinfo;
pub mod mounts;
pub mod placeholder;
pub mod plan;
pub mod probe;
pub mod pty;
pub mod redact;
pub mod report;
pub mod resolve;
pub mod seen;
pub mod stdio;
mod sys;
pub mod termfilter;

pub use launch::{launch, AgentHook, InitTask, Launch, LaunchError, Session, StartFailure};
pub use plan::{Plan, PlanInput};
pub use probe::{probe, probe_fast, Features};

/// The smallest `pid_max` the kernel accepts (RESERVED_PIDS + 1).
pub const MIN_PID_MAX: u32 = 301;

/// Whether this kernel namespaces `pid_max` per pid namespace (Linux 6.14+).
pub fn pidns_pid_max_supported() -> bool {
    let k = probe::kernel_release();
    let mut it = k
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    matches!((it.next(), it.next()), (Some(a), Some(b)) if (a, b) >= (6, 14))
}
