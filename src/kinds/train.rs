//! `train`: rows aligned by ECDH-PSI on the ID columns, then vertical logistic regression
//! on secret shares (confide-training) with the alliance's dealer.
//!
//! Parties, in this order at every daemon: the initiator (party A, the label holder), the
//! other computing party, the dealer (`alliance.dealer`, holding no dataset).
//!
//! 1. The two computing parties run a two-party PSI (`All` mode) over the job's streams;
//!    the dealer takes no part and learns nothing of it. Both sort the common IDs the same
//!    way and put their rows in that order.
//! 2. [`confide_training::train`]; the model (raw units) is revealed to both computing
//!    parties unless `keep_shared`, and each party's share is then kept under
//!    `data_dir/models/<job>.share` (mode 0600) for `predict`.
//!
//! What each party learns beyond the training crate's own leakage (see its docs): both
//! computing parties learn the common IDs (PSI `All`); the dealer learns the job's
//! parties, options (label name, epoch cap, optimizer, …) and, from the training
//! handshake, row and column counts. The job summary of each computing party lists the
//! loss (and validation AUC) of every epoch, which the crate opens to both of them for
//! the stopping rule; the dealer's summary has the number of epochs only.

use std::sync::Mutex;
use std::time::Instant;

use confide_mpc::ChannelTransport;
use confide_training::{
    EpochProgress, Model, PartyNames, Role, ShareMeta, Stop, StoredShare, TrainOptions,
};

use super::train_common::{
    align_rows, bad, bytes_received, bytes_sent, check_dealer, check_named_dealer, check_peers,
    checked_dataset, models_dir, role_name, three, train_err,
};
use super::{Env, Kind, Plan, resume};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::files::write_atomic;
use crate::base::kind::JobKind;

/// The options of a `train` job: [`TrainOptions`] (label, epoch cap, batch size, learning
/// rate, optimizer, penalty, C, class weight, tolerance, validation split, keep_shared,
/// seed, dealer), validated by the training crate.
pub type Opts = TrainOptions;

#[derive(Debug)]
pub struct Train;

impl Kind for Train {
    type Opts = Opts;
    const KIND: JobKind = JobKind::Train;

    fn check_local(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        o.validate().map_err(train_err)?;
        check_peers(cfg, &plan.parties[1..], &o.dealer)?;
        check_resume(cfg, plan, o)?;
        let (ds, header) = checked_dataset(cfg, plan)?;
        if o.label == ds.id_column {
            return Err(bad(format!(
                "the label column `{}` is the ID column",
                o.label
            )));
        }
        if !header.contains(&o.label) {
            return Err(DaemonError::local(
                format!(
                    "label column `{}` is not in dataset `{}` of `{}` ({})",
                    o.label,
                    plan.my_dataset(),
                    plan.me,
                    ds.path.display()
                ),
                format!(
                    "label column `{}` is not in dataset `{}` of `{}`",
                    confide_mpc::clean(&o.label),
                    plan.my_dataset(),
                    plan.me
                ),
            ));
        }
        Ok(())
    }

    fn check_peer(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        o.validate().map_err(train_err)?;
        check_resume(cfg, plan, o)?;
        if plan.my_dataset().is_empty() {
            return check_dealer(cfg, &o.dealer);
        }
        check_named_dealer(cfg, &o.dealer)?;
        checked_dataset(cfg, plan).map(|_| ())
    }

    async fn run(
        env: &dyn Env,
        o: &Opts,
        t: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        run_train(env, o, t).await
    }
}

/// A resumed job: this party must hold a checkpoint of the job it resumes, made with the
/// same parties and options.
fn check_resume(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
    match &o.resume {
        Some(orig) => resume::check_train(
            &cfg.party.data_dir,
            orig,
            plan.me,
            plan.parties,
            o,
            plan.is_initiator(),
        ),
        None => Ok(()),
    }
}

/// The progress line of an epoch: loss, validation AUC, step size, and why it stops.
fn epoch_message(p: &EpochProgress) -> String {
    let mut parts = Vec::new();
    if let Some(l) = p.loss {
        parts.push(format!("loss {l:.5}"));
    }
    if let Some(a) = p.validation_auc {
        parts.push(format!("validation AUC {a:.4}"));
    }
    if let Some(r) = p.learning_rate {
        parts.push(format!("step {r:.4}"));
    }
    if let Some(s) = p.stop {
        parts.push(format!("stopping ({})", stop_name(s)));
    }
    parts.join(", ")
}

/// Why training ended, in words.
pub fn stop_name(s: Stop) -> &'static str {
    match s {
        Stop::Converged => "loss converged",
        Stop::Validation => "validation AUC stopped improving",
        Stop::Cap => "epoch cap",
    }
}

