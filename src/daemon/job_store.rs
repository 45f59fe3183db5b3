//! The job history on disk: one redb file (`DATA_DIR/jobs.redb`) beside the audit store,
//! one record per job (its [`JobInfo`], protobuf-encoded), written at every state change,
//! so `confide jobs` shows the history after a restart.
//!
//! The daemon keeps only live and recently finished jobs in memory; `confide jobs` reads
//! the whole history from here.
//!
//! At open, a job that was queued or running when the daemon stopped is marked failed
//! with [`INTERRUPTED`]: nothing runs it any more.

use std::path::{Path, PathBuf};

use confide_proto::{JobInfo, JobState};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::base::error::DaemonError;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

/// redb's page cache for the history (its 1 GiB default would let memory grow with it).
const CACHE_BYTES: usize = 8 << 20;

/// The error of a job cut off by a restart of this daemon.
pub const INTERRUPTED: &str = "interrupted: daemon restarted";

/// The on-disk job history.
pub struct JobStore {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn err(path: &Path, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Internal(format!("job store {}: {e}", path.display()))
}

impl JobStore {
    /// Opens (or creates) the store at `path` and returns it with every job it holds,
    /// jobs left queued or running by an earlier run already marked failed.
    pub fn open(path: &Path, now_ms: u64) -> Result<(Self, Vec<JobInfo>), DaemonError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| {
                DaemonError::Config(format!(
                    "cannot open the job store {}: {e} (is another daemon using this data_dir?)",
                    path.display()
                ))
            })?;
        let store = Self {
            db,
            path: path.to_path_buf(),
        };
        let mut jobs = store.load()?;
        for j in &mut jobs {
            let live = j.state == JobState::Queued as i32 || j.state == JobState::Running as i32;
            if live {
                j.state = JobState::Failed as i32;
                j.error = INTERRUPTED.to_string();
                j.finished_unix_ms = now_ms;
                store.put(j)?;
            }
        }
        Ok((store, jobs))
    }

    /// Every job record in the history, by id.
    pub fn load(&self) -> Result<Vec<JobInfo>, DaemonError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(|e| err(p, e))?;
        let table = match tx.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(p, e)),
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| err(p, e))? {
            let (k, v) = row.map_err(|e| err(p, e))?;
            match JobInfo::decode(v.value()) {
                Ok(info) => out.push(info),
                // One unreadable record costs that record, not the history.
                Err(e) => tracing::warn!(job = k.value(), "job store: unreadable record: {e}"),
            }
        }
        Ok(out)
    }

    /// One job's record, if the history holds it.
    pub fn get(&self, job_id: &str) -> Result<Option<JobInfo>, DaemonError> {
        let p = &self.path;
        let tx = self.db.begin_read().map_err(|e| err(p, e))?;
        let table = match tx.open_table(JOBS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(p, e)),
        };
        let Some(v) = table.get(job_id).map_err(|e| err(p, e))? else {
            return Ok(None);
        };
        JobInfo::decode(v.value())
            .map(Some)
            .map_err(|e| err(p, format!("job {job_id}: unreadable record: {e}")))
    }

    /// Writes (replaces) one job's record.
    pub fn put(&self, info: &JobInfo) -> Result<(), DaemonError> {
        let p = &self.path;
        let tx = self.db.begin_write().map_err(|e| err(p, e))?;
        {
            let mut table = tx.open_table(JOBS).map_err(|e| err(p, e))?;
            table
                .insert(info.job_id.as_str(), info.encode_to_vec().as_slice())
                .map_err(|e| err(p, e))?;
        }
        tx.commit().map_err(|e| err(p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, state: JobState) -> JobInfo {
        JobInfo {
            job_id: id.into(),
            kind: "psi".into(),
            parties: vec!["alice".into(), "bob".into()],
            initiator: "alice".into(),
            state: state as i32,
            started_unix_ms: 1,
            ..Default::default()
        }
    }

    #[test]
    fn history_survives_reopening_and_live_jobs_become_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        {
            let (store, jobs) = JobStore::open(&path, 5).unwrap();
            assert!(jobs.is_empty());
            let mut done = job("j1", JobState::Succeeded);
            done.finished_unix_ms = 3;
            store.put(&done).unwrap();
            store.put(&job("j2", JobState::Running)).unwrap();
            store.put(&job("j3", JobState::Queued)).unwrap();
        }
        let (_store, jobs) = JobStore::open(&path, 9).unwrap();
        let by = |id: &str| jobs.iter().find(|j| j.job_id == id).unwrap().clone();
        assert_eq!(jobs.len(), 3);
        assert_eq!(by("j1").state, JobState::Succeeded as i32);
        assert_eq!(by("j1").finished_unix_ms, 3);
        for id in ["j2", "j3"] {
            let j = by(id);
            assert_eq!(j.state, JobState::Failed as i32);
            assert_eq!(j.error, INTERRUPTED);
            assert_eq!(j.finished_unix_ms, 9);
        }
    }

    #[test]
    fn a_second_daemon_on_the_same_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        let _first = JobStore::open(&path, 0).unwrap();
        let e = JobStore::open(&path, 0).unwrap_err();
        assert!(e.to_string().contains("another daemon"), "{e}");
    }
}
