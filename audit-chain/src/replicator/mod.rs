//! Sans-IO replication: the sequencer's policy as a state machine the daemon
//! drives, and the member's handling of what it sends.
//!
//! The daemon owns the clock, the RPCs and the locking; this module decides.
//! Per member the [`Replicator`] keeps a [`MemberView`] (acknowledged size,
//! last final checkpoint sent, last error, backoff, the batch in flight).
//!
//! 1. [`Replicator::next_batch`] signs a checkpoint when the log grew, then
//!    returns one [`ReplicateBatch`] per member that is due: a probe when its
//!    size is unknown, the entries it lacks up to the next checkpoint (in steps
//!    of about [`ReplicatorConfig::max_entries`], through the checkpoints signed
//!    earlier) with a consistency proof, the latest checkpoint again if it holds
//!    it but its cosignature is still needed and was not recorded (a lost
//!    answer), and the latest final checkpoint once it holds its entries. At most one batch per member is in flight; members in
//!    backoff are skipped.
//! 2. The daemon sends each batch (`Audit.Replicate`); the member answers with
//!    [`handle_replicate`].
//! 3. The daemon hands the answer to [`Replicator::on_reply`] (cosignature
//!    checked and recorded, size advanced; returns the checkpoint that became
//!    final at a majority, which the next `next_batch` pushes to every member)
//!    or a failure to [`Replicator::on_error`] (size forgotten, exponential
//!    backoff; the member is probed again when the backoff ends, or as soon as
//!    it contacts the sequencer ([`Replicator::on_contact`]), so a member that
//!    was down catches up from wherever it is).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::checkpoint::FinalCheckpoint;
use crate::error::{AuditError, Result};
use crate::store::AuditStore;

mod member;
mod wire;

pub use member::{FetchBatch, handle_replicate, serve_fetch};
pub use wire::{MAX_FINALS_PER_BATCH, MAX_PROOF_HASHES, ReplicateAck, ReplicateBatch};

/// Default and largest number of entries in one batch or fetch answer.
pub const MAX_BATCH_ENTRIES: u64 = 10_000;

/// Tuning of the sequencer's replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatorConfig {
    /// About how many entries one batch carries (a gap with no signed
    /// checkpoint inside it goes in one batch up to the next checkpoint).
    pub max_entries: u64,
    /// Wait after the first consecutive failure of a member; doubles per failure.
    pub backoff_initial: Duration,
    /// Longest wait between attempts.
    pub backoff_max: Duration,
}

impl Default for ReplicatorConfig {
    fn default() -> Self {
        ReplicatorConfig {
            max_entries: MAX_BATCH_ENTRIES,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// What the sequencer knows of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberView {
    /// Entries the member holds durably (None: unknown, probe it).
    pub acked: Option<u64>,
    /// Largest checkpoint size the member cosigned (to this sequencer's knowledge).
    pub cosigned: u64,
    /// Size of the last final checkpoint the member recorded from us.
    pub final_sent: u64,
    /// The last failure, until the next good reply.
    pub last_error: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
    /// No batch before this instant (backoff).
    pub retry_at: Option<Instant>,
    in_flight: Option<Sent>,
}

impl MemberView {
    /// Whether a batch to this member awaits its answer.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }
}

/// What was sent in the batch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    /// The member's size as known when sending (None: a probe).
    from: Option<u64>,
    /// Size of the checkpoint sent for cosigning.
    checkpoint: Option<u64>,
    /// Size of the final checkpoint sent.
    final_size: Option<u64>,
}

/// The result of a good reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyOutcome {
    /// The member's size now.
    pub acked: u64,
    /// The checkpoint this cosignature made final (quorum reached), if any.
    pub new_final: Option<FinalCheckpoint>,
}

/// The sequencer's replication state machine (sans-IO).
#[derive(Debug, Clone)]
pub struct Replicator {
    config: ReplicatorConfig,
    members: BTreeMap<String, MemberView>,
}

impl Replicator {
    /// A replicator for the sequencer `store`, over every other genesis member.
    pub fn new(store: &AuditStore, config: ReplicatorConfig) -> Result<Self> {
        if !store.is_sequencer() {
            return Err(AuditError::WrongRole("only the sequencer replicates"));
        }
        let members = store
            .genesis()
            .members
            .iter()
            .filter(|m| m.name != store.name())
            .map(|m| (m.name.clone(), MemberView::default()))
            .collect();
        Ok(Replicator { config, members })
    }

