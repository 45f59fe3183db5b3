//! Three-seat (party 0, party 1, dealer) runs of every protocol over the in-memory mesh.

use std::future::Future;
use std::num::Wrapping;

use confide_mpc::engine::{Names, Seat};
use confide_mpc::share::share;
use confide_mpc::sigmoid::{Spline, sigmoid};
use confide_mpc::{
    ChannelTransport, Engine, FixedPoint, Party, R64, SharedMat, SharedVec, memory_mesh,
};
use ndarray::{Array1, Array2};
use proptest::prelude::*;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

type E = Engine<'static, ChannelTransport>;

fn names() -> Names {
    Names {
        p0: "a".into(),
        p1: "b".into(),
        dealer: "d".into(),
    }
}

/// Runs `f(engine, seat index)` at the three seats concurrently; returns the outputs of
/// party 0, party 1 and the dealer.
async fn run3<F, Fut, O>(f: F) -> [O; 3]
where
    F: Fn(E, usize) -> Fut,
    Fut: Future<Output = O>,
{
    let mesh: Vec<&'static ChannelTransport> = memory_mesh(&["a", "b", "d"], 8)
        .into_iter()
        .map(|t| &*Box::leak(Box::new(t)))
        .collect();
    let fp = FixedPoint::default();
    let seat = |i: usize| {
        if i == 2 {
            Seat::Dealer
        } else {
            Seat::Party(Party::new(i).unwrap())
        }
    };
    let go = |i: usize| {
        let f = &f;
        let t = mesh[i];
        async move {
            let e = Engine::start(t, seat(i), names(), fp).await.unwrap();
            f(e, i).await
        }
    };
    let (a, b, d) = tokio::join!(go(0), go(1), go(2));
    [a, b, d]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn split(secret: &Array1<R64>, seed: u64) -> [SharedVec; 3] {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let (a, b) = share(secret, &mut rng);
    [a, b, SharedVec::zeros(ndarray::Ix1(secret.len()))]
}

fn reveal(out: &[SharedVec; 3]) -> Array1<R64> {
    confide_mpc::Shared::reconstruct(&out[0], &out[1]).unwrap()
}

fn enc(xs: &[f64]) -> Array1<R64> {
    Array1::from_vec(FixedPoint::default().encode_all(xs).unwrap())
}

#[test]
fn beaver_multiplication_is_exact_and_fixed_point_within_two_ulp() {
    let xs = [1.5, -2.25, 100.0, -0.001, 0.0, 7.0];
    let ys = [2.0, 3.5, -0.5, 1000.0, 5.0, -7.0];
    let (x, y) = (split(&enc(&xs), 1), split(&enc(&ys), 2));
    let out = rt().block_on(run3(|mut e, i| {
        let (x, y) = (x[i].clone(), y[i].clone());
        async move {
            let raw = e.mul(&x, &y).await.unwrap();
            let fixed = e.mul_fixed(&x, &y).await.unwrap();
            (raw, fixed)
        }
    }));
    let raw = reveal(&[out[0].0.clone(), out[1].0.clone(), out[2].0.clone()]);
    let ex = enc(&xs);
    let ey = enc(&ys);
    assert_eq!(raw, &ex * &ey);
    let fixed = reveal(&[out[0].1.clone(), out[1].1.clone(), out[2].1.clone()]);
    let fp = FixedPoint::default();
    for i in 0..xs.len() {
        let want = fp.decode(ex[i]) * fp.decode(ey[i]);
        assert!(
            (fp.decode(fixed[i]) - want).abs() <= 2.0 / fp.scale(),
            "{i}"
        );
    }
}

#[test]
fn matrix_multiplication_is_exact() {
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    let x = Array2::from_shape_fn((4, 3), |_| Wrapping(rng.next_u64()));
    let y = Array2::from_shape_fn((3, 5), |_| Wrapping(rng.next_u64()));
    let (x0, x1) = share(&x, &mut rng);
    let (y0, y1) = share(&y, &mut rng);
    let xs = [x0, x1, SharedMat::zeros(ndarray::Ix2(4, 3))];
    let ys = [y0, y1, SharedMat::zeros(ndarray::Ix2(3, 5))];
    let out = rt().block_on(run3(|mut e, i| {
        let (x, y) = (xs[i].clone(), ys[i].clone());
        async move { e.matmul(&x, &y).await.unwrap() }
    }));
    assert_eq!(
        confide_mpc::Shared::reconstruct(&out[0], &out[1]).unwrap(),
        x.dot(&y)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Dealer truncation: floor or floor + 1 for every |x| < 2^62 — no failure event.
    #[test]
    fn dealer_truncation_error_at_most_one_unit(
        xs in proptest::collection::vec(-(1i64 << 62)..(1i64 << 62), 1..16),
        bits in 1u32..40, seed in any::<u64>()
    ) {
        let secret: Array1<R64> = xs.iter().map(|&x| Wrapping(x as u64)).collect();
        let sh = split(&secret, seed);
        let out = rt().block_on(run3(|mut e, i| {
            let x = sh[i].clone();
            async move { e.trunc(&x, bits).await.unwrap() }
        }));
        let got = reveal(&out);
        for (x, g) in xs.iter().zip(got.iter()) {
            let exact = x >> bits;
            let g = g.0 as i64;
            prop_assert!(g == exact || g == exact + 1, "x={x} bits={bits} got={g}");
        }
    }

    /// Secure comparison: exact for all inputs within the encodable range.
    #[test]
    fn comparison_is_exact(xs in proptest::collection::vec(-1.0e6f64..1.0e6, 1..20), seed in any::<u64>()) {
        let thresholds = [-2.0, 0.0, 2.0, 1.0e5];
        let sh = split(&enc(&xs), seed);
        let out = rt().block_on(run3(|mut e, i| {
            let x = sh[i].clone();
            async move { e.ge_public(&x, &thresholds).await.unwrap() }
        }));
        let fp = FixedPoint::default();
        for (k, t) in thresholds.iter().enumerate() {
            let bits = confide_mpc::Shared::reconstruct(&out[0][k], &out[1][k]).unwrap();
            for (j, x) in xs.iter().enumerate() {
                let want = fp.decode(fp.encode(*x).unwrap()) >= *t;
                prop_assert_eq!(bits[j].0, want as u64, "x={} t={}", x, t);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Bit decomposition: every bit of every 64-bit secret, including edge words.
    #[test]
    fn bit_decomposition_is_exact(
        xs in proptest::collection::vec(any::<u64>(), 1..16), seed in any::<u64>()
    ) {
        let mut xs = xs;
        xs.extend([0, 1, u64::MAX, 1 << 63, (1 << 63) - 1]);
        let secret: Array1<R64> = xs.iter().map(|&x| Wrapping(x)).collect();
        let sh = split(&secret, seed);
        let out = rt().block_on(run3(|mut e, i| {
            let x = sh[i].clone();
            async move { e.bit_decompose(&x).await.unwrap() }
        }));
        let words = confide_mpc::BoolShares::reconstruct(&out[0], &out[1]).unwrap();
        prop_assert_eq!(words, xs);
    }

    /// Comparisons with powers of two: `[x ≥ 2^k]` for unsigned x, at every position,
    /// around the powers themselves and for fixed-point values of every magnitude.
    #[test]
    fn powers_of_two_ladder_is_exact(
        shifts in proptest::collection::vec((0u32..64, -2i64..=2), 1..12),
        wide in proptest::collection::vec(any::<u64>(), 0..6),
        seed in any::<u64>()
    ) {
        let mut xs: Vec<u64> = shifts
            .iter()
            .map(|&(k, d)| (1u64 << k).wrapping_add(d as u64))
            .collect();
        xs.extend(wide);
        xs.extend([0, 1, u64::MAX]);
        let ks: Vec<u32> = vec![0, 1, 5, 17, 18, 19, 32, 40, 62, 63];
        let secret: Array1<R64> = xs.iter().map(|&x| Wrapping(x)).collect();
        let sh = split(&secret, seed);
        let out = rt().block_on(run3(|mut e, i| {
            let x = sh[i].clone();
            let ks = ks.clone();
            async move { e.ge_powers_of_two(&x, &ks).await.unwrap() }
        }));
        prop_assert_eq!(out[0].len(), ks.len());
        for (j, k) in ks.iter().enumerate() {
            let bits = confide_mpc::Shared::reconstruct(&out[0][j], &out[1][j]).unwrap();
            for (x, b) in xs.iter().zip(bits.iter()) {
                prop_assert_eq!(b.0, u64::from(*x >= 1u64 << k), "x={:#x} k={}", x, k);
            }
        }
    }
}

#[test]
fn powers_of_two_ladder_rejects_positions_past_the_word() {
    let sh = split(&enc(&[1.0]), 1);
    let out = rt().block_on(run3(|mut e, i| {
        let x = sh[i].clone();
        async move { e.ge_powers_of_two(&x, &[64]).await.is_err() }
    }));
    assert!(out.iter().all(|&err| err));
}

#[test]
fn msb_edge_cases() {
    let xs: Vec<u64> = vec![
        0,
        1,
        u64::MAX,
        1 << 63,
        (1 << 63) - 1,
        1 << 62,
        12345,
        u64::MAX - 12345,
    ];
    let secret: Array1<R64> = xs.iter().map(|&x| Wrapping(x)).collect();
    for seed in 0..4 {
        let sh = split(&secret, seed);
        let out = rt().block_on(run3(|mut e, i| {
            let x = sh[i].clone();
            async move { e.msb(&x).await.unwrap() }
        }));
        let bits = confide_mpc::BoolShares::reconstruct(&out[0], &out[1]).unwrap();
        for (x, b) in xs.iter().zip(bits) {
            assert_eq!(b & 1, x >> 63, "x={x:#x}");
        }
    }
}

#[test]
fn splines_on_shares_match_plaintext() {
    let xs: Vec<f64> = (-80..=80).map(|i| i as f64 / 8.0).collect();
    let sh = split(&enc(&xs), 9);
    let (s3, s7, sp) = (Spline::seg3(), Spline::sigmoid7(), Spline::softplus8());
    let out = rt().block_on(run3(|mut e, i| {
        let x = sh[i].clone();
        let (s3, s7, sp) = (s3.clone(), s7.clone(), sp.clone());
        async move { e.splines(&x, &[&s3, &s7, &sp]).await.unwrap() }
    }));
    let fp = FixedPoint::default();
    for (k, s) in [&s3, &s7, &sp].iter().enumerate() {
        let v = confide_mpc::Shared::reconstruct(&out[0][k], &out[1][k]).unwrap();
        for (j, x) in xs.iter().enumerate() {
            let got = fp.decode(v[j]);
            assert!(
                (got - s.eval(*x)).abs() < 1e-4,
                "spline {k} x={x} got={got} want={}",
                s.eval(*x)
            );
        }
    }
    // And the accurate spline really is close to the sigmoid on shares.
    let v = confide_mpc::Shared::reconstruct(&out[0][1], &out[1][1]).unwrap();
    for (j, x) in xs.iter().enumerate() {
        assert!((fp.decode(v[j]) - sigmoid(*x)).abs() < 0.025);
    }
}

#[test]
fn masked_matrix_products_are_exact() {
    let (rows, cols) = (12usize, [3usize, 2usize]);
    let mut rng = ChaCha12Rng::seed_from_u64(11);
    let x0 = Array2::from_shape_fn((rows, cols[0]), |_| Wrapping(rng.next_u64() >> 40));
    let x1 = Array2::from_shape_fn((rows, cols[1]), |_| Wrapping(rng.next_u64() >> 40));
    let w: Array1<R64> = (0..5).map(|_| Wrapping(rng.next_u64())).collect();
    let ev: Array1<R64> = (0..4).map(|_| Wrapping(rng.next_u64())).collect();
    let batch = vec![7usize, 0, 11, 3];
    let (wsh, esh) = (split(&w, 1), split(&ev, 2));
    let own = [Some(x0.clone()), Some(x1.clone()), None];
    let out = rt().block_on(run3(|mut e, i| {
        let (w, ev, own, batch) = (
            wsh[i].clone(),
            esh[i].clone(),
            own[i].clone(),
            batch.clone(),
        );
        async move {
            let m = e.mask_matrix(own.as_ref(), rows, cols).await.unwrap();
            let mut outs = Vec::new();
            for _ in 0..2 {
                // the cache is reused: same mask, fresh per-call randomness
                outs.push(e.masked_mul_vec(&m, &batch, &w).await.unwrap());
                outs.push(e.masked_tmul_vec(&m, &batch, &ev).await.unwrap());
            }
            outs
        }
    }));
    let mut full = Array2::from_elem((rows, 5), Wrapping(0u64));
    full.slice_axis_mut(ndarray::Axis(1), ndarray::Slice::from(..3))
        .assign(&x0);
    full.slice_axis_mut(ndarray::Axis(1), ndarray::Slice::from(3..))
        .assign(&x1);
    let xb = full.select(ndarray::Axis(0), &batch);
    for (k, (s0, s1)) in out[0].iter().zip(&out[1]).enumerate() {
        let got = confide_mpc::Shared::reconstruct(s0, s1).unwrap();
        if k % 2 == 0 {
            assert_eq!(got, xb.dot(&w));
        } else {
            assert_eq!(got, xb.t().dot(&ev));
        }
    }
}

/// A 0/1 matrix of 70 rows (3 columns of party 0, then 2 of party 1), three vectors and
/// their shares.
fn owned_case(seed: u64) -> (Array2<R64>, Vec<Array1<R64>>, Vec<[SharedVec; 3]>) {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let x = Array2::from_shape_fn((70, 5), |_| Wrapping(rng.next_u64() & 1));
    let es: Vec<Array1<R64>> = (0..3)
        .map(|_| (0..70).map(|_| Wrapping(rng.next_u64())).collect())
        .collect();
    let shares = es
        .iter()
        .enumerate()
        .map(|(j, e)| split(e, seed + 8 + j as u64))
        .collect();
    (x, es, shares)
}

/// Seat `i`'s own columns of an [`owned_case`] matrix.
fn own_columns(x: &Array2<R64>, i: usize) -> Array2<R64> {
    let (from, c) = if i == 0 { (0, 3) } else { (3, 2) };
    x.slice_axis(ndarray::Axis(1), ndarray::Slice::from(from..from + c))
        .to_owned()
}

/// `X_pᵀ·B`, densely, as the caller's own product.
fn dense_tmul(own_x: &Array2<R64>, b: &[R64], l: usize) -> Vec<R64> {
    let b = Array2::from_shape_vec((own_x.nrows(), l), b.to_vec()).unwrap();
    own_x.t().dot(&b).iter().copied().collect()
}

/// Row `r` of the own columns.
fn copy_row(own_x: &Array2<R64>, r: usize, out: &mut [R64]) {
    out.iter_mut().zip(own_x.row(r)).for_each(|(o, v)| *o = *v);
}

/// `Xᵀ·B` when each owner multiplies by its own columns in the clear: exact, with the
/// whole masked matrix and with the streamed one that keeps only the other's columns.
#[test]
fn owned_products_are_exact() {
    let (rows, cols) = (70usize, [3usize, 2usize]);
    let (x, es, shares) = owned_case(12);
    let out = rt().block_on(run3(|mut e, i| {
        let own_x = own_columns(&x, i);
        let mine: Vec<SharedVec> = shares.iter().map(|s| s[i].clone()).collect();
        async move {
            let product = |b: &[R64], l: usize| dense_tmul(&own_x, b, l);
            let row = |r: usize, out: &mut [R64]| copy_row(&own_x, r, out);
            let refs: Vec<&SharedVec> = mine.iter().collect();
            let full = e
                .mask_matrix((i < 2).then_some(&own_x), rows, cols)
                .await
                .unwrap();
            let a = e.masked_tmul_owned(&full, &refs, &product).await.unwrap();
            let rows_fn: confide_mpc::OwnRows<'_> = &row;
            let lite = e
                .mask_matrix_owned((i < 2).then_some(rows_fn), rows, cols)
                .await
                .unwrap();
            let b = e.masked_tmul_owned(&lite, &refs, &product).await.unwrap();
            // The streamed matrix serves the owned product only.
            let refused = i < 2 && e.masked_tmul_all(&lite, &refs).await.is_err();
            (a, b, refused)
        }
    }));
    for (j, ev) in es.iter().enumerate() {
        let want = x.t().dot(ev);
        for got in [&out[0].0[j], &out[0].1[j]] {
            let other = if std::ptr::eq(got, &out[0].0[j]) {
                &out[1].0[j]
            } else {
                &out[1].1[j]
            };
            assert_eq!(
                confide_mpc::Shared::reconstruct(got, other).unwrap(),
                want,
                "vector {j}"
            );
        }
    }
    assert!(out[0].2 && out[1].2);
}

/// Owned products planned ahead ([`Engine::plan_owned`]: the masks and dense products
/// of several calls computed in the background as one batch) are exact, each call takes
/// fresh columns of its batch (the same input twice gives different shares), and a call
/// that does not match the plan is refused.
#[test]
fn planned_owned_products_are_exact_and_fresh() {
    let (rows, cols) = (70usize, [3usize, 2usize]);
    let (x, es, shares) = owned_case(13);
    let out = rt().block_on(run3(|mut e, i| {
        let own_x = own_columns(&x, i);
        let v: Vec<SharedVec> = shares.iter().map(|s| s[i].clone()).collect();
        async move {
            let product = |b: &[R64], l: usize| dense_tmul(&own_x, b, l);
            let row = |r: usize, out: &mut [R64]| copy_row(&own_x, r, out);
            let rows_fn: confide_mpc::OwnRows<'_> = &row;
            let m = e
                .mask_matrix_owned((i < 2).then_some(rows_fn), rows, cols)
                .await
                .unwrap();
            e.plan_owned(&m, &[2, 1]).unwrap();
            e.plan_owned(&m, &[1, 1]).unwrap();
            assert_eq!(e.owned_plans(), (2, 2));
            let mut got = Vec::new();
            for call in [vec![&v[0], &v[1]], vec![&v[2]], vec![&v[0]], vec![&v[0]]] {
                got.extend(e.masked_tmul_owned(&m, &call, &product).await.unwrap());
            }
            assert_eq!(e.owned_plans(), (2, 0));
            // Planned for one vector, called with two: refused at every seat.
            e.plan_owned(&m, &[1]).unwrap();
            let refused = e
                .masked_tmul_owned(&m, &[&v[0], &v[1]], &product)
                .await
                .is_err();
            // The refused call left its plan in place: a call of one vector takes it.
            got.extend(e.masked_tmul_owned(&m, &[&v[1]], &product).await.unwrap());
            (got, refused)
        }
    }));
    let order = [0, 1, 2, 0, 0];
    for (k, &j) in order.iter().enumerate() {
        let want = x.t().dot(&es[j]);
        let got = confide_mpc::Shared::reconstruct(&out[0].0[k], &out[1].0[k]).unwrap();
        assert_eq!(got, want, "call output {k}");
    }
    let last = confide_mpc::Shared::reconstruct(&out[0].0[5], &out[1].0[5]).unwrap();
    assert_eq!(last, x.t().dot(&es[1]));
    // The same input in two calls of one batch: fresh masks, different shares.
    assert_ne!(out[0].0[3].as_slice(), out[0].0[4].as_slice());
    assert!(out[0].1 && out[1].1 && out[2].1);
}

/// Every `x_a ⊙ y_i` of an outer product is the exact elementwise product.
#[test]
fn outer_products_are_exact() {
    let mut rng = ChaCha12Rng::seed_from_u64(14);
    let vs: Vec<Array1<R64>> = (0..5)
        .map(|_| (0..33).map(|_| Wrapping(rng.next_u64())).collect())
        .collect();
    let shares: Vec<[SharedVec; 3]> = vs
        .iter()
        .enumerate()
        .map(|(j, v)| split(v, 40 + j as u64))
        .collect();
    let out = rt().block_on(run3(|mut e, i| {
        let v: Vec<SharedVec> = shares.iter().map(|s| s[i].clone()).collect();
        async move {
            e.mul_outer(&[&v[0], &v[1]], &[&v[2], &v[3], &v[4]])
                .await
                .unwrap()
        }
    }));
    for a in 0..2 {
        for y in 0..3 {
            let got = confide_mpc::Shared::reconstruct(&out[0][a * 3 + y], &out[1][a * 3 + y]);
            assert_eq!(got.unwrap(), &vs[a] * &vs[2 + y], "x{a} ⊙ y{y}");
        }
    }
}

/// Each scalar times its part of a vector, exactly (three parts of 11 elements).
#[test]
fn broadcast_products_are_exact() {
    let mut rng = ChaCha12Rng::seed_from_u64(15);
    let s: Array1<R64> = (0..3).map(|_| Wrapping(rng.next_u64())).collect();
    let v: Array1<R64> = (0..33).map(|_| Wrapping(rng.next_u64())).collect();
    let (ss, vs) = (split(&s, 50), split(&v, 51));
    let out = rt().block_on(run3(|mut e, i| {
        let (s, v) = (ss[i].clone(), vs[i].clone());
        async move { e.mul_broadcast(&s, &v).await.unwrap() }
    }));
    let want: Array1<R64> = (0..33).map(|i| s[i / 11] * v[i]).collect();
    assert_eq!(reveal(&out), want);
}

#[test]
fn open_to_reveals_only_to_the_named_party() {
    let secret = enc(&[4.0, 5.0]);
    let sh = split(&secret, 5);
    let out = rt().block_on(run3(|e, i| {
        let x = sh[i].clone();
        async move { e.open_to(&x, &[Party::P1]).await.unwrap() }
    }));
    assert!(out[0].is_none() && out[2].is_none());
    assert_eq!(out[1].clone().unwrap(), secret);
}
