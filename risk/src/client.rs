//! Holder and querier sides: tagging through the two compute nodes, ingest, queries.
//!
//! The flows are written against [`NodeCaller`] (one request, one response): the daemon
//! implements it with unary gRPC calls, tests and in-process setups use [`OverTransport`].

use std::future::Future;

use confide_mpc::transport::Transport;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::audit::blinded_points_hash;
use crate::codec::{
    AnswerShare, MAX_EVAL_BATCH, MAX_INGEST_CHUNK, MAX_QUERY_BATCH, Purpose, Request, Response,
    ShareRow,
};
use crate::dataset::RiskRecord;
use crate::error::{Result, RiskError};
use crate::oprf::{BlindedBatch, Tag};

/// The tags of one evaluation batch and the audit evidence that authorised it (a lookup of
/// these tags presents the same evidence).
#[derive(Debug, Clone)]
pub struct TaggedBatch {
    /// The evidence sent with the evaluation.
    pub evidence: Vec<u8>,
    /// The blinded-points hash that evidence binds.
    pub blinded_points_hash: [u8; 32],
    /// One tag per real ID of the batch, in order (dummies have none).
    pub tags: Vec<Tag>,
}

/// Sends one encoded request to a compute node and returns its encoded response.
pub trait NodeCaller: Send + Sync {
    /// One round trip to `node`.
    fn call(&self, node: &str, request: Vec<u8>) -> impl Future<Output = Result<Vec<u8>>> + Send;
}

/// [`NodeCaller`] over a [`Transport`] whose compute-node peers run [`crate::serve`].
/// Calls to one node must not overlap (the flows here never do).
#[derive(Debug)]
pub struct OverTransport<'a, T>(pub &'a T);

impl<T: Transport> NodeCaller for OverTransport<'_, T> {
    async fn call(&self, node: &str, request: Vec<u8>) -> Result<Vec<u8>> {
        self.0.send(node, request).await?;
        Ok(self.0.recv(node).await?)
    }
}

/// Obtains audit evidence for an evaluation: the daemon appends an audit entry carrying
/// `blinded_points_hash` (see [`crate::audit`]) and returns the entry with its inclusion promise.
pub trait EvidenceSource: Send + Sync {
    /// Evidence for `count` blinded elements with fingerprint `blinded_points_hash`.
    fn evidence(
        &self,
        purpose: Purpose,
        blinded_points_hash: [u8; 32],
        count: usize,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send;
}

async fn call_typed<C: NodeCaller>(c: &C, node: &str, req: &Request) -> Result<Response> {
    let bytes = c.call(node, req.encode()).await?;
    match Response::decode(&bytes)? {
        Response::Error(message) => Err(RiskError::Remote {
            node: node.to_string(),
            message,
        }),
        r => Ok(r),
    }
}

fn unexpected(node: &str, what: &str) -> RiskError {
    RiskError::Protocol {
        peer: node.to_string(),
        message: format!("unexpected response, wanted {what}"),
    }
}

/// Computes `Tag(id)` for each ID through the two compute nodes, in batches of at most
/// [`MAX_EVAL_BATCH`] blinded elements, each batch with its own audit evidence (kept in the
/// returned [`TaggedBatch`]es: a lookup of a batch's tags presents it). `dummies`
/// extra random elements are evaluated and discarded (to pad the count a node sees).
///
/// Pipelined: while the nodes evaluate batch `b`, this side blinds batch `b + 1` and finalizes
/// batch `b − 1` on the blocking pool (rayon inside), so with the nodes on other hosts the cost
/// is close to the slower of the two sides, not their sum.
pub async fn tag_batches<C: NodeCaller, E: EvidenceSource, I: AsRef<[u8]> + Sync>(
    caller: &C,
    compute: [&str; 2],
    purpose: Purpose,
    ids: &[I],
    dummies: usize,
    evidence: &E,
) -> Result<Vec<TaggedBatch>> {
    let total = ids.len() + dummies;
    let batches = total.div_ceil(MAX_EVAL_BATCH);
    let mut rng: ChaCha20Rng = rand::make_rng();
    // Blinds batch `b` on the blocking pool, with owned copies of its IDs.
    let mut spawn_blind = |b: usize| {
        let start = b * MAX_EVAL_BATCH;
        let end = (start + MAX_EVAL_BATCH).min(total);
        let real: Vec<Vec<u8>> = ids[start.min(ids.len())..end.min(ids.len())]
            .iter()
            .map(|x| x.as_ref().to_vec())
            .collect();
        let batch_dummies = (end - start) - real.len();
        let mut batch_rng = ChaCha20Rng::from_rng(&mut rng);
        tokio::task::spawn_blocking(move || {
            BlindedBatch::new(&real, batch_dummies, &mut batch_rng).map(|b| (b, real))
        })
    };
    let mut out: Vec<TaggedBatch> = Vec::with_capacity(batches);
    let mut next_blind = (batches > 0).then(|| spawn_blind(0));
    let mut pending_finalize = None;
    for b in 0..batches {
        let (batch, real) = joined(next_blind.take().expect("one blinding per batch").await)?;
        if b + 1 < batches {
            next_blind = Some(spawn_blind(b + 1));
        }
        let hash = blinded_points_hash(purpose, batch.elements());
        let ev = evidence
            .evidence(purpose, hash, batch.elements().len())
            .await?;
        out.push(TaggedBatch {
            evidence: ev.clone(),
            blinded_points_hash: hash,
            tags: Vec::new(),
        });
        let req = Request::Eval {
            purpose,
            evidence: ev,
            elements: batch.elements().to_vec(),
        };
        let (r0, r1) = tokio::join!(
            call_typed(caller, compute[0], &req),
            call_typed(caller, compute[1], &req)
        );
        let (Response::Eval(e0), Response::Eval(e1)) = (r0?, r1?) else {
            return Err(unexpected(compute[0], "evaluations"));
        };
        if let Some(h) = pending_finalize.take() {
            out[b - 1].tags = joined(h.await)?;
        }
        pending_finalize = Some(tokio::task::spawn_blocking(move || {
            batch.finalize(&real, &e0, &e1)
        }));
    }
    if let (Some(h), Some(last)) = (pending_finalize, out.last_mut()) {
        last.tags = joined(h.await)?;
    }
    Ok(out)
}

fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| RiskError::InvalidInput(format!("tagging worker failed: {e}")))?
}

