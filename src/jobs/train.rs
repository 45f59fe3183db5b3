//! The `train` and `predict` job kinds: rows aligned by ECDH-PSI on the ID columns, then
//! vertical logistic regression on secret shares (confide-training) with the alliance's
//! dealer, or scoring with a model that stayed secret-shared.
//!
//! Parties, in this order at every daemon: the initiator, the other computing party, the
//! dealer (`alliance.dealer`, holding no dataset). In `train` the initiator is party A (the
//! label holder).
//!
//! 1. The two computing parties run a two-party PSI (`All` mode) over the job's streams;
//!    the dealer takes no part and learns nothing of it. Both sort the common IDs the same
//!    way and put their rows in that order ([`Table::align`]).
//! 2. `train`: [`confide_training::train`]; the model (raw units) is revealed to both
//!    computing parties unless `keep_shared`, and each party's share is then kept under
//!    `data_dir/models/<job>.share` (mode 0600) for `predict`.
//! 3. `predict`: [`confide_training::predict_shared`] on the aligned rows; only the
//!    initiator learns the scores.
//!
//! What each party learns beyond the training crate's own leakage (see its docs): both
//! computing parties learn the common IDs (PSI `All`); the dealer learns the job's
//! parties, options (label name, epochs, …) and, from the training handshake, row and
//! column counts.
//!
//! Options (`train`): `label`, `epochs`, `batch_size`, `learning_rate`, `keep_shared`,
//! `seed` (drawn by the submitter; the batch order is public), `dealer`.
//! Options (`predict`): `model` (the train job id), `active`, `passive`, `dealer`,
//! `frac_bits` — checked by each computing party against its stored share.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use confide_mpc::transport::{DEFAULT_CHANNEL_DEPTH, Incoming};
use confide_mpc::{ChannelTransport, Link, Transport, TransportError};
use confide_proto::{DatasetRef, SubmitRequest};
use confide_psi::{OutputMode, PsiJob};
use confide_training::{
    EpochProgress, LocalData, Model, PartyNames, PredictParams, Role, SharedModel, Table,
    TrainError, TrainParams,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::{DatasetSection, PartyConfig};
use crate::daemon::Daemon;
use crate::daemon::jobs::JobCtx;
use crate::error::DaemonError;

const TRAIN_OPTIONS: &[&str] = &[
    "label",
    "epochs",
    "batch_size",
    "learning_rate",
    "keep_shared",
    "seed",
    "dealer",
];
const PREDICT_OPTIONS: &[&str] = &["model", "active", "passive", "dealer", "frac_bits"];
/// Format tag of a stored model share.
const SHARE_FORMAT: &str = "confide-shared-model-v1";
/// Rows per round trip when scoring.
const PREDICT_BATCH: usize = 4096;

fn bad(m: impl Into<String>) -> DaemonError {
    DaemonError::InvalidRequest(m.into())
}

fn num<T: std::str::FromStr>(
    o: &HashMap<String, String>,
    key: &str,
    default: Option<T>,
) -> Result<T, DaemonError> {
    match o.get(key) {
        Some(v) => v
            .parse()
            .map_err(|_| bad(format!("option `{key}` = `{v}` is not a valid number"))),
        None => default.ok_or_else(|| bad(format!("option `{key}` is missing"))),
    }
}

fn check_keys(o: &HashMap<String, String>, known: &[&str]) -> Result<(), DaemonError> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("unknown option `{k}`"))),
        None => Ok(()),
    }
}

/// The options of a `train` job.
#[derive(Debug, Clone)]
struct TrainOpts {
    label: String,
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    keep_shared: bool,
    seed: u64,
    dealer: String,
}

impl TrainOpts {
    fn parse(o: &HashMap<String, String>) -> Result<Self, DaemonError> {
        check_keys(o, TRAIN_OPTIONS)?;
        let label = o
            .get("label")
            .filter(|l| !l.trim().is_empty())
            .ok_or_else(|| bad("option `label` (the label column) is missing"))?
            .clone();
        let epochs: usize = num(o, "epochs", Some(10))?;
        if !(1..=100_000).contains(&epochs) {
            return Err(bad(format!("epochs must be in 1..=100000, got {epochs}")));
        }
        let batch_size: usize = num(o, "batch_size", Some(1024))?;
        if !(1..=1 << 20).contains(&batch_size) {
            return Err(bad(format!(
                "batch size must be in 1..=1048576, got {batch_size}"
            )));
        }
        let learning_rate: f64 = num(o, "learning_rate", Some(0.1))?;
        if !(learning_rate > 0.0 && learning_rate <= 10.0) {
            return Err(bad(format!(
                "learning rate must be in (0, 10], got {learning_rate}"
            )));
        }
        let keep_shared = match o.get("keep_shared").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(bad(format!("keep_shared = `{v}` (true or false)"))),
        };
        let seed: u64 = num(o, "seed", None)?;
        let dealer = o
            .get("dealer")
            .ok_or_else(|| bad("option `dealer` is missing"))?
            .clone();
        Ok(Self {
            label,
            epochs,
            batch_size,
            learning_rate,
            keep_shared,
            seed,
            dealer,
        })
    }
}

/// The options of a `predict` job.
#[derive(Debug, Clone)]
struct PredictOpts {
    model: String,
    names: PartyNames,
    frac_bits: u32,
}

