//! The two-party engine: correlated randomness from a dealer and the protocols on shares.
//!
//! Three seats run the same code: party 0, party 1 and the [`Seat::Dealer`]. Every
//! protocol draws its correlated randomness (Beaver triples, AND triples, truncation
//! pairs, matrix triples) through the engine in the same order at all three seats, so the
//! dealer stays in step by simply running the same computation on placeholder zeros: its
//! `open` returns zeros and sends nothing, its randomness requests produce and send the
//! material. This keeps the dealer's schedule identical to the parties' by construction.
//!
//! ## Seed compression
//! At [`Engine::start`] the dealer sends party 0 a 32-byte ChaCha12 seed and party 1 another.
//! For every request, party 0 expands all of its shares (`a₀, b₀, c₀`, …) from its seed;
//! party 1 expands `a₁, b₁` from its seed and receives only the correction
//! `c₁ = a·b − c₀` from the dealer. Truncation pairs and mask products work the same way.
//!
//! ## What each seat learns
//! * The dealer receives nothing after setup except what [`Engine::start`] exchanges (no
//!   message at all flows from the parties to the dealer in this module).
//! * Each party sees only values masked by a fresh uniform mask from the dealer (`x − a`,
//!   `x ⊕ a`, `y + r`) and its own shares: uniformly random, independent of the secrets.
//!   The "Beaver cache" ([`Engine::mask_matrix`]) opens `X − U` once and reuses it; `U`
//!   is known only to the owner of those columns, so `X − U` is uniform for the other party.
//! * Outputs are revealed only through [`Engine::open`] / [`Engine::open_to`], called by
//!   the protocol that owns the decision.
//!
//! The dealer must not collude with either party (it knows every mask).

use std::fmt;
use std::num::Wrapping;

use ndarray::{Array1, Array2, Axis, Ix1, Ix2, Slice};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::Zeroizing;

use crate::error::{MpcError, Result};
use crate::ring::{FixedPoint, R64, ZERO, words_from_bytes, words_to_bytes};
use crate::share::{BoolShares, Party, SharedMat, SharedVec};
use crate::sigmoid::Spline;
use crate::transport::{Transport, TransportError};

/// Words per message when streaming (2 MiB).
pub const CHUNK_WORDS: usize = 1 << 18;

const LOW63: u64 = (1u64 << 63) - 1;

/// Which role this engine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seat {
    /// A computing party.
    Party(Party),
    /// The dealer of correlated randomness.
    Dealer,
}

/// The names of the three seats in the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Party 0.
    pub p0: String,
    /// Party 1.
    pub p1: String,
    /// The dealer.
    pub dealer: String,
}

impl Names {
    /// Name of a computing party.
    pub fn party(&self, p: Party) -> &str {
        if p.is_first() { &self.p0 } else { &self.p1 }
    }
}

enum State {
    Party {
        me: Party,
        prg: ChaCha12Rng,
    },
    Dealer {
        prg: Box<[ChaCha12Rng; 2]>,
        /// The column masks of the last [`Engine::mask_matrix`]: U₀ (party 0's columns), U₁.
        mask: Option<[Array2<R64>; 2]>,
    },
}

/// Elementwise Beaver triples `c = a·b`.
#[derive(Debug)]
pub struct Beaver {
    /// Share of `a`.
    pub a: SharedVec,
    /// Share of `b`.
    pub b: SharedVec,
    /// Share of `c = a·b`.
    pub c: SharedVec,
}

/// XOR-shared word triples `c = a ∧ b`.
#[derive(Debug)]
pub struct AndTriples {
    /// Share of `a`.
    pub a: BoolShares,
    /// Share of `b`.
    pub b: BoolShares,
    /// Share of `c = a ∧ b`.
    pub c: BoolShares,
}

/// Truncation pairs: uniform `r`, `r ≫ bits`, and the top bit of `r`.
#[derive(Debug)]
pub struct TruncPairs {
    /// Share of `r`.
    pub r: SharedVec,
    /// Share of `r ≫ bits` (logical shift).
    pub r_hi: SharedVec,
    /// Share of `r ≫ 63` (0 or 1).
    pub msb: SharedVec,
}

/// A matrix triple `C = A·B`.
#[derive(Debug)]
pub struct MatTriple {
    /// Share of `A` (n × k).
    pub a: SharedMat,
    /// Share of `B` (k × m).
    pub b: SharedMat,
    /// Share of `C` (n × m).
    pub c: SharedMat,
}

/// A column-partitioned matrix `X = [X₀ | X₁]` (party p owns `X_p`) masked once:
/// `E = X − U` is public to both parties, `U_p` is known only to party p (and the dealer).
pub struct MaskedMatrix {
    rows: usize,
    cols: [usize; 2],
    /// `X − U` (empty at the dealer).
    e: Array2<R64>,
    /// This party's own mask columns `U_p` (empty at the dealer).
    u: Zeroizing<Vec<R64>>,
}

