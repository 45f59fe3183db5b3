//! Joint risk queries (confide-risk, design.md §5) in the daemon.
//!
//! # Roles
//!
//! * **Compute nodes** (`alliance.compute`: S0 = the first, S1 = the second) serve the crate's
//!   sans-IO requests through `Peer.Call` method `risk.node` (the caller's name comes from its
//!   mTLS certificate; CPU and disk work run on the blocking pool). Their state lives under
//!   `data_dir/risk/`: the redb index `index.redb`, the node's OPRF key share `oprf.key`
//!   (generated on first use, mode 0600, never printed) and the pair seed `pair.seed`.
//! * **The pair seed** is shared by S0 and S1 only: S0 generates it on first use; S1 fetches it
//!   once from S0 with `Peer.Call` `risk.pair-seed` (over mutual TLS; S0 answers no one but
//!   S1) and keeps it (0600). Losing `oprf.key` at either node changes every tag: the index
//!   must then be rebuilt by re-ingesting.
//! * **Log before answer.** A node evaluates its key share only on blinded elements bound in
//!   a logged audit entry of the caller: the caller's daemon appends the entry through the
//!   sequencer ([`crate::audit::log_risk_eval`]) and passes it with the sequencer's signed
//!   inclusion promise; the node's gate is [`crate::audit::check_risk_evidence`] against the
//!   genesis, the crate refuses replays (used evidence is kept in redb), and the entry's kind
//!   must match the purpose (`risk-ingest` for ingest tagging, `risk-query` for queries).
//!   Compute nodes therefore need the audit chain configured.
//! * **Rate limit**: `policy.risk_queries_per_minute` of each compute node, per member; every
//!   ID of a batch counts. Refusals are logged (warn) with the caller's name.
//! * **Holders and lenders** drive their own daemon through `Peer.Call` as themselves
//!   (methods `risk.ingest`, `risk.query`, `risk.progress`, accepted only from the daemon's
//!   own certificate — no new RPC): the daemon reads the dataset, tags through both nodes,
//!   logs evidence and uploads shares or adds answer shares. A compute node that is also a
//!   holder or lender serves its own share in-process.
//!
//! # Datasets
//!
//! CSV with a header, the dataset's `id_column` and the columns `blacklisted` (0/1),
//! `loans`, `amount` (minor units), `overdue`: non-negative integers, each `< 2^40`. With
//! fewer than 2^20 members every alliance-wide sum stays `< 2^60`, so the sums over Z_2^64
//! never wrap. A holder's `allow.risk` must name both compute nodes (its consent to send them
//! shares). Re-ingesting replaces the holder's earlier contribution.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use confide_audit::JobKind;
use confide_proto::CallRequest;
use confide_proto::peer_client::PeerClient;
use confide_risk::{
    Answer, AuditGate, ComputeNode, EvidenceSource, NodeCaller, OprfKey, PairSeed, Purpose,
    RateLimiter, Request, Response, RiskDataset, RiskError, RiskIndex, Role,
};
use tonic::transport::Channel;

use crate::cli::RiskCommand;
use crate::config::PartyConfig;
use crate::daemon::Daemon;
use crate::error::{DaemonError, status_line};

const KEY_FILE: &str = "oprf.key";
const SEED_FILE: &str = "pair.seed";
const INDEX_FILE: &str = "index.redb";
/// Longest time one call to a compute node may take (a commit of millions of rows).
const CALL_TIMEOUT: Duration = Duration::from_secs(900);

/// 32 secret bytes, wiped on drop, never printed.
struct Secret32([u8; 32]);

impl Drop for Secret32 {
    fn drop(&mut self) {
        self.0 = [0; 32];
        std::hint::black_box(&mut self.0);
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// The compute node's audit gate: the daemon's genesis and [`crate::audit::check_risk_evidence`].
struct Gate {
    genesis: confide_audit::Genesis,
}

impl AuditGate for Gate {
    fn check(&self, querier: &str, hash: [u8; 32], evidence: &[u8]) -> confide_risk::Result<()> {
        crate::audit::check_risk_evidence(&self.genesis, querier, hash, evidence).map_err(
            |reason| RiskError::AuditRefused {
                querier: querier.to_string(),
                reason,
            },
        )
    }
}

/// Progress of an ingest this daemon runs for its CLI.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Progress {
    stage: String,
    done: u64,
    total: u64,
}

/// Per-daemon risk state, opened on first use: the compute node (at S0 and S1 only) and the
/// progress of running ingests.
#[derive(Debug)]
pub struct RiskState {
    node: Option<Arc<ComputeNode<Gate>>>,
    /// At S0: the pair seed, handed to S1 on request.
    seed_for_s1: Option<Secret32>,
    progress: Mutex<HashMap<String, Progress>>,
}

impl RiskState {
    fn set_progress(&self, job: &str, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut m) = self.progress.lock() {
            f(m.entry(job.to_string()).or_default());
        }
    }
}

