//! The boosted-tree side of the `train` and `predict` kinds (`model = gbdt`): the same
//! three parties and PSI row alignment as logistic regression, then
//! [`confide_training::train_gbdt`] / [`confide_training::predict_gbdt`].
//!
//! Training always keeps the model split: each computing party stores its share (its own
//! split rules, shares of the split flags and leaf weights) under
//! `data_dir/models/<job>.share` (mode 0600), and writes the part it may see in clear
//! (the public tree shape and its own split rules) as JSON: the initiator to its output
//! file, the other party to `results/model-<job>.json`. Leaf weights are never revealed.
//! `predict --model <job>` then scores rows for the initiator only.
//!
//! Every tree is checkpointed at every party like logistic regression's epochs
//! ([`super::train::checkpoint`], [`confide_training::train_gbdt_checkpointed`]); a job
//! with `resume` continues from the last tree all three parties hold.

use std::time::Instant;

use confide_mpc::ChannelTransport;
use confide_training::{
    GBDT_FORMAT, GbdtProgress, PartyNames, PredictOptions, Role, ShareMeta, StoredGbdt,
    TrainOptions,
};

use super::Env;
use super::train_common::{
    align_rows, bad, bytes_received, bytes_sent, csv_header, messages_sent, models_dir, role_name,
    train_err,
};
use crate::base::error::DaemonError;
use crate::base::files::write_atomic;

/// This party's side of a `train` job with `model = gbdt`.
pub async fn run_train(
    env: &dyn Env,
    o: &TrainOptions,
    t: &ChannelTransport,
    names: PartyNames,
    role: Role,
) -> Result<serde_json::Value, DaemonError> {
    let started = Instant::now();
    let params = o
        .gbdt_params(names.clone())
        .ok_or_else(|| bad("not a boosted-tree job"))?;
    let mut data = None;
    let mut ds_info = None;
    if role != Role::Dealer {
        let (dataset_name, ds) = env.my_dataset()?;
        let (dataset_name, ds) = (dataset_name.to_string(), ds.clone());
        let other = if role == Role::Active {
            &names.passive
        } else {
            &names.active
        };
        let label = (role == Role::Active).then(|| o.label.clone());
        let (al, _) =
            align_rows(env, t, &ds, [&names.active, &names.passive], other, label).await?;
        ds_info = Some((dataset_name, al.data.feature_names.clone(), al.ids.len()));
        data = Some(al.data);
    }
    let (psi_bytes, psi_messages) = (bytes_sent(t), messages_sent(t));
    env.progress("training", 0, params.trees as u64, "");
    let train_started = Instant::now();
    let psi_ms = started.elapsed().as_millis() as u64;
    // Bytes and messages this party sent, sampled at the end of each tree.
    let per_tree = std::sync::Mutex::new(Vec::<(u64, u64)>::new());
    let progress = |p: GbdtProgress| {
        if p.level == p.depth
            && let Ok(mut v) = per_tree.lock()
        {
            v.push((bytes_sent(t), messages_sent(t)));
        }
        let msg = format!("level {}/{}", p.level, p.depth);
        tracing::info!(job = %env.spec().job_id, tree = p.tree, level = p.level, "gbdt progress");
        let done = if p.level == p.depth {
            p.tree
        } else {
            p.tree - 1
        };
        env.progress("tree", done as u64, p.trees as u64, &msg);
    };
    // Every tree is checkpointed; a resumed job continues from the job it names.
    let ck = super::train::checkpoint(env, o, ("tree", params.trees))?;
    let outcome =
        confide_training::train_gbdt_checkpointed(t, role, data, &params, &progress, Some(&ck))
            .await
            .map_err(|e| super::train::checkpoint_err(env, o, e))?;
    let train_ms = train_started.elapsed().as_millis() as u64;
    let per_tree = per_tree.into_inner().unwrap_or_default();
    let mut prev = (psi_bytes, psi_messages);
    let (mut tree_bytes, mut tree_messages) = (Vec::new(), Vec::new());
    for &(b, m) in &per_tree {
        tree_bytes.push(b.saturating_sub(prev.0));
        tree_messages.push(m.saturating_sub(prev.1));
        prev = (b, m);
    }
    let (mut output, mut shared_path, mut warnings) = (None, None, Vec::new());
    // Trees kept and grown, validation rows and AUC per tree (computing parties only).
    let early = outcome.as_ref().map(|o| {
        (
            o.model.trees.len(),
            o.grown,
            o.validation_rows,
            o.validation_auc.clone(),
            o.resumed_trees,
        )
    });
    if let (Some(out), Some((dataset_name, feature_names, _))) = (outcome, ds_info.as_ref()) {
        for w in &out.warnings {
            env.progress("warning", 0, 0, w);
        }
        warnings = out.warnings;
        let export = serde_json::to_vec_pretty(&out.model.export())
            .map_err(|e| DaemonError::Internal(format!("serializing the model: {e}")))?;
        let path = if env.is_initiator() {
            env.spec()
                .output
                .clone()
                .ok_or_else(|| bad("the initiator needs an output file"))?
        } else {
            env.results_dir()
                .join(format!("model-{}.json", env.spec().job_id))
        };
        write_atomic(&path, &export, false)?;
        output = Some(path);
        let mut meta = ShareMeta::new(
            &env.spec().job_id,
            names.clone(),
            role,
            dataset_name,
            feature_names.clone(),
            params.frac_bits,
        );
        meta.format = GBDT_FORMAT.into();
        meta.label = (role == Role::Active).then(|| o.label.clone());
        let path = confide_training::share_path(&models_dir(env.config()), &env.spec().job_id)
            .map_err(train_err)?;
        StoredGbdt {
            meta,
            model: out.model,
        }
        .write(&path)
        .map_err(train_err)?;
        shared_path = Some(path);
    }
    let summary = serde_json::json!({
        "kind": "train",
        "model": "gbdt",
        "job_id": env.spec().job_id,
        "party": env.me(),
        "role": role_name(role),
        "dataset": ds_info.as_ref().map(|x| x.0.clone()),
        "parties": names,
        "common_rows": ds_info.as_ref().map(|x| x.2),
        "features": ds_info.as_ref().map(|x| x.1.len()),
        "trees": early.as_ref().map_or(params.trees, |e| e.0),
        "trees_grown": early.as_ref().map(|e| e.1),
        "validation_rows": early.as_ref().map(|e| e.2),
        "validation_auc_per_tree": early.as_ref().map(|e| e.3.clone()),
        "early_stopping_rounds": params.early_stopping_rounds,
        "resumed_from": o.resume,
        "resumed_trees": early.as_ref().map(|e| e.4),
        "depth": params.depth,
        "bins": params.bins,
        "learning_rate": params.learning_rate,
        "lambda": params.lambda,
        "gamma": params.gamma,
        "min_child_weight": params.min_child_weight,
        "subsample": params.subsample,
        "colsample_bytree": params.colsample_bytree,
        "label": o.label,
        "output": output,
        "shared_model": shared_path,
        "warnings": warnings,
        "psi_ms": psi_ms,
        "train_ms": train_ms,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "bytes_sent": bytes_sent(t),
        "bytes_received": bytes_received(t),
        "bytes_sent_psi": psi_bytes,
        "bytes_sent_per_tree": tree_bytes,
        "messages_sent_per_tree": tree_messages,
        "messages_sent": messages_sent(t),
    });
    tracing::info!(job = %env.spec().job_id, summary = %summary, "train finished");
    Ok(summary)
}

