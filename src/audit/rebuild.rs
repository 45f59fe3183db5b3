//! The sequencer's rebuild of a corrupt audit store from the members' copies
//! (confide-audit's [`AuditStore::restore`](confide_audit::AuditStore::restore) decides
//! what is adopted; this module only does the `Audit.Fetch` calls).
//!
//! Every other member is asked for its latest cosigned and final checkpoints; the log of
//! the member with the longest cosigned checkpoint is fetched in pages and handed to the
//! store, which checks the sequencer's own signature, every entry and the roots. All
//! members must answer: one that is down might hold a longer cosigned log, and signing
//! over a shorter one would look like equivocation to it. Until then the sequencer
//! appends nothing (jobs fail with that reason) and retries every second; `confide
//! status` shows the last attempt.

use std::time::Duration;

use confide_audit::replicator::MAX_BATCH_ENTRIES;
use confide_audit::{Entry, SignedCheckpoint};
use confide_proto::FetchRequest;

use super::replicate::CALL_TIMEOUT;
use super::state::{AuditState, audit_client};
use crate::base::error::{DaemonError, status_line};

/// At the sequencer: returns once its store is not (or no longer) rebuilding, retrying
/// every second; false if `stop` changed first.
pub async fn until_rebuilt(a: &AuditState, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    let mut attempts = 0u32;
    loop {
        match a.with(|s| Ok(s.rebuilding().is_some())) {
            Ok(false) => return true,
            Ok(true) => {}
            Err(e) => {
                tracing::error!(error = %e, "audit: cannot read the store");
                return false;
            }
        }
        attempts += 1;
        let note = match rebuild_once(a).await {
            Ok(n) => {
                tracing::info!(
                    entries = n,
                    "audit: store rebuilt from the other members' copies"
                );
                a.note_finals();
                a.kick.notify_one();
                format!("rebuilt at start from the other members' copies ({n} entries adopted)")
            }
            Err(e) => {
                if attempts == 1 {
                    tracing::warn!(error = %e, "audit: rebuild not possible yet; retrying");
                }
                format!("attempt {attempts}: {e}")
            }
        };
        if let Ok(mut n) = a.rebuild_note.lock() {
            *n = note;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            _ = stop.changed() => return false,
        }
    }
}

/// One attempt; the number of entries adopted.
async fn rebuild_once(a: &AuditState) -> Result<u64, DaemonError> {
    let others: Vec<String> = a
        .genesis
        .members
        .iter()
        .map(|m| m.name.clone())
        .filter(|n| *n != a.me)
        .collect();
    let answers = futures::future::join_all(others.iter().map(|m| fetch(a, m, 0, 1))).await;
    let mut longest: Option<(&str, SignedCheckpoint)> = None;
    let mut latest_final: Option<SignedCheckpoint> = None;
    for (m, r) in others.iter().zip(answers) {
        let (_, fin, signed) = r.map_err(|e| {
            DaemonError::Protocol(format!(
                "waiting for `{m}` (every member's copy is needed): {e}"
            ))
        })?;
        if let Some(sc) = signed
            && longest
                .as_ref()
                .is_none_or(|(_, l)| sc.checkpoint.size > l.checkpoint.size)
        {
            longest = Some((m, sc));
        }
        if let Some(f) = fin
            && latest_final
                .as_ref()
                .is_none_or(|l| f.checkpoint.size > l.checkpoint.size)
        {
            latest_final = Some(f);
        }
    }
    let mut entries = Vec::new();
    if let Some((m, sc)) = &longest {
        let n = sc.checkpoint.size;
        while (entries.len() as u64) < n {
            let from = entries.len() as u64;
            let (page, _, _) = fetch(a, m, from, MAX_BATCH_ENTRIES.min(n - from)).await?;
            if page.is_empty() {
                return Err(DaemonError::Protocol(format!(
                    "`{m}` cosigned {n} entries but sent none from {from}"
                )));
            }
            entries.extend(page);
        }
        entries.truncate(n as usize);
    }
    let n = entries.len() as u64;
    a.with(|s| {
        s.restore(
            &entries,
            longest.as_ref().map(|(_, sc)| sc),
            latest_final.as_ref(),
        )
    })?;
    Ok(n)
}

type Fetched = (
    Vec<Entry>,
    Option<SignedCheckpoint>,
    Option<SignedCheckpoint>,
);

/// `Audit.Fetch` at `member`: (entries, latest final checkpoint, latest cosigned one).
pub(super) async fn fetch(
    a: &AuditState,
    member: &str,
    from: u64,
    limit: u64,
) -> Result<Fetched, DaemonError> {
    let mut c = audit_client(&a.channels, member)?;
    let r = tokio::time::timeout(
        CALL_TIMEOUT,
        c.fetch(FetchRequest {
            from_index: from,
            limit,
        }),
    )
    .await
    .map_err(|_| DaemonError::Protocol(format!("audit: `{member}` did not answer within 5 s")))?
    .map_err(|s| DaemonError::Protocol(format!("audit: `{member}`: {}", status_line(&s))))?
    .into_inner();
    let note = |s: &str| -> Result<Option<SignedCheckpoint>, DaemonError> {
        if s.is_empty() {
            Ok(None)
        } else {
            Ok(Some(SignedCheckpoint::from_note(s)?))
        }
    };
    let entries = r
        .entries
        .iter()
        .map(|b| Entry::from_bytes(b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((entries, note(&r.checkpoint)?, note(&r.signed_checkpoint)?))
}
