//! The optimizer both trainers share: settings ([`Fit`]), the validation split, class
//! weights, the update rule of each [`Optimizer`] and the stopping rule ([`Schedule`]).
//!
//! The secure protocol ([`crate::train`]) and the plaintext twin ([`crate::train_plain`])
//! call the same functions here, so their trajectories differ only by fixed-point and
//! spline error.
//!
//! # Objective
//! Mean (optionally class-weighted) log-loss over the training rows plus a penalty on
//! the standardized weights (never the intercept) with scikit-learn's meaning of `C`:
//! `λ = 1 / (C · n)`, L2 `λ/2 · ‖w‖²`, L1 `λ · ‖w‖₁` (proximal step). With `C = 1`, L2
//! and standardized features this is `LogisticRegression(C=1.0)`'s objective.
//!
//! # Stopping rule
//! After each epoch the loss (data part: the mean over the epoch's batches at the weights
//! each batch saw; plus the penalty at the epoch's final weights) is compared with the
//! previous epoch's. An epoch that does not lower it by at least `tolerance` (relative)
//! is a *plateau*: the learning rate halves and the momentum restarts from zero. The
//! [`PLATEAUS`]-th plateau ends training; `epochs` is only a cap. With a validation split
//! the binned validation AUC is checked too: [`VALIDATION_PATIENCE`] epochs in a row
//! without a new best end training, and the weights of the best epoch are kept (of tied
//! epochs, the latest).

use confide_mpc::Spline;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::limits;

/// Binned AUCs use thresholds over z ∈ [−AUC_RANGE, AUC_RANGE].
pub const AUC_RANGE: f64 = 8.0;

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

/// Which sigmoid approximation training uses on shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigmoidKind {
    /// 0 / 0.5 + x/4 / 1 with cuts at ±2.
    Seg3,
    /// The 7-piece spline ([`Spline::sigmoid7`]).
    Spline7,
}

impl SigmoidKind {
    pub fn spline(self) -> Spline {
        match self {
            Self::Seg3 => Spline::seg3(),
            Self::Spline7 => Spline::sigmoid7(),
        }
    }
}

/// Momentum coefficient μ of [`Optimizer::Momentum`] and [`Optimizer::Nesterov`].
pub const MOMENTUM: f64 = 0.9;
/// Adam's first-moment decay β₁.
pub const ADAM_BETA1: f64 = 0.9;
/// Adam's second-moment decay is `β₂ = 1 − 2^−ADAM_BETA2_SHIFT` (≈ 0.99902 against the
/// usual 0.999): on shares the update `v ← v + (g² − v)·2⁻¹⁰` is one truncation, exact
/// in fixed point and with no public-constant product that could overflow the ring.
pub const ADAM_BETA2_SHIFT: u32 = 10;
/// Adam's ε, added to `v̂` inside the square root. A coordinate whose gradient is below
/// `√ε = 0.01` moves like SGD at rate `η/√ε` instead of being normalized; ε also bounds the
/// amplification of fixed-point rounding in `m` (one unit at 18 bits, 3.8·10⁻⁶, becomes at
/// most 4·10⁻⁴ of a full step). See `ACCURACY.md`.
pub const ADAM_EPS: f64 = 1e-4;
/// Adam clips each gradient coordinate to `±ADAM_CLIP` before the moments, so `v` stays
/// below `ADAM_CLIP²` = 4⁶ (the range of the shared inverse square root).
pub const ADAM_CLIP: f64 = 64.0;
/// Adam's automatic step size (the other optimizers use `min(1, √(B/n))`).
pub const ADAM_RATE: f64 = 0.1;

/// Adam's β₂.
pub fn adam_beta2() -> f64 {
    1.0 - 2f64.powi(-(ADAM_BETA2_SHIFT as i32))
}

/// Adam's public bias-correction factors after `t ≥ 1` steps:
/// `(1/(1−β₁ᵗ), √(1−β₂ᵗ), ε·(1−β₂ᵗ))`, so that
/// `η·m̂/√(v̂ + ε) = η · 1/(1−β₁ᵗ) · √(1−β₂ᵗ) · m / √(v + ε·(1−β₂ᵗ))`.
pub fn adam_factors(t: usize) -> (f64, f64, f64) {
    let t = t.min(i32::MAX as usize) as i32;
    let c2 = 1.0 - adam_beta2().powi(t);
    (1.0 / (1.0 - ADAM_BETA1.powi(t)), c2.sqrt(), ADAM_EPS * c2)
}

