//! The audit chain in the daemon: this member's copy of the log (confide-audit over
//! redb), the sequencer's replication loop, the `Audit` gRPC service, and the entries
//! every job appends.
//!
//! * The initiator of a job signs an entry (kind, job id, the parties that served it, and
//!   a salted fingerprint of the request and result) and appends it through the sequencer,
//!   which answers at once with a signed inclusion promise.
//! * The sequencer checkpoints every ~250 ms when the log grew, sends each member the
//!   entries it lacks with a consistency proof (`Audit.Replicate`), gathers cosignatures,
//!   and sends the final checkpoint (quorum reached) back to every member.
//! * Members verify, store durably, then cosign; a member that was down catches up when
//!   it returns. Equivocation stops a member from cosigning for good (confide-audit).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confide_audit::{
    AuditStore, Cosignature, Entry, EntryBody, Genesis, InclusionPromise, JobKind, JobRequest,
    SignedCheckpoint, fingerprint, new_salt,
};
use confide_proto::audit_client::AuditClient;
use confide_proto::audit_server::{Audit, AuditServer};
use confide_proto::*;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::config::PartyConfig;
use crate::daemon::Daemon;
use crate::daemon::links::{MAX_MESSAGE, PeerChannels};
use crate::error::DaemonError;
use crate::tls::caller;

/// This member's audit state.
pub struct AuditState {
    pub genesis: Genesis,
    pub genesis_json: String,
    store: Mutex<AuditStore>,
    /// Wakes the replication loop after an append.
    kick: tokio::sync::Notify,
}

impl std::fmt::Debug for AuditState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditState").finish_non_exhaustive()
    }
}

fn audit_err(e: confide_audit::AuditError) -> DaemonError {
    DaemonError::Protocol(format!("audit: {e}"))
}

impl AuditState {
    /// Opens the store if the config names a genesis and an audit key.
    pub fn open(cfg: &PartyConfig) -> Result<Option<Arc<Self>>, DaemonError> {
        let (Some(genesis_path), Some(key_path)) = (&cfg.alliance.genesis, &cfg.tls.audit_key)
        else {
            return Ok(None);
        };
        let field_err = |field: &str, m: String| {
            DaemonError::Config(format!(
                "config file {}: field `{field}`: {m}",
                cfg.source.display()
            ))
        };
        let genesis_json = std::fs::read_to_string(genesis_path).map_err(|e| {
            field_err(
                "alliance.genesis",
                format!("{}: {e}", genesis_path.display()),
            )
        })?;
        let genesis = Genesis::from_json(&genesis_json).map_err(|e| {
            field_err(
                "alliance.genesis",
                format!("{}: {e}", genesis_path.display()),
            )
        })?;
        let key_hex = std::fs::read_to_string(key_path)
            .map_err(|e| field_err("tls.audit_key", format!("{}: {e}", key_path.display())))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(key_hex.trim(), &mut seed).map_err(|_| {
            field_err(
                "tls.audit_key",
                format!("{}: not a 32-byte hex key", key_path.display()),
            )
        })?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        zeroize::Zeroize::zeroize(&mut seed);
        let store = AuditStore::open(
            cfg.party.data_dir.join("audit.redb"),
            genesis.clone(),
            &cfg.party.name,
            key,
        )
        .map_err(|e| field_err("alliance.genesis", format!("audit store: {e}")))?;
        if let Some(fault) = store.fault() {
            tracing::error!(%fault, "audit store refuses to cosign");
        }
        Ok(Some(Arc::new(Self {
            genesis,
            genesis_json,
            store: Mutex::new(store),
            kick: tokio::sync::Notify::new(),
        })))
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut AuditStore) -> Result<R, confide_audit::AuditError>,
    ) -> Result<R, DaemonError> {
        let mut s = self
            .store
            .lock()
            .map_err(|_| DaemonError::Internal("audit store poisoned".into()))?;
        f(&mut s).map_err(audit_err)
    }

    pub fn is_sequencer(&self, me: &str) -> bool {
        self.genesis.sequencer == me
    }
}

fn kind_of(kind: &str) -> Option<JobKind> {
    match kind {
        "psi" => Some(JobKind::Psi),
        "train" | "predict" => Some(JobKind::Train),
        "risk-ingest" => Some(JobKind::RiskIngest),
        "risk-query" => Some(JobKind::RiskQuery),
        _ => None,
    }
}

