//! Durable audit store (redb) with the sequencer and member roles.
//!
//! Crash rules (design.md §6):
//! 1. entries are committed (redb, `Durability::Immediate`) before any
//!    checkpoint over them is signed;
//! 2. the (size, root) a store signs or cosigns is committed before the
//!    signature leaves the store;
//! 3. on open the root of the stored entries is recomputed; if it disagrees
//!    with the last signed checkpoint the store refuses to sign or cosign.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{SigningKey, VerifyingKey};
use rayon::prelude::*;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::bundle::{MemberSummary, ProofBundle, summarize};
use crate::checkpoint::{Equivocation, SignedCheckpoint};
use crate::codec::hex_hashes;
use crate::entry::{Entry, EntryBody};
use crate::error::{AuditError, Result};
use crate::genesis::Genesis;
use crate::merkle::{Hash, MerkleTree};
use crate::pruned::PrunedTree;

mod leaves;
mod member;
mod rebuild;
mod sequencer;
mod view;

pub use rebuild::SetAside;

/// Entries by index.
pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// Store metadata (genesis, last signed note, final note, halt evidence).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Checkpoints the sequencer signed, by size (for catch-up in steps).
pub const CHECKPOINTS: TableDefinition<u64, &[u8]> = TableDefinition::new("checkpoints");
/// Entry index by leaf hash: the duplicate check, on disk rather than a set in memory.
pub const LEAVES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("leaves");
/// (job id, entry index) of every entry: a job's entries, on disk rather than in memory.
pub const JOB_ENTRIES: TableDefinition<(&str, u64), ()> = TableDefinition::new("job_entries");

/// redb's page cache for the store (redb's default, 1 GiB, lets a long-running daemon's
/// memory grow with the log).
const CACHE_BYTES: usize = 32 << 20;

/// Checkpoints kept in memory awaiting cosignatures (older ones reload from disk).
const MAX_PENDING: usize = 256;
const META_GENESIS: &str = "genesis";
const META_SIGNED: &str = "signed";
const META_FINAL: &str = "final";
const META_HALT: &str = "halt";
const META_REBUILD: &str = "rebuild";

/// What a member needs to catch up to a checkpoint: the missing entries, the
/// sequencer-signed checkpoint, and a consistency proof from the member's size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Update {
    /// Entries from the member's size up to the checkpoint size.
    pub entries: Vec<Entry>,
    /// The sequencer-signed checkpoint.
    pub checkpoint: SignedCheckpoint,
    /// Consistency proof from (member size, member root) to the checkpoint.
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
}

/// Result of [`AuditStore::verify_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Root of all entries.
    pub root: Hash,
    /// Size of the latest final checkpoint, if any.
    pub final_size: Option<u64>,
}

/// One party's copy of the audit log.
pub struct AuditStore {
    db: Database,
    genesis: Genesis,
    keys: HashMap<String, VerifyingKey>,
    log_id: Hash,
    origin: String,
    me: String,
    key: SigningKey,
    /// The Merkle tree's frontier; older leaves are read from [`ENTRIES`] ([`leaves::DbLeaves`]).
    tree: PrunedTree,
    signed: Option<SignedCheckpoint>,
    final_cp: Option<SignedCheckpoint>,
    pending: BTreeMap<u64, SignedCheckpoint>,
    halt: Option<Equivocation>,
    fault: Option<String>,
    rebuilding: Option<String>,
    /// The current view ([`crate::view`]), the highest view voted for, and the current
    /// view's certificate.
    view: u64,
    promised: u64,
    new_view: Option<crate::view::NewView>,
}

impl fmt::Debug for AuditStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditStore")
            .field("me", &self.me)
            .field("origin", &self.origin)
            .field("size", &self.tree.size())
            .field("signing_key", &"<redacted>")
            .field("halted", &self.halt.is_some())
            .field("fault", &self.fault)
            .field("rebuilding", &self.rebuilding)
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn note_from_db(bytes: &[u8]) -> Result<SignedCheckpoint> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| AuditError::malformed("stored note", "not UTF-8"))?;
    SignedCheckpoint::from_note(s)
}

