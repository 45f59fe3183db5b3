//! The boosted-tree entry points at one seat: [`train_gbdt`] and [`predict_gbdt`].

use confide_mpc::engine::Seat;
use confide_mpc::offload::heavy;
use confide_mpc::share::owned;
use confide_mpc::{Engine, FixedPoint, Party, R64, SharedVec, Transport};
use ndarray::{Array1, Array2};

use super::bins::{Binned, goes_left};
use super::checkpoint::{self as ck, After, State};
use super::early::{dealer_flag, secure_validation_auc};
use super::grow::{Grower, leaf_scores, root, route};
use super::ops::{int, me, sigmoid};
use super::profile::{report, span};
use super::{
    GbdtOutcome, GbdtParams, GbdtPredictParams, GbdtProgress, GbdtShare, MAX_ROWS, NodeShare,
    TreeShare,
};
use crate::error::{Result, TrainError};
use crate::protocol::checkpoint::{fingerprint, resume_from};
use crate::protocol::handshake::{Hello, handshake, params_json};
use crate::protocol::{MIN_ROWS, Role, TrainCheckpoint};
use crate::table::{LocalData, check_label};

fn seat_of(role: Role) -> Seat {
    match role {
        Role::Active => Seat::Party(Party::P0),
        Role::Passive => Seat::Party(Party::P1),
        Role::Dealer => Seat::Dealer,
    }
}

fn hello(rows: usize, cols: usize, features: Vec<String>, params: &str) -> Hello {
    Hello {
        rows,
        cols,
        features,
        params: params.to_string(),
        error: None,
        columns: 0,
    }
}

/// This party's candidates outside tree `tree`'s column draw, `None` without column
/// subsampling (and at the dealer). `columns` are both parties' column counts.
fn excluded(
    params: &GbdtParams,
    tree: usize,
    columns: [usize; 2],
    me: Party,
    own: Option<&Binned>,
) -> Result<Option<Vec<bool>>> {
    let (Some(b), Some(keep)) = (own, params.tree_columns(tree, columns[0] + columns[1])) else {
        return Ok(None);
    };
    let from = if me.is_first() { 0 } else { columns[0] };
    (0..b.candidates())
        .map(|c| {
            b.locate(c)
                .and_then(|(col, _)| keep.get(from + col))
                .map(|k| !k)
                .ok_or_else(|| TrainError::Data("the peer's column count is inconsistent".into()))
        })
        .collect::<Result<Vec<bool>>>()
        .map(Some)
}

/// A computing party's checked, binned input.
struct Prepared {
    binned: Binned,
    names: Vec<String>,
    y: Option<Vec<f64>>,
}

fn check_rows(data: &LocalData) -> Result<usize> {
    let n = data.features.nrows();
    if n < MIN_ROWS {
        return Err(TrainError::Data(format!(
            "too few common rows: {n} (at least {MIN_ROWS} needed)"
        )));
    }
    if n > MAX_ROWS {
        return Err(TrainError::Data(format!(
            "too many rows for boosted trees: {n} (at most {MAX_ROWS})"
        )));
    }
    if data.feature_names.len() != data.features.ncols() {
        return Err(TrainError::Data(format!(
            "{} feature names for {} columns",
            data.feature_names.len(),
            data.features.ncols()
        )));
    }
    if data.features.iter().any(|v| v.is_infinite()) {
        return Err(TrainError::Data("features contain infinite values".into()));
    }
    Ok(n)
}

fn prepare(role: Role, data: Option<&LocalData>, bins: usize) -> Result<Prepared> {
    let data = data.ok_or_else(|| TrainError::Data("a computing party needs local data".into()))?;
    let n = check_rows(data)?;
    let y = match role {
        Role::Active => Some(check_label(data.label.as_ref(), n)?.to_vec()),
        _ => None,
    };
    Ok(Prepared {
        binned: Binned::fit(&data.features, bins),
        names: data.feature_names.clone(),
        y,
    })
}

