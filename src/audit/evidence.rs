//! What jobs put on the chain: a fingerprint of every finished job (by its initiator), and
//! the evidence that a risk evaluation was logged before a compute node answers it.

use std::time::Duration;

use confide_audit::{
    EntryBody, Genesis, InclusionPromise, JobKind, JobRequest, ProofBundle, fingerprint, new_salt,
};
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::state::AuditState;
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::files::write_secret;
use crate::base::ids::now_ms;
use crate::base::job::JobSpec;
use crate::base::kind::JobKind as Kind;

/// The chain's kind for a job kind (netcheck jobs are not anchored; risk kinds anchor
/// every evaluation themselves).
pub fn audit_kind(kind: Kind) -> Option<JobKind> {
    match kind {
        Kind::Netcheck => None,
        Kind::Psi => Some(JobKind::Psi),
        Kind::Train => Some(JobKind::Train),
        Kind::Predict => Some(JobKind::Predict),
        Kind::RiskIngest => Some(JobKind::RiskIngest),
        Kind::RiskQuery => Some(JobKind::RiskQuery),
    }
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
    a: &AuditState,
    cfg: &PartyConfig,
    spec: &JobSpec,
    peer_commitments: &BTreeMap<String, [u8; 32]>,
    result: &Result<serde_json::Value, DaemonError>,
) -> Result<Option<u64>, DaemonError> {
    let result_bytes = match result {
        Ok(v) => v.to_string().into_bytes(),
        Err(e) => format!("failed: {e}").into_bytes(),
    };
    record(a, cfg, spec, peer_commitments, result_bytes, "").await
}

/// Records the *start* of a job this party initiates, before anything is computed: the
/// request (with this party's dataset commitment) and the result `started`. A job whose
/// start cannot be anchored does not run. Kinds that anchor each step themselves (risk
/// queries log every evaluation before it happens) and kinds without an audit kind have
/// no start entry. Returns the entry's index.
pub async fn record_job_start(
    a: &AuditState,
    cfg: &PartyConfig,
    spec: &JobSpec,
) -> Result<Option<u64>, DaemonError> {
    if matches!(spec.kind, Kind::RiskIngest | Kind::RiskQuery) {
        return Ok(None);
    }
    let none = BTreeMap::new();
    record(a, cfg, spec, &none, b"started".to_vec(), ".start").await
}

/// Appends one entry for `spec` committing to its request and `result_bytes`; the salt
/// and the opened values go to `audit-salts/JOB{suffix}.json`.
async fn record(
    a: &AuditState,
    cfg: &PartyConfig,
    spec: &JobSpec,
    peer_commitments: &BTreeMap<String, [u8; 32]>,
    result_bytes: Vec<u8>,
    suffix: &str,
) -> Result<Option<u64>, DaemonError> {
    let Some(kind) = audit_kind(spec.kind) else {
        return Ok(None);
    };
    let me = &a.me;
    // Every party's salted dataset commitment (super::commitment), in party order: this
    // party's own, and the peers' as they handed them over (parties that bring no dataset,
    // like a dealer, or that could not be reached after a failure, have none).
    let mut dataset_hashes = Vec::new();
    for party in spec.party_names() {
        if party == *me {
            if let Some(ds) = spec.dataset_of(me).and_then(|n| cfg.datasets.get(n)) {
                let (dir, job, path) = (
                    cfg.party.data_dir.clone(),
                    spec.job_id.clone(),
                    ds.path.clone(),
                );
                dataset_hashes.push(
                    tokio::task::spawn_blocking(move || {
                        super::commitment::commit_dataset(&dir, &job, &path)
                    })
                    .await
                    .map_err(|e| DaemonError::Internal(e.to_string()))??,
                );
            }
        } else if let Some(h) = peer_commitments.get(&party) {
            dataset_hashes.push(*h);
        }
    }
    let request = JobRequest {
        kind,
        parties: spec.party_names(),
        dataset_hashes,
        parameters: spec.options_json.as_bytes().to_vec(),
    };
    let salt = new_salt();
    let body = EntryBody {
        timestamp_ms: now_ms(),
        member: me.clone(),
        kind,
        job_id: spec.job_id.clone(),
        served_by: spec.party_names().into_iter().filter(|p| p != me).collect(),
        fingerprint: fingerprint(&salt, &request.to_bytes(), &result_bytes),
    };
    let (_, promise) = a.append(body).await?;
    // The salt stays with the initiator: with it, the request and result can later be
    // shown to match the chain.
    let dir = cfg.party.data_dir.join("audit-salts");
    let record = serde_json::json!({
        "job_id": spec.job_id, "index": promise.index, "salt": hex::encode(salt),
        "request": hex::encode(request.to_bytes()), "result": String::from_utf8_lossy(&result_bytes),
    });
    write_secret(
        &dir.join(format!("{}{suffix}.json", spec.job_id)),
        record.to_string().as_bytes(),
    )?;
    Ok(Some(promise.index))
}

