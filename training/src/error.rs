//! The crate's error type.

use std::path::PathBuf;

use confide_mpc::MpcError;

/// Errors of training, prediction, data loading, row alignment and model-share storage.
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
    /// A job option is missing, unknown, not a number or out of range; the message names
    /// the option (what the submitter should change).
    #[error("{0}")]
    Options(String),
    /// The two computing parties have too few IDs in common to train or score.
    #[error("only {rows} common rows between {} and {} (at least {min} needed)", .parties[0], .parties[1])]
    TooFewRows {
        /// Common rows found.
        rows: usize,
        /// Fewest rows a job accepts.
        min: usize,
        /// The two computing parties, in the job's order.
        parties: [String; 2],
    },
    /// The row alignment (PSI) failed for a reason other than the transport.
    #[error("row alignment (psi): {0}")]
    Psi(confide_psi::PsiError),
    /// No stored model share of this id.
    #[error("no shared model `{model}` ({} is missing; train with --keep-shared first)", .path.display())]
    NoSharedModel {
        /// The model id (the job id of the training job).
        model: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A stored model share is not in the expected format or belongs to another model.
    #[error("{}: {reason}", .path.display())]
    ShareFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A background computation died (a bug, not an input problem).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<confide_mpc::TransportError> for TrainError {
    fn from(e: confide_mpc::TransportError) -> Self {
        Self::Mpc(MpcError::Transport(e))
    }
}

impl From<confide_psi::PsiError> for TrainError {
    /// A transport failure during the PSI is reported like any other transport failure.
    fn from(e: confide_psi::PsiError) -> Self {
        match e {
            confide_psi::PsiError::Transport(t) => t.into(),
            other => Self::Psi(other),
        }
    }
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
