//! A secure inverse square root on shares (Adam's per-coordinate `1/√(v̂ + ε)`).
//!
//! For a secret `x` in a public range `[lo, hi)`, secure comparisons with the powers of
//! four give the shared exponent scale `s = 2^−k` (exactly) for the `k` with
//! `4^k ≤ x < 4^(k+1)`; then `t = x·4^−k ∈ [1, 4)` and `y ≈ 1/√t ∈ (0.5, 1]` from a linear
//! start and three Newton steps `y ← y(3 − t·y²)/2`, so `1/√x = y·s`. Nothing is opened but
//! the masked values of products, truncations and comparisons.

use std::num::Wrapping;

use confide_mpc::{Engine, Party, R64, SharedVec, Transport};

use crate::error::{Result, TrainError};

/// The linear start `y₀ = A − B·t` of least maximal relative error (8.6 %) for `1/√t` on
/// `[1, 4]`; three Newton steps bring it to 6·10⁻⁸ before fixed-point rounding.
const START: (f64, f64) = (1.067, 0.1525);
/// Newton steps.
const NEWTON: usize = 3;

/// `v · 2^bits` as a ring integer (`v · 2^bits` must be below 2^62 in magnitude).
pub(super) fn at_bits(v: f64, bits: u32) -> R64 {
    Wrapping((v * 2f64.powi(bits as i32)).round() as i64 as u64)
}

/// Shares of `(y, s)` with `y · s ≈ 1/√x` for every secret `x` in `[lo, hi)`, given at
/// `bits` fractional bits (not necessarily the engine's `f`): `s = 2^−k` exactly at `f`
/// bits and `y ∈ (0.5, 1]` at `f` bits (relative error of `y·s` about 2^−f). Multiply by
/// `y` first, then by `s`. Errors (before any message) when the range does not fit:
/// `lo` must be positive, `lo·2^bits ≥ 1`, `hi·2^bits < 2^60`, `s` representable.
pub(crate) async fn rsqrt<T: Transport>(
    e: &mut Engine<'_, T>,
    x: &SharedVec,
    bits: u32,
    lo: f64,
    hi: f64,
) -> Result<(SharedVec, SharedVec)> {
    let fp = e.fixed();
    let f = fp.frac_bits();
    let (kmin, kmax, s2_bits) = plan(lo, hi, bits, f)?;
    let me = e.party().unwrap_or(Party::P1);
    // x ≥ 4^k for k = kmin+1 … kmax−1 (thresholds at f bits standing for x at `bits`).
    let ks: Vec<i32> = (kmin + 1..kmax).collect();
    let scale = 2f64.powi(bits as i32 - f as i32);
    let thresholds: Vec<f64> = ks.iter().map(|&k| 4f64.powi(k) * scale).collect();
    let ge = e.ge_public(x, &thresholds).await?;
    let n = x.len();
    let zero = SharedVec::zeros(ndarray::Ix1(n));
    let mut s = zero.add_scalar(me, at_bits(2f64.powi(-kmin), f));
    let mut s2 = zero.add_scalar(me, at_bits(4f64.powi(-kmin), s2_bits));
    for (b, &k) in ge.iter().zip(&ks) {
        let ds = 2f64.powi(-k) - 2f64.powi(1 - k);
        let ds2 = 4f64.powi(-k) - 4f64.powi(1 - k);
        s = s.add(&b.mul_public(at_bits(ds, f)))?;
        s2 = s2.add(&b.mul_public(at_bits(ds2, s2_bits)))?;
    }
    // t = x · 4^−k ∈ [1, 4) at f bits.
    let t = e.mul(x, &s2).await?;
    let t = e.trunc(&t, bits + s2_bits - f).await?;
    let y = t.mul_public(at_bits(-START.1, f));
    let mut y = e.trunc(&y, f).await?.add_scalar(me, at_bits(START.0, f));
    for _ in 0..NEWTON {
        // [y², t·y] in one round, then t·y³ at 2f bits; y ← (3y − t·y³)/2.
        let both = e
            .mul_fixed(&cat(&y, &t), &cat(&y, &y))
            .await
            .map(|p| split(&p, n))?;
        let ty3 = e.mul(&both.1, &both.0).await?;
        let three_y = y.mul_public(at_bits(3.0, f));
        y = e.trunc(&three_y.sub(&ty3)?, f + 1).await?;
    }
    Ok((y, s))
}

/// `(kmin, kmax, bits of s²)` for `x ∈ [lo, hi)` at `bits`, with `f` fractional bits.
fn plan(lo: f64, hi: f64, bits: u32, f: u32) -> Result<(i32, i32, u32)> {
    let bad = || {
        Err(TrainError::Params(format!(
            "the range [{lo}, {hi}) at {bits} bits does not fit the shared inverse square root at {f} fractional bits"
        )))
    };
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi > lo) {
        return bad();
    }
    let kmin = (lo.log2() / 2.0).floor() as i32;
    let kmax = ((hi.log2() / 2.0).ceil() as i32).max(kmin + 1);
    // s² = 4^−k down to 4^−(kmax−1) must be exact; x·s² < 4 at bits + s2_bits.
    let s2_bits = (2 * (kmax - 1)).max(0) as u32;
    let fits = lo * 2f64.powi(bits as i32) >= 1.0
        && hi * 2f64.powi(bits as i32) < 2f64.powi(60)
        && bits + s2_bits + 2 <= 61
        && bits + s2_bits > f
        && kmax - 1 <= f as i32
        && -kmin + (f as i32) < 60
        && -2 * kmin + (s2_bits as i32) < 60;
    if fits {
        Ok((kmin, kmax, s2_bits))
    } else {
        bad()
    }
}

