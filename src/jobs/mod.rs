//! Job kinds: what each party checks before a job starts, and the protocol it runs.
//!
//! | kind | what it does |
//! |---|---|
//! | `netcheck` | exchanges messages with every party of the job over the job's streams and measures them (no data) |
//! | `psi` | ECDH private set intersection (confide-psi) |
//! | `train` | PSI row alignment, then vertical logistic regression on secret shares with the dealer (confide-training) |
//! | `predict` | PSI row alignment, then scoring with a secret-shared model; only the initiator sees the scores |

use std::collections::HashMap;
use std::time::Instant;

use confide_mpc::{ChannelTransport, Transport};
use confide_proto::DatasetRef;

use crate::daemon::Daemon;
use crate::daemon::jobs::JobCtx;
use crate::error::DaemonError;

pub mod psi;
pub mod risk;
pub mod train;

/// Kinds a user can submit, and whether they use a dataset.
pub const KINDS: &[(&str, bool)] = &[
    ("netcheck", false),
    ("psi", true),
    ("train", false),
    ("predict", false),
];

fn needs_dataset(kind: &str) -> Result<bool, DaemonError> {
    KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, d)| *d)
        .ok_or_else(|| {
            DaemonError::InvalidRequest(format!(
                "unknown job kind `{kind}` (known: {})",
                KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// Checks, at the initiator, that a job can start: known kind, own dataset, options.
pub fn check_local(
    d: &Daemon,
    kind: &str,
    dataset: &str,
    peers: &[DatasetRef],
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    if needs_dataset(kind)? {
        d.cfg
            .check_policy(dataset, kind, &d.me)
            .map_err(DaemonError::InvalidRequest)?;
    }
    if peers.is_empty() {
        return Err(DaemonError::InvalidRequest(
            "a job needs at least one peer".into(),
        ));
    }
    check_options(kind, options)?;
    if kind == "psi" {
        psi::check(d, dataset, peers.len() + 1, options)?;
    }
    if kind == "train" {
        train::check_local(d, dataset, peers, options)?;
    }
    if kind == "predict" {
        train::check_local_predict(d, dataset, peers, options)?;
    }
    Ok(())
}

/// Checks, at a peer, that `caller` may start `kind` on `dataset` here.
pub fn check_peer(
    d: &Daemon,
    kind: &str,
    dataset: &str,
    caller: &str,
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    if needs_dataset(kind)? {
        d.cfg
            .check_policy(dataset, kind, caller)
            .map_err(DaemonError::PermissionDenied)?;
    }
    check_options(kind, options)?;
    if kind == "psi" {
        psi::check(d, dataset, 2, &HashMap::new())?;
    }
    if kind == "train" {
        train::check_peer(d, dataset, caller, options)?;
    }
    if kind == "predict" {
        train::check_peer_predict(d, dataset, caller, options)?;
    }
    Ok(())
}

fn check_options(kind: &str, options: &HashMap<String, String>) -> Result<(), DaemonError> {
    if kind == "netcheck" {
        for key in options.keys() {
            if !["rounds", "size", "interval_ms"].contains(&key.as_str()) {
                return Err(DaemonError::InvalidRequest(format!(
                    "netcheck: unknown option `{key}`"
                )));
            }
        }
        for (k, max) in [
            ("rounds", 1_000_000u64),
            ("size", 16 << 20),
            ("interval_ms", 60_000),
        ] {
            if let Some(v) = options.get(k) {
                let n: u64 = v.parse().map_err(|_| {
                    DaemonError::InvalidRequest(format!(
                        "netcheck: option `{k}` = `{v}` is not a number"
                    ))
                })?;
                if n > max {
                    return Err(DaemonError::InvalidRequest(format!(
                        "netcheck: option `{k}` exceeds {max}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Runs the job's protocol at this party; returns its JSON summary.
pub async fn run(ctx: &JobCtx, t: &ChannelTransport) -> Result<serde_json::Value, DaemonError> {
    match ctx.spec.kind.as_str() {
        "netcheck" => netcheck(ctx, t).await,
        "psi" => psi::run(ctx, t).await,
        "train" => train::run(ctx, t).await,
        "predict" => train::run_predict(ctx, t).await,
        other => Err(DaemonError::InvalidRequest(format!(
            "unknown job kind `{other}`"
        ))),
    }
}

/// Answers a request/response call from a peer (`Peer.Call`).
pub async fn handle_call(
    _d: &Daemon,
    _caller: &str,
    method: &str,
    _job_id: &str,
    _payload: Vec<u8>,
) -> Result<Vec<u8>, DaemonError> {
    if let Some(m) = method.strip_prefix("risk.") {
        return risk::handle_call(_d, _caller, m, _job_id, _payload).await;
    }
    Err(DaemonError::InvalidRequest(format!(
        "unknown call `{method}`"
    )))
}

/// Every party sends `rounds` messages of `size` bytes to every other party and checks
/// that it receives theirs, in order.
async fn netcheck(ctx: &JobCtx, t: &ChannelTransport) -> Result<serde_json::Value, DaemonError> {
    let num = |k: &str, default: u64| {
        ctx.option(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = num("rounds", 3);
    let size = num("size", 1024) as usize;
    let interval = std::time::Duration::from_millis(num("interval_ms", 0));
    let peers = t.peers();
    let started = Instant::now();
    for round in 0..rounds {
        let mut msg = round.to_le_bytes().to_vec();
        msg.resize(8 + size, 0);
        let sends = peers.iter().map(|p| t.send(p, msg.clone()));
        let recvs = peers.iter().map(|p| async move {
            let m = t.recv(p).await?;
            let got = m
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes);
            if got != Some(round) || m.len() != 8 + size {
                return Err(confide_mpc::TransportError::malformed(
                    p,
                    format!("expected round {round}"),
                ));
            }
            Ok(())
        });
        let (s, r) = tokio::join!(
            futures::future::try_join_all(sends),
            futures::future::try_join_all(recvs)
        );
        s?;
        r?;
        ctx.progress("exchange", round + 1, rounds, "");
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    let elapsed = started.elapsed();
    let bytes = rounds * (8 + size as u64) * peers.len() as u64;
    Ok(serde_json::json!({
        "kind": "netcheck",
        "peers": peers,
        "rounds": rounds,
        "bytes_sent": bytes,
        "elapsed_ms": elapsed.as_millis() as u64,
    }))
}
