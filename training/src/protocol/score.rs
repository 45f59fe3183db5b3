//! Prediction with a secret-shared model: only the receiver learns the scores.

use std::num::Wrapping;

use confide_mpc::{Engine, FixedPoint, SharedVec, Transport};
use ndarray::Ix1;

use confide_mpc::offload::heavy;

use super::handshake::{Hello, handshake, params_json};
use super::prep::{encode_mat, input_size, prepare, seat_of};
use super::{PredictParams, Role, SharedModel};
use crate::error::{Result, TrainError};
use crate::limits;
use crate::table::LocalData;

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
    limits::batch_size(params.batch_size).map_err(TrainError::Params)?;
    let fp = FixedPoint::new(params.frac_bits)?;
    let params_json = params_json(params)?;
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
            let p = heavy(input_size(data.as_ref()), || {
                prepare(role, data.as_ref(), Some(&m.standardizer), false)
            })?;
            if p.x.ncols() != m.cols[expect] || m.weight_share.len() != m.cols[0] + m.cols[1] {
                return Err(TrainError::Data(
                    "input columns do not match the model".into(),
                ));
            }
            Ok((p, m))
        })()),
    };
    let mine = match &prep {
        Some(Ok((p, m))) => Ok(Hello::party(p, vec![format!("{:?}", m.cols)], &params_json)),
        Some(Err(e)) => Err(e.relay()),
        None => Ok(Hello::dealer(&params_json)),
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
    let own = heavy(n * cols[0].max(cols[1]), || {
        prep.as_ref().map(|(p, _)| encode_mat(fp, &p.x)).transpose()
    })?;
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
