//! The job table: every job this daemon knows, its state and abort signal, written
//! through to the on-disk history ([`JobStore`]).

use std::collections::{BTreeMap, VecDeque};
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

/// Finished jobs kept in memory (the rest are read from the store when listed).
pub const KEEP_FINISHED: usize = 1_000;

/// Trips an abort signal with `reason` unless it already carries one (the first reason
/// wins); returns whether this call tripped it.
fn trip(signal: &FailureSignal, reason: String) -> bool {
    signal.send_if_modified(|a| {
        if a.is_none() {
            *a = Some(reason);
            true
        } else {
            false
        }
    })
}

/// Whose word explains a failed job's cause at this party.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Explains {
    /// A party that restarted explains a broken link to it.
    Restart,
    /// The job's initiator: every party records its cause.
    Initiator,
}

/// On a job that already failed here, records `who`'s `cause` in front of the local error
/// (kept as the symptom); returns whether the record changed.
fn record_cause(info: &mut JobInfo, who: &str, cause: &str, by: Explains) -> bool {
    let applies = match by {
        Explains::Restart => info.error.contains(&format!("peer `{who}`")),
        Explains::Initiator => info.initiator == who,
    };
    if !applies
        || !info.parties.iter().any(|p| p == who)
        || info.state != JobState::Failed as i32
        || info.error.contains(cause)
    {
        return false;
    }
    info.error = format!("{cause} (seen here as: {})", info.error);
    true
}

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
    /// Finished jobs still in memory, oldest first; beyond [`Self::keep_finished`] the
    /// oldest leave memory (their records stay in the store), so a daemon answering risk
    /// queries for years does not grow with its history.
    finished: Mutex<VecDeque<String>>,
    keep_finished: usize,
    /// Jobs this start found cut off (marked [`INTERRUPTED`](super::job_store::INTERRUPTED)),
    /// whose other parties are told so ([`super::restart_notice`]).
    pub interrupted: Vec<JobInfo>,
}

impl JobTable {
    /// The table with the history at `path` (see [`JobStore::open`]), keeping the latest
    /// [`KEEP_FINISHED`] finished jobs in memory.
    pub fn open(path: &Path) -> Result<Self, DaemonError> {
        Self::open_keeping(path, KEEP_FINISHED)
    }