    /// The configuration.
    pub fn config(&self) -> &ReplicatorConfig {
        &self.config
    }

    /// What is known of `member`.
    pub fn view(&self, member: &str) -> Option<&MemberView> {
        self.members.get(member)
    }

    /// Every member's view, by name.
    pub fn views(&self) -> impl Iterator<Item = (&str, &MemberView)> {
        self.members.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The earliest end of a backoff, for the daemon's sleep (None: no member waits).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.members
            .values()
            .filter(|v| v.in_flight.is_none())
            .filter_map(|v| v.retry_at)
            .min()
    }

    /// Sign a checkpoint if the log grew, then the batches due at `now`, one
    /// per member at most; each is in flight until [`Self::on_reply`] or
    /// [`Self::on_error`] is called for that member. Empty: nothing to do
    /// until the log grows or a backoff ends.
    pub fn next_batch(
        &mut self,
        store: &mut AuditStore,
        now: Instant,
    ) -> Result<Vec<(String, ReplicateBatch)>> {
        // A checkpoint only when some member can take a batch now (with batches answered
        // one by one, the log may grow many times while every member has one in flight).
        let free = |v: &MemberView| v.in_flight.is_none() && v.retry_at.is_none_or(|t| now >= t);
        if !self.members.is_empty() && !self.members.values().any(free) {
            return Ok(Vec::new());
        }
        if store.size() > 0
            && store.latest_signed().map(|c| c.checkpoint.size) != Some(store.size())
        {
            store.checkpoint()?;
        }
        let latest = store.latest_signed().map_or(0, |c| c.checkpoint.size);
        let fin = store.latest_final();
        let final_size = fin.map_or(0, |f| f.checkpoint.size);
        let base = ReplicateBatch {
            view: store.view(),
            new_view: store.new_view().cloned(),
            ..ReplicateBatch::default()
        };
        let mut out = Vec::new();
        for (name, v) in &self.members {
            if v.in_flight.is_some() || v.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            let Some(size) = v.acked else {
                out.push((name.clone(), Sent::probe(), base.clone()));
                continue;
            };
            // Only finals the member holds the entries of: it records them as is.
            let fin = fin.filter(|f| f.checkpoint.size > v.final_sent && f.checkpoint.size <= size);
            let mut batch = ReplicateBatch {
                first_index: size,
                final_checkpoints: fin.cloned().into_iter().collect(),
                ..base.clone()
            };
            // Behind, or holding the latest checkpoint without its cosignature
            // recorded here (a lost answer) while that one still needs it.
            let wants_cosignature = v.cosigned < latest && final_size < latest;
            if size < latest || (size == latest && wants_cosignature) {
                let up = store.update_for(size, self.config.max_entries)?;
                batch.entries = up.entries;
                batch.consistency_proof = up.proof;
                batch.checkpoint = Some(up.checkpoint);
            } else if fin.is_none() {
                continue;
            }
            let sent = Sent {
                from: Some(size),
                checkpoint: batch.checkpoint.as_ref().map(|c| c.checkpoint.size),
                final_size: fin.map(|f| f.checkpoint.size),
            };
            out.push((name.clone(), sent, batch));
        }
        Ok(out
            .into_iter()
            .map(|(name, sent, batch)| {
                if let Some(v) = self.members.get_mut(&name) {
                    v.in_flight = Some(sent);
                }
                (name, batch)
            })
            .collect())
    }

    /// Apply `member`'s answer to its batch in flight: the cosignature must be
    /// the member's own, for the checkpoint sent, and verify (it is recorded in
    /// `store`, which returns a final checkpoint at quorum); the size must not
    /// go back or past what the sequencer signed. A refused answer counts as a
    /// failure (recorded in the view, backoff) and is returned as the error.
    pub fn on_reply(
        &mut self,
        store: &mut AuditStore,
        member: &str,
        ack: &ReplicateAck,
        now: Instant,
    ) -> Result<ReplyOutcome> {
        let backoff = self.config.clone();
        let v = self
            .members
            .get_mut(member)
            .ok_or_else(|| AuditError::UnknownMember(member.to_string()))?;
        let sent = v
            .in_flight
            .take()
            .ok_or_else(|| AuditError::replication(member, "a reply with no batch in flight"))?;
        match check_reply(store, member, v, sent, ack) {
            Ok(out) => {
                v.failures = 0;
                v.last_error = None;
                v.retry_at = None;
                Ok(out)
            }
            Err(e) => {
                v.fail(&e, now, &backoff);
                Err(e)
            }
        }
    }

