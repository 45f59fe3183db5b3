//! The options of the daemon's `train` and `predict` job kinds.
//!
//! A job carries its options as a map of strings (`epochs = "10"`); [`TrainOptions`] and
//! [`PredictOptions`] parse such a map ([`TrainOptions::from_options`]), or deserialize
//! from JSON with typed values (serde, unknown fields refused), and check every range in
//! [`TrainOptions::validate`] / [`PredictOptions::validate`]. Errors are
//! [`TrainError::Options`], whose message names the option.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::gbdt::{GbdtParams, GbdtPredictParams};
use crate::limits;
use crate::optim::{ClassWeight, Fit, Optimizer, Penalty};
use crate::protocol::{PartyNames, PredictParams, TrainParams};

/// Rows per round trip when scoring ([`PredictOptions::params`]).
pub const PREDICT_BATCH: usize = 4096;

fn bad(m: impl Into<String>) -> TrainError {
    TrainError::Options(m.into())
}

/// An option map, with today's messages for missing, unknown and non-numeric options.
struct Raw(BTreeMap<String, String>);

impl Raw {
    fn new(
        options: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
        known: &[&str],
    ) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (k, v) in options {
            let k = k.as_ref();
            if !known.contains(&k) {
                return Err(bad(format!("unknown option `{k}`")));
            }
            if map.insert(k.to_string(), v.as_ref().to_string()).is_some() {
                return Err(bad(format!("option `{k}` is given twice")));
            }
        }
        Ok(Self(map))
    }

    fn text(&self, key: &str) -> Result<String> {
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| bad(format!("option `{key}` is missing")))
    }

    fn named<T: FromStr<Err = String>>(&self, key: &str, default: T) -> Result<T> {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .map_err(|e: String| bad(format!("option `{key}`: {e}"))),
            None => Ok(default),
        }
    }

    fn num<T: FromStr>(&self, key: &str, default: Option<T>) -> Result<T> {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .map_err(|_| bad(format!("option `{key}` = `{v}` is not a valid number"))),
            None => default.ok_or_else(|| bad(format!("option `{key}` is missing"))),
        }
    }
}

fn pairs<const N: usize>(p: [(&str, String); N]) -> Vec<(String, String)> {
    p.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn fit_default() -> Fit {
    Fit::default()
}

fn default_epochs() -> usize {
    fit_default().epochs
}

fn default_batch_size() -> usize {
    fit_default().batch_size
}

fn default_c() -> f64 {
    fit_default().c
}

fn default_tolerance() -> f64 {
    fit_default().tolerance
}

fn default_optimizer() -> Optimizer {
    fit_default().optimizer
}

fn default_penalty() -> Penalty {
    fit_default().penalty
}

fn default_class_weight() -> ClassWeight {
    fit_default().class_weight
}

/// The options of a `train` job (the same at every daemon of the job). The optimizer
/// settings mean what the fields of [`Fit`] say; their defaults are [`Fit::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainOptions {
    /// The label column, in the active (initiating) party's dataset.
    pub label: String,
    /// Most passes over the data (default 200; the stopping rule usually ends sooner).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Rows per step (default 1024).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Step size (default: automatic, `min(1, √(batch/rows))`; 0.1 for Adam).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Update rule (default Nesterov; `adam` also).
    #[serde(default = "default_optimizer")]
    pub optimizer: Optimizer,
    /// Penalty (default L2).
    #[serde(default = "default_penalty")]
    pub penalty: Penalty,
    /// Inverse penalty strength, scikit-learn's `C` (default 1).
    #[serde(default = "default_c")]
    pub c: f64,
    /// Row weights (default none).
    #[serde(default = "default_class_weight")]
    pub class_weight: ClassWeight,
    /// Relative loss improvement below which an epoch is a plateau (default 3e-5).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Fraction of the common rows held out for early stopping (default 0: none).
    #[serde(default)]
    pub validation: f64,
    /// Keep the model secret-shared (for `predict`) instead of revealing it (default false).
    #[serde(default)]
    pub keep_shared: bool,
    /// The public job seed of the batch order (drawn by the submitter).
    pub seed: u64,
    /// The dealer's party name.
    pub dealer: String,
    /// Boosted trees instead of logistic regression (`model = gbdt` in the option map);
    /// `None` (the default) trains logistic regression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbdt: Option<GbdtOptions>,
    /// The job (of the same parties and options) whose checkpoint this one continues from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// With `resume`, at submission only: take `seed` from the resumed job (the initiator's
    /// daemon replaces it before the job is proposed or anchored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed_from_checkpoint: bool,
}