fn cat(a: &SharedVec, b: &SharedVec) -> SharedVec {
    let mut v = a.as_slice().to_vec();
    v.extend_from_slice(b.as_slice());
    SharedVec::from_vec(v)
}

fn split(x: &SharedVec, n: usize) -> (SharedVec, SharedVec) {
    let s = x.as_slice();
    (
        SharedVec::from_vec(s[..n].to_vec()),
        SharedVec::from_vec(s[n..].to_vec()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_mpc::engine::{Names, Seat};
    use confide_mpc::share::share;
    use confide_mpc::{ChannelTransport, FixedPoint, memory_mesh};
    use ndarray::Array1;
    use proptest::prelude::*;
    use rand_chacha::ChaCha12Rng;
    use rand_core::SeedableRng;

    /// Runs `rsqrt` at the three seats on a sharing of `xs` (at `bits` bits); returns the
    /// reconstructed `(y, s)`.
    fn run(xs: &[f64], bits: u32, lo: f64, hi: f64) -> Result<(Vec<f64>, Vec<f64>)> {
        let fp = FixedPoint::default();
        let x: Array1<R64> = xs.iter().map(|&v| at_bits(v, bits)).collect();
        let (x0, x1) = share(&x, &mut ChaCha12Rng::seed_from_u64(5));
        let dz = SharedVec::zeros(ndarray::Ix1(xs.len()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mesh = memory_mesh(&["a", "b", "d"], 8);
            let names = Names {
                p0: "a".into(),
                p1: "b".into(),
                dealer: "d".into(),
            };
            let at = |t, seat, x| seat_job(t, seat, names.clone(), fp, x, bits, lo, hi);
            let (r0, r1, rd) = tokio::join!(
                at(&mesh[0], Seat::Party(Party::P0), x0),
                at(&mesh[1], Seat::Party(Party::P1), x1),
                at(&mesh[2], Seat::Dealer, dz)
            );
            rd?;
            let ((y0, s0), (y1, s1)) = (r0?, r1?);
            let open = |a: &SharedVec, b: &SharedVec| {
                fp.decode_all(SharedVec::reconstruct(a, b).unwrap().as_slice().unwrap())
            };
            Ok((open(&y0, &y1), open(&s0, &s1)))
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn seat_job(
        t: &ChannelTransport,
        seat: Seat,
        names: Names,
        fp: FixedPoint,
        x: SharedVec,
        bits: u32,
        lo: f64,
        hi: f64,
    ) -> Result<(SharedVec, SharedVec)> {
        let mut e = Engine::start(t, seat, names, fp).await?;
        rsqrt(&mut e, &x, bits, lo, hi).await
    }

    /// Adam's range: v + ε(1−β₂ᵗ) from ε·2⁻¹⁰ up to the clip² = 4096, at 36 bits.
    #[test]
    fn rsqrt_is_accurate_over_the_whole_range() {
        let xs = [
            9.8e-8, 1e-7, 2.5e-7, 1e-6, 3.3e-5, 1e-4, 0.01, 0.25, 0.999, 1.0, 3.99, 4.0, 100.0,
            4095.0, 4096.5, 16383.0,
        ];
        let (y, s) = run(&xs, 36, 9.7e-8, 16384.0).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            // The value the shares hold.
            let x = (x * 2f64.powi(36)).round() / 2f64.powi(36);
            let k = (x.log2() / 2.0).floor();
            assert_eq!(s[i], 2f64.powf(-k), "scale of {x}");
            assert!(
                (0.5 - 1e-5..=1.0 + 1e-5).contains(&y[i]),
                "y {} for {x}",
                y[i]
            );
            let rel = y[i] * s[i] * x.sqrt() - 1.0;
            assert!(rel.abs() < 2e-5, "1/√{x}: relative error {rel}");
        }
    }

    #[test]
    fn rsqrt_refuses_ranges_it_cannot_hold() {
        // Below one unit at 20 bits, past 2^60, and empty or negative ranges.
        for (bits, lo, hi) in [
            (20, 1e-7, 4.0),
            (36, 1e-4, 1e8),
            (36, 0.0, 1.0),
            (36, 2.0, 1.0),
        ] {
            let err = run(&[1.0], bits, lo, hi).unwrap_err();
            assert!(matches!(err, TrainError::Params(_)), "{err}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        /// Scaling by four halves the shared scale exactly and keeps `y`:
        /// `1/√(4x) = (1/√x)/2`.
        #[test]
        fn four_times_x_halves_the_scale(e in -20.0f64..10.0) {
            // x on the 36-bit grid, so that 4x is encoded exactly.
            let x = (2f64.powf(e) * 2f64.powi(36)).round() / 2f64.powi(36);
            let (y, s) = run(&[x, 4.0 * x], 36, 9.7e-8, 16384.0).unwrap();
            prop_assert_eq!(s[1] * 2.0, s[0]);
            prop_assert!((y[1] - y[0]).abs() < 2e-5, "{} vs {}", y[0], y[1]);
        }
    }
}