/// Format tag of [`RiskEvidence`] (version 2: with the inclusion proof in a final checkpoint).
pub const RISK_EVIDENCE_FORMAT: &str = "confide-risk-evidence/v2";

/// How long a risk evaluation waits for a quorum of members to cosign its entry.
pub const FINAL_WAIT: Duration = Duration::from_secs(30);

/// Evidence that a risk evaluation was logged before it is answered: the caller's signed
/// entry with its RFC 6962 inclusion proof in a checkpoint cosigned by a quorum of members
/// (`proof`, an audit proof bundle), the sequencer's inclusion promise (its signed time),
/// the salt and the request the entry commits to. JSON; unknown fields are refused, and a
/// node names the evidence by the entry's leaf hash, however it is encoded.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskEvidence {
    /// Always [`RISK_EVIDENCE_FORMAT`].
    pub format: String,
    /// The entry, its index and audit path, and the final checkpoint (signed note).
    pub proof: ProofBundle,
    pub promise: InclusionPromise,
    pub salt_hex: String,
    /// The committed request: the SHA-256 of the blinded points (hex).
    pub blinded_hash_hex: String,
}

impl RiskEvidence {
    fn parse(evidence: &[u8]) -> Result<Self, String> {
        let ev: Self =
            serde_json::from_slice(evidence).map_err(|e| format!("malformed evidence: {e}"))?;
        if ev.format != RISK_EVIDENCE_FORMAT {
            return Err(format!(
                "evidence format `{}`, expected `{RISK_EVIDENCE_FORMAT}`",
                ev.format
            ));
        }
        Ok(ev)
    }
}

/// Logs a risk query (kind `risk-query`) bound to `blinded_hash`; returns the evidence
/// bytes the compute nodes check before evaluating anything.
pub async fn log_risk_query(
    a: &AuditState,
    job_id: &str,
    served_by: Vec<String>,
    blinded_hash: [u8; 32],
) -> Result<Vec<u8>, DaemonError> {
    log_risk_eval(a, JobKind::RiskQuery, job_id, served_by, blinded_hash).await
}

/// As [`log_risk_query`] with the entry's kind: `RiskQuery` for a lender's query,
/// `RiskIngest` for the OPRF evaluations of a holder's ingest. Appends the entry, then waits
/// (at most [`FINAL_WAIT`]) until this member holds a checkpoint cosigned by a quorum that
/// covers it, and puts the inclusion proof into the evidence.
pub async fn log_risk_eval(
    a: &AuditState,
    kind: JobKind,
    job_id: &str,
    served_by: Vec<String>,
    blinded_hash: [u8; 32],
) -> Result<Vec<u8>, DaemonError> {
    let salt = new_salt();
    let body = EntryBody {
        timestamp_ms: now_ms(),
        member: a.me.clone(),
        kind,
        job_id: job_id.to_string(),
        served_by,
        fingerprint: fingerprint(&salt, &blinded_hash, b""),
    };
    let (_, promise) = a.append(body).await?;
    let proof = a.proof_when_final(promise.index, FINAL_WAIT).await?;
    let ev = RiskEvidence {
        format: RISK_EVIDENCE_FORMAT.to_string(),
        proof,
        promise,
        salt_hex: hex::encode(salt),
        blinded_hash_hex: hex::encode(blinded_hash),
    };
    serde_json::to_vec(&ev).map_err(|e| DaemonError::Internal(e.to_string()))
}

