//! The crate's single error type.

use crate::evidence::Equivocation;

/// Everything that can go wrong in the audit chain.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The embedded database failed (I/O, corruption detected by redb, ...).
    #[error("audit storage: {0}")]
    Storage(#[from] redb::Error),
    /// A file could not be read or written.
    #[error("audit file I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The genesis file is unusable.
    #[error("genesis: {0}")]
    Genesis(String),
    /// Bytes or text from a peer or a file do not parse.
    #[error("malformed {what}: {why}")]
    Malformed {
        /// Which object failed to parse.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// A signature does not verify (or is by a key we do not know).
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// A name that is not a genesis member.
    #[error("unknown member {0:?}")]
    UnknownMember(String),
    /// A Merkle inclusion or consistency proof does not verify.
    #[error("invalid proof: {0}")]
    InvalidProof(&'static str),
    /// Entries do not hash to the root the checkpoint claims.
    #[error("root mismatch at size {size}: {why}")]
    RootMismatch {
        /// Tree size at which the roots differ.
        size: u64,
        /// Context.
        why: String,
    },
    /// This store refuses to sign or cosign until an operator intervenes
    /// (stored entries disagree with the last signed state).
    #[error("refusing to cosign: {0}")]
    Fault(String),
    /// This sequencer's store was corrupt and waits to be rebuilt from the members'
    /// copies; it appends and signs nothing until then.
    #[error(
        "the sequencer's audit store is being rebuilt from the other members' copies (it was corrupt: {0})"
    )]
    Rebuilding(String),
    /// The sequencer equivocated; this member stopped cosigning. Carries the evidence.
    #[error("sequencer equivocation detected at size {}; cosigning stopped", .0.size_b)]
    Equivocation(Box<Equivocation>),
    /// This member stopped cosigning earlier because of an equivocation (see `halt_evidence`).
    #[error("cosigning halted after an earlier equivocation")]
    Halted,
    /// A checkpoint older than the one already accepted, but consistent with it.
    #[error("stale checkpoint: size {got} is below the accepted size {have}")]
    Stale {
        /// Size of the stale checkpoint.
        got: u64,
        /// Size already accepted.
        have: u64,
    },
    /// A message of an older view than this member's (the sender was replaced as sequencer).
    #[error("view {got} is over: this member is at view {have} (sequencer `{sequencer}`)")]
    OldView {
        /// The view of the message.
        got: u64,
        /// This member's view.
        have: u64,
        /// The sequencer of this member's view.
        sequencer: String,
    },
    /// The operation is only for the sequencer (or only for a non-sequencer member).
    #[error("wrong role: {0}")]
    WrongRole(&'static str),
    /// Not enough valid cosignatures from genesis members.
    #[error("quorum not met: {have} valid signatures, {need} needed")]
    QuorumNotMet {
        /// Valid distinct member signatures found.
        have: usize,
        /// Quorum from genesis.
        need: usize,
    },
    /// No entry (or no final checkpoint) for the request.
    #[error("not found: {0}")]
    NotFound(String),
    /// An entry or argument violates the entry rules (length limits, names, log id).
    #[error("invalid entry: {0}")]
    InvalidEntry(String),
    /// A member's replication reply breaks the protocol (no request in flight,
    /// a cosignature for another checkpoint or by someone else, no progress, ...).
    #[error("replication with {member:?}: {why}")]
    Replication {
        /// The member whose reply was refused.
        member: String,
        /// Why.
        why: String,
    },
}

impl AuditError {
    pub(crate) fn replication(member: &str, why: impl Into<String>) -> Self {
        AuditError::Replication {
            member: member.to_string(),
            why: why.into(),
        }
    }

    pub(crate) fn malformed(what: &'static str, why: impl Into<String>) -> Self {
        AuditError::Malformed {
            what,
            why: why.into(),
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for AuditError {
            fn from(e: $t) -> Self {
                AuditError::Storage(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Result alias.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;
