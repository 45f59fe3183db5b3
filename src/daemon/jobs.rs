//! The job manager: every job has an id, a kind, its parties, a status, progress events
//! streamed to the submitter, and a deadline. A broken link to any peer fails the job at
//! once with a message naming the peer; it never hangs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confide_mpc::{ChannelTransport, Link};
use confide_proto::{DatasetRef, JobEvent, JobInfo, JobState};
use tokio::sync::{mpsc, watch};

use crate::daemon::Daemon;
use crate::daemon::links::{FailureSignal, open_stream};
use crate::error::DaemonError;

/// What a job is: the same at every party.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub job_id: String,
    pub kind: String,
    /// Every party with its dataset; the initiator first.
    pub parties: Vec<DatasetRef>,
    pub options: BTreeMap<String, String>,
    pub deadline: Duration,
    /// Where this party writes its output (initiator: from the CLI; others: work dir).
    pub output: Option<PathBuf>,
    /// At the initiator: SHA-256 of each accepting peer's dataset, from its proposal reply.
    pub dataset_hashes: BTreeMap<String, [u8; 32]>,
}

impl JobSpec {
    pub fn initiator(&self) -> &str {
        self.parties.first().map(|p| p.party.as_str()).unwrap_or("")
    }
    pub fn party_names(&self) -> Vec<String> {
        self.parties.iter().map(|p| p.party.clone()).collect()
    }
    pub fn dataset_of(&self, party: &str) -> Option<&str> {
        self.parties
            .iter()
            .find(|p| p.party == party)
            .map(|p| p.dataset.as_str())
            .filter(|d| !d.is_empty())
    }
}

/// What a running job's code sees.
pub struct JobCtx {
    pub daemon: Arc<Daemon>,
    pub spec: JobSpec,
    pub work_dir: PathBuf,
    events: Option<mpsc::Sender<JobEvent>>,
}

impl std::fmt::Debug for JobCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobCtx")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl JobCtx {
    pub fn me(&self) -> &str {
        &self.daemon.me
    }
    pub fn is_initiator(&self) -> bool {
        self.spec.initiator() == self.daemon.me
    }
    /// Reports progress to the submitter (never blocks the job).
    pub fn progress(&self, stage: &str, done: u64, total: u64, message: &str) {
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
    /// The option `key`, or `default`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.spec.options.get(key).map(String::as_str)
    }
}

/// A fresh job id.
pub fn new_job_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Records a job as queued; returns its abort signal.
pub fn register(daemon: &Daemon, spec: &JobSpec) -> Result<FailureSignal, DaemonError> {
    let (tx, _rx) = watch::channel(None);
    let signal = Arc::new(tx);
    let mut jobs = daemon
        .jobs
        .lock()
        .map_err(|_| DaemonError::Internal("job table poisoned".into()))?;
    if jobs.contains_key(&spec.job_id) {
        return Err(DaemonError::InvalidRequest(format!(
            "job {} already exists",
            spec.job_id
        )));
    }
    jobs.insert(
        spec.job_id.clone(),
        super::JobRecord {
            info: JobInfo {
                job_id: spec.job_id.clone(),
                kind: spec.kind.clone(),
                parties: spec.party_names(),
                initiator: spec.initiator().to_string(),
                state: JobState::Queued as i32,
                started_unix_ms: now_ms(),
                ..Default::default()
            },
            abort: signal.clone(),
        },
    );
    Ok(signal)
}

fn set_state(daemon: &Daemon, job_id: &str, state: JobState, error: &str) {
    if let Ok(mut jobs) = daemon.jobs.lock()
        && let Some(r) = jobs.get_mut(job_id)
    {
        r.info.state = state as i32;
        r.info.error = error.to_string();
        if matches!(
            state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) {
            r.info.finished_unix_ms = now_ms();
        }
    }
}

