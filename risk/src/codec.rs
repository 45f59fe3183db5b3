//! Compact binary encodings of every request and response (the daemon carries them as the
//! bytes of unary gRPC calls, or as [`Transport`](confide_mpc::transport::Transport) messages).
//!
//! Layout: one version byte ([`WIRE_VERSION`]), one kind byte, then the body; integers are
//! little-endian, counts are `u32`, variable byte strings are `u32`-length-prefixed. Decoding
//! never panics and never allocates more than the message's own length justifies.

use crate::error::{Result, RiskError};
use crate::oprf::{Element, Tag};

/// Version byte that starts every message (2: lookups carry their audit evidence).
pub const WIRE_VERSION: u8 = 2;
/// Most blinded elements in one evaluation request (2 MiB of elements).
pub const MAX_EVAL_BATCH: usize = 65_536;
/// Most rows in one ingest chunk (≈ 384 KiB).
pub const MAX_INGEST_CHUNK: usize = 4_096;
/// Most tags in one query request.
pub const MAX_QUERY_BATCH: usize = 10_000;
/// Most bytes of audit evidence.
pub const MAX_EVIDENCE: usize = 64 * 1024;

/// What a blinded-element evaluation is for (bound into the audited hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A holder tags its customers for ingest.
    Ingest,
    /// A lender tags applicants to query.
    Query,
}

impl Purpose {
    fn code(self) -> u8 {
        match self {
            Purpose::Ingest => 1,
            Purpose::Query => 2,
        }
    }
    fn from_code(c: u8) -> Result<Self> {
        match c {
            1 => Ok(Purpose::Ingest),
            2 => Ok(Purpose::Query),
            _ => Err(RiskError::Decode(format!("unknown purpose {c}"))),
        }
    }
}

/// One row a holder sends one compute node: a tag and that node's additive share (Z_2^64) of
/// `[blacklisted, loans, amount, overdue]`.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct ShareRow {
    /// The customer's tag (or a random dummy tag).
    pub tag: Tag,
    /// This node's share of the four fields.
    pub share: [u64; 4],
}

impl std::fmt::Debug for ShareRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareRow(<redacted>)")
    }
}

/// A request to a compute node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Evaluate the OPRF share on blinded elements, authorised by audit evidence.
    Eval {
        /// Ingest or query.
        purpose: Purpose,
        /// Opaque audit reference (logged entry + inclusion promise) checked by the node's gate.
        evidence: Vec<u8>,
        /// Serialized blinded elements.
        elements: Vec<Element>,
    },
    /// Start (or restart) the caller's upload; `rows` is the padded row count to expect.
    IngestBegin {
        /// Upload id chosen by the holder.
        upload: u64,
        /// Rows that will follow.
        rows: u64,
    },
    /// A chunk of rows of the upload.
    IngestRows {
        /// Upload id.
        upload: u64,
        /// The rows.
        rows: Vec<ShareRow>,
    },
    /// Atomically replace the caller's previous contribution by this upload.
    IngestCommit {
        /// Upload id.
        upload: u64,
    },
    /// Look tags up, under the logged query entry whose evaluation produced them.
    Query {
        /// Random request nonce, the same for both nodes (keys the answer re-randomisation).
        nonce: [u8; 16],
        /// The evidence of the [`Request::Eval`] (purpose query) that produced these tags.
        evidence: Vec<u8>,
        /// The blinded-points hash that evaluation was bound to.
        blinded_points_hash: [u8; 32],
        /// Tags to look up.
        tags: Vec<Tag>,
    },
}

/// A compute node's answer to one tag: its shares of
/// `[blacklisted, loans, amount, overdue, queried_by]`.
pub type AnswerShare = [u64; 5];

/// A compute node's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `k_j · B` for each blinded element, in order.
    Eval(Vec<Element>),
    /// Rows of the upload received so far (after Begin/Rows) or committed (after Commit).
    IngestAck(u64),
    /// One answer share per tag, in order.
    Query(Vec<AnswerShare>),
    /// The request was refused; the message says why.
    Error(String),
}

const REQ_EVAL: u8 = 0x01;
const REQ_BEGIN: u8 = 0x02;
const REQ_ROWS: u8 = 0x03;
const REQ_COMMIT: u8 = 0x04;
const REQ_QUERY: u8 = 0x05;
const RESP_EVAL: u8 = 0x81;
const RESP_ACK: u8 = 0x82;
const RESP_QUERY: u8 = 0x83;
const RESP_ERROR: u8 = 0x8f;

struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u8, capacity: usize) -> Self {
        let mut v = Vec::with_capacity(capacity + 2);
        v.push(WIRE_VERSION);
        v.push(kind);
        Self(v)
    }
    fn u8(&mut self, x: u8) {
        self.0.push(x);
    }
    fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    fn count(&mut self, n: usize) {
        let n = u32::try_from(n).expect("batches are bounded far below 2^32");
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.count(b.len());
        self.0.extend_from_slice(b);
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn open(buf: &'a [u8]) -> Result<(u8, Self)> {
        match buf {
            [WIRE_VERSION, kind, ..] => Ok((*kind, Self { buf, pos: 2 })),
            [v, _, ..] => Err(RiskError::Decode(format!("unsupported wire version {v}"))),
            _ => Err(RiskError::Decode(
                "message shorter than its 2-byte header".into(),
            )),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                RiskError::Decode(format!(
                    "truncated: need {n} bytes at offset {}, have {}",
                    self.pos,
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A count of items of `item_len` bytes each, checked against the bytes left and `max`.
    fn count(&mut self, item_len: usize, max: usize) -> Result<usize> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > max {
            return Err(RiskError::Decode(format!(
                "{n} items exceed the limit of {max}"
            )));
        }
        let left = self.buf.len() - self.pos;
        if n.saturating_mul(item_len) > left {
            return Err(RiskError::Decode(format!(
                "{n} items of {item_len} bytes announced, {left} bytes left"
            )));
        }
        Ok(n)
    }
    fn bytes(&mut self, max: usize) -> Result<Vec<u8>> {
        let n = self.count(1, max)?;
        Ok(self.take(n)?.to_vec())
    }
    fn finish(self) -> Result<()> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(RiskError::Decode(format!(
                "{} trailing bytes",
                self.buf.len() - self.pos
            )))
        }
    }
}

impl Request {
    /// Encodes the request.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Eval {
                purpose,
                evidence,
                elements,
            } => {
                let mut w = Writer::new(REQ_EVAL, 9 + evidence.len() + 32 * elements.len());
                w.u8(purpose.code());
                w.bytes(evidence);
                w.count(elements.len());
                for e in elements {
                    w.raw(e);
                }
                w.0
            }
            Request::IngestBegin { upload, rows } => {
                let mut w = Writer::new(REQ_BEGIN, 16);
                w.u64(*upload);
                w.u64(*rows);
                w.0
            }
            Request::IngestRows { upload, rows } => {
                let mut w = Writer::new(REQ_ROWS, 12 + 96 * rows.len());
                w.u64(*upload);
                w.count(rows.len());
                for r in rows {
                    w.raw(&r.tag);
                    for s in r.share {
                        w.u64(s);
                    }
                }
                w.0
            }
            Request::IngestCommit { upload } => {
                let mut w = Writer::new(REQ_COMMIT, 8);
                w.u64(*upload);
                w.0
            }
            Request::Query {
                nonce,
                evidence,
                blinded_points_hash,
                tags,
            } => {
                let mut w = Writer::new(REQ_QUERY, 56 + evidence.len() + 64 * tags.len());
                w.raw(nonce);
                w.raw(blinded_points_hash);
                w.bytes(evidence);
                w.count(tags.len());
                for t in tags {
                    w.raw(t);
                }
                w.0
            }
        }
    }

    /// Decodes a request; malformed input is an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let (kind, mut r) = Reader::open(buf)?;
        let req = match kind {
            REQ_EVAL => {
                let purpose = Purpose::from_code(r.u8()?)?;
                let evidence = r.bytes(MAX_EVIDENCE)?;
                let n = r.count(32, MAX_EVAL_BATCH)?;
                let elements = (0..n).map(|_| r.array()).collect::<Result<_>>()?;
                Request::Eval {
                    purpose,
                    evidence,
                    elements,
                }
            }
            REQ_BEGIN => Request::IngestBegin {
                upload: r.u64()?,
                rows: r.u64()?,
            },
            REQ_ROWS => {
                let upload = r.u64()?;
                let n = r.count(96, MAX_INGEST_CHUNK)?;
                let rows = (0..n)
                    .map(|_| {
                        Ok(ShareRow {
                            tag: r.array()?,
                            share: [r.u64()?, r.u64()?, r.u64()?, r.u64()?],
                        })
                    })
                    .collect::<Result<_>>()?;
                Request::IngestRows { upload, rows }
            }
            REQ_COMMIT => Request::IngestCommit { upload: r.u64()? },
            REQ_QUERY => {
                let nonce = r.array()?;
                let blinded_points_hash = r.array()?;
                let evidence = r.bytes(MAX_EVIDENCE)?;
                let n = r.count(64, MAX_QUERY_BATCH)?;
                let tags = (0..n).map(|_| r.array()).collect::<Result<_>>()?;
                Request::Query {
                    nonce,
                    evidence,
                    blinded_points_hash,
                    tags,
                }
            }
            k => return Err(RiskError::Decode(format!("unknown request kind {k:#04x}"))),
        };
        r.finish()?;
        Ok(req)
    }
}

impl Response {
    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Response::Eval(elements) => {
                let mut w = Writer::new(RESP_EVAL, 4 + 32 * elements.len());
                w.count(elements.len());
                for e in elements {
                    w.raw(e);
                }
                w.0
            }
            Response::IngestAck(n) => {
                let mut w = Writer::new(RESP_ACK, 8);
                w.u64(*n);
                w.0
            }
            Response::Query(answers) => {
                let mut w = Writer::new(RESP_QUERY, 4 + 40 * answers.len());
                w.count(answers.len());
                for a in answers {
                    for x in a {
                        w.u64(*x);
                    }
                }
                w.0
            }
            Response::Error(msg) => {
                let mut w = Writer::new(RESP_ERROR, 4 + msg.len());
                w.bytes(msg.as_bytes());
                w.0
            }
        }
    }

    /// Decodes a response; malformed input is an error, never a panic.
    pub fn decode(buf: &[u8]) -> Result<Self> {
        let (kind, mut r) = Reader::open(buf)?;
        let resp = match kind {
            RESP_EVAL => {
                let n = r.count(32, MAX_EVAL_BATCH)?;
                Response::Eval((0..n).map(|_| r.array()).collect::<Result<_>>()?)
            }
            RESP_ACK => Response::IngestAck(r.u64()?),
            RESP_QUERY => {
                let n = r.count(40, MAX_QUERY_BATCH)?;
                Response::Query(
                    (0..n)
                        .map(|_| Ok([r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?]))
                        .collect::<Result<_>>()?,
                )
            }
            RESP_ERROR => {
                let b = r.bytes(MAX_EVIDENCE)?;
                Response::Error(String::from_utf8_lossy(&b).into_owned())
            }
            k => return Err(RiskError::Decode(format!("unknown response kind {k:#04x}"))),
        };
        r.finish()?;
        Ok(resp)
    }
}
