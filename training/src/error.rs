//! The crate's error type.

use confide_mpc::MpcError;

/// Errors of training, prediction and data loading.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The secret-sharing engine or the transport failed.
    #[error(transparent)]
    Mpc(#[from] MpcError),
    /// A CSV file could not be read or parsed; `line` is 1-based (the header is line 1).
    #[error("{path}: line {line}, column `{column}`: {reason}")]
    Csv {
        /// File path.
        path: String,
        /// 1-based line.
        line: u64,
        /// Column name (or `-` when the error is not about one column).
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The input data cannot be trained on (too few rows, bad label, shapes, …).
    #[error("invalid input data: {0}")]
    Data(String),
    /// Invalid job parameters.
    #[error("invalid parameters: {0}")]
    Params(String),
    /// A peer reported an error or sent something that does not fit the protocol.
    #[error("peer `{peer}`: {reason}")]
    Peer {
        /// Peer name.
        peer: String,
        /// What happened.
        reason: String,
    },
}

impl From<confide_mpc::TransportError> for TrainError {
    fn from(e: confide_mpc::TransportError) -> Self {
        Self::Mpc(MpcError::Transport(e))
    }
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
