//! Vertical gradient-boosted trees on secret shares (SS-XGB / Squirrel style, no HE).
//!
//! Party A (active, party 0) holds the label and some columns, party B (passive, party 1)
//! other columns of the same rows (aligned by PSI); the dealer deals correlated randomness.
//!
//! # Protocol (per tree; every step on additive shares over Z_2^64, fixed point)
//! 1. Before training each owner bins its own columns locally ([`bins`]: quantile bins,
//!    ≤ 64 per column, missing values in their own bin) and forms its 0/1 matrix
//!    `C_p[i, c] = [bin ≤ k]` over its split candidates `c = (column, k)`. `[C₀ | C₁]` is
//!    masked once with the engine's Beaver cache
//!    ([`confide_mpc::Engine::mask_matrix_owned`]: each party sends `C_p − U_p` and keeps
//!    the other's), like the logistic-regression path's `X`.
//! 2. Gradients: `p = σ̂(F)` (the 7-piece sigmoid spline, evaluated on `|F|` and mirrored:
//!    four secure comparisons per row), `g = p − y`,
//!    `h = p(1 − p)`; the label enters as A's trivially shared input.
//! 3. Each node has a secret-shared 0/1 membership vector `m` (root: all ones).
//!    Left sums for every candidate at once: `G_L = Cᵀ(g ⊙ m)`, `H_L = Cᵀ(h ⊙ m)`, for
//!    every left child of a level in one product
//!    ([`confide_mpc::Engine::masked_tmul_owned`]: each owner multiplies its own bins in
//!    the clear by its share plus the other's share masked with fresh dealer randomness
//!    `R`; the cached mask turns `C_pᵀR` into shares). The masks and the dense products
//!    `U_pᵀR`, `E_oᵀR` depend on no data: each tree's are planned one tree ahead and
//!    computed in the background ([`confide_mpc::Engine::plan_owned`]). `g ⊙ m, h ⊙ m`
//!    for all left children come from one outer product
//!    ([`confide_mpc::Engine::mul_outer`]; at the root they are `g, h`). A right sibling's
//!    sums are its parent's minus the left sibling's. A node's own sums `G, H` come from its parent's
//!    chosen split (the argmax carries the winner's `G_L, H_L`).
//! 4. Per candidate `score = G_L·w_L + G_R·w_R` with `w = G/(H + λ)` from a secure
//!    reciprocal (the comparisons with every power of two, from one bit decomposition of
//!    `H + λ`, give a shared power-of-two scale, then three Newton steps); candidates with a child below `min_child_weight`
//!    score `−2^40`. With column subsampling (`colsample_bytree < 1`) each tree draws
//!    `max(1, ⌊F · columns⌋)` of all columns (both parties') from the public job seed, and
//!    the owner of each candidate of an undrawn column subtracts `2^41` from its own share
//!    of that score: local, no message, and the candidate can only win if no drawn column
//!    has a candidate (then the tree does not split). A secure tournament argmax picks
//!    the best (lowest index on ties).
//! 5. The node's split flag `s = [score* − G·w ≥ 2γ]` stays shared. The best candidate's
//!    index is opened to its owner only (the other party gets "not mine"); the owner
//!    inputs its plaintext left indicator `l` (trivially shared) and the children are
//!    `m_L = m ⊙ (s·(l − 1) + 1)`, `m_R = m − m_L`: without a split every row goes left.
//! 6. Leaves at depth `D`: `w = −η·G/(H + λ)`, shared; `F += Σ_leaf m_leaf · w_leaf`,
//!    computed from the last level's memberships without routing to the leaves: a row of
//!    parent `p` adds `w_L + s_p·(w_L − w_R)·(l − 1)`.
//! 7. With a validation split (`validation > 0`, the public seeded split of
//!    [`crate::Fit::split`]) validation rows get `g = h = 0` in every tree (like rows left
//!    out by `subsample`), but every tree routes them, so their scores `F` are kept on
//!    shares. After each tree their binned AUC ([`VALIDATION_BINS`] thresholds) is
//!    computed on shares and opened to A and B; with `early_stopping_rounds = N` both stop
//!    once it has not improved for `N` trees and keep the trees up to the best, and A
//!    sends the dealer a one-byte stop flag per tree.
//!
//! Trees are complete binary trees of depth `D` whatever the data: the tree shape is
//! public, and whether a node really splits is secret ([`GbdtShare`] keeps the shared
//! flag). Prediction ([`predict_gbdt`]) routes rows the same way and opens only the final
//! score to the receiver.
//!
//! # What each party learns
//! * A and B: each other's row count and number of split candidates (the sum over
//!   columns of the number of bins used, which depends on distinct values); the public
//!   parameters. With `colsample_bytree < 1` also each other's number of columns (both
//!   need the total to draw the same columns; the dealer is not told). Which rows and
//!   columns a tree uses follows from the public seed alone.
//! * For every internal node, each computing party learns whether the best candidate is
//!   one of its own columns, and if so which column and bin (so the owner also knows its
//!   threshold and, for its own rows, which side each row would go). It does not learn
//!   whether the node actually splits, which rows reach the node, or any gain.
//! * Nothing else is opened during training: gradients, hessians, histograms, gains,
//!   memberships, split flags, leaf weights and scores stay shared (the privacy test
//!   records the wire).
//! * With a validation split, A and B learn after each tree the binned validation AUC's
//!   counts: per threshold, how many validation rows (and positives among them) score at
//!   least that (so also the number of validation positives); with early stopping, which
//!   tree was best and when boosting stopped.
//! * The dealer learns the row count and both candidate counts, and the public
//!   parameters (it receives only the handshake, and with early stopping one stop flag
//!   per tree: how many trees were grown).
//! * [`predict_gbdt`]: the receiver learns the raw scores (logits) of the scored rows;
//!   each owner evaluates its own thresholds on its own rows; nothing else is opened.
//! * A revealed split tells its owner that, among its candidates, this threshold
//!   best separated the other party's secret gradient statistics in some (unknown) node.
//!
//! Not done: learned default directions for
//! missing values (missing always goes right), revealing leaf weights to the label holder.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Result, TrainError};
use crate::protocol::PartyNames;

