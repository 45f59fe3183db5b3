//! ECDH private set intersection over ristretto255.
//!
//! # Protocol
//!
//! Each party hashes each of its (trimmed, de-duplicated) IDs to the group,
//! `P(id) = RistrettoPoint::hash_from_bytes::<Sha512>(DST ‖ id)` (the element derivation of
//! RFC 9496 from 64 uniform bytes), draws a fresh secret scalar `k` for the job (zeroized
//! when the job ends), and sends `k·P(id)` for all its IDs, shuffled with a CSPRNG, in
//! chunks of thousands of 32-byte compressed points. Because scalar multiplication
//! commutes, once a point has been raised to every party's key its value `K·P(id)` (with
//! `K` the product of all keys) no longer depends on who held the ID: this is the
//! commutative-encryption intersection of Meadows (IEEE S&P 1986), Huberman, Franklin and
//! Hogg (ACM EC 1999) and Agrawal, Evfimievski and Srikant (SIGMOD 2003). The parties
//! compare *tags*, the first 12 bytes of `SHA-512(TAG_DST ‖ K·P(id))`. An unkeyed hash of
//! an ID never leaves a party.
//!
//! **Masking rounds.** The parties form a ring in the order of [`PsiJob::parties`]. Every
//! set visits every party once, starting at its owner, one hop per round (n-1 rounds);
//! each party raises what it receives to its key and passes it on in the same order. Sets
//! travel the ring forwards, except, with three or more parties, the set of the
//! initiator's successor, which travels backwards. The last party a set visits applies
//! the last key: it *finishes* the set, as tags. Numbering the ring from the initiator
//! (party 0), set `o ≠ 1` is finished by party `o-1` and set 1 by party 2, the
//! *combiner*. So the initiator finishes no set, the combiner finishes two (sets 1 and 3;
//! for three parties sets 1 and 0), and every other party finishes exactly one, never its
//! own.
//!
//! **Two parties.** Each party finishes the other's set. `Initiator`: the responder
//! returns the initiator's tags in the initiator's order, so the initiator maps them to
//! its IDs and intersects them with the responder's tags, which it finished itself. `All`:
//! both sides do this for each other. `SizeOnly`: the responder shuffles the initiator's
//! tags before returning them, so the initiator can only count the matches.
//!
//! **Three or more parties** (`Initiator` or `SizeOnly`; `All` is refused). Every party
//! but the combiner sends the set it finished to the combiner, shuffled, except the
//! initiator's set in `Initiator` mode, which goes in the initiator's (secret, random)
//! send order. The combiner intersects all `n` sets and sends the initiator the
//! positions, in the initiator's send order, of the initiator's tags that are in every
//! set (`Initiator`), or only their number (`SizeOnly`). The initiator's output is its
//! IDs at those positions.
//!
//! # What each party learns
//!
//! Parties are semi-honest and do not collude. The masked values are pseudorandom under
//! the decisional Diffie-Hellman assumption in ristretto255 with the hash to the group
//! modelled as a random oracle, so what a party learns is what it can *compare*: equal
//! tags, or points that become equal under its own key. A party's own fully masked set
//! reaches a party that can compare it with another set only shuffled by someone else or
//! in its owner's secret order, and the initiator never holds a fully masked value at all.
//!
//! * **Every party** learns the number of distinct IDs of every party (each announces it,
//!   and it is the length of the streams it relays). Below, "nothing else" means nothing
//!   else about other parties' sets.
//! * **Two parties.** `Initiator`: the initiator learns the intersection; the responder
//!   nothing else. `All`: both learn the intersection. `SizeOnly`: the initiator learns
//!   the intersection's size; the responder nothing else.
//! * **Three or more parties.**
//!   - The *initiator* learns the intersection of all the sets (`Initiator`) or its size
//!     (`SizeOnly`), and nothing else: not the size of any partial intersection, and in
//!     particular not which (or how many) of its IDs any one other party holds.
//!   - The *combiner* (two places after the initiator in the ring) learns, for every group
//!     of the parties' sets, the size of the group's intersection (equivalently: for every
//!     group of parties, how many IDs exactly that group holds), which includes the final
//!     intersection's size, reported as [`PsiReport::intersection_size`]. It learns no ID
//!     and cannot tell which of its own IDs are counted where: its own fully masked set
//!     reaches it shuffled by its finisher, and it cannot compute a fully masked value
//!     from an ID. This is the leakage profile of the n-party commutative-encryption
//!     protocol of Vaidya and Clifton (J. Computer Security 13(4), 2005), concentrated at
//!     one party.
//!   - *Every other party* learns nothing else.
//!
//!   [`disclosures`] and [`learners`] give this statement for a given job, per data owner.
//!
//! Colluding parties learn more. For example, the initiator and the combiner together
//! learn which of the initiator's IDs every group of the other parties holds; the
//! combiner and its predecessor in the ring (which finishes the combiner's set) learn
//! which of the combiner's IDs every group holds.
//!
//! The tests check this statement on the wire. The privacy tests record every byte of
//! two- and three-party runs: no raw ID, no SHA-256/SHA-512 of one and no unkeyed
//! hash-to-point encoding crosses it, and every set leaves its owner in an order unrelated
//! to the input file's. The view tests replay three- and four-party runs from each party's
//! view: every equality a party can test with its own key and IDs ties its IDs to nothing
//! beyond its stated leakage; a simulator that knows only that leakage (with the party's
//! input, key and order, and the set sizes) produces views with exactly the same
//! equality structure; and two worlds that differ in everything but the initiator's
//! leakage give the initiator views with the same structure.
//!
//! Order: a party's masked set leaves in a CSPRNG-shuffled order (for bucketed inputs:
//! bucket by bucket, buckets chosen by a secret-keyed hash of the ID, each bucket shuffled;
//! see [`input`]). Tags returned for `SizeOnly` and sets sent to the combiner are shuffled
//! again by their sender (except the initiator's, as above).
//!
//! Tags are 96 bits: a false match between sets of 10^7 happens with probability below
//! 2^-49.
//!
//! # Scale
//!
//! Inputs are read as a stream and, above [`Tuning::bucket_bytes`], bucketed to disk under
//! [`PsiJob::work_dir`] for de-duplication; the curve work runs on rayon in batches, off
//! the async runtime. Memory is one input bucket (about 200 MB at the default 32 MiB
//! buckets) while reading, then 12 bytes per item of the tag sets a party holds: with two
//! parties its successor's and its own (about 250 MB for 10^7 rows per side); with more,
//! the set it finishes, except at the combiner, which holds all `n` sets, and at the
//! initiator, which holds one bit per ID. Points in flight are bounded by the transport's
//! buffers; points between rounds go to files under the work directory. The
//! intersection's IDs are gathered bucket by bucket, so [`run_to_memory`] holds one input
//! bucket and the intersection.
//!
//! # Resume
//!
//! [`run_checkpointed`] keeps a checkpoint after every completed unit (ECDH: every received
//! chunk of every stream; KKRT: the OPRF, then every chunk of tags) and continues from it
//! after a crash; see [`checkpoint`] for what it holds (only this party's own key, seed,
//! input digest and what it received) and why resending is safe. Below those units nothing
//! is checkpointed: KKRT's OT extension is one unit, and ECDH's tag delivery and
//! combination (no curve work) run again.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod checkpoint;
pub mod crypto;
mod error;
mod exec;
pub mod input;
pub mod kkrt;
mod kkrt_resume;
mod leakage;
mod protocol;
mod route;
pub mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use confide_mpc::transport::Transport;

