//! Resuming a job from its checkpoint (`confide psi --resume JOB`, `confide train --resume
//! JOB`).
//!
//! A job that checkpoints keeps its checkpoint in `DATA_DIR/jobs/<job>/checkpoint/` at every
//! party (files 0600, folder 0700). A resumed attempt is a new job (its own id, anchored on
//! the audit chain at its start and end like any job) whose options name the original job
//! (`"resume": "<job>"`, which the audit fingerprint commits to); every party continues from
//! its checkpoint of the original job, after checking that it has one made with the same
//! parties, options and input. The checkpoint is deleted when an attempt succeeds or is
//! cancelled; it stays when an attempt fails (so it can be resumed again), and a daemon's
//! start removes everything else a crashed job left and checkpoints older than
//! [`CHECKPOINT_TTL`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::base::error::DaemonError;
use crate::base::ids::valid_job_id;

/// The folder of a job's checkpoint inside its job folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// How long a checkpoint is kept for a resume (from its last update): 7 days.
pub const CHECKPOINT_TTL: Duration = Duration::from_secs(7 * 86_400);

/// The checkpoint folder of job `job_id` under `data_dir`.
pub fn checkpoint_dir(data_dir: &Path, job_id: &str) -> PathBuf {
    data_dir.join("jobs").join(job_id).join(CHECKPOINT_DIR)
}

/// The job whose checkpoint a job works with: the one it resumes, or itself.
pub fn anchor_job<'a>(job_id: &'a str, resume: Option<&'a str>) -> &'a str {
    resume.unwrap_or(job_id)
}

/// What the submitter of a failed job is told when this party keeps a checkpoint for it:
/// the job to name in `--resume`, which is the original one when the failed job was itself
/// a resumed attempt (every attempt works on the original's checkpoint).
pub fn hint(data_dir: &Path, job_id: &str, resume: Option<&str>) -> Option<String> {
    let anchor = anchor_job(job_id, resume);
    has_checkpoint(&checkpoint_dir(data_dir, anchor))
        .then(|| format!(" (its checkpoint is kept: continue it with `--resume {anchor}`)"))
}

/// Checks the job id given to `--resume`.
pub fn check_id(id: &str) -> Result<(), DaemonError> {
    if valid_job_id(id) {
        Ok(())
    } else {
        Err(DaemonError::InvalidRequest(format!(
            "`{id}` is not a job id (24 hex digits, as `confide jobs` lists them)"
        )))
    }
}

/// The refusal of a resume at party `me` for a checkpoint `problem` (the message names the
/// job and the party; it is what the initiator prints).
pub fn refusal(job: &str, me: &str, problem: &str, initiator: bool) -> DaemonError {
    let m = if problem == "no checkpoint" {
        format!("job {job} has no checkpoint at `{me}`")
    } else {
        format!("cannot resume job {job} at `{me}`: {problem}")
    };
    if initiator {
        DaemonError::InvalidRequest(m)
    } else {
        DaemonError::PermissionDenied(m)
    }
}

/// How a job ended, for what happens to its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Succeeded,
    Cancelled,
    Failed,
}

