//! A cache-friendly transposed product over Z_2^64 for the masked-matrix cache:
//! `Aᵀ·B` for a row-major `n × c` matrix `A` and a row-major `n × l` matrix `B`, streaming
//! `A` once, in row blocks spread over rayon's threads (each block accumulates its own
//! `c × l` partial result, then the partials are added).

use rayon::prelude::*;

use crate::ring::{R64, ZERO};

/// Rows per parallel block.
const BLOCK: usize = 512;

/// `Aᵀ·B` (row-major `c × l`). `a.len()` must be `n·c` and `b.len()` `n·l`.
pub(super) fn tmul(a: &[R64], c: usize, b: &[R64], l: usize) -> Vec<R64> {
    let n = a.len().checked_div(c).unwrap_or(0);
    if c == 0 || l == 0 || n == 0 || b.len() != n * l {
        return vec![ZERO; c * l];
    }
    let add = |mut x: Vec<R64>, y: Vec<R64>| {
        x.iter_mut().zip(&y).for_each(|(p, q)| *p += q);
        x
    };
    a.par_chunks(BLOCK * c)
        .zip(b.par_chunks(BLOCK * l))
        .map(|(ab, bb)| {
            let mut acc = vec![ZERO; c * l];
            for (arow, brow) in ab.chunks_exact(c).zip(bb.chunks_exact(l)) {
                for (&av, out) in arow.iter().zip(acc.chunks_exact_mut(l)) {
                    for (o, &bv) in out.iter_mut().zip(brow) {
                        *o += av * bv;
                    }
                }
            }
            acc
        })
        .reduce(|| vec![ZERO; c * l], add)
}

#[cfg(test)]
mod tests {
    use std::num::Wrapping;

    use super::*;

    #[test]
    fn matches_the_naive_product() {
        let (n, c, l) = (1100, 7, 3);
        let a: Vec<R64> = (0..n * c)
            .map(|i| Wrapping((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        let b: Vec<R64> = (0..n * l)
            .map(|i| Wrapping((i as u64) ^ 0xdead_beef_0000_0001))
            .collect();
        let got = tmul(&a, c, &b, l);
        for j in 0..c {
            for k in 0..l {
                let want: R64 = (0..n).map(|i| a[i * c + j] * b[i * l + k]).sum();
                assert_eq!(got[j * l + k], want);
            }
        }
        assert_eq!(tmul(&[], 0, &b, l), vec![]);
    }
}