/// The two compute nodes, S0 first.
fn compute_nodes(d: &Daemon) -> Result<[String; 2], DaemonError> {
    match d.cfg.alliance.compute.as_slice() {
        [a, b] => Ok([a.clone(), b.clone()]),
        _ => Err(DaemonError::Config(format!(
            "config file {}: field `alliance.compute` must name the two risk compute nodes",
            d.cfg.source.display()
        ))),
    }
}

fn role(d: &Daemon) -> Option<Role> {
    match d.cfg.alliance.compute.as_slice() {
        [a, _] if *a == d.me => Some(Role::S0),
        [_, b] if *b == d.me => Some(Role::S1),
        _ => None,
    }
}

async fn state(d: &Daemon) -> Result<&Arc<RiskState>, DaemonError> {
    d.risk.get_or_try_init(|| open(d)).await
}

async fn open(d: &Daemon) -> Result<Arc<RiskState>, DaemonError> {
    let (node, seed_for_s1) = match role(d) {
        None => (None, None),
        Some(role) => {
            let (node, seed) = open_node(d, role).await?;
            (Some(Arc::new(node)), seed)
        }
    };
    Ok(Arc::new(RiskState {
        node,
        seed_for_s1,
        progress: Mutex::new(HashMap::new()),
    }))
}

