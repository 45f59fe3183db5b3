//! After training: the binned AUC on shares (train and validation rows) and the
//! raw-unit reveal of the model.

use std::collections::BTreeMap;

use confide_mpc::ring::ZERO;
use confide_mpc::{Engine, MaskedMatrix, Party, R64, SharedVec, Transport};
use ndarray::Axis;

use super::PartyNames;
use super::handshake::{Hello, from_json, to_json};
use super::prep::{Prep, frexp_inv, sum_share};
use crate::error::{Result, TrainError};
use crate::optim::{AUC_RANGE, auc_thresholds, binned_auc};

/// Binned AUC on shares over `rows`: the counts of rows (and of positives) whose score
/// is at least each of `bins` public thresholds are opened to `to`; returns (AUC,
/// positives among `rows`) there. The dealer and parties not in `to` get `None`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn secure_auc<T: Transport>(
    e: &mut Engine<'_, T>,
    m: &MaskedMatrix,
    w: &SharedVec,
    y_int: &SharedVec,
    rows: &[usize],
    bins: usize,
    chunk: usize,
    to: &[Party],
) -> Result<Option<(f64, u64)>> {
    let thresholds = auc_thresholds(bins, AUC_RANGE);
    let f = e.fixed().frac_bits();
    let mut acc = vec![ZERO; 2 * bins + 1];
    acc[2 * bins] = sum_share(&SharedVec::from_raw(y_int.raw().select(Axis(0), rows)));
    for rows in rows.chunks(chunk.max(256)) {
        let z = e.masked_mul_vec(m, rows, w).await?;
        let z = e.trunc(&z, f).await?;
        let yb = SharedVec::from_raw(y_int.raw().select(Axis(0), rows));
        count_at_thresholds(e, &z, &yb, &thresholds, &mut acc).await?;
    }
    open_auc(e, acc, rows.len(), to).await
}

/// Adds to `acc` shares of, per public threshold `t`, the number of rows with score
/// `z ≥ t` (first `k` entries) and of positives among them (next `k`); `y` holds the
/// rows' 0/1 labels as shared integers.
pub(crate) async fn count_at_thresholds<T: Transport>(
    e: &mut Engine<'_, T>,
    z: &SharedVec,
    y: &SharedVec,
    thresholds: &[f64],
    acc: &mut [R64],
) -> Result<()> {
    let k = thresholds.len();
    if acc.len() < 2 * k || z.len() != y.len() {
        return Err(TrainError::Internal("AUC counts of the wrong size".into()));
    }
    let bits = e.ge_public(z, thresholds).await?;
    let mut lhs = Vec::with_capacity(k * z.len());
    let mut rhs = Vec::with_capacity(k * z.len());
    for (i, b) in bits.iter().enumerate() {
        acc[i] += sum_share(b);
        lhs.extend_from_slice(b.as_slice());
        rhs.extend_from_slice(y.as_slice());
    }
    let pos = e
        .mul(&SharedVec::from_vec(lhs), &SharedVec::from_vec(rhs))
        .await?;
    for (i, chunk) in pos.as_slice().chunks(z.len().max(1)).enumerate() {
        acc[k + i] += chunk.iter().copied().fold(ZERO, |a, b| a + b);
    }
    Ok(())
}

/// Opens `acc` (from [`count_at_thresholds`], then the number of positives) to `to` and
/// returns there the binned AUC over `rows` rows and the positives (`None` elsewhere, or
/// if a class is empty).
pub(crate) async fn open_auc<T: Transport>(
    e: &mut Engine<'_, T>,
    acc: Vec<R64>,
    rows: usize,
    to: &[Party],
) -> Result<Option<(f64, u64)>> {
    let k = acc.len() / 2;
    let Some(opened) = e.open_to(&SharedVec::from_vec(acc), to).await? else {
        return Ok(None);
    };
    let counts: Vec<f64> = opened.iter().map(|v| v.0 as f64).collect();
    let p = counts[2 * k];
    Ok(binned_auc(&counts[..k], &counts[k..2 * k], p, rows as f64).map(|a| (a, p as u64)))
}

/// Converts the standardized shared weights to raw units on shares and opens them to
/// the receivers. Each owner scales its columns by `1/std = a·2^e` (`a` on shares, the
/// exponent `e` sent in clear to the receivers) and folds `mean/std` into the intercept.
pub(super) async fn reveal_model<T: Transport>(
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
