//! The job runner: every job has an id, a kind, its parties, a status (kept in
//! `job_table`), progress events streamed to the submitter, and a deadline. A broken
//! link to any peer fails the job at once with a message naming the peer; it never hangs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confide_mpc::{ChannelTransport, Link};
use confide_proto::{JobEvent, JobState};
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::Daemon;
use crate::base::config::PartyConfig;
use crate::base::error::{DaemonError, printable, status_line};
use crate::base::job::JobSpec;
use crate::base::kind::JobKind;
use crate::kinds::resume::{self, Ended};
use crate::kinds::{Env, JobOptions};
use crate::net::FailureSignal;
use crate::net::links::open_stream;

/// The [`Env`] a job runs in: the daemon's services, narrowed to what a job may use.
struct DaemonEnv {
    daemon: Arc<Daemon>,
    /// The configuration when the job started (its datasets stay put for the job).
    cfg: Arc<PartyConfig>,
    spec: JobSpec,
    work_dir: PathBuf,
    events: Option<mpsc::Sender<JobEvent>>,
}

impl std::fmt::Debug for DaemonEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonEnv")
            .field("job", &self.spec.job_id)
            .finish_non_exhaustive()
    }
}

/// How long a job that failed on a closed link waits for the link's own failure cause.
const LINK_CAUSE_WAIT: Duration = Duration::from_secs(2);

/// Longest time one call to a compute node may take (a commit of millions of rows).
const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(900);

impl Env for DaemonEnv {
    fn config(&self) -> &PartyConfig {
        &self.cfg
    }

    fn spec(&self) -> &JobSpec {
        &self.spec
    }

    fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    fn progress(&self, stage: &str, done: u64, total: u64, message: &str) {
        tracing::debug!(job = %self.spec.job_id, stage, done, total, message, "progress");
        if let Some(tx) = &self.events {
            let _ = tx.try_send(JobEvent {
                job_id: self.spec.job_id.clone(),
                state: JobState::Running as i32,
                stage: stage.to_string(),
                done,
                total,
                message: message.to_string(),
                ..Default::default()
            });
        }
    }

