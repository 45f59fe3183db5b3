//! Correlated randomness from the dealer: Beaver, AND and matrix triples, truncation pairs.

use std::num::Wrapping;

use ndarray::Ix2;
use rand_chacha::ChaCha12Rng;
use rand_core::Rng;

use super::{Engine, State, fill, fill_mat, fill_words, from_words, mats, shaped, vecs, zeros};
use crate::error::Result;
use crate::offload::heavy;
use crate::share::{BoolShares, SharedMat, SharedVec};
use crate::transport::Transport;

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

/// `K` consecutive runs of `n` words of `prg` as `K` iterators read side by side (each a
/// copy of the generator set to its run's offset); `prg` moves past all of them. The
/// words are those `K` successive `fill(prg, n)` calls would draw.
fn streams<const K: usize>(
    prg: &mut ChaCha12Rng,
    n: usize,
) -> [impl Iterator<Item = u64> + use<K>; K] {
    let base = prg.get_word_pos();
    // A u64 is two 32-bit ChaCha words.
    let run = 2 * n as u128;
    let out = std::array::from_fn(|k| {
        let mut g = prg.clone();
        g.set_word_pos(base + k as u128 * run);
        (0..n).map(move |_| g.next_u64())
    });
    prg.set_word_pos(base + K as u128 * run);
    out
}

impl<T: Transport> Engine<'_, T> {
    /// `n` elementwise Beaver triples.
    pub async fn beaver(&mut self, n: usize) -> Result<Beaver> {
        let dealt = heavy(5 * n, || match &mut self.state {
            State::Dealer { prg, .. } => {
                // One pass over five streams (a₀ b₀ c₀ from seed 0, a₁ b₁ from seed 1) at
                // the offsets where the parties draw them: no n-word temporaries.
                let [a0, b0, c0] = streams(&mut prg[0], n);
                let [a1, b1] = streams(&mut prg[1], n);
                let c1: Vec<u64> = a0
                    .zip(b0)
                    .zip(c0)
                    .zip(a1.zip(b1))
                    .map(|(((a0, b0), c0), (a1, b1))| {
                        a0.wrapping_add(a1)
                            .wrapping_mul(b0.wrapping_add(b1))
                            .wrapping_sub(c0)
                    })
                    .collect();
                Some(c1)
            }
            State::Party { .. } => None,
        });
        let corr = self.correction(dealt, n).await?;
        Ok(heavy(3 * n, || match &mut self.state {
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
        }))
    }

    /// `n` XOR-shared word triples `c = a ∧ b`.
    pub async fn and_triples(&mut self, n: usize) -> Result<AndTriples> {
        let dealt = heavy(5 * n, || match &mut self.state {
            State::Dealer { prg, .. } => {
                let [a0, b0, c0] = streams(&mut prg[0], n);
                let [a1, b1] = streams(&mut prg[1], n);
                Some(
                    a0.zip(b0)
                        .zip(c0)
                        .zip(a1.zip(b1))
                        .map(|(((a0, b0), c0), (a1, b1))| ((a0 ^ a1) & (b0 ^ b1)) ^ c0)
                        .collect(),
                )
            }
            State::Party { .. } => None,
        });
        let corr = self.correction(dealt, n).await?;
        Ok(heavy(3 * n, || match &mut self.state {
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
        }))
    }

    /// `n` truncation pairs for a shift by `bits`.
    pub async fn trunc_pairs(&mut self, n: usize, bits: u32) -> Result<TruncPairs> {
        let dealt = heavy(4 * n, || match &mut self.state {
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
        });
        let corr = self.correction(dealt, 2 * n).await?;
        Ok(heavy(3 * n, || match &mut self.state {
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
        }))
    }

    /// A matrix triple `C = A·B` with `A: n × k`, `B: k × m`.
    pub async fn mat_triple(&mut self, n: usize, k: usize, m: usize) -> Result<MatTriple> {
        let dealt = heavy(
            n * k * m + 2 * (n * k + k * m + n * m),
            || match &mut self.state {
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
            },
        );
        let corr = self.correction(dealt, n * m).await?;
        heavy(n * k + k * m + n * m, || match &mut self.state {
            State::Dealer { .. } => Ok(MatTriple {
                a: SharedMat::zeros(Ix2(n, k)),
                b: SharedMat::zeros(Ix2(k, m)),
                c: SharedMat::zeros(Ix2(n, m)),
            }),
            State::Party { me, prg } => {
                let a = mats(fill_mat(prg, n, k));
                let b = mats(fill_mat(prg, k, m));
                let c = if me.is_first() {
                    fill_mat(prg, n, m)
                } else {
                    shaped(n, m, from_words(corr))?
                };
                Ok(MatTriple { a, b, c: mats(c) })
            }
        })
    }
}
