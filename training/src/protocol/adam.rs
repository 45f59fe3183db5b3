//! Adam on shares ([`crate::optim::Optimizer::Adam`]): both moments stay secret-shared,
//! the per-coordinate `1/√(v + ε')` is the shared inverse square root ([`super::rsqrt`]),
//! and only the bias corrections (functions of the public step count) are public.
//!
//! Fixed point: `g` and `m` at `f` bits; `v` at `2f` bits (the exact square of `g`, so a
//! gradient of 10⁻³ still adds 10⁻⁶ at a resolution of 10⁻¹¹ for `f = 18`), updated by the
//! shift `v ← v + (g² − v)·2⁻¹⁰` (β₂ = 1 − 2⁻¹⁰). Clipping `g` to ±64 keeps `v < 4⁶`, so
//! the inverse square root covers `[ε(1−β₂), 4⁷)` with 18 comparisons per weight.

use confide_mpc::{Engine, Party, SharedVec, Spline, Transport};
use ndarray::{Array1, Ix1};

use super::CONST_BITS;
use super::prep::enc_const;
use super::rsqrt::{at_bits, rsqrt};
use crate::error::{Result, TrainError};
use crate::optim::{ADAM_BETA1, ADAM_BETA2_SHIFT, ADAM_CLIP, ADAM_EPS, adam_beta2, adam_factors};

/// Most fractional bits of the inverse square root's input (`v` is truncated to these
/// when `2f` is larger, keeping `x·s²` inside the ring).
const MAX_INPUT_BITS: u32 = 44;

/// Adam's secret-shared moments and the public step count since the last restart.
pub(super) struct Adam {
    /// First moment (f bits).
    m: SharedVec,
    /// Second moment (2f bits).
    v: SharedVec,
    t: usize,
}

impl Adam {
    /// The moments (this party's shares) and the step count, for a checkpoint.
    pub(super) fn parts(&self) -> (&SharedVec, &SharedVec, usize) {
        (&self.m, &self.v, self.t)
    }

    /// Adam from [`Self::parts`].
    pub(super) fn from_parts(m: SharedVec, v: SharedVec, t: usize) -> Self {
        Self { m, v, t }
    }

    pub(super) fn zeros(d: usize) -> Self {
        Self {
            m: SharedVec::zeros(Ix1(d)),
            v: SharedVec::zeros(Ix1(d)),
            t: 0,
        }
    }

    /// The step `Δ` (f bits; the caller sets `w ← w − Δ`) for a batch of `k` rows with
    /// gradient sum `g` (f bits) at step size `rate`, with the L2 term `l2[j]·w[j]`.
    pub(super) async fn step<T: Transport>(
        &mut self,
        e: &mut Engine<'_, T>,
        w: &SharedVec,
        g: &SharedVec,
        k: usize,
        rate: f64,
        l2: &[f64],
    ) -> Result<SharedVec> {
        let f = e.fixed().frac_bits();
        let me = e.party().unwrap_or(Party::P1);
        let inv = enc_const(1.0 / k as f64);
        let (gr, wr) = (g.raw(), w.raw());
        let lin: Array1<_> = (0..w.len())
            .map(|j| inv * gr[j] + enc_const(l2[j]) * wr[j])
            .collect();
        let g = e.trunc(&SharedVec::from_raw(lin), CONST_BITS).await?;
        let clip = Spline::new(
            vec![-ADAM_CLIP, ADAM_CLIP],
            vec![(-ADAM_CLIP, 0.0), (0.0, 1.0), (ADAM_CLIP, 0.0)],
        )
        .ok_or_else(|| TrainError::Internal("Adam's gradient clip".into()))?;
        let g = e.splines(&g, &[&clip]).await?.remove(0);
        let m = self
            .m
            .mul_public(enc_const(ADAM_BETA1))
            .add(&g.mul_public(enc_const(1.0 - ADAM_BETA1)))?;
        self.m = e.trunc(&m, CONST_BITS).await?;
        let g2 = e.mul(&g, &g).await?;
        let dv = e.trunc(&g2.sub(&self.v)?, ADAM_BETA2_SHIFT).await?;
        self.v = self.v.add(&dv)?;
        self.t += 1;
        let (a1, c2, eps) = adam_factors(self.t);
        let mut bits = 2 * f;
        let mut u = self.v.add_scalar(me, at_bits(eps, bits));
        if bits > MAX_INPUT_BITS {
            u = e.trunc(&u, bits - MAX_INPUT_BITS).await?;
            bits = MAX_INPUT_BITS;
        }
        let lo = 0.9 * ADAM_EPS * (1.0 - adam_beta2());
        let (y, s) = rsqrt(e, &u, bits, lo, 4.0 * ADAM_CLIP * ADAM_CLIP).await?;
        let q = e.mul_fixed(&self.m, &y).await?;
        let r = e.mul_fixed(&q, &s).await?;
        Ok(
            e.trunc(&r.mul_public(enc_const(rate * a1 * c2)), CONST_BITS)
                .await?,
        )
    }
}
