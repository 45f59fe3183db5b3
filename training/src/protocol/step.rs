//! One secure epoch: the batches (forward pass, loss, gradient, optimizer update, L1
//! proximal step) and the loss opened to both computing parties at the end.

use std::num::Wrapping;

use confide_mpc::ring::ZERO;
use confide_mpc::{Engine, FixedPoint, MaskedMatrix, Party, R64, SharedVec, Spline, Transport};
use ndarray::{Array1, Axis, Ix1};

use super::CONST_BITS;
use super::adam::Adam;
use super::prep::{enc_const, sum_share};
use crate::error::{Result, TrainError};
use crate::optim::{Fit, MOMENTUM, Optimizer, Penalty};

/// The secret-shared training inputs a step reads (all over the `n` common rows).
pub(super) struct Inputs<'m> {
    /// The Beaver cache of X.
    pub(super) m: &'m MaskedMatrix,
    /// Labels in fixed point.
    pub(super) y_fixed: SharedVec,
    /// Labels as ring integers 0/1.
    pub(super) y_int: SharedVec,
    /// Class weights `c` and `c·y` in fixed point (party A's input), if any.
    pub(super) weights: Option<(SharedVec, SharedVec)>,
}

/// The model and the optimizer state, on shares (standardized units, intercept first).
pub(super) struct Weights {
    pub(super) w: SharedVec,
    /// Momentum (SGD, momentum, Nesterov).
    v: SharedVec,
    /// Adam's moments.
    adam: Adam,
}

impl Weights {
    pub(super) fn zeros(d: usize) -> Self {
        Self {
            w: SharedVec::zeros(Ix1(d)),
            v: SharedVec::zeros(Ix1(d)),
            adam: Adam::zeros(d),
        }
    }

    /// This party's shares of the model and the optimizer state (w, momentum, Adam's
    /// moments) and Adam's step count, for a checkpoint.
    pub(super) fn export(&self) -> ([&SharedVec; 4], usize) {
        let (m, v, t) = self.adam.parts();
        ([&self.w, &self.v, m, v], t)
    }

    /// The state of [`Self::export`].
    pub(super) fn import(parts: [SharedVec; 4], t: usize) -> Self {
        let [w, v, m, av] = parts;
        Self {
            w,
            v,
            adam: Adam::from_parts(m, av, t),
        }
    }

    /// Restarts the optimizer state (momentum, Adam's moments and step count) from zero.
    pub(super) fn restart(&mut self) {
        let d = self.w.len();
        self.v = SharedVec::zeros(Ix1(d));
        self.adam = Adam::zeros(d);
    }
}

fn pick(x: &SharedVec, rows: &[usize]) -> SharedVec {
    SharedVec::from_raw(x.raw().select(Axis(0), rows))
}

fn concat(parts: &[&SharedVec]) -> SharedVec {
    SharedVec::from_vec(parts.iter().flat_map(|p| p.as_slice().to_vec()).collect())
}

fn part(x: &SharedVec, i: usize, len: usize) -> SharedVec {
    SharedVec::from_vec(x.as_slice()[i * len..(i + 1) * len].to_vec())
}

/// The public per-job constants of the update.
pub(super) struct Update {
    /// λ per weight (0 for the intercept and without an L2 penalty), for the gradient.
    l2: Vec<f64>,
    /// λ of an L1 penalty (0 otherwise).
    l1: f64,
    /// λ as the penalty term of the loss uses it.
    lambda: f64,
    penalty: Penalty,
    momentum: bool,
    adam: bool,
    coef: (f64, f64),
}

impl Update {
    pub(super) fn new(fit: &Fit, n_train: usize, d: usize) -> Self {
        let lambda = fit.lambda(n_train);
        let l2 = (0..d)
            .map(|j| {
                if j > 0 && fit.penalty == Penalty::L2 {
                    lambda
                } else {
                    0.0
                }
            })
            .collect();
        let coef = fit.coefficients();
        Self {
            l2,
            l1: if fit.penalty == Penalty::L1 {
                lambda
            } else {
                0.0
            },
            lambda,
            penalty: fit.penalty,
            momentum: coef.1 != 0.0,
            adam: fit.optimizer == Optimizer::Adam,
            coef,
        }
    }
}

