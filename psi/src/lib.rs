//! ECDH private set intersection over ristretto255.
//!
//! # Protocol
//!
//! Each party hashes each of its (trimmed, de-duplicated) IDs to the group,
//! `P(id) = RistrettoPoint::hash_from_bytes::<Sha512>(DST ‖ id)`, draws a fresh secret
//! scalar `k` for the job (zeroized when the job ends), and sends `k·P(id)` for all its
//! IDs, shuffled with a CSPRNG, in chunks of thousands of 32-byte compressed points.
//! Because scalar multiplication commutes, once a point has been raised to every party's
//! key its value `K·P(id)` (with `K` the product of all keys) no longer depends on who
//! held the ID; the parties compare the first 12 bytes of `SHA-512(TAG_DST ‖ K·P(id))`
//! (*tags*). An unkeyed hash of an ID never leaves a party.
//!
//! The parties form a ring in the order of [`PsiJob::parties`]. In round `r` (1 ≤ r < n)
//! every party sends to its successor the set it received in round `r-1` (its own in round
//! 1), after raising it to its key. After `n-1` rounds each party holds its successor's
//! set raised to every key, as tags, and delivers them:
//!
//! * **Two parties.** `Initiator`: the responder returns the initiator's tags in the
//!   initiator's order, so the initiator maps them to its IDs and intersects them with the
//!   responder's tags, which it computed itself. `All`: both sides do this for each other.
//!   `SizeOnly`: the responder shuffles the initiator's tags before returning them, so the
//!   initiator can only count the matches.
//! * **Three or more parties** (`Initiator` or `SizeOnly`; `All` is refused). The
//!   initiator's tags return to it (in its order, or shuffled for `SizeOnly`). The tags of
//!   every other party's set are shuffled and sent to the *combiner*, the party after the
//!   initiator in the ring, which intersects them and sends the intersection `U`, shuffled,
//!   to the initiator. The initiator's output is its own IDs whose tags are in `U`.
//!
//! # What each party learns (semi-honest, non-colluding parties)
//!
//! * **Every party** learns the number of distinct IDs of every party (each announces it,
//!   and it is the length of the streams it sends) and nothing else about other sets:
//!   what it receives is points raised to keys it does not know, in an order unrelated
//!   to their owners' input order.
//! * **Two parties.** The initiator (or both, in `All`) learns the intersection; in
//!   `SizeOnly` the initiator learns only its size. The responder in `Initiator` and
//!   `SizeOnly` mode learns nothing beyond the initiator's set size.
//! * **Three or more parties.** The initiator learns the final intersection (or only its
//!   size) and one intermediate cardinality: `|U|`, the size of the intersection of all
//!   the *other* parties' sets. The combiner learns, for every subfamily of the
//!   non-initiator sets, the size of its intersection (it holds their tags, unlinkable to
//!   IDs since the last party to mask each set shuffled it), but no ID of anyone's and
//!   nothing about the initiator's set beyond its size. The other parties learn only set
//!   sizes. Colluding parties learn more: e.g. the combiner together with the initiator
//!   learn which of the initiator's IDs are in each other party's set.
//!
//! Order: a party's masked set leaves in a CSPRNG-shuffled order (for bucketed inputs:
//! bucket by bucket, buckets chosen by a secret-keyed hash of the ID, each bucket shuffled;
//! see [`input`]). Tags returned for `SizeOnly`, sent to the combiner, or sent as `U` are
//! shuffled again by their sender. The privacy tests record every byte of two- and
//! three-party runs and check that no raw ID, no SHA-256/SHA-512 of one and no unkeyed
//! hash-to-point encoding crosses the wire, and that these orders are unrelated to the
//! input order.
//!
//! Tags are 96 bits: a false match between sets of 10^7 happens with probability below
//! 2^-49.
//!
//! # Scale
//!
//! Inputs are read as a stream and, above [`Tuning::bucket_bytes`], bucketed to disk under
//! [`PsiJob::work_dir`] for de-duplication; the curve work runs on rayon in batches, off
//! the async runtime. Memory is one input bucket (about 200 MB at the default 32 MiB
//! buckets) while reading, then 12 bytes per item of the tag sets a party holds: its own
//! and its successor's (about 250 MB for 10^7 rows per side); the combiner of a
//! multi-party job holds the tags of all the non-initiator sets. Points in flight are
//! bounded by the transport's buffers; points between rounds of a multi-party job go to
//! files under the work directory.
#![forbid(unsafe_code)]

