//! Why a session did not start or did not end cleanly. Each error has an [`ErrorKind`],
//! which the CLI maps onto its documented exit codes; the message says what failed.

use crate::config::{ConfigError, ErrorKind};

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
        }
    }
}