    /// `member` contacted the sequencer (it appended, fetched, or sent a batch as the
    /// sequencer of an older view): it is up again, so a backoff it was waiting out ends
    /// now and it is probed at the next [`Self::next_batch`]. Nothing changes for a member
    /// with a batch in flight or in no backoff; unknown names are ignored. Returns whether
    /// a backoff ended.
    pub fn on_contact(&mut self, member: &str) -> bool {
        match self.members.get_mut(member) {
            Some(v) if v.in_flight.is_none() && v.retry_at.is_some() => {
                v.retry_at = None;
                true
            }
            _ => false,
        }
    }

    /// `member`'s batch in flight failed (unreachable, timed out, refused:
    /// `error` says why). Its size is forgotten (probed again) and it waits out
    /// an exponential backoff. Unknown names are ignored.
    pub fn on_error(&mut self, member: &str, error: impl fmt::Display, now: Instant) {
        let backoff = self.config.clone();
        if let Some(v) = self.members.get_mut(member) {
            v.in_flight = None;
            v.acked = None;
            v.final_sent = 0;
            v.fail(&error, now, &backoff);
        }
    }
}

impl Sent {
    fn probe() -> Self {
        Sent {
            from: None,
            checkpoint: None,
            final_size: None,
        }
    }
}

impl MemberView {
    fn fail(&mut self, error: &dyn fmt::Display, now: Instant, cfg: &ReplicatorConfig) {
        self.failures = self.failures.saturating_add(1);
        let doublings = self.failures.saturating_sub(1).min(30);
        let wait = cfg
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(cfg.backoff_max);
        self.retry_at = now.checked_add(wait).or(Some(now));
        self.last_error = Some(error.to_string());
    }
}

fn check_reply(
    store: &mut AuditStore,
    member: &str,
    v: &mut MemberView,
    sent: Sent,
    ack: &ReplicateAck,
) -> Result<ReplyOutcome> {
    let latest = store.latest_signed().map_or(0, |c| c.checkpoint.size);
    if ack.size > latest {
        return Err(AuditError::replication(
            member,
            format!(
                "holds {} entries, more than the sequencer signed ({latest})",
                ack.size
            ),
        ));
    }
    if let Some(from) = sent.from
        && ack.size < from
    {
        return Err(AuditError::replication(
            member,
            format!("went back from {from} to {} entries", ack.size),
        ));
    }
    let mut new_final = None;
    match (sent.checkpoint, &ack.cosignature) {
        (Some(size), Some(cs)) => {
            if cs.signature.name != member {
                return Err(AuditError::replication(
                    member,
                    format!("answered with a cosignature by {:?}", cs.signature.name),
                ));
            }
            if cs.size != size || ack.size != size {
                return Err(AuditError::replication(
                    member,
                    format!(
                        "cosigned size {} holding {}, for a checkpoint at {size}",
                        cs.size, ack.size
                    ),
                ));
            }
            new_final = store.add_cosignature(cs)?;
            v.cosigned = v.cosigned.max(size);
        }
        (None, Some(_)) => {
            return Err(AuditError::replication(
                member,
                "a cosignature with no checkpoint sent",
            ));
        }
        (Some(size), None) => {
            // The member answered "send from ack.size": resume there after the backoff.
            v.acked = Some(ack.size);
            return Err(AuditError::replication(
                member,
                format!(
                    "did not cosign the checkpoint at {size}; it holds {} entries",
                    ack.size
                ),
            ));
        }
        (None, None) => {}
    }
    v.acked = Some(ack.size);
    if let Some(f) = sent.final_size
        && ack.size >= f
    {
        v.final_sent = f;
    }
    Ok(ReplyOutcome {
        acked: ack.size,
        new_final,
    })
}

#[cfg(test)]
mod tests;
