//! The three-seat protocols: [`train`] and [`predict_shared`].
//!
//! * `handshake`: the opening exchange of shapes, parameters and local errors;
//! * `prep`: a computing party's local preparation (standardization, fixed point);
//! * `fit`: training, the binned train AUC and the raw-unit reveal;
//! * `score`: prediction with a secret-shared model.

use std::collections::BTreeMap;
use std::fmt;

use confide_mpc::Party;
use confide_mpc::engine::Names;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Result, TrainError};
use crate::limits;
pub use crate::optim::SigmoidKind;
use crate::optim::{Fit, Stop};
use crate::table::Standardizer;

mod adam;
pub(crate) mod checkpoint;
mod fit;
pub(crate) mod handshake;
mod prep;
pub(crate) mod reveal;
mod rsqrt;
mod score;
mod step;

pub use checkpoint::TrainCheckpoint;
pub use fit::{train, train_checkpointed};
pub use score::predict_shared;

/// Fewest common rows a job accepts.
pub const MIN_ROWS: usize = 10;
/// Fixed-point bits of the public update constants (learning rate, decay).
const CONST_BITS: u32 = 30;

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

/// Job parameters; all three seats must pass identical values (checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Seat names.
    pub parties: PartyNames,
    /// Optimizer, penalty, stopping rule, validation split, batch order ([`Fit`]).
    pub fit: Fit,
    /// Fixed-point fractional bits (12..=24; 16–20 recommended).
    pub frac_bits: u32,
    /// Sigmoid approximation.
    pub sigmoid: SigmoidKind,
    /// Parties (by name) that receive the model and metrics; may be empty (the model
    /// then stays secret-shared and only serves [`predict_shared`]).
    pub reveal_to: Vec<String>,
    /// Number of score thresholds for the binned train and validation AUC (0 disables
    /// the train AUC; a validation split needs at least 2).
    pub auc_bins: usize,
}

impl TrainParams {
    /// Defaults: [`Fit::default`], 18 fractional bits, the 7-piece sigmoid, model revealed
    /// to both computing parties, 32 AUC bins.
    pub fn new(parties: PartyNames) -> Self {
        let reveal_to = vec![parties.active.clone(), parties.passive.clone()];
        Self {
            parties,
            fit: Fit::default(),
            frac_bits: 18,
            sigmoid: SigmoidKind::Spline7,
            reveal_to,
            auc_bins: 32,
        }
    }

    fn validate(&self) -> Result<()> {
        self.parties.validate()?;
        let bad = |m: String| Err(TrainError::Params(m));
        self.fit
            .validate()
            .and_then(|()| limits::frac_bits(self.frac_bits))
            .map_err(TrainError::Params)?;
        if self.auc_bins == 1 || self.auc_bins > 1024 {
            return bad(format!(
                "auc_bins must be 0 or in 2..=1024, got {}",
                self.auc_bins
            ));
        }
        if self.fit.validation > 0.0 && self.auc_bins == 0 {
            return bad("a validation split needs auc_bins ≥ 2".into());
        }
        self.parties.to_parties(&self.reveal_to).map(|_| ())
    }
}

/// Progress after each epoch, at both computing parties (`None` fields at the dealer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochProgress {
    /// 1-based epoch just finished.
    pub epoch: usize,
    /// The epoch cap.
    pub epochs: usize,
    /// The loss the stopping rule saw (spline softplus, plus the penalty).
    pub loss: Option<f64>,
    /// Binned validation AUC (with a validation split).
    pub validation_auc: Option<f64>,
    /// The step size used in this epoch (`None` at the dealer).
    pub learning_rate: Option<f64>,
    /// Training ends after this epoch, and why.
    pub stop: Option<Stop>,
}

/// Training metrics (in the model, revealed to `reveal_to` only; the loss and validation
/// AUC per epoch are also known to both computing parties, see the crate docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The loss per epoch the stopping rule saw: mean log-loss over the epoch's batches,
    /// computed on shares with the 8-piece softplus spline at the weights of each batch
    /// (max error 0.05 per row), plus the penalty at the epoch's end.
    pub loss_per_epoch: Vec<f64>,
    /// Binned validation AUC per epoch (empty without a validation split).
    pub validation_auc_per_epoch: Vec<f64>,
    /// The epoch whose weights were kept (the best validation AUC), with a split.
    pub best_epoch: Option<usize>,
    /// Train AUC from a binned ROC curve computed on shares (`auc_bins` thresholds) over
    /// the training rows.
    pub train_auc: Option<f64>,
    /// Common rows.
    pub rows: usize,
    /// Rows held out for validation.
    pub validation_rows: usize,
    /// Positive labels among the training rows.
    pub positives: Option<u64>,
    /// Epochs run.
    pub epochs: usize,
    /// Steps (batches) taken.
    pub steps: usize,
    /// Why training ended.
    pub stop: Stop,
    /// The initial step size.
    pub learning_rate: f64,
    /// The optimizer settings of the job.
    pub fit: Fit,
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
    /// The epochs a resumed run took from its checkpoint (0 for a fresh run).
    pub resumed_epochs: usize,
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
