//! A peer's dataset commitments for the jobs it accepted: started in the background when it
//! accepts a proposal (hashing a large file must not hold up the reply), handed to the job's
//! initiator (only) when it anchors the job. See [`crate::audit::commitment`].

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::commitment::commit_dataset;
use crate::base::error::DaemonError;

/// How many jobs' commitments are kept (the oldest go first).
const KEEP: usize = 1024;

type Slot = watch::Receiver<Option<Result<[u8; 32], String>>>;

#[derive(Debug, Default)]
struct Inner {
    /// Job id → (initiator, the commitment once computed).
    jobs: BTreeMap<String, (String, Slot)>,
    /// Job ids in insertion order, for eviction.
    order: VecDeque<String>,
}

#[derive(Debug, Default)]
pub struct Commitments {
    inner: Mutex<Inner>,
}

impl Commitments {
    /// Starts committing to the dataset at `path` for `job_id` of `initiator`.
    pub fn start(&self, data_dir: PathBuf, job_id: &str, initiator: &str, path: PathBuf) {
        let (tx, rx) = watch::channel(None);
        {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            g.jobs
                .insert(job_id.to_string(), (initiator.to_string(), rx));
            g.order.push_back(job_id.to_string());
            while g.order.len() > KEEP {
                if let Some(old) = g.order.pop_front() {
                    g.jobs.remove(&old);
                }
            }
        }
        let job = job_id.to_string();
        tokio::task::spawn_blocking(move || {
            let r = commit_dataset(&data_dir, &job, &path).map_err(|e| {
                tracing::warn!(job = %job, error = %e, "could not commit to the dataset");
                // What the initiator may see: no path, no content.
                "the dataset could not be read".to_string()
            });
            let _ = tx.send(Some(r));
        });
    }

    /// The commitment for `job_id`, if `caller` is its initiator (waits up to `within`).
    pub async fn get(
        &self,
        job_id: &str,
        caller: &str,
        within: Duration,
    ) -> Result<[u8; 32], DaemonError> {
        let slot = {
            let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match g.jobs.get(job_id) {
                Some((initiator, rx)) if initiator == caller => rx.clone(),
                _ => {
                    return Err(DaemonError::PermissionDenied(format!(
                        "`{caller}` did not initiate a job {job_id} here"
                    )));
                }
            }
        };
        let mut slot = slot;
        let ready = tokio::time::timeout(within, slot.wait_for(Option::is_some))
            .await
            .map_err(|_| DaemonError::Protocol("the dataset commitment is not ready".into()))?
            .map_err(|_| DaemonError::Internal("the commitment task ended".into()))?;
        match ready.as_ref() {
            Some(Ok(c)) => Ok(*c),
            Some(Err(m)) => Err(DaemonError::Protocol(m.clone())),
            None => Err(DaemonError::Internal("no commitment".into())),
        }
    }
}