/// Trains boosted trees at one seat (see the module docs for the protocol and what each
/// party learns). `data` is the party's rows in the agreed common order (`None` at the
/// dealer); the active party's data carries the label. Missing values are NaN. Returns
/// this party's model share (`None` at the dealer).
pub async fn train_gbdt<T: Transport>(
    t: &T,
    role: Role,
    data: Option<LocalData>,
    params: &GbdtParams,
    progress: &(dyn Fn(GbdtProgress) + Send + Sync),
) -> Result<Option<GbdtOutcome>> {
    train_gbdt_checkpointed(t, role, data, params, progress, None).await
}

/// [`train_gbdt`] with a checkpoint after every tree in `ck.dir` ([`super::checkpoint`]);
/// with `ck.resume`, continues from the newest tree every seat's checkpoint holds. Every
/// seat must resume, or none. The trees taken from the checkpoint are kept as they are;
/// the later ones are the uninterrupted run's up to the fixed-point rounding of the
/// dealer's fresh randomness after the resume (the same splits where the gains are clear
/// of ties, the same number of trees).
pub async fn train_gbdt_checkpointed<T: Transport>(
    t: &T,
    role: Role,
    data: Option<LocalData>,
    params: &GbdtParams,
    progress: &(dyn Fn(GbdtProgress) + Send + Sync),
    ckpt: Option<&TrainCheckpoint>,
) -> Result<Option<GbdtOutcome>> {
    params.validate()?;
    let pj = params_json(params)?;
    let ck_fp = fingerprint(&pj, role as u8, data.as_ref());
    let fp = FixedPoint::new(params.frac_bits)?;
    let prep = (role != Role::Dealer).then(|| {
        let size = data.as_ref().map_or(0, |d| d.features.len());
        heavy(size, || prepare(role, data.as_ref(), params.bins))
    });
    let mine = match &prep {
        Some(Ok(p)) => Ok(Hello {
            // Told to the peer only when it is needed to draw the trees' columns.
            columns: if params.colsample_bytree < 1.0 {
                p.binned.columns.len()
            } else {
                0
            },
            ..hello(p.binned.bins.nrows(), p.binned.candidates(), vec![], &pj)
        }),
        Some(Err(e)) => Err(TrainError::Data(e.to_string())),
        None => Ok(Hello::dealer(&pj)),
    };
    let hellos = handshake(t, role, &params.parties, &pj, mine).await?;
    let prep = prep.transpose()?;
    let resumed = resume_from(t, ckpt, &ck_fp, &params.parties).await?;
    let n = hellos[0].rows;
    let k = [hellos[0].cols, hellos[1].cols];
    let columns = [hellos[0].columns, hellos[1].columns];
    if k[0] + k[1] == 0 {
        return Err(TrainError::Data(
            "no column of either party has a split candidate (all constant or empty)".into(),
        ));
    }
    let mut warnings = Vec::new();
    if let Some(p) = &prep {
        for (c, name) in p.binned.columns.iter().zip(&p.names) {
            if c.candidates() == 0 {
                warnings.push(format!("column `{name}` has no split candidate (constant)"));
            }
        }
    }
    let mut e = Engine::start(t, seat_of(role), params.parties.engine_names(), fp).await?;
    let me = me(&e);
    let seat = t.me().to_string();
    let mask_span = span(&seat, "mask C (once)");
    let fill = |i: usize, out: &mut [R64]| {
        if let Some(p) = &prep {
            p.binned.fill_row(i, out);
        }
    };
    let own_rows = prep.as_ref().map(|_| &fill as confide_mpc::OwnRows<'_>);
    let mm = e.mask_matrix_owned(own_rows, n, k).await?;
    drop(mask_span);
    let (y, y_int): (Array1<R64>, Array1<R64>) = match prep.as_ref().and_then(|p| p.y.as_ref()) {
        Some(y) => (
            Array1::from_vec(fp.encode_all(y)?),
            y.iter().map(|&v| int(v as i64)).collect(),
        ),
        None => (Array1::from_elem(n, int(0)), Array1::from_elem(n, int(0))),
    };
    let (y, y_int) = (owned(me, Party::P0, y), owned(me, Party::P0, y_int));
    // The public validation split: its rows take no part in growing.
    let (_, val_rows) = params.split(n)?;
    let mut left_out = vec![false; n];
    for &i in &val_rows {
        left_out[i] = true;
    }
    let state = State::start(resumed, n, params, prep.is_some())?;
    let to_grow = state.to_grow(params.trees);
    let State {
        mut f,
        mut trees,
        mut stopper,
        mut validation_auc,
        done: resumed_trees,
        ..
    } = state;
    let grower = Grower {
        mm: &mm,
        k,
        n,
        own: prep.as_ref().map(|p| (&p.binned, p.names.as_slice())),
        p: params,
    };
    for tree in to_grow {
        let _tree_span = span(&seat, "tree");
        let sig_span = span(&seat, "sigmoid, g, h");
        let prob = sigmoid(&mut e, &f).await?;
        let mut g = prob.sub(&y)?;
        let one_minus = prob.mul_public(int(-1)).add_scalar(me, fp.encode(1.0)?);
        let mut h = e.mul_fixed(&prob, &one_minus).await?;
        drop(sig_span);
        // Row subsampling and validation: public rows (from the job seed) left out of this
        // tree get g = h = 0, each seat zeroing its own shares (no communication).
        let rows = params.tree_rows(tree, n);
        for v in [&mut g, &mut h] {
            for (i, x) in v.raw_mut().iter_mut().enumerate() {
                if left_out[i] || rows.as_ref().is_some_and(|r| !r[i]) {
                    *x = int(0);
                }
            }
        }
        let on_level = |level| {
            progress(GbdtProgress {
                tree: tree + 1,
                trees: params.trees,
                level,
                depth: params.depth,
            })
        };
        let own = prep.as_ref().map(|p| &p.binned);
        let out = excluded(params, tree, columns, me, own)?;
        let grown = grower
            .grow(&mut e, &g, &h, out.as_deref(), &on_level)
            .await?;
        f = f.add(&grown.delta)?;
        trees.push(TreeShare {
            nodes: grown.nodes,
            leaves: grown.leaves.as_slice().iter().map(|v| v.0).collect(),
        });
        // The validation AUC is opened to A and B, who decide alike; A tells the dealer.
        let auc = if val_rows.is_empty() {
            None
        } else {
            secure_validation_auc(&mut e, &f, &y_int, &val_rows).await?
        };
        let stop = match auc {
            Some(auc) => {
                validation_auc.push(auc);
                let stop = stopper.after_tree(tree, auc);
                if me.is_first() && params.early_stopping_rounds > 0 {
                    t.send(&params.parties.dealer, vec![u8::from(stop)]).await?;
                }
                stop
            }
            None if params.early_stopping_rounds > 0 => {
                dealer_flag(t, &params.parties.active).await?
            }
            None => false,
        };
        if let Some(c) = ckpt {
            let after = After {
                done: tree + 1,
                stopped: stop,
                f: &f,
                trees: &trees,
                stopper: &stopper,
                validation_auc: &validation_auc,
            };
            ck::save(c, ck_fp, prep.is_some(), after)?;
        }
        if stop {
            break;
        }
    }
    if let Some(r) = report(&seat) {
        eprint!("{r}");
    }
    let grown_trees = trees.len();
    if let (true, Some(best)) = (params.early_stopping_rounds > 0, stopper.best_tree()) {
        trees.truncate(best + 1);
    }
    Ok(prep.map(|p| GbdtOutcome {
        model: GbdtShare {
            party: me.index(),
            frac_bits: params.frac_bits,
            depth: params.depth,
            feature_names: p.names,
            trees,
        },
        warnings,
        validation_auc,
        validation_rows: val_rows.len(),
        grown: grown_trees,
        resumed_trees,
    }))
}

/// The left indicator of a rule on this party's rows.
fn left_of(x: &Array2<f64>, node: &NodeShare) -> Result<Option<Array1<u8>>> {
    let Some(r) = &node.rule else { return Ok(None) };
    if r.column >= x.ncols() {
        return Err(TrainError::Data(format!(
            "model column {} missing from the input",
            r.column
        )));
    }
    Ok(Some(
        x.column(r.column)
            .mapv(|v| u8::from(goes_left(v, r.threshold))),
    ))
}

/// Scores aligned rows with a boosted model held in shares: each owner evaluates its own
/// split rules on its own rows, memberships stay shared, and only `receiver` learns the
/// scores `σ(F)` (returned there, `None` elsewhere). The dealer passes `None` for both.
pub async fn predict_gbdt<T: Transport>(
    t: &T,
    role: Role,
    data: Option<LocalData>,
    model: Option<&GbdtShare>,
    params: &GbdtPredictParams,
) -> Result<Option<Vec<f64>>> {
    crate::limits::distinct(
        &params.parties.active,
        &params.parties.passive,
        &params.parties.dealer,
    )
    .map_err(TrainError::Params)?;
    let receiver = params
        .parties
        .to_parties(std::slice::from_ref(&params.receiver))?[0];
    if !(1..=super::MAX_DEPTH).contains(&params.depth)
        || !(1..=super::MAX_TREES).contains(&params.trees)
    {
        return Err(TrainError::Params("trees or depth out of range".into()));
    }
    let fp = FixedPoint::new(params.frac_bits)?;
    let pj = params_json(params)?;
    let checked = match role {
        Role::Dealer => None,
        _ => Some((|| {
            let m = model.ok_or_else(|| {
                TrainError::Data("a computing party needs its model share".into())
            })?;
            let d = data
                .as_ref()
                .ok_or_else(|| TrainError::Data("a computing party needs local data".into()))?;
            let expect = usize::from(role == Role::Passive);
            let shape_ok = m.trees.len() == params.trees
                && m.depth == params.depth
                && m.trees.iter().all(|t| {
                    t.nodes.len() + 1 == 1 << params.depth && t.leaves.len() == 1 << params.depth
                });
            if m.party != expect || m.frac_bits != params.frac_bits || !shape_ok {
                return Err(TrainError::Data(
                    "the model share does not belong to this role, precision or shape".into(),
                ));
            }
            if d.feature_names != m.feature_names {
                return Err(TrainError::Data(format!(
                    "input columns differ from the model's {:?}",
                    m.feature_names
                )));
            }
            let n = d.features.nrows();
            if n == 0 || n > MAX_ROWS || d.features.iter().any(|v| v.is_infinite()) {
                return Err(TrainError::Data(format!("cannot score {n} rows")));
            }
            Ok((d, m))
        })()),
    };
    let tag = format!("gbdt {} trees, depth {}", params.trees, params.depth);
    let mine = match &checked {
        Some(Ok((d, _))) => Ok(hello(d.features.nrows(), 0, vec![tag], &pj)),
        Some(Err(e)) => Err(TrainError::Data(e.to_string())),
        None => Ok(Hello::dealer(&pj)),
    };
    let hellos = handshake(t, role, &params.parties, &pj, mine).await?;
    let checked = checked.transpose()?;
    if role != Role::Dealer && hellos[0].features != hellos[1].features {
        return Err(TrainError::Data(
            "the two model shares are from different models".into(),
        ));
    }
    let n = hellos[0].rows;
    let mut e = Engine::start(t, seat_of(role), params.parties.engine_names(), fp).await?;
    let mut f = SharedVec::zeros(ndarray::Ix1(n));
    for ti in 0..params.trees {
        let tree = checked.as_ref().map(|(_, m)| &m.trees[ti]);
        let mut ms = vec![root(&e, n)];
        let mut first = 0;
        for _ in 0..params.depth {
            let l = ms.len();
            let mut flags = Vec::with_capacity(l);
            let mut lefts = Vec::with_capacity(l);
            for i in 0..l {
                match (tree, &checked) {
                    (Some(t), Some((d, _))) => {
                        let node = &t.nodes[first + i];
                        flags.push(std::num::Wrapping(node.split));
                        lefts.push(left_of(&d.features, node)?);
                    }
                    _ => {
                        flags.push(int(0));
                        lefts.push(None);
                    }
                }
            }
            ms = route(&mut e, &ms, &SharedVec::from_vec(flags), &lefts, n).await?;
            first += l;
        }
        let w: Vec<R64> = match tree {
            Some(t) => t.leaves.iter().map(|&v| std::num::Wrapping(v)).collect(),
            None => vec![int(0); 1 << params.depth],
        };
        let delta = leaf_scores(&mut e, &ms, &SharedVec::from_vec(w), n).await?;
        f = f.add(&delta)?;
    }
    let opened = e.open_to(&f, &[receiver]).await?;
    Ok(opened.map(|z| {
        z.iter()
            .map(|v| confide_mpc::sigmoid::sigmoid(fp.decode(*v)))
            .collect()
    }))
}