impl AuditStore {
    /// Open (or create) the store at `path` for member `my_name` with its key.
    /// Recomputes the root of the stored entries; on disagreement with the last
    /// signed checkpoint the store opens but refuses to sign ([`Self::fault`]).
    pub fn open(
        path: impl AsRef<Path>,
        genesis: Genesis,
        my_name: &str,
        my_signing_key: SigningKey,
    ) -> Result<Self> {
        genesis.validate()?;
        let keys = genesis.keys()?;
        let mine = keys
            .get(my_name)
            .ok_or_else(|| AuditError::UnknownMember(my_name.to_string()))?;
        if *mine != my_signing_key.verifying_key() {
            return Err(AuditError::Genesis(format!(
                "signing key does not match the genesis key of {my_name:?}"
            )));
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path.as_ref())?;
        let canon = genesis.canonical_bytes();
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let stored = meta.get(META_GENESIS)?.map(|g| g.value().to_vec());
            match stored {
                None => {
                    meta.insert(META_GENESIS, canon.as_slice())?;
                }
                Some(g) if g == canon => {}
                Some(_) => {
                    return Err(AuditError::Genesis(
                        "the store belongs to a different genesis".into(),
                    ));
                }
            }
            txn.open_table(ENTRIES)?;
            txn.open_table(CHECKPOINTS)?;
            txn.open_table(LEAVES)?;
            txn.open_table(JOB_ENTRIES)?;
        }
        txn.commit()?;