/// Plateaus (epochs without a relative improvement of `tolerance`) that end training.
pub const PLATEAUS: usize = 5;
/// Epochs in a row without a new best validation AUC that end training.
pub const VALIDATION_PATIENCE: usize = 3;
/// Fewest validation rows a split may have.
pub const MIN_VALIDATION_ROWS: usize = 10;

/// The update rule on the mean gradient `g` of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// `w ← w − η·g`.
    Sgd,
    /// Heavy ball: `v ← μv + g`, `w ← w − η·v`.
    Momentum,
    /// Nesterov (PyTorch form): `v ← μv + g`, `w ← w − η·(g + μv)`.
    Nesterov,
    /// Adam with ε inside the square root and a per-coordinate gradient clip:
    /// `g ← clamp(g, ±ADAM_CLIP)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
    /// `w ← w − η·m̂/√(v̂ + ε)` with the bias corrections `m̂ = m/(1−β₁ᵗ)`,
    /// `v̂ = v/(1−β₂ᵗ)` ([`ADAM_BETA1`], [`adam_beta2`], [`ADAM_EPS`], [`ADAM_CLIP`]).
    Adam,
}

/// The penalty on the standardized weights (the intercept is never penalized).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Penalty {
    /// No penalty (`C` is ignored).
    None,
    /// `λ/2 · ‖w‖²` with `λ = 1/(C·n)`.
    L2,
    /// `λ · ‖w‖₁` with `λ = 1/(C·n)`, by a proximal (soft-threshold) step.
    L1,
}

/// Row weights of the log-loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// Every row weighs 1.
    None,
    /// scikit-learn's `balanced`: a row of class k weighs `n / (2 · n_k)`.
    Balanced,
}

macro_rules! named_enum {
    ($t:ty, $what:literal, $($v:ident => $s:literal),+) => {
        impl $t {
            /// The option value's name.
            pub fn name(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(Self::$v),)+
                    _ => Err(format!(
                        concat!($what, " must be one of {}, got `{}`"),
                        [$($s),+].join(", "),
                        s
                    )),
                }
            }
        }
    };
}
named_enum!(Optimizer, "optimizer", Sgd => "sgd", Momentum => "momentum", Nesterov => "nesterov", Adam => "adam");
named_enum!(Penalty, "penalty", None => "none", L2 => "l2", L1 => "l1");
named_enum!(ClassWeight, "class weight", None => "none", Balanced => "balanced");

/// The optimization settings of a training job (identical at every seat).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Most passes over the training rows (a cap: the stopping rule usually ends sooner).
    pub epochs: usize,
    /// Rows per step; a batch at least as large as the data is one full-batch step.
    pub batch_size: usize,
    /// Step size η; `None`: `min(1, √(B/n))` for batch `B` and `n` training rows.
    pub learning_rate: Option<f64>,
    /// Update rule.
    pub optimizer: Optimizer,
    /// Penalty on the standardized weights.
    pub penalty: Penalty,
    /// Inverse penalty strength, as scikit-learn's `C` (λ = 1/(C·n)).
    pub c: f64,
    /// Row weights.
    pub class_weight: ClassWeight,
    /// Relative loss improvement an epoch must reach not to count as a plateau.
    pub tolerance: f64,
    /// Fraction of the common rows held out for early stopping (0: none).
    pub validation: f64,
    /// Public job seed of the batch order and the validation split.
    pub seed: u64,
}

impl Default for Fit {
    /// Nesterov, L2 with `C = 1`, automatic step size, batch 1,024, tolerance 3·10⁻⁵,
    /// at most 200 epochs, no validation split, seed 1.
    fn default() -> Self {
        Self {
            epochs: 200,
            batch_size: 1024,
            learning_rate: None,
            optimizer: Optimizer::Nesterov,
            penalty: Penalty::L2,
            c: 1.0,
            class_weight: ClassWeight::None,
            tolerance: 3e-5,
            validation: 0.0,
            seed: 1,
        }
    }
}

