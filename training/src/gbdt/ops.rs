//! Secure building blocks of the boosted trees: a shared reciprocal and a segmented argmax.

use std::num::Wrapping;

use confide_mpc::{Engine, Party, R64, SharedVec, Spline, Transport};

use crate::error::{Result, TrainError};

/// This seat's party for local share arithmetic (the dealer acts as party 1: adds nothing).
pub(super) fn me<T: Transport>(e: &Engine<'_, T>) -> Party {
    e.party().unwrap_or(Party::P1)
}

/// A ring integer.
pub(super) fn int(v: i64) -> R64 {
    Wrapping(v as u64)
}

/// Concatenates shares.
pub(super) fn cat<'a>(parts: impl IntoIterator<Item = &'a SharedVec>) -> SharedVec {
    SharedVec::from_vec(
        parts
            .into_iter()
            .flat_map(|p| p.as_slice().iter().copied())
            .collect(),
    )
}

/// Elements `from..to` of a share.
pub(super) fn part(x: &SharedVec, from: usize, to: usize) -> SharedVec {
    SharedVec::from_vec(x.as_slice()[from..to].to_vec())
}

/// `n` copies of one share element.
pub(super) fn splat(v: R64, n: usize) -> SharedVec {
    SharedVec::from_vec(vec![v; n])
}

/// Sum of the elements of a share (a share of the sum).
pub(super) fn total(x: &SharedVec) -> R64 {
    x.as_slice().iter().fold(Wrapping(0), |a, b| a + b)
}

/// Shares of `(y, s)` with `y · s ≈ 1/x` for every secret `x` in `[lo, hi)` (fixed point):
/// `s = 2^−k` exactly, for the `k` with `2^k ≤ x < 2^(k+1)` (every comparison with a
/// power of two from one bit decomposition: [`Engine::ge_powers_of_two`]), and `y ≈ 1/(x·s) ∈ (0.5, 1]` from a linear start and three Newton
/// steps (relative error below 10⁻⁸ before fixed-point rounding). Multiply by `y` first,
/// then by `s`, to keep precision for large `x`.
pub(super) async fn reciprocal<T: Transport>(
    e: &mut Engine<'_, T>,
    x: &SharedVec,
    lo: f64,
    hi: f64,
) -> Result<(SharedVec, SharedVec)> {
    let fp = e.fixed();
    let f = fp.frac_bits() as i32;
    let kmin = lo.log2().floor() as i32;
    let kmax = hi.log2().ceil() as i32;
    if lo.is_nan() || lo <= 0.0 || kmax > f || -kmin > f {
        return Err(TrainError::Data(format!(
            "values up to {hi} do not fit the shared reciprocal at {f} fractional bits (too many rows)"
        )));
    }
    let me = me(e);
    let ks: Vec<i32> = (kmin + 1..kmax).collect();
    // [x ≥ 2^k] is [X ≥ 2^(k+f)] for the fixed-point integer X ≥ 0: bit positions k + f,
    // all from one bit decomposition. 1 ≤ k + f < 2f since −kmin ≤ f and kmax ≤ f.
    let positions: Vec<u32> = ks.iter().map(|&k| (k + f) as u32).collect();
    let bits = e.ge_powers_of_two(x, &positions).await?;
    let mut s =
        SharedVec::zeros(ndarray::Ix1(x.len())).add_scalar(me, fp.encode(2f64.powi(-kmin))?);
    for (b, &k) in bits.iter().zip(&ks) {
        let step = fp.encode(2f64.powi(-k) - 2f64.powi(1 - k))?;
        s = s.add(&b.mul_public(step))?;
    }
    let xs = e.mul_fixed(x, &s).await?;
    let half = e.trunc(&xs, 1).await?;
    let mut y = half.mul_public(int(-1)).add_scalar(me, fp.encode(1.4571)?);
    let two = fp.encode(2.0)?;
    for _ in 0..3 {
        let xy = e.mul_fixed(&xs, &y).await?;
        let corr = xy.mul_public(int(-1)).add_scalar(me, two);
        y = e.mul_fixed(&y, &corr).await?;
    }
    Ok((y, s))
}

/// The symmetric 7-piece sigmoid spline ([`plain_sigmoid`]) on shares: `s = [x ≥ 0]`,
/// `|x| = x·(2s − 1)`, the spline's half for `x ≥ 0` (thresholds 1, 2.5, 5) on `|x|`, and
/// `σ̂(x) = 1 − v + s·(2v − 1)` for `v = σ̂(|x|)`: four comparisons per value instead of
/// six (`s` and `2s − 1` are integers: no truncation in either product).
pub(super) async fn sigmoid<T: Transport>(
    e: &mut Engine<'_, T>,
    x: &SharedVec,
) -> Result<SharedVec> {
    let fp = e.fixed();
    let me = me(e);
    let half = half_sigmoid();
    let s = e
        .ge_public(x, &[0.0])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| TrainError::Internal("no comparison".into()))?;
    let sign = s.mul_public(int(2)).add_scalar(me, int(-1));
    let ax = e.mul(x, &sign).await?;
    let v = e
        .splines(&ax, &[&half])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| TrainError::Internal("no spline".into()))?;
    let one = fp.encode(1.0)?;
    let twice = v.mul_public(int(2)).add_scalar(me, -one);
    let moved = e.mul(&s, &twice).await?;
    Ok(moved.sub(&v)?.add_scalar(me, one))
}