impl PredictOpts {
    fn parse(o: &HashMap<String, String>) -> Result<Self, DaemonError> {
        check_keys(o, PREDICT_OPTIONS)?;
        let get = |k: &str| {
            o.get(k)
                .cloned()
                .ok_or_else(|| bad(format!("option `{k}` is missing")))
        };
        let model = get("model")?;
        valid_model_id(&model)?;
        Ok(Self {
            model,
            names: PartyNames {
                active: get("active")?,
                passive: get("passive")?,
                dealer: get("dealer")?,
            },
            frac_bits: num(o, "frac_bits", None)?,
        })
    }
}

/// Model ids are job ids (hex); anything else could escape the models directory.
fn valid_model_id(id: &str) -> Result<(), DaemonError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(bad(format!(
            "`{id}` is not a model id (the job id of a `train --keep-shared` job)"
        )))
    }
}

/// The header of a CSV file.
fn csv_header(path: &Path) -> Result<Vec<String>, DaemonError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    Ok(r.headers()
        .map_err(|e| bad(format!("{}: {e}", path.display())))?
        .iter()
        .map(str::to_string)
        .collect())
}

/// This party's dataset, checked for `kind` by `caller`, with its ID column present.
fn dataset<'a>(
    d: &'a Daemon,
    dataset: &str,
    caller: &str,
) -> Result<(&'a DatasetSection, Vec<String>), DaemonError> {
    let ds = d.cfg.check_policy(dataset, "train", caller).map_err(|e| {
        if caller == d.me {
            bad(e)
        } else {
            DaemonError::PermissionDenied(e)
        }
    })?;
    let header = csv_header(&ds.path)?;
    if !header.contains(&ds.id_column) {
        return Err(bad(format!(
            "dataset `{dataset}` of `{}`: {} has no column `{}` (its id_column)",
            d.me,
            ds.path.display(),
            ds.id_column
        )));
    }
    Ok((ds, header))
}

/// The dealer accepts only if it is its own configured dealer.
fn check_dealer(d: &Daemon, named: &str) -> Result<(), DaemonError> {
    if named != d.me {
        return Err(DaemonError::PermissionDenied(format!(
            "`{}` holds no dataset in this job but is not the job's dealer `{named}`",
            d.me
        )));
    }
    if d.cfg.alliance.dealer.as_deref() != Some(d.me.as_str()) {
        return Err(DaemonError::PermissionDenied(format!(
            "`{}` is not the training dealer in its own configuration (alliance.dealer)",
            d.me
        )));
    }
    Ok(())
}

/// A computing party accepts only the dealer of its own configuration.
fn check_named_dealer(d: &Daemon, named: &str) -> Result<(), DaemonError> {
    match d.cfg.alliance.dealer.as_deref() {
        Some(mine) if mine == named => Ok(()),
        Some(mine) => Err(DaemonError::PermissionDenied(format!(
            "the job's dealer is `{named}` but `{}` trusts only `{mine}` (alliance.dealer)",
            d.me
        ))),
        None => Err(DaemonError::PermissionDenied(format!(
            "`{}` has no training dealer configured (alliance.dealer)",
            d.me
        ))),
    }
}

/// The job's peers at the initiator: the other computing party (with a dataset), then
/// the dealer (without one).
fn check_peers<'a>(
    d: &Daemon,
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
    if dealer == d.me || dealer == other.party {
        return Err(bad(format!(
            "the dealer `{dealer}` cannot also be a computing party"
        )));
    }
    check_named_dealer(d, dealer)?;
    Ok(other)
}

pub fn check_local(
    d: &Daemon,
    dataset_name: &str,
    peers: &[DatasetRef],
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    let o = TrainOpts::parse(options)?;
    check_peers(d, peers, &o.dealer)?;
    let (ds, header) = dataset(d, dataset_name, &d.me)?;
    if o.label == ds.id_column {
        return Err(bad(format!(
            "the label column `{}` is the ID column",
            o.label
        )));
    }
    if !header.contains(&o.label) {
        return Err(bad(format!(
            "label column `{}` is not in dataset `{dataset_name}` of `{}` ({})",
            o.label,
            d.me,
            ds.path.display()
        )));
    }
    Ok(())
}

pub fn check_peer(
    d: &Daemon,
    dataset_name: &str,
    caller: &str,
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    let o = TrainOpts::parse(options)?;
    if dataset_name.is_empty() {
        return check_dealer(d, &o.dealer);
    }
    check_named_dealer(d, &o.dealer)?;
    dataset(d, dataset_name, caller).map(|_| ())
}

/// At the initiator: a `predict` job.
pub fn check_local_predict(
    d: &Daemon,
    dataset_name: &str,
    peers: &[DatasetRef],
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    let o = PredictOpts::parse(options)?;
    let other = check_peers(d, peers, &o.names.dealer)?;
    let meta = check_model(d, &o, &other.party)?;
    let (_, header) = dataset(d, dataset_name, &d.me)?;
    check_columns(&meta, &header, dataset_name)
}

/// At a peer: a `predict` job (it uses the `train` permission of the dataset).
pub fn check_peer_predict(
    d: &Daemon,
    dataset_name: &str,
    caller: &str,
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    let o = PredictOpts::parse(options)?;
    if dataset_name.is_empty() {
        return check_dealer(d, &o.names.dealer);
    }
    check_named_dealer(d, &o.names.dealer)?;
    let meta = check_model(d, &o, caller)?;
    let (_, header) = dataset(d, dataset_name, caller)?;
    check_columns(&meta, &header, dataset_name)
}

