//! What each CLI command does. `main` only parses arguments and prints the error.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use confide_proto::{DatasetRef, JobState, StatusRequest, SubmitRequest};

use crate::cli::{AuditCommand, Cli, Command, RiskCommand};
use crate::client;
use crate::config::PartyConfig;
use crate::init::{self, InitOptions};

/// Runs one CLI command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let verbose = matches!(cli.command, Command::Serve(_));
    init_tracing(cli.log.as_deref(), verbose);
    match cli.command {
        Command::Init(a) => {
            let opts = InitOptions {
                dir: a.dir.clone(),
                parties: a.parties,
                base_port: a.base_port,
                compute: a.compute,
                dealer: a.dealer,
                host: a.host,
                valid_days: a.valid_days,
                metrics_base_port: a.metrics_base_port,
            };
            init::run(&opts)?;
            println!(
                "wrote alliance of {} parties to {} (ca.pem, genesis.json, docker-compose.yml, and <party>/party.toml)",
                opts.parties.len(),
                a.dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(c) => {
            let cfg = PartyConfig::load(&c.config)?;
            crate::daemon::serve(cfg, shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            config,
            self_only,
            json,
        } => status(&config.config, self_only, json).await,
        Command::Jobs(c) => {
            let cfg = PartyConfig::load(&c.config)?;
            let mut ctl = client::control(&cfg).await?;
            let jobs = ctl
                .list_jobs(confide_proto::ListJobsRequest {})
                .await
                .map_err(|s| client::daemon_error(&cfg, &s))?
                .into_inner()
                .jobs;
            println!(
                "{:<26} {:<9} {:<10} {:<10} parties",
                "job", "kind", "state", "initiator"
            );
            for j in jobs {
                let state = JobState::try_from(j.state).unwrap_or(JobState::Unspecified);
                println!(
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
        Command::Netcheck {
            config,
            peers,
            rounds,
            size,
            interval_ms,
        } => {
            let cfg = PartyConfig::load(&config.config)?;
            let peers = if peers.is_empty() {
                cfg.peers.keys().cloned().collect()
            } else {
                peers
            };
            let mut options = HashMap::new();
            options.insert("rounds".to_string(), rounds.to_string());
            options.insert("size".to_string(), size.to_string());
            options.insert("interval_ms".to_string(), interval_ms.to_string());
            let req = SubmitRequest {
                kind: "netcheck".into(),
                dataset: String::new(),
                peers: peers
                    .into_iter()
                    .map(|p| DatasetRef {
                        party: p,
                        dataset: String::new(),
                    })
                    .collect(),
                options,
                ..Default::default()
            };
            let (job, result) = submit(&cfg, req).await?;
            println!("netcheck job {job}: {result}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Psi(_) => not_yet("psi", "private set intersection (issue 3)"),
        Command::Train(_) => not_yet("train", "secret-shared training (issue 5)"),
        Command::Risk(RiskCommand::Ingest { .. } | RiskCommand::Query { .. }) => {
            not_yet("risk", "joint risk queries (issue 6)")
        }
        Command::Audit(
            AuditCommand::Log { .. }
            | AuditCommand::Verify(_)
            | AuditCommand::Prove { .. }
            | AuditCommand::Check { .. },
        ) => not_yet("audit", "the audit chain (issue 4)"),
        Command::Demo(a) => crate::demo::run(a).await,
    }
}

fn not_yet(cmd: &str, what: &str) -> Result<ExitCode> {
    bail!("`confide {cmd}` is not available in this build yet: {what} has not landed")
}

fn init_tracing(filter: Option<&str>, verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "info" } else { "warn" };
    let filter = filter
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default)))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
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

/// `confide status`: prints the daemon and each peer; Ok(FAILURE) if any is unreachable.
pub async fn status(config: &Path, self_only: bool, json: bool) -> Result<ExitCode> {
    let cfg = PartyConfig::load(config)?;
    let mut ctl = client::control(&cfg).await?;
    let reply = tokio::time::timeout(
        Duration::from_secs(8),
        ctl.status(StatusRequest { self_only }),
    )
    .await
    .map_err(|_| anyhow!("daemon of `{}` did not answer within 8 s", cfg.party.name))?
    .map_err(|s| client::daemon_error(&cfg, &s))?
    .into_inner();
    let down: Vec<&str> = reply
        .peers
        .iter()
        .filter(|p| !p.reachable)
        .map(|p| p.name.as_str())
        .collect();
    if json {
        let peers: Vec<_> = reply
            .peers
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "address": p.address, "reachable": p.reachable, "error": p.error, "latency_ms": p.latency_ms}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"party": reply.party, "version": reply.version, "jobs_running": reply.jobs_running, "peers": peers})
        );
    } else {
        println!(
            "{}: daemon up (confide {}), {} job(s) running",
            reply.party, reply.version, reply.jobs_running
        );
        for p in &reply.peers {
            if p.reachable {
                println!(
                    "  {:<12} {:<22} ok ({} ms, mutual TLS)",
                    p.name, p.address, p.latency_ms
                );
            } else {
                println!(
                    "  {:<12} {:<22} UNREACHABLE: {}",
                    p.name, p.address, p.error
                );
            }
        }
    }
    if down.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: unreachable peer(s): {}", down.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
        JobState::Unspecified => "unknown",
    }
}

