//! Plaintext reference: the public batch schedule, f64 logistic regression trained the
//! same way as the secure one (the twin of [`crate::train`]), AUC, and a seeded
//! credit-like data generator.

use confide_mpc::Spline;
use confide_mpc::sigmoid::{sigmoid, softplus};
use ndarray::{Array1, Array2, Axis};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

pub use crate::optim::batch_order;
use crate::optim::{
    ADAM_BETA1, ADAM_CLIP, AUC_RANGE, Fit, MOMENTUM, Optimizer, Penalty, Schedule, SigmoidKind,
    Stop, adam_beta2, adam_factors, auc_thresholds, binned_auc, class_weights,
};
use crate::table::Table;

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

/// The plaintext run's result: the model in standardized units and its trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainFit {
    /// Intercept.
    pub intercept: f64,
    /// Weights of the columns of `x`.
    pub weights: Array1<f64>,
    /// The loss the stopping rule saw after each epoch.
    pub loss_per_epoch: Vec<f64>,
    /// Validation AUC per epoch (with a validation split).
    pub validation_auc_per_epoch: Vec<f64>,
    /// Steps taken.
    pub steps: usize,
    /// Why training ended.
    pub stop: Stop,
}

/// How the plaintext twin evaluates the sigmoid, the loss and the validation AUC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Twin {
    /// Exact sigmoid and softplus, exact validation AUC.
    Exact,
    /// The secure run's splines and its binned validation AUC with this many bins, so
    /// the trajectory matches the secure one up to fixed-point error.
    Secure(SigmoidKind, usize),
}