        let log_id = genesis.log_id();
        let mut store = AuditStore {
            db,
            origin: genesis.origin(),
            genesis,
            keys,
            log_id,
            me: my_name.to_string(),
            key: my_signing_key,
            tree: PrunedTree::new(),
            signed: None,
            final_cp: None,
            pending: BTreeMap::new(),
            halt: None,
            fault: None,
            rebuilding: None,
            view: 0,
            promised: 0,
            new_view: None,
        };
        store.load_view()?;
        let indexes_intact = store.load()?;
        store.load_rebuild_mark()?;
        if !indexes_intact && store.fault.is_none() {
            store.rewrite_indexes()?;
        }
        Ok(store)
    }

    /// Reads the entries (rebuilding the tree) and the stored state. Returns whether the
    /// on-disk indexes match the entries: they are derived data, so each entry must have its
    /// leaf row and its job row and there must be no other row. A store written before the
    /// indexes existed, or an index damaged on disk (redb's checksums do not catch every
    /// flipped byte), fails that check; the entries themselves are checked against the
    /// signed roots below.
    fn load(&mut self) -> Result<bool> {
        let rtx = self.db.begin_read()?;
        let entries = rtx.open_table(ENTRIES)?;
        let leaves = rtx.open_table(LEAVES)?;
        let jobs = rtx.open_table(JOB_ENTRIES)?;
        let mut indexes_intact = true;
        for (i, row) in entries.iter()?.enumerate() {
            let (k, v) = row?;
            let index = i as u64;
            if k.value() != index {
                self.fault = Some(format!("entry {i} is missing from the store"));
                break;
            }
            match Entry::from_bytes(v.value()) {
                Ok(e) => {
                    let h = e.leaf_hash();
                    indexes_intact = indexes_intact
                        && leaves.get(&h)?.map(|g| g.value()) == Some(index)
                        && jobs.get((e.body().job_id.as_str(), index))?.is_some();
                    self.tree.push(h);
                }
                Err(e) => {
                    self.fault = Some(format!("stored entry {i}: {e}"));
                    break;
                }
            }
        }
        let size = self.tree.size();
        indexes_intact = indexes_intact && leaves.len()? == size && jobs.len()? == size;
        let meta = rtx.open_table(META)?;
        if let Some(v) = meta.get(META_HALT)? {
            self.halt = Some(
                serde_json::from_slice(v.value())
                    .map_err(|e| AuditError::malformed("stored halt evidence", e.to_string()))?,
            );
        }
        if let Some(v) = meta.get(META_SIGNED)? {
            let sc = note_from_db(v.value())?;
            let cp = &sc.checkpoint;
            if self.tree.root_at(cp.size, &self.leaf_source()) != Some(cp.root) {
                self.fault.get_or_insert(format!(
                    "stored entries ({}) do not match the last signed checkpoint (size {})",
                    self.tree.size(),
                    cp.size
                ));
            } else if !self.is_sequencer() && cp.size != self.tree.size() {
                self.fault.get_or_insert(format!(
                    "stored entries ({}) extend past the last cosigned checkpoint (size {})",
                    self.tree.size(),
                    cp.size
                ));
            }
            self.signed = Some(sc);
        } else if !self.is_sequencer() && self.tree.size() > 0 {
            self.fault = Some("entries stored without a cosigned checkpoint".into());
        }
        if let Some(v) = meta.get(META_FINAL)? {
            let sc = note_from_db(v.value())?;
            let ok = sc.verify_quorum(&self.genesis, &self.keys).is_ok()
                && self.tree.root_at(sc.checkpoint.size, &self.leaf_source())
                    == Some(sc.checkpoint.root);
            if !ok {
                self.fault
                    .get_or_insert("stored final checkpoint does not match the entries".into());
            }
            self.final_cp = Some(sc);
        }
        Ok(indexes_intact)
    }

    fn push_leaf(&mut self, e: &Entry) {
        self.tree.push(e.leaf_hash());
    }

    /// Writes the on-disk indexes ([`LEAVES`], [`JOB_ENTRIES`]) of `entries`, which start
    /// at index `start`, in the transaction that stores them.
    pub(crate) fn write_indexes(
        txn: &redb::WriteTransaction,
        start: u64,
        entries: &[Entry],
    ) -> Result<()> {
        let mut leaves = txn.open_table(LEAVES)?;
        let mut jobs = txn.open_table(JOB_ENTRIES)?;
        for (i, e) in entries.iter().enumerate() {
            let index = start + i as u64;
            leaves.insert(&e.leaf_hash(), index)?;
            jobs.insert((e.body().job_id.as_str(), index), ())?;
        }
        Ok(())
    }

    /// Whether any of `hashes` is already a leaf of the log.
    pub(crate) fn any_known(&self, hashes: &[Hash]) -> Result<bool> {
        let rtx = self.db.begin_read()?;
        let leaves = rtx.open_table(LEAVES)?;
        for h in hashes {
            if leaves.get(h)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Rewrites both on-disk indexes from the entries (see [`Self::load`]).
    fn rewrite_indexes(&mut self) -> Result<()> {
        let entries = self.entries_since(0)?;
        let txn = self.db.begin_write()?;
        {
            let mut leaves = txn.open_table(LEAVES)?;
            leaves.retain(|_, _| false)?;
            let mut jobs = txn.open_table(JOB_ENTRIES)?;
            jobs.retain(|_, _| false)?;
        }
        Self::write_indexes(&txn, 0, &entries)?;
        txn.commit()?;
        Ok(())
    }

    // ---------------------------------------------------------------- state

    /// This member's name.
    pub fn name(&self) -> &str {
        &self.me
    }
    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }
    /// The log id.
    pub fn log_id(&self) -> Hash {
        self.log_id
    }
    /// Whether this member is the sequencer of the current view (and has not voted to
    /// leave it).
    pub fn is_sequencer(&self) -> bool {
        self.sequencer() == self.me && self.promised <= self.view
    }
    /// Number of entries held.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }
    /// Root of all entries held.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }
    /// Merkle hashes this store keeps in memory: bounded, whatever the log's length
    /// ([`crate::pruned`]).
    #[doc(hidden)]
    pub fn tree_hashes_in_memory(&self) -> usize {
        self.tree.hashes_in_memory()
    }
    /// Root of the first `size` entries held.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        self.tree.root_at(size, &self.leaf_source())
    }
    /// The latest checkpoint this store signed (sequencer) or cosigned (member),
    /// with the sequencer's signature.
    pub fn latest_signed(&self) -> Option<&SignedCheckpoint> {
        self.signed.as_ref()
    }
    /// The latest final (quorum-cosigned) checkpoint known.
    pub fn latest_final(&self) -> Option<&SignedCheckpoint> {
        self.final_cp.as_ref()
    }
    /// Why this store refuses to sign, if it does.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }
    /// Equivocation evidence that stopped cosigning, if any.
    pub fn halt_evidence(&self) -> Option<&Equivocation> {
        self.halt.as_ref()
    }

    fn ensure_can_sign(&self) -> Result<()> {
        if self.halt.is_some() {
            return Err(AuditError::Halted);
        }
        if let Some(f) = &self.fault {
            return Err(AuditError::Fault(f.clone()));
        }
        if let Some(why) = &self.rebuilding {
            return Err(AuditError::Rebuilding(why.clone()));
        }
        Ok(())
    }

    fn require_sequencer(&self) -> Result<()> {
        if self.is_sequencer() {
            Ok(())
        } else {
            Err(AuditError::WrongRole("only the sequencer does this"))
        }
    }

    fn key_of(&self, name: &str) -> Result<&VerifyingKey> {
        self.keys
            .get(name)
            .ok_or_else(|| AuditError::UnknownMember(name.to_string()))
    }

    fn check_entry(&self, e: &Entry) -> Result<()> {
        if e.log_id() != &self.log_id {
            return Err(AuditError::InvalidEntry("entry is for another log".into()));
        }
        e.verify(self.key_of(&e.body().member)?)
    }

    /// Sign an entry body as this member (any role), e.g. to send it to the
    /// sequencer for [`Self::append_signed`].
    pub fn sign_entry(&self, body: EntryBody) -> Result<Entry> {
        if body.member != self.me {
            return Err(AuditError::InvalidEntry(format!(
                "{} cannot sign an entry for {:?}",
                self.me, body.member
            )));
        }
        Entry::create(body, &self.log_id, &self.key)
    }

    // ----------------------------------------------------------- reads

    /// Entries with index in `[from, to)`.
    pub fn entries_range(&self, from: u64, to: u64) -> Result<Vec<Entry>> {
        let to = to.min(self.tree.size());
        if from >= to {
            return Ok(Vec::new());
        }
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(ENTRIES)?;
        t.range(from..to)?
            .map(|row| {
                let (_, v) = row?;
                Entry::from_bytes(v.value())
            })
            .collect()
    }

    /// Entries with index ≥ `n`.
    pub fn entries_since(&self, n: u64) -> Result<Vec<Entry>> {
        self.entries_range(n, self.tree.size())
    }

    /// One entry.
    pub fn entry(&self, index: u64) -> Result<Entry> {
        self.entries_range(index, index.saturating_add(1))?
            .pop()
            .ok_or_else(|| AuditError::NotFound(format!("entry {index}")))
    }

    /// Consistency proof between sizes `from` ≤ `to` of the local log.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        self.tree
            .consistency_proof(from, to, &self.leaf_source())
            .ok_or_else(|| AuditError::NotFound(format!("consistency proof {from}..{to}")))
    }

    // ---------------------------------------------------------- checks

    /// Re-read every stored entry, check layout, log id and signature, and
    /// recompute the root; check the last signed and final checkpoints against it.
    pub fn verify_all(&self) -> Result<VerifyReport> {
        if let Some(f) = &self.fault {
            return Err(AuditError::Fault(f.clone()));
        }
        let entries = self.entries_since(0)?;
        entries.par_iter().try_for_each(|e| self.check_entry(e))?;
        let mut tree = MerkleTree::new();
        for e in &entries {
            tree.push(e.leaf_hash());
        }
        if tree.root() != self.tree.root() {
            return Err(AuditError::RootMismatch {
                size: tree.size(),
                why: "stored entries changed since open".into(),
            });
        }
        for sc in self.signed.iter().chain(&self.final_cp) {
            if tree.root_at(sc.checkpoint.size) != Some(sc.checkpoint.root) {
                return Err(AuditError::RootMismatch {
                    size: sc.checkpoint.size,
                    why: "checkpoint does not match the stored entries".into(),
                });
            }
        }
        if let Some(sc) = &self.signed {
            let seq = sc
                .signatures
                .first()
                .map(|s| s.name.clone())
                .ok_or_else(|| AuditError::BadSignature("unsigned checkpoint".into()))?;
            sc.verify_signer(&seq, self.key_of(&seq)?)?;
        }
        if let Some(f) = &self.final_cp {
            f.verify_quorum(&self.genesis, &self.keys)?;
        }
        Ok(VerifyReport {
            entries: tree.size(),
            root: tree.root(),
            final_size: self.final_cp.as_ref().map(|f| f.checkpoint.size),
        })
    }

    /// Offline proof bundle for entry `index` against the latest final checkpoint.
    pub fn prove(&self, index: u64) -> Result<ProofBundle> {
        let fin = self
            .final_cp
            .as_ref()
            .filter(|f| f.checkpoint.size > index)
            .ok_or_else(|| {
                AuditError::NotFound(format!("no final checkpoint covers entry {index} yet"))
            })?;
        let size = fin.checkpoint.size;
        let path = self
            .tree
            .inclusion_proof(index, size, &self.leaf_source())
            .ok_or_else(|| AuditError::NotFound(format!("entry {index}")))?;
        Ok(ProofBundle::new(
            self.log_id,
            self.entry(index)?,
            index,
            size,
            path,
            fin.clone(),
        ))
    }

    /// Indexes of the entries of a job, in log order.
    pub fn job_entries(&self, job_id: &str) -> Result<Vec<u64>> {
        let rtx = self.db.begin_read()?;
        let t = rtx.open_table(JOB_ENTRIES)?;
        t.range((job_id, 0)..=(job_id, u64::MAX))?
            .map(|row| Ok(row?.0.value().1))
            .collect()
    }

    /// Proof bundle for the latest entry of `job_id` (a job's outcome comes after the
    /// entry that anchored its start).
    pub fn prove_job(&self, job_id: &str) -> Result<ProofBundle> {
        let idx = *self
            .job_entries(job_id)?
            .last()
            .ok_or_else(|| AuditError::NotFound(format!("job {job_id:?}")))?;
        self.prove(idx)
    }

    /// All entries, oldest first, with their indexes.
    pub fn log(&self) -> Result<Vec<(u64, Entry)>> {
        Ok((0..).zip(self.entries_since(0)?).collect())
    }

    /// Per-member counts of jobs started and served.
    pub fn summary(&self) -> Result<BTreeMap<String, MemberSummary>> {
        Ok(summarize(&self.genesis, &self.entries_since(0)?))
    }
}