/// Runs one epoch over the training rows in `order` (row numbers, batch after batch) at
/// step size `rate`; returns the epoch's loss at both computing parties (`None` at the
/// dealer): the mean softplus-spline log-loss over the `n_train` rows plus the penalty.
#[allow(clippy::too_many_arguments)]
pub(super) async fn epoch<T: Transport>(
    e: &mut Engine<'_, T>,
    inputs: &Inputs<'_>,
    st: &mut Weights,
    order: &[usize],
    batch: usize,
    rate: f64,
    up: &Update,
    sig: &Spline,
) -> Result<Option<f64>> {
    let fp = e.fixed();
    let f = fp.frac_bits();
    let softplus = Spline::softplus8();
    let mut loss_acc = ZERO;
    for rows in order.chunks(batch) {
        let z = e.masked_mul_vec(inputs.m, rows, &st.w).await?;
        let z = e.trunc(&z, f).await?;
        let outs = e.splines(&z, &[sig, &softplus]).await?;
        let err = outs[0].sub(&pick(&inputs.y_fixed, rows))?;
        let (err, loss) = match &inputs.weights {
            None => {
                let yz = e.mul(&pick(&inputs.y_int, rows), &z).await?;
                (err, outs[1].sub(&yz)?)
            }
            Some((c, cy)) => {
                let c = pick(c, rows);
                let lhs = concat(&[&err, &outs[1], &z]);
                let rhs = concat(&[&c, &c, &pick(cy, rows)]);
                let p = e.mul_fixed(&lhs, &rhs).await?;
                let k = rows.len();
                (part(&p, 0, k), part(&p, 1, k).sub(&part(&p, 2, k))?)
            }
        };
        loss_acc += sum_share(&loss);
        let g = e.masked_tmul_vec(inputs.m, rows, &err).await?;
        let g = e.trunc(&g, f).await?;
        step(e, st, &g, rows.len(), rate, up).await?;
    }
    let pen = penalty_share(e, &st.w, up).await?;
    let opened = e.open(&SharedVec::from_vec(vec![loss_acc, pen])).await?;
    if e.is_dealer() {
        return Ok(None);
    }
    let n_train = order.len() as f64;
    let pen = match up.penalty {
        Penalty::None => 0.0,
        // ‖w‖² is at 2f fractional bits.
        Penalty::L2 => up.lambda / 2.0 * fp.decode(opened[1]) / 2f64.powi(f as i32),
        Penalty::L1 => up.lambda * fp.decode(opened[1]),
    };
    Ok(Some(fp.decode(opened[0]) / n_train + pen))
}

/// The optimizer update for a batch of `k` rows with gradient sum `g` (f bits):
/// `v ← μv + ĝ`, `w ← w − η(a·ĝ + b·v)` with `ĝ = g/k + λ₂w`, one truncation for both
/// (Adam: [`Adam::step`]); then, with an L1 penalty, the proximal step
/// `w ← w − clamp(w, −ηλ₁, ηλ₁)`.
async fn step<T: Transport>(
    e: &mut Engine<'_, T>,
    st: &mut Weights,
    g: &SharedVec,
    k: usize,
    rate: f64,
    up: &Update,
) -> Result<()> {
    if up.adam {
        let delta = st.adam.step(e, &st.w, g, k, rate, &up.l2).await?;
        st.w = st.w.sub(&delta)?;
    } else {
        momentum_step(e, st, g, k, rate, up).await?;
    }
    if up.l1 > 0.0 {
        st.w = prox_l1(e, &st.w, rate * up.l1).await?;
    }
    Ok(())
}

