//! The three-seat protocols: [`train`] and [`predict_shared`].
//!
//! * `handshake`: the opening exchange of shapes, parameters and local errors;
//! * `prep`: a computing party's local preparation (standardization, fixed point);
//! * `fit`: training, the binned train AUC and the raw-unit reveal;
//! * `score`: prediction with a secret-shared model.

use std::collections::BTreeMap;
use std::fmt;

use confide_mpc::engine::Names;
use confide_mpc::{Party, Spline};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Result, TrainError};
use crate::limits;
use crate::table::Standardizer;

mod fit;
pub(crate) mod handshake;
mod prep;
mod score;

pub use fit::train;
pub use score::predict_shared;

/// Fewest common rows a job accepts.
pub const MIN_ROWS: usize = 10;
/// Fixed-point bits of the public update constants (learning rate, decay).
const CONST_BITS: u32 = 30;
/// AUC bins span z ∈ [−AUC_RANGE, AUC_RANGE].
const AUC_RANGE: f64 = 8.0;

/// This daemon's seat in a training or prediction job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Party A: holds the label (in [`LocalData::label`]) and some features; party 0.
    Active,
    /// Party B: holds other features; party 1.
    Passive,
    /// Deals correlated randomness; sees no data.
    Dealer,
}

/// The names (transport peer names) of the three seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyNames {
    /// Party A (label holder).
    pub active: String,
    /// Party B.
    pub passive: String,
    /// The dealer.
    pub dealer: String,
}

impl PartyNames {
    pub(crate) fn engine_names(&self) -> Names {
        Names {
            p0: self.active.clone(),
            p1: self.passive.clone(),
            dealer: self.dealer.clone(),
        }
    }

    fn validate(&self) -> Result<()> {
        limits::distinct(&self.active, &self.passive, &self.dealer).map_err(TrainError::Params)
    }

    pub(crate) fn to_parties(&self, names: &[String]) -> Result<Vec<Party>> {
        names
            .iter()
            .map(|n| {
                if *n == self.active {
                    Ok(Party::P0)
                } else if *n == self.passive {
                    Ok(Party::P1)
                } else {
                    Err(TrainError::Params(format!(
                        "`{n}` cannot receive outputs: only `{}` and `{}` can",
                        self.active, self.passive
                    )))
                }
            })
            .collect()
    }
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
    fn spline(self) -> Spline {
        match self {
            Self::Seg3 => Spline::seg3(),
            Self::Spline7 => Spline::sigmoid7(),
        }
    }
}

/// Job parameters; all three seats must pass identical values (checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Seat names.
    pub parties: PartyNames,
    /// Passes over the data.
    pub epochs: usize,
    /// Rows per SGD step.
    pub batch_size: usize,
    /// Learning rate.
    pub learning_rate: f64,
    /// L2 penalty (not applied to the intercept).
    pub l2: f64,
    /// Fixed-point fractional bits (12..=24; 16–20 recommended).
    pub frac_bits: u32,
    /// Public job seed for the batch order.
    pub seed: u64,
    /// Sigmoid approximation.
    pub sigmoid: SigmoidKind,
    /// Parties (by name) that receive the model and metrics; may be empty (the model
    /// then stays secret-shared and only serves [`predict_shared`]).
    pub reveal_to: Vec<String>,
    /// Compute the per-epoch log-loss on shares (revealed to `reveal_to`).
    pub track_loss: bool,
    /// Number of score thresholds for the binned train AUC (0 disables it).
    pub auc_bins: usize,
}

impl TrainParams {
    /// Defaults: 10 epochs, batch 64, learning rate 0.1, no L2, 18 fractional bits,
    /// the 7-piece sigmoid, model revealed to both computing parties, loss tracked,
    /// 32 AUC bins.
    pub fn new(parties: PartyNames) -> Self {
        let reveal_to = vec![parties.active.clone(), parties.passive.clone()];
        Self {
            parties,
            epochs: 10,
            batch_size: 64,
            learning_rate: 0.1,
            l2: 0.0,
            frac_bits: 18,
            seed: 1,
            sigmoid: SigmoidKind::Spline7,
            reveal_to,
            track_loss: true,
            auc_bins: 32,
        }
    }

