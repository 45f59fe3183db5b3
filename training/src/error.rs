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
    /// A training checkpoint is missing, unusable, or belongs to other inputs or options.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A background computation died (a bug, not an input problem).
    #[error("internal error: {0}")]
    Internal(String),
    /// An error of this party carried as text (to fail every seat of a job with it): the
    /// full `message` stays here, only `public` is sent.
    #[error("{message}")]
    Local {
        /// The full message (file, line, value).
        message: String,
        /// What may leave this party ([`TrainError::public`] of the original).
        public: String,
    },
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

/// The category of a CSV problem, from the reasons [`crate::load_table`] and the
/// alignment reader give (the value they quote is dropped).
fn csv_category(reason: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "missing ID",
        "duplicate ID",
        "missing value",
        "not a number",
        "not a finite number",
        "ID column not in header",
        "label column not in header",
        "label must be 0 or 1",
    ];
    KNOWN
        .into_iter()
        .find(|k| reason.starts_with(k))
        .unwrap_or("unreadable row")
}

/// `s` with the text between each pair of backticks replaced by `…`.
fn redact_quoted(s: &str) -> String {
    s.split('`')
        .enumerate()
        .map(|(i, part)| if i % 2 == 1 { "…" } else { part })
        .collect::<Vec<_>>()
        .join("`")
}

impl TrainError {
    /// What may leave this party about this error (sent to peers in the opening exchange
    /// and in aborts): its category, a line number of this party's input and the peer at
    /// fault — never a path, an ID, a cell value or a column name of the input.
    pub fn public(&self) -> String {
        let clean = confide_mpc::clean;
        match self {
            TrainError::Mpc(e) => e.public(),
            TrainError::Csv { line, reason, .. } => {
                format!("input: line {line}: {}", csv_category(reason))
            }
            // Written by this crate about shapes and counts; anything it quotes (an ID,
            // a value, a column name) is redacted.
            TrainError::Data(m) => format!("invalid input data: {}", redact_quoted(&clean(m))),
            TrainError::Params(_) => "invalid parameters".into(),
            TrainError::Peer { peer, reason } => {
                format!("peer `{}`: {}", clean(peer), clean(reason))
            }
            TrainError::Options(m) => clean(m),
            e @ TrainError::TooFewRows { .. } => clean(&e.to_string()),
            TrainError::Psi(e) => format!("row alignment (psi): {}", e.public()),
            TrainError::NoSharedModel { model, .. } => {
                format!("no shared model `{}` at this party", clean(model))
            }
            TrainError::ShareFile { .. } => "a stored model share is not usable".into(),
            TrainError::Io { .. } => "input/output error on a file of this party".into(),
            TrainError::Checkpoint(m) if !m.contains('/') => format!("checkpoint: {}", clean(m)),
            TrainError::Checkpoint(_) => "checkpoint: unusable at this party".into(),
            TrainError::Internal(_) => "internal error".into(),
            TrainError::Local { public, .. } => public.clone(),
        }
    }

    /// A copy of this error as text, keeping both renderings.
    pub fn relay(&self) -> Self {
        Self::Local {
            message: self.to_string(),
            public: self.public(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_rendering_keeps_line_and_category_but_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret-dir.csv");
        std::fs::write(
            &path,
            "id,x\nr1,1\nr2,SECRET-CELL\nSECRET-ID,2\nSECRET-ID,3\n",
        )
        .unwrap();
        let e = crate::load_table(&path, "id", None).unwrap_err();
        let (full, public) = (e.to_string(), e.public());
        assert!(
            full.contains("SECRET-CELL") && full.contains("secret-dir"),
            "{full}"
        );
        assert_eq!(public, "input: line 3: not a number");
        let relayed = e.relay();
        assert_eq!(relayed.to_string(), full);
        assert_eq!(relayed.public(), public);
        std::fs::write(&path, "id,x\nSECRET-ID,2\nSECRET-ID,3\n").unwrap();
        let e = crate::load_table(&path, "id", None).unwrap_err();
        assert!(e.to_string().contains("SECRET-ID"));
        assert_eq!(e.public(), "input: line 3: duplicate ID");
        let e = TrainError::Peer {
            peer: "b\0b".into(),
            reason: "x\u{1b}[2J".into(),
        };
        assert_eq!(e.public(), "peer `b?b`: x?[2J");
        let e = TrainError::Data("common ID `SECRET-ID` is not in the table".into());
        assert_eq!(
            e.public(),
            "invalid input data: common ID `…` is not in the table"
        );
    }
}
