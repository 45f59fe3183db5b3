//! The sequencer role: append entries, sign checkpoints, hand members their
//! updates, gather cosignatures into final checkpoints.

use std::collections::HashSet;
use std::collections::btree_map;

use rayon::prelude::*;
use redb::ReadableDatabase;

use super::{
    AuditStore, CHECKPOINTS, ENTRIES, MAX_PENDING, META, META_FINAL, META_SIGNED, Update,
    note_from_db, now_ms,
};
use crate::checkpoint::NoteSignature;
use crate::checkpoint::{
    Checkpoint, Cosignature, FinalCheckpoint, InclusionPromise, SignedCheckpoint,
};
use crate::entry::{Entry, EntryBody};
use crate::error::{AuditError, Result};

impl AuditStore {
    /// Sequencer: sign `body` as this member and append it. Returns at once
    /// (after the durable commit) with the signed inclusion promise.
    pub fn append(&mut self, body: EntryBody) -> Result<(Entry, InclusionPromise)> {
        let mut v = self.append_batch(vec![body])?;
        v.pop()
            .ok_or_else(|| AuditError::InvalidEntry("no entry appended".into()))
    }

    /// Sequencer: sign and append several bodies of this member in one transaction.
    pub fn append_batch(
        &mut self,
        bodies: Vec<EntryBody>,
    ) -> Result<Vec<(Entry, InclusionPromise)>> {
        self.require_sequencer()?;
        let entries = bodies
            .into_par_iter()
            .map(|b| self.sign_entry(b))
            .collect::<Result<Vec<_>>>()?;
        let promises = self.commit_appends(&entries)?;
        Ok(entries.into_iter().zip(promises).collect())
    }

    /// Sequencer: append entries signed by any members (signatures verified),
    /// all in one transaction; returns one promise per entry, in order.
    pub fn append_signed(&mut self, entries: &[Entry]) -> Result<Vec<InclusionPromise>> {
        self.require_sequencer()?;
        entries.par_iter().try_for_each(|e| self.check_entry(e))?;
        self.commit_appends(entries)
    }

    /// Sequencer: a fresh promise (timed now) for an entry the log already holds, as when
    /// an append is retried after a view change; `None` if the log does not hold it.
    pub fn promise_again(&self, entry: &Entry) -> Result<Option<InclusionPromise>> {
        self.require_sequencer()?;
        self.ensure_can_sign()?;
        let leaf = entry.leaf_hash();
        Ok(self.index_of(&leaf)?.map(|index| {
            InclusionPromise::sign(
                index,
                leaf,
                self.log_id,
                now_ms(),
                (&self.me, self.view),
                &self.key,
            )
        }))
    }