/// Appends a signed entry of this member through the sequencer; returns the promise.
pub async fn append(d: &Daemon, body: EntryBody) -> Result<(Entry, InclusionPromise), DaemonError> {
    let a = d.audit.as_ref().ok_or_else(|| {
        DaemonError::Config(
            "this party has no audit chain configured (alliance.genesis, tls.audit_key)".into(),
        )
    })?;
    let entry = a.with(|s| s.sign_entry(body))?;
    let promise = if a.is_sequencer(&d.me) {
        let e = entry.clone();
        let p = a.with(move |s| s.append_signed(&[e]))?.remove(0);
        a.kick.notify_one();
        p
    } else {
        let seq = a.genesis.sequencer.clone();
        let mut c = audit_client(&d.channels, &seq)?;
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            c.append(AppendRequest {
                entry: entry.as_bytes().to_vec(),
            }),
        )
        .await
        .map_err(|_| DaemonError::Peer {
            peer: seq.clone(),
            address: "-".into(),
            message: "audit append: no answer within 10 s".into(),
        })?
        .map_err(|s| DaemonError::Peer {
            peer: seq.clone(),
            address: "-".into(),
            message: format!("audit append: {}", crate::error::status_line(&s)),
        })?
        .into_inner();
        let p: InclusionPromise = serde_json::from_slice(&r.promise)
            .map_err(|e| DaemonError::Protocol(format!("audit: bad promise from `{seq}`: {e}")))?;
        p.verify(&a.genesis).map_err(audit_err)?;
        if p.entry_hash != entry.leaf_hash() {
            return Err(DaemonError::Protocol(format!(
                "audit: `{seq}` promised another entry"
            )));
        }
        p
    };
    Ok((entry, promise))
}

/// SHA-256 of a dataset file's content (streamed).
pub fn file_hash(path: &std::path::Path) -> Result<[u8; 32], DaemonError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .map_err(|e| DaemonError::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| DaemonError::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Records a finished job started by this party (initiator). Returns the entry's index.
pub async fn record_job(
    d: &Arc<Daemon>,
    spec: &crate::daemon::jobs::JobSpec,
    result: &Result<serde_json::Value, DaemonError>,
) -> Result<Option<u64>, DaemonError> {
    let Some(kind) = kind_of(&spec.kind) else {
        return Ok(None);
    };
    if d.audit.is_none() {
        return Ok(None);
    }
    // Every party's dataset content hash, in party order: this party's own, and the peers'
    // from their proposal replies (parties that bring no dataset, like a dealer, have none).
    let mut dataset_hashes = Vec::new();
    for party in spec.party_names() {
        if party == d.me {
            if let Some(ds) = spec.dataset_of(&d.me).and_then(|n| d.cfg.datasets.get(n)) {
                let path = ds.path.clone();
                dataset_hashes.push(
                    tokio::task::spawn_blocking(move || file_hash(&path))
                        .await
                        .map_err(|e| DaemonError::Internal(e.to_string()))??,
                );
            }
        } else if let Some(h) = spec.dataset_hashes.get(&party) {
            dataset_hashes.push(*h);
        }
    }
    let request = JobRequest {
        kind,
        parties: spec.party_names(),
        dataset_hashes,
        parameters: serde_json::to_vec(&spec.options).unwrap_or_default(),
    };
    let result_bytes = match result {
        Ok(v) => v.to_string().into_bytes(),
        Err(e) => format!("failed: {e}").into_bytes(),
    };
    let salt = new_salt();
    let body = EntryBody {
        timestamp_ms: crate::daemon::jobs::now_ms(),
        member: d.me.clone(),
        kind,
        job_id: spec.job_id.clone(),
        served_by: spec
            .party_names()
            .into_iter()
            .filter(|p| *p != d.me)
            .collect(),
        fingerprint: fingerprint(&salt, &request.to_bytes(), &result_bytes),
    };
    let (_, promise) = append(d, body).await?;
    // The salt stays with the initiator: with it, the request and result can later be
    // shown to match the chain.
    let dir = d.cfg.party.data_dir.join("audit-salts");
    std::fs::create_dir_all(&dir)
        .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
    let record = serde_json::json!({
        "job_id": spec.job_id, "index": promise.index, "salt": hex::encode(salt),
        "request": hex::encode(request.to_bytes()), "result": String::from_utf8_lossy(&result_bytes),
    });
    std::fs::write(
        dir.join(format!("{}.json", spec.job_id)),
        record.to_string(),
    )
    .map_err(|e| DaemonError::io("writing the job's audit salt", e))?;
    Ok(Some(promise.index))
}

/// Evidence that a risk query was logged before it is answered: the querier's signed
/// entry, the sequencer's inclusion promise, the salt and the request it commits to.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct QueryEvidence {
    pub entry_hex: String,
    pub promise: InclusionPromise,
    pub salt_hex: String,
    /// The committed request: the SHA-256 of the blinded points (hex).
    pub blinded_hash_hex: String,
}

