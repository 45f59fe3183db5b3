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
//!   a logged audit entry of the caller ([`crate::audit::evidence::check_risk_evidence`]),
//!   with an RFC 6962 inclusion proof in a checkpoint cosigned by a quorum of members that
//!   includes someone other than this node and the caller (so the entry is held by members
//!   the node does not control, not merely promised by the sequencer); the crate refuses
//!   replays, and the entry's kind must match the purpose (`risk-ingest` for ingest tagging,
//!   `risk-query` for queries). Compute nodes need the audit chain.
//! * **Dedicated nodes.** A compute node does not ingest or query: its own Submit refuses
//!   ([`refuse_compute_node`]) and the nodes refuse its requests, unless the alliance sets
//!   `[alliance] compute_nodes_may_hold_data = true` (accepting that such a node learns who
//!   else holds its customers and who asked about them).
//! * **Rate limit**: `policy.risk_queries_per_minute` of each compute node, per member; every
//!   ID of a batch counts. Refusals are logged (warn) with the caller's name.

use std::sync::Arc;
use std::time::Duration;

use confide_audit::JobKind as AuditKind;
use confide_proto::CallRequest;
use confide_risk::{
    AuditGate, Limits, LoggedEntry, NodeState, Purpose, Request, Response, RiskError, Role,
    install_pair_seed, needs_pair_seed,
};

use crate::audit::AuditState;
use crate::audit::evidence::{check_risk_evidence, risk_evidence_kind};
use crate::base::config::PartyConfig;
use crate::base::error::{DaemonError, status_line};
use crate::net::PeerChannels;

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

/// Dedicated compute nodes: refuses a risk ingest or query by `who` (this party at its own
/// Submit, or a caller as a node sees it) when `who` is a compute node, unless the alliance
/// accepted that with `[alliance] compute_nodes_may_hold_data = true`. A node that holds data
/// knows its own customers' tags, so it would learn who else holds them and who asked.
pub fn refuse_compute_node(cfg: &PartyConfig, who: &str, what: &str) -> Result<(), DaemonError> {
    if cfg.alliance.compute_nodes_may_hold_data || !cfg.alliance.compute.iter().any(|c| c == who) {
        return Ok(());
    }
    Err(DaemonError::PermissionDenied(format!(
        "`{who}` is a risk compute node and may not {what}: a node that holds data or asks \
         queries learns who else holds its customers and who asked about them; an alliance \
         that accepts this sets `[alliance] compute_nodes_may_hold_data = true` in party.toml"
    )))
}

fn role(cfg: &PartyConfig) -> Option<Role> {
    let me = &cfg.party.name;
    match cfg.alliance.compute.as_slice() {
        [a, _] if a == me => Some(Role::S0),
        [_, b] if b == me => Some(Role::S1),
        _ => None,
    }
}

/// The compute node's audit gate: the alliance genesis and the evidence check.
struct Gate {
    /// This node: its own cosignature does not make a checkpoint independent.
    me: String,
    genesis: confide_audit::Genesis,
}

impl AuditGate for Gate {
    fn check(&self, querier: &str, hash: [u8; 32], evidence: &[u8]) -> confide_risk::Result<()> {
        self.verify(querier, hash, evidence).map(|_| ())
    }

    /// The canonical entry (its leaf hash: replay protection keys on it, not on the
    /// evidence's bytes) and the sequencer-signed append time (the `queried_by` window is
    /// measured on it, the same at both nodes; a member cannot backdate it).
    fn verify(
        &self,
        querier: &str,
        hash: [u8; 32],
        evidence: &[u8],
    ) -> confide_risk::Result<LoggedEntry> {
        let (id, at) = check_risk_evidence(&self.genesis, &self.me, querier, hash, evidence)
            .map_err(|reason| RiskError::AuditRefused {
                querier: querier.to_string(),
                reason,
            })?;
        Ok(LoggedEntry {
            id,
            logged_at_ms: Some(at),
        })
    }
}

/// This daemon's risk state when it is a compute node.
#[derive(Debug)]
pub struct RiskNode {
    me: String,
    compute: [String; 2],
    /// `alliance.compute_nodes_may_hold_data`: whether the other node may ingest or query.
    may_hold_data: bool,
    state: Arc<NodeState<Gate>>,
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
        // S1 fetches the pair seed from S0 once (over mutual TLS; S0 answers only S1).
        if needs_pair_seed(&dir, role)? {
            let seed = fetch_seed(channels, &compute[0]).await?;
            install_pair_seed(&dir, &seed[..])?;
            tracing::info!(from = %compute[0], "risk: installed the pair seed from S0");
        }
        let limits = Limits {
            query_ids_per_minute: u64::from(cfg.policy.risk_queries_per_minute),
            ..Limits::default()
        };
        let gate = Gate {
            me: me.clone(),
            genesis: audit.genesis.clone(),
        };
        let state = tokio::task::spawn_blocking(move || NodeState::open(&dir, role, gate, limits))
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))??;
        tracing::info!(
            role = ?role,
            per_minute = cfg.policy.risk_queries_per_minute,
            tags = state.node().index().tag_count().unwrap_or(0),
            "risk: compute node ready"
        );
        Ok(Some(Self {
            me,
            compute,
            may_hold_data: cfg.alliance.compute_nodes_may_hold_data,
            state: Arc::new(state),
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
        match self.state.pair_seed_for(caller, s1) {
            Ok(seed) => {
                tracing::info!(%caller, "risk: handed the pair seed to S1");
                Ok(seed.to_vec())
            }
            Err(_) => {
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
        if !self.may_hold_data && self.compute.iter().any(|c| c == caller) {
            let e = format!(
                "`{caller}` is a risk compute node and may not ingest or query: a node that \
                 holds data or asks queries learns who else holds its customers and who asked \
                 about them (this alliance does not set `compute_nodes_may_hold_data`)"
            );
            return refuse(&what, e);
        }
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
        let state = self.state.clone();
        let r = tokio::task::spawn_blocking(move || state.node().handle_request(&who, req))
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

/// S1 fetches the pair seed from S0.
async fn fetch_seed(
    channels: &PeerChannels,
    s0: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, DaemonError> {
    let peer_err = |message: String| channels.peer_error(s0, message);
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
    Ok(zeroize::Zeroizing::new(r.into_inner().payload))
}
