//! Offline proof bundles and contribution summaries.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::codec::{hex_array, hex_hashes};
use crate::entry::Entry;
use crate::error::{AuditError, Result};
use crate::genesis::Genesis;
use crate::merkle::{Hash, verify_inclusion};

/// Bundle format tag.
pub const BUNDLE_FORMAT: &str = "confide-audit-proof/v1";

/// Everything needed to check one entry offline: the entry, its index, the
/// audit path to a final checkpoint, the checkpoint note with its
/// cosignatures, and the genesis hash (log id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// SHA-256 of the canonical genesis.
    #[serde(with = "hex_array")]
    pub genesis_hash: Hash,
    /// Entry index.
    pub index: u64,
    /// The entry (hex of its bytes).
    pub entry: Entry,
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// RFC 6962 audit path.
    #[serde(with = "hex_hashes")]
    pub audit_path: Vec<Hash>,
    /// The final checkpoint as a signed note (sequencer and member cosignatures).
    pub checkpoint: SignedCheckpoint,
}

impl ProofBundle {
    pub(crate) fn new(
        genesis_hash: Hash,
        entry: Entry,
        index: u64,
        tree_size: u64,
        audit_path: Vec<Hash>,
        checkpoint: SignedCheckpoint,
    ) -> Self {
        ProofBundle {
            format: BUNDLE_FORMAT.to_string(),
            genesis_hash,
            index,
            entry,
            tree_size,
            audit_path,
            checkpoint,
        }
    }

    /// Pretty JSON.
    #[allow(
        clippy::expect_used,
        reason = "serializing this plain struct (string keys, no fallible serializers) cannot fail"
    )]
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("bundle serializes")
    }
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    /// The entry, signature checked.
    pub entry: Entry,
    /// Its index.
    pub index: u64,
    /// Size of the final checkpoint it is included in.
    pub tree_size: u64,
    /// Members whose checkpoint signatures verified.
    pub cosigners: Vec<String>,
}

/// Check a proof bundle with only the genesis file: the genesis hash, the
/// entry's signature by its member, every checkpoint signature (each must be
/// by a distinct genesis member and verify), the quorum, and the inclusion path.
pub fn verify_bundle(bundle_json: &str, genesis_json: &str) -> Result<VerifiedBundle> {
    let genesis = Genesis::from_json(genesis_json)?;
    let b: ProofBundle = serde_json::from_str(bundle_json)
        .map_err(|e| AuditError::malformed("proof bundle", e.to_string()))?;
    verify_parsed(b, &genesis)
}

impl ProofBundle {
    /// [`verify_bundle`] of a parsed bundle against a loaded genesis (e.g. the audit evidence
    /// of a risk request, checked by a compute node before it answers).
    pub fn verify(&self, genesis: &Genesis) -> Result<VerifiedBundle> {
        verify_parsed(self.clone(), genesis)
    }
}

fn verify_parsed(b: ProofBundle, genesis: &Genesis) -> Result<VerifiedBundle> {
    if b.format != BUNDLE_FORMAT {
        return Err(AuditError::malformed("proof bundle", "unknown format"));
    }
    let log_id = genesis.log_id();
    if b.genesis_hash != log_id || b.entry.log_id() != &log_id {
        return Err(AuditError::BadSignature(
            "bundle is for another genesis".into(),
        ));
    }
    let keys = genesis.keys()?;
    let member = &b.entry.body().member;
    b.entry.verify(
        keys.get(member)
            .ok_or_else(|| AuditError::UnknownMember(member.clone()))?,
    )?;
    let cosigners = b.checkpoint.verify_quorum(genesis, &keys)?;
    let cp = &b.checkpoint.checkpoint;
    if cp.size != b.tree_size {
        return Err(AuditError::InvalidProof(
            "tree size differs from the checkpoint",
        ));
    }
    if !verify_inclusion(
        b.index,
        b.tree_size,
        &b.entry.leaf_hash(),
        &b.audit_path,
        &cp.root,
    ) {
        return Err(AuditError::InvalidProof("inclusion path"));
    }
    Ok(VerifiedBundle {
        entry: b.entry,
        index: b.index,
        tree_size: b.tree_size,
        cosigners,
    })
}

/// A member's contribution counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSummary {
    /// Jobs the member started (however many entries each has).
    pub started: u64,
    /// Jobs whose entries name the member among the parties that served them.
    pub served: u64,
}

/// Count, per genesis member, the jobs it started and served.
pub fn summarize(genesis: &Genesis, entries: &[Entry]) -> BTreeMap<String, MemberSummary> {
    let mut out: BTreeMap<String, MemberSummary> = genesis
        .members
        .iter()
        .map(|m| (m.name.clone(), MemberSummary::default()))
        .collect();
    // Jobs, not entries: a job may have several (its start, its outcome, risk steps).
    let (mut started, mut served) = (HashSet::new(), HashSet::new());
    for e in entries {
        let b = e.body();
        if started.insert((b.member.as_str(), b.job_id.as_str())) {
            out.entry(b.member.clone()).or_default().started += 1;
        }
        for s in &b.served_by {
            if served.insert((s.as_str(), b.job_id.as_str())) {
                out.entry(s.clone()).or_default().served += 1;
            }
        }
    }
    out
}
