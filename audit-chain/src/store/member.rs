//! The member role: check and apply the sequencer's updates, cosign, detect
//! equivocation, record final checkpoints.

use std::collections::HashSet;

use rayon::prelude::*;

use super::{AuditStore, ENTRIES, META, META_FINAL, META_HALT, META_SIGNED};
use crate::checkpoint::{Checkpoint, Cosignature, Equivocation, SignedCheckpoint};
use crate::entry::Entry;
use crate::error::{AuditError, Result};
use crate::merkle::{Hash, verify_consistency};

impl AuditStore {
    /// Member: take the entries after the local log up to the sequencer-signed
    /// `checkpoint`, check every entry's signature, recompute the root, check
    /// the consistency proof from the last cosigned checkpoint, store durably
    /// (entries and the new cosigned state in one transaction), and only then
    /// return this member's cosignature.
    pub fn apply(
        &mut self,
        entries: &[Entry],
        checkpoint: &SignedCheckpoint,
        consistency_proof: &[Hash],
    ) -> Result<Cosignature> {
        if self.is_sequencer() {
            return Err(AuditError::WrongRole(
                "the sequencer does not apply updates",
            ));
        }
        self.ensure_can_sign()?;
        let cp = &checkpoint.checkpoint;
        if cp.origin != self.origin {
            return Err(AuditError::BadSignature(
                "checkpoint is for another log".into(),
            ));
        }
        if self.promised > self.view {
            return Err(self.old_view(self.view));
        }
        let seq = self.sequencer().to_string();
        checkpoint.verify_signer(&seq, self.key_of(&seq)?)?;
        let have = self.tree.size();
        if cp.size <= have {
            self.check_not_equivocating(checkpoint)?;
            if cp.size < have {
                return Err(AuditError::Stale { got: cp.size, have });
            }
            return Ok(self.cosign(cp));
        }
        if entries.len() as u64 != cp.size - have {
            return Err(AuditError::InvalidEntry(format!(
                "expected entries {have}..{}, got {}",
                cp.size,
                entries.len()
            )));
        }
        entries.par_iter().try_for_each(|e| self.check_entry(e))?;
        let mut batch = HashSet::new();
        let hashes: Vec<_> = entries.iter().map(Entry::leaf_hash).collect();
        if hashes.iter().any(|h| !batch.insert(*h)) || self.any_known(&hashes)? {
            return Err(AuditError::InvalidEntry("duplicate entry in update".into()));
        }
        let old_root = self.tree.root();
        for e in entries {
            self.tree.push(e.leaf_hash());
        }
        let result = self.commit_applied(entries, checkpoint, have, &old_root, consistency_proof);
        if let Err(e) = result {
            self.truncate_tree(have);
            return Err(e);
        }
        self.signed = Some(checkpoint.clone());
        Ok(self.cosign(cp))
    }

    fn commit_applied(
        &mut self,
        entries: &[Entry],
        checkpoint: &SignedCheckpoint,
        have: u64,
        old_root: &Hash,
        proof: &[Hash],
    ) -> Result<()> {
        let cp = &checkpoint.checkpoint;
        if self.tree.root() != cp.root {
            return Err(AuditError::RootMismatch {
                size: cp.size,
                why: "the entries received do not hash to the checkpoint root".into(),
            });
        }
        if !verify_consistency(have, cp.size, old_root, &cp.root, proof) {
            return Err(AuditError::InvalidProof(
                "consistency proof from the last cosigned checkpoint",
            ));
        }
        let note = checkpoint.to_note();
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(ENTRIES)?;
            for (i, e) in entries.iter().enumerate() {
                t.insert(have + i as u64, e.as_bytes())?;
            }
            txn.open_table(META)?.insert(META_SIGNED, note.as_bytes())?;
        }
        Self::write_indexes(&txn, have, entries)?;
        txn.commit()?;
        Ok(())
    }

    fn cosign(&self, cp: &Checkpoint) -> Cosignature {
        Cosignature {
            size: cp.size,
            root: cp.root,
            signature: cp.sign(&self.me, &self.key),
        }
    }

    /// A sequencer-signed checkpoint at a size this member already holds must
    /// match the local root there; otherwise record the evidence and halt.
    fn check_not_equivocating(&mut self, checkpoint: &SignedCheckpoint) -> Result<()> {
        let cp = &checkpoint.checkpoint;
        let mine = self
            .tree
            .root_at(cp.size, &self.leaf_source())
            .ok_or_else(|| {
                AuditError::NotFound(format!("size {} is beyond the local log", cp.size))
            })?;
        if mine == cp.root {
            return Ok(());
        }
        let Some(prev) = self.signed.clone() else {
            return Err(AuditError::RootMismatch {
                size: cp.size,
                why: "sequencer-signed root differs from the empty log".into(),
            });
        };
        let signer = |c: &SignedCheckpoint| c.signatures.first().map(|s| s.name.clone());
        if signer(&prev) != signer(checkpoint) {
            // Two sequencers of different views disagree: not one member's equivocation
            // (a view's base decides; see `enter_view`).
            return Err(AuditError::RootMismatch {
                size: cp.size,
                why: "the checkpoint contradicts the local log signed in another view".into(),
            });
        }
        let ev = Equivocation {
            note_a: prev.to_note(),
            size_a: prev.checkpoint.size,
            note_b: checkpoint.to_note(),
            size_b: cp.size,
            alt_root: mine,
            proof: self.consistency_proof(cp.size, prev.checkpoint.size)?,
        };
        let json = serde_json::to_vec(&ev)
            .map_err(|e| AuditError::malformed("equivocation evidence", e.to_string()))?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(META_HALT, json.as_slice())?;
        txn.commit()?;
        self.halt = Some(ev.clone());
        Err(AuditError::Equivocation(Box::new(ev)))
    }

    /// Member: record a final checkpoint broadcast by the sequencer (quorum
    /// checked, root checked against the local log; a sequencer-signed one that
    /// contradicts the local log is handled as equivocation).
    pub fn record_final(&mut self, fin: &SignedCheckpoint) -> Result<()> {
        fin.verify_quorum(&self.genesis, &self.keys)?;
        let cp = &fin.checkpoint;
        if self
            .final_cp
            .as_ref()
            .is_some_and(|f| f.checkpoint.size >= cp.size)
        {
            return Ok(());
        }
        if cp.size > self.tree.size() {
            return Err(AuditError::NotFound(format!(
                "final checkpoint at {} is beyond the local log ({}); catch up first",
                cp.size,
                self.tree.size()
            )));
        }
        if self.tree.root_at(cp.size, &self.leaf_source()) != Some(cp.root) {
            if !self.is_sequencer() && fin.signatures.iter().any(|s| s.name == self.sequencer()) {
                self.check_not_equivocating(fin)?;
            }
            return Err(AuditError::RootMismatch {
                size: cp.size,
                why: "final checkpoint contradicts the local log".into(),
            });
        }
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_FINAL, fin.to_note().as_bytes())?;
        txn.commit()?;
        self.final_cp = Some(fin.clone());
        Ok(())
    }
}
