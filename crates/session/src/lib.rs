//! # warden-session
//!
//! Owns the parts of one supervised session that sit above the layers and below the CLI:
//! - [`config`]: [`SessionConfig::resolve`], a pure function holding every decision of a
//!   `warden run` (workspace guard, missing guarantees, exec backend, pids limit, stop switch,
//!   Landlock, proxy mode, risk, audit). `--dry-run` prints it.
//! - [`monitor`]: the live risk monitor. It is a typed [`warden_event::Sink`] for every
//!   decision of the session (exec guard, sandbox, proxy, gate claims, integrity), feeds the
//!   [`warden_risk::RiskEngine`] on its own thread, and acts on its transitions: a warning line
//!   on the user's terminal (outside the agent's pty), a freeze of the whole tree, a kill.
//! - [`control`]: the session's control socket outside the sandbox
//!   (`~/.local/state/warden/sessions/<id>.sock`), through which a human freezes, thaws, kills
//!   or inspects the session (`warden freeze|thaw|kill|status`), with bounded framing
//!   (`warden-proto`), a deadline and peer checks. The agent cannot reach it: the socket lives
//!   on the host's `$HOME`, which is a private tmpfs in the sandbox, and a peer inside the
//!   session's own cgroup is refused even where the path is visible. It also lists and
//!   answers pending approvals (`warden approve`).
//! - [`approval`]: the registry of actions the policy marks `ask`: they block until a
//!   human answers (allow once, allow for the session, deny) or the deadline denies them;
//!   each approval is bound to exactly its subject, and every request and answer is audited.
//!
//! - [`session`]: [`Session`] (`new` compiles the exec rules, `describe` is `--dry-run`,
//!   `start` runs the side-effecting steps in order) and [`SessionHandle`] (`wait`, `freeze`,
//!   `thaw`, `kill`); its module doc lists the steps.
//! - [`supervise`] (private): the launch and the threads that supervise the sandbox.
//! - [`runtime`]: what runs once the sandbox exists: monitor, control socket, audit writer,
//!   the early-decision buffer, the end-of-session summary, the supervisor's key sequence.
//! - [`exec`]: the exec guard's rules and hook for a session.
//! - [`error`], [`ui`]: typed start errors (each with an exit-code class) and the terminal.
//!
//! The house: policy (with rule compilation) → layers (sandbox, execguard + daemon, proxy,
//! gate, agentstate) → session → audit/risk → CLI, with warden-proto's typed messages on the
//! daemon and control sockets. `warden run` (crates/cli/src/cmd/run.rs) parses arguments, calls
//! [`SessionConfig::resolve`], [`Session::start`] and [`SessionHandle::wait`], and prints.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod approval;
pub mod config;
pub mod control;
pub mod error;
pub mod exec;
pub mod monitor;
pub mod runtime;
pub mod session;
mod supervise;
pub use supervise::Hold;
pub mod ui;
pub mod warm;

pub use approval::{Answer, Approvals, Pending, Subject};
pub use config::{ConfigError, ErrorKind, HostFeatures, RunOptions, SessionConfig};
pub use control::{ControlServer, Reply, Request};
pub use error::{MonitorError, StartError};
pub use monitor::{Monitor, Status};
pub use session::{Outcome, Session, SessionHandle};
pub use ui::Ui;

/// Blocks the signals a session's signal thread handles (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
/// SIGUSR1, SIGUSR2, SIGWINCH; not one warden was started with ignored), in the calling
/// thread and every thread it starts later. `warden run` calls it first thing, before any
/// thread exists and before anything is made on the host: a signal from then on waits for
/// the signal thread, which ends a start cleanly (the placeholders removed) instead of
/// warden dying of it halfway. The sandbox's processes get the mask this thread had
/// before.
pub fn block_group_signals() {
    supervise::block_signals();
}

/// A signal that ends a session (SIGTERM, SIGINT, SIGHUP, SIGQUIT) waiting, blocked since
/// [`block_group_signals`], because no signal thread took it: the start failed before there
/// was one. Its number and name: `warden run` then exits as the signal would have
/// (128 + the signal), not with the start's own error code, which a wrapper (`timeout`, a
/// CI's cancel) would misread.
pub fn pending_group_signal() -> Option<(i32, &'static str)> {
    // SAFETY: sigpending fills a zeroed set; sigismember reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::sigpending(&mut set) != 0 {
            return None;
        }
        [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT]
            .into_iter()
            .find(|&s| libc::sigismember(&set, s) == 1)
            .map(|s| (s, supervise::signal_name(s)))
    }
}
