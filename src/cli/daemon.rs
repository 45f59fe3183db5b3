//! The daemon's own commands: `serve`, `status`, `jobs`, `cancel`, `netcheck`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use confide_proto::{DatasetRef, JobState, StatusRequest};

use super::CliError;
use super::submit::{request, state_name, submit};
use crate::base::config::PartyConfig;
use crate::base::error::status_line;
use crate::kinds::{JobOptions, netcheck};
use crate::net::client;

/// `confide netcheck`: a real job across `peers` (default: every peer).
pub async fn netcheck(
    config: &Path,
    peers: Vec<String>,
    opts: netcheck::Opts,
) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(config)?;
    let peers = if peers.is_empty() {
        cfg.peers.keys().cloned().collect()
    } else {
        peers
    };
    let peers = peers
        .into_iter()
        .map(|p| DatasetRef {
            party: p,
            dataset: String::new(),
        })
        .collect();
    let req = request(&JobOptions::Netcheck(opts), "", peers, None);
    let (job, result) = submit(&cfg, req).await?;
    outln!("netcheck job {job}: {result}");
    Ok(ExitCode::SUCCESS)
}

/// `confide serve`: binds, then runs the daemon until SIGINT/SIGTERM.
pub async fn serve(config: &Path) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(config)?;
    let listener = crate::daemon::bind(&cfg).await?;
    crate::daemon::serve(listener, cfg, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// `confide status`: prints the daemon, its audit store and each peer; Ok(FAILURE) if any
/// peer is unreachable or the audit store refuses to sign.
pub async fn status(config: &Path, self_only: bool, json: bool) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(config)?;
    let reply = status_reply(&cfg, self_only).await?;
    let down: Vec<&str> = reply
        .peers
        .iter()
        .filter(|p| !p.reachable)
        .map(|p| p.name.as_str())
        .collect();
    if json {
        outln!("{}", status_json(&reply));
    } else {
        outln!(
            "{}: daemon up (confide {}), {} job(s) running",
            reply.party,
            reply.version,
            reply.jobs_running
        );
        if !reply.audit.is_empty() {
            outln!("  audit store: {}", reply.audit);
        }
        for p in &reply.peers {
            if p.reachable {
                outln!(
                    "  {:<12} {:<22} ok ({} ms, mutual TLS)",
                    p.name,
                    p.address,
                    p.latency_ms
                );
            } else {
                outln!(
                    "  {:<12} {:<22} UNREACHABLE: {}",
                    p.name,
                    p.address,
                    p.error
                );
            }
        }
    }
    if reply.audit_fault {
        eprintln!(
            "error: the audit store of `{}` refuses to sign: {}",
            reply.party, reply.audit
        );
    }
    if !down.is_empty() {
        eprintln!("error: unreachable peer(s): {}", down.join(", "));
    }
    if down.is_empty() && !reply.audit_fault {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// `confide jobs`.
pub async fn jobs(config: &Path) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(config)?;
    let jobs = list_jobs(&cfg).await?;
    outln!(
        "{:<26} {:<9} {:<10} {:<10} parties",
        "job",
        "kind",
        "state",
        "initiator"
    );
    for j in jobs {
        let state = JobState::try_from(j.state).unwrap_or(JobState::Unspecified);
        outln!(
            "{:<26} {:<9} {:<10} {:<10} {}{}",
            j.job_id,
            j.kind,
            state_name(state),
            j.initiator,
            j.parties.join(","),
            if j.error.is_empty() {
                String::new()
            } else {
                format!("  ({})", j.error)
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `confide cancel`.
pub async fn cancel(config: &Path, job: String) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(config)?;
    if cancel_job(&cfg, &job).await? {
        outln!("job {job} cancelled");
    } else {
        outln!("job {job} had already ended");
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks this party's daemon for its status (and, unless `self_only`, each peer's), 8 s at
/// most.
pub async fn status_reply(
    cfg: &PartyConfig,
    self_only: bool,
) -> Result<confide_proto::StatusReply, CliError> {
    let mut ctl = client::control(cfg).await?;
    Ok(tokio::time::timeout(
        Duration::from_secs(8),
        ctl.status(StatusRequest { self_only }),
    )
    .await
    .map_err(|_| {
        CliError::Failed(format!(
            "daemon of `{}` did not answer within 8 s",
            cfg.party.name
        ))
    })?
    .map_err(|s| client::daemon_error(cfg, &s))?
    .into_inner())
}

/// A status as the JSON `confide status --json` prints.
pub fn status_json(reply: &confide_proto::StatusReply) -> serde_json::Value {
    let peers: Vec<_> = reply
        .peers
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "address": p.address, "reachable": p.reachable, "error": p.error, "latency_ms": p.latency_ms}))
        .collect();
    serde_json::json!({"party": reply.party, "version": reply.version, "jobs_running": reply.jobs_running, "audit": reply.audit, "audit_ok": !reply.audit_fault, "peers": peers})
}

/// The jobs this party's daemon knows.
pub async fn list_jobs(cfg: &PartyConfig) -> Result<Vec<confide_proto::JobInfo>, CliError> {
    let mut ctl = client::control(cfg).await?;
    Ok(ctl
        .list_jobs(confide_proto::ListJobsRequest {})
        .await
        .map_err(|s| client::daemon_error(cfg, &s))?
        .into_inner()
        .jobs)
}

/// Cancels a job at this party's daemon (which tells every other party); false if it had
/// already ended.
pub async fn cancel_job(cfg: &PartyConfig, job: &str) -> Result<bool, CliError> {
    let mut ctl = client::control(cfg).await?;
    Ok(ctl
        .cancel_job(confide_proto::CancelJobRequest {
            job_id: job.to_string(),
        })
        .await
        .map_err(|s| client::daemon_error(cfg, &s))?
        .into_inner()
        .cancelled)
}

/// Registers a dataset (a CSV file on the daemon's host) with this party's daemon, which
/// appends it to its `party.toml`; returns that file's path.
pub async fn add_dataset(
    cfg: &PartyConfig,
    req: confide_proto::AddDatasetRequest,
) -> Result<String, CliError> {
    let mut ctl = client::control(cfg).await?;
    let kind = "add-dataset".to_string();
    Ok(ctl
        .add_dataset(req)
        .await
        .map_err(|s| CliError::Submit {
            kind,
            code: s.code(),
            message: status_line(&s),
        })?
        .into_inner()
        .config)
}
