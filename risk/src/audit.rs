//! "Log before answer": a compute node evaluates its OPRF share only on blinded elements bound
//! in a logged audit entry of the caller, and looks tags up only under such an entry.
//!
//! The caller logs an entry whose request fingerprint is [`blinded_points_hash`] of the exact
//! elements it will send, and passes the entry (in the daemon: with its inclusion proof in a
//! checkpoint cosigned by a quorum of members, and the sequencer-signed promise) as opaque
//! `evidence`. The node recomputes the hash and asks its [`AuditGate`] (the daemon
//! verifies the entry, the signatures, that the entry names the caller and carries this hash).
//! The gate answers with the [`LoggedEntry`] it verified: a *canonical* identifier of the entry
//! (so that one entry re-encoded differently is still the same entry) and the time it was
//! logged (the same for both nodes). The node refuses otherwise, and records the identifier so
//! that a replay is refused: one chain record authorises exactly one evaluation per node, and
//! lookups of at most as many tags as it evaluated.

use sha2::{Digest, Sha256};

use crate::codec::Purpose;
use crate::error::Result;
use crate::oprf::Element;

/// Domain separator of [`blinded_points_hash`].
pub const BLINDED_POINTS_DST: &[u8] = b"confide-risk/v1/blinded-points";

/// What an [`AuditGate`] verified: which logged entry authorises the request, and when it was
/// logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggedEntry {
    /// A canonical identifier of the logged entry, independent of how the evidence encodes it:
    /// e.g. the entry's RFC 6962 leaf hash (which the sequencer's inclusion promise signs).
    /// Replay protection keys on it.
    pub id: [u8; 32],
    /// When the entry was logged (ms since the Unix epoch), as both compute nodes see it: the
    /// time signed in the sequencer's inclusion promise. `queried_by`'s retention window is
    /// measured on it, so both nodes apply it in step. `None`: the gate cannot tell; the node
    /// then uses its own clock (the two nodes may disagree at the window's edge).
    pub logged_at_ms: Option<u64>,
}

/// Verifies that `evidence` is a logged audit entry of `querier` bound to `blinded_points_hash`.
///
/// Implement [`verify`](Self::verify) (and [`check`](Self::check) as
/// `self.verify(..).map(|_| ())`). A gate that implements only `check` gets the legacy
/// behaviour of `verify`'s default: evidence identified by the SHA-256 of its bytes (a
/// re-encoded entry then escapes replay protection) and no logged time.
pub trait AuditGate: Send + Sync {
    /// `Ok(())` to allow the request, an error (typically [`crate::RiskError::AuditRefused`])
    /// to refuse it.
    fn check(&self, querier: &str, blinded_points_hash: [u8; 32], evidence: &[u8]) -> Result<()>;

    /// As [`check`](Self::check), returning the verified entry's canonical identity and time.
    fn verify(
        &self,
        querier: &str,
        blinded_points_hash: [u8; 32],
        evidence: &[u8],
    ) -> Result<LoggedEntry> {
        self.check(querier, blinded_points_hash, evidence)?;
        Ok(LoggedEntry {
            id: evidence_id(evidence),
            logged_at_ms: None,
        })
    }
}

/// The fingerprint an audit entry must carry for an evaluation request:
/// `SHA-256(DST ‖ purpose ‖ u32le(count) ‖ element_1 ‖ … ‖ element_n)`.
pub fn blinded_points_hash(purpose: Purpose, elements: &[Element]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BLINDED_POINTS_DST);
    h.update([match purpose {
        Purpose::Ingest => 1u8,
        Purpose::Query => 2u8,
    }]);
    h.update((elements.len() as u32).to_le_bytes());
    for e in elements {
        h.update(e);
    }
    h.finalize().into()
}

/// SHA-256 of the evidence bytes: the identifier [`AuditGate::verify`]'s default (legacy)
/// implementation gives a piece of evidence.
pub fn evidence_id(evidence: &[u8]) -> [u8; 32] {
    Sha256::digest(evidence).into()
}