/// The kind of the entry inside risk evidence (not verified: see [`check_risk_evidence`]).
pub fn risk_evidence_kind(evidence: &[u8]) -> Result<JobKind, String> {
    Ok(RiskEvidence::parse(evidence)?.proof.entry.body().kind)
}

/// Checks risk evidence at compute node `node`: an entry signed by `querier` of kind
/// risk-query (or risk-ingest), whose fingerprint commits to exactly `blinded_hash`, included
/// (RFC 6962 proof) in a checkpoint cosigned by a quorum of genesis members among which at
/// least one is neither `node` nor `querier`, and promised by the sequencer (of the view
/// the promise names; a promise of a view after 0 must be timed within
/// [`PROMISE_SKEW_MS`] of this node's clock, since a member that is the sequencer of some
/// view number could time its own). Returns the entry's RFC 6962 leaf hash (its canonical
/// identity, however the evidence encodes it) and the sequencer-signed time of its append.
pub fn check_risk_evidence(
    genesis: &Genesis,
    node: &str,
    querier: &str,
    blinded_hash: [u8; 32],
    evidence: &[u8],
) -> Result<([u8; 32], u64), String> {
    check_risk_evidence_at(
        genesis,
        (node, querier),
        blinded_hash,
        evidence,
        crate::base::ids::now_ms(),
    )
}

/// How far from a node's clock the append time of a promise made after view 0 may be.
pub const PROMISE_SKEW_MS: u64 = 60_000;

/// [`check_risk_evidence`] with the node's clock reading `now_ms`.
pub fn check_risk_evidence_at(
    genesis: &Genesis,
    (node, querier): (&str, &str),
    blinded_hash: [u8; 32],
    evidence: &[u8],
    now_ms: u64,
) -> Result<([u8; 32], u64), String> {
    let ev = RiskEvidence::parse(evidence)?;
    let entry = &ev.proof.entry;
    let b = entry.body();
    if b.member != querier {
        return Err(format!("the entry is `{}`'s, not `{querier}`'s", b.member));
    }
    if !matches!(b.kind, JobKind::RiskQuery | JobKind::RiskIngest) {
        return Err("the entry is not a risk query or ingest".into());
    }
    // The entry's signature by its member, the checkpoint's quorum, the inclusion path.
    let verified = ev
        .proof
        .verify(genesis)
        .map_err(|e| format!("audit proof: {e}"))?;
    if !verified.cosigners.iter().any(|c| c != node && c != querier) {
        return Err(format!(
            "the checkpoint covering the entry is cosigned by no member other than `{node}` \
             and `{querier}`"
        ));
    }
    ev.promise
        .verify(genesis)
        .map_err(|e| format!("inclusion promise: {e}"))?;
    if ev.promise.view > 0 && ev.promise.timestamp_ms.abs_diff(now_ms) > PROMISE_SKEW_MS {
        return Err(format!(
            "the inclusion promise (view {}) is timed {} s away from this node's clock",
            ev.promise.view,
            ev.promise.timestamp_ms.abs_diff(now_ms) / 1000
        ));
    }
    if ev.promise.entry_hash != entry.leaf_hash() || ev.promise.index != verified.index {
        return Err("the promise is for another entry".into());
    }
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&ev.salt_hex, &mut salt).map_err(|_| "malformed salt".to_string())?;
    if fingerprint(&salt, &blinded_hash, b"") != b.fingerprint {
        return Err("the logged entry does not commit to these blinded points".into());
    }
    Ok((entry.leaf_hash(), ev.promise.timestamp_ms))
}
