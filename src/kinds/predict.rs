//! `predict`: rows aligned by ECDH-PSI, then scoring with a model that stayed
//! secret-shared after a `train --keep-shared` job (confide-training); only the initiator
//! learns the scores. Parties: the initiator, the other holder of the model, the dealer.
//! A peer uses the `train` permission of its dataset.

use std::time::Instant;

use confide_mpc::ChannelTransport;
use confide_training::{PartyNames, PredictParams, Role};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::train_common::{
    align, bad, bytes_sent, check_columns, check_dealer, check_model, check_named_dealer,
    check_peers, checked_dataset, csv_header, on_own_thread, read_share, role_name, three,
    valid_model_id,
};
use super::{Env, Kind, Plan, csv_field};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::files::write_atomic;
use crate::base::kind::JobKind;

/// Rows per round trip when scoring.
const PREDICT_BATCH: usize = 4096;

/// The options of a `predict` job: the model and the seats it was trained with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Opts {
    /// The train job's id.
    pub model: String,
    pub active: String,
    pub passive: String,
    pub dealer: String,
    pub frac_bits: u32,
}

impl Opts {
    pub fn names(&self) -> PartyNames {
        PartyNames {
            active: self.active.clone(),
            passive: self.passive.clone(),
            dealer: self.dealer.clone(),
        }
    }
}

#[derive(Debug)]
pub struct Predict;

impl Kind for Predict {
    type Opts = Opts;
    const KIND: JobKind = JobKind::Predict;

    fn check_local(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        valid_model_id(&o.model)?;
        let other = check_peers(cfg, &plan.parties[1..], &o.dealer)?;
        let meta = check_model(cfg, o, &other.party)?;
        let (_, header) = checked_dataset(cfg, plan)?;
        check_columns(&meta, &header, plan.my_dataset())
    }

    fn check_peer(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        valid_model_id(&o.model)?;
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
    valid_model_id(&o.model)?;
    let started = Instant::now();
    let me = env.me().to_string();
    let [init, other, dealer] = three(env)?;
    if dealer != o.dealer || env.spec().dataset_of(&dealer).is_some() {
        return Err(bad("the last party must be the dealer, without a dataset"));
    }
    let params = PredictParams {
        parties: o.names(),
        receiver: init.clone(),
        frac_bits: o.frac_bits,
        batch_size: PREDICT_BATCH,
    };
    if me == dealer {
        on_own_thread(
            t,
            move |inner, _: mpsc::UnboundedSender<()>| async move {
                confide_training::predict_shared(&inner, Role::Dealer, None, None, &params).await
            },
            |()| {},
        )
        .await??;
        return Ok(serde_json::json!({
            "kind": "predict", "job_id": env.spec().job_id, "party": me, "role": "dealer",
            "model": o.model, "elapsed_ms": started.elapsed().as_millis() as u64,
            "bytes_sent": bytes_sent(t),
        }));
    }
    let stored = read_share(env.config(), &o.model)?;
    if stored.meta.parties != o.names() || stored.meta.frac_bits != o.frac_bits {
        return Err(bad(format!("model `{}` does not match the job", o.model)));
    }
    let role = stored.meta.role;
    let peer = if me == init { &other } else { &init };
    let (dataset_name, ds) = env.my_dataset()?;
    let (dataset_name, ds) = (dataset_name.to_string(), ds.clone());
    // The label column (if the scoring file has it) is not a feature.
    let header = csv_header(&ds.path)?;
    let label = stored.meta.label.clone().filter(|l| header.contains(l));
    let (data, ids, _) = align(env, t, &ds, peer, label).await?;
    if data.feature_names != stored.meta.feature_names {
        return Err(bad(format!(
            "the columns of dataset `{dataset_name}` differ from the model's {:?}",
            stored.meta.feature_names
        )));
    }
    env.progress("scoring", 0, ids.len() as u64, "");
    let share = stored.share.clone();
    let scores = on_own_thread(
        t,
        move |inner, _: mpsc::UnboundedSender<()>| async move {
            confide_training::predict_shared(&inner, role, Some(data), Some(&share), &params).await
        },
        |()| {},
    )
    .await??;
    let mut output = None;
    if let Some(scores) = scores {
        let path = env
            .spec()
            .output
            .clone()
            .ok_or_else(|| bad("the receiver needs an output file"))?;
        let mut s = String::with_capacity(ids.len() * 24);
        s.push_str("id,score\n");
        for (id, p) in ids.iter().zip(&scores) {
            s.push_str(&csv_field(id));
            s.push_str(&format!(",{p:.6}\n"));
        }
        write_atomic(&path, s.as_bytes(), false)?;
        output = Some(path);
    }
    let summary = serde_json::json!({
        "kind": "predict",
        "job_id": env.spec().job_id,
        "party": me,
        "role": role_name(role),
        "model": o.model,
        "dataset": dataset_name,
        "common_rows": ids.len(),
        "receiver": init,
        "output": output,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "bytes_sent": bytes_sent(t),
    });
    tracing::info!(job = %env.spec().job_id, summary = %summary, "predict finished");
    Ok(summary)
}
