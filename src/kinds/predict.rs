//! `predict`: rows aligned by ECDH-PSI, then scoring with a model that stayed
//! secret-shared after a `train --keep-shared` job (confide-training); only the initiator
//! learns the scores. Parties: the initiator, the other holder of the model, the dealer.
//! A peer uses the `train` permission of its dataset.

use std::time::Instant;

use confide_mpc::ChannelTransport;
use confide_training::{PredictOptions, Role, StoredShare, check_model_id};

use super::train_common::{
    align_rows, bad, bytes_sent, check_columns, check_dealer, check_model, check_named_dealer,
    check_peers, checked_dataset, csv_header, models_dir, role_name, three, train_err,
};
use super::{Env, Kind, Plan, csv_field};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::files::write_atomic;
use crate::base::kind::JobKind;

/// The options of a `predict` job: [`PredictOptions`] (the model, the seats it was
/// trained with, its fractional bits), validated by the training crate.
pub type Opts = PredictOptions;

#[derive(Debug)]
pub struct Predict;

impl Kind for Predict {
    type Opts = Opts;
    const KIND: JobKind = JobKind::Predict;

    fn check_local(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        check_model_id(&o.model).map_err(train_err)?;
        let other = check_peers(cfg, &plan.parties[1..], &o.dealer)?;
        let meta = check_model(cfg, o, &other.party)?;
        let (_, header) = checked_dataset(cfg, plan)?;
        check_columns(&meta, &header, plan.my_dataset())
    }

    fn check_peer(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        check_model_id(&o.model).map_err(train_err)?;
        if plan.my_dataset().is_empty() {
            return check_dealer(cfg, &o.dealer);
        }
        check_named_dealer(cfg, &o.dealer)?;
        let meta = check_model(cfg, o, plan.initiator)?;
        let (_, header) = checked_dataset(cfg, plan)?;
        check_columns(&meta, &header, plan.my_dataset())
    }

    async fn run(
        env: &dyn Env,
        o: &Opts,
        t: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        run_predict(env, o, t).await
    }
}

/// This party's side of a `predict` job.
async fn run_predict(
    env: &dyn Env,
    o: &Opts,
    t: &ChannelTransport,
) -> Result<serde_json::Value, DaemonError> {
    check_model_id(&o.model).map_err(train_err)?;
    let started = Instant::now();
    let me = env.me().to_string();
    let [init, other, dealer] = three(env)?;
    if dealer != o.dealer || env.spec().dataset_of(&dealer).is_some() {
        return Err(bad("the last party must be the dealer, without a dataset"));
    }
    let params = o.params(&init);
    if me == dealer {
        if o.trees.is_some() {
            super::train_gbdt::run_predict_dealer(o, t, &init).await?;
        } else {
            confide_training::predict_shared(t, Role::Dealer, None, None, &params)
                .await
                .map_err(train_err)?;
        }
        return Ok(serde_json::json!({
            "kind": "predict", "job_id": env.spec().job_id, "party": me, "role": "dealer",
            "model": o.model, "elapsed_ms": started.elapsed().as_millis() as u64,
            "bytes_sent": bytes_sent(t),
        }));
    }
    let peer = if me == init { &other } else { &init };
    if o.trees.is_some() {
        let (scores, ids, role) =
            super::train_gbdt::run_predict(env, o, t, [&init, &other], peer).await?;
        let output = write_scores(env, scores.as_deref(), &ids)?;
        return Ok(summary(env, o, role, &ids, &init, output, started, t));
    }
    let path =
        confide_training::share_path(&models_dir(env.config()), &o.model).map_err(train_err)?;
    let stored = StoredShare::read(&path, &o.model).map_err(train_err)?;
    stored.meta.check_options(o).map_err(train_err)?;
    let role = stored.meta.role;
    let (dataset_name, ds) = env.my_dataset()?;
    let (dataset_name, ds) = (dataset_name.to_string(), ds.clone());
    // The label column (if the scoring file has it) is not a feature.
    let header = csv_header(&ds.path)?;
    let label = stored.meta.label.clone().filter(|l| header.contains(l));
    let (al, _) = align_rows(env, t, &ds, [&init, &other], peer, label).await?;
    let (data, ids) = (al.data, al.ids);
    if data.feature_names != stored.meta.feature_names {
        return Err(bad(format!(
            "the columns of dataset `{dataset_name}` differ from the model's {:?}",
            stored.meta.feature_names
        )));
    }
    env.progress("scoring", 0, ids.len() as u64, "");
    let scores =
        confide_training::predict_shared(t, role, Some(data), Some(&stored.share), &params)
            .await
            .map_err(train_err)?;
    let output = write_scores(env, scores.as_deref(), &ids)?;
    Ok(summary(env, o, role, &ids, &init, output, started, t))
}

/// Writes `id,score` at the receiver (where `scores` is set); returns the path.
fn write_scores(
    env: &dyn Env,
    scores: Option<&[f64]>,
    ids: &[String],
) -> Result<Option<std::path::PathBuf>, DaemonError> {
    let Some(scores) = scores else {
        return Ok(None);
    };
    let path = env
        .spec()
        .output
        .clone()
        .ok_or_else(|| bad("the receiver needs an output file"))?;
    let mut s = String::with_capacity(ids.len() * 24);
    s.push_str("id,score\n");
    for (id, p) in ids.iter().zip(scores) {
        s.push_str(&csv_field(id));
        s.push_str(&format!(",{p:.6}\n"));
    }
    write_atomic(&path, s.as_bytes(), false)?;
    Ok(Some(path))
}

/// A computing party's job summary.
#[allow(clippy::too_many_arguments)]
fn summary(
    env: &dyn Env,
    o: &Opts,
    role: Role,
    ids: &[String],
    receiver: &str,
    output: Option<std::path::PathBuf>,
    started: Instant,
    t: &ChannelTransport,
) -> serde_json::Value {
    let summary = serde_json::json!({
        "kind": "predict",
        "job_id": env.spec().job_id,
        "party": env.me(),
        "role": role_name(role),
        "model": o.model,
        "model_kind": if o.trees.is_some() { "gbdt" } else { "lr" },
        "dataset": env.spec().dataset_of(env.me()),
        "common_rows": ids.len(),
        "receiver": receiver,
        "output": output,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "bytes_sent": bytes_sent(t),
    });
    tracing::info!(job = %env.spec().job_id, summary = %summary, "predict finished");
    summary
}
