//! Why a session did not start or did not end cleanly. Each error has an [`ErrorKind`],
//! which the CLI maps onto its documented exit codes; the message says what failed. Also why a
//! freeze, thaw or kill did not happen ([`MonitorError`]).

use crate::config::{ConfigError, ErrorKind};

/// Why a human's (or the score's) freeze, thaw or kill did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Asked before the sandbox is launched (the freezer is set then).
    #[error("the session has no freezer yet (it is still starting)")]
    Starting,
    #[error("the session has no freezer yet")]
    NoFreezer,
    #[error("thaw: {0}")]
    Thaw(std::io::Error),
    #[error("kill: {0}")]
    Kill(std::io::Error),
    #[error("the session's monitor is not running")]
    NotRunning,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The policy cannot be compiled (exec rules, hash cache, proxy rules).
    #[error("{0}")]
    Policy(String),
    /// The command is not found or is hidden in the sandbox.
    #[error("{0}")]
    NotFound(String),
    /// The command exists but cannot be executed.
    #[error("{0}")]
    NotExecutable(String),
    /// The machine could not build the sandbox (namespaces, the BPF daemon's session).
    #[error("{0}")]
    Unsupported(String),
    /// A protected path's placeholder could not be made in the workspace.
    #[error("{0}")]
    Workspace(String),
    /// Anything else: pipes, sockets, state files.
    #[error("{0}")]
    Internal(String),
    /// A signal (its number) ended the start: the sandbox was torn down before the agent
    /// was let run.
    #[error("interrupted by {} while the sandbox was being built: the agent never ran", crate::supervise::signal_name(*.0))]
    Interrupted(i32),
}

impl StartError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StartError::Config(c) => c.kind(),
            StartError::Policy(_) => ErrorKind::Policy,
            StartError::NotFound(_) => ErrorKind::NotFound,
            StartError::NotExecutable(_) => ErrorKind::NotExecutable,
            StartError::Unsupported(_) => ErrorKind::Unsupported,
            StartError::Workspace(_) => ErrorKind::Workspace,
            StartError::Internal(_) => ErrorKind::Internal,
            StartError::Interrupted(sig) => ErrorKind::Interrupted(*sig),
        }
    }
}
