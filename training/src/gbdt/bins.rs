//! Local quantile binning: each owner bins its own columns; nothing here is sent.
//!
//! A column's non-missing values get at most `bins` bins cut at quantile thresholds
//! `t₀ < t₁ < … < t_{m−1}` (distinct values of the column): `bin(v) = #{k : t_k < v}`, so
//! `bin(v) ≤ k ⇔ v ≤ t_k`. Missing values (NaN) get their own bin `m + 1`. The split
//! candidates of the column are "bin ≤ k" for `k = 0..m` (threshold `t_k`) and, when the
//! column has missing values, "not missing" (`k = m`): missing values always go right.

use std::num::Wrapping;

use confide_mpc::R64;
use ndarray::{Array1, Array2};

/// Most bins per column.
pub const MAX_BINS: usize = 64;

/// The bins of one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnBins {
    /// Thresholds `t₀ < … < t_{m−1}` (left is `v ≤ t_k`).
    pub thresholds: Vec<f64>,
    /// The column had missing values at fit time (adds the "not missing" candidate).
    pub missing: bool,
}

impl ColumnBins {
    /// Fits at most `bins` bins on a column (NaN = missing).
    pub fn fit(col: impl Iterator<Item = f64>, bins: usize) -> Self {
        let mut missing = false;
        let mut v: Vec<f64> = col
            .filter(|x| {
                let nan = x.is_nan();
                missing |= nan;
                !nan
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let mut distinct = v.clone();
        distinct.dedup();
        let mut thresholds: Vec<f64> = if distinct.len() <= bins {
            distinct.clone()
        } else {
            (1..bins)
                .map(|i| v[(i * v.len()) / bins - 1].max(v[0]))
                .collect()
        };
        thresholds.dedup();
        // The largest value would put everything left: not a threshold.
        if let Some(&max) = distinct.last() {
            thresholds.retain(|&t| t < max);
        }
        Self {
            thresholds,
            missing,
        }
    }

    /// Split candidates of this column.
    pub fn candidates(&self) -> usize {
        self.thresholds.len() + usize::from(self.missing)
    }

    /// The bin of a value (`thresholds.len() + 1` for missing).
    pub fn bin(&self, v: f64) -> usize {
        if v.is_nan() {
            self.thresholds.len() + 1
        } else {
            self.thresholds.partition_point(|&t| t < v)
        }
    }

    /// The threshold of candidate `k` (`None` for "not missing").
    pub fn threshold(&self, k: usize) -> Option<f64> {
        self.thresholds.get(k).copied()
    }
}

/// True if `v` goes left at a split with threshold `t` (`None`: every non-missing value).
pub fn goes_left(v: f64, t: Option<f64>) -> bool {
    !v.is_nan() && t.is_none_or(|t| v <= t)
}

/// One party's binned columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    /// Bins per column.
    pub columns: Vec<ColumnBins>,
    /// Bin of each cell (rows × columns).
    pub bins: Array2<u8>,
    /// Offset of each column's first candidate in this party's candidate list.
    pub offsets: Vec<usize>,
}

impl Binned {
    /// Bins every column of `x` (NaN = missing) with at most `bins` bins.
    pub fn fit(x: &Array2<f64>, bins: usize) -> Self {
        let columns: Vec<ColumnBins> = x
            .columns()
            .into_iter()
            .map(|c| ColumnBins::fit(c.iter().copied(), bins))
            .collect();
        let bins = Array2::from_shape_fn(x.dim(), |(i, j)| columns[j].bin(x[(i, j)]) as u8);
        let mut offsets = Vec::with_capacity(columns.len());
        let mut acc = 0;
        for c in &columns {
            offsets.push(acc);
            acc += c.candidates();
        }
        Self {
            columns,
            bins,
            offsets,
        }
    }

    /// Split candidates of this party.
    pub fn candidates(&self) -> usize {
        self.columns.iter().map(ColumnBins::candidates).sum()
    }

    /// Column and bin of candidate `c` (`None` if out of range).
    pub fn locate(&self, c: usize) -> Option<(usize, usize)> {
        let j = self.offsets.partition_point(|&o| o <= c).checked_sub(1)?;
        let k = c - self.offsets[j];
        (k < self.columns[j].candidates()).then_some((j, k))
    }

    /// `[bin of row i in column j ≤ k]` for every row: who goes left at candidate (j, k).
    pub fn left(&self, j: usize, k: usize) -> Array1<u8> {
        self.bins.column(j).mapv(|b| u8::from(usize::from(b) <= k))
    }