fn read_secret(path: &Path) -> Result<Option<Secret32>, DaemonError> {
    match std::fs::read(path) {
        Ok(mut b) => {
            let s = <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
                DaemonError::Config(format!("{} is not a 32-byte secret", path.display()))
            });
            b.fill(0);
            Ok(Some(Secret32(s?)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DaemonError::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes a new secret file (mode 0600); if another writer won the race, returns its secret.
fn create_secret(path: &Path, secret: Secret32) -> Result<Secret32, DaemonError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(mut f) => {
            f.write_all(&secret.0)
                .and_then(|()| f.sync_all())
                .map_err(|e| DaemonError::io(format!("writing {}", path.display()), e))?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(path)?
            .ok_or_else(|| DaemonError::Internal(format!("{} vanished", path.display()))),
        Err(e) => Err(DaemonError::io(format!("creating {}", path.display()), e)),
    }
}

async fn open_node(
    d: &Daemon,
    role: Role,
) -> Result<(ComputeNode<Gate>, Option<Secret32>), DaemonError> {
    let audit = d.audit.as_ref().ok_or_else(|| {
        DaemonError::Config(format!(
            "`{}` is a risk compute node and needs the audit chain (alliance.genesis, \
             tls.audit_key) to check that every request was logged",
            d.me
        ))
    })?;
    let dir = d.cfg.party.data_dir.join("risk");
    std::fs::create_dir_all(&dir)
        .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    let key_path = dir.join(KEY_FILE);
    let key = match read_secret(&key_path)? {
        Some(k) => k,
        None => {
            let k = OprfKey::random(&mut rand::rng());
            tracing::info!(path = %key_path.display(), "risk: generated this node's OPRF key share");
            create_secret(&key_path, Secret32(*k.to_bytes()))?
        }
    };
    let key = OprfKey::from_bytes(&key.0)
        .map_err(|e| DaemonError::Config(format!("{}: {e}", key_path.display())))?;
    let seed_path = dir.join(SEED_FILE);
    let seed = match (read_secret(&seed_path)?, role) {
        (Some(s), _) => s,
        (None, Role::S0) => create_secret(&seed_path, Secret32(rand::random()))?,
        (None, Role::S1) => create_secret(&seed_path, fetch_seed(d).await?)?,
    };
    let index_path = dir.join(INDEX_FILE);
    let index = tokio::task::spawn_blocking(move || RiskIndex::open(&index_path))
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?
        .map_err(|e| DaemonError::Internal(format!("risk index: {e}")))?;
    let limiter = RateLimiter::new(u64::from(d.cfg.policy.risk_queries_per_minute));
    tracing::info!(
        role = ?role,
        per_minute = limiter.per_minute(),
        tags = index.tag_count().unwrap_or(0),
        "risk: compute node ready"
    );
    let node = ComputeNode::new(
        role,
        key,
        PairSeed::new(seed.0),
        index,
        Gate {
            genesis: audit.genesis.clone(),
        },
    )
    .with_rate_limiter(Some(limiter));
    Ok((node, (role == Role::S0).then_some(seed)))
}

/// S1 fetches the pair seed from S0.
async fn fetch_seed(d: &Daemon) -> Result<Secret32, DaemonError> {
    let [s0, _] = compute_nodes(d)?;
    let mut c = d.channels.client(&s0)?;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.call(CallRequest {
            method: "risk.pair-seed".into(),
            job_id: String::new(),
            payload: vec![],
        }),
    )
    .await
    .map_err(|_| peer_err(d, &s0, "pair seed: no answer within 10 s".into()))?
    .map_err(|s| peer_err(d, &s0, format!("pair seed: {}", status_line(&s))))?;
    let mut p = r.into_inner().payload;
    let s = <[u8; 32]>::try_from(p.as_slice())
        .map_err(|_| DaemonError::Protocol(format!("`{s0}` sent a malformed pair seed")));
    p.fill(0);
    tracing::info!(from = %s0, "risk: received the pair seed from S0");
    Ok(Secret32(s?))
}

fn peer_err(d: &Daemon, peer: &str, message: String) -> DaemonError {
    DaemonError::Peer {
        peer: peer.to_string(),
        address: d.channels.address(peer).unwrap_or("-").to_string(),
        message,
    }
}

/// `Peer.Call` methods `risk.*` (the prefix is stripped).
pub async fn handle_call(
    d: &Daemon,
    caller: &str,
    method: &str,
    job_id: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, DaemonError> {
    match method {
        "node" => serve_node(d, caller, payload).await,
        "pair-seed" => pair_seed(d, caller).await,
        "ingest" | "query" | "progress" if caller != d.me => {
            tracing::warn!(%caller, method, "risk: refused a local call from another party");
            Err(DaemonError::PermissionDenied(format!(
                "only `{}` may ask its own daemon to run `risk.{method}`",
                d.me
            )))
        }
        "ingest" => local_ingest(d, job_id, &payload).await,
        "query" => local_query(d, &payload).await,
        "progress" => {
            let st = state(d).await?;
            let p = st
                .progress
                .lock()
                .ok()
                .and_then(|m| m.get(job_id).cloned())
                .unwrap_or_default();
            serde_json::to_vec(&p).map_err(|e| DaemonError::Internal(e.to_string()))
        }
        other => Err(DaemonError::InvalidRequest(format!(
            "unknown call `risk.{other}`"
        ))),
    }
}

async fn pair_seed(d: &Daemon, caller: &str) -> Result<Vec<u8>, DaemonError> {
    let [_, s1] = compute_nodes(d)?;
    let st = state(d).await?;
    match &st.seed_for_s1 {
        Some(seed) if caller == s1 => {
            tracing::info!(%caller, "risk: handed the pair seed to S1");
            Ok(seed.0.to_vec())
        }
        _ => {
            tracing::warn!(%caller, "risk: refused a pair-seed request");
            Err(DaemonError::PermissionDenied(format!(
                "`{}` hands the risk pair seed only to the compute node S1 `{s1}`, not to `{caller}`",
                d.me
            )))
        }
    }
}

fn describe(r: &Request) -> String {
    match r {
        Request::Eval {
            purpose, elements, ..
        } => format!("evaluate {} elements ({purpose:?})", elements.len()),
        Request::IngestBegin { rows, .. } => format!("begin an upload of {rows} rows"),
        Request::IngestRows { rows, .. } => format!("upload {} rows", rows.len()),
        Request::IngestCommit { .. } => "commit an upload".into(),
        Request::Query { tags, .. } => format!("look up {} tags", tags.len()),
    }
}

/// One compute-node request from `caller`: bytes in, bytes out. Refusals are logged and
/// answered with the crate's error response.
async fn serve_node(d: &Daemon, caller: &str, bytes: Vec<u8>) -> Result<Vec<u8>, DaemonError> {
    let st = state(d).await?;
    let Some(node) = st.node.clone() else {
        tracing::warn!(%caller, "risk: refused a compute request: not a compute node");
        return Err(DaemonError::PermissionDenied(format!(
            "`{}` is not a risk compute node (alliance.compute = [{}])",
            d.me,
            d.cfg.alliance.compute.join(", ")
        )));
    };
    let refuse = |what: &str, e: String| {
        tracing::warn!(%caller, request = what, error = %e, "risk: refused");
        Ok(Response::Error(e).encode())
    };
    let req = match Request::decode(&bytes) {
        Ok(r) => r,
        Err(e) => return refuse("undecodable", e.to_string()),
    };
    let what = describe(&req);
    if let Request::Eval {
        purpose, evidence, ..
    } = &req
    {
        let want = match purpose {
            Purpose::Ingest => JobKind::RiskIngest,
            Purpose::Query => JobKind::RiskQuery,
        };
        match crate::audit::risk_evidence_kind(evidence) {
            Ok(k) if k == want => {}
            Ok(k) => {
                let e = RiskError::AuditRefused {
                    querier: caller.to_string(),
                    reason: format!("a `{}` entry cannot authorise {purpose:?}", k.as_str()),
                };
                return refuse(&what, e.to_string());
            }
            Err(reason) => {
                let e = RiskError::AuditRefused {
                    querier: caller.to_string(),
                    reason,
                };
                return refuse(&what, e.to_string());
            }
        }
    }
    let who = caller.to_string();
    let r = tokio::task::spawn_blocking(move || node.handle_request(&who, req))
        .await
        .map_err(|e| DaemonError::Internal(format!("risk worker: {e}")))?;
    match r {
        Ok(resp) => {
            tracing::debug!(%caller, request = %what, "risk: served");
            Ok(resp.encode())
        }
        Err(e) => refuse(&what, e.to_string()),
    }
}

/// [`NodeCaller`] over `Peer.Call` (or in-process when the node is this daemon), counting
/// the elements and rows it sends for the progress display.
struct DaemonCaller<'a> {
    d: &'a Daemon,
    job_id: &'a str,
    progress: Option<&'a RiskState>,
}

impl DaemonCaller<'_> {
    fn track(&self, request: &[u8]) {
        let Some(st) = self.progress else { return };
        match Request::decode(request) {
            Ok(Request::Eval { elements, .. }) => st.set_progress(self.job_id, |p| {
                if p.stage != "tagging" {
                    *p = Progress {
                        stage: "tagging".into(),
                        ..Default::default()
                    };
                }
                p.done += elements.len() as u64;
            }),
            Ok(Request::IngestBegin { rows, .. }) => st.set_progress(self.job_id, |p| {
                if p.stage != "uploading" {
                    *p = Progress {
                        stage: "uploading".into(),
                        done: 0,
                        total: 0,
                    };
                }
                p.total += rows;
            }),
            Ok(Request::IngestRows { rows, .. }) => {
                st.set_progress(self.job_id, |p| p.done += rows.len() as u64)
            }
            _ => {}
        }
    }
}

