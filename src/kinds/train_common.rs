//! What the `train` and `predict` kinds share: dataset and dealer checks, the stored
//! model-share format, the PSI row alignment, and running the training protocol off the
//! daemon's runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use confide_mpc::transport::{DEFAULT_CHANNEL_DEPTH, Incoming};
use confide_mpc::{ChannelTransport, Link, Transport, TransportError};
use confide_proto::DatasetRef;
use confide_psi::{OutputMode, PsiJob};
use confide_training::{LocalData, PartyNames, Role, SharedModel, Table};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Env, Plan};
use crate::base::config::{DatasetSection, PartyConfig};
use crate::base::error::DaemonError;
use crate::base::kind::PolicyKind;

/// Format tag of a stored model share.
pub const SHARE_FORMAT: &str = "confide-shared-model-v1";

pub fn bad(m: impl Into<String>) -> DaemonError {
    DaemonError::InvalidRequest(m.into())
}

/// Model ids are job ids (hex); anything else could escape the models directory.
pub fn valid_model_id(id: &str) -> Result<(), DaemonError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(bad(format!(
            "`{id}` is not a model id (the job id of a `train --keep-shared` job)"
        )))
    }
}

/// The header of a CSV file.
pub fn csv_header(path: &Path) -> Result<Vec<String>, DaemonError> {
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
pub fn checked_dataset<'a>(
    cfg: &'a PartyConfig,
    plan: &Plan<'_>,
) -> Result<(&'a DatasetSection, Vec<String>), DaemonError> {
    let dataset = plan.my_dataset();
    let ds = plan.checked_dataset(cfg, PolicyKind::Train)?;
    let header = csv_header(&ds.path)?;
    if !header.contains(&ds.id_column) {
        return Err(bad(format!(
            "dataset `{dataset}` of `{}`: {} has no column `{}` (its id_column)",
            plan.me,
            ds.path.display(),
            ds.id_column
        )));
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
    o: &super::predict::Opts,
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

/// A view of the job's transport restricted to one peer (the PSI between the two
/// computing parties runs over the same streams while the dealer waits).
#[derive(Debug)]
pub struct Pair<'a> {
    pub inner: &'a ChannelTransport,
    pub peer: String,
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
pub fn bytes_sent(t: &ChannelTransport) -> u64 {
    t.peers()
        .iter()
        .filter_map(|p| t.counters(p))
        .map(|c| c.bytes_sent.load(Ordering::Relaxed))
        .sum()
}

pub fn bytes_received(t: &ChannelTransport) -> u64 {
    t.peers()
        .iter()
        .filter_map(|p| t.counters(p))
        .map(|c| c.bytes_received.load(Ordering::Relaxed))
        .sum()
}

/// Runs a protocol on a dedicated thread with its own single-threaded runtime, over a
/// relay of the job's transport, and reports its progress events to `on_progress` here.
///
/// The training crate does its CPU-heavy matrix work inside its futures; on its own
/// thread it never blocks the daemon's runtime (gRPC pumps, keepalives, other jobs), and
/// its futures need not be `Send`.
/// If this future is dropped (job aborted, deadline), the relay's channels close and the
/// protocol on the thread fails at its next message.
pub async fn on_own_thread<R, P, Fut>(
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
pub fn three(env: &dyn Env) -> Result<[String; 3], DaemonError> {
    match env.spec().party_names().as_slice() {
        [a, b, c] => Ok([a.clone(), b.clone(), c.clone()]),
        _ => Err(bad("a training job has exactly three parties")),
    }
}

/// PSI with `other`, then this party's table in the sorted common order.
/// Returns (rows aligned, common ID list, PSI bytes sent).
pub async fn align(
    env: &dyn Env,
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
    tracing::info!(job = %env.spec().job_id, rows = table.ids.len(), load_ms, "table loaded");
    let out = env.work_dir().join("common-ids.csv");
    let pair = Pair {
        inner: t,
        peer: other.to_string(),
    };
    let initiator = env.spec().initiator().to_string();
    let job = PsiJob {
        parties: env
            .spec()
            .party_names()
            .into_iter()
            .filter(|p| p == t.me() || p == other)
            .collect(),
        initiator,
        mode: OutputMode::All,
        input: ds.path.clone(),
        id_column: ds.id_column.clone(),
        output: Some(out.clone()),
        work_dir: env.work_dir().to_path_buf(),
    };
    let progress = |p: confide_psi::Progress| {
        env.progress(&format!("aligning rows: {}", p.stage), p.done, p.total, "")
    };
    confide_psi::run(&pair, &job, &progress).await?;
    let mut ids = read_ids(&out)?;
    ids.sort_unstable();
    ids.dedup();
    let min = confide_training::protocol::MIN_ROWS;
    if ids.len() < min {
        return Err(bad(format!(
            "only {} common rows between {} and {other} (at least {min} needed)",
            ids.len(),
            env.spec().initiator()
        )));
    }
    let data = table.align(&ids).map_err(|e| bad(e.to_string()))?;
    Ok((data, ids, load_ms))
}

pub fn read_ids(path: &Path) -> Result<Vec<String>, DaemonError> {
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

/// What `data_dir/models/<job>.share` holds besides the share (readable by the CLI).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShareMeta {
    pub format: String,
    pub job_id: String,
    /// The seats of the training job.
    pub parties: PartyNames,
    /// This party's role.
    pub role: Role,
    pub dataset: String,
    pub label: Option<String>,
    /// This party's input feature columns at training, in file order.
    pub feature_names: Vec<String>,
    pub frac_bits: u32,
    pub created_unix_ms: u64,
}

/// The stored file: metadata and this party's share (keep it like a key).
#[derive(Debug, Serialize, Deserialize)]
pub struct StoredShare {
    #[serde(flatten)]
    pub meta: ShareMeta,
    pub share: SharedModel,
}

pub fn models_dir(cfg: &PartyConfig) -> PathBuf {
    cfg.party.data_dir.join("models")
}

pub fn share_path(cfg: &PartyConfig, model: &str) -> PathBuf {
    models_dir(cfg).join(format!("{model}.share"))
}

pub fn read_meta(cfg: &PartyConfig, model: &str) -> Result<ShareMeta, DaemonError> {
    let path = share_path(cfg, model);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        bad(format!(
            "`{}` holds no shared model `{model}` ({} is missing; train with --keep-shared first)",
            cfg.party.name,
            path.display()
        ))
    })?;
    let meta: ShareMeta =
        serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    if meta.format != SHARE_FORMAT || meta.job_id != model {
        return Err(bad(format!(
            "{}: not a shared model file of job {model}",
            path.display()
        )));
    }
    Ok(meta)
}

pub fn read_share(cfg: &PartyConfig, model: &str) -> Result<StoredShare, DaemonError> {
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

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Active => "active",
        Role::Passive => "passive",
        Role::Dealer => "dealer",
    }
}