pub mod bins;
pub(crate) mod checkpoint;
mod early;
mod fit;
mod grow;
mod ops;
pub mod plain;
pub mod profile;

pub use early::{Stopper, VALIDATION_BINS, plain_validation_auc};
pub use fit::{predict_gbdt, train_gbdt, train_gbdt_checkpointed};
pub use plain::{
    PlainBoost, PlainNode, PlainTree, boost_gbdt_plain, predict_gbdt_plain, train_gbdt_plain,
};

/// Largest tree depth.
pub const MAX_DEPTH: usize = 8;
/// Most trees.
pub const MAX_TREES: usize = 1000;
/// Most rows (the shared reciprocal's scale must stay exact in fixed point).
pub const MAX_ROWS: usize = 1 << 20;

/// Boosting parameters; all three seats must pass identical values (checked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtParams {
    /// Seat names.
    pub parties: PartyNames,
    /// Number of trees (1..=1000).
    pub trees: usize,
    /// Depth of every tree (1..=8): `2^depth` leaves.
    pub depth: usize,
    /// Shrinkage η in (0, 1].
    pub learning_rate: f64,
    /// Most bins per column (2..=64).
    pub bins: usize,
    /// L2 penalty λ on leaf weights (0.01..=1000).
    pub lambda: f64,
    /// Least gain for a split, γ (≥ 0).
    pub gamma: f64,
    /// Least hessian sum in each child (≥ 0; 0 disables the check).
    pub min_child_weight: f64,
    /// Fixed-point fractional bits (16..=21: an invalid candidate scores −2^40).
    pub frac_bits: u32,
    /// Fraction of the rows each tree is grown on, in (0, 1] (XGBoost's `subsample`).
    pub subsample: f64,
    /// Fraction of all columns (both parties') each tree may split on, in (0, 1]
    /// (XGBoost's `colsample_bytree`: `max(1, ⌊F · columns⌋)` columns per tree).
    #[serde(default = "one")]
    pub colsample_bytree: f64,
    /// Fraction of the rows held out for validation, in [0, 0.5] (the public seeded split
    /// of [`crate::Fit::split`]); validation rows take no part in growing.
    #[serde(default)]
    pub validation: f64,
    /// Stop once the validation AUC has not improved for this many trees and keep the
    /// trees up to the best (XGBoost's `early_stopping_rounds`; 0: never stop).
    #[serde(default)]
    pub early_stopping_rounds: usize,
    /// The public job seed that draws each tree's rows when `subsample < 1`, its
    /// columns when `colsample_bytree < 1` and the validation split.
    pub seed: u64,
}

fn one() -> f64 {
    1.0
}

impl GbdtParams {
    /// Defaults as XGBoost's where they apply: 10 trees of depth 3, η 0.3, 32 bins,
    /// λ 1, γ 0, min_child_weight 1, 18 fractional bits.
    pub fn new(parties: PartyNames) -> Self {
        Self {
            parties,
            trees: 10,
            depth: 3,
            learning_rate: 0.3,
            bins: 32,
            lambda: 1.0,
            gamma: 0.0,
            min_child_weight: 1.0,
            frac_bits: 18,
            subsample: 1.0,
            colsample_bytree: 1.0,
            validation: 0.0,
            early_stopping_rounds: 0,
            seed: 0,
        }
    }