pub use crate::checkpoint::CheckpointSpec;
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

/// The PSI protocol of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// ECDH-PSI over ristretto255 (this module's docs): any number of parties, every
    /// output mode.
    #[default]
    Ecdh,
    /// KKRT16 OPRF-based PSI ([`kkrt`]): two parties, output `Initiator` or `All`; an
    /// order of magnitude less CPU per item than ECDH.
    Kkrt,
}

impl Protocol {
    /// The protocol's name on the command line and in summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ecdh => "ecdh",
            Self::Kkrt => "kkrt",
        }
    }

    /// Whether this protocol runs a job of `parties` parties with output `mode`; the
    /// refusal says which protocol to use instead.
    pub fn check(self, parties: usize, mode: OutputMode) -> Result<(), String> {
        if self == Self::Kkrt {
            if parties != 2 {
                return Err(format!(
                    "KKRT is a two-party protocol; with {parties} parties use --protocol ecdh"
                ));
            }
            if mode == OutputMode::SizeOnly {
                return Err(kkrt::SIZE_ONLY_REFUSED.into());
            }
        }
        Ok(())
    }

    /// The protocol a job uses when none is asked for: KKRT for two parties (unless only
    /// the size is wanted, which KKRT does not offer), ECDH otherwise.
    pub fn default_for(parties: usize, mode: OutputMode) -> Self {
        if parties == 2 && mode != OutputMode::SizeOnly {
            Self::Kkrt
        } else {
            Self::Ecdh
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
    /// The protocol (every party must use the same one).
    pub protocol: Protocol,
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
    /// Items a resumed run did not compute again (0 for a run that did not resume): for
    /// ECDH, points of every stream already held or already received by the peer; for
    /// KKRT, the OPRF instances when the OPRF is reused plus the tags already matched.
    pub resumed_items: u64,
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
    Ok(protocol::run(t, job, progress, key, tuning, false, None)
        .await?
        .0)
}

/// [`run_tuned`] with a checkpoint in `ck.dir` after every completed unit (see
/// [`checkpoint`]); with `ck.resume`, continues from the checkpoint there. Every party of
/// the job must resume, or none. The result is the one the interrupted run would have
/// given: the same intersection, written in the same order.
pub async fn run_checkpointed<T: Transport>(
    t: &T,
    job: &PsiJob,
    progress: &(dyn Fn(Progress) + Send + Sync),
    tuning: Tuning,
    ck: &CheckpointSpec,
) -> Result<PsiReport, PsiError> {
    let key = crypto::JobKey::random();
    Ok(
        protocol::run(t, job, progress, key, tuning, false, Some(ck))
            .await?
            .0,
    )
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
    protocol::run(t, job, progress, key, Tuning::default(), true, None).await
}

#[cfg(test)]
pub(crate) async fn run_with_key<T: Transport>(
    t: &T,
    job: &PsiJob,
    key: crypto::JobKey,
    tuning: Tuning,
) -> Result<PsiReport, PsiError> {
    Ok(protocol::run(t, job, &|_| {}, key, tuning, false, None)
        .await?
        .0)
}

#[cfg(test)]
mod kkrt_tests;
#[cfg(test)]
mod privacy_tests;
#[cfg(test)]
mod view_tests;