/// The stored share matches the job's options and names `other` as the other holder.
fn check_model(d: &Daemon, o: &PredictOpts, other: &str) -> Result<ShareMeta, DaemonError> {
    let meta = read_meta(&d.cfg, &o.model).map_err(|e| bad(e.to_string()))?;
    if meta.parties != o.names || meta.frac_bits != o.frac_bits {
        return Err(bad(format!(
            "model `{}` at `{}` was trained by {}/{} with dealer {}, not as the job says",
            o.model, d.me, meta.parties.active, meta.parties.passive, meta.parties.dealer
        )));
    }
    let holders = [&meta.parties.active, &meta.parties.passive];
    if !holders.contains(&&d.me) || !holders.contains(&&other.to_string()) || d.me == other {
        return Err(DaemonError::PermissionDenied(format!(
            "model `{}` is shared between `{}` and `{}`, not with `{other}`",
            o.model, meta.parties.active, meta.parties.passive
        )));
    }
    Ok(meta)
}

fn check_columns(meta: &ShareMeta, header: &[String], dataset: &str) -> Result<(), DaemonError> {
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

/// A view of the job's transport restricted to one peer (the PSI between the two
/// computing parties runs over the same streams while the dealer waits).
struct Pair<'a> {
    inner: &'a ChannelTransport,
    peer: String,
}

impl Transport for Pair<'_> {
    fn me(&self) -> &str {
        self.inner.me()
    }

    fn peers(&self) -> Vec<String> {
        vec![self.peer.clone()]
    }

    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), TransportError> {
        if to != self.peer {
            return Err(TransportError::UnknownPeer(to.to_string()));
        }
        self.inner.send(to, msg).await
    }

    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        if from != self.peer {
            return Err(TransportError::UnknownPeer(from.to_string()));
        }
        self.inner.recv(from).await
    }
}

/// Bytes this party has sent over the job's streams so far.
fn bytes_sent(t: &ChannelTransport) -> u64 {
    t.peers()
        .iter()
        .filter_map(|p| t.counters(p))
        .map(|c| c.bytes_sent.load(Ordering::Relaxed))
        .sum()
}

fn bytes_received(t: &ChannelTransport) -> u64 {
    t.peers()
        .iter()
        .filter_map(|p| t.counters(p))
        .map(|c| c.bytes_received.load(Ordering::Relaxed))
        .sum()
}

fn train_err(e: TrainError) -> DaemonError {
    match e {
        TrainError::Mpc(confide_mpc::MpcError::Transport(t)) => DaemonError::Transport(t),
        other => DaemonError::Protocol(other.to_string()),
    }
}

/// Runs a protocol on a dedicated thread with its own single-threaded runtime, over a
/// relay of the job's transport, and reports its progress events to `on_progress` here.
///
/// The training crate does its CPU-heavy matrix work inside its futures; on its own
/// thread it never blocks the daemon's runtime (gRPC pumps, keepalives, other jobs), and
/// its futures need not be `Send`.
/// If this future is dropped (job aborted, deadline), the relay's channels close and the
/// protocol on the thread fails at its next message.
async fn on_own_thread<R, P, Fut>(
    t: &ChannelTransport,
    job: impl FnOnce(ChannelTransport, mpsc::UnboundedSender<P>) -> Fut + Send + 'static,
    on_progress: impl Fn(P),
) -> Result<R, DaemonError>
where
    R: Send + 'static,
    P: Send + 'static,
    Fut: std::future::Future<Output = R> + 'static,
{
    let mut links = BTreeMap::new();
    let mut outs = Vec::new();
    let mut ins = Vec::new();
    for p in t.peers() {
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(DEFAULT_CHANNEL_DEPTH);
        let (in_tx, in_rx) = mpsc::channel::<Incoming>(DEFAULT_CHANNEL_DEPTH);
        links.insert(
            p.clone(),
            Link {
                outgoing: out_tx,
                incoming: in_rx,
            },
        );
        outs.push((p.clone(), out_rx));
        ins.push((p, in_tx));
    }
    let inner = ChannelTransport::from_links(t.me(), links);
    let (res_tx, res_rx) = tokio::sync::oneshot::channel();
    let (ptx, mut prx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("confide-mpc".into())
        .spawn(move || {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(job(inner, ptx)));
            let _ = res_tx.send(r);
        })
        .map_err(|e| DaemonError::Internal(format!("starting the protocol thread: {e}")))?;
    // Outgoing: until the protocol drops its transport (so its last messages leave).
    let outgoing = futures::future::join_all(outs.into_iter().map(|(p, mut rx)| async move {
        while let Some(m) = rx.recv().await {
            t.send(&p, m).await?;
        }
        Ok::<(), TransportError>(())
    }));
    // Incoming: forever (a broken link is passed on as the reason).
    let incoming = futures::future::join_all(ins.into_iter().map(|(p, tx)| async move {
        loop {
            let item = match t.recv(&p).await {
                Ok(m) => Ok(m),
                Err(TransportError::Disconnected { reason, .. }) => Err(reason),
                Err(e) => Err(e.to_string()),
            };
            let broken = item.is_err();
            if tx.send(item).await.is_err() || broken {
                break;
            }
        }
        std::future::pending::<()>().await
    }));
    let progress = async {
        while let Some(p) = prx.recv().await {
            on_progress(p);
        }
    };
    let done = async {
        let (r, sent, ()) = tokio::join!(res_rx, outgoing, progress);
        let r = r
            .map_err(|_| DaemonError::Internal("the protocol thread ended unexpectedly".into()))?
            .map_err(|e| DaemonError::Internal(format!("protocol runtime: {e}")))?;
        Ok::<_, DaemonError>((r, sent))
    };
    tokio::select! {
        r = done => {
            let (r, sent) = r?;
            for s in sent {
                s?;
            }
            Ok(r)
        }
        _ = incoming => Err(DaemonError::Internal("relay ended".into())),
    }
}