/// The boosted trees' sigmoid in plain arithmetic (the twin's): [`Spline::sigmoid7`] for
/// `x ≥ 0` and `1 − σ̂(−x)` below. It equals the spline everywhere except at `x = −5`
/// exactly, where the spline's jump to its constant outer piece falls on the other side.
pub(super) fn plain_sigmoid(x: f64) -> f64 {
    let half = half_sigmoid();
    if x >= 0.0 {
        half.eval(x)
    } else {
        1.0 - half.eval(-x)
    }
}

/// The pieces of [`Spline::sigmoid7`] on `x ≥ 0` (its thresholds are symmetric about 0).
pub(super) fn half_sigmoid() -> Spline {
    let full = Spline::sigmoid7();
    let at = full.thresholds().partition_point(|&t| t < 0.0);
    let thresholds = full.thresholds()[at..].to_vec();
    let pieces = full.pieces()[at..].to_vec();
    Spline::new(thresholds, pieces).unwrap_or(full)
}

/// For `segs` segments of `len` shared fixed-point values each (back to back): each
/// segment's maximum and its index (fixed point), the lowest index on ties, and the
/// entries of each `payload` (same layout as `v`) at that index. A tournament:
/// `⌈log₂ len⌉` rounds of one comparison and one product per pair (values, indices and
/// payloads selected in the same product).
pub(super) async fn argmax<T: Transport>(
    e: &mut Engine<'_, T>,
    v: &SharedVec,
    segs: usize,
    len: usize,
    payloads: &[&SharedVec],
) -> Result<(SharedVec, SharedVec, Vec<SharedVec>)> {
    let fp = e.fixed();
    let me = me(e);
    if len == 0 || v.len() != segs * len || payloads.iter().any(|p| p.len() != v.len()) {
        return Err(TrainError::Internal("argmax over an empty segment".into()));
    }
    let idx: Vec<R64> = if me.is_first() {
        let one = (0..len)
            .map(|i| fp.encode(i as f64))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        one.iter().copied().cycle().take(segs * len).collect()
    } else {
        vec![int(0); segs * len]
    };
    // Lanes: 0 = values, 1 = indices, then the payloads; each `segs × cur` back to back.
    let mut lanes: Vec<Vec<R64>> = [v.as_slice().to_vec(), idx]
        .into_iter()
        .chain(payloads.iter().map(|p| p.as_slice().to_vec()))
        .collect();
    let nl = lanes.len();
    let mut cur = len;
    while cur > 1 {
        let half = cur / 2;
        let m = segs * half;
        // Differences of each pair in every lane: first − second.
        let mut diff = Vec::with_capacity(nl * m);
        for lane in &lanes {
            for s in 0..segs {
                let row = &lane[s * cur..(s + 1) * cur];
                diff.extend((0..half).map(|j| row[2 * j] - row[2 * j + 1]));
            }
        }
        let dv = SharedVec::from_vec(diff[..m].to_vec());
        let bits = e.ge_public(&dv, &[0.0]).await?;
        let bit = bits
            .into_iter()
            .next()
            .ok_or_else(|| TrainError::Internal("no comparison".into()))?;
        let lhs = cat(std::iter::repeat_n(&bit, nl));
        let prod = e.mul(&lhs, &SharedVec::from_vec(diff)).await?;
        let prod = prod.as_slice();
        // Winner = second + bit · (first − second).
        let next = half + cur % 2;
        for (li, lane) in lanes.iter_mut().enumerate() {
            let mut out = Vec::with_capacity(segs * next);
            for s in 0..segs {
                let row = &lane[s * cur..(s + 1) * cur];
                let p = &prod[li * m + s * half..li * m + (s + 1) * half];
                out.extend((0..half).map(|j| row[2 * j + 1] + p[j]));
                if cur % 2 == 1 {
                    out.push(row[cur - 1]);
                }
            }
            *lane = out;
        }
        cur = next;
    }
    let mut lanes = lanes.into_iter().map(SharedVec::from_vec);
    let (Some(best), Some(at)) = (lanes.next(), lanes.next()) else {
        return Err(TrainError::Internal("argmax lost its lanes".into()));
    };
    Ok((best, at, lanes.collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use confide_mpc::engine::{Names, Seat};
    use confide_mpc::share::share;
    use confide_mpc::{FixedPoint, memory_mesh};
    use ndarray::Array1;
    use rand_chacha::ChaCha12Rng;
    use rand_core::SeedableRng;

    type Job = for<'a, 'b> fn(
        &'a mut Engine<'b, confide_mpc::ChannelTransport>,
        SharedVec,
    ) -> futures_shim::Boxed<'a>;

    mod futures_shim {
        pub type Boxed<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Vec<confide_mpc::SharedVec>> + Send + 'a>,
        >;
    }

    /// Runs `job` at the three seats on a sharing of `xs`; returns the reconstructed outputs.
    fn run(xs: &[f64], job: Job) -> Vec<Vec<f64>> {
        let fp = FixedPoint::default();
        let x: Array1<R64> = xs.iter().map(|&v| fp.encode(v).unwrap()).collect();
        let (x0, x1) = share(&x, &mut ChaCha12Rng::seed_from_u64(3));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mesh = memory_mesh(&["a", "b", "d"], 8);
            let names = Names {
                p0: "a".into(),
                p1: "b".into(),
                dealer: "d".into(),
            };
            let dz = SharedVec::zeros(ndarray::Ix1(xs.len()));
            let (r0, r1, _) = tokio::join!(
                async {
                    let mut e = Engine::start(&mesh[0], Seat::Party(Party::P0), names.clone(), fp)
                        .await
                        .unwrap();
                    job(&mut e, x0).await
                },
                async {
                    let mut e = Engine::start(&mesh[1], Seat::Party(Party::P1), names.clone(), fp)
                        .await
                        .unwrap();
                    job(&mut e, x1).await
                },
                async {
                    let mut e = Engine::start(&mesh[2], Seat::Dealer, names.clone(), fp)
                        .await
                        .unwrap();
                    job(&mut e, dz).await
                }
            );
            r0.iter()
                .zip(&r1)
                .map(|(a, b)| {
                    fp.decode_all(SharedVec::reconstruct(a, b).unwrap().as_slice().unwrap())
                })
                .collect()
        })
    }

    #[test]
    fn reciprocal_is_accurate_over_the_whole_range() {
        let xs = [
            0.01, 0.3, 1.0, 1.5, 2.0, 7.77, 100.0, 1023.9, 1024.0, 65000.0,
        ];
        let out = run(&xs, |e, x| {
            Box::pin(async move {
                let (y, s) = reciprocal(e, &x, 0.005, 70000.0).await.unwrap();
                // x·(y·s) should be 1; also return (1000·y)·s for the precision check.
                let one = e.mul_fixed(&x, &y).await.unwrap();
                let one = e.mul_fixed(&one, &s).await.unwrap();
                vec![one, y, s]
            })
        });
        let fp = FixedPoint::default();
        for (i, &x) in xs.iter().enumerate() {
            let x = fp.decode(fp.encode(x).unwrap());
            let (one, y, s) = (out[0][i], out[1][i], out[2][i]);
            assert!((0.5..=1.0 + 1e-4).contains(&y), "y {y} for {x}");
            assert!(
                (y * s - 1.0 / x).abs() <= 1e-4 / x + 4e-6 * s,
                "x {x}: {}",
                y * s
            );
            assert!((one - 1.0).abs() < 1e-3, "x·(1/x) = {one} for {x}");
        }
    }

    #[test]
    fn symmetric_sigmoid_matches_the_spline() {
        let sp = Spline::sigmoid7();
        let xs: Vec<f64> = (-64..=64).map(|i| f64::from(i) / 8.0).collect();
        for &x in &xs {
            // The spline itself, but for its jump at −5.
            if x != -5.0 {
                assert!((plain_sigmoid(x) - sp.eval(x)).abs() < 1e-12, "{x}");
            }
        }
        let out = run(&xs, |e, x| {
            Box::pin(async move { vec![sigmoid(e, &x).await.unwrap()] })
        });
        for (x, got) in xs.iter().zip(&out[0]) {
            let want = plain_sigmoid(*x);
            assert!((got - want).abs() < 1e-4, "σ̂({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn argmax_takes_the_first_maximum_per_segment() {
        let xs = [
            1.0, 5.0, -3.0, 5.0, 2.0, /* seg 2 */ -1.0, -2.0, -0.5, -7.0, -0.5,
        ];
        let out = run(&xs, |e, x| {
            Box::pin(async move {
                let pay = x.mul_public(int(2));
                let (b, i, p) = argmax(e, &x, 2, 5, &[&pay]).await.unwrap();
                vec![b, i, p[0].clone()]
            })
        });
        assert!((out[0][0] - 5.0).abs() < 1e-5 && (out[0][1] + 0.5).abs() < 1e-5);
        assert_eq!(
            out[1].iter().map(|v| v.round()).collect::<Vec<_>>(),
            vec![1.0, 2.0]
        );
        // The payload (twice the value) at the winning index.
        assert!((out[2][0] - 10.0).abs() < 1e-5 && (out[2][1] + 1.0).abs() < 1e-5);
    }
}
