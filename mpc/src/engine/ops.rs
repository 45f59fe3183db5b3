//! Opening and arithmetic on shares: products, truncation, comparisons, splines.

use std::num::Wrapping;

use ndarray::{Array1, Axis};
use zeroize::Zeroizing;

use super::{
    Engine, exchange_words, from_words, mats, recv_words, send_words, shaped, to_words, vecs, zeros,
};
use crate::error::{MpcError, Result};
use crate::offload::heavy;
use crate::ring::{R64, ZERO};
use crate::share::{BoolShares, Party, SharedMat, SharedVec};
use crate::sigmoid::Spline;
use crate::transport::Transport;

impl<T: Transport> Engine<'_, T> {
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
        let z = heavy(3 * n, || {
            (0..n)
                .map(|i| {
                    let mut v = c[i] + d[i] * b[i] + e[i] * a[i];
                    if p0 {
                        v += d[i] * e[i];
                    }
                    v
                })
                .collect()
        });
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
        let d = shaped(n, k, opened[..n * k].to_vec())?;
        let e = shaped(k, m, opened[n * k..].to_vec())?;
        let p0 = self.is_p0();
        let z = heavy(3 * n * k * m, || {
            let mut z = t.c.raw() + &d.dot(t.b.raw()) + &t.a.raw().dot(&e);
            if p0 {
                z += &d.dot(&e);
            }
            z
        });
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
        let out = heavy(3 * n, || {
            (0..n)
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
                .collect()
        });
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
        Ok(BoolShares::from_raw(heavy(3 * n, || {
            (0..n)
                .map(|i| {
                    let mut v = c[i] ^ (d[i] & b[i]) ^ (e[i] & a[i]);
                    if p0 {
                        v ^= d[i] & e[i];
                    }
                    v
                })
                .collect()
        })))
    }

    /// XOR shares of the most significant bit of each secret (in bit 0 of each word).
    ///
    /// `msb(x₀ + x₁) = msb(x₀) ⊕ msb(x₁) ⊕ carry₆₃`, the carry out of the low 63 bits
    /// computed by a Kogge–Stone prefix circuit ([`Self::carries`]): 12 word ANDs per
    /// element in 7 rounds.
    pub async fn msb(&mut self, x: &SharedVec) -> Result<BoolShares> {
        let g = self.carries(x).await?;
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
                    .ok_or_else(|| MpcError::Param("spline threshold missing".into()))?;
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
}
