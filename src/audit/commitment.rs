//! Dataset commitments: what a job's audit entry records about each party's data.
//!
//! A party that brings a dataset to a job commits to its content with a fresh secret salt:
//! `SHA-256("confide/dataset-commitment/v1" ‖ len(job_id) ‖ job_id ‖ salt ‖ SHA-256(file))`.
//! The initiator anchors the commitments of every party; the salt and content hash stay
//! with the party that committed (`data_dir/audit-salts/<job>.dataset.json`, mode 0600),
//! which can open the commitment later in a dispute. Unlike a bare content hash, a
//! commitment does not let the initiator test guesses of a small dataset, and two jobs on
//! the same file have unlinkable commitments.
//!
//! A peer starts the (streamed) hash when it accepts a proposal and answers at once; the
//! initiator collects the commitment with `Peer.Call` [`METHOD`] when it anchors the job.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::evidence::file_hash;
use crate::base::error::DaemonError;
use crate::base::files::write_secret;

/// The `Peer.Call` method that returns a party's commitment for a job (initiator only).
pub const METHOD: &str = "job.dataset-commitment";

const DST: &[u8] = b"confide/dataset-commitment/v1";

/// The commitment to a dataset whose content hash is `content` in job `job_id`.
pub fn dataset_commitment(job_id: &str, salt: &[u8; 32], content: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DST);
    h.update((job_id.len() as u64).to_be_bytes());
    h.update(job_id.as_bytes());
    h.update(salt);
    h.update(content);
    h.finalize().into()
}

/// Hashes the dataset at `path`, draws a fresh salt, keeps the opening under
/// `data_dir/audit-salts/` and returns the commitment.
pub fn commit_dataset(data_dir: &Path, job_id: &str, path: &Path) -> Result<[u8; 32], DaemonError> {
    let content = file_hash(path)?;
    let salt = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
    let commitment = dataset_commitment(job_id, &salt, &content);
    let opening = serde_json::json!({
        "job_id": job_id,
        "salt": hex::encode(*salt),
        "content_sha256": hex::encode(content),
        "commitment": hex::encode(commitment),
    });
    write_secret(
        &data_dir
            .join("audit-salts")
            .join(format!("{job_id}.dataset.json")),
        opening.to_string().as_bytes(),
    )?;
    Ok(commitment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commitments_bind_job_salt_and_content() {
        let (s, c) = ([1u8; 32], [2u8; 32]);
        let base = dataset_commitment("job-a", &s, &c);
        assert_ne!(base, dataset_commitment("job-b", &s, &c));
        assert_ne!(base, dataset_commitment("job-a", &[3u8; 32], &c));
        assert_ne!(base, dataset_commitment("job-a", &s, &[3u8; 32]));
        // The length prefix keeps job id and salt apart.
        assert_ne!(
            dataset_commitment("ab", &s, &c),
            dataset_commitment("a", &s, &c)
        );
    }

    #[test]
    fn the_opening_is_kept_secret_and_opens_the_commitment() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d.csv");
        std::fs::write(&data, "id\n1\n").unwrap();
        let a = commit_dataset(dir.path(), "j1", &data).unwrap();
        let b = commit_dataset(dir.path(), "j2", &data).unwrap();
        assert_ne!(a, b, "salted per job");
        let text = std::fs::read_to_string(dir.path().join("audit-salts/j1.dataset.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut salt = [0u8; 32];
        hex::decode_to_slice(v["salt"].as_str().unwrap(), &mut salt).unwrap();
        let content = file_hash(&data).unwrap();
        assert_eq!(v["content_sha256"], hex::encode(content));
        assert_eq!(dataset_commitment("j1", &salt, &content), a);
    }
}
