//! The crate's one error type.

use confide_mpc::transport::TransportError;

/// Everything that can go wrong in the risk protocols.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// An input the caller supplied is unusable (e.g. an ID longer than 65,535 bytes).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Bytes from a peer or a file did not decode.
    #[error("malformed message: {0}")]
    Decode(String),
    /// A received group element is not a valid, non-identity ristretto255 encoding.
    #[error("invalid group element at position {0}")]
    InvalidElement(usize),
    /// The redb index failed.
    #[error("risk index storage error: {0}")]
    Storage(String),
    /// A risk dataset (CSV) is malformed.
    #[error("dataset error at line {line}: {message}")]
    Dataset {
        /// 1-based line number in the file (the header is line 1).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The audit gate refused the evaluation (not logged, or evidence does not match).
    #[error("audit gate refused the request of `{querier}`: {reason}")]
    AuditRefused {
        /// Who asked.
        querier: String,
        /// Why the gate refused.
        reason: String,
    },
    /// The same audit evidence was presented twice.
    #[error(
        "audit evidence replayed by `{0}`: each logged entry authorises exactly one evaluation"
    )]
    Replay(String),
    /// The member exceeded its rate (of query or of ingest evaluations).
    #[error(
        "rate limit: member `{member}` asked for {requested} IDs but only {available} of its \
         {limit} IDs per {per} are left; retry in {retry_after_ms} ms"
    )]
    RateLimited {
        /// The member.
        member: String,
        /// IDs in the refused request.
        requested: u64,
        /// Tokens left in its bucket.
        available: u64,
        /// The configured rate: IDs per `per`.
        limit: u64,
        /// The rate's window: "minute" or "hour".
        per: &'static str,
        /// When enough tokens will be there (never, if the batch exceeds the burst size).
        retry_after_ms: u64,
    },
    /// An ingest upload is inconsistent (unknown upload id, wrong row count...).
    #[error("ingest protocol error: {0}")]
    Ingest(String),
    /// The peer answered with an error.
    #[error("compute node `{node}` refused: {message}")]
    Remote {
        /// The node.
        node: String,
        /// Its error message.
        message: String,
    },
    /// The peer answered with an unexpected message.
    #[error("protocol error with `{peer}`: {message}")]
    Protocol {
        /// The peer.
        peer: String,
        /// What went wrong.
        message: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Evidence could not be obtained from the caller's audit log.
    #[error("audit log: {0}")]
    AuditLog(String),
    /// A lookup is not covered by a logged, evaluated query entry of the caller.
    #[error("lookup refused for `{querier}`: {reason}")]
    LookupRefused {
        /// Who asked.
        querier: String,
        /// Why.
        reason: String,
    },
    /// A node-state file (key share, pair seed, directory) could not be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The request is not permitted for this caller (e.g. the pair seed asked by anyone but S1).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

impl RiskError {
    /// What may leave this party about this error (a compute node's answer to a caller,
    /// an abort): its category, a line number and the party at fault — never a path, an
    /// ID or a figure of the input.
    pub fn public(&self) -> String {
        let clean = confide_mpc::clean;
        match self {
            RiskError::InvalidInput(_) => "invalid input".into(),
            RiskError::Decode(_) => "malformed message".into(),
            RiskError::Storage(_) => "risk index storage error".into(),
            RiskError::Dataset { line, .. } => format!("dataset error at line {line}"),
            RiskError::Transport(e) => e.public(),
            RiskError::AuditLog(_) => "audit log error".into(),
            RiskError::File { .. } => "a node-state file could not be used".into(),
            RiskError::Remote { node, message } => {
                format!("compute node `{}` refused: {}", clean(node), clean(message))
            }
            // Written by this crate about the request itself, not about any input data.
            e => clean(&e.to_string()),
        }
    }

    pub(crate) fn storage(e: impl Into<redb::Error>) -> Self {
        Self::Storage(e.into().to_string())
    }
}

/// Result alias for this crate.
pub type Result<T, E = RiskError> = std::result::Result<T, E>;
