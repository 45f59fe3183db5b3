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

use ndarray::{Array2, Ix1};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use zeroize::Zeroizing;

use crate::error::{MpcError, Result};
use crate::ring::{FixedPoint, R64, words_from_bytes, words_to_bytes};
use crate::share::{Party, SharedMat, SharedVec};
use crate::transport::{Transport, TransportError};

mod ahead;
mod bits;
mod cache;
mod dealt;
mod gemm;
mod ops;
mod outer;
mod owned;

pub use cache::MaskedMatrix;
pub use dealt::{AndTriples, Beaver, MatTriple, TruncPairs};
pub use owned::{OwnProduct, OwnRows};

/// Words per message when streaming (2 MiB).
pub const CHUNK_WORDS: usize = 1 << 18;

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
        prg: Box<ChaCha12Rng>,
    },
    Dealer {
        prg: Box<[ChaCha12Rng; 2]>,
        /// The column masks of the last [`Engine::mask_matrix`]: U₀ (party 0's columns), U₁.
        mask: Option<ahead::Masks>,
    },
}

/// A party's (or the dealer's) handle on a two-party computation.
pub struct Engine<'a, T: Transport> {
    t: &'a T,
    names: Names,
    fp: FixedPoint,
    state: State,
    /// The owned products' randomness and dense products, computed ahead.
    ahead: ahead::Ahead,
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
    // Row-major, the same order as `fill(prg, r * c)`.
    Array2::from_shape_simple_fn((r, c), || Wrapping(prg.next_u64()))
}

/// A `rows × cols` matrix from row-major words.
fn shaped(rows: usize, cols: usize, v: Vec<R64>) -> Result<Array2<R64>> {
    let len = v.len();
    Array2::from_shape_vec((rows, cols), v)
        .map_err(|_| MpcError::Shape(format!("{len} words for a {rows} × {cols} matrix")))
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
        let (state, ahead) = match seat {
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
                let ahead = ahead::Ahead::new(&seeds[..]);
                let state = State::Dealer {
                    prg: Box::new([
                        ChaCha12Rng::from_seed(seeds[0]),
                        ChaCha12Rng::from_seed(seeds[1]),
                    ]),
                    mask: None,
                };
                (state, ahead)
            }
            Seat::Party(me) => {
                let msg = Zeroizing::new(t.recv(&names.dealer).await?);
                if msg.len() != 32 {
                    return Err(
                        TransportError::malformed(&names.dealer, "seed must be 32 bytes").into(),
                    );
                }
                // Copied straight into wiped memory: no plain copy of the seed stays behind.
                let mut seed = Zeroizing::new([0u8; 32]);
                seed.copy_from_slice(&msg);
                let ahead = ahead::Ahead::new(std::slice::from_ref(&*seed));
                let state = State::Party {
                    me,
                    prg: Box::new(ChaCha12Rng::from_seed(*seed)),
                };
                (state, ahead)
            }
        };
        Ok(Self {
            t,
            names,
            fp,
            state,
            ahead,
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
}