impl NodeCaller for DaemonCaller<'_> {
    async fn call(&self, node: &str, request: Vec<u8>) -> confide_risk::Result<Vec<u8>> {
        self.track(&request);
        let remote = |message: String| RiskError::Remote {
            node: node.to_string(),
            message,
        };
        if node == self.d.me {
            return serve_node(self.d, node, request)
                .await
                .map_err(|e| remote(e.to_string()));
        }
        let mut c = self
            .d
            .channels
            .client(node)
            .map_err(|e| remote(e.to_string()))?;
        let r = tokio::time::timeout(
            CALL_TIMEOUT,
            c.call(CallRequest {
                method: "risk.node".into(),
                job_id: self.job_id.to_string(),
                payload: request,
            }),
        )
        .await
        .map_err(|_| remote(format!("no answer within {} s", CALL_TIMEOUT.as_secs())))?
        .map_err(|s| remote(status_line(&s)))?;
        Ok(r.into_inner().payload)
    }
}

/// [`EvidenceSource`]: one signed audit entry per evaluation batch, through the sequencer.
struct DaemonEvidence<'a> {
    d: &'a Daemon,
    kind: JobKind,
    job_id: &'a str,
    served_by: Vec<String>,
}

impl EvidenceSource for DaemonEvidence<'_> {
    async fn evidence(
        &self,
        _purpose: Purpose,
        blinded_points_hash: [u8; 32],
        _count: usize,
    ) -> confide_risk::Result<Vec<u8>> {
        let t = Instant::now();
        let ev = crate::audit::log_risk_eval(
            self.d,
            self.kind,
            self.job_id,
            self.served_by.clone(),
            blinded_points_hash,
        )
        .await
        .map_err(|e| RiskError::AuditLog(e.to_string()))?;
        tracing::debug!(
            job = self.job_id,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "risk: logged before asking"
        );
        Ok(ev)
    }
}

