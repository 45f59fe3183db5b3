//! # confide-audit: the Confide audit chain
//!
//! An append-only, replicated, cosigned log of who ran which job (design.md §6).
//! The crate is sans-IO: the daemon carries [`Entry`]s, [`SignedCheckpoint`]s,
//! [`Update`]s and [`Cosignature`]s between members and calls this API.
//!
//! * **Log**: an RFC 6962 Merkle tree (leaf = SHA-256(0x00‖entry), node =
//!   SHA-256(0x01‖l‖r)) with inclusion and consistency proofs ([`merkle`]).
//! * **Entries**: a fixed binary layout signed (Ed25519, `verify_strict`) by
//!   the member that started the job ([`entry`]).
//! * **Checkpoints**: C2SP signed notes, signed by the sequencer and cosigned
//!   by members; final at the genesis quorum (a majority) ([`checkpoint`]).
//! * **Storage**: redb, with the crash rules of design.md §6 ([`AuditStore`]).
//!   A store found corrupt at open is set aside and rebuilt from the other members'
//!   copies ([`AuditStore::open_or_rebuild`], [`AuditStore::restore`]).
//! * **Proofs**: JSON bundles checked offline by [`verify_bundle`].
//!
//! ## Flow
//!
//! Sequencer: [`AuditStore::append_batch`] / [`AuditStore::append_signed`]
//! (durable, returns [`InclusionPromise`]s at once) → [`AuditStore::checkpoint`]
//! → send [`AuditStore::update_for`] to each member. Member:
//! [`AuditStore::apply`] → [`Cosignature`] back. Sequencer:
//! [`AuditStore::add_cosignature`] → final checkpoint at quorum → broadcast;
//! members [`AuditStore::record_final`].
//!
//! The [`Replicator`] runs that sequencer policy as a sans-IO state machine
//! (who gets which batch next, catch-up, backoff, finality) and
//! [`handle_replicate`] is the member's side of it; the daemon only moves the
//! [`ReplicateBatch`]es and [`ReplicateAck`]s (see [`replicator`]).
//!
//! ```
//! use confide_audit::*;
//! use ed25519_dalek::SigningKey;
//!
//! # fn main() -> Result<()> {
//! let names = ["alice", "bob", "carol"];
//! let keys: Vec<SigningKey> = (1..=3u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
//! let members = names.iter().zip(&keys).map(|(n, k)| Member::new(*n, &k.verifying_key())).collect();
//! let genesis = Genesis::new(members, "alice")?; // quorum 2 of 3
//! let dir = tempfile::tempdir()?;
//! let mut stores = names
//!     .iter()
//!     .zip(keys)
//!     .map(|(n, k)| AuditStore::open(dir.path().join(n), genesis.clone(), n, k))
//!     .collect::<Result<Vec<_>>>()?;
//!
//! // bob signs an entry for a job he started and sends it to the sequencer.
//! let salt = new_salt();
//! let body = EntryBody {
//!     timestamp_ms: 1_700_000_000_000,
//!     member: "bob".into(),
//!     kind: JobKind::RiskQuery,
//!     job_id: "query-42".into(),
//!     served_by: vec!["alice".into(), "carol".into()],
//!     fingerprint: fingerprint(&salt, b"request bytes", b"answer bytes"),
//! };
//! let entry = stores[1].sign_entry(body)?;
//! let promise = stores[0].append_signed(&[entry])?.remove(0); // durable; answer may go out
//! promise.verify(&genesis)?;
//!
//! // Sequencer checkpoints and replicates; members cosign.
//! stores[0].checkpoint()?;
//! let update = stores[0].update_for(stores[1].size(), 10_000)?;
//! let cosig = stores[1].apply(&update.entries, &update.checkpoint, &update.proof)?;
//! let fin = stores[0].add_cosignature(&cosig)?.expect("quorum of 2 reached");
//! stores[1].record_final(&fin)?;
//!
//! // Anyone with genesis.json checks a proof offline.
//! let bundle = stores[1].prove_job("query-42")?.to_json();
//! let checked = verify_bundle(&bundle, &genesis.to_json())?;
//! assert_eq!(checked.entry.body().member, "bob");
//! # Ok(()) }
//! ```
//!
//! ## What the chain leaks, to whom
//!
//! Every member holds the full log, and anyone given a proof bundle sees one
//! entry. An entry shows: the log id, the time, which member started a job,
//! its kind, its job id, which members served it, and a fingerprint. The
//! fingerprint is SHA-256 over a random 32-byte salt, the job request (parties,
//! dataset commitments, parameters) and the result: without the salt, which
//! stays with the job's parties, it reveals nothing testable about the request
//! or result (no dictionary attack on record IDs). So members learn the
//! *metadata* of every job (who, when, what kind, how often: e.g. the query
//! rate of each member), never dataset contents, IDs or answers. Callers must
//! not put record IDs (or unsalted hashes of them) into job ids. Checkpoints
//! reveal only the log size and root. Signing keys never leave the store and
//! are redacted from `Debug`; `ed25519_dalek::SigningKey` zeroizes on drop.
//!
//! ## Trust
//!
//! A final checkpoint needs a majority of genesis members, each of which
//! cosigns only entries it holds durably, whose signatures and root it checked,
//! and which are consistent with what it cosigned before. A sequencer that signs
//! two inconsistent checkpoints is caught by any member holding the earlier one:
//! the member stores [`Equivocation`] evidence (checkable by anyone with the
//! genesis) and stops cosigning for good.
//!
//! ## Failover
//!
//! The sequencer can be replaced: [`view`] describes the view change (votes from a
//! quorum, the longest voted log as the new view's base, a certificate anyone checks with
//! the genesis). Every entry under a final checkpoint survives it.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod bundle;
pub mod checkpoint;
mod codec;
pub mod entry;
pub mod error;
mod evidence;
pub mod genesis;
pub mod merkle;
pub mod pruned;
pub mod replicator;
pub mod store;
pub mod view;

pub use bundle::{MemberSummary, ProofBundle, VerifiedBundle, summarize, verify_bundle};
pub use checkpoint::{
    Checkpoint, Cosignature, Equivocation, FinalCheckpoint, InclusionPromise, NoteSignature,
    SignedCheckpoint,
};
pub use entry::{Entry, EntryBody, JobKind, JobRequest, fingerprint, new_salt};
pub use error::{AuditError, Result};
pub use genesis::{Genesis, Member};
pub use merkle::Hash;
pub use replicator::{
    FetchBatch, MemberView, ReplicateAck, ReplicateBatch, Replicator, ReplicatorConfig,
    ReplyOutcome, handle_replicate, serve_fetch,
};
pub use store::{AuditStore, SetAside, Update, VerifyReport};
pub use view::{NewView, Vote};
