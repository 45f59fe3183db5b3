//! Confide's joint risk index (design.md §5): OPRF tags and secret-shared aggregates.
//!
//! Two compute nodes S0, S1 (assumed not to collude) hold OPRF key shares `k0`, `k1`
//! (`k = k0 + k1`) and a pre-aggregated, additively secret-shared (Z_2^64) index in redb.
//! The nodes are **dedicated**: they hold no risk data and ask no queries. The daemon
//! enforces it (a node's own ingest or query job is refused, and the nodes refuse requests
//! whose caller is a compute node) unless the alliance sets `[alliance]
//! compute_nodes_may_hold_data = true`, accepting the leakage stated below.
//!
//! * **Tags** ([`oprf`]): `Tag(x)` is the RFC 9497 ristretto255-SHA512 OPRF output under `k`
//!   (64 bytes, `Finalize`'s SHA-512). A client blinds `r·HashToGroup(x)`, sends it to both
//!   nodes, adds `k0·rP + k1·rP`, unblinds and finalizes.
//! * **Ingest** ([`client::ingest`]): a holder tags its customers, pads to [`client::padded_len`]
//!   with zero-valued rows under random tags, sorts rows by tag and sends each node one additive
//!   share of `[blacklisted, loans, amount, overdue]` per row. A node adds them into per-tag
//!   sums, keeping per holder its contribution so that re-ingesting *replaces* it.
//! * **Query** ([`client::query`]): a lender tags applicants the same way, sends the tags to
//!   both nodes and adds the returned shares of the four sums and of `queried_by` (distinct
//!   members that asked about the tag within the retention window, the asker included).
//! * **Log before answer** ([`audit`]): a node evaluates its key share only on blinded elements
//!   whose SHA-256 fingerprint is bound in a logged audit entry of the caller, checked by the
//!   daemon's [`AuditGate`]: the entry signed by the caller, with an RFC 6962 inclusion
//!   proof in a checkpoint cosigned by a quorum of members that includes a member other than
//!   the node and the caller (a sequencer's promise alone is not enough). Every evaluation
//!   needs such evidence, ingest included. The gate
//!   names the verified entry canonically ([`LoggedEntry::id`], e.g. its leaf hash); each entry
//!   is accepted once per node (replays refused, however the evidence is encoded; stored in
//!   redb). A lookup presents the evidence of the query evaluation that produced its tags: a
//!   query entry of `n` elements covers lookups of at most `n` tags, at that node, by its
//!   member.
//! * **Rate limits** ([`Limits`], [`RateLimiter`]): every evaluated element counts against its
//!   member's limit: by default 1,000 IDs per minute for queries and 2^21 per hour for ingest
//!   tagging (so that ingest cannot serve as an unmetered tagging oracle). Lookups are not
//!   charged again: their tags were charged when evaluated.
//! * **Node state** ([`NodeState`]): key share, pair seed and index under one directory,
//!   secret files 0600 from creation; S0 hands the pair seed to S1 only
//!   ([`NodeState::pair_seed_for`], [`install_pair_seed`]).
//!
//! # The retention window of `queried_by`
//!
//! `queried_by` for tag `t`, answered to member `M` under a query entry logged at time `T`,
//! counts `M` itself plus every other member whose **latest logged query** of `t` (as far as
//! this node has seen) is at or after `T − retention` ([`Limits::retention_secs`], default 90
//! days). So a member's query of `t` stops counting for lookups logged more than the window
//! after it, and counts again if it asks again. Time here is the *logged* time of the entries
//! ([`LoggedEntry::logged_at_ms`], the sequencer-signed time of the inclusion promise, in whole
//! seconds), never a node's clock: both nodes verify the same entry, store the same last-query
//! time per (tag, member) next to their share of that member's flag, and sum the shares of
//! exactly the same flags, so their shares of `queried_by` add up to the true count. Both
//! nodes must be configured with the same window. The counts agree as long as both nodes see a
//! tag's lookups in the same order; two members looking up the same tag at the same instant
//! may be ordered differently by the two nodes, and that one answer's `queried_by` is then
//! garbage (a huge number, so recognisable). A gate that gives no logged time falls back to
//! each node's own clock (see [`AuditGate`]). [`RiskIndex::prune_queries`] only reclaims
//! space.
//!
//! Values: each field of a row `< 2^40`, fewer than `2^20` members, so sums stay `< 2^60`
//! (see [`dataset`]).
//!
//! # What each party learns (leakage)
//!
//! * **A holder** learns its customers' tags (it can recognise them later in nothing it
//!   receives: holders receive only evaluations during their own ingest, and nothing at all
//!   during other members' queries). It never sees another holder's data or any query.
//! * **A compute node S_j** sees: blinded elements (uniformly random points: nothing about the
//!   IDs) and how many a member asks to evaluate, with purpose; per holder, the padded row
//!   count (the real count only to within the padding granule, about 1/8 of it) and the set of
//!   tags it uploaded (real and dummy tags look alike), hence — across holders — *how many
//!   holders* uploaded the same pseudonymous tag, never the ID; its own shares, which are
//!   uniformly random. Per query it learns who asked (the mTLS identity), which pseudonymous
//!   tags, when, and whether a tag has an entry. Consequently it can compute `queried_by` on its
//!   own: keeping that count secret-shared protects it from nobody among S0/S1; it is shared so
//!   that the answer format is uniform and ready for a later access-pattern-hiding phase
//!   (DPF-PIR). A node colluding with a holder learns when that holder's customers are queried.
//! * **A compute node that also holds data or queries** (only with
//!   `compute_nodes_may_hold_data = true`): it knows the tags of its own customers (it tags
//!   them at ingest) and of the applicants it asks about, so for those it links the
//!   pseudonymous tags it sees to real IDs: it learns how many other holders hold each of its
//!   customers and when (and by which member) each of them is asked about. With dedicated
//!   nodes (the default) no node knows any tag's ID.
//! * **A querier** learns, per ID asked, the alliance-wide sums and `queried_by`, and nothing
//!   else: each node's share is re-randomised with a mask derived from the nodes' shared
//!   [`PairSeed`], so a single share is uniformly random (an unknown applicant is not
//!   recognisable from one share). It also learns `k0·P(x)` and `k1·P(x)` separately, which
//!   are OPRF outputs under independent keys and reveal nothing about `k`.
//! * **The audit chain** carries the fingerprint of blinded elements only (no ID, no unsalted
//!   hash of an ID).
//!
//! Semi-honest model: a malicious holder can poison sums (values are not range-checked on
//! shares), and a malicious node can return wrong shares; both are detectable only through
//! the audit trail for now.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod audit;
pub mod client;
pub mod codec;
pub mod dataset;
pub mod error;
pub mod index;
pub mod node;
pub mod oprf;
pub mod ratelimit;
pub mod state;

pub use audit::{AuditGate, LoggedEntry, blinded_points_hash};
pub use client::{Answer, EvidenceSource, IngestReport, NodeCaller, OverTransport, ingest, query};
pub use codec::{Purpose, Request, Response};
pub use dataset::{RiskDataset, RiskRecord};
pub use error::{Result, RiskError};
pub use index::RiskIndex;
pub use node::{ComputeNode, PairSeed, Role, serve};
pub use oprf::{OprfKey, Tag};
pub use ratelimit::{Limits, RateLimiter};
pub use state::{NodeState, install_pair_seed, needs_pair_seed};
