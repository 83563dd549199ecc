//! # warden-sandbox
//!
//! Owns the agent sandbox started by `warden run`: user, mount, pid, network, IPC and UTS
//! namespaces; the mount plan (masked credentials, read-only protected paths); Landlock
//! file rules and signal/abstract-socket scoping; the seccomp filter; no_new_privs,
//! capability dropping and resource limits; the cgroup; the new session and pty; and
//! environment scrubbing. It also probes what the machine can deliver (`warden doctor`).