/// SGD, momentum and Nesterov in the old momentum's coefficients ([`Fit::coefficients`]).
async fn momentum_step<T: Transport>(
    e: &mut Engine<'_, T>,
    st: &mut Weights,
    g: &SharedVec,
    k: usize,
    rate: f64,
    up: &Update,
) -> Result<()> {
    let d = st.w.len();
    let inv = 1.0 / k as f64;
    let (a, b) = up.coef;
    let lin = |cg: f64, cw: &dyn Fn(usize) -> f64, cv: f64| -> Array1<R64> {
        let (gr, wr, vr) = (g.raw(), st.w.raw(), st.v.raw());
        (0..d)
            .map(|j| enc_const(cg) * gr[j] + enc_const(cw(j)) * wr[j] + enc_const(cv) * vr[j])
            .collect()
    };
    let w_step = lin(rate * a * inv, &|j| rate * a * up.l2[j], rate * b);
    let both = if up.momentum {
        let v_next = lin(inv, &|j| up.l2[j], MOMENTUM);
        let mut all = w_step.to_vec();
        all.extend(v_next);
        all
    } else {
        w_step.to_vec()
    };
    let t = e.trunc(&SharedVec::from_vec(both), CONST_BITS).await?;
    st.w = st.w.sub(&part(&t, 0, d))?;
    if up.momentum {
        st.v = part(&t, 1, d);
    }
    Ok(())
}

/// `w − clamp(w, −t, t)` on every weight but the intercept (soft thresholding).
async fn prox_l1<T: Transport>(e: &mut Engine<'_, T>, w: &SharedVec, t: f64) -> Result<SharedVec> {
    let clamp = Spline::new(vec![-t, t], vec![(-t, 0.0), (0.0, 1.0), (t, 0.0)])
        .ok_or_else(|| TrainError::Params(format!("L1 threshold {t} is not usable")))?;
    let rest = SharedVec::from_vec(w.as_slice()[1..].to_vec());
    let c = e.splines(&rest, &[&clamp]).await?;
    let mut out = vec![w.as_slice()[0]];
    out.extend_from_slice(rest.sub(&c[0])?.as_slice());
    Ok(SharedVec::from_vec(out))
}

/// A share of the penalty's norm of `w` without the intercept: `‖w‖²` (2f bits) for L2,
/// `‖w‖₁` (f bits) for L1, 0 otherwise.
async fn penalty_share<T: Transport>(
    e: &mut Engine<'_, T>,
    w: &SharedVec,
    up: &Update,
) -> Result<R64> {
    let rest = SharedVec::from_vec(w.as_slice()[1..].to_vec());
    match up.penalty {
        Penalty::None => Ok(ZERO),
        Penalty::L2 => Ok(sum_share(&e.mul(&rest, &rest).await?)),
        Penalty::L1 => {
            let me = e.party().unwrap_or(Party::P1);
            let ge = e.ge_public(&rest, &[0.0]).await?;
            let sign = ge[0]
                .mul_public(Wrapping(2))
                .add_scalar(me, Wrapping(u64::MAX));
            Ok(sum_share(&e.mul(&sign, &rest).await?))
        }
    }
}

/// Encodes party A's class weights (over all `n` rows) as the shares a step reads.
pub(super) fn weight_inputs(
    fp: FixedPoint,
    me: Party,
    c: Option<&[f64]>,
    y: Option<&[f64]>,
    n: usize,
) -> Result<(SharedVec, SharedVec)> {
    let (cv, cy) = match (c, y) {
        (Some(c), Some(y)) => {
            let cy: Vec<f64> = c.iter().zip(y).map(|(c, y)| c * y).collect();
            (fp.encode_all(c)?, fp.encode_all(&cy)?)
        }
        _ => (vec![ZERO; n], vec![ZERO; n]),
    };
    let own = |v: Vec<R64>| confide_mpc::share::owned(me, Party::P0, Array1::from_vec(v));
    Ok((own(cv), own(cy)))
}
