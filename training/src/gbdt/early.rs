//! Early stopping on a public validation split (XGBoost's `early_stopping_rounds`): after
//! each tree the binned AUC of the validation rows, computed on shares and opened to the
//! two computing parties, decides whether boosting goes on; the trees up to the best are
//! kept. The plaintext twin runs the same rule on its own scores.

use confide_mpc::{Engine, Party, SharedVec, Transport};

use super::GbdtParams;
use crate::error::{Result, TrainError};
use crate::optim::{Fit, auc_thresholds, binned_auc};
use crate::protocol::reveal::{count_at_thresholds, open_auc};

/// Score thresholds of the binned validation AUC, evenly over logits in
/// `[−VALIDATION_RANGE, VALIDATION_RANGE]` (finer than the logistic-regression path's 32
/// over `[−8, 8]`: the first trees move the scores by tenths).
pub const VALIDATION_BINS: usize = 128;
/// Half the logit range of [`VALIDATION_BINS`].
pub const VALIDATION_RANGE: f64 = 4.0;
/// Validation rows compared with the thresholds at a time.
const AUC_CHUNK: usize = 2048;

impl GbdtParams {
    /// The public split of `n` rows into (training rows, validation rows), both ascending:
    /// [`Fit::split`]'s rule on the job seed (every row trains without validation).
    pub fn split(&self, n: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let fit = Fit {
            validation: self.validation,
            seed: self.seed,
            ..Fit::default()
        };
        fit.split(n).map_err(TrainError::Data)
    }
}

/// The stopping rule: stop once the validation AUC has not improved (strictly) for
/// `rounds` trees; the best tree is the first with the highest AUC.
#[derive(Debug, Clone)]
pub struct Stopper {
    rounds: usize,
    best: Option<(usize, f64)>,
}

impl Stopper {
    /// A rule with patience `rounds` (0: never stop).
    pub fn new(rounds: usize) -> Self {
        Self { rounds, best: None }
    }

    /// After tree `tree` (0-based) scored `auc` on the validation rows: whether to stop.
    pub fn after_tree(&mut self, tree: usize, auc: f64) -> bool {
        if self.best.is_none_or(|(_, b)| auc > b) {
            self.best = Some((tree, auc));
        }
        let best = self.best.map_or(tree, |(t, _)| t);
        self.rounds > 0 && tree - best >= self.rounds
    }

    /// A rule with patience `rounds` that has seen `best` (tree, AUC) so far: the rule
    /// of a run resumed from a checkpoint.
    pub(super) fn resumed(rounds: usize, best: Option<(usize, f64)>) -> Self {
        Self { rounds, best }
    }

    /// The best tree so far and its AUC (for a checkpoint).
    pub(super) fn best(&self) -> Option<(usize, f64)> {
        self.best
    }

    /// The 0-based tree with the best validation AUC so far.
    pub fn best_tree(&self) -> Option<usize> {
        self.best.map(|(t, _)| t)
    }
}

/// The binned validation AUC of plaintext raw scores (the twin's; the same thresholds and
/// rule as on shares; 0.5 if a class is missing).
pub fn plain_validation_auc(f: &[f64], y: &[f64], rows: &[usize]) -> f64 {
    let th = auc_thresholds(VALIDATION_BINS, VALIDATION_RANGE);
    let (mut ge, mut pos_ge) = (vec![0.0; th.len()], vec![0.0; th.len()]);
    let mut pos = 0.0;
    for &i in rows {
        pos += y[i];
        for (k, &t) in th.iter().enumerate() {
            if f[i] >= t {
                ge[k] += 1.0;
                pos_ge[k] += y[i];
            }
        }
    }
    binned_auc(&ge, &pos_ge, pos, rows.len() as f64).unwrap_or(0.5)
}

/// The binned validation AUC of the shared raw scores `f` on `rows`, with `y_int` the
/// shared 0/1 labels (integers): the counts per threshold are opened to both computing
/// parties, who get the AUC (0.5 if a class is missing); the dealer gets `None`.
pub(super) async fn secure_validation_auc<T: Transport>(
    e: &mut Engine<'_, T>,
    f: &SharedVec,
    y_int: &SharedVec,
    rows: &[usize],
) -> Result<Option<f64>> {
    let pick = |v: &SharedVec, rows: &[usize]| {
        rows.iter()
            .map(|&i| v.as_slice().get(i).copied())
            .collect::<Option<Vec<_>>>()
            .map(SharedVec::from_vec)
            .ok_or_else(|| TrainError::Internal("validation row out of range".into()))
    };
    let th = auc_thresholds(VALIDATION_BINS, VALIDATION_RANGE);
    let mut acc = vec![std::num::Wrapping(0); 2 * th.len() + 1];
    acc[2 * th.len()] = pick(y_int, rows)?.as_slice().iter().sum();
    // A bounded number of comparisons at a time.
    for chunk in rows.chunks(AUC_CHUNK) {
        let y = pick(y_int, chunk)?;
        count_at_thresholds(e, &pick(f, chunk)?, &y, &th, &mut acc).await?;
    }
    let party = e.party().is_some();
    let auc = open_auc(e, acc, rows.len(), &[Party::P0, Party::P1]).await?;
    // At A and B a missing class counts as 0.5 (as in the logistic-regression path).
    Ok(party.then(|| auc.map_or(0.5, |(a, _)| a)))
}

/// The dealer's copy of the stopping decision: party A's one-byte flag after each tree
/// (1: stop). The dealer learns only how many trees were grown.
pub(super) async fn dealer_flag<T: Transport>(t: &T, active: &str) -> Result<bool> {
    match t.recv(active).await?.as_slice() {
        [0] => Ok(false),
        [1] => Ok(true),
        _ => Err(TrainError::Peer {
            peer: active.into(),
            reason: "bad stopping flag".into(),
        }),
    }
}