/// Padded row count for `n` real rows: `n + 1` rounded up to a multiple of a granule
/// `g = max(1024, largest power of two ≤ n/8)`. A compute node learns `n` only to within `g`
/// (about an eighth of it), at a cost of at most 12.5% extra dummy rows.
pub fn padded_len(n: usize) -> usize {
    let eighth = n / 8;
    let g = if eighth < 1024 {
        1024
    } else {
        1usize << (usize::BITS - 1 - eighth.leading_zeros())
    };
    (n + 1).div_ceil(g) * g
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestReport {
    /// Real rows (distinct customers).
    pub rows: usize,
    /// Zero-valued dummy rows added.
    pub dummies: usize,
}

/// A holder's ingest: tags its customers through both nodes (padded with dummy elements),
/// adds zero-valued dummy rows with random tags up to [`padded_len`], sorts all rows by tag
/// (so position reveals nothing), and sends node j its additive share of every row. Each node
/// atomically replaces this holder's previous contribution at commit.
pub async fn ingest<C: NodeCaller, E: EvidenceSource>(
    caller: &C,
    compute: [&str; 2],
    records: &[RiskRecord],
    evidence: &E,
) -> Result<IngestReport> {
    let n = records.len();
    let padded = padded_len(n);
    let ids: Vec<&[u8]> = records.iter().map(|r| r.id.as_bytes()).collect();
    let batches = tag_batches(caller, compute, Purpose::Ingest, &ids, padded - n, evidence).await?;
    let tags = batches.into_iter().flat_map(|b| b.tags);
    let mut rng: ChaCha20Rng = rand::make_rng();
    // (tag, index of the record or None for a dummy), sorted by tag.
    let mut rows: Vec<(Tag, Option<usize>)> = tags.zip((0..n).map(Some)).collect();
    for _ in n..padded {
        let mut t = [0u8; 64];
        rng.fill_bytes(&mut t);
        rows.push((t, None));
    }
    rows.sort_unstable_by_key(|r| r.0);
    // Node 0's shares come from a PRG seeded once per upload; node 1's are value − share.
    let mut share_seed = [0u8; 32];
    rng.fill_bytes(&mut share_seed);
    let upload = rng.next_u64();
    let send_all = |j: usize| {
        let rows = &rows;
        async move {
            let node = compute[j];
            call_typed(
                caller,
                node,
                &Request::IngestBegin {
                    upload,
                    rows: padded as u64,
                },
            )
            .await?;
            for (c, chunk) in rows.chunks(MAX_INGEST_CHUNK).enumerate() {
                let mut prg = ChaCha20Rng::from_seed(share_seed);
                prg.set_stream(c as u64);
                let rows = chunk
                    .iter()
                    .map(|(tag, rec)| {
                        let vals = rec.map(|i| records[i].values).unwrap_or([0; 4]);
                        let share = std::array::from_fn(|k| {
                            let s0 = prg.next_u64();
                            if j == 0 { s0 } else { vals[k].wrapping_sub(s0) }
                        });
                        ShareRow { tag: *tag, share }
                    })
                    .collect();
                call_typed(caller, node, &Request::IngestRows { upload, rows }).await?;
            }
            match call_typed(caller, node, &Request::IngestCommit { upload }).await? {
                Response::IngestAck(k) if k == padded as u64 => Ok(()),
                Response::IngestAck(k) => Err(RiskError::Ingest(format!(
                    "`{node}` committed {k} rows, expected {padded}"
                ))),
                _ => Err(unexpected(node, "an ingest acknowledgement")),
            }
        }
    };
    let (a, b) = tokio::join!(send_all(0), send_all(1));
    a?;
    b?;
    Ok(IngestReport {
        rows: n,
        dummies: padded - n,
    })
}

/// The alliance-wide answer about one applicant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// Members that blacklist the applicant.
    pub blacklisted: u64,
    /// Open loans across members.
    pub loans: u64,
    /// Total amount of those loans (minor units).
    pub amount: u64,
    /// Overdue loans across members.
    pub overdue: u64,
    /// Distinct members that queried the applicant (in the retention window), this query
    /// included: `queried_by − 1` other members asked.
    pub queried_by: u64,
}

