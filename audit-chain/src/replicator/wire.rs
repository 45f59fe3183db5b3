//! The replication messages, typed, with lossless conversions to and from the
//! plain fields of the daemon's `ReplicateRequest` / `ReplicateReply`
//! (bytes, notes, JSON). Parsing never panics.

use crate::checkpoint::{Cosignature, FinalCheckpoint, SignedCheckpoint};
use crate::entry::Entry;
use crate::error::{AuditError, Result};
use crate::merkle::Hash;
use crate::view::NewView;

/// Most hashes accepted in a consistency proof (a proof has at most ~2·log2(size)).
pub const MAX_PROOF_HASHES: usize = 128;
/// Most final checkpoints accepted in one batch.
pub const MAX_FINALS_PER_BATCH: usize = 16;

/// One `Audit.Replicate` request, sequencer → member.
///
/// * probe: everything empty (the member answers with its size);
/// * update: `entries` `[first_index, checkpoint size)`, the sequencer-signed
///   `checkpoint`, and a consistency proof from `first_index` to it;
/// * finals: final checkpoints the member already holds the entries of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicateBatch {
    /// Index of the first entry: the member's size as the sequencer knows it.
    pub first_index: u64,
    /// Entries from `first_index` up to the checkpoint's size.
    pub entries: Vec<Entry>,
    /// The sequencer-signed checkpoint to cosign.
    pub checkpoint: Option<SignedCheckpoint>,
    /// Consistency proof from size `first_index` to the checkpoint.
    pub consistency_proof: Vec<Hash>,
    /// Final (quorum-signed) checkpoints for the member to record.
    pub final_checkpoints: Vec<FinalCheckpoint>,
    /// The sequencer's view.
    pub view: u64,
    /// The certificate of that view (after a view change), for members not in it yet.
    pub new_view: Option<NewView>,
}

impl ReplicateBatch {
    /// Whether this only asks the member for its size.
    pub fn is_probe(&self) -> bool {
        self.checkpoint.is_none() && self.entries.is_empty() && self.final_checkpoints.is_empty()
    }

    /// Parse the wire fields (as in `ReplicateRequest`): entry bytes, the
    /// checkpoint note (empty: none), proof hashes, final notes, the view and its
    /// certificate (JSON, empty: none).
    pub fn from_wire(
        first_index: u64,
        entries: &[Vec<u8>],
        checkpoint: &str,
        consistency_proof: &[Vec<u8>],
        final_checkpoints: &[String],
        (view, new_view): (u64, &[u8]),
    ) -> Result<Self> {
        if consistency_proof.len() > MAX_PROOF_HASHES {
            return Err(AuditError::malformed("replicate batch", "proof too long"));
        }
        if final_checkpoints.len() > MAX_FINALS_PER_BATCH {
            return Err(AuditError::malformed(
                "replicate batch",
                "too many final checkpoints",
            ));
        }
        Ok(ReplicateBatch {
            first_index,
            entries: entries
                .iter()
                .map(|b| Entry::from_bytes(b))
                .collect::<Result<_>>()?,
            checkpoint: match checkpoint {
                "" => None,
                note => Some(SignedCheckpoint::from_note(note)?),
            },
            consistency_proof: consistency_proof
                .iter()
                .map(|h| {
                    Hash::try_from(h.as_slice()).map_err(|_| {
                        AuditError::malformed("consistency proof", "hash not 32 bytes")
                    })
                })
                .collect::<Result<_>>()?,
            final_checkpoints: final_checkpoints
                .iter()
                .map(|n| SignedCheckpoint::from_note(n))
                .collect::<Result<_>>()?,
            view,
            new_view: new_view_of(new_view)?,
        })
    }

    /// The view certificate as JSON, empty when there is none.
    pub fn new_view_json(&self) -> Result<Vec<u8>> {
        self.new_view
            .as_ref()
            .map_or(Ok(Vec::new()), NewView::to_json)
    }

    /// The entries' bytes (`ReplicateRequest.entries`).
    pub fn entry_bytes(&self) -> Vec<Vec<u8>> {
        self.entries.iter().map(|e| e.as_bytes().to_vec()).collect()
    }

    /// The checkpoint note, empty when there is none (`ReplicateRequest.checkpoint`).
    pub fn checkpoint_note(&self) -> String {
        self.checkpoint
            .as_ref()
            .map(SignedCheckpoint::to_note)
            .unwrap_or_default()
    }

    /// The proof hashes (`ReplicateRequest.consistency_proof`).
    pub fn proof_bytes(&self) -> Vec<Vec<u8>> {
        self.consistency_proof.iter().map(|h| h.to_vec()).collect()
    }

    /// The final checkpoint notes (`ReplicateRequest.final_checkpoints`).
    pub fn final_notes(&self) -> Vec<String> {
        self.final_checkpoints
            .iter()
            .map(SignedCheckpoint::to_note)
            .collect()
    }
}

/// A member's answer to a [`ReplicateBatch`] (`ReplicateReply`).
///
/// No cosignature and a `size` other than the batch's `first_index` means
/// "send me the entries from index `size`" (catch-up from there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicateAck {
    /// Entries the member holds durably after handling the batch.
    pub size: u64,
    /// Its cosignature on the batch's checkpoint, if it cosigned.
    pub cosignature: Option<Cosignature>,
    /// The certificate of a later view the member is in: the sender is no longer the
    /// sequencer.
    pub new_view: Option<NewView>,
}

fn new_view_of(json: &[u8]) -> Result<Option<NewView>> {
    if json.is_empty() {
        Ok(None)
    } else {
        NewView::from_json(json).map(Some)
    }
}

impl ReplicateAck {
    /// Parse the wire fields (`ReplicateReply`): cosignature JSON (empty: none), size, and
    /// a later view's certificate (JSON, empty: none).
    pub fn from_wire(cosignature_json: &str, size: u64, new_view: &[u8]) -> Result<Self> {
        let cosignature = match cosignature_json {
            "" => None,
            json => Some(
                serde_json::from_str(json)
                    .map_err(|e| AuditError::malformed("cosignature", e.to_string()))?,
            ),
        };
        Ok(ReplicateAck {
            size,
            cosignature,
            new_view: new_view_of(new_view)?,
        })
    }

    /// The view certificate as JSON, empty when there is none (`ReplicateReply.new_view`).
    pub fn new_view_json(&self) -> Result<Vec<u8>> {
        self.new_view
            .as_ref()
            .map_or(Ok(Vec::new()), NewView::to_json)
    }

    /// The cosignature as JSON, empty when there is none (`ReplicateReply.cosignature`).
    pub fn cosignature_json(&self) -> Result<String> {
        self.cosignature.as_ref().map_or(Ok(String::new()), |c| {
            serde_json::to_string(c)
                .map_err(|e| AuditError::malformed("cosignature", e.to_string()))
        })
    }
}