/// Where this party checkpoints a training job (every `unit`, epoch or tree, of `total`):
/// the folder of the job it resumes, or its own (where the job's parties and options are
/// recorded first).
pub(super) fn checkpoint(
    env: &dyn Env,
    o: &Opts,
    (unit, total): (&str, usize),
) -> Result<confide_training::TrainCheckpoint, DaemonError> {
    let spec = env.spec();
    let dir = resume::checkpoint_dir(
        &env.config().party.data_dir,
        resume::anchor_job(&spec.job_id, o.resume.as_deref()),
    );
    match &o.resume {
        None => resume::save_options(&dir, &spec.parties, o)?,
        Some(orig) => env.progress(
            "resuming",
            0,
            total as u64,
            &format!("resuming job {orig} from its last checkpointed {unit}"),
        ),
    }
    Ok(confide_training::TrainCheckpoint {
        dir,
        resume: o.resume.is_some(),
    })
}

/// A training error; on resume, a checkpoint problem is this party's refusal (naming it).
pub(super) fn checkpoint_err(
    env: &dyn Env,
    o: &Opts,
    e: confide_training::TrainError,
) -> DaemonError {
    match (&o.resume, e) {
        (Some(orig), confide_training::TrainError::Checkpoint(m)) => {
            let m = resume::refusal(orig, env.me(), &m, true).to_string();
            DaemonError::local(m.clone(), confide_mpc::clean(&m))
        }
        (_, e) => train_err(e),
    }
}

