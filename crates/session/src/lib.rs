//! # warden-session
//!
//! Owns the parts of one supervised session that sit above the layers and below the CLI:
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
//! The rest of the session's life (plan, launch, supervise, relay, end) still lives in
//! `warden run` (crates/cli/src/cmd/run.rs) and moves here piece by piece.

pub mod approval;
pub mod control;
pub mod monitor;

pub use approval::{Answer, Approvals, Outcome, Pending, Subject};
pub use control::{ControlServer, Op, Reply};
pub use monitor::{Monitor, Status};