/// The three parties of a job, as in its spec: [initiator, other, dealer].
fn three(ctx: &JobCtx) -> Result<[String; 3], DaemonError> {
    match ctx.spec.party_names().as_slice() {
        [a, b, c] => Ok([a.clone(), b.clone(), c.clone()]),
        _ => Err(bad("a training job has exactly three parties")),
    }
}

/// PSI with `other`, then this party's table in the sorted common order.
/// Returns (rows aligned, common ID list, PSI bytes sent).
async fn align(
    ctx: &JobCtx,
    t: &ChannelTransport,
    ds: &DatasetSection,
    other: &str,
    label: Option<String>,
) -> Result<(LocalData, Vec<String>, u64), DaemonError> {
    let path = ds.path.clone();
    let id_col = ds.id_column.clone();
    // Read and check the whole table before any cryptography.
    let started = Instant::now();
    let table: Table = tokio::task::spawn_blocking(move || {
        confide_training::load_table(&path, &id_col, label.as_deref())
    })
    .await
    .map_err(|e| DaemonError::Internal(format!("loading the table: {e}")))?
    .map_err(|e| bad(e.to_string()))?;
    let load_ms = started.elapsed().as_millis() as u64;
    tracing::info!(job = %ctx.spec.job_id, rows = table.ids.len(), load_ms, "table loaded");
    let out = ctx.work_dir.join("common-ids.csv");
    let pair = Pair {
        inner: t,
        peer: other.to_string(),
    };
    let initiator = ctx.spec.initiator().to_string();
    let job = PsiJob {
        parties: ctx
            .spec
            .party_names()
            .into_iter()
            .filter(|p| p == t.me() || p == other)
            .collect(),
        initiator,
        mode: OutputMode::All,
        input: ds.path.clone(),
        id_column: ds.id_column.clone(),
        output: Some(out.clone()),
        work_dir: ctx.work_dir.clone(),
    };
    let progress = |p: confide_psi::Progress| {
        ctx.progress(&format!("aligning rows: {}", p.stage), p.done, p.total, "")
    };
    confide_psi::run(&pair, &job, &progress)
        .await
        .map_err(|e| match e {
            confide_psi::PsiError::Transport(t) => DaemonError::Transport(t),
            other => DaemonError::Protocol(format!("row alignment (psi): {other}")),
        })?;
    let mut ids = read_ids(&out)?;
    ids.sort_unstable();
    ids.dedup();
    let min = confide_training::protocol::MIN_ROWS;
    if ids.len() < min {
        return Err(bad(format!(
            "only {} common rows between {} and {other} (at least {min} needed)",
            ids.len(),
            ctx.spec.initiator()
        )));
    }
    let data = table.align(&ids).map_err(|e| bad(e.to_string()))?;
    Ok((data, ids, load_ms))
}

fn read_ids(path: &Path) -> Result<Vec<String>, DaemonError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| DaemonError::Internal(format!("{}: {e}", path.display())))?;
    r.records()
        .map(|rec| {
            rec.map(|r| r.get(0).unwrap_or("").to_string())
                .map_err(|e| DaemonError::Internal(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same directory, with mode
/// 0600 when `private`.
fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<(), DaemonError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        hex::encode(rand::random::<[u8; 4]>())
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let res = opts
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(DaemonError::io(format!("writing {}", path.display()), e));
    }
    Ok(())
}

/// What `data_dir/models/<job>.share` holds besides the share (readable by the CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShareMeta {
    format: String,
    job_id: String,
    /// The seats of the training job.
    parties: PartyNames,
    /// This party's role.
    role: Role,
    dataset: String,
    label: Option<String>,
    /// This party's input feature columns at training, in file order.
    feature_names: Vec<String>,
    frac_bits: u32,
    created_unix_ms: u64,
}

/// The stored file: metadata and this party's share (keep it like a key).
#[derive(Debug, Serialize, Deserialize)]
struct StoredShare {
    #[serde(flatten)]
    meta: ShareMeta,
    share: SharedModel,
}

fn models_dir(cfg: &PartyConfig) -> PathBuf {
    cfg.party.data_dir.join("models")
}

fn share_path(cfg: &PartyConfig, model: &str) -> PathBuf {
    models_dir(cfg).join(format!("{model}.share"))
}

fn read_meta(cfg: &PartyConfig, model: &str) -> anyhow::Result<ShareMeta> {
    let path = share_path(cfg, model);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        anyhow!(
            "`{}` holds no shared model `{model}` ({} is missing; train with --keep-shared first)",
            cfg.party.name,
            path.display()
        )
    })?;
    let meta: ShareMeta =
        serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
    if meta.format != SHARE_FORMAT || meta.job_id != model {
        bail!("{}: not a shared model file of job {model}", path.display());
    }
    Ok(meta)
}