impl fmt::Debug for MaskedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MaskedMatrix({} × {:?}, <redacted>)",
            self.rows, self.cols
        )
    }
}

impl MaskedMatrix {
    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns owned by each party.
    pub fn cols(&self) -> [usize; 2] {
        self.cols
    }
    /// Total columns.
    pub fn width(&self) -> usize {
        self.cols[0] + self.cols[1]
    }
}

/// A party's (or the dealer's) handle on a two-party computation.
pub struct Engine<'a, T: Transport> {
    t: &'a T,
    names: Names,
    fp: FixedPoint,
    state: State,
}

impl<T: Transport> fmt::Debug for Engine<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Engine({:?}, {:?}, <redacted state>)",
            self.seat(),
            self.names
        )
    }
}

fn fill(prg: &mut ChaCha12Rng, n: usize) -> Vec<R64> {
    (0..n).map(|_| Wrapping(prg.next_u64())).collect()
}

fn fill_words(prg: &mut ChaCha12Rng, n: usize) -> Vec<u64> {
    (0..n).map(|_| prg.next_u64()).collect()
}

fn fill_mat(prg: &mut ChaCha12Rng, r: usize, c: usize) -> Array2<R64> {
    Array2::from_shape_vec((r, c), fill(prg, r * c)).expect("length matches shape")
}

fn vecs(v: Vec<R64>) -> SharedVec {
    SharedVec::from_vec(v)
}

fn mats(a: Array2<R64>) -> SharedMat {
    SharedMat::from_raw(a)
}

fn to_words(v: &[R64]) -> Vec<u64> {
    v.iter().map(|x| x.0).collect()
}

fn from_words(v: Vec<u64>) -> Vec<R64> {
    v.into_iter().map(Wrapping).collect()
}

fn zeros(n: usize) -> SharedVec {
    SharedVec::zeros(Ix1(n))
}

/// Sends `words` to `to` in chunks of at most [`CHUNK_WORDS`].
pub async fn send_words<T: Transport>(t: &T, to: &str, words: &[u64]) -> Result<()> {
    for chunk in words.chunks(CHUNK_WORDS) {
        t.send(to, words_to_bytes(chunk)).await?;
    }
    Ok(())
}

/// Receives exactly `n` words from `from` (as sent by [`send_words`]).
pub async fn recv_words<T: Transport>(t: &T, from: &str, n: usize) -> Result<Vec<u64>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = t.recv(from).await?;
        let words = words_from_bytes(&msg)
            .ok_or_else(|| TransportError::malformed(from, "length is not a multiple of 8"))?;
        let expect = (n - out.len()).min(CHUNK_WORDS);
        if words.len() != expect {
            return Err(TransportError::malformed(
                from,
                format!("expected {expect} words, got {}", words.len()),
            )
            .into());
        }
        out.extend(words);
    }
    Ok(out)
}

/// Sends `mine` to `peer` while receiving the same number of words from it.
pub async fn exchange_words<T: Transport>(t: &T, peer: &str, mine: &[u64]) -> Result<Vec<u64>> {
    let (s, r) = tokio::join!(send_words(t, peer, mine), recv_words(t, peer, mine.len()));
    s?;
    r
}

impl<'a, T: Transport> Engine<'a, T> {
    /// Sets up a session: the dealer draws two fresh seeds and sends one to each party.
    pub async fn start(t: &'a T, seat: Seat, names: Names, fp: FixedPoint) -> Result<Self> {
        let state = match seat {
            Seat::Dealer => {
                let mut seeds = Zeroizing::new([[0u8; 32]; 2]);
                {
                    // The thread-local RNG must not live across an await (the future is Send).
                    let mut os = rand::rng();
                    os.fill_bytes(&mut seeds[0]);
                    os.fill_bytes(&mut seeds[1]);
                }
                t.send(&names.p0, seeds[0].to_vec()).await?;
                t.send(&names.p1, seeds[1].to_vec()).await?;
                State::Dealer {
                    prg: Box::new([
                        ChaCha12Rng::from_seed(seeds[0]),
                        ChaCha12Rng::from_seed(seeds[1]),
                    ]),
                    mask: None,
                }
            }
            Seat::Party(me) => {
                let msg = Zeroizing::new(t.recv(&names.dealer).await?);
                let seed: [u8; 32] = msg.as_slice().try_into().map_err(|_| {
                    TransportError::malformed(&names.dealer, "seed must be 32 bytes")
                })?;
                let seed = Zeroizing::new(seed);
                State::Party {
                    me,
                    prg: ChaCha12Rng::from_seed(*seed),
                }
            }
        };
        Ok(Self {
            t,
            names,
            fp,
            state,
        })
    }

    /// This engine's seat.
    pub fn seat(&self) -> Seat {
        match &self.state {
            State::Party { me, .. } => Seat::Party(*me),
            State::Dealer { .. } => Seat::Dealer,
        }
    }