    /// The rows tree `tree` is grown on, `None` for all of them: each row independently
    /// with probability `subsample`, drawn from the public job seed, so every seat (and the
    /// plaintext twin) draws the same rows. Which rows a tree uses depends on nothing but
    /// the seed: it reveals nothing about the data.
    pub fn tree_rows(&self, tree: usize, n: usize) -> Option<Vec<bool>> {
        use rand_core::{Rng, SeedableRng};
        if self.subsample >= 1.0 {
            return None;
        }
        // A stream per tree, apart from the batch orders of logistic regression.
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(
            self.seed ^ 0x6764_6274_0000_0000 ^ (tree as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let cut = (self.subsample * (1u64 << 53) as f64) as u64;
        Some((0..n).map(|_| (rng.next_u64() >> 11) < cut).collect())
    }

    /// The columns tree `tree` may split on, `None` for all of them: `max(1, ⌊F · total⌋)`
    /// of the `total` columns (party 0's first, then party 1's), drawn without replacement
    /// from the public job seed, so every seat (and the plaintext twin) draws the same
    /// columns. Like [`Self::tree_rows`], the draw depends on nothing but the seed and the
    /// column counts.
    pub fn tree_columns(&self, tree: usize, total: usize) -> Option<Vec<bool>> {
        use rand_core::{Rng, SeedableRng};
        if self.colsample_bytree >= 1.0 {
            return None;
        }
        // A stream per tree, apart from the row draws and the batch orders.
        let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(
            self.seed ^ 0x6364_6274_636f_6c73 ^ (tree as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let take = ((self.colsample_bytree * total as f64) as usize).clamp(1, total.max(1));
        let mut order: Vec<usize> = (0..total).collect();
        let mut keep = vec![false; total];
        // Partial Fisher–Yates: the first `take` places of a uniform permutation.
        for i in 0..take.min(total) {
            let left = (total - i) as u128;
            let j = i + ((u128::from(rng.next_u64()) * left) >> 64) as usize;
            order.swap(i, j);
            keep[order[i]] = true;
        }
        Some(keep)
    }

    /// Checks every range (messages name the parameter).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Params(m));
        crate::limits::distinct(
            &self.parties.active,
            &self.parties.passive,
            &self.parties.dealer,
        )
        .map_err(TrainError::Params)?;
        if !(1..=MAX_TREES).contains(&self.trees) {
            return bad(format!(
                "trees must be in 1..={MAX_TREES}, got {}",
                self.trees
            ));
        }
        if !(1..=MAX_DEPTH).contains(&self.depth) {
            return bad(format!(
                "depth must be in 1..={MAX_DEPTH}, got {}",
                self.depth
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad(format!(
                "learning rate must be in (0, 1], got {}",
                self.learning_rate
            ));
        }
        if !(2..=bins::MAX_BINS).contains(&self.bins) {
            return bad(format!(
                "bins must be in 2..={}, got {}",
                bins::MAX_BINS,
                self.bins
            ));
        }
        if !(0.01..=1000.0).contains(&self.lambda) {
            return bad(format!(
                "lambda must be in [0.01, 1000], got {}",
                self.lambda
            ));
        }
        if !(0.0..=1e6).contains(&self.gamma) {
            return bad(format!("gamma must be in [0, 1e6], got {}", self.gamma));
        }
        if !(0.0..=1e6).contains(&self.min_child_weight) {
            return bad(format!(
                "min_child_weight must be in [0, 1e6], got {}",
                self.min_child_weight
            ));
        }
        if !(self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad(format!(
                "subsample must be in (0, 1], got {}",
                self.subsample
            ));
        }
        if !(self.colsample_bytree > 0.0 && self.colsample_bytree <= 1.0) {
            return bad(format!(
                "colsample_bytree must be in (0, 1], got {}",
                self.colsample_bytree
            ));
        }
        if self.colsample_bytree < 1.0 && self.frac_bits > 20 {
            return bad(format!(
                "colsample_bytree below 1 needs frac_bits ≤ 20 (the penalty on unsampled \
                 candidates must fit), got {}",
                self.frac_bits
            ));
        }
        if !(0.0..=0.5).contains(&self.validation) {
            return bad(format!(
                "validation must be in [0, 0.5], got {}",
                self.validation
            ));
        }
        if self.early_stopping_rounds > MAX_TREES {
            return bad(format!(
                "early_stopping_rounds must be at most {MAX_TREES}, got {}",
                self.early_stopping_rounds
            ));
        }
        if self.early_stopping_rounds > 0 && self.validation == 0.0 {
            return bad("early_stopping_rounds needs a validation split (validation > 0)".into());
        }
        // The score of an invalid candidate (−2^40) must encode: at most 21 fractional bits.
        if !(16..=21).contains(&self.frac_bits) {
            return bad(format!(
                "frac_bits must be in 16..=21, got {}",
                self.frac_bits
            ));
        }
        Ok(())
    }
}

/// Progress: after each level of each tree (`level == depth` when the tree is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GbdtProgress {
    /// 1-based tree.
    pub tree: usize,
    /// Trees in total.
    pub trees: usize,
    /// Levels of this tree finished (0..=depth).
    pub level: usize,
    /// Depth.
    pub depth: usize,
}

/// This party's rule at a node it owns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRule {
    /// Column index in this party's input.
    pub column: usize,
    /// Column name.
    pub name: String,
    /// Candidate bin within the column.
    pub bin: usize,
    /// Left is `value ≤ threshold` (`None`: every non-missing value); missing goes right.
    pub threshold: Option<f64>,
}

/// This party's part of one internal node.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeShare {
    /// Share of the split flag (1: split, 0: every row goes left).
    pub split: u64,
    /// The rule, if this party owns the node's candidate.
    pub rule: Option<SplitRule>,
}

/// This party's part of one tree.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeShare {
    /// `2^depth − 1` internal nodes, level order.
    pub nodes: Vec<NodeShare>,
    /// Shares of the `2^depth` leaf weights (fixed point, η included).
    pub leaves: Vec<u64>,
}

/// A computing party's share of a trained boosted model: its own split rules, and
/// shares of the split flags and leaf weights. Zeroized on drop; `Debug` redacts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtShare {
    /// 0 active, 1 passive.
    pub party: usize,
    /// Fixed-point fractional bits.
    pub frac_bits: u32,
    /// Tree depth.
    pub depth: usize,
    /// This party's input columns at training (rules index them).
    pub feature_names: Vec<String>,
    /// The trees.
    pub trees: Vec<TreeShare>,
}

