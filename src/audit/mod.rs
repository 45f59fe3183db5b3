//! The audit chain in the daemon: this member's copy of the log (confide-audit over
//! redb), the sequencer's replication loop, the `Audit` gRPC service, and the entries
//! every job appends.
//!
//! * The initiator of a job signs an entry (kind, job id, the parties that served it, and
//!   a salted fingerprint of the request and result) and appends it through the sequencer,
//!   which answers at once with a signed inclusion promise.
//! * The sequencer checkpoints every ~250 ms when the log grew, sends each member the
//!   entries it lacks with a consistency proof (`Audit.Replicate`), gathers cosignatures,
//!   and sends the final checkpoint (quorum reached) back to every member.
//! * A risk evaluation waits until its entry is under a final checkpoint at this member
//!   ([`AuditState::proof_when_final`]) and sends the inclusion proof as evidence.
//! * Members verify, store durably, then cosign; a member that was down catches up when
//!   it returns. A store found corrupt at start is set aside: a member catches up from
//!   zero, the sequencer first adopts the members' copies ([`rebuild`]). Equivocation stops a member from cosigning for good (confide-audit).

pub mod commitment;
pub mod evidence;
pub mod failover;
pub mod rebuild;
pub mod replicate;
pub mod service;
pub mod state;

pub use state::AuditState;
