//! The three-seat protocols: [`train`] and [`predict_shared`].

use std::collections::BTreeMap;
use std::fmt;
use std::num::Wrapping;

use confide_mpc::engine::{Names, Seat};
use confide_mpc::ring::ZERO;
use confide_mpc::share::owned;
use confide_mpc::{Engine, FixedPoint, MaskedMatrix, Party, R64, SharedVec, Spline, Transport};
use ndarray::{Array1, Array2, Axis, Ix1};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::{Result, TrainError};
use crate::plain::batch_order;
use crate::table::{LocalData, Standardizer, check_label};

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
    fn engine_names(&self) -> Names {
        Names {
            p0: self.active.clone(),
            p1: self.passive.clone(),
            dealer: self.dealer.clone(),
        }
    }

    fn validate(&self) -> Result<()> {
        if self.active == self.passive || self.active == self.dealer || self.passive == self.dealer
        {
            return Err(TrainError::Params(
                "the three seats need distinct party names".into(),
            ));
        }
        Ok(())
    }

    fn to_parties(&self, names: &[String]) -> Result<Vec<Party>> {
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
        if self.epochs == 0 || self.epochs > 100_000 {
            return bad(format!("epochs must be in 1..=100000, got {}", self.epochs));
        }
        if self.batch_size == 0 {
            return bad("batch size must be positive".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 10.0) {
            return bad(format!(
                "learning rate must be in (0, 10], got {}",
                self.learning_rate
            ));
        }
        if !(self.l2 >= 0.0 && self.l2 * self.learning_rate < 1.0) {
            return bad(format!(
                "l2 must be ≥ 0 with l2 · learning rate < 1, got {}",
                self.l2
            ));
        }
        if !(12..=24).contains(&self.frac_bits) {
            return bad(format!(
                "frac_bits must be in 12..=24, got {}",
                self.frac_bits
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Hello {
    rows: usize,
    cols: usize,
    features: Vec<String>,
    params: String,
    error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    error: Option<String>,
}

fn to_json<S: Serialize>(v: &S) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs serialize")
}

fn from_json<D: for<'de> Deserialize<'de>>(peer: &str, b: &[u8]) -> Result<D> {
    serde_json::from_slice(b).map_err(|e| TrainError::Peer {
        peer: peer.into(),
        reason: format!("bad message: {e}"),
    })
}

/// The opening exchange. Parties tell each other (and the dealer) their row and column
/// counts, feature names (not to the dealer), the parameters and any local error; the
/// dealer answers with a verdict. Returns the peer's hello at a party, both hellos at the
/// dealer. Every seat fails if any seat reported an error or the shapes disagree.
async fn handshake<T: Transport>(
    t: &T,
    role: Role,
    names: &PartyNames,
    params_json: &str,
    mine: std::result::Result<Hello, TrainError>,
) -> Result<[Hello; 2]> {
    let (me, peer) = match role {
        Role::Active => (&names.active, &names.passive),
        Role::Passive => (&names.passive, &names.active),
        Role::Dealer => {
            let (a, b) = tokio::join!(t.recv(&names.active), t.recv(&names.passive));
            let a: Hello = from_json(&names.active, &a?)?;
            let b: Hello = from_json(&names.passive, &b?)?;
            let err = if let Some(e) = a.error.as_ref().or(b.error.as_ref()) {
                Some(format!("a party failed: {e}"))
            } else if a.params != params_json || b.params != params_json {
                Some("the parties' job parameters differ from the dealer's".to_string())
            } else if a.rows != b.rows {
                Some(format!("row counts differ: {} vs {}", a.rows, b.rows))
            } else {
                None
            };
            let v = to_json(&Verdict { error: err.clone() });
            let (s1, s2) =
                tokio::join!(t.send(&names.active, v.clone()), t.send(&names.passive, v));
            s1?;
            s2?;
            return match err {
                Some(e) => Err(TrainError::Data(e)),
                None => Ok([a, b]),
            };
        }
    };
    let _ = me;
    let (hello, local_err) = match mine {
        Ok(h) => (h, None),
        Err(e) => (
            Hello {
                rows: 0,
                cols: 0,
                features: vec![],
                params: params_json.to_string(),
                error: Some(e.to_string()),
            },
            Some(e),
        ),
    };
    let to_dealer = Hello {
        features: vec![],
        ..hello.clone()
    };
    let (s1, s2, r) = tokio::join!(
        t.send(peer, to_json(&hello)),
        t.send(&names.dealer, to_json(&to_dealer)),
        t.recv(peer)
    );
    s1?;
    s2?;
    let theirs: Hello = from_json(peer, &r?)?;
    let verdict: Verdict = from_json(&names.dealer, &t.recv(&names.dealer).await?)?;
    if let Some(e) = local_err {
        return Err(e);
    }
    if let Some(e) = theirs.error {
        return Err(TrainError::Peer {
            peer: peer.clone(),
            reason: e,
        });
    }
    if theirs.params != params_json {
        return Err(TrainError::Params(format!(
            "job parameters differ from `{peer}`'s"
        )));
    }
    if theirs.rows != hello.rows {
        return Err(TrainError::Data(format!(
            "row counts differ: {} here, {} at `{peer}` (inputs are not aligned)",
            hello.rows, theirs.rows
        )));
    }
    if let Some(e) = verdict.error {
        return Err(TrainError::Peer {
            peer: names.dealer.clone(),
            reason: e,
        });
    }
    Ok(match role {
        Role::Active => [hello, theirs],
        _ => [theirs, hello],
    })
}

struct Prep {
    std: Standardizer,
    x: Array2<f64>,
    y: Option<Array1<f64>>,
}

fn prepare(
    role: Role,
    data: Option<&LocalData>,
    std: Option<&Standardizer>,
    need_label: bool,
) -> Result<Prep> {
    let data = data.ok_or_else(|| TrainError::Data("a computing party needs local data".into()))?;
    if data.features.nrows() < MIN_ROWS {
        return Err(TrainError::Data(format!(
            "too few common rows: {} (at least {MIN_ROWS} needed)",
            data.features.nrows()
        )));
    }
    let std = match std {
        Some(s) => s.clone(),
        None => Standardizer::fit(&data.feature_names, &data.features)?,
    };
    if let Some(missing) = std.kept.iter().find(|&&j| j >= data.features.ncols()) {
        return Err(TrainError::Data(format!(
            "model column {missing} missing from the input"
        )));
    }
    for (name, &j) in std.names.iter().zip(&std.kept) {
        if data.feature_names.get(j) != Some(name) {
            return Err(TrainError::Data(format!(
                "column {j} must be `{name}` as at training time"
            )));
        }
    }
    let y = match role {
        Role::Active if need_label => {
            Some(check_label(data.label.as_ref(), data.features.nrows())?)
        }
        _ => None,
    };
    let mut x = std.transform(&data.features);
    if role == Role::Active {
        x = ndarray::concatenate(Axis(1), &[Array2::ones((x.nrows(), 1)).view(), x.view()])
            .expect("same row count");
    }
    Ok(Prep { std, x, y })
}

fn seat_of(role: Role) -> Seat {
    match role {
        Role::Active => Seat::Party(Party::P0),
        Role::Passive => Seat::Party(Party::P1),
        Role::Dealer => Seat::Dealer,
    }
}

fn encode_mat(fp: FixedPoint, x: &Array2<f64>) -> Result<Array2<R64>> {
    let v = fp.encode_all(&x.iter().copied().collect::<Vec<_>>())?;
    Ok(Array2::from_shape_vec(x.dim(), v).expect("same shape"))
}

fn enc_const(v: f64) -> R64 {
    Wrapping((v * (1u64 << CONST_BITS) as f64).round() as i64 as u64)
}

fn sum_share(x: &SharedVec) -> R64 {
    x.as_slice().iter().copied().fold(ZERO, |a, b| a + b)
}

/// `1/s = a · 2^e` with `a ∈ [0.5, 1)`.
fn frexp_inv(s: f64) -> (f64, i32) {
    let r = 1.0 / s;
    let mut e = r.log2().floor() as i32 + 1;
    let mut a = r / 2f64.powi(e);
    while a >= 1.0 {
        a /= 2.0;
        e += 1;
    }
    while a < 0.5 {
        a *= 2.0;
        e -= 1;
    }
    (a, e)
}

/// Trains vertical logistic regression at one seat (see the crate docs for the protocol
/// and its leakage). `data` is the party's rows in the agreed common order (`None` at the
/// dealer); the active party's data must carry the label.
pub async fn train<T: Transport>(
    t: &T,
    role: Role,
    data: Option<LocalData>,
    params: &TrainParams,
    progress: &(dyn Fn(EpochProgress) + Send + Sync),
) -> Result<TrainOutcome> {
    params.validate()?;
    let params_json = serde_json::to_string(params).expect("params serialize");
    let fp = FixedPoint::new(params.frac_bits)?;
    let names = &params.parties;
    let prep = if role == Role::Dealer {
        None
    } else {
        Some(prepare(role, data.as_ref(), None, true))
    };
    let mine = match &prep {
        Some(Ok(p)) => Ok(Hello {
            rows: p.x.nrows(),
            cols: p.x.ncols(),
            features: p.std.names.clone(),
            params: params_json.clone(),
            error: None,
        }),
        Some(Err(e)) => Err(TrainError::Data(e.to_string())),
        None => Ok(Hello {
            rows: 0,
            cols: 0,
            features: vec![],
            params: params_json.clone(),
            error: None,
        }),
    };
    let hellos = handshake(t, role, names, &params_json, mine).await?;
    let prep = prep.transpose()?;
    let n = hellos[0].rows;
    let cols = [hellos[0].cols, hellos[1].cols];
    let d = cols[0] + cols[1];
    if d > n {
        return Err(TrainError::Data(format!(
            "more features ({}) than common rows ({n})",
            d - 1
        )));
    }
    let mut warnings = Vec::new();
    if let Some(p) = &prep {
        for c in &p.std.dropped {
            warnings.push(format!("constant feature `{c}` dropped"));
        }
    }
    let receivers = names.to_parties(&params.reveal_to)?;

    let mut e = Engine::start(t, seat_of(role), names.engine_names(), fp).await?;
    let me = e.party();
    let f = fp.frac_bits();

    // Mask X once (the Beaver cache).
    let own = prep.as_ref().map(|p| encode_mat(fp, &p.x)).transpose()?;
    let m = e.mask_matrix(own.as_ref(), n, cols).await?;
    let p_or = me.unwrap_or(Party::P1);
    let y_fixed: Array1<R64> = match prep.as_ref().and_then(|p| p.y.as_ref()) {
        Some(y) => Array1::from_vec(fp.encode_all(y.as_slice().expect("contiguous"))?),
        None => Array1::from_elem(n, ZERO),
    };
    let y_int = y_fixed.mapv(|v| if v == ZERO { ZERO } else { Wrapping(1) });
    let y_fixed = owned(p_or, Party::P0, y_fixed);
    let y_int = owned(p_or, Party::P0, y_int);

    let sig = params.sigmoid.spline();
    let softplus = Spline::softplus8();
    let mut w = SharedVec::zeros(Ix1(d));
    // Update constants at CONST_BITS: w ← (w·decay + step·lr/B) ≫ CONST_BITS.
    let decay: Array1<R64> = (0..d)
        .map(|j| {
            enc_const(if j == 0 {
                1.0
            } else {
                1.0 - params.learning_rate * params.l2
            })
        })
        .collect();
    let mut losses = Vec::new();
    for epoch in 0..params.epochs {
        let order = batch_order(params.seed, epoch, n);
        let mut loss_acc = ZERO;
        for rows in order.chunks(params.batch_size) {
            let z = e.masked_mul_vec(&m, rows, &w).await?;
            let z = e.trunc(&z, f).await?;
            let outs = if params.track_loss {
                e.splines(&z, &[&sig, &softplus]).await?
            } else {
                e.splines(&z, &[&sig]).await?
            };
            let yb = SharedVec::from_raw(y_fixed.raw().select(Axis(0), rows));
            let err = outs[0].sub(&yb)?;
            if params.track_loss {
                let yi = SharedVec::from_raw(y_int.raw().select(Axis(0), rows));
                let yz = e.mul(&yi, &z).await?;
                loss_acc += sum_share(&outs[1].sub(&yz)?);
            }
            let g = e.masked_tmul_vec(&m, rows, &err).await?;
            let g = e.trunc(&g, f).await?;
            let step = enc_const(params.learning_rate / rows.len() as f64);
            let mut next = w.raw() * &decay;
            next.scaled_add(-step, g.raw());
            w = e.trunc(&SharedVec::from_raw(next), CONST_BITS).await?;
        }
        let loss = if params.track_loss {
            let v = e
                .open_to(&SharedVec::from_vec(vec![loss_acc]), &receivers)
                .await?;
            v.map(|v| fp.decode(v[0]) / n as f64)
        } else {
            None
        };
        if let Some(l) = loss {
            losses.push(l);
        }
        progress(EpochProgress {
            epoch: epoch + 1,
            epochs: params.epochs,
            loss,
        });
    }

    let train_auc = if params.auc_bins > 0 && !receivers.is_empty() {
        binned_auc(&mut e, &m, &w, &y_int, n, params, &receivers).await?
    } else {
        None
    };
    let dropped = prep
        .as_ref()
        .map(|p| p.std.dropped.clone())
        .unwrap_or_default();
    let model = reveal_model(&mut e, &w, prep.as_ref(), &hellos, cols, &receivers, names).await?;
    let model = model.map(|(intercept, weights)| Model {
        intercept,
        weights,
        metrics: Metrics {
            loss_per_epoch: losses,
            train_auc: train_auc.map(|a| a.0),
            rows: n,
            positives: train_auc.map(|a| a.1),
            epochs: params.epochs,
            sigmoid: params.sigmoid,
            dropped_features: dropped,
        },
    });
    let shared = match (me, prep) {
        (Some(p), Some(prep)) => Some(SharedModel {
            party: p.index(),
            cols,
            frac_bits: f,
            weight_share: w.as_slice().iter().map(|v| v.0).collect(),
            standardizer: prep.std,
        }),
        _ => None,
    };
    Ok(TrainOutcome {
        model,
        shared,
        warnings,
    })
}

/// Binned train AUC on shares: counts of rows (and of positives) with score ≥ each
/// threshold are opened to the receivers; returns (AUC, positives) there.
async fn binned_auc<T: Transport>(
    e: &mut Engine<'_, T>,
    m: &MaskedMatrix,
    w: &SharedVec,
    y_int: &SharedVec,
    n: usize,
    params: &TrainParams,
    receivers: &[Party],
) -> Result<Option<(f64, u64)>> {
    let k = params.auc_bins;
    let thresholds: Vec<f64> = (0..k)
        .map(|i| -AUC_RANGE + 2.0 * AUC_RANGE * i as f64 / (k - 1) as f64)
        .collect();
    let f = e.fixed().frac_bits();
    let mut acc = vec![ZERO; 2 * k + 1];
    acc[2 * k] = sum_share(y_int);
    let all: Vec<usize> = (0..n).collect();
    for rows in all.chunks(params.batch_size.max(256)) {
        let z = e.masked_mul_vec(m, rows, w).await?;
        let z = e.trunc(&z, f).await?;
        let bits = e.ge_public(&z, &thresholds).await?;
        let yb = y_int.raw().select(Axis(0), rows);
        let mut lhs = Vec::with_capacity(k * rows.len());
        let mut rhs = Vec::with_capacity(k * rows.len());
        for (i, b) in bits.iter().enumerate() {
            acc[i] += sum_share(b);
            lhs.extend_from_slice(b.as_slice());
            rhs.extend(yb.iter().copied());
        }
        let pos = e
            .mul(&SharedVec::from_vec(lhs), &SharedVec::from_vec(rhs))
            .await?;
        for (i, chunk) in pos.as_slice().chunks(rows.len()).enumerate() {
            acc[k + i] += chunk.iter().copied().fold(ZERO, |a, b| a + b);
        }
    }
    let Some(opened) = e.open_to(&SharedVec::from_vec(acc), receivers).await? else {
        return Ok(None);
    };
    let p = opened[2 * k].0 as f64;
    let neg = n as f64 - p;
    if p == 0.0 || neg == 0.0 {
        return Ok(None);
    }
    // ROC points from the strictest threshold to the loosest.
    let mut pts = vec![(0.0, 0.0)];
    for i in (0..k).rev() {
        let (c, pk) = (opened[i].0 as f64, opened[k + i].0 as f64);
        pts.push(((c - pk) / neg, pk / p));
    }
    pts.push((1.0, 1.0));
    let area = pts
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum();
    Ok(Some((area, p as u64)))
}

/// Converts the standardized shared weights to raw units on shares and opens them to
/// the receivers. Each owner scales its columns by `1/std = a·2^e` (`a` on shares, the
/// exponent `e` sent in clear to the receivers) and folds `mean/std` into the intercept.
async fn reveal_model<T: Transport>(
    e: &mut Engine<'_, T>,
    w: &SharedVec,
    prep: Option<&Prep>,
    hellos: &[Hello; 2],
    cols: [usize; 2],
    receivers: &[Party],
    names: &PartyNames,
) -> Result<Option<(f64, BTreeMap<String, f64>)>> {
    if receivers.is_empty() {
        return Ok(None);
    }
    let fp = e.fixed();
    let d = cols[0] + cols[1];
    let me = e.party();
    // This party's (a, q = mean/std, exponent) per own column; the intercept column is (1, 0, 0).
    let mut a_share = vec![ZERO; d];
    let mut q_share = vec![ZERO; d];
    let mut exps = Vec::new();
    if let (Some(p), Some(prep)) = (me, prep) {
        let offset = if p.is_first() { 0 } else { cols[0] };
        let skip = usize::from(p.is_first());
        if p.is_first() {
            a_share[0] = fp.encode(1.0)?;
        }
        for (j, (&mean, &std)) in prep.std.means.iter().zip(&prep.std.stds).enumerate() {
            let (a, ex) = frexp_inv(std);
            a_share[offset + skip + j] = fp.encode(a)?;
            q_share[offset + skip + j] = fp.encode(mean / std)?;
            exps.push(ex);
        }
    }
    let mut ww = w.as_slice().to_vec();
    ww.extend_from_slice(w.as_slice());
    a_share.extend(q_share);
    let prod = e
        .mul_fixed(&SharedVec::from_vec(ww), &SharedVec::from_vec(a_share))
        .await?;
    let prod = prod.as_slice();
    let mut r = prod[..d].to_vec();
    r[0] = prod[0] - prod[d + 1..].iter().copied().fold(ZERO, |a, b| a + b);
    let opened = e.open_to(&SharedVec::from_vec(r), receivers).await?;
    // Exponents go, in clear, from each owner to the other party if it is a receiver.
    let Some(p) = me else { return Ok(None) };
    let t = e.transport();
    let peer = names.engine_names().party(p.other()).to_string();
    let send = async {
        if receivers.contains(&p.other()) {
            t.send(&peer, to_json(&exps)).await
        } else {
            Ok(())
        }
    };
    let recv = async {
        if receivers.contains(&p) {
            t.recv(&peer).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let (s, r) = tokio::join!(send, recv);
    s?;
    let (Some(opened), Some(theirs)) = (opened, r?) else {
        return Ok(None);
    };
    let theirs: Vec<i32> = from_json(&peer, &theirs)?;
    let (exp0, exp1) = if p.is_first() {
        (exps, theirs)
    } else {
        (theirs, exps)
    };
    if exp0.len() + 1 != cols[0] || exp1.len() != cols[1] {
        return Err(TrainError::Peer {
            peer,
            reason: "wrong number of exponents".into(),
        });
    }
    let (n0, n1) = (&hellos[0].features, &hellos[1].features);
    let qualify = |name: &String, party: &str, other: &[String]| {
        if other.contains(name) {
            format!("{party}.{name}")
        } else {
            name.clone()
        }
    };
    let mut weights = BTreeMap::new();
    for (j, name) in n0.iter().enumerate() {
        let v = fp.decode(opened[1 + j]) * 2f64.powi(exp0[j]);
        weights.insert(qualify(name, &names.active, n1), v);
    }
    for (j, name) in n1.iter().enumerate() {
        let v = fp.decode(opened[cols[0] + j]) * 2f64.powi(exp1[j]);
        weights.insert(qualify(name, &names.passive, n0), v);
    }
    Ok(Some((fp.decode(opened[0]), weights)))
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

/// Scores aligned rows with a secret-shared model: neither party sees the other's
/// features or weights; only `receiver` learns the scores σ(x·w) (returned there,
/// `None` elsewhere). The dealer passes `data = None, model = None`.
pub async fn predict_shared<T: Transport>(
    t: &T,
    role: Role,
    data: Option<LocalData>,
    model: Option<&SharedModel>,
    params: &PredictParams,
) -> Result<Option<Vec<f64>>> {
    params.parties.validate()?;
    let receiver = params
        .parties
        .to_parties(std::slice::from_ref(&params.receiver))?[0];
    if params.batch_size == 0 {
        return Err(TrainError::Params("batch size must be positive".into()));
    }
    let fp = FixedPoint::new(params.frac_bits)?;
    let params_json = serde_json::to_string(params).expect("params serialize");
    let prep = match role {
        Role::Dealer => None,
        _ => Some((|| {
            let m = model.ok_or_else(|| {
                TrainError::Data("a computing party needs its model share".into())
            })?;
            let expect = if role == Role::Active { 0 } else { 1 };
            if m.party != expect || m.frac_bits != params.frac_bits {
                return Err(TrainError::Data(
                    "the model share does not belong to this role or precision".into(),
                ));
            }
            let p = prepare(role, data.as_ref(), Some(&m.standardizer), false)?;
            if p.x.ncols() != m.cols[expect] || m.weight_share.len() != m.cols[0] + m.cols[1] {
                return Err(TrainError::Data(
                    "input columns do not match the model".into(),
                ));
            }
            Ok((p, m))
        })()),
    };
    let mine = match &prep {
        Some(Ok((p, m))) => Ok(Hello {
            rows: p.x.nrows(),
            cols: p.x.ncols(),
            features: vec![format!("{:?}", m.cols)],
            params: params_json.clone(),
            error: None,
        }),
        Some(Err(e)) => Err(TrainError::Data(e.to_string())),
        None => Ok(Hello {
            rows: 0,
            cols: 0,
            features: vec![],
            params: params_json.clone(),
            error: None,
        }),
    };
    let hellos = handshake(t, role, &params.parties, &params_json, mine).await?;
    let prep = prep.transpose()?;
    if role != Role::Dealer && hellos[0].features != hellos[1].features {
        return Err(TrainError::Data(
            "the two model shares are from different models".into(),
        ));
    }
    let n = hellos[0].rows;
    let cols = [hellos[0].cols, hellos[1].cols];
    let mut e = Engine::start(t, seat_of(role), params.parties.engine_names(), fp).await?;
    let own = prep
        .as_ref()
        .map(|(p, _)| encode_mat(fp, &p.x))
        .transpose()?;
    let m = e.mask_matrix(own.as_ref(), n, cols).await?;
    let w = match &prep {
        Some((_, model)) => {
            SharedVec::from_vec(model.weight_share.iter().map(|&v| Wrapping(v)).collect())
        }
        None => SharedVec::zeros(Ix1(cols[0] + cols[1])),
    };
    let mut scores = Vec::new();
    let all: Vec<usize> = (0..n).collect();
    for rows in all.chunks(params.batch_size) {
        let z = e.masked_mul_vec(&m, rows, &w).await?;
        let z = e.trunc(&z, fp.frac_bits()).await?;
        if let Some(z) = e.open_to(&z, &[receiver]).await? {
            scores.extend(
                z.iter()
                    .map(|v| confide_mpc::sigmoid::sigmoid(fp.decode(*v))),
            );
        }
    }
    Ok((e.party() == Some(receiver)).then_some(scores))
}