fn check_job_id(job_id: &str) -> Result<(), DaemonError> {
    if job_id.is_empty()
        || job_id.len() > 64
        || !job_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(DaemonError::InvalidRequest(
            "a risk call needs a job id of 1..64 letters, digits or '-'".into(),
        ));
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct IngestCall {
    dataset: String,
}

/// This daemon ingests one of its datasets into the two compute nodes.
async fn local_ingest(d: &Daemon, job_id: &str, payload: &[u8]) -> Result<Vec<u8>, DaemonError> {
    check_job_id(job_id)?;
    let started = Instant::now();
    let call: IngestCall = serde_json::from_slice(payload)
        .map_err(|e| DaemonError::InvalidRequest(format!("risk.ingest: {e}")))?;
    let name = call.dataset;
    let compute = compute_nodes(d)?;
    let ds = d.cfg.datasets.get(&name).ok_or_else(|| {
        DaemonError::InvalidRequest(format!(
            "party `{}` has no dataset `{name}` (its datasets: {})",
            d.me,
            if d.cfg.datasets.is_empty() {
                "none".to_string()
            } else {
                d.cfg
                    .datasets
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    })?;
    for c in &compute {
        if let Err(reason) = d.cfg.check_policy(&name, "risk", c) {
            tracing::warn!(dataset = %name, node = %c, "risk: ingest refused by policy");
            return Err(DaemonError::PermissionDenied(format!(
                "{reason}: a risk ingest sends shares to both compute nodes; add \
                 `risk = [\"{}\", \"{}\"]` to the dataset's `allow`",
                compute[0], compute[1]
            )));
        }
    }
    let st = state(d).await?.clone();
    st.set_progress(job_id, |p| p.stage = "loading".into());
    let (path, id_col) = (ds.path.clone(), ds.id_column.clone());
    let loaded = tokio::task::spawn_blocking(move || RiskDataset::load(&path, &id_col))
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?
        .map_err(|e| {
            DaemonError::InvalidRequest(format!(
                "dataset `{name}` of `{}` ({}): {e}",
                d.me,
                ds.path.display()
            ))
        });
    let result = match loaded {
        Ok(data) => {
            let padded = confide_risk::client::padded_len(data.records.len()) as u64;
            st.set_progress(job_id, |p| {
                *p = Progress {
                    stage: "tagging".into(),
                    done: 0,
                    total: 2 * padded,
                }
            });
            let caller = DaemonCaller {
                d,
                job_id,
                progress: Some(&st),
            };
            let evidence = DaemonEvidence {
                d,
                kind: JobKind::RiskIngest,
                job_id,
                served_by: compute.to_vec(),
            };
            confide_risk::ingest(
                &caller,
                [&compute[0], &compute[1]],
                &data.records,
                &evidence,
            )
            .await
            .map(|r| (r, data.duplicates))
            .map_err(|e| DaemonError::Protocol(format!("risk ingest: {e}")))
        }
        Err(e) => Err(e),
    };
    if let Ok(mut m) = st.progress.lock() {
        m.remove(job_id);
    }
    let (report, duplicates) = result?;
    tracing::info!(
        job = job_id, dataset = %name, rows = report.rows, dummies = report.dummies,
        "risk: ingested"
    );
    let v = serde_json::json!({
        "job_id": job_id,
        "party": d.me,
        "dataset": name,
        "rows": report.rows,
        "duplicates": duplicates,
        "dummies": report.dummies,
        "compute": compute,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    Ok(v.to_string().into_bytes())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct QueryCall {
    ids: Vec<String>,
}

/// This daemon asks the compute nodes about `ids`: one `risk-query` audit entry per batch,
/// logged before the nodes evaluate anything.
async fn local_query(d: &Daemon, payload: &[u8]) -> Result<Vec<u8>, DaemonError> {
    let call: QueryCall = serde_json::from_slice(payload)
        .map_err(|e| DaemonError::InvalidRequest(format!("risk.query: {e}")))?;
    if call.ids.is_empty() {
        return Err(DaemonError::InvalidRequest("risk query: no IDs".into()));
    }
    if call.ids.iter().any(|i| i.is_empty() || i.len() > 65_535) {
        return Err(DaemonError::InvalidRequest(
            "risk query: every ID must have 1..65535 bytes".into(),
        ));
    }
    let compute = compute_nodes(d)?;
    let job_id = crate::daemon::jobs::new_job_id();
    let caller = DaemonCaller {
        d,
        job_id: &job_id,
        progress: None,
    };
    let evidence = DaemonEvidence {
        d,
        kind: JobKind::RiskQuery,
        job_id: &job_id,
        served_by: compute.to_vec(),
    };
    let answers = confide_risk::query(&caller, [&compute[0], &compute[1]], &call.ids, &evidence)
        .await
        .map_err(|e| DaemonError::Protocol(format!("risk query: {e}")))?;
    let rows: Vec<[u64; 5]> = answers
        .iter()
        .map(|a| [a.blacklisted, a.loans, a.amount, a.overdue, a.queried_by])
        .collect();
    tracing::info!(job = %job_id, ids = rows.len(), "risk: queried");
    serde_json::to_vec(&rows).map_err(|e| DaemonError::Internal(e.to_string()))
}

// ---------------------------------------------------------------------------------------
// The CLI side.

/// A `Peer` client to this party's own daemon (as itself).
async fn own_daemon(cfg: &PartyConfig) -> anyhow::Result<PeerClient<Channel>> {
    Ok(PeerClient::new(crate::client::connect(cfg).await?)
        .max_decoding_message_size(crate::daemon::links::MAX_MESSAGE)
        .max_encoding_message_size(crate::daemon::links::MAX_MESSAGE))
}

async fn own_call(
    c: &mut PeerClient<Channel>,
    method: &str,
    job_id: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    c.call(CallRequest {
        method: format!("risk.{method}"),
        job_id: job_id.to_string(),
        payload,
    })
    .await
    .map(|r| r.into_inner().payload)
}

/// Asks this party's daemon to ingest `dataset`; returns the daemon's JSON summary. With
/// `bar`, shows progress on the terminal.
pub async fn ingest_dataset(
    cfg: &PartyConfig,
    dataset: &str,
    bar: bool,
) -> anyhow::Result<serde_json::Value> {
    let c = own_daemon(cfg).await?;
    let job_id = crate::daemon::jobs::new_job_id();
    let payload = serde_json::to_vec(&IngestCall {
        dataset: dataset.to_string(),
    })?;
    let mut run = {
        let (mut c, job_id) = (c.clone(), job_id.clone());
        tokio::spawn(async move { own_call(&mut c, "ingest", &job_id, payload).await })
    };
    let pb = bar.then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    });
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::time::sleep(Duration::from_millis(300)), if pb.is_some() => {
                let mut c = c.clone();
                if let (Some(pb), Ok(p)) = (&pb, own_call(&mut c, "progress", &job_id, vec![]).await)
                    && let Ok(p) = serde_json::from_slice::<Progress>(&p)
                {
                    pb.set_prefix(p.stage);
                    pb.set_length(p.total);
                    pb.set_position(p.done);
                }
            }
        }
    };
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let bytes = result
        .map_err(|e| anyhow!("risk ingest: {e}"))?
        .map_err(|s| anyhow!("risk ingest: {}", status_line(&s)))?;
    serde_json::from_slice(&bytes).context("risk ingest: malformed answer from the daemon")
}

/// Asks the alliance about `ids` through this party's daemon.
pub async fn query_ids(cfg: &PartyConfig, ids: &[String]) -> anyhow::Result<Vec<Answer>> {
    let mut c = own_daemon(cfg).await?;
    let payload = serde_json::to_vec(&QueryCall { ids: ids.to_vec() })?;
    let bytes = own_call(&mut c, "query", "", payload)
        .await
        .map_err(|s| anyhow!("risk query: {}", status_line(&s)))?;
    let rows: Vec<[u64; 5]> =
        serde_json::from_slice(&bytes).context("risk query: malformed answer from the daemon")?;
    if rows.len() != ids.len() {
        bail!(
            "risk query: {} answers for {} IDs from the daemon",
            rows.len(),
            ids.len()
        );
    }
    Ok(rows
        .into_iter()
        .map(|r| Answer {
            blacklisted: r[0],
            loans: r[1],
            amount: r[2],
            overdue: r[3],
            queried_by: r[4],
        })
        .collect())
}

/// One answer as the JSON object `confide risk query --id` prints (fields in this order).
pub fn answer_json(id: &str, a: &Answer) -> String {
    format!(
        "{{\"id\": {}, \"blacklisted\": {}, \"loans\": {}, \"amount\": {}, \"overdue\": {}, \"queried_by\": {}}}",
        serde_json::Value::String(id.to_string()),
        a.blacklisted,
        a.loans,
        a.amount,
        a.overdue,
        a.queried_by
    )
}

/// Reads applicant IDs from a CSV file with a header: the column `id`, else the first one.
pub fn read_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header = rdr
        .headers()
        .with_context(|| format!("{}: unreadable header", path.display()))?;
    let col = header.iter().position(|h| h.trim() == "id").unwrap_or(0);
    let mut ids = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("{}", path.display()))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec.get(col).unwrap_or("").trim();
        if id.is_empty() {
            bail!("{} line {line}: empty ID", path.display());
        }
        ids.push(id.to_string());
    }
    if ids.is_empty() {
        bail!(
            "{}: no IDs (a header line, then one ID per line)",
            path.display()
        );
    }
    Ok(ids)
}

