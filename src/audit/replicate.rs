//! The sequencer's replication loop: checkpoint, send each member the entries it lacks,
//! gather cosignatures, publish final checkpoints.

use std::sync::Arc;
use std::time::Duration;

use confide_audit::{Cosignature, SignedCheckpoint};
use confide_proto::ReplicateRequest;

use super::state::{AuditState, audit_client};
use crate::base::error::DaemonError;

/// What the sequencer knows of one member.
#[derive(Debug, Default, Clone, Copy)]
struct MemberView {
    /// Entries the member holds (None: unknown, ask).
    size: Option<u64>,
    /// Size of the last final checkpoint sent to it.
    final_sent: u64,
}

/// The sequencer's loop: checkpoint, replicate, gather cosignatures, publish finals.
pub async fn replication_loop(a: Arc<AuditState>, mut stop: tokio::sync::watch::Receiver<bool>) {
    if !a.is_sequencer(&a.me) {
        return;
    }
    let members: Vec<String> = a
        .genesis
        .members
        .iter()
        .map(|m| m.name.clone())
        .filter(|n| *n != a.me)
        .collect();
    let mut views: std::collections::HashMap<String, MemberView> = members
        .iter()
        .map(|m| (m.clone(), MemberView::default()))
        .collect();
    loop {
        tokio::select! {
            _ = a.kick.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(500)) => {},
            _ = stop.changed() => return,
        }
        // Batch: let appends arriving together share a checkpoint.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let need = a
            .with(|s| Ok(s.latest_signed().map(|c| c.checkpoint.size) != Some(s.size())))
            .unwrap_or(false);
        if need && let Err(e) = a.with(|s| s.checkpoint()) {
            tracing::warn!(error = %e, "audit: cannot sign a checkpoint");
            continue;
        }
        // Two passes: the first gathers cosignatures (and may make the checkpoint final),
        // the second hands the final checkpoint to members that lack it.
        for _ in 0..2 {
            let Ok(Some(latest)) = a.with(|s| Ok(s.latest_signed().map(|c| c.checkpoint.size)))
            else {
                break;
            };
            let fin = a.with(|s| Ok(s.latest_final().cloned())).ok().flatten();
            let fin_size = fin.as_ref().map(|f| f.checkpoint.size).unwrap_or(0);
            let futs = members.iter().filter_map(|m| {
                let v = views.get(m).copied().unwrap_or_default();
                if v.size == Some(latest) && v.final_sent >= fin_size {
                    return None;
                }
                let (a, fin) = (&a, fin.clone());
                Some(async move { (m.clone(), replicate_to(a, m, v, fin).await) })
            });
            for (m, r) in futures::future::join_all(futs).await {
                match r {
                    Ok(v) => {
                        views.insert(m, v);
                    }
                    Err(e) => {
                        tracing::debug!(member = %m, error = %e, "audit: replication pending");
                        views.insert(m, MemberView::default());
                    }
                }
            }
        }
    }
}

/// Brings one member up to the latest signed checkpoint (in steps of at most 10,000
/// entries), records its cosignatures, and sends it the latest final checkpoint.
async fn replicate_to(
    a: &AuditState,
    member: &str,
    mut view: MemberView,
    fin: Option<SignedCheckpoint>,
) -> Result<MemberView, DaemonError> {
    let c = audit_client(&a.channels, member)?;
    let timeout = Duration::from_secs(5);
    let call = |req: ReplicateRequest| {
        let mut c = c.clone();
        async move {
            tokio::time::timeout(timeout, c.replicate(req))
                .await
                .map_err(|_| DaemonError::Internal("replicate timed out".into()))?
                .map_err(|s| DaemonError::Internal(s.message().to_string()))
                .map(|r| r.into_inner())
        }
    };
    let mut size = match view.size {
        Some(s) => s,
        None => call(ReplicateRequest::default()).await?.size,
    };
    for _ in 0..1000 {
        let latest = a.with(|s| Ok(s.latest_signed().map(|c| c.checkpoint.size).unwrap_or(0)))?;
        if size >= latest {
            break;
        }
        let update = a.with(|s| s.update_for(size, 10_000))?;
        let req = ReplicateRequest {
            entries: update
                .entries
                .iter()
                .map(|e| e.as_bytes().to_vec())
                .collect(),
            first_index: size,
            checkpoint: update.checkpoint.to_note(),
            consistency_proof: update.proof.iter().map(|h| h.to_vec()).collect(),
            final_checkpoints: vec![],
        };
        let r = call(req).await?;
        if !r.cosignature.is_empty() {
            let cosig: Cosignature = serde_json::from_str(&r.cosignature).map_err(|e| {
                DaemonError::Protocol(format!("audit: bad cosignature from `{member}`: {e}"))
            })?;
            if let Some(f) = a.with(|s| s.add_cosignature(&cosig))? {
                tracing::debug!(size = f.checkpoint.size, "audit: checkpoint final");
            }
        }
        if r.size <= size {
            return Err(DaemonError::Protocol(format!(
                "audit: `{member}` made no progress at size {size}"
            )));
        }
        size = r.size;
    }
    view.size = Some(size);
    // The newest final checkpoint (possibly completed just now by this member).
    let fin = a
        .with(|s| Ok(s.latest_final().cloned()))
        .ok()
        .flatten()
        .or(fin);
    if let Some(f) = fin
        && f.checkpoint.size > view.final_sent
        && f.checkpoint.size <= size
    {
        call(ReplicateRequest {
            final_checkpoints: vec![f.to_note()],
            ..Default::default()
        })
        .await?;
        view.final_sent = f.checkpoint.size;
    }
    Ok(view)
}
