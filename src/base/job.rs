//! What a job is: the same description at every party.

use std::path::PathBuf;
use std::time::Duration;

use confide_proto::DatasetRef;

use crate::base::kind::JobKind;

/// A job's description, identical at every party (but `output`, which is this
/// party's own).
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub job_id: String,
    pub kind: JobKind,
    /// Every party with its dataset (empty if it brings none); the initiator first.
    pub parties: Vec<DatasetRef>,
    /// The job's options as canonical JSON (what the audit fingerprint commits to).
    pub options_json: String,
    pub deadline: Duration,
    /// Where this party writes its output (initiator: from the CLI; others: none).
    pub output: Option<PathBuf>,
}

impl JobSpec {
    pub fn initiator(&self) -> &str {
        self.parties.first().map(|p| p.party.as_str()).unwrap_or("")
    }

    pub fn party_names(&self) -> Vec<String> {
        self.parties.iter().map(|p| p.party.clone()).collect()
    }

    /// The dataset `party` brings, if any.
    pub fn dataset_of(&self, party: &str) -> Option<&str> {
        self.parties
            .iter()
            .find(|p| p.party == party)
            .map(|p| p.dataset.as_str())
            .filter(|d| !d.is_empty())
    }
}