impl fmt::Debug for NodeShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeShare(rule {:?}, <redacted flag>)", self.rule)
    }
}

impl fmt::Debug for TreeShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TreeShare({} nodes, {} leaves, <redacted>)",
            self.nodes.len(),
            self.leaves.len()
        )
    }
}

impl Drop for GbdtShare {
    fn drop(&mut self) {
        for t in &mut self.trees {
            t.leaves.zeroize();
            for n in &mut t.nodes {
                n.split.zeroize();
            }
        }
    }
}

impl fmt::Debug for GbdtShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GbdtShare(party {}, {} trees of depth {}, <redacted shares>)",
            self.party,
            self.trees.len(),
            self.depth
        )
    }
}

impl GbdtShare {
    /// What this party may export in clear: the public shape and its own split rules
    /// (`model.json`-like; no shares).
    pub fn export(&self) -> serde_json::Value {
        let trees: Vec<serde_json::Value> = self
            .trees
            .iter()
            .map(|t| {
                serde_json::json!({
                    "nodes": t.nodes.iter().map(|n| match &n.rule {
                        Some(r) => serde_json::json!({
                            "owner": "self", "column": r.name, "bin": r.bin,
                            "threshold": r.threshold, "missing": "right",
                        }),
                        None => serde_json::json!({"owner": "other"}),
                    }).collect::<Vec<_>>(),
                    "leaves": t.leaves.len(),
                })
            })
            .collect();
        serde_json::json!({
            "model": "gbdt",
            "party": self.party,
            "depth": self.depth,
            "features": self.feature_names,
            "trees": trees,
            "note": "split flags and leaf weights stay secret-shared",
        })
    }
}

/// What [`train_gbdt`] returns at a computing party (`None` at the dealer).
#[derive(Debug)]
pub struct GbdtOutcome {
    /// This party's share of the model.
    pub model: GbdtShare,
    /// Warnings (columns without a split candidate, …).
    pub warnings: Vec<String>,
    /// The binned validation AUC after each tree grown (empty without a validation split).
    pub validation_auc: Vec<f64>,
    /// Rows held out for validation.
    pub validation_rows: usize,
    /// Trees grown; with early stopping the model keeps those up to the best.
    pub grown: usize,
    /// The trees a resumed run took from its checkpoint (0 for a fresh run).
    pub resumed_trees: usize,
}

/// Parameters of [`predict_gbdt`]; identical at all three seats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GbdtPredictParams {
    /// Seat names (the same roles as at training).
    pub parties: PartyNames,
    /// The party (by name) that receives the scores.
    pub receiver: String,
    /// Fixed-point bits (must match the model).
    pub frac_bits: u32,
    /// Trees of the model.
    pub trees: usize,
    /// Depth of the model.
    pub depth: usize,
}
