//! A computing party's local preparation: standardization, intercept, fixed point.

use std::num::Wrapping;

use confide_mpc::engine::Seat;
use confide_mpc::ring::ZERO;
use confide_mpc::{FixedPoint, Party, R64, SharedVec};
use ndarray::{Array1, Array2, Axis};

use super::{CONST_BITS, MIN_ROWS, Role};
use crate::error::{Result, TrainError};
use crate::table::{LocalData, Standardizer, check_label};

pub(super) struct Prep {
    pub(super) std: Standardizer,
    pub(super) x: Array2<f64>,
    pub(super) y: Option<Array1<f64>>,
}

pub(super) fn prepare(
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

/// Work units of preparing `data` (cells), for [`confide_mpc::offload::heavy`].
pub(super) fn input_size(data: Option<&LocalData>) -> usize {
    data.map_or(0, |d| d.features.len())
}

pub(super) fn seat_of(role: Role) -> Seat {
    match role {
        Role::Active => Seat::Party(Party::P0),
        Role::Passive => Seat::Party(Party::P1),
        Role::Dealer => Seat::Dealer,
    }
}

pub(super) fn encode_mat(fp: FixedPoint, x: &Array2<f64>) -> Result<Array2<R64>> {
    let v = fp.encode_all(&x.iter().copied().collect::<Vec<_>>())?;
    Ok(Array2::from_shape_vec(x.dim(), v).expect("same shape"))
}

pub(super) fn enc_const(v: f64) -> R64 {
    Wrapping((v * (1u64 << CONST_BITS) as f64).round() as i64 as u64)
}

pub(super) fn sum_share(x: &SharedVec) -> R64 {
    x.as_slice().iter().copied().fold(ZERO, |a, b| a + b)
}

/// `1/s = a · 2^e` with `a ∈ [0.5, 1)`.
pub(super) fn frexp_inv(s: f64) -> (f64, i32) {
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
