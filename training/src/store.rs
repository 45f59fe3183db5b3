//! The stored model share: what a computing party keeps of a `train --keep-shared` job
//! for later `predict` jobs.
//!
//! One JSON file per model (`<models dir>/<model id>.share`, see [`share_path`]): the
//! metadata ([`ShareMeta`], readable without the share) and the party's
//! [`SharedModel`], flattened into one object tagged `"format": SHARE_FORMAT`. The file
//! is written through a temporary file in the same directory (mode 0600) and renamed
//! into place, so a reader never sees half a file; the serialized bytes are zeroized
//! after writing and after reading. Keep the file like a key: with the other party's
//! share it reveals the model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Result, TrainError};
use crate::gbdt::GbdtShare;
use crate::options::{PredictOptions, check_model_id};
use crate::protocol::{PartyNames, Role, SharedModel};

/// Format tag of a stored model share.
pub const SHARE_FORMAT: &str = "confide-shared-model-v1";

/// The metadata of a stored share (everything but the share itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareMeta {
    /// [`SHARE_FORMAT`].
    pub format: String,
    /// The training job's id (the model id).
    pub job_id: String,
    /// The seats of the training job.
    pub parties: PartyNames,
    /// This party's role.
    pub role: Role,
    /// This party's dataset name at training.
    pub dataset: String,
    /// The label column (at the active party).
    pub label: Option<String>,
    /// This party's input feature columns at training, in file order.
    pub feature_names: Vec<String>,
    /// Fixed-point fractional bits of the model.
    pub frac_bits: u32,
    /// When the share was stored (Unix milliseconds).
    pub created_unix_ms: u64,
}

impl ShareMeta {
    /// Metadata in the current format, created now, without a label.
    pub fn new(
        job_id: &str,
        parties: PartyNames,
        role: Role,
        dataset: &str,
        feature_names: Vec<String>,
        frac_bits: u32,
    ) -> Self {
        let created_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            format: SHARE_FORMAT.into(),
            job_id: job_id.into(),
            parties,
            role,
            dataset: dataset.into(),
            label: None,
            feature_names,
            frac_bits,
            created_unix_ms,
        }
    }

    /// Reads the metadata of the stored share of `model` at `path` (the share is read
    /// too, and its bytes zeroized, but not kept).
    pub fn read(path: &Path, model: &str) -> Result<Self> {
        let meta: Self = parse(path, model)?;
        meta.check(path, model)?;
        Ok(meta)
    }

    fn check(&self, path: &Path, model: &str) -> Result<()> {
        let known = self.format == SHARE_FORMAT || self.format == GBDT_FORMAT;
        if !known || self.job_id != model {
            return Err(TrainError::ShareFile {
                path: path.into(),
                reason: format!("not a shared model file of job {model}"),
            });
        }
        Ok(())
    }

    /// Checks the job id and that the file is of `format` (naming what it is instead).
    fn expect(&self, path: &Path, model: &str, format: &str) -> Result<()> {
        self.check(path, model)?;
        if self.format != format {
            let (want, got) = if format == GBDT_FORMAT {
                ("boosted-model", "logistic-regression")
            } else {
                ("logistic-regression", "boosted-tree")
            };
            return Err(TrainError::ShareFile {
                path: path.into(),
                reason: format!("a {got} model share, not a {want} one"),
            });
        }
        Ok(())
    }

    /// True if this is a boosted-tree model share ([`StoredGbdt`]).
    pub fn is_gbdt(&self) -> bool {
        self.format == GBDT_FORMAT
    }

    /// Checks that a `predict` job names the seats and precision this model was trained
    /// with.
    pub fn check_options(&self, o: &PredictOptions) -> Result<()> {
        if self.parties != o.names() || self.frac_bits != o.frac_bits {
            return Err(TrainError::Options(format!(
                "model `{}` was trained by {}/{} with dealer {} at {} fractional bits, not as the job says",
                o.model,
                self.parties.active,
                self.parties.passive,
                self.parties.dealer,
                self.frac_bits
            )));
        }
        Ok(())
    }

    /// True if `me` and `other` are the two (distinct) holders of this model.
    pub fn shared_between(&self, me: &str, other: &str) -> bool {
        let holders = [self.parties.active.as_str(), self.parties.passive.as_str()];
        me != other && holders.contains(&me) && holders.contains(&other)
    }

    /// The model's feature columns that `header` lacks.
    pub fn missing_features<'a>(&'a self, header: &[String]) -> Vec<&'a str> {
        self.feature_names
            .iter()
            .filter(|f| !header.contains(f))
            .map(String::as_str)
            .collect()
    }
}

/// A stored share: metadata and this party's share of the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredShare {
    /// The metadata.
    #[serde(flatten)]
    pub meta: ShareMeta,
    /// The share (zeroized on drop; `Debug` redacts it).
    pub share: SharedModel,
}

impl StoredShare {
    /// Writes the file at `path` (creating its directory, mode 0700 on Unix): through a
    /// temporary file of mode 0600 in the same directory, synced, then renamed into place.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.meta.expect(path, &self.meta.job_id, SHARE_FORMAT)?;
        write_private(path, self)
    }

    /// Reads the stored share of `model` at `path`, checking its format tag and job id.
    pub fn read(path: &Path, model: &str) -> Result<Self> {
        let s: Self = parse(path, model)?;
        s.meta.expect(path, model, SHARE_FORMAT)?;
        Ok(s)
    }
}

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
    /// Writes the file (see [`StoredShare::write`]).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.meta.expect(path, &self.meta.job_id, GBDT_FORMAT)?;
        write_private(path, self)
    }

    /// Reads the boosted-model share of `model` at `path`.
    pub fn read(path: &Path, model: &str) -> Result<Self> {
        let s: Self = parse(path, model)?;
        s.meta.expect(path, model, GBDT_FORMAT)?;
        Ok(s)
    }
}

/// Reads and parses the stored file of `model` at `path` (bytes zeroized after parsing).
fn parse<S: serde::de::DeserializeOwned>(path: &Path, model: &str) -> Result<S> {
    let bytes = read_file(path, model)?;
    serde_json::from_slice(&bytes).map_err(|e| TrainError::ShareFile {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Where the share of `model` lives under `models_dir`: `<models_dir>/<model>.share`.
/// The id is checked first ([`check_model_id`]), so the path stays in the directory.
pub fn share_path(models_dir: &Path, model: &str) -> Result<PathBuf> {
    check_model_id(model)?;
    Ok(models_dir.join(format!("{model}.share")))
}

/// Writes `value` as JSON at `path` (creating its directory, mode 0700 on Unix): through
/// a temporary file of mode 0600 in the same directory, synced, then renamed into place.
pub(crate) fn write_private<S: Serialize>(path: &Path, value: &S) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    let bytes = Zeroizing::new(
        serde_json::to_vec(value)
            .map_err(|e| TrainError::Internal(format!("serializing the model share: {e}")))?,
    );
    let mut builder = tempfile::Builder::new();
    builder.prefix(".share-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| TrainError::io(dir, e))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| TrainError::io(tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| TrainError::io(path, e.error))?;
    Ok(())
}

pub(crate) fn read_file(path: &Path, model: &str) -> Result<Zeroizing<Vec<u8>>> {
    std::fs::read(path).map(Zeroizing::new).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TrainError::NoSharedModel {
                model: model.into(),
                path: path.into(),
            }
        } else {
            TrainError::io(path, e)
        }
    })
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| TrainError::io(dir, e))
}