/// The boosting options of a `train` job with `model = gbdt` (the learning rate is
/// [`TrainOptions::learning_rate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GbdtOptions {
    /// Number of trees (default 10).
    pub trees: usize,
    /// Depth of every tree (default 3).
    pub depth: usize,
    /// Most bins per column (default 32).
    pub bins: usize,
    /// L2 penalty on leaf weights (default 1).
    pub lambda: f64,
    /// Least gain of a split (default 0).
    pub gamma: f64,
    /// Least hessian sum per child (default 1).
    pub min_child_weight: f64,
    /// Fraction of the rows each tree is grown on (default 1).
    #[serde(default = "one")]
    pub subsample: f64,
    /// Fraction of all columns each tree may split on (default 1).
    #[serde(default = "one")]
    pub colsample_bytree: f64,
    /// Stop when the validation AUC (rows held out by [`TrainOptions::validation`]) has
    /// not improved for this many trees (default 0: never).
    #[serde(default)]
    pub early_stopping_rounds: usize,
}

fn one() -> f64 {
    1.0
}

impl Default for GbdtOptions {
    fn default() -> Self {
        Self {
            trees: 10,
            depth: 3,
            bins: 32,
            lambda: 1.0,
            gamma: 0.0,
            min_child_weight: 1.0,
            subsample: 1.0,
            colsample_bytree: 1.0,
            early_stopping_rounds: 0,
        }
    }
}

