//! Plaintext reference: the public batch schedule, f64 logistic regression trained the
//! same way as the secure one, AUC, and a seeded credit-like data generator.

use ndarray::{Array1, Array2, Axis};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

use crate::table::Table;

/// The public row order of `epoch`: a Fisher–Yates shuffle seeded by the job seed.
/// Both computing parties and the dealer derive the same order.
pub fn batch_order(seed: u64, epoch: usize, rows: usize) -> Vec<usize> {
    let mut rng =
        ChaCha12Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..rows).collect();
    for i in (1..rows).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Area under the ROC curve (ties count one half). `None` if a class is empty.
pub fn auc(scores: &[f64], labels: &[f64]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut pos) = (0.0, 0.0);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] == 1.0 {
                rank_sum += avg_rank;
                pos += 1.0;
            }
        }
        i = j + 1;
    }
    let neg = scores.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Plain mini-batch SGD logistic regression on standardized `x` (no intercept column;
/// one is added), same schedule and update as the secure protocol, exact sigmoid.
/// Returns `(intercept, weights)` in standardized units.
pub fn train_plain(
    x: &Array2<f64>,
    y: &[f64],
    epochs: usize,
    batch: usize,
    lr: f64,
    l2: f64,
    seed: u64,
) -> (f64, Array1<f64>) {
    let (n, d) = x.dim();
    let mut w = Array1::<f64>::zeros(d);
    let mut b = 0.0;
    for epoch in 0..epochs {
        let order = batch_order(seed, epoch, n);
        for rows in order.chunks(batch.max(1)) {
            let xb = x.select(Axis(0), rows);
            let z = xb.dot(&w) + b;
            let e: Array1<f64> = z
                .iter()
                .zip(rows)
                .map(|(z, &r)| confide_mpc::sigmoid::sigmoid(*z) - y[r])
                .collect();
            let g = xb.t().dot(&e);
            let step = lr / rows.len() as f64;
            b -= step * e.sum();
            w = w * (1.0 - lr * l2) - g * step;
        }
    }
    (b, w)
}

fn normal(rng: &mut ChaCha12Rng) -> f64 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A seeded credit-like vertical data set: party A (a bank: income, age, utilisation,
/// late payments, … and the default label) and party B (a platform: activity features),
/// `rows` customers with IDs `c0000001…`, shared by both. Features mix scales (incomes in
/// the tens of thousands, counts, ratios); the label follows a logistic model of a few
/// features from each side, so both parties' columns matter.
pub fn generate_credit(
    rows: usize,
    features_a: usize,
    features_b: usize,
    seed: u64,
) -> (Table, Table) {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let ids: Vec<String> = (1..=rows).map(|i| format!("c{i:07}")).collect();
    let scale = |j: usize| match j % 4 {
        0 => (30_000.0, 12_000.0), // amounts
        1 => (40.0, 12.0),         // ages / tenures
        2 => (0.3, 0.2),           // ratios
        _ => (2.0, 1.5),           // counts
    };
    let mut xa = Array2::<f64>::zeros((rows, features_a));
    let mut xb = Array2::<f64>::zeros((rows, features_b));
    let beta_a: Vec<f64> = (0..features_a)
        .map(|j| {
            if j < 6 {
                0.8 - 0.3 * j as f64
            } else {
                0.05 * normal(&mut rng)
            }
        })
        .collect();
    let beta_b: Vec<f64> = (0..features_b)
        .map(|j| {
            if j < 6 {
                0.6 - 0.25 * j as f64
            } else {
                0.05 * normal(&mut rng)
            }
        })
        .collect();
    let mut label = Vec::with_capacity(rows);
    for i in 0..rows {
        let shared = normal(&mut rng);
        let mut z = -1.2;
        for (j, bj) in beta_a.iter().enumerate() {
            let s = 0.8 * normal(&mut rng) + 0.2 * shared;
            let (m, sd) = scale(j);
            xa[[i, j]] = ((m + sd * s) * 100.0).round() / 100.0;
            z += bj * s;
        }
        for (j, bj) in beta_b.iter().enumerate() {
            let s = 0.8 * normal(&mut rng) + 0.2 * shared;
            let (m, sd) = scale(j + 1);
            xb[[i, j]] = ((m + sd * s) * 100.0).round() / 100.0;
            z += bj * s;
        }
        let p = confide_mpc::sigmoid::sigmoid(z);
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        label.push(if u < p { 1.0 } else { 0.0 });
    }
    let a = Table {
        ids: ids.clone(),
        feature_names: (0..features_a).map(|j| format!("bank_{j}")).collect(),
        features: xa,
        label: Some(label),
    };
    let b = Table {
        ids,
        feature_names: (0..features_b).map(|j| format!("platform_{j}")).collect(),
        features: xb,
        label: None,
    };
    (a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_basics() {
        assert_eq!(auc(&[0.1, 0.2, 0.3, 0.4], &[0.0, 0.0, 1.0, 1.0]), Some(1.0));
        assert_eq!(auc(&[0.4, 0.3, 0.2, 0.1], &[0.0, 0.0, 1.0, 1.0]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5], &[0.0, 1.0]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.5], &[1.0, 1.0]), None);
    }

    #[test]
    fn batch_order_is_a_deterministic_permutation() {
        let a = batch_order(5, 1, 100);
        assert_eq!(a, batch_order(5, 1, 100));
        assert_ne!(a, batch_order(5, 2, 100));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn generator_is_seeded_and_learnable() {
        let (a, b) = generate_credit(2000, 6, 5, 1);
        assert_eq!(generate_credit(2000, 6, 5, 1).0, a);
        assert_eq!(a.ids, b.ids);
        let y = a.label.clone().unwrap();
        let rate = y.iter().sum::<f64>() / y.len() as f64;
        assert!(rate > 0.1 && rate < 0.6, "{rate}");
        let mut x = ndarray::concatenate(Axis(1), &[a.features.view(), b.features.view()]).unwrap();
        for mut c in x.axis_iter_mut(Axis(1)) {
            let m = c.mean().unwrap();
            let s = c.std(0.0);
            c.mapv_inplace(|v| (v - m) / s);
        }
        let (b0, w) = train_plain(&x, &y, 5, 64, 0.1, 0.0, 3);
        let scores: Vec<f64> = (x.dot(&w) + b0).to_vec();
        assert!(auc(&scores, &y).unwrap() > 0.7);
    }
}