fn read_share(cfg: &PartyConfig, model: &str) -> Result<StoredShare, DaemonError> {
    let path = share_path(cfg, model);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| DaemonError::io(format!("reading {}", path.display()), e))?;
    let s: StoredShare =
        serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if s.meta.format != SHARE_FORMAT || s.meta.job_id != model {
        return Err(bad(format!(
            "{}: not a shared model file of job {model}",
            path.display()
        )));
    }
    Ok(s)
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Active => "active",
        Role::Passive => "passive",
        Role::Dealer => "dealer",
    }
}

/// This party's dataset in the job (name and configuration).
fn my_dataset(ctx: &JobCtx) -> Result<(String, DatasetSection), DaemonError> {
    let me = ctx.me();
    let name = ctx
        .spec
        .dataset_of(me)
        .ok_or_else(|| bad(format!("no dataset of `{me}` in the job")))?;
    let ds = ctx
        .daemon
        .cfg
        .datasets
        .get(name)
        .ok_or_else(|| bad(format!("party `{me}` has no dataset `{name}`")))?;
    Ok((name.to_string(), ds.clone()))
}

/// Runs this party's side of a `train` job.
pub async fn run(ctx: &JobCtx, t: &ChannelTransport) -> Result<serde_json::Value, DaemonError> {
    let started = Instant::now();
    let d = &ctx.daemon;
    let options: HashMap<String, String> = ctx.spec.options.clone().into_iter().collect();
    let o = TrainOpts::parse(&options)?;
    let [a, b, dealer] = three(ctx)?;
    if dealer != o.dealer || ctx.spec.dataset_of(&dealer).is_some() {
        return Err(bad("the last party must be the dealer, without a dataset"));
    }
    let names = PartyNames {
        active: a.clone(),
        passive: b.clone(),
        dealer: dealer.clone(),
    };
    let role = if d.me == a {
        Role::Active
    } else if d.me == b {
        Role::Passive
    } else {
        Role::Dealer
    };
    let mut params = TrainParams::new(names.clone());
    params.epochs = o.epochs;
    params.batch_size = o.batch_size;
    params.learning_rate = o.learning_rate;
    params.seed = o.seed;
    if o.keep_shared {
        params.reveal_to = vec![];
    }

    // 1. Row alignment (computing parties only).
    let mut data = None;
    let mut ds_info = None;
    let mut load_ms = 0;
    if role != Role::Dealer {
        let (dataset_name, ds) = my_dataset(ctx)?;
        let other = if role == Role::Active { &b } else { &a };
        let label = (role == Role::Active).then(|| o.label.clone());
        let (local, ids, ms) = align(ctx, t, &ds, other, label).await?;
        ds_info = Some((dataset_name, local.feature_names.clone(), ids.len()));
        load_ms = ms;
        data = Some(local);
    }
    let psi_ms = started.elapsed().as_millis() as u64;
    let psi_bytes = bytes_sent(t);

    // 2. Training, on its own thread.
    let epoch_bytes = Mutex::new(Vec::with_capacity(o.epochs));
    ctx.progress("training", 0, o.epochs as u64, "");
    let train_started = Instant::now();
    let p2 = params.clone();
    let outcome = on_own_thread(
        t,
        move |inner, ptx| async move {
            let progress = move |p: EpochProgress| {
                let _ = ptx.send(p);
            };
            confide_training::train(&inner, role, data, &p2, &progress).await
        },
        |p: EpochProgress| {
            if let Ok(mut v) = epoch_bytes.lock() {
                v.push(bytes_sent(t));
            }
            let msg = p.loss.map(|l| format!("loss {l:.4}")).unwrap_or_default();
            tracing::info!(job = %ctx.spec.job_id, epoch = p.epoch, epochs = p.epochs, loss = ?p.loss, "epoch done");
            ctx.progress("epoch", p.epoch as u64, p.epochs as u64, &msg);
        },
    )
    .await?
    .map_err(train_err)?;
    let train_ms = train_started.elapsed().as_millis() as u64;
    for w in &outcome.warnings {
        ctx.progress("warning", 0, 0, w);
    }

    // 3. Outputs.
    let model_json = |m: &Model| {
        serde_json::to_vec_pretty(m)
            .map_err(|e| DaemonError::Internal(format!("serializing the model: {e}")))
    };
    let mut output = None;
    if let Some(m) = &outcome.model {
        let path = if ctx.is_initiator() {
            ctx.spec
                .output
                .clone()
                .ok_or_else(|| bad("the initiator needs an output file"))?
        } else {
            d.cfg
                .party
                .data_dir
                .join("results")
                .join(format!("model-{}.json", ctx.spec.job_id))
        };
        write_atomic(&path, &model_json(m)?, false)?;
        output = Some(path);
    }
    let mut shared_path = None;
    if o.keep_shared
        && let (Some(share), Some((dataset_name, feature_names, _))) =
            (outcome.shared.clone(), ds_info.as_ref())
    {
        let stored = StoredShare {
            meta: ShareMeta {
                format: SHARE_FORMAT.into(),
                job_id: ctx.spec.job_id.clone(),
                parties: names.clone(),
                role,
                dataset: dataset_name.clone(),
                label: (role == Role::Active).then(|| o.label.clone()),
                feature_names: feature_names.clone(),
                frac_bits: share.frac_bits,
                created_unix_ms: crate::daemon::jobs::now_ms(),
            },
            share,
        };
        let mut bytes = serde_json::to_vec(&stored)
            .map_err(|e| DaemonError::Internal(format!("serializing the share: {e}")))?;
        let path = share_path(&d.cfg, &ctx.spec.job_id);
        let res = write_atomic(&path, &bytes, true);
        bytes.fill(0);
        std::hint::black_box(&bytes);
        res?;
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
    let summary = serde_json::json!({
        "kind": "train",
        "job_id": ctx.spec.job_id,
        "party": d.me,
        "role": role_name(role),
        "dataset": ds_info.as_ref().map(|x| x.0.clone()),
        "parties": names,
        "common_rows": ds_info.as_ref().map(|x| x.2),
        "features": ds_info.as_ref().map(|x| x.1.len()),
        "epochs": o.epochs,
        "batch_size": o.batch_size,
        "learning_rate": o.learning_rate,
        "seed": o.seed,
        "label": o.label,
        "loss_per_epoch": metrics.map(|m| m.loss_per_epoch.clone()),
        "final_loss": metrics.and_then(|m| m.loss_per_epoch.last().copied()),
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
    tracing::info!(job = %ctx.spec.job_id, summary = %summary, "train finished");
    Ok(summary)
}

/// Runs this party's side of a `predict` job.
pub async fn run_predict(
    ctx: &JobCtx,
    t: &ChannelTransport,
) -> Result<serde_json::Value, DaemonError> {
    let started = Instant::now();
    let d = &ctx.daemon;
    let options: HashMap<String, String> = ctx.spec.options.clone().into_iter().collect();
    let o = PredictOpts::parse(&options)?;
    let [init, other, dealer] = three(ctx)?;
    if dealer != o.names.dealer || ctx.spec.dataset_of(&dealer).is_some() {
        return Err(bad("the last party must be the dealer, without a dataset"));
    }
    let params = PredictParams {
        parties: o.names.clone(),
        receiver: init.clone(),
        frac_bits: o.frac_bits,
        batch_size: PREDICT_BATCH,
    };
    if d.me == dealer {
        on_own_thread(
            t,
            move |inner, _: mpsc::UnboundedSender<()>| async move {
                confide_training::predict_shared(&inner, Role::Dealer, None, None, &params).await
            },
            |()| {},
        )
        .await?
        .map_err(train_err)?;
        return Ok(serde_json::json!({
            "kind": "predict", "job_id": ctx.spec.job_id, "party": d.me, "role": "dealer",
            "model": o.model, "elapsed_ms": started.elapsed().as_millis() as u64,
            "bytes_sent": bytes_sent(t),
        }));
    }
    let stored = read_share(&d.cfg, &o.model)?;
    if stored.meta.parties != o.names || stored.meta.frac_bits != o.frac_bits {
        return Err(bad(format!("model `{}` does not match the job", o.model)));
    }
    let role = stored.meta.role;
    let peer = if d.me == init { &other } else { &init };
    let (dataset_name, ds) = my_dataset(ctx)?;
    // The label column (if the scoring file has it) is not a feature.
    let header = csv_header(&ds.path)?;
    let label = stored.meta.label.clone().filter(|l| header.contains(l));
    let (data, ids, _) = align(ctx, t, &ds, peer, label).await?;
    if data.feature_names != stored.meta.feature_names {
        return Err(bad(format!(
            "the columns of dataset `{dataset_name}` differ from the model's {:?}",
            stored.meta.feature_names
        )));
    }
    ctx.progress("scoring", 0, ids.len() as u64, "");
    let share = stored.share.clone();
    let scores = on_own_thread(
        t,
        move |inner, _: mpsc::UnboundedSender<()>| async move {
            confide_training::predict_shared(&inner, role, Some(data), Some(&share), &params).await
        },
        |()| {},
    )
    .await?
    .map_err(train_err)?;
    let mut output = None;
    if let Some(scores) = scores {
        let path = ctx
            .spec
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
        "job_id": ctx.spec.job_id,
        "party": d.me,
        "role": role_name(role),
        "model": o.model,
        "dataset": dataset_name,
        "common_rows": ids.len(),
        "receiver": init,
        "output": output,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "bytes_sent": bytes_sent(t),
    });
    tracing::info!(job = %ctx.spec.job_id, summary = %summary, "predict finished");
    Ok(summary)
}

/// Quotes a CSV field when needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The dealer a `train` or `predict` job uses: the configured one, distinct from both
/// computing parties.
fn configured_dealer(cfg: &PartyConfig, peer: &str) -> anyhow::Result<String> {
    let dealer = cfg.alliance.dealer.clone().ok_or_else(|| {
        anyhow!(
            "no training dealer is configured: set `dealer` under [alliance] in {} (confide init --dealer NAME)",
            cfg.source.display()
        )
    })?;
    if dealer == cfg.party.name || dealer == peer {
        bail!(
            "the configured dealer `{dealer}` is a party of this job; the dealer must be a third party"
        );
    }
    Ok(dealer)
}

/// A `train` or `predict` request: this party's dataset, the peer's, and the dealer.
fn job_request(
    kind: &str,
    dataset: &str,
    peer: DatasetRef,
    dealer: &str,
    options: &[(&str, String)],
    output: &Path,
) -> SubmitRequest {
    SubmitRequest {
        kind: kind.into(),
        dataset: dataset.into(),
        peers: vec![
            peer,
            DatasetRef {
                party: dealer.into(),
                dataset: String::new(),
            },
        ],
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        output: output.to_string_lossy().into_owned(),
        timeout_secs: 0,
    }
}

/// `confide train`.
pub async fn command(a: crate::cli::TrainArgs) -> anyhow::Result<ExitCode> {
    let cfg = PartyConfig::load(&a.config.config)?;
    let peer = crate::commands::parse_peer(&a.peer)?;
    let dealer = configured_dealer(&cfg, &peer.party)?;
    let mut options = vec![
        ("label", a.label.clone()),
        ("epochs", a.epochs.to_string()),
        ("batch_size", a.batch_size.to_string()),
        ("keep_shared", a.keep_shared.to_string()),
        ("seed", rand::random::<u64>().to_string()),
        ("dealer", dealer.clone()),
    ];
    if let Some(lr) = a.learning_rate {
        options.push(("learning_rate", lr.to_string()));
    }
    let output = crate::commands::absolute(&a.output)?;
    let req = job_request("train", &a.dataset, peer, &dealer, &options, &output);
    let (job, r) = crate::commands::submit(&cfg, req).await?;
    println!("{}", train_summary(&job, &r));
    Ok(ExitCode::SUCCESS)
}

/// The one-line summary of a train job.
pub fn train_summary(job: &str, r: &serde_json::Value) -> String {
    let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let f = |k: &str| r.get(k).and_then(|v| v.as_f64());
    let mut s = format!(
        "train job {job}: {} common rows, {} epochs",
        n("common_rows"),
        n("epochs")
    );
    if let Some(l) = f("final_loss") {
        s.push_str(&format!(", final loss {l:.4}"));
    }
    if let Some(auc) = f("train_auc") {
        s.push_str(&format!(", train AUC {auc:.4}"));
    }
    match (
        r.get("output").and_then(|v| v.as_str()),
        r.get("shared_model").and_then(|v| v.as_str()),
    ) {
        (Some(out), _) => s.push_str(&format!("; model written to {out}")),
        (None, Some(_)) => s.push_str(&format!(
            "; model kept secret-shared (use `confide predict --model {job}`)"
        )),
        (None, None) => s.push_str("; model not revealed to this party"),
    }
    s.push_str(&format!(" in {:.2} s", n("elapsed_ms") as f64 / 1000.0));
    s
}

/// `confide predict`.
pub async fn predict_command(a: crate::cli::PredictArgs) -> anyhow::Result<ExitCode> {
    let cfg = PartyConfig::load(&a.config.config)?;
    let peer = crate::commands::parse_peer(&a.peer)?;
    valid_model_id(&a.model).map_err(|e| anyhow!("{e}"))?;
    let meta = read_meta(&cfg, &a.model)?;
    let holders = [&meta.parties.active, &meta.parties.passive];
    if !holders.contains(&&peer.party) || peer.party == cfg.party.name {
        bail!(
            "model `{}` is shared between `{}` and `{}`: the peer must be the other one",
            a.model,
            meta.parties.active,
            meta.parties.passive
        );
    }
    let options = [
        ("model", a.model.clone()),
        ("active", meta.parties.active.clone()),
        ("passive", meta.parties.passive.clone()),
        ("dealer", meta.parties.dealer.clone()),
        ("frac_bits", meta.frac_bits.to_string()),
    ];
    let output = crate::commands::absolute(&a.output)?;
    let peer_dealer = meta.parties.dealer.clone();
    let req = job_request("predict", &a.dataset, peer, &peer_dealer, &options, &output);
    let (job, r) = crate::commands::submit(&cfg, req).await?;
    println!(
        "predict job {job}: scored {} common rows with model {}; scores written to {} (only {} sees them) in {:.2} s",
        r.get("common_rows").and_then(|v| v.as_u64()).unwrap_or(0),
        a.model,
        r.get("output").and_then(|v| v.as_str()).unwrap_or("-"),
        cfg.party.name,
        r.get("elapsed_ms").and_then(|v| v.as_u64()).unwrap_or(0) as f64 / 1000.0
    );
    Ok(ExitCode::SUCCESS)
}

/// Rows and features of the demo's training data, and its job parameters.
const DEMO_MAX_ROWS: usize = 3000;
const DEMO_FEATURES: usize = 5;
const DEMO_EPOCHS: usize = 5;
const DEMO_BATCH: usize = 64;
const DEMO_LR: f64 = 0.1;
const DEMO_SEED: u64 = 2024;
/// The joined common rows, for the demo's plaintext reference only.
const REFERENCE: &str = "plaintext-reference.csv";

/// Writes `rows` of `tables` side by side (IDs from the first), with the label of
/// `label` (a table holding one) as column `default`.
fn write_rows(
    path: &Path,
    label: Option<&Table>,
    tables: &[&Table],
    rows: impl Iterator<Item = usize>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    write!(f, "customer_id")?;
    if label.is_some() {
        write!(f, ",default")?;
    }
    for t in tables {
        for n in &t.feature_names {
            write!(f, ",{n}")?;
        }
    }
    writeln!(f)?;
    for i in rows {
        write!(f, "{}", tables[0].ids[i])?;
        if let Some(y) = label.and_then(|t| t.label.as_ref()) {
            write!(f, ",{}", y[i])?;
        }
        for t in tables {
            for v in t.features.row(i) {
                write!(f, ",{v}")?;
            }
        }
        writeln!(f)?;
    }
    f.flush()?;
    Ok(())
}

/// Writes the demo's training data and declares it (before the daemons start): alice (a
/// bank: the `default` label and 5 features) holds customers 0..n, bob (a platform: 5
/// features) holds customers n/10..n·11/10 in reverse order, so the rows must be aligned.
pub fn demo_data(dir: &Path, rows: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let n = rows.clamp(200, DEMO_MAX_ROWS);
    let extra = n / 10;
    let (ta, tb) = confide_training::generate_credit(n + extra, DEMO_FEATURES, DEMO_FEATURES, 11);
    let data = dir.join("demo-data");
    std::fs::create_dir_all(&data)?;
    let a = data.join("alice-credit.csv");
    let b = data.join("bob-credit.csv");
    write_rows(&a, Some(&ta), &[&ta], 0..n)?;
    write_rows(&b, None, &[&tb], (extra..n + extra).rev())?;
    // IDs are zero-padded, so the sorted common order is the row order.
    write_rows(&data.join(REFERENCE), Some(&ta), &[&ta, &tb], extra..n)?;
    for (party, path, peer) in [("alice", &a, "bob"), ("bob", &b, "alice")] {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(party).join("party.toml"))?;
        writeln!(
            f,
            "\n[datasets.credit]\npath = \"{}\"\nid_column = \"customer_id\"\nallow = {{ train = [\"{peer}\"] }}",
            path.display()
        )?;
    }
    Ok(())
}

/// The demo's training step: alice and bob train on their generated columns with carol as
/// the dealer; the secure model's AUC is printed beside the plaintext one.
pub async fn demo_step(alliance: &crate::demo::LocalAlliance) -> anyhow::Result<()> {
    let t = Instant::now();
    let alice = alliance.config("alice")?;
    let out = alliance.dir.join("alice").join("model.json");
    let dealer = configured_dealer(&alice, "bob")?;
    let options = [
        ("label", "default".to_string()),
        ("epochs", DEMO_EPOCHS.to_string()),
        ("batch_size", DEMO_BATCH.to_string()),
        ("learning_rate", DEMO_LR.to_string()),
        ("seed", DEMO_SEED.to_string()),
        ("dealer", dealer.clone()),
    ];
    let bob = DatasetRef {
        party: "bob".into(),
        dataset: "credit".into(),
    };
    let mut req = job_request("train", "credit", bob, &dealer, &options, &out);
    req.timeout_secs = 600;
    let (job, r) = crate::commands::submit_with(&alice, req, false).await?;
    let model: Model = serde_json::from_slice(
        &std::fs::read(&out).with_context(|| format!("reading {}", out.display()))?,
    )
    .context("model.json")?;
    let (secure, plain, rows) =
        demo_reference(&alliance.dir.join("demo-data").join(REFERENCE), &model)?;
    crate::demo::step(
        &format!(
            "{}; AUC on the {rows} common rows: secure {secure:.4} (binned on shares {:.4}), plaintext {plain:.4}",
            train_summary(&job, &r),
            r.get("train_auc")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN),
        ),
        t,
    );
    Ok(())
}

