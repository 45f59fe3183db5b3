//! The compute node S_j: sans-IO request handlers (bytes in, bytes out) and a
//! [`Transport`] serving loop.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use confide_mpc::transport::{Transport, TransportError};
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::audit::{AuditGate, blinded_points_hash, evidence_id};
use crate::codec::{AnswerShare, Purpose, Request, Response};
use crate::error::Result;
use crate::index::{FlagUpdate, RiskIndex};
use crate::oprf::{Element, OprfKey, Tag};
use crate::ratelimit::RateLimiter;

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

/// A compute node: its OPRF key share, the pair seed, its index, its audit gate and (optionally)
/// the per-member rate limiter applied to queries.
pub struct ComputeNode<G> {
    role: Role,
    key: OprfKey,
    seed: PairSeed,
    index: RiskIndex,
    gate: G,
    limiter: Option<RateLimiter>,
}

impl<G> fmt::Debug for ComputeNode<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputeNode")
            .field("role", &self.role)
            .field("key", &self.key)
            .field("seed", &self.seed)
            .field("index", &self.index)
            .field("rate_limited", &self.limiter.is_some())
            .finish()
    }
}

impl<G: AuditGate> ComputeNode<G> {
    /// A node with key share `key` (k_j), the pair seed shared with the other node, its index
    /// and its audit gate. Queries are rate limited with [`RateLimiter::default`] (1,000 IDs
    /// per minute and member); see [`with_rate_limiter`](Self::with_rate_limiter).
    pub fn new(role: Role, key: OprfKey, seed: PairSeed, index: RiskIndex, gate: G) -> Self {
        Self {
            role,
            key,
            seed,
            index,
            gate,
            limiter: Some(RateLimiter::default()),
        }
    }

    /// Replaces the rate limiter (`None`: the daemon applies its own policy).
    pub fn with_rate_limiter(mut self, limiter: Option<RateLimiter>) -> Self {
        self.limiter = limiter;
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

    /// Evaluates `k_j·B` for each blinded element, only if the gate accepts `evidence` for
    /// these exact elements and the evidence was never used before.
    pub fn eval_blinded(
        &self,
        caller: &str,
        purpose: Purpose,
        evidence: &[u8],
        elements: &[Element],
    ) -> Result<Vec<Element>> {
        let hash = blinded_points_hash(purpose, elements);
        self.gate.check(caller, hash, evidence)?;
        // Validate the elements before spending the evidence.
        let out = self.key.blind_evaluate(elements)?;
        self.index
            .use_evidence(caller, &evidence_id(evidence), unix_now())?;
        Ok(out)
    }

    /// Answers `caller`'s lookup of `tags`: per tag this node's re-randomised shares of the four
    /// sums and of the distinct-querier count; records the caller's query flags.
    pub fn answer(&self, caller: &str, nonce: &[u8; 16], tags: &[Tag]) -> Result<Vec<AnswerShare>> {
        self.answer_at(caller, nonce, tags, unix_now())
    }

    /// As [`answer`](Self::answer) with an explicit clock (unix seconds) for the flags.
    pub fn answer_at(
        &self,
        caller: &str,
        nonce: &[u8; 16],
        tags: &[Tag],
        now: u64,
    ) -> Result<Vec<AnswerShare>> {
        if let Some(l) = &self.limiter {
            l.check(caller, tags.len() as u64)?;
        }
        let member_hash: [u8; 32] = Sha256::digest(caller.as_bytes()).into();
        let flags: Vec<FlagUpdate> = tags
            .iter()
            .map(|t| {
                let r = self
                    .seed
                    .prf(b"confide/qflag/v1", &[0; 16], t, &member_hash)[0];
                FlagUpdate {
                    flag_share: match self.role {
                        Role::S0 => r,
                        Role::S1 => 1u64.wrapping_sub(r),
                    },
                }
            })
            .collect();
        let mut shares = self.index.lookup_and_flag(caller, tags, &flags, now)?;
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
            Request::Query { nonce, tags } => Response::Query(self.answer(caller, &nonce, &tags)?),
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