    fn validate(&self) -> Result<()> {
        self.parties.validate()?;
        let bad = |m: String| Err(TrainError::Params(m));
        limits::epochs(self.epochs)
            .and_then(|()| limits::batch_size(self.batch_size))
            .and_then(|()| limits::learning_rate(self.learning_rate))
            .and_then(|()| limits::frac_bits(self.frac_bits))
            .map_err(TrainError::Params)?;
        if !(self.l2 >= 0.0 && self.l2 * self.learning_rate < 1.0) {
            return bad(format!(
                "l2 must be ≥ 0 with l2 · learning rate < 1, got {}",
                self.l2
            ));
        }
        if self.auc_bins == 1 || self.auc_bins > 1024 {
            return bad(format!(
                "auc_bins must be 0 or in 2..=1024, got {}",
                self.auc_bins
            ));
        }
        self.parties.to_parties(&self.reveal_to).map(|_| ())
    }
}

/// Progress after each epoch. `loss` is set only at parties that receive outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// 1-based epoch just finished.
    pub epoch: usize,
    /// Total epochs.
    pub epochs: usize,
    /// Mean training log-loss over the epoch's batches (spline softplus), if revealed here.
    pub loss: Option<f64>,
}

/// Training metrics (revealed to `reveal_to` only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean log-loss per epoch, computed on shares with the 8-piece softplus spline at
    /// the weights of each batch (max error 0.05 per row).
    pub loss_per_epoch: Vec<f64>,
    /// Train AUC from a binned ROC curve computed on shares (`auc_bins` thresholds).
    pub train_auc: Option<f64>,
    /// Common rows trained on.
    pub rows: usize,
    /// Positive labels among them.
    pub positives: Option<u64>,
    /// Epochs run.
    pub epochs: usize,
    /// Sigmoid approximation used.
    pub sigmoid: SigmoidKind,
    /// Constant feature columns this party dropped before training.
    pub dropped_features: Vec<String>,
}

/// The revealed model in raw CSV units (`model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Intercept.
    pub intercept: f64,
    /// Weight of each feature in raw units (names qualified as `party.name` when both
    /// parties use the same name).
    pub weights: BTreeMap<String, f64>,
    /// Training metrics.
    pub metrics: Metrics,
}

impl Model {
    /// Probability for one row given by feature name.
    pub fn predict(&self, row: &BTreeMap<String, f64>) -> Option<f64> {
        let mut z = self.intercept;
        for (k, w) in &self.weights {
            z += w * row.get(k)?;
        }
        Some(confide_mpc::sigmoid::sigmoid(z))
    }
}

/// A computing party's share of a secret-shared model (standardized units) plus its own
/// standardization. Zeroized on drop; `Debug` redacts the share. Store it like a key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedModel {
    /// 0 for the active party, 1 for the passive one.
    pub party: usize,
    /// Columns per party (the active party's count includes the intercept).
    pub cols: [usize; 2],
    /// Fixed-point fractional bits.
    pub frac_bits: u32,
    /// This party's additive share of the standardized weights (intercept first).
    pub weight_share: Vec<u64>,
    /// This party's feature standardization (names, kept columns, means, stds).
    pub standardizer: Standardizer,
}

impl Drop for SharedModel {
    fn drop(&mut self) {
        self.weight_share.zeroize();
    }
}

impl fmt::Debug for SharedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SharedModel(party {}, cols {:?}, <redacted share>)",
            self.party, self.cols
        )
    }
}

/// What [`train`] returns at each seat.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The model, at parties named in `reveal_to`.
    pub model: Option<Model>,
    /// This computing party's share of the model (`None` at the dealer).
    pub shared: Option<SharedModel>,
    /// Warnings (dropped constant columns, …).
    pub warnings: Vec<String>,
}

/// Parameters of [`predict_shared`]; identical at all three seats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictParams {
    /// Seat names (the same roles as at training).
    pub parties: PartyNames,
    /// The party (by name) that receives the scores.
    pub receiver: String,
    /// Fixed-point bits (must match the model).
    pub frac_bits: u32,
    /// Rows per round trip.
    pub batch_size: usize,
}