/// The secure model's AUC on the demo's common rows and the plaintext reference's.
/// Returns (secure, plaintext, rows).
fn demo_reference(path: &Path, model: &Model) -> anyhow::Result<(f64, f64, usize)> {
    let t = confide_training::load_table(path, "customer_id", Some("default"))?;
    let (secure, plain) = reference_aucs(&t, model, DEMO_EPOCHS, DEMO_BATCH, DEMO_LR, DEMO_SEED)?;
    Ok((secure, plain, t.ids.len()))
}

/// On a joined table of common rows (label and every party's features, rows in the
/// sorted common-ID order the job used): the AUC of a revealed `model` (raw units, scored
/// in plaintext) and of plaintext logistic regression trained on the same rows — f64
/// mini-batch SGD with the exact sigmoid, the same standardization, batch schedule
/// (`seed`), learning rate and epochs. Returns (model AUC, plaintext AUC).
pub fn reference_aucs(
    t: &Table,
    model: &Model,
    epochs: usize,
    batch: usize,
    lr: f64,
    seed: u64,
) -> anyhow::Result<(f64, f64)> {
    let y = t
        .label
        .clone()
        .ok_or_else(|| anyhow!("the reference table has no label"))?;
    let mut secure_scores = Vec::with_capacity(t.ids.len());
    for i in 0..t.ids.len() {
        let row: BTreeMap<String, f64> = t
            .feature_names
            .iter()
            .cloned()
            .zip(t.features.row(i).iter().copied())
            .collect();
        secure_scores.push(
            model
                .predict(&row)
                .ok_or_else(|| anyhow!("the model has a feature the table lacks"))?,
        );
    }
    let std = confide_training::Standardizer::fit(&t.feature_names, &t.features)?;
    let xs = std.transform(&t.features);
    let (b0, w) = confide_training::train_plain(&xs, &y, epochs, batch, lr, 0.0, seed);
    let plain_scores = (xs.dot(&w) + b0).to_vec();
    let auc =
        |s: &[f64]| confide_training::auc(s, &y).ok_or_else(|| anyhow!("AUC needs both labels"));
    Ok((auc(&secure_scores)?, auc(&plain_scores)?))
}