    fn commit_appends(&mut self, entries: &[Entry]) -> Result<Vec<InclusionPromise>> {
        self.ensure_can_sign()?;
        let mut batch = HashSet::new();
        let hashes: Vec<_> = entries.iter().map(Entry::leaf_hash).collect();
        for (e, h) in entries.iter().zip(&hashes) {
            if !batch.insert(*h) {
                return Err(AuditError::InvalidEntry(format!(
                    "entry of job {:?} already in the log",
                    e.body().job_id
                )));
            }
        }
        if self.any_known(&hashes)? {
            return Err(AuditError::InvalidEntry(
                "an entry of the batch is already in the log".into(),
            ));
        }
        let start = self.tree.size();
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(ENTRIES)?;
            for (i, e) in entries.iter().enumerate() {
                t.insert(start + i as u64, e.as_bytes())?;
            }
        }
        Self::write_indexes(&txn, start, entries)?;
        txn.commit()?;
        for e in entries {
            self.push_leaf(e);
        }
        let ts = now_ms();
        let (log_id, me, key, view) = (self.log_id, self.me.as_str(), &self.key, self.view);
        Ok(entries
            .par_iter()
            .enumerate()
            .map(|(i, e)| {
                InclusionPromise::sign(start + i as u64, e.leaf_hash(), log_id, ts, (me, view), key)
            })
            .collect())
    }

    /// Sequencer: sign a checkpoint over all committed entries (persisting it
    /// first). Returns the existing one when the size has not changed.
    pub fn checkpoint(&mut self) -> Result<SignedCheckpoint> {
        self.require_sequencer()?;
        self.ensure_can_sign()?;
        let size = self.tree.size();
        if let Some(sc) = &self.signed
            && sc.checkpoint.size == size
        {
            return Ok(sc.clone());
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: self.tree.root(),
        };
        let sc = SignedCheckpoint {
            signatures: vec![checkpoint.sign(&self.me, &self.key)],
            checkpoint,
        };
        let note = sc.to_note();
        let txn = self.db.begin_write()?;
        {
            txn.open_table(META)?.insert(META_SIGNED, note.as_bytes())?;
            txn.open_table(CHECKPOINTS)?.insert(size, note.as_bytes())?;
        }
        txn.commit()?;
        self.signed = Some(sc.clone());
        self.pending.insert(size, sc.clone());
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_first();
        }
        if self.genesis.quorum == 1 {
            self.finalize(sc.clone())?;
        }
        Ok(sc)
    }

    /// Sequencer: what a member at `member_size` needs to catch up, at most
    /// about `max_entries` entries at a time (stepping through earlier signed
    /// checkpoints when the gap is larger; the member calls `apply` per step).
    pub fn update_for(&self, member_size: u64, max_entries: u64) -> Result<Update> {
        self.require_sequencer()?;
        let latest = self
            .signed
            .clone()
            .ok_or_else(|| AuditError::NotFound("no checkpoint signed yet".into()))?;
        let mut checkpoint = latest;
        if checkpoint.checkpoint.size > member_size.saturating_add(max_entries) {
            let rtx = self.db.begin_read()?;
            let t = rtx.open_table(CHECKPOINTS)?;
            let limit = member_size.saturating_add(max_entries.max(1));
            if let Some(row) = t.range(member_size.saturating_add(1)..=limit)?.next_back() {
                checkpoint = note_from_db(row?.1.value())?;
            } else if let Some(row) = t.range(member_size.saturating_add(1)..)?.next() {
                checkpoint = note_from_db(row?.1.value())?;
            }
        }
        let size = checkpoint.checkpoint.size;
        Ok(Update {
            entries: self.entries_range(member_size, size)?,
            proof: self.consistency_proof(member_size.min(size), size)?,
            checkpoint,
        })
    }

    /// Sequencer: record a member's cosignature. Returns the final checkpoint
    /// (all signatures so far, at least a quorum) when this one completes it.
    pub fn add_cosignature(&mut self, cosig: &Cosignature) -> Result<Option<FinalCheckpoint>> {
        self.require_sequencer()?;
        let size = cosig.size;
        if self
            .final_cp
            .as_ref()
            .is_some_and(|f| f.checkpoint.size >= size)
        {
            return Ok(None);
        }
        let sig: &NoteSignature = &cosig.signature;
        let key = *self.key_of(&sig.name)?;
        let sc = match self.pending.entry(size) {
            btree_map::Entry::Occupied(o) => o.into_mut(),
            btree_map::Entry::Vacant(v) => {
                let rtx = self.db.begin_read()?;
                let t = rtx.open_table(CHECKPOINTS)?;
                let note = t
                    .get(size)?
                    .ok_or_else(|| AuditError::NotFound(format!("no checkpoint at size {size}")))?;
                v.insert(note_from_db(note.value())?)
            }
        };
        if sc.checkpoint.root != cosig.root {
            return Err(AuditError::RootMismatch {
                size,
                why: format!("{} cosigned another root", sig.name),
            });
        }
        if sc.signatures.iter().any(|s| s.name == sig.name) {
            return Ok(None);
        }
        sig.verify(&sc.checkpoint.text(), &key)?;
        sc.signatures.push(sig.clone());
        if sc.signatures.len() >= self.genesis.quorum {
            let sc = sc.clone();
            self.finalize(sc.clone())?;
            return Ok(Some(sc));
        }
        Ok(None)
    }

    fn finalize(&mut self, sc: SignedCheckpoint) -> Result<()> {
        sc.verify_quorum(&self.genesis, &self.keys)?;
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(META_FINAL, sc.to_note().as_bytes())?;
        txn.commit()?;
        let size = sc.checkpoint.size;
        self.pending.retain(|&s, _| s > size);
        self.final_cp = Some(sc);
        Ok(())
    }
}
