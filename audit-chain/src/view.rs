//! Sequencer failover: views, votes, and the certificate that starts a view.
//!
//! The log is ordered by one member at a time, the sequencer of the current *view*: the
//! genesis sequencer at view 0, then the next member in genesis order at each view change
//! ([`Genesis::sequencer_at`]). When a member cannot reach the sequencer, it asks the
//! sequencer of the next view to take over:
//!
//! 1. The candidate asks every member for a [`Vote`] for the new view. A member votes at
//!    most once per view, only for views above the one it is in, and from its vote on
//!    cosigns nothing of an older view (the promise is durable). The vote is signed and
//!    names the member's log: its size and root.
//! 2. With votes from a quorum (itself included), the candidate adopts the longest logged
//!    prefix among them: it fetches the entries it lacks from that voter, checks every
//!    entry signature and that they hash to the voted root, and signs a checkpoint over
//!    it. That checkpoint and the votes are the [`NewView`] certificate.
//! 3. Members enter the view on the certificate (checked with the genesis alone). A member
//!    holding more than the view's base drops that tail: no quorum cosigned it, so it was
//!    never final (a final checkpoint needs a quorum, and any two quorums share a member,
//!    whose vote then covers it); a member whose final checkpoint lies beyond the base, or
//!    whose log contradicts it, refuses the certificate.
//!
//! So every entry under a final checkpoint survives any sequence of view changes, which
//! is why the daemon acknowledges an append only once a final checkpoint covers it.

use std::collections::{HashMap, HashSet};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::SignedCheckpoint;
use crate::codec::hex_array;
use crate::error::{AuditError, Result};
use crate::genesis::Genesis;
use crate::merkle::Hash;

const VOTE_CONTEXT: &[u8] = b"confide/audit/view-vote/v1\n";
/// Largest [`NewView`] JSON accepted from a peer.
pub const MAX_NEW_VIEW_BYTES: usize = 128 * 1024;

/// A member's signed vote to move the log to `view`, naming the log it holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    /// The view voted for.
    pub view: u64,
    /// The voting member.
    pub member: String,
    /// Entries the member holds.
    pub size: u64,
    /// Their RFC 6962 root.
    #[serde(with = "hex_array")]
    pub root: Hash,
    /// Ed25519 signature of the member over the vote (and the log id).
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Vote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Vote(view {} by {} at size {})",
            self.view, self.member, self.size
        )
    }
}

impl Vote {
    fn message(log_id: &Hash, view: u64, member: &str, size: u64, root: &Hash) -> Vec<u8> {
        let mut m = Vec::with_capacity(VOTE_CONTEXT.len() + 32 + 8 + member.len() + 9 + 32);
        m.extend_from_slice(VOTE_CONTEXT);
        m.extend_from_slice(log_id);
        m.extend_from_slice(&view.to_be_bytes());
        m.extend_from_slice(member.as_bytes());
        m.push(b'\n');
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(root);
        m
    }

    pub(crate) fn sign(
        log_id: &Hash,
        view: u64,
        member: &str,
        size: u64,
        root: Hash,
        key: &SigningKey,
    ) -> Self {
        let signature = key
            .sign(&Self::message(log_id, view, member, size, &root))
            .to_bytes();
        Vote {
            view,
            member: member.to_string(),
            size,
            root,
            signature,
        }
    }

    /// Checks the signature with the member's genesis key.
    pub fn verify(&self, log_id: &Hash, keys: &HashMap<String, VerifyingKey>) -> Result<()> {
        let key = keys
            .get(&self.member)
            .ok_or_else(|| AuditError::UnknownMember(self.member.clone()))?;
        let m = Self::message(log_id, self.view, &self.member, self.size, &self.root);
        key.verify_strict(&m, &Signature::from_bytes(&self.signature))
            .map_err(|_| AuditError::BadSignature(format!("view vote by {:?}", self.member)))
    }

