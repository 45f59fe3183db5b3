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
        /// The 1-based line the reader stopped at, if it knows.
        line: Option<u64>,
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
    /// A checkpoint is missing, unreadable, or belongs to other inputs or another job.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
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

    /// What may leave this party about this error: its category, the line of this
    /// party's input and the peer at fault — never a path, an ID or a cell of the input.
    pub fn public(&self) -> String {
        match self {
            PsiError::Io { .. } => "input/output error on a file of this party".into(),
            PsiError::Csv { line: Some(l), .. } => format!("input is not valid CSV (line {l})"),
            PsiError::Csv { line: None, .. } => "input is not valid CSV".into(),
            PsiError::MissingColumn { .. } => {
                "input has no ID column (the configured id_column is not in its header)".into()
            }
            PsiError::InvalidJob(_) => "invalid PSI job".into(),
            PsiError::Transport(e) => e.public(),
            PsiError::Malformed { peer, .. } => {
                format!("malformed message from peer `{}`", confide_mpc::clean(peer))
            }
            PsiError::Checkpoint(m) if !m.contains('/') => format!("checkpoint: {m}"),
            PsiError::Checkpoint(_) => "checkpoint: unusable at this party".into(),
            PsiError::Internal(_) => "internal error".into(),
        }
    }

    pub(crate) fn malformed(peer: &str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            peer: peer.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<confide_ot::OtError> for PsiError {
    fn from(e: confide_ot::OtError) -> Self {
        match e {
            confide_ot::OtError::Transport(t) => PsiError::Transport(t),
            confide_ot::OtError::BadPoint(peer) => {
                PsiError::malformed(&peer, "invalid group element")
            }
            confide_ot::OtError::Params(p) => PsiError::Internal(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_rendering_names_no_path_and_no_header() {
        let e = PsiError::MissingColumn {
            path: "/data/SECRET-PATH/x.csv".into(),
            column: "id".into(),
            available: "SECRET-ROW\0, 42".into(),
        };
        let p = e.public();
        assert!(!p.contains("SECRET") && p.contains("no ID column"), "{p}");
        let e = PsiError::Csv {
            path: "/data/SECRET-PATH/x.csv".into(),
            line: Some(7),
            reason: "SECRET-VALUE".into(),
        };
        assert_eq!(e.public(), "input is not valid CSV (line 7)");
    }
}