    /// `Cᵀ·X` for the 0/1 matrix `C` of [`Self::cumulative`] and a row-major `rows × l`
    /// ring matrix `X`, row-major (`candidates × l`), without forming `C`: per column the
    /// sums of each bin, then running sums over the bins (`bin ≤ k`).
    pub fn tmul(&self, x: &[R64], l: usize) -> Vec<R64> {
        use rayon::prelude::*;
        let n = self.bins.nrows();
        if l == 0 || x.len() != n * l {
            return vec![Wrapping(0); self.candidates() * l];
        }
        let per_column: Vec<Vec<R64>> = (0..self.columns.len())
            .into_par_iter()
            .map(|j| {
                let c = self.columns[j].candidates();
                // Bins 0..=thresholds + 1 (the last one is missing).
                let nb = self.columns[j].thresholds.len() + 2;
                let mut sums = vec![Wrapping(0u64); nb * l];
                for (b, row) in self.bins.column(j).iter().zip(x.chunks_exact(l)) {
                    let at = usize::from(*b) * l;
                    if let Some(s) = sums.get_mut(at..at + l) {
                        s.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                    }
                }
                let mut out = Vec::with_capacity(c * l);
                let mut run = vec![Wrapping(0u64); l];
                for k in 0..c {
                    run.iter_mut()
                        .zip(&sums[k * l..(k + 1) * l])
                        .for_each(|(r, s)| *r += s);
                    out.extend_from_slice(&run);
                }
                out
            })
            .collect();
        per_column.concat()
    }

    /// Row `i` of [`Self::cumulative`] as ring integers (`candidates` words).
    pub fn fill_row(&self, i: usize, out: &mut [R64]) {
        let mut at = 0;
        for (j, c) in self.columns.iter().enumerate() {
            let b = self
                .bins
                .get((i, j))
                .map_or(usize::MAX, |&b| usize::from(b));
            for k in 0..c.candidates() {
                if let Some(o) = out.get_mut(at) {
                    *o = Wrapping(u64::from(b <= k));
                }
                at += 1;
            }
        }
    }

    /// The rows × candidates 0/1 matrix `[bin ≤ k]` (this party's histogram operator).
    pub fn cumulative(&self) -> Array2<u8> {
        let mut out = Array2::zeros((self.bins.nrows(), self.candidates()));
        for (j, c) in self.columns.iter().enumerate() {
            for k in 0..c.candidates() {
                out.column_mut(self.offsets[j] + k).assign(&self.left(j, k));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn few_distinct_values_get_one_bin_each_and_missing_its_own() {
        let c = ColumnBins::fit([3.0, 1.0, f64::NAN, 2.0, 1.0].into_iter(), 8);
        assert_eq!(c.thresholds, vec![1.0, 2.0]);
        assert!(c.missing);
        assert_eq!(c.candidates(), 3);
        assert_eq!([1.0, 2.0, 3.0, f64::NAN].map(|v| c.bin(v)), [0, 1, 2, 3]);
        let all_missing = ColumnBins::fit([f64::NAN; 4].into_iter(), 8);
        assert_eq!(all_missing.thresholds.len(), 0);
        assert_eq!(all_missing.candidates(), 1);
        assert_eq!(ColumnBins::fit([5.0; 4].into_iter(), 8).candidates(), 0);
    }

    proptest! {
        #[test]
        fn bins_respect_the_limit_and_the_left_rule(
            xs in proptest::collection::vec(prop_oneof![Just(f64::NAN), -1e3f64..1e3], 1..300),
            bins in 2usize..=MAX_BINS,
        ) {
            let c = ColumnBins::fit(xs.iter().copied(), bins);
            prop_assert!(c.thresholds.len() < bins);
            prop_assert!(c.thresholds.windows(2).all(|w| w[0] < w[1]));
            for &v in &xs {
                for k in 0..c.candidates() {
                    prop_assert_eq!(c.bin(v) <= k, goes_left(v, c.threshold(k)));
                }
            }
            let x = Array2::from_shape_vec((xs.len(), 1), xs.clone()).unwrap();
            let b = Binned::fit(&x, bins);
            let cum = b.cumulative();
            for cand in 0..b.candidates() {
                let (j, k) = b.locate(cand).unwrap();
                prop_assert_eq!(cum.column(cand).to_owned(), b.left(j, k));
            }
            prop_assert!(b.locate(b.candidates()).is_none());
            let mut row = vec![Wrapping(7u64); b.candidates()];
            for (i, want) in cum.rows().into_iter().enumerate() {
                b.fill_row(i, &mut row);
                prop_assert!(row.iter().zip(want).all(|(r, w)| r.0 == u64::from(*w)));
            }
            // The sparse product equals the product with the dense 0/1 matrix.
            for l in [1usize, 3] {
                let v: Vec<R64> = (0..xs.len() * l)
                    .map(|i| Wrapping((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                    .collect();
                let got = b.tmul(&v, l);
                prop_assert_eq!(got.len(), b.candidates() * l);
                for cand in 0..b.candidates() {
                    for j in 0..l {
                        let want: R64 = (0..xs.len())
                            .map(|i| Wrapping(u64::from(cum[[i, cand]])) * v[i * l + j])
                            .sum();
                        prop_assert_eq!(got[cand * l + j], want);
                    }
                }
            }
        }
    }
}
