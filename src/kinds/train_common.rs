//! What the `train` and `predict` kinds share: dataset and dealer checks, the models
//! directory, the row alignment step, and mapping the training crate's errors.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use confide_mpc::transport::LinkCounters;
use confide_mpc::{ChannelTransport, MpcError, OnePeer, Transport};
use confide_proto::DatasetRef;
use confide_training::{Aligned, PredictOptions, ShareMeta, Table, TrainError};

use super::{Env, Plan};
use crate::base::config::{DatasetSection, PartyConfig};
use crate::base::error::DaemonError;
use crate::base::kind::PolicyKind;

pub fn bad(m: impl Into<String>) -> DaemonError {
    DaemonError::InvalidRequest(m.into())
}

/// The training crate's errors as the daemon reports them: input and option problems are
/// the request's fault, a broken link is a transport error, the rest is the protocol's.
pub fn train_err(e: TrainError) -> DaemonError {
    match e {
        TrainError::Mpc(MpcError::Transport(t)) => DaemonError::Transport(t),
        e @ (TrainError::Options(_)
        | TrainError::TooFewRows { .. }
        | TrainError::Csv { .. }
        | TrainError::NoSharedModel { .. }
        | TrainError::ShareFile { .. }) => DaemonError::local(e.to_string(), e.public()),
        e => DaemonError::Training(e),
    }
}

/// Where this party keeps its model shares.
pub fn models_dir(cfg: &PartyConfig) -> PathBuf {
    cfg.party.data_dir.join("models")
}

/// The metadata of the stored share of `model` at this party.
pub fn read_meta(cfg: &PartyConfig, model: &str) -> Result<ShareMeta, DaemonError> {
    let path = confide_training::share_path(&models_dir(cfg), model).map_err(train_err)?;
    ShareMeta::read(&path, model).map_err(|e| match e {
        TrainError::NoSharedModel { .. } => DaemonError::local(
            format!(
                "`{}` holds no shared model `{model}` ({} is missing; train with --keep-shared first)",
                cfg.party.name,
                path.display()
            ),
            format!("`{}` holds no shared model `{model}`", cfg.party.name),
        ),
        e => train_err(e),
    })
}

/// The header of a CSV file.
pub fn csv_header(path: &Path) -> Result<Vec<String>, DaemonError> {
    let err = |e: csv::Error| {
        DaemonError::local(
            format!("{}: {e}", path.display()),
            "dataset file is not a readable CSV (line 1)",
        )
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(err)?;
    Ok(r.headers()
        .map_err(err)?
        .iter()
        .map(str::to_string)
        .collect())
}

/// This party's dataset, checked for `kind` by `caller`, with its ID column present.
pub fn checked_dataset<'a>(
    cfg: &'a PartyConfig,
    plan: &Plan<'_>,
) -> Result<(&'a DatasetSection, Vec<String>), DaemonError> {
    let dataset = plan.my_dataset();
    let ds = plan.checked_dataset(cfg, PolicyKind::Train)?;
    let header = csv_header(&ds.path)?;
    if !header.contains(&ds.id_column) {
        return Err(DaemonError::local(
            format!(
                "dataset `{dataset}` of `{}`: {} has no column `{}` (its id_column)",
                plan.me,
                ds.path.display(),
                ds.id_column
            ),
            format!(
                "dataset `{dataset}` of `{}`: its ID column is not in the header (line 1)",
                plan.me
            ),
        ));
    }
    Ok((ds, header))
}

/// The dealer accepts only if it is its own configured dealer.
pub fn check_dealer(cfg: &PartyConfig, named: &str) -> Result<(), DaemonError> {
    if named != cfg.party.name {
        return Err(DaemonError::PermissionDenied(format!(
            "`{}` holds no dataset in this job but is not the job's dealer `{named}`",
            cfg.party.name
        )));
    }
    if cfg.alliance.dealer.as_deref() != Some(cfg.party.name.as_str()) {
        return Err(DaemonError::PermissionDenied(format!(
            "`{}` is not the training dealer in its own configuration (alliance.dealer)",
            cfg.party.name
        )));
    }
    Ok(())
}

/// A computing party accepts only the dealer of its own configuration.
pub fn check_named_dealer(cfg: &PartyConfig, named: &str) -> Result<(), DaemonError> {
    match cfg.alliance.dealer.as_deref() {
        Some(mine) if mine == named => Ok(()),
        Some(mine) => Err(DaemonError::PermissionDenied(format!(
            "the job's dealer is `{named}` but `{}` trusts only `{mine}` (alliance.dealer)",
            cfg.party.name
        ))),
        None => Err(DaemonError::PermissionDenied(format!(
            "`{}` has no training dealer configured (alliance.dealer)",
            cfg.party.name
        ))),
    }
}