impl TrainOptions {
    /// The option names.
    pub const KEYS: &'static [&'static str] = &[
        "label",
        "epochs",
        "batch_size",
        "learning_rate",
        "optimizer",
        "penalty",
        "c",
        "class_weight",
        "tolerance",
        "validation",
        "keep_shared",
        "seed",
        "dealer",
        "model",
        "trees",
        "depth",
        "bins",
        "lambda",
        "gamma",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "early_stopping_rounds",
    ];

    /// Options with every default: `label`, the job `seed` and the `dealer` given.
    pub fn new(label: &str, seed: u64, dealer: &str) -> Self {
        let f = fit_default();
        Self {
            label: label.into(),
            epochs: f.epochs,
            batch_size: f.batch_size,
            learning_rate: f.learning_rate,
            optimizer: f.optimizer,
            penalty: f.penalty,
            c: f.c,
            class_weight: f.class_weight,
            tolerance: f.tolerance,
            validation: f.validation,
            keep_shared: false,
            seed,
            dealer: dealer.into(),
            gbdt: None,
            resume: None,
            seed_from_checkpoint: false,
        }
    }

    /// Parses and validates a job's string options ([`Self::KEYS`]; `learning_rate` may
    /// be `auto`; defaults as in the fields' docs).
    pub fn from_options(
        options: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
    ) -> Result<Self> {
        let raw = Raw::new(options, Self::KEYS)?;
        let keep_shared = match raw.0.get("keep_shared").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(bad(format!("keep_shared = `{v}` (true or false)"))),
        };
        let learning_rate = match raw.0.get("learning_rate").map(String::as_str) {
            None | Some("auto") => None,
            Some(_) => Some(raw.num("learning_rate", None)?),
        };
        let d = Self::new("", 0, "");
        let o = Self {
            label: raw.0.get("label").cloned().unwrap_or_default(),
            epochs: raw.num("epochs", Some(d.epochs))?,
            batch_size: raw.num("batch_size", Some(d.batch_size))?,
            learning_rate,
            optimizer: raw.named("optimizer", d.optimizer)?,
            penalty: raw.named("penalty", d.penalty)?,
            c: raw.num("c", Some(d.c))?,
            class_weight: raw.named("class_weight", d.class_weight)?,
            tolerance: raw.num("tolerance", Some(d.tolerance))?,
            validation: raw.num("validation", Some(d.validation))?,
            keep_shared,
            seed: raw.num("seed", None)?,
            dealer: raw.text("dealer")?,
            resume: None,
            seed_from_checkpoint: false,
            gbdt: match raw.0.get("model").map(String::as_str) {
                None | Some("lr") => None,
                Some("gbdt") => {
                    let d = GbdtOptions::default();
                    Some(GbdtOptions {
                        trees: raw.num("trees", Some(d.trees))?,
                        depth: raw.num("depth", Some(d.depth))?,
                        bins: raw.num("bins", Some(d.bins))?,
                        lambda: raw.num("lambda", Some(d.lambda))?,
                        gamma: raw.num("gamma", Some(d.gamma))?,
                        min_child_weight: raw.num("min_child_weight", Some(d.min_child_weight))?,
                        subsample: raw.num("subsample", Some(d.subsample))?,
                        colsample_bytree: raw.num("colsample_bytree", Some(d.colsample_bytree))?,
                        early_stopping_rounds: raw
                            .num("early_stopping_rounds", Some(d.early_stopping_rounds))?,
                    })
                }
                Some(m) => return Err(bad(format!("model = `{m}` (lr or gbdt)"))),
            },
        };
        o.validate().map(|()| o)
    }

    /// True for boosted trees (`model = gbdt`).
    pub fn is_gbdt(&self) -> bool {
        self.gbdt.is_some()
    }

    /// The boosting parameters of a `gbdt` job for the seats `parties` (`None` for
    /// logistic regression).
    pub fn gbdt_params(&self, parties: PartyNames) -> Option<GbdtParams> {
        let g = self.gbdt.as_ref()?;
        let mut p = GbdtParams::new(parties);
        p.trees = g.trees;
        p.depth = g.depth;
        // Boosting's shrinkage η: 0.3 (XGBoost's default) unless given.
        p.learning_rate = self.learning_rate.unwrap_or(0.3);
        p.bins = g.bins;
        p.lambda = g.lambda;
        p.gamma = g.gamma;
        p.min_child_weight = g.min_child_weight;
        p.subsample = g.subsample;
        p.colsample_bytree = g.colsample_bytree;
        p.validation = self.validation;
        p.early_stopping_rounds = g.early_stopping_rounds;
        p.seed = self.seed;
        Some(p)
    }

    /// The options as a job carries them (the inverse of [`Self::from_options`]).
    pub fn to_options(&self) -> Vec<(String, String)> {
        let mut out = self.lr_options();
        if let Some(g) = &self.gbdt {
            out.extend(pairs([
                ("model", "gbdt".to_string()),
                ("trees", g.trees.to_string()),
                ("depth", g.depth.to_string()),
                ("bins", g.bins.to_string()),
                ("lambda", g.lambda.to_string()),
                ("gamma", g.gamma.to_string()),
                ("min_child_weight", g.min_child_weight.to_string()),
                ("subsample", g.subsample.to_string()),
                ("colsample_bytree", g.colsample_bytree.to_string()),
                ("early_stopping_rounds", g.early_stopping_rounds.to_string()),
            ]));
        }
        out
    }

    fn lr_options(&self) -> Vec<(String, String)> {
        pairs([
            ("label", self.label.clone()),
            ("epochs", self.epochs.to_string()),
            ("batch_size", self.batch_size.to_string()),
            (
                "learning_rate",
                self.learning_rate
                    .map_or_else(|| "auto".to_string(), |v| v.to_string()),
            ),
            ("optimizer", self.optimizer.name().to_string()),
            ("penalty", self.penalty.name().to_string()),
            ("c", self.c.to_string()),
            ("class_weight", self.class_weight.name().to_string()),
            ("tolerance", self.tolerance.to_string()),
            ("validation", self.validation.to_string()),
            ("keep_shared", self.keep_shared.to_string()),
            ("seed", self.seed.to_string()),
            ("dealer", self.dealer.clone()),
        ])
    }

    /// The optimizer settings.
    pub fn fit(&self) -> Fit {
        Fit {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            optimizer: self.optimizer,
            penalty: self.penalty,
            c: self.c,
            class_weight: self.class_weight,
            tolerance: self.tolerance,
            validation: self.validation,
            seed: self.seed,
        }
    }

    /// Checks every option: a label and a dealer are named, and the ranges of
    /// [`Fit::validate`] (epochs in 1..=100000, batch size in 1..=1048576, learning rate
    /// in (0, 10] and at most 1 for Adam, C > 0, tolerance in [0, 0.1), validation in
    /// [0, 0.5]).
    pub fn validate(&self) -> Result<()> {
        if self.label.trim().is_empty() {
            return Err(bad("option `label` (the label column) is missing"));
        }
        if self.dealer.is_empty() {
            return Err(bad("option `dealer` is missing"));
        }
        let names = PartyNames {
            active: "a".into(),
            passive: "b".into(),
            dealer: "d".into(),
        };
        if let Some(p) = self.gbdt_params(names) {
            return p.validate().map_err(|e| match e {
                TrainError::Params(m) => bad(m),
                e => e,
            });
        }
        self.fit().validate().map_err(TrainError::Options)
    }

    /// The training parameters of the job for the seats `parties`: the defaults of
    /// [`TrainParams::new`] with these options; with `keep_shared` the model is revealed
    /// to nobody.
    pub fn params(&self, parties: PartyNames) -> TrainParams {
        let mut p = TrainParams::new(parties);
        p.fit = self.fit();
        if self.keep_shared {
            p.reveal_to.clear();
        }
        p
    }
}