/// This computing party's side of a `predict` job on a boosted model: the stored share,
/// the aligned rows, the scores (at the initiator). Returns the scores and the row IDs.
pub async fn run_predict(
    env: &dyn Env,
    o: &PredictOptions,
    t: &ChannelTransport,
    parties: [&str; 2],
    peer: &str,
) -> Result<(Option<Vec<f64>>, Vec<String>, Role), DaemonError> {
    let params = o
        .gbdt_params(parties[0])
        .ok_or_else(|| bad("not a boosted model"))?;
    let path =
        confide_training::share_path(&models_dir(env.config()), &o.model).map_err(train_err)?;
    let stored = StoredGbdt::read(&path, &o.model).map_err(train_err)?;
    stored.meta.check_options(o).map_err(train_err)?;
    let role = stored.meta.role;
    let (dataset_name, ds) = env.my_dataset()?;
    let (dataset_name, ds) = (dataset_name.to_string(), ds.clone());
    let header = csv_header(&ds.path)?;
    let label = stored.meta.label.clone().filter(|l| header.contains(l));
    let (al, _) = align_rows(env, t, &ds, parties, peer, label).await?;
    if al.data.feature_names != stored.meta.feature_names {
        return Err(bad(format!(
            "the columns of dataset `{dataset_name}` differ from the model's {:?}",
            stored.meta.feature_names
        )));
    }
    env.progress("scoring", 0, al.ids.len() as u64, "");
    let scores =
        confide_training::predict_gbdt(t, role, Some(al.data), Some(&stored.model), &params)
            .await
            .map_err(train_err)?;
    Ok((scores, al.ids, role))
}

/// The dealer's side of a `predict` job on a boosted model.
pub async fn run_predict_dealer(
    o: &PredictOptions,
    t: &ChannelTransport,
    receiver: &str,
) -> Result<(), DaemonError> {
    let params = o
        .gbdt_params(receiver)
        .ok_or_else(|| bad("not a boosted model"))?;
    confide_training::predict_gbdt(t, Role::Dealer, None, None, &params)
        .await
        .map_err(train_err)?;
    Ok(())
}