impl Fit {
    /// Checks every range; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        limits::epochs(self.epochs)?;
        limits::batch_size(self.batch_size)?;
        if let Some(lr) = self.learning_rate {
            limits::learning_rate(lr)?;
            if self.optimizer == Optimizer::Adam && lr > 1.0 {
                // Adam moves each weight by about η per step; this also bounds the
                // shared step η·m̂/√(v̂+ε) inside the fixed-point ring.
                return Err(format!("Adam's learning rate must be at most 1, got {lr}"));
            }
        }
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(format!("C must be a positive number, got {}", self.c));
        }
        if !(0.0..0.1).contains(&self.tolerance) {
            return Err(format!(
                "tolerance must be in [0, 0.1), got {}",
                self.tolerance
            ));
        }
        if !(0.0..=0.5).contains(&self.validation) {
            return Err(format!(
                "validation must be in [0, 0.5], got {}",
                self.validation
            ));
        }
        Ok(())
    }

    /// The public split of `n` common rows into (training rows, validation rows), both
    /// ascending. Without validation every row trains.
    pub fn split(&self, n: usize) -> Result<(Vec<usize>, Vec<usize>), String> {
        if self.validation == 0.0 {
            return Ok(((0..n).collect(), Vec::new()));
        }
        let k = (self.validation * n as f64).round() as usize;
        if k < MIN_VALIDATION_ROWS || n - k < MIN_VALIDATION_ROWS {
            return Err(format!(
                "a validation split of {} leaves {k} of {n} rows for validation (at least {MIN_VALIDATION_ROWS} needed on each side)",
                self.validation
            ));
        }
        // A shuffle tagged apart from every epoch's batch order.
        let order = batch_order(self.seed ^ 0x5641_4C49_4441_5445, usize::MAX, n);
        let mut val = order[..k].to_vec();
        let mut train = order[k..].to_vec();
        val.sort_unstable();
        train.sort_unstable();
        Ok((train, val))
    }

    /// The initial step size for `n` training rows: `learning_rate`, else [`ADAM_RATE`]
    /// for Adam and `min(1, √(B/n))` for batch `B` otherwise.
    pub fn initial_rate(&self, n: usize) -> f64 {
        self.learning_rate.unwrap_or_else(|| {
            if self.optimizer == Optimizer::Adam {
                return ADAM_RATE;
            }
            let b = self.batch_size.min(n.max(1)) as f64;
            (b / n.max(1) as f64).sqrt().min(1.0)
        })
    }

    /// λ for `n` training rows (0 without a penalty).
    pub fn lambda(&self, n: usize) -> f64 {
        match self.penalty {
            Penalty::None => 0.0,
            _ => 1.0 / (self.c * n.max(1) as f64),
        }
    }

    /// The step's coefficients `(a, b)`: `w ← w − η·(a·g + b·v_old)` and
    /// `v ← μ·v_old + g`, which is each rule above written in the old momentum (Adam
    /// has its own update and no such coefficients).
    pub fn coefficients(&self) -> (f64, f64) {
        let mu = MOMENTUM;
        match self.optimizer {
            Optimizer::Sgd | Optimizer::Adam => (1.0, 0.0),
            Optimizer::Momentum => (1.0, mu),
            Optimizer::Nesterov => (1.0 + mu, mu * mu),
        }
    }
}

/// Row weights for labels `y` (0/1) under `cw`; `None` when every row weighs 1.
pub fn class_weights(cw: ClassWeight, y: &[f64]) -> Option<Vec<f64>> {
    match cw {
        ClassWeight::None => None,
        ClassWeight::Balanced => {
            let n = y.len() as f64;
            let pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
            let w1 = if pos > 0.0 { n / (2.0 * pos) } else { 1.0 };
            let w0 = if pos < n { n / (2.0 * (n - pos)) } else { 1.0 };
            Some(y.iter().map(|&v| if v == 1.0 { w1 } else { w0 }).collect())
        }
    }
}

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// The loss stopped improving ([`PLATEAUS`] plateaus).
    Converged,
    /// The validation AUC stopped improving ([`VALIDATION_PATIENCE`] epochs).
    Validation,
    /// The epoch cap was reached.
    Cap,
}

