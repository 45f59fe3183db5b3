//! The member side of replication: answering the sequencer's batches and
//! serving `Fetch`.

use super::wire::{ReplicateAck, ReplicateBatch};
use crate::checkpoint::{FinalCheckpoint, SignedCheckpoint};
use crate::entry::Entry;
use crate::error::{AuditError, Result};
use crate::store::AuditStore;

use super::MAX_BATCH_ENTRIES;

/// Member: handle one replicate batch from `from`, which must be the sequencer of the
/// batch's view.
///
/// * A batch of an older view than this member's is answered with the current view's
///   certificate and nothing else (the sender learns it was replaced); a batch of a later
///   view must carry that view's certificate, and the member enters the view first
///   ([`AuditStore::enter_view`]).
/// * A checkpoint beyond the local log, with entries starting at the local
///   size: [`AuditStore::apply`] (signatures, root, consistency proof, durable
///   commit), then cosign.
/// * A checkpoint beyond the local log whose entries start elsewhere (the
///   sequencer's view of this member is stale): nothing is applied; the answer
///   carries the local size so the sequencer sends from there.
/// * A checkpoint at or below the local size: checked against the local log
///   (equivocation: evidence stored, cosigning stops, error returned); the
///   same size is cosigned again (an idempotent retry), a smaller consistent
///   one is a harmless replay answered with the size only.
/// * Then every final checkpoint the member holds the entries of is recorded.
pub fn handle_replicate(
    store: &mut AuditStore,
    from: &str,
    batch: &ReplicateBatch,
) -> Result<ReplicateAck> {
    if batch.view < store.view() {
        return Ok(ReplicateAck {
            size: store.size(),
            cosignature: None,
            new_view: store.new_view().cloned(),
        });
    }
    if batch.view > store.view() {
        match &batch.new_view {
            Some(nv) if nv.view == batch.view => {
                store.enter_view(nv)?;
            }
            _ => {
                return Err(AuditError::malformed(
                    "replicate batch",
                    "a later view without its certificate",
                ));
            }
        }
    }
    if from != store.sequencer() {
        return Err(AuditError::WrongRole(
            "replicate batches come from the sequencer of the view",
        ));
    }
    if store.is_sequencer() {
        return Err(AuditError::WrongRole(
            "the sequencer does not take replicate batches",
        ));
    }
    let mut cosignature = None;
    if let Some(cp) = &batch.checkpoint {
        let have = store.size();
        if cp.checkpoint.size <= have {
            match store.apply(&[], cp, &[]) {
                Ok(c) => cosignature = Some(c),
                Err(AuditError::Stale { .. }) => {}
                Err(e) => return Err(e),
            }
        } else if batch.first_index == have {
            cosignature = Some(store.apply(&batch.entries, cp, &batch.consistency_proof)?);
        }
    }
    for fin in &batch.final_checkpoints {
        if fin.checkpoint.size <= store.size() {
            store.record_final(fin)?;
        }
    }
    Ok(ReplicateAck {
        size: store.size(),
        cosignature,
        new_view: None,
    })
}

/// What a `Fetch` returns: a range of entries and the latest final checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchBatch {
    /// Entries from the requested index, at most the clamped limit.
    pub entries: Vec<Entry>,
    /// The latest final checkpoint this store knows.
    pub final_checkpoint: Option<FinalCheckpoint>,
    /// The latest checkpoint this store signed or cosigned (with the sequencer's
    /// signature): what a rebuilding sequencer adopts ([`AuditStore::restore`]).
    pub latest_signed: Option<SignedCheckpoint>,
}

/// Any member: answer `Fetch(from_index, limit)`; `limit` is clamped to
/// `1..=`[`MAX_BATCH_ENTRIES`], indexes past the log give no entries.
pub fn serve_fetch(store: &AuditStore, from_index: u64, limit: u64) -> Result<FetchBatch> {
    let limit = limit.clamp(1, MAX_BATCH_ENTRIES);
    let to = store.size().min(from_index.saturating_add(limit));
    Ok(FetchBatch {
        entries: store.entries_range(from_index.min(to), to)?,
        final_checkpoint: store.latest_final().cloned(),
        latest_signed: store.latest_signed().cloned(),
    })
}