    /// As [`Self::open`], keeping `keep_finished` finished jobs in memory.
    pub fn open_keeping(path: &Path, keep_finished: usize) -> Result<Self, DaemonError> {
        let started = now_ms();
        let (store, history) = JobStore::open(path, started)?;
        let interrupted = history
            .iter()
            .filter(|j| j.error == super::job_store::INTERRUPTED && j.finished_unix_ms == started)
            .cloned()
            .collect();
        // In memory: the most recently finished jobs (none is live after a restart).
        let mut history = history;
        history.sort_by_key(|j| (j.finished_unix_ms, j.started_unix_ms));
        let skip = history.len().saturating_sub(keep_finished);
        let finished = history
            .iter()
            .skip(skip)
            .map(|j| j.job_id.clone())
            .collect();
        let jobs = history
            .into_iter()
            .skip(skip)
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
            finished: Mutex::new(finished),
            keep_finished,
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
            let done = matches!(
                state,
                JobState::Succeeded | JobState::Failed | JobState::Cancelled
            );
            if done {
                r.info.finished_unix_ms = now_ms();
            }
            self.persist(&r.info);
            if done && self.store.is_some() {
                self.forget_old(&mut jobs, job_id);
            }
        }
    }

    /// Notes `job_id` as finished and drops the oldest finished jobs beyond
    /// `keep_finished` from memory (their records are in the store).
    fn forget_old(&self, jobs: &mut BTreeMap<String, JobRecord>, job_id: &str) {
        let Ok(mut finished) = self.finished.lock() else {
            return;
        };
        finished.push_back(job_id.to_string());
        while finished.len() > self.keep_finished {
            if let Some(old) = finished.pop_front() {
                let ended = jobs.get(&old).is_some_and(|r| {
                    r.info.state != JobState::Queued as i32
                        && r.info.state != JobState::Running as i32
                });
                if ended {
                    jobs.remove(&old);
                }
            }
        }
    }

    /// Every job, by id: the whole history from the store (each state change is written
    /// there), or the table itself without a store.
    pub fn list(&self) -> Vec<JobInfo> {
        if let Some(store) = &self.store {
            match store.load() {
                Ok(all) => return all,
                Err(e) => tracing::error!("{e}"),
            }
        }
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
        Ok(trip(&rec.abort, reason))
    }

    /// Party `who` says it restarted while job `job_id` ran. A live job fails with that
    /// cause; a job that already failed on a broken link to `who` gets the cause recorded
    /// (the link's symptom kept). Returns whether the job's record changed.
    pub fn peer_restarted(&self, job_id: &str, who: &str) -> Result<bool, DaemonError> {
        let cause = format!("peer `{who}` restarted during the job");
        self.explain(job_id, who, &cause, Explains::Restart)
    }

    /// The job's initiator `who` says why the job failed. A live job fails with that cause
    /// (as any peer's abort); a job that already failed here on its own records the
    /// initiator's cause first (its own kept as "seen here as"), so every party of a failed
    /// job names the same cause. Returns whether the job's record changed.
    pub fn initiator_failed(
        &self,
        job_id: &str,
        who: &str,
        cause: &str,
    ) -> Result<bool, DaemonError> {
        self.explain(job_id, who, cause, Explains::Initiator)
    }

    fn explain(
        &self,
        job_id: &str,
        who: &str,
        cause: &str,
        by: Explains,
    ) -> Result<bool, DaemonError> {
        let mut jobs = self.lock()?;
        let Some(rec) = jobs.get_mut(job_id) else {
            // Finished long ago and no longer in memory: update the stored record.
            let stored = match &self.store {
                Some(store) => store.get(job_id)?,
                None => None,
            };
            let Some(mut info) = stored else {
                return Ok(false);
            };
            drop(jobs);
            let changed = record_cause(&mut info, who, cause, by);
            if changed {
                self.persist(&info);
            }
            return Ok(changed);
        };
        if !rec.info.parties.iter().any(|p| p == who) {
            return Ok(false);
        }
        let live =
            rec.info.state == JobState::Queued as i32 || rec.info.state == JobState::Running as i32;
        if live {
            return Ok(trip(&rec.abort, cause.to_string()));
        }
        if !record_cause(&mut rec.info, who, cause, by) {
            return Ok(false);
        }
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
                trip(&r.abort, reason.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::kind::JobKind;
    use confide_proto::DatasetRef;

    fn spec(id: &str) -> JobSpec {
        let party = |p: &str| DatasetRef {
            party: p.into(),
            dataset: String::new(),
        };
        JobSpec {
            job_id: id.into(),
            kind: JobKind::Netcheck,
            parties: vec![party("alice"), party("bob")],
            options_json: String::new(),
            deadline: Duration::from_secs(60),
            output: None,
        }
    }

    #[test]
    fn finished_jobs_leave_memory_but_not_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        let t = JobTable::open_keeping(&path, 3).unwrap();
        for i in 0..8 {
            let id = format!("job{i}");
            t.register(&spec(&id)).unwrap();
            t.set_state(&id, JobState::Running, "");
            let (state, err) = if i == 1 {
                (JobState::Failed, "peer `bob`: the connection dropped")
            } else {
                (JobState::Succeeded, "")
            };
            t.set_state(&id, state, err);
        }
        t.register(&spec("live")).unwrap();
        // In memory: the 3 latest finished and the live one; listed: all 9.
        let in_memory: Vec<String> = t.lock().unwrap().keys().cloned().collect();
        assert_eq!(in_memory, ["job5", "job6", "job7", "live"]);
        assert_eq!(t.list().len(), 9);
        assert_eq!(t.running(), 1);
        // A restart notice still reaches a job that left memory.
        assert!(t.peer_restarted("job1", "bob").unwrap());
        let job1 = t.list().into_iter().find(|j| j.job_id == "job1").unwrap();
        assert!(
            job1.error
                .starts_with("peer `bob` restarted during the job (seen here as: peer `bob`"),
            "{}",
            job1.error
        );
        assert!(!t.peer_restarted("job2", "bob").unwrap(), "job2 succeeded");
        // After a restart, memory again holds only the latest finished jobs.
        drop(t);
        let t = JobTable::open_keeping(&path, 3).unwrap();
        assert_eq!(t.lock().unwrap().len(), 3);
        assert_eq!(t.list().len(), 9);
        assert_eq!(t.interrupted.len(), 1, "the live job was cut off");
    }

    #[test]
    fn every_party_records_the_initiators_cause() {
        let t = JobTable::open_keeping(&tempfile::tempdir().unwrap().path().join("j"), 10).unwrap();
        // spec(): alice initiates, bob takes part. At bob the job failed on its own first.
        t.register(&spec("a")).unwrap();
        t.set_state("a", JobState::Failed, "peer `carol`: no keepalive reply");
        let cause = "peer `alice` ended the job: peer `carol`: the connection dropped";
        assert!(
            !t.initiator_failed("a", "bob", cause).unwrap(),
            "bob is not the initiator"
        );
        assert!(t.initiator_failed("a", "alice", cause).unwrap());
        let a = t.list().into_iter().find(|j| j.job_id == "a").unwrap();
        assert_eq!(
            a.error,
            format!("{cause} (seen here as: peer `carol`: no keepalive reply)")
        );
        assert!(
            !t.initiator_failed("a", "alice", cause).unwrap(),
            "recorded once"
        );
        // A live job fails with the initiator's cause.
        let signal = t.register(&spec("b")).unwrap();
        assert!(t.initiator_failed("b", "alice", cause).unwrap());
        assert_eq!(signal.borrow().as_deref(), Some(cause));
    }
}
