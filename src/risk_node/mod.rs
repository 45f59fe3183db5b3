//! The risk compute node in the daemon (confide-risk): its state and the `Peer.Call`
//! handlers it serves.
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
//!   a logged audit entry of the caller ([`crate::audit::evidence::check_risk_evidence`]); the
//!   crate refuses replays, and the entry's kind must match the purpose (`risk-ingest` for
//!   ingest tagging, `risk-query` for queries). Compute nodes need the audit chain.
//! * **Rate limit**: `policy.risk_queries_per_minute` of each compute node, per member; every
//!   ID of a batch counts. Refusals are logged (warn) with the caller's name.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use confide_audit::JobKind as AuditKind;
use confide_proto::CallRequest;
use confide_risk::{
    AuditGate, ComputeNode, OprfKey, PairSeed, Purpose, RateLimiter, Request, Response, RiskError,
    RiskIndex, Role,
};

use crate::audit::AuditState;
use crate::audit::evidence::{check_risk_evidence, risk_evidence_kind};
use crate::base::config::PartyConfig;
use crate::base::error::{DaemonError, status_line};
use crate::net::PeerChannels;

const KEY_FILE: &str = "oprf.key";
const SEED_FILE: &str = "pair.seed";
const INDEX_FILE: &str = "index.redb";

/// The two compute nodes of the alliance, S0 first.
pub fn compute_nodes(cfg: &PartyConfig) -> Result<[String; 2], DaemonError> {
    match cfg.alliance.compute.as_slice() {
        [a, b] => Ok([a.clone(), b.clone()]),
        _ => Err(DaemonError::Config(format!(
            "config file {}: field `alliance.compute` must name the two risk compute nodes",
            cfg.source.display()
        ))),
    }
}

fn role(cfg: &PartyConfig) -> Option<Role> {
    let me = &cfg.party.name;
    match cfg.alliance.compute.as_slice() {
        [a, _] if a == me => Some(Role::S0),
        [_, b] if b == me => Some(Role::S1),
        _ => None,
    }
}

/// 32 secret bytes, wiped on drop, never printed.
struct Secret32(zeroize::Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// The compute node's audit gate: the alliance genesis and the evidence check.
struct Gate {
    genesis: confide_audit::Genesis,
}

impl AuditGate for Gate {
    fn check(&self, querier: &str, hash: [u8; 32], evidence: &[u8]) -> confide_risk::Result<()> {
        check_risk_evidence(&self.genesis, querier, hash, evidence).map_err(|reason| {
            RiskError::AuditRefused {
                querier: querier.to_string(),
                reason,
            }
        })
    }
}

/// This daemon's risk state when it is a compute node.
#[derive(Debug)]
pub struct RiskNode {
    me: String,
    compute: [String; 2],
    node: Arc<ComputeNode<Gate>>,
    /// At S0: the pair seed, handed to S1 on request.
    seed_for_s1: Option<Secret32>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gate")
    }
}