/// Cleans up after a job: its folder goes, but a failed job keeps its checkpoint (or the
/// checkpoint of the job it resumed stays); success or cancellation deletes the checkpoint
/// it worked with.
pub fn finish(data_dir: &Path, job_id: &str, resume: Option<&str>, ended: Ended) {
    let work = data_dir.join("jobs").join(job_id);
    let own_ck = checkpoint_dir(data_dir, job_id);
    if ended == Ended::Failed && resume.is_none() && has_checkpoint(&own_ck) {
        remove_all_but(&work, CHECKPOINT_DIR);
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    if ended != Ended::Failed
        && let Some(orig) = resume.filter(|o| valid_job_id(o))
    {
        let _ = std::fs::remove_dir_all(data_dir.join("jobs").join(orig));
    }
}

/// Removes everything in `dir` but the entry `keep`.
fn remove_all_but(dir: &Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name() == keep {
            continue;
        }
        let p = e.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

/// At a daemon's start (no job runs): in each job folder left under `jobs_dir`, keeps a
/// checkpoint updated within [`CHECKPOINT_TTL`] and removes everything else (spill files,
/// temporaries, expired checkpoints, empty folders). Returns (folders removed, checkpoints
/// kept).
pub fn clean_leftovers(jobs_dir: &Path) -> (usize, usize) {
    let Ok(entries) = std::fs::read_dir(jobs_dir) else {
        return (0, 0);
    };
    let (mut removed, mut kept) = (0, 0);
    for entry in entries.flatten() {
        let path = entry.path();
        let ck = path.join(CHECKPOINT_DIR);
        let fresh = ["state", "state-0", "state-1"].iter().any(|f| {
            std::fs::metadata(ck.join(f))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < CHECKPOINT_TTL)
        });
        if path.is_dir() && fresh {
            remove_all_but(&path, CHECKPOINT_DIR);
            kept += 1;
            continue;
        }
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match gone {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("cannot remove the leftover {}: {e}", path.display()),
        }
    }
    (removed, kept)
}

/// The job's options and parties, kept next to a training checkpoint (what a resume must
/// match, and where the initiator finds the job's seed).
pub const OPTIONS_FILE: &str = "options.json";

/// Whether `dir` holds a checkpoint (PSI: `state`; training: `state-0` / `state-1`).
pub fn has_checkpoint(dir: &Path) -> bool {
    ["state", "state-0", "state-1"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// What a training checkpoint records of its job: the parties (with datasets) and the
/// options without `resume`.
fn job_record(parties: &[confide_proto::DatasetRef], options: &serde_json::Value) -> String {
    let parties: Vec<(&str, &str)> = parties
        .iter()
        .map(|p| (p.party.as_str(), p.dataset.as_str()))
        .collect();
    serde_json::json!({ "parties": parties, "options": options }).to_string()
}

/// The options of a training job as a checkpoint compares them.
pub fn train_options_value(o: &crate::kinds::train::Opts) -> serde_json::Value {
    let mut o = o.clone();
    o.resume = None;
    o.seed_from_checkpoint = false;
    serde_json::to_value(&o).unwrap_or_default()
}

/// Records a training job's parties and options in its checkpoint folder (0600).
pub fn save_options(
    dir: &Path,
    parties: &[confide_proto::DatasetRef],
    o: &crate::kinds::train::Opts,
) -> Result<(), DaemonError> {
    let text = job_record(parties, &train_options_value(o));
    crate::base::files::write_atomic(&dir.join(OPTIONS_FILE), text.as_bytes(), true)
}

/// Checks, before a resumed training job is accepted at party `me`, that it holds a
/// checkpoint of job `orig` made with the same parties and options.
pub fn check_train(
    data_dir: &Path,
    orig: &str,
    me: &str,
    parties: &[confide_proto::DatasetRef],
    o: &crate::kinds::train::Opts,
    initiator: bool,
) -> Result<(), DaemonError> {
    check_id(orig)?;
    let dir = checkpoint_dir(data_dir, orig);
    let saved = std::fs::read_to_string(dir.join(OPTIONS_FILE));
    let Ok(saved) = saved.map(|s| s.trim().to_string()) else {
        return Err(refusal(orig, me, "no checkpoint", initiator));
    };
    if !has_checkpoint(&dir) {
        return Err(refusal(orig, me, "no checkpoint", initiator));
    }
    if saved != job_record(parties, &train_options_value(o)) {
        return Err(refusal(
            orig,
            me,
            "the job's parties or options differ from the checkpoint's",
            initiator,
        ));
    }
    Ok(())
}

/// At submission: a training job resumed without `--seed` takes the seed of the job it
/// resumes, from this party's checkpoint (before anything is proposed or anchored).
pub fn resolve(
    options: crate::kinds::JobOptions,
    data_dir: &Path,
    me: &str,
) -> Result<crate::kinds::JobOptions, DaemonError> {
    let crate::kinds::JobOptions::Train(mut o) = options else {
        return Ok(options);
    };
    if let (Some(orig), true) = (o.resume.clone(), o.seed_from_checkpoint) {
        check_id(&orig)?;
        let path = checkpoint_dir(data_dir, &orig).join(OPTIONS_FILE);
        let saved: serde_json::Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .ok_or_else(|| refusal(&orig, me, "no checkpoint", true))?;
        let seed = saved["options"]["seed"]
            .as_u64()
            .ok_or_else(|| refusal(&orig, me, "no checkpoint", true))?;
        o.seed = seed;
    }
    o.seed_from_checkpoint = false;
    Ok(crate::kinds::JobOptions::Train(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_with_checkpoint(data: &Path, id: &str) -> PathBuf {
        let ck = checkpoint_dir(data, id);
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(ck.join("state"), b"x").unwrap();
        std::fs::write(ck.parent().unwrap().join("round-1-set-1.pts"), b"spill").unwrap();
        ck
    }

    #[test]
    fn a_failed_job_keeps_its_checkpoint_success_and_cancel_delete_it() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        let (orig, again) = ("0123456789abcdef01234567", "89abcdef0123456701234567");
        let ck = job_with_checkpoint(data, orig);
        finish(data, orig, None, Ended::Failed);
        assert!(ck.join("state").exists(), "kept for a resume");
        assert!(!ck.parent().unwrap().join("round-1-set-1.pts").exists());
        // A failed resume attempt keeps the original's checkpoint, drops its own folder.
        std::fs::create_dir_all(data.join("jobs").join(again)).unwrap();
        finish(data, again, Some(orig), Ended::Failed);
        assert!(ck.join("state").exists());
        assert!(!data.join("jobs").join(again).exists());
        // A cancelled or successful attempt deletes it.
        finish(data, again, Some(orig), Ended::Cancelled);
        assert!(!ck.exists());
        let ck = job_with_checkpoint(data, orig);
        finish(data, orig, None, Ended::Succeeded);
        assert!(!ck.exists());
    }

    #[test]
    fn restart_cleanup_keeps_fresh_checkpoints_and_expires_old_ones() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path();
        let fresh = job_with_checkpoint(data, "0123456789abcdef01234567");
        let old = job_with_checkpoint(data, "89abcdef0123456701234567");
        let long_ago = std::time::SystemTime::now() - CHECKPOINT_TTL - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(old.join("state"))
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let spill_only = data.join("jobs").join("aaaaaaaaaaaaaaaaaaaaaaaa");
        std::fs::create_dir_all(&spill_only).unwrap();
        assert_eq!(clean_leftovers(&data.join("jobs")), (2, 1));
        assert!(fresh.join("state").exists());
        assert!(!fresh.parent().unwrap().join("round-1-set-1.pts").exists());
        assert!(!old.parent().unwrap().exists(), "expired");
        assert!(!spill_only.exists());
    }
}