/// Parses `PARTY:DATASET`.
pub fn parse_peer(s: &str) -> Result<DatasetRef> {
    let (party, dataset) = s
        .split_once(':')
        .filter(|(p, d)| !p.is_empty() && !d.is_empty())
        .ok_or_else(|| anyhow!("--peer `{s}`: expected PARTY:DATASET"))?;
    Ok(DatasetRef {
        party: party.to_string(),
        dataset: dataset.to_string(),
    })
}

/// An absolute form of a path given on the command line (the daemon resolves nothing).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("current directory")?
            .join(p))
    }
}

/// Submits a job to this party's daemon and follows its progress (a bar on a terminal,
/// plain lines otherwise). Returns the job id and its JSON result.
pub async fn submit(cfg: &PartyConfig, req: SubmitRequest) -> Result<(String, serde_json::Value)> {
    submit_with(cfg, req, std::io::stderr().is_terminal()).await
}

/// As [`submit`], choosing the progress display.
pub async fn submit_with(
    cfg: &PartyConfig,
    req: SubmitRequest,
    bar: bool,
) -> Result<(String, serde_json::Value)> {
    let mut ctl = client::control(cfg).await?;
    let kind = req.kind.clone();
    let mut stream = ctl
        .submit(req)
        .await
        .map_err(|s| anyhow!("{kind}: {}", crate::error::status_line(&s)))?
        .into_inner();
    let pb = bar.then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    });
    let mut job_id = String::new();
    let mut last_plain = Instant::now() - Duration::from_secs(10);
    let mut last_stage = String::new();
    loop {
        let ev = match stream.message().await {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                bail!("{kind} job {job_id}: the daemon closed the stream before the job ended")
            }
            Err(s) => bail!("{kind} job {job_id}: {}", crate::error::status_line(&s)),
        };
        job_id = ev.job_id.clone();
        let state = JobState::try_from(ev.state).unwrap_or(JobState::Unspecified);
        match state {
            JobState::Succeeded => {
                if let Some(pb) = &pb {
                    pb.finish_and_clear();
                }
                let v = serde_json::from_str(&ev.result_json).unwrap_or(serde_json::Value::Null);
                return Ok((job_id, v));
            }
            JobState::Failed | JobState::Cancelled => {
                if let Some(pb) = &pb {
                    pb.finish_and_clear();
                }
                bail!("{kind} job {job_id} {}: {}", state_name(state), ev.error);
            }
            _ => {
                if let Some(pb) = &pb {
                    pb.set_prefix(ev.stage.clone());
                    pb.set_length(ev.total);
                    pb.set_position(ev.done);
                    pb.set_message(ev.message.clone());
                } else if ev.stage != last_stage || last_plain.elapsed() > Duration::from_secs(2) {
                    last_plain = Instant::now();
                    last_stage = ev.stage.clone();
                    if ev.total > 0 {
                        eprintln!(
                            "[{job_id}] {}: {}/{} {}",
                            ev.stage, ev.done, ev.total, ev.message
                        );
                    } else {
                        eprintln!("[{job_id}] {}: {}", ev.stage, ev.message);
                    }
                }
            }
        }
    }
}