/// This party's side of a `train` job.
async fn run_train(
    env: &dyn Env,
    o: &Opts,
    t: &ChannelTransport,
) -> Result<serde_json::Value, DaemonError> {
    o.validate().map_err(train_err)?;
    let started = Instant::now();
    let me = env.me().to_string();
    let [a, b, dealer] = three(env)?;
    if dealer != o.dealer || env.spec().dataset_of(&dealer).is_some() {
        return Err(bad("the last party must be the dealer, without a dataset"));
    }
    let names = PartyNames {
        active: a.clone(),
        passive: b.clone(),
        dealer: dealer.clone(),
    };
    let role = if me == a {
        Role::Active
    } else if me == b {
        Role::Passive
    } else {
        Role::Dealer
    };
    if o.is_gbdt() {
        return super::train_gbdt::run_train(env, o, t, names, role).await;
    }
    let params = o.params(names.clone());

    // 1. Row alignment (computing parties only).
    let mut data = None;
    let mut ds_info = None;
    let mut load_ms = 0;
    if role != Role::Dealer {
        let (dataset_name, ds) = env.my_dataset()?;
        let (dataset_name, ds) = (dataset_name.to_string(), ds.clone());
        let other = if role == Role::Active { &b } else { &a };
        let label = (role == Role::Active).then(|| o.label.clone());
        let (al, ms) = align_rows(env, t, &ds, [&a, &b], other, label).await?;
        ds_info = Some((dataset_name, al.data.feature_names.clone(), al.ids.len()));
        load_ms = ms;
        data = Some(al.data);
    }
    let psi_ms = started.elapsed().as_millis() as u64;
    let psi_bytes = bytes_sent(t);

    // 2. Training (the crate keeps its CPU work off the async runtime).
    let epoch_bytes = Mutex::new(Vec::new());
    let trajectory: Mutex<Vec<EpochProgress>> = Mutex::new(Vec::new());
    env.progress("training", 0, o.epochs as u64, "");
    let train_started = Instant::now();
    let progress = |p: EpochProgress| {
        if let Ok(mut v) = epoch_bytes.lock() {
            v.push(bytes_sent(t));
        }
        let msg = epoch_message(&p);
        tracing::info!(job = %env.spec().job_id, epoch = p.epoch, epochs = p.epochs, loss = ?p.loss, validation_auc = ?p.validation_auc, "epoch done");
        env.progress("epoch", p.epoch as u64, p.epochs as u64, &msg);
        if let Ok(mut v) = trajectory.lock() {
            v.push(p);
        }
    };
    let ck = checkpoint(env, o, ("epoch", o.epochs))?;
    let outcome =
        confide_training::train_checkpointed(t, role, data, &params, &progress, Some(&ck))
            .await
            .map_err(|e| checkpoint_err(env, o, e))?;
    let train_ms = train_started.elapsed().as_millis() as u64;
    for w in &outcome.warnings {
        env.progress("warning", 0, 0, w);
    }

    // 3. Outputs.
    let model_json = |m: &Model| {
        serde_json::to_vec_pretty(m)
            .map_err(|e| DaemonError::Internal(format!("serializing the model: {e}")))
    };
    let mut output = None;
    if let Some(m) = &outcome.model {
        let path = if env.is_initiator() {
            env.spec()
                .output
                .clone()
                .ok_or_else(|| bad("the initiator needs an output file"))?
        } else {
            env.results_dir()
                .join(format!("model-{}.json", env.spec().job_id))
        };
        write_atomic(&path, &model_json(m)?, false)?;
        output = Some(path);
    }
    let mut shared_path = None;
    if o.keep_shared
        && let (Some(share), Some((dataset_name, feature_names, _))) =
            (outcome.shared.clone(), ds_info.as_ref())
    {
        let mut meta = ShareMeta::new(
            &env.spec().job_id,
            names.clone(),
            role,
            dataset_name,
            feature_names.clone(),
            share.frac_bits,
        );
        meta.label = (role == Role::Active).then(|| o.label.clone());
        let path = confide_training::share_path(&models_dir(env.config()), &env.spec().job_id)
            .map_err(train_err)?;
        StoredShare { meta, share }
            .write(&path)
            .map_err(train_err)?;
        shared_path = Some(path);
    }

    let epochs_bytes = epoch_bytes.into_inner().unwrap_or_default();
    let per_epoch: Vec<u64> = epochs_bytes
        .iter()
        .scan(psi_bytes, |prev, &now| {
            let d = now.saturating_sub(*prev);
            *prev = now;
            Some(d)
        })
        .collect();
    let total = bytes_sent(t);
    let metrics = outcome.model.as_ref().map(|m| &m.metrics);
    let trajectory = trajectory.into_inner().unwrap_or_default();
    // Both computing parties know the loss and validation AUC of every epoch.
    let known = role != Role::Dealer;
    let losses: Vec<f64> = trajectory.iter().filter_map(|p| p.loss).collect();
    let val_aucs: Vec<f64> = trajectory.iter().filter_map(|p| p.validation_auc).collect();
    let last = trajectory.last();
    // The optimizer settings and what the stopping rule saw.
    let fit = serde_json::json!({
        "epochs": last.map_or(0, |p| p.epoch),
        "epoch_cap": o.epochs,
        "stop": last.and_then(|p| p.stop).filter(|_| known),
        "steps": metrics.map(|m| m.steps),
        "batch_size": o.batch_size,
        "learning_rate": trajectory.first().and_then(|p| p.learning_rate),
        "optimizer": o.optimizer,
        "penalty": o.penalty,
        "C": o.c,
        "class_weight": o.class_weight,
        "tolerance": o.tolerance,
        "validation": o.validation,
        "validation_rows": metrics.map(|m| m.validation_rows),
        "seed": o.seed,
        "resumed_from": o.resume,
        "resumed_epochs": outcome.resumed_epochs,
        "label": o.label,
        "loss_per_epoch": known.then_some(&losses),
        "final_loss": losses.last(),
        "validation_auc_per_epoch": (known && o.validation > 0.0).then_some(&val_aucs),
        "best_validation_auc": val_aucs.iter().copied().reduce(f64::max),
        "best_epoch": metrics.and_then(|m| m.best_epoch),
    });
    let mut summary = serde_json::json!({
        "kind": "train",
        "job_id": env.spec().job_id,
        "party": me,
        "role": role_name(role),
        "dataset": ds_info.as_ref().map(|x| x.0.clone()),
        "parties": names,
        "common_rows": ds_info.as_ref().map(|x| x.2),
        "features": ds_info.as_ref().map(|x| x.1.len()),
        "train_auc": metrics.and_then(|m| m.train_auc),
        "positives": metrics.and_then(|m| m.positives),
        "revealed_to": params.reveal_to,
        "output": output,
        "shared_model": shared_path,
        "warnings": outcome.warnings,
        // Loading this party's CSV, then the PSI.
        "load_ms": load_ms,
        "psi_ms": psi_ms.saturating_sub(load_ms),
        "train_ms": train_ms,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "bytes_sent": total,
        "bytes_received": bytes_received(t),
        "bytes_sent_psi": psi_bytes,
        // Epoch 1 includes the handshake and masking X once (the Beaver cache).
        "bytes_sent_per_epoch": per_epoch,
        "bytes_sent_after_training": total.saturating_sub(epochs_bytes.last().copied().unwrap_or(psi_bytes)),
    });
    if let (Some(all), serde_json::Value::Object(fit)) = (summary.as_object_mut(), fit) {
        all.extend(fit);
    }
    tracing::info!(job = %env.spec().job_id, summary = %summary, "train finished");
    Ok(summary)
}