/// Writes answers as CSV `id,blacklisted,loans,amount,overdue,queried_by`.
pub fn write_answers(
    out: impl std::io::Write,
    ids: &[String],
    answers: &[Answer],
) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "id",
        "blacklisted",
        "loans",
        "amount",
        "overdue",
        "queried_by",
    ])?;
    for (id, a) in ids.iter().zip(answers) {
        w.write_record([
            id.clone(),
            a.blacklisted.to_string(),
            a.loans.to_string(),
            a.amount.to_string(),
            a.overdue.to_string(),
            a.queried_by.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// `confide risk ingest|query`.
pub async fn command(c: RiskCommand) -> anyhow::Result<ExitCode> {
    match c {
        RiskCommand::Ingest { config, dataset } => {
            let cfg = PartyConfig::load(&config.config)?;
            let r = ingest_dataset(&cfg, &dataset, std::io::stderr().is_terminal()).await?;
            println!("{}", ingest_summary(&r));
        }
        RiskCommand::Query {
            config,
            id,
            ids_file,
            output,
        } => {
            let cfg = PartyConfig::load(&config.config)?;
            match (id, ids_file) {
                (Some(id), _) => {
                    let id = id.trim().to_string();
                    if id.is_empty() {
                        bail!("--id is empty");
                    }
                    let a = query_ids(&cfg, std::slice::from_ref(&id)).await?;
                    println!("{}", answer_json(&id, &a[0]));
                }
                (None, Some(file)) => {
                    let ids = read_ids(&file)?;
                    let answers = query_ids(&cfg, &ids).await?;
                    match output {
                        Some(out) => {
                            let f = std::fs::File::create(&out)
                                .with_context(|| format!("cannot create {}", out.display()))?;
                            write_answers(std::io::BufWriter::new(f), &ids, &answers)?;
                            eprintln!("{} answers written to {}", ids.len(), out.display());
                        }
                        None => write_answers(std::io::stdout().lock(), &ids, &answers)?,
                    }
                }
                (None, None) => bail!("give --id ID or --ids-file FILE"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The one-line summary of an ingest.
pub fn ingest_summary(r: &serde_json::Value) -> String {
    let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let compute: Vec<String> = r
        .get("compute")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "risk ingest {}: {} contributed {} customers of dataset `{}` ({} duplicate rows merged, \
         padded with {} dummy rows) to {}; it replaces any earlier contribution; {:.2} s",
        s("job_id"),
        s("party"),
        n("rows"),
        s("dataset"),
        n("duplicates"),
        n("dummies"),
        compute.join(" and "),
        n("elapsed_ms") as f64 / 1000.0
    )
}

// ---------------------------------------------------------------------------------------
// The demo.

const DEMO_LENDERS: [&str; 3] = ["alice", "bob", "carol"];

fn demo_csv(dir: &Path, party: &str) -> PathBuf {
    dir.join("demo-data").join(format!("{party}-loans.csv"))
}

/// Writes the demo's risk data (a few hundred customers per lender, overlapping) and
/// declares it as dataset `loans`, allowing risk for the compute nodes.
pub fn demo_data(dir: &Path, rows: usize) -> anyhow::Result<()> {
    use std::io::Write;
    let n = rows.clamp(50, 300);
    std::fs::create_dir_all(dir.join("demo-data"))?;
    for (k, party) in DEMO_LENDERS.iter().enumerate() {
        let path = demo_csv(dir, party);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "applicant,blacklisted,loans,amount,overdue")?;
        // Lender k knows applicants k·n/2 .. k·n/2 + n: neighbours overlap by half.
        for i in k * n / 2..k * n / 2 + n {
            let h = (i * 7 + k * 13) % 97;
            writeln!(
                f,
                "A{i:06},{},{},{},{}",
                u8::from(h % 11 == 0),
                1 + h % 3,
                (1 + h) * 50_000,
                h % 2
            )?;
        }
        f.flush()?;
        let cfg = dir.join(party).join("party.toml");
        let compute = PartyConfig::load(&cfg)?.alliance.compute;
        let mut t = std::fs::OpenOptions::new().append(true).open(&cfg)?;
        writeln!(
            t,
            "\n[datasets.loans]\npath = \"{}\"\nid_column = \"applicant\"\nallow = {{ risk = [{}] }}",
            path.display(),
            compute
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}

/// The demo's risk step: every lender ingests, then alice asks about an applicant two
/// lenders know and an unknown one; the answers must equal the plaintext sums.
pub async fn demo_step(alliance: &crate::demo::LocalAlliance) -> anyhow::Result<()> {
    let t = Instant::now();
    let mut total = 0;
    for p in DEMO_LENDERS {
        let r = ingest_dataset(&alliance.config(p)?, "loans", false).await?;
        total += r.get("rows").and_then(|v| v.as_u64()).unwrap_or(0);
    }
    let compute = alliance.config("alice")?.alliance.compute.join(" and ");
    crate::demo::step(
        &format!(
            "risk ingest: alice, bob and carol contributed {total} customers' loan figures, \
             secret-shared between the compute nodes {compute}"
        ),
        t,
    );

    let t = Instant::now();
    // Plaintext sums, and how many lenders know each applicant.
    let mut expected: HashMap<String, ([u64; 4], usize)> = HashMap::new();
    for p in DEMO_LENDERS {
        let d = RiskDataset::load(demo_csv(&alliance.dir, p), "applicant")?;
        for r in d.records {
            let e = expected.entry(r.id).or_default();
            for k in 0..4 {
                e.0[k] += r.values[k];
            }
            e.1 += 1;
        }
    }
    let known = expected
        .iter()
        .filter(|(_, (_, holders))| *holders >= 2)
        .min_by_key(|(id, (v, _))| (std::cmp::Reverse(v[0]), *id))
        .map(|(id, _)| id.clone())
        .ok_or_else(|| anyhow!("demo data: no applicant known to two lenders"))?;
    let unknown = "Z999999".to_string();
    let ids = [known.clone(), unknown.clone()];
    let answers = query_ids(&alliance.config("alice")?, &ids).await?;
    for (id, a) in ids.iter().zip(&answers) {
        let want = expected.get(id).map(|e| e.0).unwrap_or_default();
        let got = [a.blacklisted, a.loans, a.amount, a.overdue];
        if got != want || a.queried_by < 1 {
            bail!("risk answer for {id}: got {got:?}, the plaintext sums are {want:?}");
        }
    }
    crate::demo::step(
        &format!(
            "risk query by alice (logged on the audit chain before the nodes answered): {} and {}; \
             both equal the plaintext sums across the three lenders",
            answer_json(&ids[0], &answers[0]),
            answer_json(&ids[1], &answers[1])
        ),
        t,
    );
    Ok(())
}
