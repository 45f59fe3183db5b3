//! The compute node S_j: sans-IO request handlers (bytes in, bytes out) and a
//! [`Transport`] serving loop.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use confide_mpc::transport::{Transport, TransportError};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::audit::{AuditGate, blinded_points_hash};
use crate::codec::{AnswerShare, Purpose, Request, Response};
use crate::error::{Result, RiskError};
use crate::index::{LookupGrant, RiskIndex};
use crate::oprf::{Element, OprfKey, Tag};
use crate::ratelimit::{Limits, RateLimiter};

/// Which of the two compute nodes this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// S0.
    S0,
    /// S1.
    S1,
}

/// A secret seed shared by S0 and S1 only (provisioned with the key shares). It keys the
/// correlated randomness both nodes need without talking to each other: the shares of each
/// query flag (S0: `r`, S1: `1 − r`) and the masks that re-randomise answer shares
/// (S0: `+m`, S1: `−m`). Zeroized on drop, never printed.
#[derive(Clone)]
pub struct PairSeed(Zeroizing<[u8; 32]>);

impl PairSeed {
    /// Wraps 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Wraps 32 secret bytes already in a zeroizing buffer (no unzeroized copy).
    pub fn from_zeroizing(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }

    /// SHA-512 over fixed-length input `seed ‖ domain(16) ‖ a(16) ‖ tag(64) ‖ b(32)`: the
    /// keyed PRF (every input has the same length, so no length-extension applies).
    fn prf(&self, domain: &[u8; 16], a: &[u8; 16], tag: &Tag, b: &[u8; 32]) -> [u64; 8] {
        let mut h = Sha512::new();
        h.update(*self.0);
        h.update(domain);
        h.update(a);
        h.update(tag);
        h.update(b);
        let out = h.finalize();
        std::array::from_fn(|i| {
            u64::from_le_bytes(out[8 * i..8 * i + 8].try_into().expect("8-byte slice"))
        })
    }
}

impl fmt::Debug for PairSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairSeed(<redacted>)")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A compute node: its OPRF key share, the pair seed, its index, its audit gate, its rate
/// limiters (query and ingest evaluations, per member) and the retention window of
/// `queried_by`.
pub struct ComputeNode<G> {
    role: Role,
    key: OprfKey,
    seed: PairSeed,
    index: RiskIndex,
    gate: G,
    limiter: Option<RateLimiter>,
    ingest_limiter: Option<RateLimiter>,
    retention_secs: u64,
}

impl<G> fmt::Debug for ComputeNode<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeNode")
            .field("role", &self.role)
            .field("key", &self.key)
            .field("seed", &self.seed)
            .field("index", &self.index)
            .field("query_limiter", &self.limiter)
            .field("ingest_limiter", &self.ingest_limiter)
            .field("retention_secs", &self.retention_secs)
            .finish()
    }
}

impl<G: AuditGate> ComputeNode<G> {
    /// A node with key share `key` (k_j), the pair seed shared with the other node, its index
    /// and its audit gate, with [`Limits::default`] (1,000 query IDs per minute and 2^21 ingest
    /// IDs per hour and member, 90-day retention); see [`with_limits`](Self::with_limits).
    pub fn new(role: Role, key: OprfKey, seed: PairSeed, index: RiskIndex, gate: G) -> Self {
        Self {
            role,
            key,
            seed,
            index,
            gate,
            limiter: None,
            ingest_limiter: None,
            retention_secs: 0,
        }
        .with_limits(Limits::default())
    }