    /// Parses a vote sent by a peer.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_NEW_VIEW_BYTES {
            return Err(AuditError::malformed("view vote", "too large"));
        }
        serde_json::from_slice(json).map_err(|e| AuditError::malformed("view vote", e.to_string()))
    }

    /// The vote as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| AuditError::malformed("view vote", e.to_string()))
    }
}

/// The certificate that starts a view: votes of a quorum for it, and the new sequencer's
/// checkpoint over the view's base (the longest log among the votes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewView {
    /// The view.
    pub view: u64,
    /// A quorum of votes for it.
    pub votes: Vec<Vote>,
    /// The base checkpoint, signed by [`Genesis::sequencer_at`] `view`.
    pub base: SignedCheckpoint,
}

impl NewView {
    /// The sequencer of this view.
    pub fn sequencer<'g>(&self, genesis: &'g Genesis) -> &'g str {
        genesis.sequencer_at(self.view)
    }

    /// Checks the certificate with the genesis alone: at least a quorum of valid votes by
    /// distinct members, all for this view (above 0); the base is the longest voted log
    /// (its size and root, on which the longest votes agree), of this log, signed by the
    /// view's sequencer.
    pub fn verify(&self, genesis: &Genesis) -> Result<()> {
        let bad = |why: String| AuditError::BadSignature(format!("view {}: {why}", self.view));
        if self.view == 0 {
            return Err(bad("view 0 has no certificate".into()));
        }
        let keys = genesis.keys()?;
        let log_id = genesis.log_id();
        if self.votes.len() > genesis.members.len() {
            return Err(bad("more votes than members".into()));
        }
        let mut seen = HashSet::new();
        for v in &self.votes {
            if v.view != self.view {
                return Err(bad(format!(
                    "a vote of {:?} is for view {}",
                    v.member, v.view
                )));
            }
            if !seen.insert(v.member.as_str()) {
                return Err(bad(format!("{:?} voted twice", v.member)));
            }
            v.verify(&log_id, &keys)?;
        }
        if seen.len() < genesis.quorum {
            return Err(AuditError::QuorumNotMet {
                have: seen.len(),
                need: genesis.quorum,
            });
        }
        let (size, root) = base_of(&self.votes)?;
        let cp = &self.base.checkpoint;
        if cp.origin != genesis.origin() {
            return Err(bad("the base checkpoint is for another log".into()));
        }
        if cp.size != size || cp.root != root {
            return Err(bad(format!(
                "the base checkpoint (size {}) is not the longest voted log (size {size})",
                cp.size
            )));
        }
        let seq = self.sequencer(genesis);
        let key = keys
            .get(seq)
            .ok_or_else(|| AuditError::UnknownMember(seq.to_string()))?;
        self.base.verify_signer(seq, key)
    }

    /// Parses a certificate sent by a peer (size-limited; never panics).
    pub fn from_json(json: &[u8]) -> Result<Self> {
        if json.len() > MAX_NEW_VIEW_BYTES {
            return Err(AuditError::malformed("new view", "too large"));
        }
        serde_json::from_slice(json).map_err(|e| AuditError::malformed("new view", e.to_string()))
    }

    /// The certificate as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| AuditError::malformed("new view", e.to_string()))
    }
}

/// The longest log among `votes`: its size and root (the votes at that size must agree).
pub(crate) fn base_of(votes: &[Vote]) -> Result<(u64, Hash)> {
    let size = votes
        .iter()
        .map(|v| v.size)
        .max()
        .ok_or(AuditError::QuorumNotMet { have: 0, need: 1 })?;
    let mut roots = votes.iter().filter(|v| v.size == size).map(|v| v.root);
    let root = roots
        .next()
        .ok_or(AuditError::QuorumNotMet { have: 0, need: 1 })?;
    if roots.any(|r| r != root) {
        return Err(AuditError::RootMismatch {
            size,
            why: "members voted different logs of the same size (equivocation)".into(),
        });
    }
    Ok((size, root))
}