    fn log_risk_eval(
        &self,
        kind: JobKind,
        served_by: Vec<String>,
        hash: [u8; 32],
    ) -> BoxFuture<'_, Result<Vec<u8>, DaemonError>> {
        Box::pin(async move {
            let a = self.daemon.audit.as_ref().ok_or_else(|| {
                DaemonError::Config(
                    "this party has no audit chain configured (alliance.genesis, tls.audit_key)"
                        .into(),
                )
            })?;
            let kind = crate::audit::evidence::audit_kind(kind)
                .ok_or_else(|| DaemonError::Internal(format!("`{kind}` is not logged")))?;
            crate::audit::evidence::log_risk_eval(a, kind, &self.spec.job_id, served_by, hash).await
        })
    }

    fn node_call(
        &self,
        node: &str,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, DaemonError>> {
        let node = node.to_string();
        Box::pin(async move {
            let d = &self.daemon;
            if node == d.me() {
                return d.require_risk_node().await?.serve(&node, request).await;
            }
            let peer_err = |message: String| d.channels.peer_error(&node, message);
            let mut c = d.channels.client(&node)?;
            let r = tokio::time::timeout(
                NODE_CALL_TIMEOUT,
                c.call(confide_proto::CallRequest {
                    method: "risk.node".into(),
                    job_id: self.spec.job_id.clone(),
                    payload: request,
                }),
            )
            .await
            .map_err(|_| {
                peer_err(format!(
                    "no answer within {} s",
                    NODE_CALL_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|s| peer_err(status_line(&s)))?;
            Ok(r.into_inner().payload)
        })
    }
}

/// Connects to every other party of the job, runs the job's protocol, records the outcome
/// (and, at the initiator, anchors it on the audit chain). Returns the JSON summary.
pub async fn run(
    daemon: Arc<Daemon>,
    spec: JobSpec,
    options: JobOptions,
    abort: FailureSignal,
    events: Option<mpsc::Sender<JobEvent>>,
) -> Result<serde_json::Value, DaemonError> {
    let job_id = spec.job_id.clone();
    let kind = spec.kind;
    daemon.jobs.set_state(&job_id, JobState::Running, "");
    tracing::info!(job = %job_id, kind = %kind, parties = ?spec.party_names(), "job started");
    let started = Instant::now();
    let work_dir = daemon.cfg.party.data_dir.join("jobs").join(&job_id);
    if let Some(orig) = options.resume_of() {
        env_progress_resume(&events, &job_id, orig);
    }
    let deadline = spec.deadline;
    let mut abort_rx = abort.subscribe();
    let env = DaemonEnv {
        daemon: daemon.clone(),
        cfg: daemon.current(),
        spec: spec.clone(),
        work_dir: work_dir.clone(),
        events: events.clone(),
    };
    // The job's links outlive its protocol: a party that fails tells the others why
    // (`Peer.Abort`) before its streams close, so they learn the reason, not just
    // "peer closed the stream".
    let links: std::sync::OnceLock<ChannelTransport> = std::sync::OnceLock::new();
    let body = async {
        // Log before compute: the initiator anchors the attempt first; a job whose start
        // cannot be anchored runs nothing and writes no result.
        if spec.initiator() == daemon.me()
            && options.with_peers()
            && let Some(a) = &daemon.audit
        {
            crate::audit::evidence::record_job_start(a, &daemon.current(), &spec)
                .await
                .map_err(|e| {
                    DaemonError::Protocol(format!(
                        "the job's start could not be anchored on the audit chain, so nothing ran: {e}"
                    ))
                })?;
        }
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| DaemonError::io(format!("creating {}", work_dir.display()), e))?;
        let transport = if options.with_peers() {
            let t = connect_all(&daemon, &spec, abort.clone()).await?;
            env.progress("connected", 0, 0, "all parties joined");
            t
        } else {
            ChannelTransport::from_links(daemon.me(), BTreeMap::new())
        };
        options.run(&env, links.get_or_init(|| transport)).await
    };
    let aborted = async {
        loop {
            if let Some(reason) = abort_rx.borrow().clone() {
                return reason;
            }
            if abort_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let result = tokio::select! {
        r = body => r,
        reason = aborted => Err(if reason.starts_with("cancelled") {
            DaemonError::Cancelled(reason)
        } else {
            DaemonError::Aborted(reason)
        }),
        _ = tokio::time::sleep(deadline) => Err(DaemonError::Deadline(deadline.as_secs())),
    };
    // A protocol that was sending when its link closed knows only "link closed"; the
    // stream's own failure (no keepalive reply, a reset) reaches the failure signal a
    // moment later: wait briefly for it and report that instead.
    let result = match result {
        Err(e) if e.to_string().contains("link closed") => {
            let cause = tokio::time::timeout(LINK_CAUSE_WAIT, async {
                loop {
                    if let Some(r) = abort_rx.borrow_and_update().clone() {
                        return Some(r);
                    }
                    if abort_rx.changed().await.is_err() {
                        return None;
                    }
                }
            })
            .await
            .ok()
            .flatten();
            match cause {
                Some(reason) if !reason.starts_with("cancelled") => {
                    Err(DaemonError::Aborted(reason))
                }
                _ => Err(e),
            }
        }
        r => r,
    };
    // The initiator anchors every job with peers (succeeded or not) on the audit chain;
    // risk jobs anchored each evaluation before it happened.
    let result = if spec.initiator() == daemon.me() && options.with_peers() {
        anchor(&daemon, &spec, result).await
    } else {
        result
    };
    let (state, status) = match &result {
        Ok(_) => (JobState::Succeeded, "succeeded"),
        Err(DaemonError::Cancelled(r)) if r.starts_with("cancelled") => {
            (JobState::Cancelled, "cancelled")
        }
        Err(_) => (JobState::Failed, "failed"),
    };
    // The job folder goes; a checkpoint stays for a resume unless the job succeeded or
    // was cancelled.
    let ended = match state {
        JobState::Succeeded => Ended::Succeeded,
        JobState::Cancelled => Ended::Cancelled,
        _ => Ended::Failed,
    };
    resume::finish(
        &daemon.cfg.party.data_dir,
        &job_id,
        options.resume_of(),
        ended,
    );
    let err = result
        .as_ref()
        .err()
        .map(|e| printable(&e.to_string()))
        .unwrap_or_default();
    daemon.jobs.set_state(&job_id, state, &err);
    daemon.metrics.job(kind.as_str(), status);
    match &result {
        Ok(_) => {
            tracing::info!(job = %job_id, kind = %kind, elapsed_ms = started.elapsed().as_millis() as u64, "job succeeded")
        }
        Err(_) => {
            tracing::warn!(job = %job_id, kind = %kind, error = %err, "job {status}");
        }
    }
    if let Some(tx) = &events {
        let mut ev = JobEvent {
            job_id: job_id.clone(),
            state: state as i32,
            stage: "done".into(),
            ..Default::default()
        };
        match &result {
            Ok(v) => ev.result_json = v.to_string(),
            Err(_) => {
                ev.error = err.clone();
                if state == JobState::Failed
                    && let Some(h) =
                        resume::hint(&daemon.cfg.party.data_dir, &job_id, options.resume_of())
                {
                    ev.error.push_str(&h);
                }
            }
        }
        let _ = tx.send(ev).await;
    }
    // Then tell the others, so nobody waits for us (the public rendering only); the
    // submitter does not wait for a peer that may be the one that froze.
    if let Err(e) = &result {
        tell_peers_abort(&daemon, &spec, &e.public()).await;
    }
    // Only now close the job's streams: a peer hears why before it sees them end.
    drop(links);
    result
}

/// Tells the submitter that the job resumes `orig` (before anything runs).
fn env_progress_resume(events: &Option<mpsc::Sender<JobEvent>>, job_id: &str, orig: &str) {
    if let Some(tx) = events {
        let _ = tx.try_send(JobEvent {
            job_id: job_id.to_string(),
            state: JobState::Queued as i32,
            stage: "resume".into(),
            message: format!("a new attempt resuming job {orig} from its checkpoint"),
            ..Default::default()
        });
    }
}

/// Anchors a finished job on the audit chain; the index goes into the summary.
async fn anchor(
    daemon: &Daemon,
    spec: &JobSpec,
    result: Result<serde_json::Value, DaemonError>,
) -> Result<serde_json::Value, DaemonError> {
    let Some(a) = &daemon.audit else {
        return result;
    };
    // A failed job may have failed because a peer froze: ask briefly (a live peer
    // answers in milliseconds), so the submitter learns of the failure without delay.
    let wait = if result.is_ok() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(1)
    };
    let commitments = peer_commitments(daemon, spec, wait).await;
    match crate::audit::evidence::record_job(a, &daemon.current(), spec, &commitments, &result)
        .await
    {
        Ok(Some(index)) => result.map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.insert("audit_index".into(), index.into());
            }
            v
        }),
        Ok(None) => result,
        Err(e) => {
            tracing::error!(job = %spec.job_id, error = %e, "could not anchor the job on the audit chain");
            match result {
                Ok(_) => Err(DaemonError::Protocol(format!(
                    "the job ran but could not be anchored on the audit chain: {e}"
                ))),
                Err(e0) => Err(e0),
            }
        }
    }
}