    /// Applies `limits`: both rate limiters (fresh buckets) and the retention window.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limiter = Some(RateLimiter::new(limits.query_ids_per_minute));
        self.ingest_limiter = Some(RateLimiter::per_hour(limits.ingest_ids_per_hour));
        self.retention_secs = limits.retention_secs;
        self
    }

    /// Replaces the query rate limiter (`None`: the daemon applies its own policy).
    pub fn with_rate_limiter(mut self, limiter: Option<RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// Replaces the ingest rate limiter (`None`: no limit on ingest evaluations).
    pub fn with_ingest_rate_limiter(mut self, limiter: Option<RateLimiter>) -> Self {
        self.ingest_limiter = limiter;
        self
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The public key of this node's share, `k_j·G` (to anchor on the chain).
    pub fn public_key(&self) -> Element {
        self.key.public_key()
    }

    /// The node's index.
    pub fn index(&self) -> &RiskIndex {
        &self.index
    }

    /// The retention window of `queried_by`, in seconds.
    pub fn retention_secs(&self) -> u64 {
        self.retention_secs
    }

    /// Evaluates `k_j·B` for each blinded element, only if the gate accepts `evidence` for
    /// these exact elements, the logged entry was never used here before, and the caller's
    /// rate limit for `purpose` allows that many IDs (every element counts, ingest included).
    /// A query entry then lets the caller look up as many tags ([`lookup`](Self::lookup)).
    pub fn eval_blinded(
        &self,
        caller: &str,
        purpose: Purpose,
        evidence: &[u8],
        elements: &[Element],
    ) -> Result<Vec<Element>> {
        let hash = blinded_points_hash(purpose, elements);
        let entry = self.gate.verify(caller, hash, evidence)?;
        if self.index.entry_used(&entry.id)? {
            return Err(RiskError::Replay(caller.to_string()));
        }
        let limiter = match purpose {
            Purpose::Query => &self.limiter,
            Purpose::Ingest => &self.ingest_limiter,
        };
        if let Some(l) = limiter {
            l.check(caller, elements.len() as u64)?;
        }
        // Validate the elements before spending the evidence.
        let out = self.key.blind_evaluate(elements)?;
        let logged = entry.logged_at_ms.map_or_else(unix_now, |ms| ms / 1000);
        let lookups = match purpose {
            Purpose::Query => elements.len() as u64,
            Purpose::Ingest => 0,
        };
        self.index.spend_entry(caller, &entry.id, lookups, logged)?;
        Ok(out)
    }

    /// Answers `caller`'s lookup of `tags` under the logged query entry `evidence` (bound to
    /// `blinded_points_hash`) that this node evaluated: per tag this node's re-randomised
    /// shares of the four sums and of `queried_by` within the retention window, measured on the
    /// entry's logged time; records the caller's query flags. The entry covers lookups of at
    /// most as many tags as it had elements evaluated (they were rate-limited then).
    pub fn lookup(
        &self,
        caller: &str,
        nonce: &[u8; 16],
        evidence: &[u8],
        blinded_points_hash: &[u8; 32],
        tags: &[Tag],
    ) -> Result<Vec<AnswerShare>> {
        let entry = self.gate.verify(caller, *blinded_points_hash, evidence)?;
        let member_hash: [u8; 32] = Sha256::digest(caller.as_bytes()).into();
        let flags: Vec<u64> = tags
            .iter()
            .map(|t| {
                let r = self
                    .seed
                    .prf(b"confide/qflag/v1", &[0; 16], t, &member_hash)[0];
                match self.role {
                    Role::S0 => r,
                    Role::S1 => 1u64.wrapping_sub(r),
                }
            })
            .collect();
        let grant = LookupGrant {
            entry: &entry.id,
            window_secs: self.retention_secs,
        };
        let mut shares = self.index.lookup_and_flag(caller, grant, tags, &flags)?;
        for (s, t) in shares.iter_mut().zip(tags) {
            let m = self.seed.prf(b"confide/answer/1", nonce, t, &member_hash);
            for (x, mi) in s.iter_mut().zip(m) {
                *x = match self.role {
                    Role::S0 => x.wrapping_add(mi),
                    Role::S1 => x.wrapping_sub(mi),
                };
            }
        }
        Ok(shares)
    }

    /// Starts `holder`'s upload (see [`RiskIndex::begin_upload`]).
    pub fn ingest_begin(&self, holder: &str, upload: u64, rows: u64) -> Result<u64> {
        self.index.begin_upload(holder, upload, rows)?;
        Ok(0)
    }

    /// Stages a chunk of `holder`'s rows.
    pub fn ingest_rows(&self, holder: &str, upload: u64, rows: &[(Tag, [u64; 4])]) -> Result<u64> {
        self.index.stage_rows(holder, upload, rows)
    }

    /// Replaces `holder`'s contribution by its completed upload.
    pub fn ingest_commit(&self, holder: &str, upload: u64) -> Result<u64> {
        self.index.commit_upload(holder, upload)
    }

    /// Handles one typed request from `caller` (the authenticated peer name).
    pub fn handle_request(&self, caller: &str, request: Request) -> Result<Response> {
        Ok(match request {
            Request::Eval {
                purpose,
                evidence,
                elements,
            } => Response::Eval(self.eval_blinded(caller, purpose, &evidence, &elements)?),
            Request::IngestBegin { upload, rows } => {
                Response::IngestAck(self.ingest_begin(caller, upload, rows)?)
            }
            Request::IngestRows { upload, rows } => {
                let rows: Vec<(Tag, [u64; 4])> =
                    rows.into_iter().map(|r| (r.tag, r.share)).collect();
                Response::IngestAck(self.ingest_rows(caller, upload, &rows)?)
            }
            Request::IngestCommit { upload } => {
                Response::IngestAck(self.ingest_commit(caller, upload)?)
            }
            Request::Query {
                nonce,
                evidence,
                blinded_points_hash,
                tags,
            } => Response::Query(self.lookup(
                caller,
                &nonce,
                &evidence,
                &blinded_points_hash,
                &tags,
            )?),
        })
    }

    /// The sans-IO entry point: decodes `request`, handles it, encodes the response. Errors
    /// (malformed bytes, refusals) become [`Response::Error`]; this never panics.
    pub fn handle(&self, caller: &str, request: &[u8]) -> Vec<u8> {
        let resp = Request::decode(request)
            .and_then(|r| self.handle_request(caller, r))
            .unwrap_or_else(|e| Response::Error(e.to_string()));
        resp.encode()
    }
}

/// Serves `peer`'s requests over a transport until the peer disconnects.
pub async fn serve<T: Transport, G: AuditGate>(
    node: &ComputeNode<G>,
    t: &T,
    peer: &str,
) -> Result<()> {
    loop {
        let msg = match t.recv(peer).await {
            Ok(m) => m,
            Err(TransportError::Disconnected { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        t.send(peer, node.handle(peer, &msg)).await?;
    }
}