/// The job's peers at the initiator: the other computing party (with a dataset), then
/// the dealer (without one).
pub fn check_peers<'a>(
    cfg: &PartyConfig,
    peers: &'a [DatasetRef],
    dealer: &str,
) -> Result<&'a DatasetRef, DaemonError> {
    let [other, dl] = peers else {
        return Err(bad(
            "a job has exactly one peer with a dataset and the dealer",
        ));
    };
    if other.dataset.is_empty() {
        return Err(bad(format!(
            "the peer `{}` needs a dataset (PARTY:DATASET)",
            other.party
        )));
    }
    if dl.party != dealer || !dl.dataset.is_empty() {
        return Err(bad(format!(
            "the last party must be the dealer `{dealer}` without a dataset"
        )));
    }
    if dealer == cfg.party.name || dealer == other.party {
        return Err(bad(format!(
            "the dealer `{dealer}` cannot also be a computing party"
        )));
    }
    check_named_dealer(cfg, dealer)?;
    Ok(other)
}

/// The stored share matches the job's options and names `other` as the other holder.
pub fn check_model(
    cfg: &PartyConfig,
    o: &PredictOptions,
    other: &str,
) -> Result<ShareMeta, DaemonError> {
    let meta = read_meta(cfg, &o.model)?;
    if meta.parties != o.names() || meta.frac_bits != o.frac_bits {
        return Err(bad(format!(
            "model `{}` at `{}` was trained by {}/{} with dealer {}, not as the job says",
            o.model, cfg.party.name, meta.parties.active, meta.parties.passive, meta.parties.dealer
        )));
    }
    let holders = [&meta.parties.active, &meta.parties.passive];
    if !holders.contains(&&cfg.party.name)
        || !holders.contains(&&other.to_string())
        || cfg.party.name == other
    {
        return Err(DaemonError::PermissionDenied(format!(
            "model `{}` is shared between `{}` and `{}`, not with `{other}`",
            o.model, meta.parties.active, meta.parties.passive
        )));
    }
    Ok(meta)
}

pub fn check_columns(
    meta: &ShareMeta,
    header: &[String],
    dataset: &str,
) -> Result<(), DaemonError> {
    let missing: Vec<&String> = meta
        .feature_names
        .iter()
        .filter(|f| !header.contains(f))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(bad(format!(
            "dataset `{dataset}` lacks the model's feature column(s) {missing:?}"
        )))
    }
}

/// One counter of the job's transport, summed over its peers.
fn counted(t: &ChannelTransport, f: fn(&LinkCounters) -> &AtomicU64) -> u64 {
    t.peers()
        .iter()
        .filter_map(|p| t.counters(p))
        .map(|c| f(&c).load(Ordering::Relaxed))
        .sum()
}

/// Bytes this party has sent over the job's streams so far.
pub fn bytes_sent(t: &ChannelTransport) -> u64 {
    counted(t, |c| &c.bytes_sent)
}

/// Messages this party has sent to its peers on the job's streams so far.
pub fn messages_sent(t: &ChannelTransport) -> u64 {
    counted(t, |c| &c.messages_sent)
}

/// Bytes this party has received over the job's streams so far.
pub fn bytes_received(t: &ChannelTransport) -> u64 {
    counted(t, |c| &c.bytes_received)
}

/// The three parties of a job, as in its spec: [initiator, other, dealer].
pub fn three(env: &dyn Env) -> Result<[String; 3], DaemonError> {
    match env.spec().party_names().as_slice() {
        [a, b, c] => Ok([a.clone(), b.clone(), c.clone()]),
        _ => Err(bad("a training job has exactly three parties")),
    }
}

/// Loads this party's table (off the runtime) and aligns its rows with `other` by a
/// two-party PSI over the job's streams to `other` only.
pub async fn align_rows(
    env: &dyn Env,
    t: &ChannelTransport,
    ds: &DatasetSection,
    parties: [&str; 2],
    other: &str,
    label: Option<String>,
) -> Result<(Aligned, u64), DaemonError> {
    let started = std::time::Instant::now();
    let (path, id_col) = (ds.path.clone(), ds.id_column.clone());
    let table: Table = tokio::task::spawn_blocking(move || {
        confide_training::load_table(&path, &id_col, label.as_deref())
    })
    .await
    .map_err(|e| DaemonError::Internal(format!("loading the table: {e}")))?
    .map_err(train_err)?;
    let load_ms = started.elapsed().as_millis() as u64;
    tracing::info!(job = %env.spec().job_id, rows = table.ids.len(), load_ms, "table loaded");
    let pair = OnePeer::new(t, other)?;
    let progress = |p: confide_psi::Progress| {
        env.progress(&format!("aligning rows: {}", p.stage), p.done, p.total, "")
    };
    let aligned = confide_training::align(&pair, table, parties, env.work_dir(), &progress)
        .await
        .map_err(train_err)?;
    Ok((aligned, load_ms))
}

/// A seat's name in job summaries.
pub fn role_name(r: confide_training::Role) -> &'static str {
    match r {
        confide_training::Role::Active => "active",
        confide_training::Role::Passive => "passive",
        confide_training::Role::Dealer => "dealer",
    }
}

/// Model ids are job ids (hex); anything else could escape the models directory.
pub fn valid_model_id(id: &str) -> Result<(), DaemonError> {
    confide_training::check_model_id(id).map_err(train_err)
}