/// Plaintext logistic regression on standardized `x` (no intercept column; one is
/// added) with the secure protocol's optimizer, batch schedule and stopping rule
/// ([`crate::optim`]) on the rows [`Fit::split`] picks for training.
pub fn train_plain(x: &Array2<f64>, y: &[f64], fit: &Fit, twin: Twin) -> PlainFit {
    let (train, val) = fit
        .split(x.nrows())
        .unwrap_or_else(|_| ((0..x.nrows()).collect(), Vec::new()));
    let n = train.len();
    let xi = ndarray::concatenate(Axis(1), &[Array2::ones((x.nrows(), 1)).view(), x.view()])
        .expect("same row count");
    let d = xi.ncols();
    let y_train: Vec<f64> = train.iter().map(|&r| y[r]).collect();
    let cw = class_weights(fit.class_weight, &y_train);
    let row_weight = |i: usize| cw.as_ref().map_or(1.0, |c| c[i]);
    let (sig, sp): (Curve, Curve) = match twin {
        Twin::Exact => (Box::new(sigmoid), Box::new(softplus)),
        Twin::Secure(kind, _) => {
            let (s, p) = (kind.spline(), Spline::softplus8());
            (Box::new(move |z| s.eval(z)), Box::new(move |z| p.eval(z)))
        }
    };
    let lambda = fit.lambda(n);
    let (a, b) = fit.coefficients();
    let mut sched = Schedule::new(fit, n);
    let mut w = Array1::<f64>::zeros(d);
    let mut v = Array1::<f64>::zeros(d);
    // Adam's second moment and step count since the last restart.
    let (mut s2, mut t) = (Array1::<f64>::zeros(d), 0);
    let mut best = w.clone();
    let (mut losses, mut val_aucs, mut steps) = (Vec::new(), Vec::new(), 0);
    let batch = fit.batch_size.max(1);
    let mut epoch = 0;
    let stop = loop {
        let order = batch_order(fit.seed, epoch, n);
        let mut loss = 0.0;
        for chunk in order.chunks(batch) {
            let mut g = Array1::<f64>::zeros(d);
            for &i in chunk {
                let r = train[i];
                let z = xi.row(r).dot(&w);
                let c = row_weight(i);
                g.scaled_add(c * (sig(z) - y[r]), &xi.row(r));
                loss += c * (sp(z) - y[r] * z);
            }
            g /= chunk.len() as f64;
            if fit.penalty == Penalty::L2 {
                for j in 1..d {
                    g[j] += lambda * w[j];
                }
            }
            let step = sched.rate;
            if fit.optimizer == Optimizer::Adam {
                t += 1;
                g.mapv_inplace(|x| x.clamp(-ADAM_CLIP, ADAM_CLIP));
                v = &v * ADAM_BETA1 + &(&g * (1.0 - ADAM_BETA1));
                s2 = &s2 * adam_beta2() + &(&g * &g * (1.0 - adam_beta2()));
                let (a1, c2, eps) = adam_factors(t);
                let k = step * a1 * c2;
                for j in 0..d {
                    w[j] -= k * v[j] / (s2[j] + eps).sqrt();
                }
            } else {
                let next_v = &v * MOMENTUM + &g;
                w = &w - &((&g * a + &v * b) * step);
                v = next_v;
            }
            if fit.penalty == Penalty::L1 {
                let t = step * lambda;
                for j in 1..d {
                    w[j] -= w[j].clamp(-t, t);
                }
            }
            steps += 1;
        }
        let pen = match fit.penalty {
            Penalty::None => 0.0,
            Penalty::L2 => lambda / 2.0 * w.iter().skip(1).map(|v| v * v).sum::<f64>(),
            Penalty::L1 => lambda * w.iter().skip(1).map(|v| v.abs()).sum::<f64>(),
        };
        let loss = loss / n as f64 + pen;
        losses.push(loss);
        let val_auc = (!val.is_empty()).then(|| {
            let s: Vec<f64> = val.iter().map(|&r| xi.row(r).dot(&w)).collect();
            let l: Vec<f64> = val.iter().map(|&r| y[r]).collect();
            match twin {
                Twin::Exact => auc(&s, &l),
                Twin::Secure(_, bins) => binned_plain(&s, &l, bins),
            }
            .unwrap_or(0.5)
        });
        val_aucs.extend(val_auc);
        epoch += 1;
        let dec = sched.after_epoch(loss, val_auc);
        if dec.best {
            best = w.clone();
        }
        if dec.restart {
            v.fill(0.0);
            s2.fill(0.0);
            t = 0;
        }
        if let Some(s) = dec.stop {
            break s;
        }
    };
    if !val.is_empty() {
        w = best;
    }
    PlainFit {
        intercept: w[0],
        weights: w.iter().skip(1).copied().collect(),
        loss_per_epoch: losses,
        validation_auc_per_epoch: val_aucs,
        steps,
        stop,
    }
}

/// A real function of the twin (sigmoid or softplus, exact or spline).
type Curve = Box<dyn Fn(f64) -> f64>;

/// The binned AUC of plaintext scores, as the secure protocol computes it on shares.
fn binned_plain(scores: &[f64], labels: &[f64], bins: usize) -> Option<f64> {
    let th = auc_thresholds(bins, AUC_RANGE);
    let ge: Vec<f64> = th
        .iter()
        .map(|&t| scores.iter().filter(|&&s| s >= t).count() as f64)
        .collect();
    let pos_ge: Vec<f64> = th
        .iter()
        .map(|&t| {
            scores
                .iter()
                .zip(labels)
                .filter(|&(&s, &l)| s >= t && l == 1.0)
                .count() as f64
        })
        .collect();
    let pos = labels.iter().filter(|&&l| l == 1.0).count() as f64;
    binned_auc(&ge, &pos_ge, pos, scores.len() as f64)
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
        let fit = Fit {
            epochs: 5,
            batch_size: 64,
            learning_rate: Some(0.1),
            optimizer: crate::optim::Optimizer::Sgd,
            penalty: Penalty::None,
            seed: 3,
            ..Fit::default()
        };
        let p = train_plain(&x, &y, &fit, Twin::Exact);
        let scores: Vec<f64> = (x.dot(&p.weights) + p.intercept).to_vec();
        assert!(auc(&scores, &y).unwrap() > 0.7);
    }
}