/// The options of a `predict` job: the model and the seats it was trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictOptions {
    /// The model id: the job id of the `train --keep-shared` job.
    pub model: String,
    /// The active party of the training job.
    pub active: String,
    /// The passive party of the training job.
    pub passive: String,
    /// The dealer of the training job (and of this one).
    pub dealer: String,
    /// Fixed-point fractional bits of the model.
    pub frac_bits: u32,
    /// Trees of a boosted model (`None` for logistic regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<usize>,
    /// Depth of a boosted model (`None` for logistic regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
}

impl PredictOptions {
    /// The option names.
    pub const KEYS: &'static [&'static str] = &[
        "model",
        "active",
        "passive",
        "dealer",
        "frac_bits",
        "trees",
        "depth",
    ];

    /// Parses and validates a job's string options (all required).
    pub fn from_options(
        options: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
    ) -> Result<Self> {
        let raw = Raw::new(options, Self::KEYS)?;
        let o = Self {
            model: raw.text("model")?,
            active: raw.text("active")?,
            passive: raw.text("passive")?,
            dealer: raw.text("dealer")?,
            frac_bits: raw.num("frac_bits", None)?,
            trees: raw
                .0
                .get("trees")
                .map(|_| raw.num("trees", None))
                .transpose()?,
            depth: raw
                .0
                .get("depth")
                .map(|_| raw.num("depth", None))
                .transpose()?,
        };
        o.validate().map(|()| o)
    }

    /// The options as a job carries them (the inverse of [`Self::from_options`]).
    pub fn to_options(&self) -> Vec<(String, String)> {
        pairs([
            ("model", self.model.clone()),
            ("active", self.active.clone()),
            ("passive", self.passive.clone()),
            ("dealer", self.dealer.clone()),
            ("frac_bits", self.frac_bits.to_string()),
        ])
        .into_iter()
        .chain(self.trees.map(|t| ("trees".to_string(), t.to_string())))
        .chain(self.depth.map(|d| ("depth".to_string(), d.to_string())))
        .collect()
    }

    /// The boosted-model scoring parameters (`None` for a logistic-regression model),
    /// with `receiver` learning the scores.
    pub fn gbdt_params(&self, receiver: &str) -> Option<GbdtPredictParams> {
        Some(GbdtPredictParams {
            parties: self.names(),
            receiver: receiver.to_string(),
            frac_bits: self.frac_bits,
            trees: self.trees?,
            depth: self.depth?,
        })
    }

    /// Checks the model id ([`check_model_id`]), that the three seats are distinct and
    /// that `frac_bits` is in 12..=24.
    pub fn validate(&self) -> Result<()> {
        check_model_id(&self.model)?;
        if self.trees.is_some() != self.depth.is_some() {
            return Err(bad(
                "options `trees` and `depth` go together (boosted models)",
            ));
        }
        limits::distinct(&self.active, &self.passive, &self.dealer)
            .and_then(|()| limits::frac_bits(self.frac_bits))
            .map_err(TrainError::Options)
    }

    /// The seats of the training job.
    pub fn names(&self) -> PartyNames {
        PartyNames {
            active: self.active.clone(),
            passive: self.passive.clone(),
            dealer: self.dealer.clone(),
        }
    }

    /// The scoring parameters, with `receiver` (the job's initiator) learning the scores.
    pub fn params(&self, receiver: &str) -> PredictParams {
        PredictParams {
            parties: self.names(),
            receiver: receiver.to_string(),
            frac_bits: self.frac_bits,
            batch_size: PREDICT_BATCH,
        }
    }
}

/// Model ids are job ids (1 to 64 hex digits); anything else could name a file outside
/// the models directory.
pub fn check_model_id(id: &str) -> Result<()> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(bad(format!(
            "`{id}` is not a model id (the job id of a `train --keep-shared` job)"
        )))
    }
}
