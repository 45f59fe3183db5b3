//! "Log before answer": a compute node evaluates its OPRF share only on blinded elements bound
//! in a logged audit entry of the caller.
//!
//! The caller logs an entry whose request fingerprint is [`blinded_points_hash`] of the exact
//! elements it will send, and passes the entry with its sequencer-signed inclusion promise as
//! opaque `evidence`. The node recomputes the hash, asks its [`AuditGate`] (the daemon verifies
//! the entry, the signatures, that the entry names the caller and carries this hash), refuses
//! otherwise, and records SHA-256(evidence) so that a replay is refused: one chain record
//! authorises exactly one evaluation per node.

use sha2::{Digest, Sha256};

use crate::codec::Purpose;
use crate::error::Result;
use crate::oprf::Element;

/// Domain separator of [`blinded_points_hash`].
pub const BLINDED_POINTS_DST: &[u8] = b"confide-risk/v1/blinded-points";

/// Verifies that `evidence` is a logged audit entry of `querier` bound to `blinded_points_hash`.
pub trait AuditGate: Send + Sync {
    /// `Ok(())` to allow the evaluation, an error (typically [`crate::RiskError::AuditRefused`])
    /// to refuse it.
    fn check(&self, querier: &str, blinded_points_hash: [u8; 32], evidence: &[u8]) -> Result<()>;
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

/// SHA-256 of the evidence bytes: the key under which used evidence is remembered.
pub fn evidence_id(evidence: &[u8]) -> [u8; 32] {
    Sha256::digest(evidence).into()
}