/// Logs a risk query (kind `risk-query`) bound to `blinded_hash`; returns the evidence
/// bytes the compute nodes check before evaluating anything.
pub async fn log_risk_query(
    d: &Daemon,
    job_id: &str,
    served_by: Vec<String>,
    blinded_hash: [u8; 32],
) -> Result<Vec<u8>, DaemonError> {
    log_risk_eval(d, JobKind::RiskQuery, job_id, served_by, blinded_hash).await
}

/// As [`log_risk_query`] with the entry's kind: `RiskQuery` for a lender's query,
/// `RiskIngest` for the OPRF evaluations of a holder's ingest.
pub async fn log_risk_eval(
    d: &Daemon,
    kind: JobKind,
    job_id: &str,
    served_by: Vec<String>,
    blinded_hash: [u8; 32],
) -> Result<Vec<u8>, DaemonError> {
    let salt = new_salt();
    let body = EntryBody {
        timestamp_ms: crate::daemon::jobs::now_ms(),
        member: d.me.clone(),
        kind,
        job_id: job_id.to_string(),
        served_by,
        fingerprint: fingerprint(&salt, &blinded_hash, b""),
    };
    let (entry, promise) = append(d, body).await?;
    let ev = QueryEvidence {
        entry_hex: hex::encode(entry.as_bytes()),
        promise,
        salt_hex: hex::encode(salt),
        blinded_hash_hex: hex::encode(blinded_hash),
    };
    serde_json::to_vec(&ev).map_err(|e| DaemonError::Internal(e.to_string()))
}

/// The kind of the entry inside risk evidence (not verified: see [`check_risk_evidence`]).
pub fn risk_evidence_kind(evidence: &[u8]) -> Result<JobKind, String> {
    let ev: QueryEvidence =
        serde_json::from_slice(evidence).map_err(|e| format!("malformed evidence: {e}"))?;
    let bytes = hex::decode(&ev.entry_hex).map_err(|_| "malformed entry".to_string())?;
    let entry = Entry::from_bytes(&bytes).map_err(|e| format!("bad entry: {e}"))?;
    Ok(entry.body().kind)
}

/// Checks risk evidence: an entry signed by `querier` of kind risk-query (or risk-ingest), promised
/// by the sequencer, whose fingerprint commits to exactly `blinded_hash`.
pub fn check_risk_evidence(
    genesis: &Genesis,
    querier: &str,
    blinded_hash: [u8; 32],
    evidence: &[u8],
) -> Result<(), String> {
    let ev: QueryEvidence =
        serde_json::from_slice(evidence).map_err(|e| format!("malformed evidence: {e}"))?;
    let bytes = hex::decode(&ev.entry_hex).map_err(|_| "malformed entry".to_string())?;
    let entry = Entry::from_bytes(&bytes).map_err(|e| format!("bad entry: {e}"))?;
    let keys = genesis.keys().map_err(|e| e.to_string())?;
    let key = keys
        .get(querier)
        .ok_or_else(|| format!("`{querier}` is not a member"))?;
    if *entry.log_id() != genesis.log_id() {
        return Err("the entry is for another log".into());
    }
    entry
        .verify(key)
        .map_err(|e| format!("entry signature: {e}"))?;
    let b = entry.body();
    if b.member != querier {
        return Err(format!("the entry is `{}`'s, not `{querier}`'s", b.member));
    }
    if !matches!(b.kind, JobKind::RiskQuery | JobKind::RiskIngest) {
        return Err("the entry is not a risk query or ingest".into());
    }
    ev.promise
        .verify(genesis)
        .map_err(|e| format!("inclusion promise: {e}"))?;
    if ev.promise.entry_hash != entry.leaf_hash() {
        return Err("the promise is for another entry".into());
    }
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&ev.salt_hex, &mut salt).map_err(|_| "malformed salt".to_string())?;
    if fingerprint(&salt, &blinded_hash, b"") != b.fingerprint {
        return Err("the logged entry does not commit to these blinded points".into());
    }
    Ok(())
}

