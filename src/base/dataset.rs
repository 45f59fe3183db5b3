//! One `[datasets.NAME]` table of a party's configuration: its file, ID column and
//! policy, and whether the file can be used.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::base::kind::PolicyKind;

/// A dataset a party brings to jobs (`[datasets.NAME]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    /// CSV with a header row.
    pub path: PathBuf,
    /// The column holding the ID.
    pub id_column: String,
    /// Job kind → peers allowed to run it on this dataset, as written in the file.
    #[serde(default)]
    pub allow: BTreeMap<String, Vec<String>>,
    /// `allow` parsed: the parties each kind is granted to (filled by validation).
    #[serde(skip)]
    pub allowed: BTreeMap<PolicyKind, BTreeSet<String>>,
    /// Why the dataset is disabled (its file is missing, a directory, unreadable …),
    /// found at load: the daemon serves its other datasets and refuses jobs on this one.
    #[serde(skip)]
    pub problem: Option<String>,
}

impl DatasetSection {
    /// Checks that the dataset's file can be used: `Some(reason)` if not.
    pub(crate) fn file_problem(&self) -> Option<String> {
        let p = &self.path;
        match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(format!("{} does not exist", p.display()))
            }
            Err(e) => Some(format!("{}: {e}", p.display())),
            Ok(m) if m.is_dir() => Some(format!("{} is a directory, not a CSV file", p.display())),
            Ok(m) if !m.is_file() => Some(format!("{} is not a regular file", p.display())),
            Ok(_) => std::fs::File::open(p)
                .err()
                .map(|e| format!("{} cannot be read: {e}", p.display())),
        }
    }

    /// Is `party` granted `kind` on this dataset?
    pub fn allows(&self, kind: PolicyKind, party: &str) -> bool {
        self.allowed.get(&kind).is_some_and(|s| s.contains(party))
    }
}