pub mod crypto;
mod error;
pub mod input;
mod leakage;
mod protocol;
mod route;
pub mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use confide_mpc::transport::Transport;

pub use crate::error::PsiError;
pub use crate::input::{InputStats, Tuning};
pub use crate::leakage::{Learns, disclosures, learners};

/// Who receives the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// The initiator learns the intersection.
    Initiator,
    /// Every party learns the intersection (two parties only).
    All,
    /// The initiator learns only the intersection's size.
    SizeOnly,
}

impl OutputMode {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Self::Initiator => 1,
            Self::All => 2,
            Self::SizeOnly => 3,
        }
    }
}

/// One party's description of a PSI job (every party must agree on `initiator`,
/// `parties` and `mode`; the hello exchange checks it).
#[derive(Debug, Clone)]
pub struct PsiJob {
    /// The party that initiated the job (receives the output).
    pub initiator: String,
    /// All parties, including this one, in the same order at every party.
    pub parties: Vec<String>,
    /// Who receives what.
    pub mode: OutputMode,
    /// This party's CSV input (with a header row).
    pub input: PathBuf,
    /// The name of the ID column in the header.
    pub id_column: String,
    /// Where to write the intersection (CSV, header `id`, each ID once, in no particular
    /// order), if this party receives it.
    pub output: Option<PathBuf>,
    /// A directory for temporary buckets (a private subdirectory is created and removed).
    pub work_dir: PathBuf,
}

/// Progress of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The current stage: "reading input", "exchanging", "delivering", "matching".
    pub stage: &'static str,
    /// Items done in this stage.
    pub done: u64,
    /// Items in this stage (0 if unknown).
    pub total: u64,
}

/// What a finished job reports to this party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsiReport {
    /// Statistics of this party's input.
    pub input: InputStats,
    /// Distinct set size of every other party, by name.
    pub peer_set_sizes: BTreeMap<String, u64>,
    /// The intersection's size, if this party learns it.
    pub intersection_size: Option<u64>,
    /// The file the intersection was written to, if any.
    pub output: Option<PathBuf>,
    /// Wall-clock time of the job.
    pub elapsed: Duration,
    /// Bytes this party sent.
    pub bytes_sent: u64,
    /// Bytes this party received.
    pub bytes_received: u64,
}

/// Fast check, before a job starts, that `path` is a CSV with the column `id_column`.
pub fn check_input(path: &Path, id_column: &str) -> Result<(), PsiError> {
    input::check_input(path, id_column).map(|_| ())
}

/// Runs this party's side of a PSI job over `t`.
///
/// The input is checked (header, ID column) and read before anything is sent. CPU-heavy
/// work runs on the rayon pool, never on the async runtime's threads. A party that learns
/// the intersection writes it to [`PsiJob::output`], if set.
pub async fn run<T: Transport>(
    t: &T,
    job: &PsiJob,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<PsiReport, PsiError> {
    run_tuned(t, job, progress, Tuning::default()).await
}

/// [`run`] with explicit size knobs (smaller buckets and chunks exercise the disk paths).
pub async fn run_tuned<T: Transport>(
    t: &T,
    job: &PsiJob,
    progress: &(dyn Fn(Progress) + Send + Sync),
    tuning: Tuning,
) -> Result<PsiReport, PsiError> {
    let key = crypto::JobKey::random();
    Ok(protocol::run(t, job, progress, key, tuning, false).await?.0)
}

/// [`run`], also returning the intersection's IDs in memory, sorted, if this party learns
/// the intersection (`None` otherwise, and in `SizeOnly` mode). [`PsiJob::output`] is
/// still written if set; leave it `None` to keep the result in memory only. Memory for
/// the result is bounded by the intersection: the IDs are gathered in one pass over this
/// party's input buckets, one bucket in memory at a time.
pub async fn run_to_memory<T: Transport>(
    t: &T,
    job: &PsiJob,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(PsiReport, Option<Vec<String>>), PsiError> {
    let key = crypto::JobKey::random();
    protocol::run(t, job, progress, key, Tuning::default(), true).await
}

#[cfg(test)]
pub(crate) async fn run_with_key<T: Transport>(
    t: &T,
    job: &PsiJob,
    key: crypto::JobKey,
    tuning: Tuning,
) -> Result<PsiReport, PsiError> {
    Ok(protocol::run(t, job, &|_| {}, key, tuning, false).await?.0)
}

#[cfg(test)]
mod privacy_tests;
