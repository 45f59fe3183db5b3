//! The daemon's error type, and its one mapping to `tonic::Status`.

use confide_mpc::TransportError;

/// Everything that can go wrong in the daemon and the CLI's talk with it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    ConfigFile(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("peer `{peer}` at {address}: {message}")]
    Peer {
        peer: String,
        address: String,
        message: String,
    },
    #[error("refused: {0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("job {0} not found")]
    JobNotFound(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{0}")]
    Protocol(String),
    #[error("job timed out after {0} s")]
    Deadline(u64),
    #[error("job cancelled: {0}")]
    Cancelled(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl DaemonError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<DaemonError> for tonic::Status {
    fn from(e: DaemonError) -> Self {
        use tonic::Status;
        let msg = e.to_string();
        match e {
            DaemonError::PermissionDenied(_) => Status::permission_denied(msg),
            DaemonError::InvalidRequest(_)
            | DaemonError::Config(_)
            | DaemonError::ConfigFile(_) => Status::invalid_argument(msg),
            DaemonError::JobNotFound(_) => Status::not_found(msg),
            DaemonError::Deadline(_) => Status::deadline_exceeded(msg),
            DaemonError::Cancelled(_) => Status::cancelled(msg),
            DaemonError::Peer { .. } | DaemonError::Transport(_) => Status::unavailable(msg),
            _ => Status::internal(msg),
        }
    }
}

/// A one-line description of a tonic status, for the CLI and for job errors.
pub fn status_line(s: &tonic::Status) -> String {
    let mut m = s.message().replace('\n', " ");
    if m.is_empty() {
        m = format!("{:?}", s.code());
    }
    m
}
