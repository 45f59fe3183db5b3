//! Training at one seat: the optimizer on shares epoch by epoch until the stopping rule
//! ends it, the binned train AUC, the reveal.

use std::num::Wrapping;

use confide_mpc::ring::ZERO;
use confide_mpc::share::owned;
use confide_mpc::{Engine, FixedPoint, Party, R64, SharedVec, Transport};
use ndarray::Array1;

use confide_mpc::offload::heavy;

use super::checkpoint::{self, TrainCheckpoint};
use super::handshake::{Hello, handshake, params_json};
use super::prep::{encode_mat, input_size, prepare, seat_of};
use super::reveal::{reveal_model, secure_auc};
use super::step::{Inputs, Update, Weights, epoch as epoch_step, weight_inputs};
use super::{EpochProgress, Metrics, Model, Role, SharedModel, TrainOutcome, TrainParams};
use crate::error::{Result, TrainError};
use crate::optim::{ClassWeight, Schedule, Stop, batch_order, class_weights};
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
    train_checkpointed(t, role, data, params, progress, None).await
}

/// [`train`] with a checkpoint after every epoch in `ck.dir` ([`super::checkpoint`]); with
/// `ck.resume`, continues from the newest epoch every party's checkpoint holds. Every seat
/// must resume, or none. The schedule (epochs, batch order, step sizes, stopping) is the
/// uninterrupted run's; the weights equal its weights up to the fixed-point rounding of
/// the dealer's fresh randomness after the resume (see the crate docs).
pub async fn train_checkpointed<T: Transport>(
    t: &T,
    role: Role,
    data: Option<LocalData>,
    params: &TrainParams,
    progress: &(dyn Fn(EpochProgress) + Send + Sync),
    ck: Option<&TrainCheckpoint>,
) -> Result<TrainOutcome> {
    params.validate()?;
    let params_json = params_json(params)?;
    let ck_fp = checkpoint::fingerprint(&params_json, role as u8, data.as_ref());
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
    // On resume: the newest epoch every party holds.
    let resumed: Option<checkpoint::Saved> = checkpoint::resume_from(t, ck, &ck_fp, names).await?;
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
    let fit = &params.fit;
    let (train_rows, val_rows) = fit.split(n).map_err(TrainError::Params)?;
    let n_train = train_rows.len();

    let mut e = Engine::start(t, seat_of(role), names.engine_names(), fp).await?;
    let me = e.party();
    let both = [Party::P0, Party::P1];

    // Mask X once (the Beaver cache).
    let own = heavy(n * cols[0].max(cols[1]), || {
        prep.as_ref().map(|p| encode_mat(fp, &p.x)).transpose()
    })?;
    let m = e.mask_matrix(own.as_ref(), n, cols).await?;
    let p_or = me.unwrap_or(Party::P1);
    let y = prep.as_ref().and_then(|p| p.y.as_ref()).map(|y| y.to_vec());
    let y_fixed: Array1<R64> = match &y {
        Some(y) => Array1::from_vec(fp.encode_all(y)?),
        None => Array1::from_elem(n, ZERO),
    };
    let y_int = y_fixed.mapv(|v| if v == ZERO { ZERO } else { Wrapping(1) });
    let weights = match fit.class_weight {
        ClassWeight::None => None,
        cw => {
            // Party A weighs its training rows; validation rows keep weight 1 (unused).
            let c = y.as_ref().map(|y| {
                let yt: Vec<f64> = train_rows.iter().map(|&r| y[r]).collect();
                let mut c = vec![1.0; n];
                for (&r, w) in train_rows
                    .iter()
                    .zip(class_weights(cw, &yt).unwrap_or_default())
                {
                    c[r] = w;
                }
                c
            });
            Some(weight_inputs(fp, p_or, c.as_deref(), y.as_deref(), n)?)
        }
    };
    let inputs = Inputs {
        m: &m,
        y_fixed: owned(p_or, Party::P0, y_fixed),
        y_int: owned(p_or, Party::P0, y_int),
        weights,
    };

    let sig = params.sigmoid.spline();
    let up = Update::new(fit, n_train, d);
    let mut sched = Schedule::new(fit, n_train);
    let initial_rate = sched.rate;
    let mut st = Weights::zeros(d);
    let mut best = st.w.clone();
    let (mut losses, mut val_aucs, mut steps) = (Vec::new(), Vec::new(), 0);
    let mut epoch = 0;
    if let Some(s) = &resumed {
        if me.is_some() {
            if s.shares.iter().any(|v| v.len() != d) {
                return Err(TrainError::Checkpoint(
                    "the training checkpoint has the wrong number of weights".into(),
                ));
            }
            let v = |i: usize| checkpoint::vec_of(&s.shares[i]);
            st = Weights::import([v(0), v(1), v(2), v(3)], s.adam_t as usize);
            best = v(4);
            sched = Schedule::decode(fit, n_train, &s.sched).ok_or_else(|| {
                TrainError::Checkpoint("the training checkpoint's schedule is unreadable".into())
            })?;
        }
        losses = s.losses.clone();
        val_aucs = s.val_aucs.clone();
        steps = s.steps as usize;
        epoch = s.epoch as usize;
    }
    let resumed_epochs = epoch;
    // A job cut off after its last epoch (during the reveal) does not train again.
    let done = resumed.as_ref().and_then(|s| checkpoint::stop_of(s.stop));
    let stop = if let Some(s) = done {
        s
    } else {
        loop {
            let rate = sched.rate;
            let order: Vec<usize> = heavy(n_train, || {
                batch_order(fit.seed, epoch, n_train)
                    .into_iter()
                    .map(|i| train_rows[i])
                    .collect()
            });
            let loss = epoch_step(
                &mut e,
                &inputs,
                &mut st,
                &order,
                fit.batch_size,
                rate,
                &up,
                &sig,
            )
            .await?;
            steps += n_train.div_ceil(fit.batch_size);
            let val = if val_rows.is_empty() {
                None
            } else {
                let v = secure_auc(
                    &mut e,
                    &m,
                    &st.w,
                    &inputs.y_int,
                    &val_rows,
                    params.auc_bins,
                    fit.batch_size,
                    &both,
                )
                .await?;
                Some(v.map_or(0.5, |v| v.0))
            };
            epoch += 1;
            // The computing parties decide on the opened values; A tells the dealer.
            let (decision, loss) = match loss {
                Some(l) => {
                    losses.push(l);
                    val_aucs.extend(val);
                    let dec = sched.after_epoch(l, val);
                    if me == Some(Party::P0) {
                        t.send(&names.dealer, vec![u8::from(dec.stop.is_some())])
                            .await?;
                    }
                    (Some(dec), Some(l))
                }
                None => (None, None),
            };
            let stop = match &decision {
                Some(d) => d.stop,
                None => dealer_flag(t, &names.active, epoch, fit.epochs).await?,
            };
            progress(EpochProgress {
                epoch,
                epochs: fit.epochs,
                loss,
                validation_auc: val.filter(|_| me.is_some()),
                learning_rate: me.map(|_| rate),
                stop,
            });
            if let Some(dec) = decision {
                if dec.best {
                    best = st.w.clone();
                }
                if dec.restart {
                    st.restart();
                }
            }
            if let Some(c) = ck {
                let (parts, adam_t) = st.export();
                let share = |v: &SharedVec| {
                    if me.is_some() {
                        checkpoint::raw(v)
                    } else {
                        Vec::new()
                    }
                };
                let saved = checkpoint::Saved {
                    fingerprint: ck_fp,
                    epoch: epoch as u64,
                    steps: steps as u64,
                    sched: sched.encode(),
                    losses: losses.clone(),
                    val_aucs: val_aucs.clone(),
                    shares: [
                        share(parts[0]),
                        share(parts[1]),
                        share(parts[2]),
                        share(parts[3]),
                        share(&best),
                    ],
                    adam_t: adam_t as u64,
                    stop: checkpoint::stop_code(stop),
                };
                let dir = c.dir.clone();
                heavy(1, move || checkpoint::save(&dir, &saved))?;
            }
            if let Some(s) = stop {
                break s;
            }
        }
    };
    if !val_rows.is_empty() {
        st.w = best;
    }

    let train_auc = if params.auc_bins > 0 && !receivers.is_empty() {
        secure_auc(
            &mut e,
            &m,
            &st.w,
            &inputs.y_int,
            &train_rows,
            params.auc_bins,
            fit.batch_size,
            &receivers,
        )
        .await?
    } else {
        None
    };
    let w = st.w;
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
            validation_auc_per_epoch: val_aucs,
            best_epoch: sched.best_epoch(),
            train_auc: train_auc.map(|a| a.0),
            rows: n,
            validation_rows: val_rows.len(),
            positives: train_auc.map(|a| a.1),
            epochs: epoch,
            steps,
            stop,
            learning_rate: initial_rate,
            fit: fit.clone(),
            sigmoid: params.sigmoid,
            dropped_features: dropped,
        },
    });
    let shared = match (me, prep) {
        (Some(p), Some(prep)) => Some(SharedModel {
            party: p.index(),
            cols,
            frac_bits: fp.frac_bits(),
            weight_share: w.as_slice().iter().map(|v| v.0).collect(),
            standardizer: prep.std,
        }),
        _ => None,
    };
    Ok(TrainOutcome {
        model,
        shared,
        warnings,
        resumed_epochs,
    })
}

/// The dealer's copy of the stopping decision: party A's one-byte flag after each epoch
/// (1: stop). The dealer learns only how many epochs ran.
async fn dealer_flag<T: Transport>(
    t: &T,
    active: &str,
    epoch: usize,
    cap: usize,
) -> Result<Option<Stop>> {
    let msg = t.recv(active).await?;
    match msg.as_slice() {
        [0] if epoch < cap => Ok(None),
        [1] | [0] => Ok(Some(if epoch >= cap {
            Stop::Cap
        } else {
            Stop::Converged
        })),
        _ => Err(TrainError::Peer {
            peer: active.into(),
            reason: "bad stopping flag".into(),
        }),
    }
}