fn audit_client(
    channels: &PeerChannels,
    peer: &str,
) -> Result<AuditClient<tonic::transport::Channel>, DaemonError> {
    // Reuse the peer channel: build an Audit client on the same connection.
    let ch = channels.channel(peer)?;
    Ok(AuditClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

/// What the sequencer knows of one member.
#[derive(Debug, Default, Clone, Copy)]
struct MemberView {
    /// Entries the member holds (None: unknown, ask).
    size: Option<u64>,
    /// Size of the last final checkpoint sent to it.
    final_sent: u64,
}

/// The sequencer's loop: checkpoint, replicate, gather cosignatures, publish finals.
pub async fn replication_loop(d: Arc<Daemon>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let Some(a) = d.audit.clone() else { return };
    if !a.is_sequencer(&d.me) {
        return;
    }
    let members: Vec<String> = a
        .genesis
        .members
        .iter()
        .map(|m| m.name.clone())
        .filter(|n| *n != d.me)
        .collect();
    let mut views: std::collections::HashMap<String, MemberView> = members
        .iter()
        .map(|m| (m.clone(), MemberView::default()))
        .collect();
    loop {
        tokio::select! {
            _ = a.kick.notified() => {},
            _ = tokio::time::sleep(Duration::from_millis(500)) => {},
            _ = stop.changed() => return,
        }
        // Batch: let appends arriving together share a checkpoint.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let need = a
            .with(|s| Ok(s.latest_signed().map(|c| c.checkpoint.size) != Some(s.size())))
            .unwrap_or(false);
        if need && let Err(e) = a.with(|s| s.checkpoint()) {
            tracing::warn!(error = %e, "audit: cannot sign a checkpoint");
            continue;
        }
        // Two passes: the first gathers cosignatures (and may make the checkpoint final),
        // the second hands the final checkpoint to members that lack it.
        for _ in 0..2 {
            let Ok(Some(latest)) = a.with(|s| Ok(s.latest_signed().map(|c| c.checkpoint.size)))
            else {
                break;
            };
            let fin = a.with(|s| Ok(s.latest_final().cloned())).ok().flatten();
            let fin_size = fin.as_ref().map(|f| f.checkpoint.size).unwrap_or(0);
            let futs = members.iter().filter_map(|m| {
                let v = views.get(m).copied().unwrap_or_default();
                if v.size == Some(latest) && v.final_sent >= fin_size {
                    return None;
                }
                let (d, a, fin) = (&d, &a, fin.clone());
                Some(async move { (m.clone(), replicate_to(d, a, m, v, fin).await) })
            });
            for (m, r) in futures::future::join_all(futs).await {
                match r {
                    Ok(v) => {
                        views.insert(m, v);
                    }
                    Err(e) => {
                        tracing::debug!(member = %m, error = %e, "audit: replication pending");
                        views.insert(m, MemberView::default());
                    }
                }
            }
        }
    }
}

/// Brings one member up to the latest signed checkpoint (in steps of at most 10,000
/// entries), records its cosignatures, and sends it the latest final checkpoint.
async fn replicate_to(
    d: &Daemon,
    a: &AuditState,
    member: &str,
    mut view: MemberView,
    fin: Option<SignedCheckpoint>,
) -> Result<MemberView, DaemonError> {
    let c = audit_client(&d.channels, member)?;
    let timeout = Duration::from_secs(5);
    let call = |req: ReplicateRequest| {
        let mut c = c.clone();
        async move {
            tokio::time::timeout(timeout, c.replicate(req))
                .await
                .map_err(|_| DaemonError::Internal("replicate timed out".into()))?
                .map_err(|s| DaemonError::Internal(s.message().to_string()))
                .map(|r| r.into_inner())
        }
    };
    let mut size = match view.size {
        Some(s) => s,
        None => call(ReplicateRequest::default()).await?.size,
    };
    for _ in 0..1000 {
        let latest = a.with(|s| Ok(s.latest_signed().map(|c| c.checkpoint.size).unwrap_or(0)))?;
        if size >= latest {
            break;
        }
        let update = a.with(|s| s.update_for(size, 10_000))?;
        let req = ReplicateRequest {
            entries: update
                .entries
                .iter()
                .map(|e| e.as_bytes().to_vec())
                .collect(),
            first_index: size,
            checkpoint: update.checkpoint.to_note(),
            consistency_proof: update.proof.iter().map(|h| h.to_vec()).collect(),
            final_checkpoints: vec![],
        };
        let r = call(req).await?;
        if !r.cosignature.is_empty() {
            let cosig: Cosignature = serde_json::from_str(&r.cosignature).map_err(|e| {
                DaemonError::Protocol(format!("audit: bad cosignature from `{member}`: {e}"))
            })?;
            if let Some(f) = a.with(|s| s.add_cosignature(&cosig))? {
                tracing::debug!(size = f.checkpoint.size, "audit: checkpoint final");
            }
        }
        if r.size <= size {
            return Err(DaemonError::Protocol(format!(
                "audit: `{member}` made no progress at size {size}"
            )));
        }
        size = r.size;
    }
    view.size = Some(size);
    // The newest final checkpoint (possibly completed just now by this member).
    let fin = a
        .with(|s| Ok(s.latest_final().cloned()))
        .ok()
        .flatten()
        .or(fin);
    if let Some(f) = fin
        && f.checkpoint.size > view.final_sent
        && f.checkpoint.size <= size
    {
        call(ReplicateRequest {
            final_checkpoints: vec![f.to_note()],
            ..Default::default()
        })
        .await?;
        view.final_sent = f.checkpoint.size;
    }
    Ok(view)
}

/// The Audit gRPC service.
#[derive(Debug)]
pub struct AuditService {
    d: Arc<Daemon>,
}

pub fn audit_server(d: Arc<Daemon>) -> AuditServer<AuditService> {
    AuditServer::new(AuditService { d })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl AuditService {
    fn state(&self) -> Result<&Arc<AuditState>, Status> {
        self.d
            .audit
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this party has no audit chain configured"))
    }
}

fn st(e: DaemonError) -> Status {
    Status::from(e)
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn append(&self, req: Request<AppendRequest>) -> Result<Response<AppendReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?;
        if !a.is_sequencer(&self.d.me) {
            return Err(Status::failed_precondition(format!(
                "`{}` is not the sequencer",
                self.d.me
            )));
        }
        let entry = Entry::from_bytes(&req.into_inner().entry)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if entry.body().member != who {
            tracing::warn!(caller = %who, member = %entry.body().member, "refused audit entry signed for another member");
            return Err(Status::permission_denied(format!(
                "`{who}` may only append its own entries"
            )));
        }
        let a2 = a.clone();
        let promise = tokio::task::spawn_blocking(move || a2.with(|s| s.append_signed(&[entry])))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?
            .remove(0);
        a.kick.notify_one();
        Ok(Response::new(AppendReply {
            index: promise.index,
            promise: serde_json::to_vec(&promise).map_err(|e| Status::internal(e.to_string()))?,
        }))
    }

    async fn replicate(
        &self,
        req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?.clone();
        if who != a.genesis.sequencer {
            return Err(Status::permission_denied(format!(
                "only the sequencer `{}` replicates",
                a.genesis.sequencer
            )));
        }
        let r = req.into_inner();
        let reply = tokio::task::spawn_blocking(move || -> Result<ReplicateReply, DaemonError> {
            for note in &r.final_checkpoints {
                let fin = SignedCheckpoint::from_note(note).map_err(audit_err)?;
                // A final checkpoint beyond what we hold is recorded once we hold it.
                let held = a.with(|s| Ok(s.size()))?;
                if fin.checkpoint.size <= held {
                    a.with(|s| s.record_final(&fin))?;
                }
            }
            let mut cosignature = String::new();
            if !r.checkpoint.is_empty() {
                let cp = SignedCheckpoint::from_note(&r.checkpoint).map_err(audit_err)?;
                let entries = r
                    .entries
                    .iter()
                    .map(|b| Entry::from_bytes(b))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(audit_err)?;
                let proof = r
                    .consistency_proof
                    .iter()
                    .map(|h| {
                        <[u8; 32]>::try_from(h.as_slice())
                            .map_err(|_| DaemonError::Protocol("bad proof hash".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let cosig = a.with(|s| s.apply(&entries, &cp, &proof))?;
                cosignature = serde_json::to_string(&cosig)
                    .map_err(|e| DaemonError::Internal(e.to_string()))?;
            }
            Ok(ReplicateReply {
                cosignature,
                size: a.with(|s| Ok(s.size()))?,
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(st)?;
        Ok(Response::new(reply))
    }

    async fn fetch(&self, req: Request<FetchRequest>) -> Result<Response<FetchReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?;
        if !a.genesis.is_member(&who) {
            return Err(Status::permission_denied(format!(
                "`{who}` is not a member"
            )));
        }
        let r = req.into_inner();
        let limit = r.limit.clamp(1, 10_000);
        let (entries, checkpoint) = a
            .with(|s| {
                let to = s.size().min(r.from_index.saturating_add(limit));
                let e = s.entries_range(r.from_index.min(to), to)?;
                Ok((e, s.latest_final().map(|c| c.to_note()).unwrap_or_default()))
            })
            .map_err(st)?;
        Ok(Response::new(FetchReply {
            entries: entries.iter().map(|e| e.as_bytes().to_vec()).collect(),
            checkpoint,
        }))
    }

    async fn log(&self, req: Request<LogRequest>) -> Result<Response<LogReply>, Status> {
        local(&self.d, &req)?;
        let a = self.state()?;
        let summary = req.into_inner().summary;
        let json = a
            .with(|s| {
                if summary {
                    let sum = s.summary()?;
                    let v: serde_json::Map<String, serde_json::Value> = sum
                        .into_iter()
                        .map(|(k, m)| (k, serde_json::json!({"started": m.started, "served": m.served})))
                        .collect();
                    Ok(serde_json::Value::Object(v))
                } else {
                    let entries = s.log()?;
                    let final_size = s.latest_final().map(|c| c.checkpoint.size);
                    Ok(serde_json::json!({
                        "size": s.size(),
                        "final_size": final_size,
                        "entries": entries.iter().map(|(i, e)| {
                            let b = e.body();
                            serde_json::json!({"index": i, "timestamp_ms": b.timestamp_ms, "member": b.member, "kind": b.kind.as_str(), "job_id": b.job_id, "served_by": b.served_by, "fingerprint": hex::encode(b.fingerprint)})
                        }).collect::<Vec<_>>(),
                    }))
                }
            })
            .map_err(st)?;
        Ok(Response::new(LogReply {
            json: json.to_string(),
        }))
    }

    async fn verify(&self, req: Request<VerifyRequest>) -> Result<Response<VerifyReply>, Status> {
        local(&self.d, &req)?;
        let a = self.state()?;
        let fault = a.with(|s| Ok(s.fault().map(str::to_string))).map_err(st)?;
        match a.with(|s| s.verify_all()) {
            Ok(r) if fault.is_none() => Ok(Response::new(VerifyReply {
                ok: true,
                report: format!(
                    "{} entries verified (signatures, Merkle root {}), final checkpoint at size {}",
                    r.entries,
                    hex::encode(r.root),
                    r.final_size
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none yet".into())
                ),
            })),
            Ok(_) => Ok(Response::new(VerifyReply {
                ok: false,
                report: fault.unwrap_or_default(),
            })),
            Err(e) => Ok(Response::new(VerifyReply {
                ok: false,
                report: e.to_string(),
            })),
        }
    }

    async fn prove(&self, req: Request<ProveRequest>) -> Result<Response<ProveReply>, Status> {
        local(&self.d, &req)?;
        let a = self.state()?;
        let job = req.into_inner().job_id;
        let bundle = a.with(|s| s.prove_job(&job)).map_err(st)?;
        Ok(Response::new(ProveReply {
            bundle_json: bundle.to_json(),
        }))
    }
}

fn local<T>(d: &Daemon, req: &Request<T>) -> Result<(), Status> {
    let who = caller(req)?;
    if who == d.me {
        Ok(())
    } else {
        Err(Status::permission_denied(format!(
            "only `{}` may read its own audit log through this call",
            d.me
        )))
    }
}
