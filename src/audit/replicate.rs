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

/// Runs at the sequencer until `stop` changes.
pub async fn replication_loop(a: Arc<AuditState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if !a.is_sequencer(&a.me) {
        return;
    }
    // A corrupt store set aside at start: adopt the members' copies before anything else.
    if !super::rebuild::until_rebuilt(&a, &mut stop).await {
        return;
    }
    let mut rep = match a.with(|s| Replicator::new(s, ReplicatorConfig::default())) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "audit: cannot start replication");
            return;
        }
    };
    loop {
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
                _ = stop.changed() => return,
            }
            // No extra wait for more appends: those arriving while a round is in flight
            // share the next checkpoint anyway, and a lone risk query should not idle.
            continue;
        }
        let calls = batches.into_iter().map(|(m, b)| {
            let a = &a;
            async move {
                let r = replicate(a, &m, &b).await;
                (m, r)
            }
        });
        for (m, r) in futures::future::join_all(calls).await {
            let now = Instant::now();
            match r {
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
    };
    let r = tokio::time::timeout(CALL_TIMEOUT, c.replicate(req))
        .await
        .map_err(|_| DaemonError::Protocol(format!("audit: `{member}` did not answer within 5 s")))?
        .map_err(|s| DaemonError::Protocol(format!("audit: `{member}`: {}", status_line(&s))))?
        .into_inner();
    Ok(ReplicateAck::from_wire(&r.cosignature, r.size)?)
}