/// Connects to every other party of the job, runs the job's protocol, records the outcome.
/// Returns the job's JSON summary.
pub async fn run(
    daemon: Arc<Daemon>,
    spec: JobSpec,
    abort: FailureSignal,
    events: Option<mpsc::Sender<JobEvent>>,
) -> Result<serde_json::Value, DaemonError> {
    let job_id = spec.job_id.clone();
    let kind = spec.kind.clone();
    set_state(&daemon, &job_id, JobState::Running, "");
    tracing::info!(job = %job_id, kind = %kind, parties = ?spec.party_names(), "job started");
    let started = Instant::now();
    let work_dir = daemon.cfg.party.data_dir.join("jobs").join(&job_id);
    let deadline = spec.deadline;
    let mut abort_rx = abort.subscribe();
    let ctx = JobCtx {
        daemon: daemon.clone(),
        spec: spec.clone(),
        work_dir: work_dir.clone(),
        events: events.clone(),
    };
    let body = async {
        std::fs::create_dir_all(&work_dir)
            .map_err(|e| DaemonError::io(format!("creating {}", work_dir.display()), e))?;
        let transport = connect_all(&daemon, &spec, abort.clone()).await?;
        ctx.progress("connected", 0, 0, "all parties joined");
        crate::jobs::run(&ctx, &transport).await
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
        reason = aborted => Err(DaemonError::Cancelled(reason)),
        _ = tokio::time::sleep(deadline) => Err(DaemonError::Deadline(deadline.as_secs())),
    };
    let _ = std::fs::remove_dir_all(&work_dir);
    // The initiator anchors every job (succeeded or not) on the audit chain.
    let result = if spec.initiator() == daemon.me {
        match crate::audit::record_job(&daemon, &spec, &result).await {
            Ok(Some(index)) => result.map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.insert("audit_index".into(), index.into());
                }
                v
            }),
            Ok(None) => result,
            Err(e) => {
                tracing::error!(job = %job_id, error = %e, "could not anchor the job on the audit chain");
                match result {
                    Ok(_) => Err(DaemonError::Protocol(format!(
                        "the job ran but could not be anchored on the audit chain: {e}"
                    ))),
                    Err(e0) => Err(e0),
                }
            }
        }
    } else {
        result
    };
    let elapsed = started.elapsed();
    let (state, status) = match &result {
        Ok(_) => (JobState::Succeeded, "succeeded"),
        Err(DaemonError::Cancelled(r)) if r.starts_with("cancelled") => {
            (JobState::Cancelled, "cancelled")
        }
        Err(_) => (JobState::Failed, "failed"),
    };
    let err = result
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    set_state(&daemon, &job_id, state, &err);
    daemon.metrics.job(&kind, status);
    match &result {
        Ok(_) => {
            tracing::info!(job = %job_id, kind = %kind, elapsed_ms = elapsed.as_millis() as u64, "job succeeded")
        }
        Err(e) => {
            tracing::warn!(job = %job_id, kind = %kind, error = %e, "job {status}");
            // Tell the others, so nobody waits for us.
            let reason = e.to_string();
            for p in spec.party_names() {
                if p != daemon.me
                    && let Ok(mut c) = daemon.channels.client(&p)
                {
                    let req = confide_proto::AbortRequest {
                        job_id: job_id.clone(),
                        reason: reason.clone(),
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(2), c.abort(req)).await;
                }
            }
        }
    }
    if let Some(tx) = events {
        let mut ev = JobEvent {
            job_id: job_id.clone(),
            state: state as i32,
            stage: "done".into(),
            ..Default::default()
        };
        match &result {
            Ok(v) => ev.result_json = v.to_string(),
            Err(e) => ev.error = e.to_string(),
        }
        let _ = tx.send(ev).await;
    }
    result
}

/// Opens (or accepts) one stream per other party of the job.
async fn connect_all(
    daemon: &Arc<Daemon>,
    spec: &JobSpec,
    failure: FailureSignal,
) -> Result<ChannelTransport, DaemonError> {
    let me = daemon.me.clone();
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
                    .map_err(|_| DaemonError::Peer {
                        peer: peer.clone(),
                        address: daemon.channels.address(&peer).unwrap_or("-").to_string(),
                        message: format!("no answer within {} s", timeout.as_secs()),
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