/// The salted dataset commitments of the job's other parties that bring a dataset
/// (`Peer.Call` `job.dataset-commitment`; a party that does not answer has none).
async fn peer_commitments(
    daemon: &Daemon,
    spec: &JobSpec,
    wait: Duration,
) -> BTreeMap<String, [u8; 32]> {
    let me = daemon.me();
    let futs = spec
        .parties
        .iter()
        .filter(|p| p.party != me && !p.dataset.is_empty())
        .map(|p| async move {
            let mut c = daemon.channels.client(&p.party).ok()?;
            let call = c.call(confide_proto::CallRequest {
                method: crate::audit::commitment::METHOD.into(),
                job_id: spec.job_id.clone(),
                payload: Vec::new(),
            });
            match tokio::time::timeout(wait, call).await {
                Ok(Ok(r)) => {
                    let c = <[u8; 32]>::try_from(r.into_inner().payload.as_slice()).ok()?;
                    Some((p.party.clone(), c))
                }
                Ok(Err(s)) => {
                    tracing::warn!(job = %spec.job_id, peer = %p.party, error = %status_line(&s), "no dataset commitment from the peer");
                    None
                }
                Err(_) => {
                    tracing::warn!(job = %spec.job_id, peer = %p.party, "no dataset commitment from the peer within {} s", wait.as_secs());
                    None
                }
            }
        });
    futures::future::join_all(futs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Sends `Abort` to every other party of the job (best effort, 2 s each).
pub async fn tell_peers_abort(daemon: &Daemon, spec: &JobSpec, reason: &str) {
    let parties = spec.party_names();
    let futs = parties
        .iter()
        .filter(|p| *p != daemon.me())
        .map(|p| send_abort(daemon, p, &spec.job_id, reason));
    futures::future::join_all(futs).await;
}

/// One `Peer.Abort` of `job_id` to `peer` with `reason`, 2 s at most; whether it was
/// delivered.
pub async fn send_abort(daemon: &Daemon, peer: &str, job_id: &str, reason: &str) -> bool {
    let Ok(mut c) = daemon.channels.client(peer) else {
        return false;
    };
    let req = confide_proto::AbortRequest {
        job_id: job_id.to_string(),
        reason: reason.to_string(),
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), c.abort(req)).await,
        Ok(Ok(_))
    )
}

/// Opens (or accepts) one stream per other party of the job.
async fn connect_all(
    daemon: &Arc<Daemon>,
    spec: &JobSpec,
    failure: FailureSignal,
) -> Result<ChannelTransport, DaemonError> {
    let me = daemon.me().to_string();
    let timeout = Duration::from_secs(daemon.cfg.policy.peer_timeout_secs.max(1));
    let futs = spec
        .party_names()
        .into_iter()
        .filter(|p| *p != me)
        .map(|peer| {
            let daemon = daemon.clone();
            let failure = failure.clone();
            let job_id = spec.job_id.clone();
            let me = me.clone();
            async move {
                let link: Link = if me < peer {
                    tokio::time::timeout(
                        timeout,
                        open_stream(
                            &daemon.channels,
                            &job_id,
                            &peer,
                            failure,
                            daemon.metrics.clone(),
                        ),
                    )
                    .await
                    .map_err(|_| {
                        daemon
                            .channels
                            .peer_error(&peer, format!("no answer within {} s", timeout.as_secs()))
                    })??
                } else {
                    daemon
                        .rendezvous
                        .wait(&job_id, &peer, timeout, failure, daemon.metrics.clone())
                        .await?
                };
                Ok::<_, DaemonError>((peer, link))
            }
        });
    let links = futures::future::try_join_all(futs).await?;
    Ok(ChannelTransport::from_links(
        me,
        links.into_iter().collect(),
    ))
}
