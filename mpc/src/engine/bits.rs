//! Bit decomposition of shared values and comparisons with every power of two at once.

use super::{Engine, vecs, zeros};
use crate::error::{MpcError, Result};
use crate::share::{BoolShares, SharedVec};
use crate::transport::Transport;

const LOW63: u64 = (1u64 << 63) - 1;

impl<T: Transport> Engine<'_, T> {
    /// XOR shares of the carries of `x₀ + x₁` over the low 63 bits: bit `j` of each word
    /// is the carry out of bit position `j` (so bit 62 is the carry into the top bit).
    /// A Kogge–Stone prefix circuit: 12 word ANDs per element in 7 rounds.
    pub(super) async fn carries(&mut self, x: &SharedVec) -> Result<Vec<u64>> {
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
        Ok(g)
    }

    /// XOR shares of all 64 bits of each secret (bit `j` of the word is bit `j` of `x`):
    /// `bit_j(x) = bit_j(x₀) ⊕ bit_j(x₁) ⊕ carry into j`, from one [`Self::carries`]
    /// circuit, so the whole decomposition costs what one most significant bit costs.
    pub async fn bit_decompose(&mut self, x: &SharedVec) -> Result<BoolShares> {
        let g = self.carries(x).await?;
        Ok(BoolShares::from_raw(
            x.as_slice()
                .iter()
                .zip(&g)
                .map(|(v, c)| v.0 ^ (c << 1))
                .collect(),
        ))
    }

    /// Additive shares of `[x ≥ 2^k]` (0 or 1) for every bit position `k` in `ks`
    /// (0..=63), one vector per position, where `x` is each secret read as an unsigned
    /// 64-bit integer (so for fixed-point `x ≥ 0` and `k = f + e`: `[x ≥ 2^e]`).
    ///
    /// `[x ≥ 2^k]` is the OR of the bits of `x` at positions `≥ k`: one bit decomposition
    /// ([`Self::bit_decompose`]), a suffix OR inside each word (6 rounds of one word AND
    /// per element), and one conversion of all `|ks|` bits to additive shares — about the
    /// cost of one or two comparisons instead of one per position.
    pub async fn ge_powers_of_two(&mut self, x: &SharedVec, ks: &[u32]) -> Result<Vec<SharedVec>> {
        if let Some(k) = ks.iter().find(|&&k| k > 63) {
            return Err(MpcError::Param(format!(
                "bit position {k} of a 64-bit word"
            )));
        }
        let n = x.len();
        if n == 0 || ks.is_empty() {
            return Ok(ks.iter().map(|_| zeros(0)).collect());
        }
        let mut o = self.bit_decompose(x).await?.raw().to_vec();
        // Suffix OR: after the round with shift s, bit j is the OR of bits j..j+2s−1.
        // a ∨ b = a ⊕ b ⊕ (a ∧ b), and shifting XOR shares is local.
        for shift in [1u32, 2, 4, 8, 16, 32] {
            let down: Vec<u64> = o.iter().map(|v| v >> shift).collect();
            let both = self
                .and(
                    &BoolShares::from_raw(o.clone()),
                    &BoolShares::from_raw(down.clone()),
                )
                .await?;
            for ((v, d), b) in o.iter_mut().zip(&down).zip(both.raw()) {
                *v ^= d ^ b;
            }
        }
        let mut picked = Vec::with_capacity(n * ks.len());
        for &k in ks {
            picked.extend(o.iter().map(|v| (v >> k) & 1));
        }
        let arith = self.b2a(&BoolShares::from_raw(picked)).await?;
        Ok(arith
            .as_slice()
            .chunks(n)
            .map(|c| vecs(c.to_vec()))
            .collect())
    }
}