impl Answer {
    /// Adds the two nodes' shares.
    pub fn from_shares(s0: &AnswerShare, s1: &AnswerShare) -> Self {
        let v: [u64; 5] = std::array::from_fn(|i| s0[i].wrapping_add(s1[i]));
        Self {
            blacklisted: v[0],
            loans: v[1],
            amount: v[2],
            overdue: v[3],
            queried_by: v[4],
        }
    }
}

/// A lender's query: tags the applicants (audited evaluation), asks both nodes for their
/// shares (in batches of at most [`MAX_QUERY_BATCH`], each presenting the evidence of the
/// evaluation batch its tags come from) and adds them. Unknown applicants give zeros (and
/// `queried_by` ≥ 1).
pub async fn query<C: NodeCaller, E: EvidenceSource, I: AsRef<[u8]> + Sync>(
    caller: &C,
    compute: [&str; 2],
    ids: &[I],
    evidence: &E,
) -> Result<Vec<Answer>> {
    let batches = tag_batches(caller, compute, Purpose::Query, ids, 0, evidence).await?;
    let mut rng: ChaCha20Rng = rand::make_rng();
    let mut out = Vec::with_capacity(ids.len());
    for batch in &batches {
        for chunk in batch.tags.chunks(MAX_QUERY_BATCH) {
            let mut nonce = [0u8; 16];
            rng.fill_bytes(&mut nonce);
            let req = Request::Query {
                nonce,
                evidence: batch.evidence.clone(),
                blinded_points_hash: batch.blinded_points_hash,
                tags: chunk.to_vec(),
            };
            let (r0, r1) = tokio::join!(
                call_typed(caller, compute[0], &req),
                call_typed(caller, compute[1], &req)
            );
            let (Response::Query(s0), Response::Query(s1)) = (r0?, r1?) else {
                return Err(unexpected(compute[0], "answer shares"));
            };
            if s0.len() != chunk.len() || s1.len() != chunk.len() {
                return Err(RiskError::Protocol {
                    peer: compute[0].to_string(),
                    message: format!(
                        "{} and {} answers for {} tags",
                        s0.len(),
                        s1.len(),
                        chunk.len()
                    ),
                });
            }
            out.extend(s0.iter().zip(&s1).map(|(a, b)| Answer::from_shares(a, b)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::padded_len;

    #[test]
    fn padding_hides_the_count_within_an_eighth() {
        assert_eq!(padded_len(0), 1024);
        assert_eq!(padded_len(150), 1024);
        assert_eq!(padded_len(1023), 1024);
        assert_eq!(padded_len(1024), 2048);
        assert_eq!(padded_len(1_000_000), 1_048_576);
        for n in [5_000usize, 65_537, 999_999, 3_000_001] {
            let p = padded_len(n);
            assert!(p > n && p - n <= n / 8 + 1024, "n={n} p={p}");
        }
        // Counts within one granule are indistinguishable.
        assert_eq!(padded_len(990_000), padded_len(1_040_000));
    }
}