impl RiskNode {
    /// Opens the node's state if this party is a compute node (`None` otherwise). S1
    /// fetches the pair seed from S0 the first time.
    pub async fn open(
        cfg: &PartyConfig,
        audit: Option<&AuditState>,
        channels: &PeerChannels,
    ) -> Result<Option<Self>, DaemonError> {
        let Some(role) = role(cfg) else {
            return Ok(None);
        };
        let me = cfg.party.name.clone();
        let compute = compute_nodes(cfg)?;
        let audit = audit.ok_or_else(|| {
            DaemonError::Config(format!(
                "`{me}` is a risk compute node and needs the audit chain (alliance.genesis, \
                 tls.audit_key) to check that every request was logged"
            ))
        })?;
        let dir = cfg.party.data_dir.join("risk");
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
                create_secret(&key_path, Secret32(zeroize::Zeroizing::new(*k.to_bytes())))?
            }
        };
        let key = OprfKey::from_bytes(&key.0)
            .map_err(|e| DaemonError::Config(format!("{}: {e}", key_path.display())))?;
        let seed_path = dir.join(SEED_FILE);
        let seed = match (read_secret(&seed_path)?, role) {
            (Some(s), _) => s,
            (None, Role::S0) => create_secret(
                &seed_path,
                Secret32(zeroize::Zeroizing::new(rand::random())),
            )?,
            (None, Role::S1) => {
                create_secret(&seed_path, fetch_seed(channels, &compute[0]).await?)?
            }
        };
        let index_path = dir.join(INDEX_FILE);
        let index = tokio::task::spawn_blocking(move || RiskIndex::open(&index_path))
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))??;
        let limiter = RateLimiter::new(u64::from(cfg.policy.risk_queries_per_minute));
        tracing::info!(
            role = ?role,
            per_minute = limiter.per_minute(),
            tags = index.tag_count().unwrap_or(0),
            "risk: compute node ready"
        );
        let node = ComputeNode::new(
            role,
            key,
            PairSeed::new(*seed.0),
            index,
            Gate {
                genesis: audit.genesis.clone(),
            },
        )
        .with_rate_limiter(Some(limiter));
        Ok(Some(Self {
            me,
            compute,
            node: Arc::new(node),
            seed_for_s1: (role == Role::S0).then_some(seed),
        }))
    }

    /// `Peer.Call` methods `risk.*` (the prefix stripped) from `caller`.
    pub async fn handle_call(
        &self,
        caller: &str,
        method: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DaemonError> {
        match method {
            "node" => self.serve(caller, payload).await,
            "pair-seed" => self.pair_seed(caller),
            other => Err(DaemonError::InvalidRequest(format!(
                "unknown call `risk.{other}`"
            ))),
        }
    }

    fn pair_seed(&self, caller: &str) -> Result<Vec<u8>, DaemonError> {
        let s1 = &self.compute[1];
        match &self.seed_for_s1 {
            Some(seed) if caller == s1 => {
                tracing::info!(%caller, "risk: handed the pair seed to S1");
                Ok(seed.0.to_vec())
            }
            _ => {
                tracing::warn!(%caller, "risk: refused a pair-seed request");
                Err(DaemonError::PermissionDenied(format!(
                    "`{}` hands the risk pair seed only to the compute node S1 `{s1}`, not to `{caller}`",
                    self.me
                )))
            }
        }
    }

    /// One compute-node request from `caller`: bytes in, bytes out. Refusals are logged and
    /// answered with the crate's error response.
    pub async fn serve(&self, caller: &str, bytes: Vec<u8>) -> Result<Vec<u8>, DaemonError> {
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
                Purpose::Ingest => AuditKind::RiskIngest,
                Purpose::Query => AuditKind::RiskQuery,
            };
            let bad = match risk_evidence_kind(evidence) {
                Ok(k) if k == want => None,
                Ok(k) => Some(format!(
                    "a `{}` entry cannot authorise {purpose:?}",
                    k.as_str()
                )),
                Err(reason) => Some(reason),
            };
            if let Some(reason) = bad {
                let e = RiskError::AuditRefused {
                    querier: caller.to_string(),
                    reason,
                };
                return refuse(&what, e.to_string());
            }
        }
        let who = caller.to_string();
        let node = self.node.clone();
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

fn read_secret(path: &Path) -> Result<Option<Secret32>, DaemonError> {
    match std::fs::read(path) {
        Ok(b) => {
            let b = zeroize::Zeroizing::new(b);
            let s = <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
                DaemonError::Config(format!("{} is not a 32-byte secret", path.display()))
            })?;
            Ok(Some(Secret32(zeroize::Zeroizing::new(s))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DaemonError::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes a new secret file (mode 0600 from creation); if another writer won the race,
/// returns its secret.
fn create_secret(path: &Path, secret: Secret32) -> Result<Secret32, DaemonError> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(mut f) => {
            f.write_all(&*secret.0)
                .and_then(|()| f.sync_all())
                .map_err(|e| DaemonError::io(format!("writing {}", path.display()), e))?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_secret(path)?
            .ok_or_else(|| DaemonError::Internal(format!("{} vanished", path.display()))),
        Err(e) => Err(DaemonError::io(format!("creating {}", path.display()), e)),
    }
}

/// S1 fetches the pair seed from S0.
async fn fetch_seed(channels: &PeerChannels, s0: &str) -> Result<Secret32, DaemonError> {
    let peer_err = |message: String| DaemonError::Peer {
        peer: s0.to_string(),
        address: channels.address(s0).unwrap_or("-").to_string(),
        message,
    };
    let mut c = channels.client(s0)?;
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.call(CallRequest {
            method: "risk.pair-seed".into(),
            job_id: String::new(),
            payload: vec![],
        }),
    )
    .await
    .map_err(|_| peer_err("pair seed: no answer within 10 s".into()))?
    .map_err(|s| peer_err(format!("pair seed: {}", status_line(&s))))?;
    let p = zeroize::Zeroizing::new(r.into_inner().payload);
    let s = <[u8; 32]>::try_from(p.as_slice())
        .map_err(|_| DaemonError::Protocol(format!("`{s0}` sent a malformed pair seed")))?;
    tracing::info!(from = %s0, "risk: received the pair seed from S0");
    Ok(Secret32(zeroize::Zeroizing::new(s)))
}
