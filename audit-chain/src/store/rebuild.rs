//! A corrupt copy of the log is set aside and rebuilt from the other members.
//!
//! [`AuditStore::open_or_rebuild`] opens the store; when redb reports corruption (its page
//! checksums), a stored note does not parse, or the stored entries fail the open checks
//! ([`AuditStore::fault`]), the file is renamed to `<file>.corrupt-<unix ms>` (kept for
//! the operator) and a fresh store takes its place.
//!
//! * A **member** then simply catches up: the sequencer's replication sends a member at
//!   size 0 every entry with the checkpoints over them, each checked as usual.
//! * The **sequencer** must not append to an empty log: the checkpoints it signs next
//!   would contradict the ones the members cosigned before (equivocation). Its fresh
//!   store is marked *rebuilding* (durably, so a restart keeps the mark): appends and
//!   checkpoints are refused until [`AuditStore::restore`] adopts the log the members
//!   hold — the longest checkpoint any member cosigned, which this sequencer signed (its
//!   own signature is checked), with every entry's signature and the Merkle root checked
//!   against it, and the latest final checkpoint (quorum checked). Every entry under a
//!   final checkpoint is therefore kept (a quorum holds it); entries the sequencer had
//!   appended but not yet sent to any member are lost with the corrupt file.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use rayon::prelude::*;
use redb::ReadableDatabase;

use super::{AuditStore, CHECKPOINTS, ENTRIES, META, META_FINAL, META_REBUILD, META_SIGNED};
use crate::checkpoint::SignedCheckpoint;
use crate::entry::Entry;
use crate::error::{AuditError, Result};
use crate::genesis::Genesis;
use crate::merkle::MerkleTree;

/// A store that was found corrupt at open and replaced by a fresh one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Where the corrupt file now is.
    pub moved_to: PathBuf,
    /// What was wrong with it.
    pub reason: String,
}

impl AuditStore {
    /// Opens the store at `path` like [`Self::open`]; a corrupt store (see the module
    /// docs) is renamed aside and replaced by a fresh one, which for the sequencer is
    /// marked rebuilding. Any other failure (wrong genesis or key, I/O) is returned as
    /// is, and a store that stopped cosigning after an equivocation is kept: that is
    /// evidence, not corruption.
    pub fn open_or_rebuild(
        path: impl AsRef<Path>,
        genesis: Genesis,
        my_name: &str,
        my_signing_key: SigningKey,
    ) -> Result<(Self, Option<SetAside>)> {
        let path = path.as_ref();
        let reason = match Self::open(path, genesis.clone(), my_name, my_signing_key.clone()) {
            Ok(s) => match s.fault() {
                None => return Ok((s, None)),
                Some(f) => f.to_string(),
            },
            Err(AuditError::Storage(redb::Error::Corrupted(m))) => format!("redb: {m}"),
            Err(e @ AuditError::Malformed { .. }) => e.to_string(),
            Err(e) => return Err(e),
        };
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".corrupt-{ms}"));
        let moved_to = path.with_file_name(name);
        std::fs::rename(path, &moved_to)?;
        let mut store = Self::open(path, genesis, my_name, my_signing_key)?;
        if store.is_sequencer() {
            let txn = store.db.begin_write()?;
            txn.open_table(META)?
                .insert(META_REBUILD, reason.as_bytes())?;
            txn.commit()?;
            store.rebuilding = Some(reason.clone());
        }
        Ok((store, Some(SetAside { moved_to, reason })))
    }

    /// Why this (sequencer) store waits to be rebuilt from the members, if it does.
    pub fn rebuilding(&self) -> Option<&str> {
        self.rebuilding.as_deref()
    }

    /// Sequencer, rebuilding: adopts `entries` (the log from index 0) under `signed`, the
    /// longest checkpoint any member cosigned, and `latest_final`, the latest final
    /// checkpoint any member holds; `None` and no entries when no member holds any.
    ///
    /// Checked before anything is stored: `signed` carries this sequencer's own valid
    /// signature and covers exactly `entries`; every entry is of this log, signed by its
    /// member, and unique; the Merkle root matches; the final checkpoint has a quorum and
    /// matches a prefix. Entries, checkpoints and the cleared mark commit in one
    /// transaction. Refused unless the store is rebuilding and empty.
    pub fn restore(
        &mut self,
        entries: &[Entry],
        signed: Option<&SignedCheckpoint>,
        latest_final: Option<&SignedCheckpoint>,
    ) -> Result<()> {
        self.require_sequencer()?;
        if self.rebuilding.is_none() || self.tree.size() != 0 {
            return Err(AuditError::WrongRole(
                "only an empty store that is being rebuilt restores a log",
            ));
        }
        let n = entries.len() as u64;
        match signed {
            None if n > 0 => {
                return Err(AuditError::InvalidEntry(
                    "entries to restore without a checkpoint over them".into(),
                ));
            }
            None => {}
            Some(sc) => {
                sc.verify_signer(&self.me, &self.key.verifying_key())?;
                if sc.checkpoint.origin != self.origin || sc.checkpoint.size != n {
                    return Err(AuditError::RootMismatch {
                        size: sc.checkpoint.size,
                        why: format!("the checkpoint to restore does not cover the {n} entries"),
                    });
                }
            }
        }
        entries.par_iter().try_for_each(|e| self.check_entry(e))?;
        let mut tree = MerkleTree::new();
        let mut seen = std::collections::HashSet::new();
        for e in entries {
            if !seen.insert(e.leaf_hash()) {
                return Err(AuditError::InvalidEntry(
                    "duplicate entry in the log to restore".into(),
                ));
            }
            tree.push(e.leaf_hash());
        }
        if let Some(sc) = signed
            && tree.root() != sc.checkpoint.root
        {
            return Err(AuditError::RootMismatch {
                size: n,
                why: "the entries to restore do not hash to the checkpoint root".into(),
            });
        }
        if let Some(f) = latest_final {
            f.verify_quorum(&self.genesis, &self.keys)?;
            if tree.root_at(f.checkpoint.size) != Some(f.checkpoint.root) {
                return Err(AuditError::RootMismatch {
                    size: f.checkpoint.size,
                    why: "the final checkpoint does not match the entries to restore".into(),
                });
            }
        }
        let txn = self.db.begin_write()?;
        {
            let mut t = txn.open_table(ENTRIES)?;
            for (i, e) in entries.iter().enumerate() {
                t.insert(i as u64, e.as_bytes())?;
            }
            let mut meta = txn.open_table(META)?;
            if let Some(sc) = signed {
                let note = sc.to_note();
                meta.insert(META_SIGNED, note.as_bytes())?;
                txn.open_table(CHECKPOINTS)?.insert(n, note.as_bytes())?;
            }
            if let Some(f) = latest_final {
                meta.insert(META_FINAL, f.to_note().as_bytes())?;
            }
            meta.remove(META_REBUILD)?;
        }
        Self::write_indexes(&txn, 0, entries)?;
        txn.commit()?;
        for e in entries {
            self.push_leaf(e);
        }
        self.signed = signed.cloned();
        if let Some(sc) = signed {
            self.pending.insert(n, sc.clone());
        }
        self.final_cp = latest_final.cloned();
        self.rebuilding = None;
        Ok(())
    }

    /// Reads the rebuilding mark at open.
    pub(super) fn load_rebuild_mark(&mut self) -> Result<()> {
        let rtx = self.db.begin_read()?;
        let meta = rtx.open_table(META)?;
        if let Some(v) = meta.get(META_REBUILD)? {
            self.rebuilding = Some(String::from_utf8_lossy(v.value()).into_owned());
        }
        Ok(())
    }
}
