//! The sequencer's replication loop: the RPC driver of confide-audit's sans-IO
//! [`Replicator`]. The replicator decides what each member gets next (entries it lacks
//! with a consistency proof, a checkpoint to cosign, final checkpoints; catch-up in steps;
//! backoff for members that are down); this loop only does the `Audit.Replicate` calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use confide_audit::{ReplicateAck, ReplicateBatch, Replicator, ReplicatorConfig};
use confide_proto::ReplicateRequest;

use super::state::{AuditState, audit_client};
use crate::base::error::{DaemonError, status_line};

/// Longest wait for one member's answer (replication and the rebuild's fetches).
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs at every member until `stop` changes, replicating while this member is the
/// sequencer of its view (it becomes one by a view change, and stops being one when a
/// member answers with a later view's certificate).
pub async fn replication_loop(a: Arc<AuditState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut roles = a.roles.subscribe();
    if !a.is_sequencer() {
        hello(&a).await;
    }
    loop {
        // A corrupt store set aside at start: adopt the members' copies before anything else.
        if a.is_sequencer()
            && (!super::rebuild::until_rebuilt(&a, &mut stop).await
                || !replicate_while_sequencer(&a, &mut stop).await)
        {
            return;
        }
        tokio::select! {
            _ = roles.changed() => {},
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.changed() => return,
        }
    }
}

/// A member that starts calls its sequencer once (a one-entry `Audit.Fetch` from its own
/// size), so a sequencer that had it in backoff after a restart or an outage catches it up
/// at once. Best effort: an unreachable sequencer is found by the member's next append.
async fn hello(a: &AuditState) {
    let Ok((seq, size)) = a.with(|s| Ok((s.sequencer().to_string(), s.size()))) else {
        return;
    };
    if let Err(e) = super::rebuild::fetch(a, &seq, size, 1).await {
        tracing::debug!(sequencer = %seq, error = %e, "audit: the sequencer did not answer at start");
    }
}

/// The sequencer's loop; true when this member stopped being the sequencer, false when
/// `stop` changed.
async fn replicate_while_sequencer(
    a: &Arc<AuditState>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut rep = match a.with(|s| Replicator::new(s, ReplicatorConfig::default())) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "audit: cannot start replication");
            return true;
        }
    };
    loop {
        if !a.is_sequencer() {
            return true;
        }
        for m in a.take_contacts() {
            if rep.on_contact(&m) {
                tracing::debug!(member = %m, "audit: member made contact; backoff ended");
            }
        }
        let batches = match a.with(|s| rep.next_batch(s, Instant::now())) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "audit: cannot prepare replication");
                Vec::new()
            }
        };
        if batches.is_empty() {
            let wait = rep.next_wakeup().map_or(Duration::from_millis(500), |t| {
                t.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500))
            });
            tokio::select! {
                _ = a.kick.notified() => {},
                _ = tokio::time::sleep(wait) => {},
                _ = stop.changed() => return false,
            }
            // No extra wait for more appends: those arriving while a round is in flight
            // share the next checkpoint anyway, and a lone risk query should not idle.
            continue;
        }
        let calls = batches.into_iter().map(|(m, b)| async move {
            let r = replicate(a, &m, &b).await;
            (m, r)
        });
        for (m, r) in futures::future::join_all(calls).await {
            let now = Instant::now();
            match r {
                Ok(ReplicateAck {
                    new_view: Some(nv), ..
                }) => match a.with(|s| s.enter_view(&nv)) {
                    Ok(_) => {
                        tracing::warn!(
                            view = nv.view,
                            member = %m,
                            "audit: replaced as sequencer; this member follows the new view"
                        );
                        a.role_changed();
                        return true;
                    }
                    Err(e) => {
                        tracing::warn!(member = %m, error = %e, "audit: refused a later view's certificate");
                        rep.on_error(&m, &e, now);
                    }
                },
                Ok(ack) => match a.with(|s| rep.on_reply(s, &m, &ack, now)) {
                    Ok(o) => {
                        if let Some(f) = o.new_final {
                            tracing::debug!(size = f.checkpoint.size, "audit: checkpoint final");
                            a.note_finals();
                        }
                    }
                    Err(e) => tracing::debug!(member = %m, error = %e, "audit: reply refused"),
                },
                Err(e) => {
                    tracing::debug!(member = %m, error = %e, "audit: replication pending");
                    rep.on_error(&m, &e, now);
                }
            }
        }
    }
}

/// One `Audit.Replicate` call carrying `b` to `member`.
async fn replicate(
    a: &AuditState,
    member: &str,
    b: &ReplicateBatch,
) -> Result<ReplicateAck, DaemonError> {
    let mut c = audit_client(&a.channels, member)?;
    let req = ReplicateRequest {
        first_index: b.first_index,
        entries: b.entry_bytes(),
        checkpoint: b.checkpoint_note(),
        consistency_proof: b.proof_bytes(),
        final_checkpoints: b.final_notes(),
        view: b.view,
        new_view: b.new_view_json()?,
    };
    let r = tokio::time::timeout(CALL_TIMEOUT, c.replicate(req))
        .await
        .map_err(|_| DaemonError::Protocol(format!("audit: `{member}` did not answer within 5 s")))?
        .map_err(|s| DaemonError::Protocol(format!("audit: `{member}`: {}", status_line(&s))))?
        .into_inner();
    Ok(ReplicateAck::from_wire(
        &r.cosignature,
        r.size,
        &r.new_view,
    )?)
}