    /// The computing party, or `None` at the dealer.
    pub fn party(&self) -> Option<Party> {
        match &self.state {
            State::Party { me, .. } => Some(*me),
            State::Dealer { .. } => None,
        }
    }

    /// True at the dealer.
    pub fn is_dealer(&self) -> bool {
        self.party().is_none()
    }

    /// True at party 0.
    fn is_p0(&self) -> bool {
        self.party() == Some(Party::P0)
    }

    /// The fixed-point codec.
    pub fn fixed(&self) -> FixedPoint {
        self.fp
    }

    /// The seat names.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// The transport.
    pub fn transport(&self) -> &'a T {
        self.t
    }

    fn peer(&self) -> &str {
        match self.party() {
            Some(p) => self.names.party(p.other()),
            None => &self.names.dealer,
        }
    }

    /// Party 1 receives `n` correction words from the dealer; the dealer sends them.
    async fn correction(&self, words: Option<Vec<u64>>, n: usize) -> Result<Vec<u64>> {
        match (&self.state, words) {
            (State::Dealer { .. }, Some(w)) => {
                send_words(self.t, &self.names.p1, &w).await?;
                Ok(Vec::new())
            }
            (State::Party { me, .. }, _) if !me.is_first() => {
                recv_words(self.t, &self.names.dealer, n).await
            }
            _ => Ok(Vec::new()),
        }
    }

    // ----- correlated randomness -------------------------------------------------------

    /// `n` elementwise Beaver triples.
    pub async fn beaver(&mut self, n: usize) -> Result<Beaver> {
        let dealt = match &mut self.state {
            State::Dealer { prg, .. } => {
                let (a0, b0, c0) = (
                    fill(&mut prg[0], n),
                    fill(&mut prg[0], n),
                    fill(&mut prg[0], n),
                );
                let (a1, b1) = (fill(&mut prg[1], n), fill(&mut prg[1], n));
                let c1: Vec<u64> = (0..n)
                    .map(|i| ((a0[i] + a1[i]) * (b0[i] + b1[i]) - c0[i]).0)
                    .collect();
                Some(c1)
            }
            State::Party { .. } => None,
        };
        let corr = self.correction(dealt, n).await?;
        Ok(match &mut self.state {
            State::Dealer { .. } => Beaver {
                a: zeros(n),
                b: zeros(n),
                c: zeros(n),
            },
            State::Party { me, prg } => {
                let a = vecs(fill(prg, n));
                let b = vecs(fill(prg, n));
                let c = if me.is_first() {
                    vecs(fill(prg, n))
                } else {
                    vecs(from_words(corr))
                };
                Beaver { a, b, c }
            }
        })
    }

    /// `n` XOR-shared word triples `c = a ∧ b`.
    pub async fn and_triples(&mut self, n: usize) -> Result<AndTriples> {
        let dealt = match &mut self.state {
            State::Dealer { prg, .. } => {
                let (a0, b0, c0) = (
                    fill_words(&mut prg[0], n),
                    fill_words(&mut prg[0], n),
                    fill_words(&mut prg[0], n),
                );
                let (a1, b1) = (fill_words(&mut prg[1], n), fill_words(&mut prg[1], n));
                Some(
                    (0..n)
                        .map(|i| ((a0[i] ^ a1[i]) & (b0[i] ^ b1[i])) ^ c0[i])
                        .collect(),
                )
            }
            State::Party { .. } => None,
        };
        let corr = self.correction(dealt, n).await?;
        Ok(match &mut self.state {
            State::Dealer { .. } => {
                let z = || BoolShares::from_raw(vec![0; n]);
                AndTriples {
                    a: z(),
                    b: z(),
                    c: z(),
                }
            }
            State::Party { me, prg } => {
                let a = BoolShares::from_raw(fill_words(prg, n));
                let b = BoolShares::from_raw(fill_words(prg, n));
                let c = BoolShares::from_raw(if me.is_first() {
                    fill_words(prg, n)
                } else {
                    corr
                });
                AndTriples { a, b, c }
            }
        })
    }

    /// `n` truncation pairs for a shift by `bits`.
    pub async fn trunc_pairs(&mut self, n: usize, bits: u32) -> Result<TruncPairs> {
        let dealt = match &mut self.state {
            State::Dealer { prg, .. } => {
                let (r0, rh0, m0) = (
                    fill(&mut prg[0], n),
                    fill(&mut prg[0], n),
                    fill(&mut prg[0], n),
                );
                let r1 = fill(&mut prg[1], n);
                let mut out = Vec::with_capacity(2 * n);
                for i in 0..n {
                    out.push((Wrapping((r0[i] + r1[i]).0 >> bits) - rh0[i]).0);
                }
                for i in 0..n {
                    out.push((Wrapping((r0[i] + r1[i]).0 >> 63) - m0[i]).0);
                }
                Some(out)
            }
            State::Party { .. } => None,
        };
        let corr = self.correction(dealt, 2 * n).await?;
        Ok(match &mut self.state {
            State::Dealer { .. } => TruncPairs {
                r: zeros(n),
                r_hi: zeros(n),
                msb: zeros(n),
            },
            State::Party { me, prg } => {
                let r = vecs(fill(prg, n));
                if me.is_first() {
                    let r_hi = vecs(fill(prg, n));
                    let msb = vecs(fill(prg, n));
                    TruncPairs { r, r_hi, msb }
                } else {
                    let mut corr = from_words(corr);
                    let msb = vecs(corr.split_off(n));
                    TruncPairs {
                        r,
                        r_hi: vecs(corr),
                        msb,
                    }
                }
            }
        })
    }

    /// A matrix triple `C = A·B` with `A: n × k`, `B: k × m`.
    pub async fn mat_triple(&mut self, n: usize, k: usize, m: usize) -> Result<MatTriple> {
        let dealt = match &mut self.state {
            State::Dealer { prg, .. } => {
                let (a0, b0, c0) = (
                    fill_mat(&mut prg[0], n, k),
                    fill_mat(&mut prg[0], k, m),
                    fill_mat(&mut prg[0], n, m),
                );
                let (a1, b1) = (fill_mat(&mut prg[1], n, k), fill_mat(&mut prg[1], k, m));
                let c1 = (&a0 + &a1).dot(&(&b0 + &b1)) - &c0;
                Some(c1.iter().map(|x| x.0).collect())
            }
            State::Party { .. } => None,
        };
        let corr = self.correction(dealt, n * m).await?;
        Ok(match &mut self.state {
            State::Dealer { .. } => MatTriple {
                a: SharedMat::zeros(Ix2(n, k)),
                b: SharedMat::zeros(Ix2(k, m)),
                c: SharedMat::zeros(Ix2(n, m)),
            },
            State::Party { me, prg } => {
                let a = mats(fill_mat(prg, n, k));
                let b = mats(fill_mat(prg, k, m));
                let c = if me.is_first() {
                    fill_mat(prg, n, m)
                } else {
                    Array2::from_shape_vec((n, m), from_words(corr))
                        .expect("length checked by recv_words")
                };
                MatTriple { a, b, c: mats(c) }
            }
        })
    }

    // ----- opening -----------------------------------------------------------------------

    /// Opens `x` to both parties (each sends its share to the other). Zeros at the dealer.
    pub async fn open(&self, x: &SharedVec) -> Result<Array1<R64>> {
        if self.is_dealer() {
            return Ok(Array1::from_elem(x.len(), ZERO));
        }
        let theirs = exchange_words(self.t, self.peer(), &to_words(x.as_slice())).await?;
        Ok(x.raw() + &Array1::from_vec(from_words(theirs)))
    }

    /// Opens `x` only to the parties in `to`; returns the value there, `None` elsewhere.
    pub async fn open_to(&self, x: &SharedVec, to: &[Party]) -> Result<Option<Array1<R64>>> {
        let Some(me) = self.party() else {
            return Ok(None);
        };
        let other = me.other();
        let peer = self.names.party(other);
        let send = async {
            if to.contains(&other) {
                send_words(self.t, peer, &to_words(x.as_slice())).await
            } else {
                Ok(())
            }
        };
        let recv = async {
            if to.contains(&me) {
                recv_words(self.t, peer, x.len()).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (s, r) = tokio::join!(send, recv);
        s?;
        Ok(r?.map(|w| x.raw() + &Array1::from_vec(from_words(w))))
    }

    async fn open_xor(&self, x: &[u64]) -> Result<Vec<u64>> {
        if self.is_dealer() {
            return Ok(vec![0; x.len()]);
        }
        let theirs = exchange_words(self.t, self.peer(), x).await?;
        Ok(x.iter().zip(theirs).map(|(a, b)| a ^ b).collect())
    }

    // ----- arithmetic --------------------------------------------------------------------

    /// Elementwise product of two shared vectors (no truncation).
    pub async fn mul(&mut self, x: &SharedVec, y: &SharedVec) -> Result<SharedVec> {
        if x.len() != y.len() {
            return Err(MpcError::Shape(format!("mul: {} vs {}", x.len(), y.len())));
        }
        let n = x.len();
        let t = self.beaver(n).await?;
        let mut masked = x.sub(&t.a)?.as_slice().to_vec();
        masked.extend_from_slice(y.sub(&t.b)?.as_slice());
        let opened = self.open(&vecs(masked)).await?;
        let (d, e) = opened.view().split_at(Axis(0), n);
        let p0 = self.is_p0();
        let (a, b, c) = (t.a.as_slice(), t.b.as_slice(), t.c.as_slice());
        let z = (0..n)
            .map(|i| {
                let mut v = c[i] + d[i] * b[i] + e[i] * a[i];
                if p0 {
                    v += d[i] * e[i];
                }
                v
            })
            .collect();
        Ok(vecs(z))
    }

    /// Elementwise fixed-point product: `mul` followed by truncation by f bits.
    pub async fn mul_fixed(&mut self, x: &SharedVec, y: &SharedVec) -> Result<SharedVec> {
        let z = self.mul(x, y).await?;
        self.trunc(&z, self.fp.frac_bits()).await
    }

    /// Product of two shared matrices (no truncation), with one matrix triple.
    pub async fn matmul(&mut self, x: &SharedMat, y: &SharedMat) -> Result<SharedMat> {
        let (n, k) = (x.shape()[0], x.shape()[1]);
        let (k2, m) = (y.shape()[0], y.shape()[1]);
        if k != k2 {
            return Err(MpcError::Shape(format!("matmul: {n}×{k} · {k2}×{m}")));
        }
        let t = self.mat_triple(n, k, m).await?;
        let mut masked = x.sub(&t.a)?.to_row_major();
        masked.extend(y.sub(&t.b)?.to_row_major());
        let opened = self.open(&vecs(masked)).await?.to_vec();
        let d = Array2::from_shape_vec((n, k), opened[..n * k].to_vec()).expect("sized");
        let e = Array2::from_shape_vec((k, m), opened[n * k..].to_vec()).expect("sized");
        let mut z = t.c.raw() + &d.dot(t.b.raw()) + &t.a.raw().dot(&e);
        if self.is_p0() {
            z += &d.dot(&e);
        }
        Ok(mats(z))
    }

    /// Truncation by `bits` with dealer truncation pairs (one round).
    ///
    /// For every secret `x` with `−2^62 ≤ x < 2^62` the result is `⌊x / 2^bits⌋` or
    /// `⌊x / 2^bits⌋ + 1` — never a wrap-around error. The opened value `x + 2^62 + r`
    /// is uniform (r is uniform in Z_2^64), so it reveals nothing about `x`.
    pub async fn trunc(&mut self, x: &SharedVec, bits: u32) -> Result<SharedVec> {
        if !(1..=61).contains(&bits) {
            return Err(MpcError::Param(format!("truncation by {bits} bits")));
        }
        let n = x.len();
        let tp = self.trunc_pairs(n, bits).await?;
        let offset = Wrapping(1u64 << 62);
        let y = x.add_scalar(self.party().unwrap_or(Party::P1), offset);
        let c = self.open(&y.add(&tp.r)?).await?;
        let p0 = self.is_p0();
        let wrap_unit = Wrapping(1u64 << (64 - bits));
        let off_hi = Wrapping(1u64 << (62 - bits));
        let (rh, msb) = (tp.r_hi.as_slice(), tp.msb.as_slice());
        let out = (0..n)
            .map(|i| {
                let ci = c[i].0;
                let mut v = -rh[i];
                if ci >> 63 == 0 {
                    v += wrap_unit * msb[i];
                }
                if p0 {
                    v += Wrapping(ci >> bits) - off_hi;
                }
                v
            })
            .collect();
        Ok(vecs(out))
    }

    /// Elementwise AND of XOR-shared words.
    pub async fn and(&mut self, x: &BoolShares, y: &BoolShares) -> Result<BoolShares> {
        if x.len() != y.len() {
            return Err(MpcError::Shape(format!("and: {} vs {}", x.len(), y.len())));
        }
        let n = x.len();
        let t = self.and_triples(n).await?;
        let mut masked: Vec<u64> = x.raw().iter().zip(t.a.raw()).map(|(v, a)| v ^ a).collect();
        masked.extend(y.raw().iter().zip(t.b.raw()).map(|(v, b)| v ^ b));
        let opened = Zeroizing::new(self.open_xor(&masked).await?);
        let (d, e) = opened.split_at(n);
        let p0 = self.is_p0();
        let (a, b, c) = (t.a.raw(), t.b.raw(), t.c.raw());
        Ok(BoolShares::from_raw(
            (0..n)
                .map(|i| {
                    let mut v = c[i] ^ (d[i] & b[i]) ^ (e[i] & a[i]);
                    if p0 {
                        v ^= d[i] & e[i];
                    }
                    v
                })
                .collect(),
        ))
    }

    /// XOR shares of the most significant bit of each secret (in bit 0 of each word).
    ///
    /// `msb(x₀ + x₁) = msb(x₀) ⊕ msb(x₁) ⊕ carry₆₃`, the carry out of the low 63 bits
    /// computed by a Kogge–Stone prefix circuit: 12 word ANDs per element in 7 rounds.
    pub async fn msb(&mut self, x: &SharedVec) -> Result<BoolShares> {
        let n = x.len();
        let p0 = self.is_p0();
        let low: Vec<u64> = x.as_slice().iter().map(|v| v.0 & LOW63).collect();
        let zero = vec![0u64; n];
        // Generate g = a ∧ c where party 0 holds a = x₀ mod 2^63 and party 1 c = x₁ mod 2^63.
        let (ga, gc) = if p0 {
            (low.clone(), zero)
        } else {
            (zero, low.clone())
        };
        let mut g = self
            .and(&BoolShares::from_raw(ga), &BoolShares::from_raw(gc))
            .await?
            .raw()
            .to_vec();
        let mut p = low; // propagate p = a ⊕ c, XOR-shared as (a, c)
        for shift in [1u32, 2, 4, 8, 16, 32] {
            let last = shift == 32;
            let mut lhs = p.clone();
            let mut rhs: Vec<u64> = g.iter().map(|v| (v << shift) & LOW63).collect();
            if !last {
                lhs.extend_from_slice(&p);
                rhs.extend(p.iter().map(|v| (v << shift) & LOW63));
            }
            let prod = self
                .and(&BoolShares::from_raw(lhs), &BoolShares::from_raw(rhs))
                .await?;
            let prod = prod.raw();
            for i in 0..n {
                g[i] ^= prod[i];
            }
            if !last {
                p = prod[n..].to_vec();
            }
        }
        let out = x
            .as_slice()
            .iter()
            .zip(&g)
            .map(|(v, gi)| ((gi >> 62) & 1) ^ (v.0 >> 63))
            .collect();
        Ok(BoolShares::from_raw(out))
    }

    /// Converts XOR-shared bits (bit 0 of each word) to additive shares of 0/1.
    pub async fn b2a(&mut self, bits: &BoolShares) -> Result<SharedVec> {
        let me = self.party();
        let own: Vec<R64> = bits.raw().iter().map(|b| Wrapping(b & 1)).collect();
        let zero = vec![ZERO; own.len()];
        let (x, y) = match me {
            Some(Party::P0) => (vecs(own.clone()), vecs(zero)),
            _ => (vecs(zero), vecs(own.clone())),
        };
        // b = b₀ ⊕ b₁ = b₀ + b₁ − 2·b₀·b₁
        let prod = self.mul(&x, &y).await?;
        vecs(own).sub(&prod.mul_public(Wrapping(2)))
    }

    /// Additive shares of `[x ≥ t]` for each public threshold `t` (fixed point), one vector
    /// per threshold. Correct whenever `|x − t| < 2^63`.
    pub async fn ge_public(&mut self, x: &SharedVec, thresholds: &[f64]) -> Result<Vec<SharedVec>> {
        let n = x.len();
        if n == 0 {
            return Ok(thresholds.iter().map(|_| zeros(0)).collect());
        }
        let me = self.party().unwrap_or(Party::P1);
        let mut all = Vec::with_capacity(n * thresholds.len());
        for &t in thresholds {
            let shifted = x.add_scalar(me, -self.fp.encode(t)?);
            all.extend_from_slice(shifted.as_slice());
        }
        let bits = self.msb(&vecs(all)).await?;
        let neg = self.b2a(&bits).await?;
        let ge = neg
            .mul_public(Wrapping(u64::MAX))
            .add_scalar(me, Wrapping(1));
        Ok(ge
            .as_slice()
            .chunks(n.max(1))
            .take(thresholds.len())
            .map(|c| vecs(c.to_vec()))
            .collect())
    }

    /// Evaluates several splines on the same shared fixed-point input, sharing the
    /// comparisons at common thresholds. Outputs are fixed point (f bits).
    pub async fn splines(&mut self, x: &SharedVec, splines: &[&Spline]) -> Result<Vec<SharedVec>> {
        let n = x.len();
        let me = self.party().unwrap_or(Party::P1);
        let f = self.fp.frac_bits();
        let mut union: Vec<f64> = splines
            .iter()
            .flat_map(|s| s.thresholds().to_vec())
            .collect();
        union.sort_by(f64::total_cmp);
        union.dedup();
        let bits = self.ge_public(x, &union).await?;
        // Every slope that multiplies x: β₀ of each spline and Δβ at each threshold.
        let mut slopes = Vec::new();
        for s in splines {
            let p = s.pieces();
            slopes.push(p[0].1);
            for k in 1..p.len() {
                slopes.push(p[k].1 - p[k - 1].1);
            }
        }
        let mut scaled = Vec::with_capacity(n * slopes.len());
        for &b in &slopes {
            scaled.extend_from_slice(x.mul_public(self.fp.encode(b)?).as_slice());
        }
        let scaled = self.trunc(&vecs(scaled), f).await?;
        let scaled = scaled.as_slice();
        // Products [x ≥ tₖ]·(Δα + Δβ·x), all in one Beaver round.
        let (mut lhs, mut rhs) = (Vec::new(), Vec::new());
        let mut si = 0;
        for s in splines {
            let p = s.pieces();
            si += 1;
            for k in 1..p.len() {
                let ti = union
                    .iter()
                    .position(|&u| u == s.thresholds()[k - 1])
                    .expect("threshold is in the union");
                lhs.extend_from_slice(bits[ti].as_slice());
                let da = self.fp.encode(p[k].0 - p[k - 1].0)?;
                let u = vecs(scaled[si * n..(si + 1) * n].to_vec()).add_scalar(me, da);
                rhs.extend_from_slice(u.as_slice());
                si += 1;
            }
        }
        let prods = self.mul(&vecs(lhs), &vecs(rhs)).await?;
        let prods = prods.as_slice();
        let mut out = Vec::with_capacity(splines.len());
        let (mut si, mut pi) = (0, 0);
        for s in splines {
            let p = s.pieces();
            let mut acc =
                vecs(scaled[si * n..(si + 1) * n].to_vec()).add_scalar(me, self.fp.encode(p[0].0)?);
            si += 1;
            for _ in 1..p.len() {
                acc = acc.add(&vecs(prods[pi * n..(pi + 1) * n].to_vec()))?;
                pi += 1;
                si += 1;
            }
            out.push(acc);
        }
        Ok(out)
    }

    // ----- the Beaver cache for a column-partitioned matrix -------------------------------

    /// Masks `X = [X₀ | X₁]` once: party p passes its own columns `own` (rows × cols[p],
    /// fixed point); the dealer passes `None`. Party p's mask `U_p` is expanded from its seed
    /// (the dealer expands both and keeps them for [`Self::masked_mul_vec`] and
    /// [`Self::masked_tmul_vec`]); `X_p − U_p` is sent to the other party. Traffic: each
    /// party sends its own `rows × cols[p]` words once.
    pub async fn mask_matrix(
        &mut self,
        own: Option<&Array2<R64>>,
        rows: usize,
        cols: [usize; 2],
    ) -> Result<MaskedMatrix> {
        match &mut self.state {
            State::Dealer { prg, mask } => {
                let u0 = fill_mat(&mut prg[0], rows, cols[0]);
                let u1 = fill_mat(&mut prg[1], rows, cols[1]);
                *mask = Some([u0, u1]);
                Ok(MaskedMatrix {
                    rows,
                    cols,
                    e: Array2::from_elem((0, 0), ZERO),
                    u: Zeroizing::new(Vec::new()),
                })
            }
            State::Party { me, prg } => {
                let me = *me;
                let mine = cols[me.index()];
                let own =
                    own.ok_or_else(|| MpcError::Param("a party must supply its columns".into()))?;
                if own.shape() != [rows, mine] {
                    return Err(MpcError::Shape(format!(
                        "own columns {:?}, expected {rows} × {mine}",
                        own.shape()
                    )));
                }
                let u = fill_mat(prg, rows, mine);
                let masked: Vec<u64> = own.iter().zip(u.iter()).map(|(x, m)| (x - m).0).collect();
                let peer = self.names.party(me.other()).to_string();
                let theirs_len = rows * cols[me.other().index()];
                let (s, r) = tokio::join!(
                    send_words(self.t, &peer, &masked),
                    recv_words(self.t, &peer, theirs_len)
                );
                s?;
                let theirs = from_words(r?);
                let mut e = Array2::from_elem((rows, cols[0] + cols[1]), ZERO);
                let mine_e =
                    Array2::from_shape_vec((rows, mine), from_words(masked)).expect("sized");
                let theirs_e = Array2::from_shape_vec((rows, cols[me.other().index()]), theirs)
                    .expect("sized");
                let (c0, c1) = if me.is_first() {
                    (mine_e, theirs_e)
                } else {
                    (theirs_e, mine_e)
                };
                e.slice_axis_mut(Axis(1), Slice::from(..cols[0]))
                    .assign(&c0);
                e.slice_axis_mut(Axis(1), Slice::from(cols[0]..))
                    .assign(&c1);
                let u = Zeroizing::new(u.into_raw_vec_and_offset().0);
                Ok(MaskedMatrix { rows, cols, e, u })
            }
        }
    }

    fn check_rows(m: &MaskedMatrix, rows: &[usize]) -> Result<()> {
        if rows.iter().any(|&r| r >= m.rows) {
            return Err(MpcError::Param("batch row index out of range".into()));
        }
        Ok(())
    }

    fn own_u_rows(&self, m: &MaskedMatrix, rows: &[usize]) -> Array2<R64> {
        let me = self.party().unwrap_or(Party::P0);
        let c = m.cols[me.index()];
        let mut out = Array2::from_elem((rows.len(), c), ZERO);
        for (i, &r) in rows.iter().enumerate() {
            out.row_mut(i)
                .iter_mut()
                .zip(&m.u[r * c..(r + 1) * c])
                .for_each(|(o, v)| *o = *v);
        }
        out
    }

    /// Shares of `X_b · w` for the rows `rows` of a masked matrix (no truncation).
    /// Fresh per call: `V` (width) and `Z = U_b·V` from the dealer; opens `w − V`.
    pub async fn masked_mul_vec(
        &mut self,
        m: &MaskedMatrix,
        rows: &[usize],
        w: &SharedVec,
    ) -> Result<SharedVec> {
        Self::check_rows(m, rows)?;
        let (d, b) = (m.width(), rows.len());
        if w.len() != d {
            return Err(MpcError::Shape(format!(
                "w has {} entries, X has {d} columns",
                w.len()
            )));
        }
        // Correlated randomness: V (d) and Z = U_b V (b).
        let dealt = match &mut self.state {
            State::Dealer { prg, mask } => {
                let [u0, u1] = mask
                    .as_ref()
                    .ok_or_else(|| MpcError::Param("no masked matrix".into()))?;
                let (v0, z0) = (fill(&mut prg[0], d), fill(&mut prg[0], b));
                let v1 = fill(&mut prg[1], d);
                let v: Array1<R64> = v0.iter().zip(&v1).map(|(a, c)| a + c).collect();
                let (va, vb) = v.view().split_at(Axis(0), m.cols[0]);
                let z1: Vec<u64> = rows
                    .iter()
                    .zip(&z0)
                    .map(|(&r, z0)| (u0.row(r).dot(&va) + u1.row(r).dot(&vb) - z0).0)
                    .collect();
                Some(z1)
            }
            State::Party { .. } => None,
        };
        let corr = self.correction(dealt, b).await?;
        let (v, z) = match &mut self.state {
            State::Dealer { .. } => return Ok(zeros(b)),
            State::Party { me, prg } => {
                let v = fill(prg, d);
                let z = if me.is_first() {
                    fill(prg, b)
                } else {
                    from_words(corr)
                };
                (vecs(v), Array1::from_vec(z))
            }
        };
        let me = self.party().expect("not the dealer");
        let f = self.open(&w.sub(&v)?).await?;
        let e_b = m.e.select(Axis(0), rows);
        let mut coeff = v.raw().clone();
        if me.is_first() {
            coeff += &f;
        }
        let mut out = e_b.dot(&coeff) + z;
        let own_f = if me.is_first() {
            f.slice_axis(Axis(0), Slice::from(..m.cols[0]))
        } else {
            f.slice_axis(Axis(0), Slice::from(m.cols[0]..))
        };
        out += &self.own_u_rows(m, rows).dot(&own_f);
        Ok(SharedVec::from_raw(out))
    }

    /// Shares of `X_bᵀ · e` for the rows `rows` of a masked matrix (no truncation).
    /// Fresh per call: `V′` (batch) and `Z′ = U_bᵀ·V′` from the dealer; opens `e − V′`.
    pub async fn masked_tmul_vec(
        &mut self,
        m: &MaskedMatrix,
        rows: &[usize],
        e: &SharedVec,
    ) -> Result<SharedVec> {
        Self::check_rows(m, rows)?;
        let (d, b) = (m.width(), rows.len());
        if e.len() != b {
            return Err(MpcError::Shape(format!(
                "e has {} entries for {b} rows",
                e.len()
            )));
        }
        let dealt = match &mut self.state {
            State::Dealer { prg, mask } => {
                let [u0, u1] = mask
                    .as_ref()
                    .ok_or_else(|| MpcError::Param("no masked matrix".into()))?;
                let (v0, z0) = (fill(&mut prg[0], b), fill(&mut prg[0], d));
                let v1 = fill(&mut prg[1], b);
                let v: Array1<R64> = v0.iter().zip(&v1).map(|(a, c)| a + c).collect();
                let mut z = Array1::from_elem(d, ZERO);
                for (i, &r) in rows.iter().enumerate() {
                    z.slice_axis_mut(Axis(0), Slice::from(..m.cols[0]))
                        .scaled_add(v[i], &u0.row(r));
                    z.slice_axis_mut(Axis(0), Slice::from(m.cols[0]..))
                        .scaled_add(v[i], &u1.row(r));
                }
                Some(z.iter().zip(&z0).map(|(a, c)| (a - c).0).collect())
            }
            State::Party { .. } => None,
        };
        let corr = self.correction(dealt, d).await?;
        let (v, z) = match &mut self.state {
            State::Dealer { .. } => return Ok(zeros(d)),
            State::Party { me, prg } => {
                let v = fill(prg, b);
                let z = if me.is_first() {
                    fill(prg, d)
                } else {
                    from_words(corr)
                };
                (vecs(v), Array1::from_vec(z))
            }
        };
        let me = self.party().expect("not the dealer");
        let g = self.open(&e.sub(&v)?).await?;
        let e_b = m.e.select(Axis(0), rows);
        let mut coeff = v.raw().clone();
        if me.is_first() {
            coeff += &g;
        }
        let mut out = e_b.t().dot(&coeff) + z;
        let own = self.own_u_rows(m, rows).t().dot(&g);
        if me.is_first() {
            out.slice_axis_mut(Axis(0), Slice::from(..m.cols[0]))
                .scaled_add(Wrapping(1), &own);
        } else {
            out.slice_axis_mut(Axis(0), Slice::from(m.cols[0]..))
                .scaled_add(Wrapping(1), &own);
        }
        Ok(SharedVec::from_raw(out))
    }
}
