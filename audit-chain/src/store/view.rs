//! Views in the store: voting, leading a view change, entering a view (see [`crate::view`]).

use std::collections::HashSet;

use rayon::prelude::*;
use redb::ReadableDatabase;

use super::{AuditStore, CHECKPOINTS, ENTRIES, JOB_ENTRIES, LEAVES, META, META_SIGNED};
use crate::checkpoint::{Checkpoint, SignedCheckpoint};
use crate::entry::Entry;
use crate::error::{AuditError, Result};
use crate::view::{NewView, Vote, base_of};

pub(super) const META_VIEW: &str = "view";
pub(super) const META_PROMISED: &str = "promised";
pub(super) const META_NEW_VIEW: &str = "new_view";

fn u64_of(bytes: &[u8], what: &'static str) -> Result<u64> {
    let a: [u8; 8] = bytes
        .try_into()
        .map_err(|_| AuditError::malformed(what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(a))
}

impl AuditStore {
    /// Reads the view state (before the entries are checked against the role).
    pub(super) fn load_view(&mut self) -> Result<()> {
        let rtx = self.db.begin_read()?;
        let meta = rtx.open_table(META)?;
        if let Some(v) = meta.get(META_VIEW)? {
            self.view = u64_of(v.value(), "stored view")?;
        }
        if let Some(v) = meta.get(META_PROMISED)? {
            self.promised = u64_of(v.value(), "stored view promise")?;
        }
        if let Some(v) = meta.get(META_NEW_VIEW)? {
            self.new_view = Some(NewView::from_json(v.value())?);
        }
        Ok(())
    }

    /// The current view (0 until the first view change).
    pub fn view(&self) -> u64 {
        self.view
    }

    /// The highest view this member voted for (at least [`Self::view`]).
    pub fn promised(&self) -> u64 {
        self.promised.max(self.view)
    }

    /// The sequencer of the current view.
    pub fn sequencer(&self) -> &str {
        self.genesis.sequencer_at(self.view)
    }

    /// The certificate of the current view (`None` at view 0).
    pub fn new_view(&self) -> Option<&NewView> {
        self.new_view.as_ref()
    }

    pub(super) fn old_view(&self, got: u64) -> AuditError {
        AuditError::OldView {
            got,
            have: self.promised(),
            sequencer: self.genesis.sequencer_at(self.promised()).to_string(),
        }
    }

    /// Votes for `view`: only above the current view and any view voted for before (the
    /// same view again gives the same log back). From now on this member cosigns nothing of
    /// an older view; the promise is durable before the vote is returned.
    pub fn vote(&mut self, view: u64) -> Result<Vote> {
        if view <= self.view || view < self.promised {
            return Err(self.old_view(view));
        }
        if view > self.promised {
            let txn = self.db.begin_write()?;
            txn.open_table(META)?
                .insert(META_PROMISED, view.to_be_bytes().as_slice())?;
            txn.commit()?;
            self.promised = view;
        }
        Ok(Vote::sign(
            &self.log_id,
            view,
            &self.me,
            self.tree.size(),
            self.tree.root(),
            &self.key,
        ))
    }

    /// The sequencer of `votes`' view, which voted itself: adopts the longest voted log
    /// (`tail`: the entries from this store's size up to it, fetched from that voter;
    /// signatures, uniqueness and the voted root are checked), signs a checkpoint over it,
    /// and enters the view as its sequencer. Returns the certificate for the members.
    pub fn lead_view(&mut self, votes: Vec<Vote>, tail: &[Entry]) -> Result<NewView> {
        let view = votes.first().map_or(0, |v| v.view);
        if self.genesis.sequencer_at(view) != self.me {
            return Err(AuditError::WrongRole(
                "only the sequencer of a view leads it",
            ));
        }
        if self.promised != view || !votes.iter().any(|v| v.member == self.me) {
            return Err(AuditError::WrongRole(
                "a view is led by a sequencer that voted for it",
            ));
        }
        self.ensure_can_sign()?;
        let (size, root) = base_of(&votes)?;
        let have = self.tree.size();
        if have.checked_add(tail.len() as u64) != Some(size) {
            return Err(AuditError::InvalidEntry(format!(
                "the view's base has {size} entries; this store has {have} and got {} more",
                tail.len()
            )));
        }
        tail.par_iter().try_for_each(|e| self.check_entry(e))?;
        let hashes: Vec<_> = tail.iter().map(Entry::leaf_hash).collect();
        let mut batch = HashSet::new();
        if hashes.iter().any(|h| !batch.insert(*h)) || self.any_known(&hashes)? {
            return Err(AuditError::InvalidEntry(
                "duplicate entry in the base".into(),
            ));
        }
        for h in &hashes {
            self.tree.push(*h);
        }
        if self.tree.root() != root {
            self.truncate_tree(have);
            return Err(AuditError::RootMismatch {
                size,
                why: "the fetched entries do not hash to the voted root".into(),
            });
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
        };
        let base = SignedCheckpoint {
            signatures: vec![checkpoint.sign(&self.me, &self.key)],
            checkpoint,
        };
        let nv = NewView { view, votes, base };
        if let Err(e) = nv.verify(&self.genesis) {
            self.truncate_tree(have);
            return Err(e);
        }
        let note = nv.base.to_note();
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(ENTRIES)?;
            for (i, e) in tail.iter().enumerate() {
                t.insert(have + i as u64, e.as_bytes())?;
            }
            let mut meta = txn.open_table(META)?;
            meta.insert(META_SIGNED, note.as_bytes())?;
            meta.insert(META_VIEW, view.to_be_bytes().as_slice())?;
            meta.insert(META_NEW_VIEW, nv.to_json()?.as_slice())?;
            let mut cps = txn.open_table(CHECKPOINTS)?;
            cps.retain(|s, _| s < size)?;
            cps.insert(size, note.as_bytes())?;
        }
        Self::write_indexes(&txn, have, tail)?;
        txn.commit()?;
        self.view = view;
        self.new_view = Some(nv.clone());
        self.signed = Some(nv.base.clone());
        self.pending.clear();
        self.pending.insert(size, nv.base.clone());
        Ok(nv)
    }

    /// Enters the view of `nv` (checked with the genesis) as a member. Returns whether it
    /// moved (a certificate of the current view or an older one changes nothing).
    ///
    /// A log longer than the view's base must agree with it up to the base and must not
    /// hold a final checkpoint beyond it; the tail beyond the base (never final) is then
    /// dropped. A shorter log catches up from the new sequencer as usual (its consistency
    /// proofs check that the log is a prefix of the base).
    pub fn enter_view(&mut self, nv: &NewView) -> Result<bool> {
        if nv.view <= self.view {
            return Ok(false);
        }
        if nv.view < self.promised {
            return Err(self.old_view(nv.view));
        }
        nv.verify(&self.genesis)?;
        if nv.sequencer(&self.genesis) == self.me {
            return Err(AuditError::WrongRole(
                "a sequencer enters its view by leading it",
            ));
        }
        let base = &nv.base.checkpoint;
        let have = self.tree.size();
        let final_size = self.final_cp.as_ref().map_or(0, |f| f.checkpoint.size);
        if have >= base.size && self.tree.root_at(base.size, &self.leaf_source()) != Some(base.root)
        {
            return Err(AuditError::RootMismatch {
                size: base.size,
                why: format!("view {}'s base contradicts the local log", nv.view),
            });
        }
        if final_size > base.size {
            return Err(AuditError::RootMismatch {
                size: base.size,
                why: format!(
                    "view {}'s base would drop entries under the final checkpoint at {final_size}",
                    nv.view
                ),
            });
        }
        let dropped = if have > base.size {
            self.entries_range(base.size, have)?
        } else {
            Vec::new()
        };
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_VIEW, nv.view.to_be_bytes().as_slice())?;
            meta.insert(META_PROMISED, nv.view.to_be_bytes().as_slice())?;
            meta.insert(META_NEW_VIEW, nv.to_json()?.as_slice())?;
            if have >= base.size {
                meta.insert(META_SIGNED, nv.base.to_note().as_bytes())?;
            }
            let mut entries = txn.open_table(ENTRIES)?;
            let mut leaves = txn.open_table(LEAVES)?;
            let mut jobs = txn.open_table(JOB_ENTRIES)?;
            for (i, e) in dropped.iter().enumerate() {
                let index = base.size + i as u64;
                entries.remove(index)?;
                leaves.remove(&e.leaf_hash())?;
                jobs.remove((e.body().job_id.as_str(), index))?;
            }
            txn.open_table(CHECKPOINTS)?.retain(|s, _| s <= base.size)?;
        }
        txn.commit()?;
        if !dropped.is_empty() {
            self.truncate_tree(base.size);
        }
        if have >= base.size {
            self.signed = Some(nv.base.clone());
        }
        self.view = nv.view;
        self.promised = nv.view;
        self.new_view = Some(nv.clone());
        self.pending.clear();
        Ok(true)
    }

    /// How many entries entering `nv` would drop here (for logs and tests).
    pub fn tail_beyond(&self, nv: &NewView) -> u64 {
        self.tree.size().saturating_sub(nv.base.checkpoint.size)
    }

    /// Whether the stored state of a table still lists `index` (tests of truncation).
    #[doc(hidden)]
    pub fn has_entry_row(&self, index: u64) -> Result<bool> {
        let rtx = self.db.begin_read()?;
        Ok(rtx.open_table(ENTRIES)?.get(index)?.is_some())
    }

    /// The index of the entry with this leaf hash, if the log holds it.
    pub fn index_of(&self, leaf_hash: &crate::merkle::Hash) -> Result<Option<u64>> {
        let rtx = self.db.begin_read()?;
        Ok(rtx.open_table(LEAVES)?.get(leaf_hash)?.map(|g| g.value()))
    }
}
