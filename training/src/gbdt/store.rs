//! The stored boosted-model share (`<models dir>/<model id>.share`, tag [`GBDT_FORMAT`]):
//! the same metadata as a logistic-regression share ([`ShareMeta`]) and this party's
//! [`GbdtShare`]. Written and read like [`crate::StoredShare`] (mode 0600, atomic).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::GbdtShare;
use crate::error::{Result, TrainError};
use crate::store::{ShareMeta, read_file, write_private};

/// Format tag of a stored boosted-model share.
pub const GBDT_FORMAT: &str = "confide-gbdt-share-v1";

/// A stored boosted-model share.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredGbdt {
    /// The metadata (`format` is [`GBDT_FORMAT`]).
    #[serde(flatten)]
    pub meta: ShareMeta,
    /// This party's share.
    pub model: GbdtShare,
}

impl StoredGbdt {
    /// Writes the file (see [`crate::StoredShare::write`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        if self.meta.format != GBDT_FORMAT {
            return Err(TrainError::ShareFile {
                path: path.into(),
                reason: "not a boosted-model share".into(),
            });
        }
        write_private(path, self)
    }

    /// Reads the boosted-model share of `model` at `path`.
    pub fn read(path: &Path, model: &str) -> Result<Self> {
        let bytes = read_file(path, model)?;
        let s: Self = serde_json::from_slice(&bytes).map_err(|e| TrainError::ShareFile {
            path: path.into(),
            reason: e.to_string(),
        })?;
        if s.meta.format != GBDT_FORMAT || s.meta.job_id != model {
            return Err(TrainError::ShareFile {
                path: path.into(),
                reason: format!("not a boosted-model share of job {model}"),
            });
        }
        Ok(s)
    }
}
