//! A cache-friendly transposed product over Z_2^64 for the masked-matrix cache:
//! `A[:, from..from+c]ᵀ·B` for a row-major `n × stride` matrix `A` and a row-major `n × l`
//! matrix `B`, streaming `A` once. Rows are cut into blocks spread over rayon's threads
//! (each thread folds its blocks into one `c × l` partial result, then the partials are
//! added). Inside a block the result is updated chunk by chunk of columns (a chunk's
//! partial result stays in L1) with four rows of `A` per pass.

use rayon::prelude::*;

use crate::ring::{R64, ZERO};

/// Rows per parallel block.
const BLOCK: usize = 256;

/// `Aᵀ·B` (row-major `c × l`) for a row-major `n × c` matrix `A`. `a.len()` must be `n·c`
/// and `b.len()` `n·l`.
pub(super) fn tmul(a: &[R64], c: usize, b: &[R64], l: usize) -> Vec<R64> {
    tmul_cols(a, c, 0, c, b, l)
}

/// `A[:, from..from+c]ᵀ·B` (row-major `c × l`) for a row-major `n × stride` matrix `A`;
/// zeros when the shapes do not fit.
pub(super) fn tmul_cols(
    a: &[R64],
    stride: usize,
    from: usize,
    c: usize,
    b: &[R64],
    l: usize,
) -> Vec<R64> {
    let n = a.len().checked_div(stride).unwrap_or(0);
    if c == 0 || l == 0 || n == 0 || b.len() != n * l || from + c > stride {
        return vec![ZERO; c * l];
    }
    let add = |mut x: Vec<R64>, y: Vec<R64>| {
        x.iter_mut().zip(&y).for_each(|(p, q)| *p += q);
        x
    };
    a.par_chunks(BLOCK * stride)
        .zip(b.par_chunks(BLOCK * l))
        .fold(
            || vec![ZERO; c * l],
            |mut acc, (ab, bb)| {
                block(ab, stride, from, c, bb, l, &mut acc);
                acc
            },
        )
        .reduce(|| vec![ZERO; c * l], add)
}

/// Adds one row block's `A[:, from..from+c]ᵀ·B` to `acc`: column chunks whose slice of
/// `acc` stays in L1, and inside a chunk four rows of `A` at a time (four independent
/// products per result word, every row of `A` read sequentially).
fn block(a: &[R64], stride: usize, from: usize, c: usize, b: &[R64], l: usize, acc: &mut [R64]) {
    // ≤ 16 KiB of `acc` per chunk.
    let chunk = (2048 / l).max(8);
    let rows: Vec<(&[R64], &[R64])> = a
        .chunks_exact(stride)
        .zip(b.chunks_exact(l))
        .map(|(ar, br)| (&ar[from..from + c], br))
        .collect();
    let mut c0 = 0;
    while c0 < c {
        let c1 = (c0 + chunk).min(c);
        let out = &mut acc[c0 * l..c1 * l];
        let mut quads = rows.chunks_exact(4);
        for q in &mut quads {
            let [(a0, b0), (a1, b1), (a2, b2), (a3, b3)] = [q[0], q[1], q[2], q[3]];
            let cols = a0[c0..c1]
                .iter()
                .zip(&a1[c0..c1])
                .zip(&a2[c0..c1])
                .zip(&a3[c0..c1]);
            for ((((x0, x1), x2), x3), o) in cols.zip(out.chunks_exact_mut(l)) {
                let (x0, x1, x2, x3) = (x0.0, x1.0, x2.0, x3.0);
                let bs = b0.iter().zip(b1).zip(b2).zip(b3);
                for (o, (((y0, y1), y2), y3)) in o.iter_mut().zip(bs) {
                    let s = x0
                        .wrapping_mul(y0.0)
                        .wrapping_add(x1.wrapping_mul(y1.0))
                        .wrapping_add(x2.wrapping_mul(y2.0))
                        .wrapping_add(x3.wrapping_mul(y3.0));
                    o.0 = o.0.wrapping_add(s);
                }
            }
        }
        for &(ar, br) in quads.remainder() {
            for (x, o) in ar[c0..c1].iter().zip(out.chunks_exact_mut(l)) {
                for (o, y) in o.iter_mut().zip(br) {
                    o.0 = o.0.wrapping_add(x.0.wrapping_mul(y.0));
                }
            }
        }
        c0 = c1;
    }
}

#[cfg(test)]
mod tests {
    use std::num::Wrapping;

    use super::*;

    fn naive(a: &[R64], stride: usize, from: usize, c: usize, b: &[R64], l: usize) -> Vec<R64> {
        let n = a.len() / stride;
        let mut out = vec![ZERO; c * l];
        for j in 0..c {
            for k in 0..l {
                out[j * l + k] = (0..n)
                    .map(|i| a[i * stride + from + j] * b[i * l + k])
                    .sum();
            }
        }
        out
    }

    #[test]
    fn matches_the_naive_product() {
        let (n, c, l) = (1100, 7, 3);
        let a: Vec<R64> = (0..n * c)
            .map(|i| Wrapping((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let b: Vec<R64> = (0..n * l)
            .map(|i| Wrapping((i as u64) ^ 0xdead_beef_0000_0001))
            .collect();
        assert_eq!(tmul(&a, c, &b, l), naive(&a, c, 0, c, &b, l));
        assert_eq!(tmul(&[], 0, &b, l), vec![]);
    }

    #[test]
    fn every_tile_shape_and_column_range_matches_the_naive_product() {
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Wrapping(x)
        };
        for (n, stride, from, c) in [(1, 1, 0, 1), (65, 9, 2, 5), (200, 8, 0, 8), (130, 11, 3, 7)] {
            for l in 1..=9 {
                let a: Vec<R64> = (0..n * stride).map(|_| next()).collect();
                let b: Vec<R64> = (0..n * l).map(|_| next()).collect();
                assert_eq!(
                    tmul_cols(&a, stride, from, c, &b, l),
                    naive(&a, stride, from, c, &b, l),
                    "n {n} stride {stride} from {from} c {c} l {l}"
                );
            }
        }
        // Shapes that do not fit give zeros, not a panic.
        assert_eq!(tmul_cols(&[ZERO; 6], 3, 2, 2, &[ZERO; 2], 1), vec![ZERO; 2]);
    }

    /// Throughput of the kernel at the boosted trees' size (`--ignored`, release build).
    /// Ignored because it is a measurement, not a check: it allocates a 1.2 GB matrix,
    /// prints G mul-add/s and asserts nothing (correctness is
    /// `matches_the_naive_product` and `every_tile_shape_and_column_range_matches_the_naive_product` above; figures go to BENCHMARKS.md).
    #[test]
    #[ignore = "a throughput measurement (1.2 GB, prints figures, asserts nothing)"]
    fn throughput() {
        let (n, stride, c) = (100_000, 1550, 775);
        let a: Vec<R64> = (0..n * stride).map(|i| Wrapping(i as u64 * 77)).collect();
        for l in [2usize, 4, 16] {
            let b: Vec<R64> = (0..n * l).map(|i| Wrapping(i as u64 * 31)).collect();
            let t = std::time::Instant::now();
            let out = tmul_cols(&a, stride, 775, c, &b, l);
            let s = t.elapsed().as_secs_f64();
            println!(
                "l {l}: {s:.3} s, {:.2} G mul-add/s ({})",
                (n * c * l) as f64 / s / 1e9,
                out[0]
            );
        }
    }
}
