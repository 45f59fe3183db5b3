//! Sequencer failover in the daemon: the RPC driver of confide-audit's views
//! ([`confide_audit::view`]).
//!
//! * A member whose append cannot reach the sequencer (refused, no answer within
//!   [`APPEND_TIMEOUT`], or "not the sequencer") asks the sequencer of the next view to
//!   take over (`Audit.TakeOver`), or leads the view itself when it is that member.
//! * The taker first checks that the current sequencer does not answer it either (one
//!   member's broken link does not move the alliance), then asks every member for its vote
//!   (`Audit.Vote`), adopts the longest log among a quorum of votes (fetching what it lacks
//!   from that voter), and starts replicating as the sequencer. Members enter the view
//!   from the certificate carried by its replication batches, or by the `TakeOver` answer.
//! * A replaced sequencer that comes back learns the view from the first member that
//!   answers its batches (the answer carries the certificate), drops its unfinal tail, and
//!   becomes a member.
//!
//! Appends are acknowledged only once a final checkpoint covers them (see
//! [`AuditState::append`]), so no acknowledged entry is lost in a view change.

use std::time::Duration;

use confide_audit::replicator::MAX_BATCH_ENTRIES;
use confide_audit::{Entry, NewView, Vote};
use confide_proto::{FetchRequest, TakeOverRequest, VoteRequest};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::rebuild::fetch;
use super::state::{AuditState, audit_client};
use crate::base::error::{DaemonError, status_line};

/// Longest wait for the sequencer's answer to an append before asking for a new one.
pub const APPEND_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a member's vote, and for the current sequencer's answer to the
/// taker's check.
pub const VOTE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the stragglers' votes are awaited once a quorum has voted.
pub const VOTE_GRACE: Duration = Duration::from_millis(300);
/// Longest wait for the next sequencer's answer to `TakeOver` (it gathers votes first).
pub const TAKE_OVER_TIMEOUT: Duration = Duration::from_secs(8);

