//! Vertical logistic regression on secret shares (Confide issue 5).
//!
//! Party A (the *active* party, party 0) holds the label and some feature columns,
//! party B (*passive*, party 1) holds other columns of the same customers, and a third
//! daemon deals correlated randomness. Rows are first aligned by ECDH-PSI on the ID
//! columns ([`align()`]: the PSI, then [`Table::align`] puts a loaded table in the
//! agreed common order); [`train`] then takes each party's aligned local matrix.
//!
//! For the daemon's `train` and `predict` job kinds the crate also owns the job options
//! ([`TrainOptions`], [`PredictOptions`]: parsing and every range check) and the stored
//! model-share format ([`StoredShare`]).
//!
//! # Runtime
//! The futures of [`train`], [`predict_shared`] and [`align()`] are `Send`; CPU-heavy
//! steps leave the async runtime's worker threads free ([`confide_mpc::offload`] on a
//! multi-threaded tokio runtime, the blocking pool and rayon for the PSI), so a daemon
//! awaits them directly on its runtime, over its own transport.
//!
//! # Protocol
//! 1. Handshake: row and column counts, feature names (between A and B only) and the job
//!    parameters are exchanged and checked; every seat fails on any seat's input error.
//! 2. Each owner standardizes its columns locally (constant columns are dropped with a
//!    warning); A adds the intercept column. Values are encoded in fixed point.
//! 3. Beaver cache: each party masks its columns once with a mask only it (and the
//!    dealer) knows and sends `X_p − U_p` to the other party; it is reused every epoch.
//! 4. Mini-batch SGD in a public batch order derived from the job seed: per batch,
//!    `z = X_b·w` (dealer matrix triple for the fresh `w` mask), dealer truncation,
//!    sigmoid by SEG3 or a 7-piece spline on shares (secure comparisons), error `σ̂ − y`,
//!    gradient `X_bᵀ·e`, update `w ← w(1 − lr·l2) − lr/B·g` — all on shares.
//! 5. Output: weights are converted to raw units on shares and opened to `reveal_to`
//!    only, with the per-epoch loss and a binned train AUC. The model shares stay with
//!    the parties for [`predict_shared`].
//!
//! # Leakage (semi-honest, dealer non-colluding)
//! * A and B learn each other's row count, column count and feature names.
//! * The dealer learns the row count and the column counts, nothing else (it receives
//!   only the handshake).
//! * Every other message is a share or a value masked with fresh dealer randomness.
//! * Receivers of the model learn: the raw-unit weights and intercept; the per-epoch mean
//!   log-loss; for the train AUC, the number of rows and of positives whose score
//!   is at least each of `auc_bins` fixed thresholds in [−8, 8] (a coarse score histogram by
//!   label) and the number of positives; and, for the other party's features, the binary
//!   exponent of each feature's standard deviation (`⌊log2(1/std)⌋ + 1`, sent in clear so
//!   raw weights keep full precision).
//! * [`predict_shared`]: only the receiver learns the scores.
//!
//! # Boosted trees ([`gbdt`])
//! [`train_gbdt`] / [`predict_gbdt`] train and use gradient-boosted trees on the same three
//! seats (protocol in the module docs). What GBDT reveals:
//! * to each computing party, for every internal node of every tree: whether the node's
//!   best candidate is one of its own columns and, if so, which column and bin (so the
//!   owner knows its threshold). Nothing about the node's rows, gains, or whether the node
//!   really splits (the split flag stays shared; trees are complete, so the shape is public);
//! * A and B learn each other's row count and number of split candidates; the dealer learns
//!   the row count and both candidate counts;
//! * gradients, hessians, histograms, gains, memberships, leaf weights and training scores
//!   are never opened; [`predict_gbdt`] opens only the scores, to the receiver.
//!
//! # Accuracy
//! Fixed point with 18 fractional bits by default; truncation never wraps (dealer pairs,
//! error ≤ 1 unit). See `ACCURACY.md` for the AUC against plaintext training.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod align;
pub mod error;
pub mod gbdt;
pub mod limits;
pub mod options;
pub mod plain;
pub mod protocol;
pub mod store;
pub mod table;

pub use align::{Aligned, align};
pub use error::{Result, TrainError};
pub use gbdt::{
    GbdtOutcome, GbdtParams, GbdtPredictParams, GbdtProgress, GbdtShare, predict_gbdt, train_gbdt,
};
pub use options::{GbdtOptions, PREDICT_BATCH, PredictOptions, TrainOptions, check_model_id};
pub use plain::{auc, batch_order, generate_credit, train_plain};
pub use protocol::{
    EpochProgress, MIN_ROWS, Metrics, Model, PartyNames, PredictParams, Role, SharedModel,
    SigmoidKind, TrainOutcome, TrainParams, predict_shared, train,
};
pub use store::{GBDT_FORMAT, SHARE_FORMAT, ShareMeta, StoredGbdt, StoredShare, share_path};
pub use table::{LocalData, Standardizer, Table, load_table};