/// What the stopping rule decided after an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// End training now (with this reason).
    pub stop: Option<Stop>,
    /// Reset the momentum to zero before the next epoch.
    pub restart: bool,
    /// This epoch has the best validation AUC so far (keep its weights).
    pub best: bool,
}

/// The learning-rate schedule and stopping rule (see the module docs). Both computing
/// parties feed it the same opened values, so they take the same decisions.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The current step size.
    pub rate: f64,
    tolerance: f64,
    cap: usize,
    epoch: usize,
    prev: Option<f64>,
    plateaus: usize,
    best_val: Option<f64>,
    best_epoch: Option<usize>,
    stall: usize,
}

impl Schedule {
    /// The schedule of `fit` on `n` training rows.
    pub fn new(fit: &Fit, n: usize) -> Self {
        Self {
            rate: fit.initial_rate(n),
            tolerance: fit.tolerance,
            cap: fit.epochs,
            epoch: 0,
            prev: None,
            plateaus: 0,
            best_val: None,
            best_epoch: None,
            stall: 0,
        }
    }

    /// The schedule's state after some epochs, for a checkpoint.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let opt = |v: Option<f64>| v.map_or(u64::MAX, f64::to_bits);
        [
            self.rate.to_bits(),
            self.epoch as u64,
            self.prev.is_some() as u64,
            opt(self.prev),
            self.plateaus as u64,
            self.best_val.is_some() as u64,
            opt(self.best_val),
            self.best_epoch.map_or(u64::MAX, |e| e as u64),
            self.stall as u64,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }

    /// The schedule of `fit` on `n` rows in the state of [`Self::encode`].
    pub(crate) fn decode(fit: &Fit, n: usize, b: &[u8]) -> Option<Self> {
        if b.len() != 72 {
            return None;
        }
        let v: Vec<u64> = b
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        let [
            rate,
            epoch,
            has_prev,
            prev,
            plateaus,
            has_val,
            val,
            best_epoch,
            stall,
        ] = v[..]
        else {
            return None;
        };
        let mut s = Self::new(fit, n);
        s.rate = f64::from_bits(rate);
        s.epoch = epoch as usize;
        s.prev = (has_prev == 1).then(|| f64::from_bits(prev));
        s.plateaus = plateaus as usize;
        s.best_val = (has_val == 1).then(|| f64::from_bits(val));
        s.best_epoch = (best_epoch != u64::MAX).then_some(best_epoch as usize);
        s.stall = stall as usize;
        Some(s)
    }

    /// The 1-based epoch with the best validation AUC so far.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }

    /// Records an epoch's loss (and validation AUC) and decides.
    pub fn after_epoch(&mut self, loss: f64, val_auc: Option<f64>) -> Decision {
        self.epoch += 1;
        let mut d = Decision {
            stop: None,
            restart: false,
            best: false,
        };
        if let Some(a) = val_auc {
            // A tie keeps the later weights but does not count as an improvement.
            if self.best_val.is_none_or(|b| a > b) {
                self.stall = 0;
            } else {
                self.stall += 1;
            }
            if self.best_val.is_none_or(|b| a >= b) {
                self.best_val = Some(a);
                self.best_epoch = Some(self.epoch);
                d.best = true;
            }
            if self.stall >= VALIDATION_PATIENCE {
                d.stop = Some(Stop::Validation);
            }
        }
        let plateau = match self.prev {
            Some(p) => !loss.is_finite() || loss > p - self.tolerance * p.abs(),
            None => !loss.is_finite(),
        };
        self.prev = Some(loss);
        if plateau {
            self.plateaus += 1;
            if self.plateaus >= PLATEAUS {
                d.stop = d.stop.or(Some(Stop::Converged));
            }
            self.rate /= 2.0;
            d.restart = true;
        }
        if d.stop.is_none() && self.epoch >= self.cap {
            d.stop = Some(Stop::Cap);
        }
        d
    }
}