impl AuditState {
    /// Moves this member past `from_view`: asks the sequencer of each following view in
    /// turn to take over (or leads the view itself) until one answers with a certificate.
    pub(crate) async fn change_view(&self, from_view: u64) -> Result<(), DaemonError> {
        let n = self.genesis.members.len() as u64;
        let mut why = Vec::new();
        for target in from_view + 1..=from_view + n {
            if self.with(|s| Ok(s.view()))? > from_view {
                return Ok(());
            }
            let seq = self.genesis.sequencer_at(target).to_string();
            let r = if seq == self.me {
                // This member saw the sequencer fail itself: no second check.
                self.lead(target, false).await.map(|_| ())
            } else {
                match self.ask_take_over(&seq, target).await {
                    Ok(nv) => self.with(|s| s.enter_view(&nv)).map(|moved| {
                        if moved {
                            tracing::warn!(view = nv.view, sequencer = %seq, "audit: entered a new view");
                            self.role_changed();
                        }
                    }),
                    Err(e) => Err(e),
                }
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) => why.push(format!("view {target} (`{seq}`): {e}")),
            }
        }
        Err(DaemonError::Protocol(format!(
            "audit: no member could take over as sequencer: {}",
            why.join("; ")
        )))
    }

    async fn ask_take_over(&self, seq: &str, view: u64) -> Result<NewView, DaemonError> {
        let mut c = audit_client(&self.channels, seq)?;
        let r = tokio::time::timeout(TAKE_OVER_TIMEOUT, c.take_over(TakeOverRequest { view }))
            .await
            .map_err(|_| self.channels.peer_error(seq, "audit take-over: no answer"))?
            .map_err(|s| {
                self.channels
                    .peer_error(seq, format!("audit take-over: {}", status_line(&s)))
            })?
            .into_inner();
        Ok(NewView::from_json(&r.new_view)?)
    }

    /// Leads view `target` (this member is its sequencer): the certificate of the view it
    /// is in when that is `target` or later already. With `check`, first makes sure the
    /// current sequencer does not answer this member either.
    pub(crate) async fn lead(&self, target: u64, check: bool) -> Result<NewView, DaemonError> {
        let _one_at_a_time = self.leading.lock().await;
        if let Some(nv) = self.with(|s| Ok(s.new_view().filter(|_| s.view() >= target).cloned()))? {
            return Ok(nv);
        }
        let current = self.with(|s| Ok(s.sequencer().to_string()))?;
        if check && current != self.me && self.answers(&current).await {
            return Err(DaemonError::Protocol(format!(
                "the sequencer `{current}` answers here; not taking over"
            )));
        }
        let own = self.with(|s| s.vote(target))?;
        let others: Vec<String> = self
            .genesis
            .members
            .iter()
            .map(|m| m.name.clone())
            .filter(|m| *m != self.me)
            .collect();
        // Every member is asked; once a quorum has voted, the others get a short grace
        // (a longer log among them is welcome, not needed: a quorum holds every final entry).
        let mut asks: FuturesUnordered<_> = others
            .iter()
            .map(|m| async move { (m, self.ask_vote(m, target).await) })
            .collect();
        let mut votes = vec![own];
        let mut refused = Vec::new();
        let mut grace: Option<tokio::time::Instant> = None;
        loop {
            let next = match grace {
                Some(until) => match tokio::time::timeout_at(until, asks.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                },
                None => asks.next().await,
            };
            let Some((m, r)) = next else { break };
            match r {
                Ok(v) if v.member == *m && v.view == target => votes.push(v),
                Ok(_) => refused.push(format!("`{m}`: a vote for something else")),
                Err(e) => refused.push(format!("`{m}`: {e}")),
            }
            if grace.is_none() && votes.len() >= self.genesis.quorum {
                grace = Some(tokio::time::Instant::now() + VOTE_GRACE);
            }
        }
        if votes.len() < self.genesis.quorum {
            return Err(DaemonError::Protocol(format!(
                "{} of the {} votes needed ({})",
                votes.len(),
                self.genesis.quorum,
                refused.join("; ")
            )));
        }
        let tail = self.fetch_base(&votes).await?;
        let nv = self.with(|s| s.lead_view(votes, &tail))?;
        tracing::warn!(
            view = nv.view,
            base = nv.base.checkpoint.size,
            "audit: this member took over as the sequencer"
        );
        self.role_changed();
        self.note_finals();
        self.kick.notify_one();
        Ok(nv)
    }

    /// Whether `member` answers a one-entry `Fetch` within [`VOTE_TIMEOUT`].
    async fn answers(&self, member: &str) -> bool {
        let Ok(mut c) = audit_client(&self.channels, member) else {
            return false;
        };
        let call = c.fetch(FetchRequest {
            from_index: 0,
            limit: 1,
        });
        matches!(tokio::time::timeout(VOTE_TIMEOUT, call).await, Ok(Ok(_)))
    }

    async fn ask_vote(&self, member: &str, view: u64) -> Result<Vote, DaemonError> {
        let mut c = audit_client(&self.channels, member)?;
        let r = tokio::time::timeout(VOTE_TIMEOUT, c.vote(VoteRequest { view }))
            .await
            .map_err(|_| DaemonError::Protocol("no answer".into()))?
            .map_err(|s| DaemonError::Protocol(status_line(&s)))?
            .into_inner();
        Ok(Vote::from_json(&r.vote)?)
    }

    /// The entries from this store's size up to the longest voted log, from that voter.
    async fn fetch_base(&self, votes: &[Vote]) -> Result<Vec<Entry>, DaemonError> {
        let have = self.with(|s| Ok(s.size()))?;
        let Some(best) = votes.iter().max_by_key(|v| v.size) else {
            return Ok(Vec::new());
        };
        let mut tail: Vec<Entry> = Vec::new();
        while have + (tail.len() as u64) < best.size {
            let from = have + tail.len() as u64;
            let limit = MAX_BATCH_ENTRIES.min(best.size - from);
            let (page, _, _) = fetch(self, &best.member, from, limit).await?;
            if page.is_empty() {
                return Err(DaemonError::Protocol(format!(
                    "`{}` voted with {} entries but sent none from {from}",
                    best.member, best.size
                )));
            }
            tail.extend(page);
        }
        tail.truncate((best.size - have) as usize);
        Ok(tail)
    }
}
