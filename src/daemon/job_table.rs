//! The job table: every job this daemon knows, its state and abort signal, written
//! through to the on-disk history ([`JobStore`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confide_proto::{JobInfo, JobState};
use tokio::sync::watch;

use super::job_store::JobStore;
use crate::base::error::DaemonError;
use crate::base::ids::now_ms;
use crate::base::job::JobSpec;
use crate::net::FailureSignal;

/// One job in the job table.
#[derive(Debug)]
pub struct JobRecord {
    pub info: JobInfo,
    pub abort: FailureSignal,
}

/// Every job this daemon knows, by id, written through to the on-disk history.
#[derive(Debug, Default)]
pub struct JobTable {
    jobs: Mutex<BTreeMap<String, JobRecord>>,
    store: Option<JobStore>,
    /// Jobs this start found cut off (marked [`INTERRUPTED`](super::job_store::INTERRUPTED)),
    /// whose other parties are told so ([`super::restart_notice`]).
    pub interrupted: Vec<JobInfo>,
}

impl JobTable {
    /// The table with the history at `path` (see [`JobStore::open`]).
    pub fn open(path: &Path) -> Result<Self, DaemonError> {
        let started = now_ms();
        let (store, history) = JobStore::open(path, started)?;
        let interrupted = history
            .iter()
            .filter(|j| j.error == super::job_store::INTERRUPTED && j.finished_unix_ms == started)
            .cloned()
            .collect();
        let jobs = history
            .into_iter()
            .map(|info| {
                let (tx, _rx) = watch::channel(None);
                let rec = JobRecord {
                    info,
                    abort: Arc::new(tx),
                };
                (rec.info.job_id.clone(), rec)
            })
            .collect();
        Ok(Self {
            jobs: Mutex::new(jobs),
            store: Some(store),
            interrupted,
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, JobRecord>>, DaemonError> {
        self.jobs
            .lock()
            .map_err(|_| DaemonError::Internal("job table poisoned".into()))
    }

    /// Writes a job's record to the history (a failure is logged: the job goes on).
    fn persist(&self, info: &JobInfo) {
        if let Some(store) = &self.store
            && let Err(e) = store.put(info)
        {
            tracing::error!(job = %info.job_id, "{e}");
        }
    }

    /// Records a job as queued; returns its abort signal.
    pub fn register(&self, spec: &JobSpec) -> Result<FailureSignal, DaemonError> {
        let (tx, _rx) = watch::channel(None);
        let signal = Arc::new(tx);
        let mut jobs = self.lock()?;
        if jobs.contains_key(&spec.job_id) {
            return Err(DaemonError::InvalidRequest(format!(
                "job {} already exists",
                spec.job_id
            )));
        }
        jobs.insert(
            spec.job_id.clone(),
            JobRecord {
                info: JobInfo {
                    job_id: spec.job_id.clone(),
                    kind: spec.kind.as_str().to_string(),
                    parties: spec.party_names(),
                    initiator: spec.initiator().to_string(),
                    state: JobState::Queued as i32,
                    started_unix_ms: now_ms(),
                    ..Default::default()
                },
                abort: signal.clone(),
            },
        );
        if let Some(r) = jobs.get(&spec.job_id) {
            self.persist(&r.info);
        }
        Ok(signal)
    }

    pub fn set_state(&self, job_id: &str, state: JobState, error: &str) {
        if let Ok(mut jobs) = self.lock()
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
            self.persist(&r.info);
        }
    }

    /// Every job, oldest id first.
    pub fn list(&self) -> Vec<JobInfo> {
        self.lock()
            .map(|j| j.values().map(|r| r.info.clone()).collect())
            .unwrap_or_default()
    }

    /// Number of queued or running jobs.
    pub fn running(&self) -> u64 {
        self.lock()
            .map(|j| {
                j.values()
                    .filter(|r| {
                        r.info.state == JobState::Running as i32
                            || r.info.state == JobState::Queued as i32
                    })
                    .count() as u64
            })
            .unwrap_or(0)
    }

    /// Trips a job's abort signal with `reason` (first reason wins). `from`: only if that
    /// party takes part in the job. Returns whether this call tripped it.
    pub fn abort(
        &self,
        job_id: &str,
        from: Option<&str>,
        reason: String,
    ) -> Result<bool, DaemonError> {
        let jobs = self.lock()?;
        let rec = jobs
            .get(job_id)
            .ok_or_else(|| DaemonError::JobNotFound(job_id.to_string()))?;
        if let Some(p) = from
            && !rec.info.parties.iter().any(|x| x == p)
        {
            return Ok(false);
        }
        Ok(rec.abort.send_if_modified(|a| {
            if a.is_none() {
                *a = Some(reason);
                true
            } else {
                false
            }
        }))
    }

    /// Party `who` says it restarted while job `job_id` ran. A live job fails with that
    /// cause; a job that already failed on a broken link to `who` gets the cause recorded
    /// (the link's symptom kept). Returns whether the job's record changed.
    pub fn peer_restarted(&self, job_id: &str, who: &str) -> Result<bool, DaemonError> {
        let cause = format!("peer `{who}` restarted during the job");
        let mut jobs = self.lock()?;
        let Some(rec) = jobs.get_mut(job_id) else {
            return Ok(false);
        };
        if !rec.info.parties.iter().any(|p| p == who) {
            return Ok(false);
        }
        let live =
            rec.info.state == JobState::Queued as i32 || rec.info.state == JobState::Running as i32;
        if live {
            return Ok(rec.abort.send_if_modified(|a| {
                if a.is_none() {
                    *a = Some(cause.clone());
                    true
                } else {
                    false
                }
            }));
        }
        let named = format!("peer `{who}`");
        if rec.info.state != JobState::Failed as i32
            || !rec.info.error.contains(&named)
            || rec.info.error.contains(&cause)
        {
            return Ok(false);
        }
        rec.info.error = format!("{cause} (seen here as: {})", rec.info.error);
        let info = rec.info.clone();
        drop(jobs);
        self.persist(&info);
        Ok(true)
    }

    /// Is `party` a party of job `job_id` here? Waits up to `grace` for the job to be
    /// registered (a peer may open its stream just before this party has seen the
    /// proposal). Returns whether it is.
    pub async fn wait_for_party(&self, job_id: &str, party: &str, grace: Duration) -> bool {
        let started = Instant::now();
        loop {
            if let Ok(jobs) = self.lock()
                && let Some(r) = jobs.get(job_id)
            {
                let live = r.info.state == JobState::Queued as i32
                    || r.info.state == JobState::Running as i32;
                return live && r.info.parties.iter().any(|p| p == party);
            }
            if started.elapsed() >= grace {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Trips every job's abort signal (shutdown).
    pub fn abort_all(&self, reason: &str) {
        if let Ok(jobs) = self.lock() {
            for r in jobs.values() {
                r.abort.send_if_modified(|a| {
                    if a.is_none() {
                        *a = Some(reason.to_string());
                        true
                    } else {
                        false
                    }
                });
            }
        }
    }
}