/// The binned AUC from counts at ascending score thresholds: `ge[i]` rows and `pos_ge[i]`
/// positives score at least threshold `i`; `pos` positives among `n` rows. `None` if a
/// class is empty.
pub fn binned_auc(ge: &[f64], pos_ge: &[f64], pos: f64, n: f64) -> Option<f64> {
    let neg = n - pos;
    if pos <= 0.0 || neg <= 0.0 {
        return None;
    }
    // ROC points from the strictest threshold to the loosest.
    let mut pts = vec![(0.0, 0.0)];
    for (c, pk) in ge.iter().zip(pos_ge).rev() {
        pts.push(((c - pk) / neg, pk / pos));
    }
    pts.push((1.0, 1.0));
    Some(
        pts.windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum(),
    )
}

/// The `k` public score thresholds of the binned AUC, evenly over `[−range, range]`.
pub fn auc_thresholds(k: usize, range: f64) -> Vec<f64> {
    (0..k)
        .map(|i| -range + 2.0 * range * i as f64 / (k.max(2) - 1) as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plateaus_halve_the_rate_and_end_training() {
        let fit = Fit {
            learning_rate: Some(1.0),
            ..Fit::default()
        };
        let mut s = Schedule::new(&fit, 100);
        assert!(s.after_epoch(0.6, None).stop.is_none());
        let d = s.after_epoch(0.5, None);
        assert!(!d.restart && d.stop.is_none() && s.rate == 1.0);
        // Not better by the tolerance: a plateau.
        let d = s.after_epoch(0.5 - 1e-6, None);
        assert!(d.restart && d.stop.is_none() && s.rate == 0.5);
        for _ in 0..3 {
            assert!(s.after_epoch(0.7, None).stop.is_none());
        }
        assert_eq!(s.after_epoch(0.7, None).stop, Some(Stop::Converged));
    }

    #[test]
    fn validation_patience_and_cap() {
        let fit = Fit {
            epochs: 6,
            validation: 0.1,
            ..Fit::default()
        };
        let mut s = Schedule::new(&fit, 100);
        let losses = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let aucs = [0.6, 0.7, 0.69, 0.7, 0.65, 0.9];
        let d: Vec<Decision> = losses
            .iter()
            .zip(aucs)
            .take(5)
            .map(|(&l, a)| s.after_epoch(l, Some(a)))
            .collect();
        assert!(d[1].best && !d[2].best && d[3].best && !d[4].best);
        assert_eq!(d[4].stop, Some(Stop::Validation));
        assert_eq!(s.best_epoch(), Some(4), "a tie keeps the later epoch");
        let mut s = Schedule::new(&fit, 100);
        let last = losses.iter().map(|&l| s.after_epoch(l, None)).last();
        assert_eq!(last.unwrap().stop, Some(Stop::Cap));
    }

    #[test]
    fn split_rates_weights() {
        let fit = Fit {
            validation: 0.1,
            ..Fit::default()
        };
        let (t, v) = fit.split(200).unwrap();
        assert_eq!((t.len(), v.len()), (180, 20));
        assert!(t.iter().all(|i| !v.contains(i)));
        assert!(fit.split(50).is_err());
        let adam = |lr| Fit {
            optimizer: Optimizer::Adam,
            learning_rate: Some(lr),
            ..Fit::default()
        };
        assert!(adam(1.0).validate().is_ok());
        assert_eq!(
            adam(1.5).validate().unwrap_err(),
            "Adam's learning rate must be at most 1, got 1.5"
        );
        assert_eq!(adam(0.5).initial_rate(100), 0.5);
        assert_eq!(
            Fit {
                learning_rate: None,
                ..adam(1.0)
            }
            .initial_rate(100),
            ADAM_RATE
        );
        assert_eq!(Fit::default().split(5).unwrap().0, vec![0, 1, 2, 3, 4]);
        assert_eq!(fit.initial_rate(500), 1.0);
        assert!((fit.initial_rate(102_400) - 0.1).abs() < 1e-12);
        assert!((fit.lambda(1000) - 1e-3).abs() < 1e-15);
        let w = class_weights(ClassWeight::Balanced, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(w, vec![2.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
        assert_eq!(
            "adagrad".parse::<Optimizer>().unwrap_err(),
            "optimizer must be one of sgd, momentum, nesterov, adam, got `adagrad`"
        );
        assert_eq!("l1".parse::<Penalty>(), Ok(Penalty::L1));
    }
}
