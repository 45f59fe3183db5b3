//! The crate's one error type.

use std::path::PathBuf;

use confide_mpc::transport::TransportError;

/// Everything that can make a PSI job fail.
#[derive(Debug, thiserror::Error)]
pub enum PsiError {
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV input could not be parsed at all (not a per-row problem: those are counted).
    #[error("{path}: CSV error: {reason}")]
    Csv {
        /// The input file.
        path: PathBuf,
        /// What the CSV reader reported.
        reason: String,
    },
    /// The ID column named by the job is not in the input's header.
    #[error("{path}: no column `{column}` in the header (columns: {available})")]
    MissingColumn {
        /// The input file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The header's columns, comma-separated.
        available: String,
    },
    /// The job description is inconsistent (parties, initiator, mode).
    #[error("invalid PSI job: {0}")]
    InvalidJob(String),
    /// The transport failed (peer gone, unknown peer).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A peer sent something this protocol cannot accept (bad encoding, wrong message,
    /// counts that do not add up, a different job configuration).
    #[error("malformed message from peer `{peer}`: {reason}")]
    Malformed {
        /// The peer's name.
        peer: String,
        /// What was wrong.
        reason: String,
    },
    /// A background computation died (a bug, not an input problem).
    #[error("internal error: {0}")]
    Internal(String),
}

impl PsiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(peer: &str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            peer: peer.to_string(),
            reason: reason.into(),
        }
    }
}
