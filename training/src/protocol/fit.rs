//! Training at one seat: mini-batch SGD on shares, the binned train AUC, the reveal.

use std::collections::BTreeMap;
use std::num::Wrapping;

use confide_mpc::ring::ZERO;
use confide_mpc::share::owned;
use confide_mpc::{Engine, FixedPoint, MaskedMatrix, Party, R64, SharedVec, Spline, Transport};
use ndarray::{Array1, Axis, Ix1};

use confide_mpc::offload::heavy;

use super::handshake::{Hello, from_json, handshake, params_json, to_json};
use super::prep::{
    Prep, enc_const, encode_mat, frexp_inv, input_size, prepare, seat_of, sum_share,
};
use super::{
    AUC_RANGE, CONST_BITS, EpochProgress, Metrics, Model, PartyNames, Role, SharedModel,
    TrainOutcome, TrainParams,
};
use crate::error::{Result, TrainError};
use crate::plain::batch_order;
use crate::table::LocalData;

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
    let params_json = params_json(params)?;
    let fp = FixedPoint::new(params.frac_bits)?;
    let names = &params.parties;
    let prep = if role == Role::Dealer {
        None
    } else {
        Some(heavy(input_size(data.as_ref()), || {
            prepare(role, data.as_ref(), None, true)
        }))
    };
    let mine = match &prep {
        Some(Ok(p)) => Ok(Hello::party(p, p.std.names.clone(), &params_json)),
        Some(Err(e)) => Err(e.relay()),
        None => Ok(Hello::dealer(&params_json)),
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
    let own = heavy(n * cols[0].max(cols[1]), || {
        prep.as_ref().map(|p| encode_mat(fp, &p.x)).transpose()
    })?;
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
        let order = heavy(n, || batch_order(params.seed, epoch, n));
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
