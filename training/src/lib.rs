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
//! # Resume
//! [`train_checkpointed`] writes a checkpoint after every epoch (each computing party's
//! own shares of the weights, momentum, Adam's moments and best weights, plus the public
//! schedule; the dealer its epoch count) and, on resume, continues from the newest epoch
//! every party holds. The schedule is the uninterrupted run's; the weights match it up to
//! the fixed-point rounding of the dealer's fresh randomness after the resume.
//! [`train_gbdt_checkpointed`] does the same per tree for boosted trees (each computing
//! party's shares of the scores `F`, its own part of the trees so far and the public
//! early-stopping state; the dealer its tree count): the trees from the checkpoint are
//! kept, the later ones match the uninterrupted run's up to fixed-point rounding.
//!
//! # Protocol
//! 1. Handshake: row and column counts, feature names (between A and B only) and the job
//!    parameters are exchanged and checked; every seat fails on any seat's input error.
//! 2. Each owner standardizes its columns locally (constant columns are dropped with a
//!    warning); A adds the intercept column. Values are encoded in fixed point.
//! 3. Beaver cache: each party masks its columns once with a mask only it (and the
//!    dealer) knows and sends `X_p − U_p` to the other party; it is reused every epoch.
//! 4. Optimization on shares ([`optim`]): epochs of mini-batch steps in a public batch
//!    order derived from the job seed (a batch at least as large as the data is one
//!    full-batch step per epoch). Per batch: `z = X_b·w` (dealer matrix triple for the
//!    fresh `w` mask), dealer truncation, sigmoid by SEG3 or a 7-piece spline and the
//!    softplus loss spline on shares (secure comparisons), error `σ̂ − y` (times the
//!    class weight, party A's input, with `--class-weight balanced`), gradient `X_bᵀ·e`,
//!    then the update of [`Optimizer`] (SGD, heavy-ball momentum, Nesterov (default) or
//!    Adam, whose moments stay shared and whose per-weight `1/√(v̂ + ε)` is a secure
//!    inverse square root: comparisons with powers of four, then Newton steps) with an
//!    L2 penalty in the gradient or an L1 proximal step (a clamp spline on shares),
//!    `λ = 1/(C·n)` as scikit-learn's `C` — all on shares, with public constants (step
//!    size, μ = 0.9, λ, Adam's bias corrections from the public step count).
//! 5. After each epoch the loss (mean spline log-loss over the epoch plus the penalty)
//!    and, with a validation split, the binned validation AUC are opened to both
//!    computing parties; both apply the same stopping rule ([`optim::Schedule`]: a plateau
//!    halves the step size and restarts the momentum, the fifth plateau ends training,
//!    `epochs` is a cap; three epochs without a better validation AUC end it too, keeping
//!    the best epoch's weights). Party A sends the dealer one byte per epoch: stop or go on.
//! 6. Output: weights are converted to raw units on shares and opened to `reveal_to`
//!    only, with the binned train AUC. The model shares stay with the parties for
//!    [`predict_shared`].
//!
//! # Leakage (semi-honest, dealer non-colluding)
//! * A and B learn each other's row count, column count and feature names, and the job's
//!   public settings (including the validation fraction and thus which common rows, by
//!   position, are held out).
//! * The dealer learns the row count and the column counts, and how many epochs ran (the
//!   stop flags); nothing else (it receives only the handshake and those flags).
//! * Every other message is a share or a value masked with fresh dealer randomness.
//! * **Both computing parties, whether or not they receive the model** (also with
//!   `keep_shared`), learn after every epoch: the loss the stopping rule uses (the mean
//!   softplus-spline log-loss over the epoch's batches, each at the weights of its batch,
//!   plus `λ/2·‖w‖²` or `λ·‖w‖₁` of the standardized weights) and, with a validation
//!   split, the binned validation AUC (the fraction of ordered pairs from the histogram
//!   of validation scores over `auc_bins` thresholds — not the histogram itself). What
//!   that tells the passive party, which never sees a label: how predictable the label
//!   is from the joint features (the loss is an average over all training rows, no
//!   single row's term is opened); roughly the positive rate (the loss of a weak model is
//!   close to the binary entropy of the positive rate, and the intercept-only optimum
//!   equals it exactly); through the penalty term, a little about `‖w‖`; and from the
//!   sequence over epochs, how fast the fit improves. It does not determine the weights
//!   (one number per epoch against `d` unknowns). The active party learns the same about
//!   the passive party's columns: how much they improve the fit. The number of epochs
//!   (and so of steps) that ran is known to all three seats.
//! * Receivers of the model learn: the raw-unit weights and intercept; the loss and
//!   validation AUC per epoch (above); for the train AUC, over the training rows, the
//!   number of rows and of positives whose score is at least each of `auc_bins` fixed
//!   thresholds in [−8, 8] (a coarse score histogram by label) and the number of
//!   positives; and, for the other party's features, the binary exponent of each
//!   feature's standard deviation (`⌊log2(1/std)⌋ + 1`, sent in clear so raw weights keep
//!   full precision).
//! * Class weights are party A's private input (they reveal the class counts only
//!   through the outputs above).
//! * [`predict_shared`]: only the receiver learns the scores.
//!
//! # Boosted trees ([`gbdt`])
//! [`train_gbdt`] / [`predict_gbdt`] train and use gradient-boosted trees on the same three
//! seats (protocol in the module docs). What GBDT reveals:
//! * to each computing party, for every internal node of every tree: whether the node's
//!   best candidate is one of its own columns and, if so, which column and bin (so the
//!   owner knows its threshold). Nothing about the node's rows, gains, or whether the node
//!   really splits (the split flag stays shared; trees are complete, so the shape is public);
//! * A and B learn each other's row count and number of split candidates (with
//!   `colsample_bytree < 1` also each other's number of columns); the dealer learns the row
//!   count and both candidate counts (with early stopping also how many trees were grown);
//! * with a validation split, A and B learn after each tree the validation rows' binned
//!   AUC counts (rows and positives at or above each score threshold);
//! * gradients, hessians, histograms, gains, memberships, leaf weights and training scores
//!   are never opened; [`predict_gbdt`] opens only the scores, to the receiver.
//!
//! # Accuracy
//! Fixed point with 18 fractional bits by default; truncation never wraps (dealer pairs,
//! error ≤ 1 unit). The plaintext twin [`train_plain`] runs the same optimizer and
//! stopping rule in f64. See `ACCURACY.md` for the test AUC with default settings
//! against scikit-learn's `LogisticRegression(C=1.0)` on the same splits.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod align;
pub mod error;
pub mod gbdt;
pub mod limits;
pub mod optim;
pub mod options;
pub mod plain;
pub mod protocol;
pub mod store;
pub mod table;

pub use align::{Aligned, align};
pub use error::{Result, TrainError};
pub use gbdt::{
    GbdtOutcome, GbdtParams, GbdtPredictParams, GbdtProgress, GbdtShare, predict_gbdt, train_gbdt,
    train_gbdt_checkpointed,
};
pub use optim::{ClassWeight, Fit, Optimizer, Penalty, Stop};
pub use options::{GbdtOptions, PREDICT_BATCH, PredictOptions, TrainOptions, check_model_id};
pub use plain::{PlainFit, Twin, auc, batch_order, generate_credit, train_plain};
pub use protocol::{
    EpochProgress, MIN_ROWS, Metrics, Model, PartyNames, PredictParams, Role, SharedModel,
    SigmoidKind, TrainCheckpoint, TrainOutcome, TrainParams, predict_shared, train,
    train_checkpointed,
};
pub use store::{GBDT_FORMAT, SHARE_FORMAT, ShareMeta, StoredGbdt, StoredShare, share_path};
pub use table::{LocalData, Standardizer, Table, load_table};
