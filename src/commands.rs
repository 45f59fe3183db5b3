//! What each CLI command does. `main` only parses arguments and prints the error.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use confide_proto::{DatasetRef, JobState, StatusRequest, SubmitRequest};

use crate::cli::{AuditCommand, Cli, Command};
use crate::client;
use crate::config::PartyConfig;
use crate::init::{self, InitOptions};

/// Runs one CLI command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let verbose = matches!(cli.command, Command::Serve(_));
    init_tracing(cli.log.as_deref(), verbose);
    match cli.command {
        Command::Init(a) => {
            if a.exist_ok && a.dir.join("ca.pem").exists() {
                println!(
                    "{} already holds an alliance; left as it is",
                    a.dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
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
        Command::Cancel { config, job } => {
            let cfg = PartyConfig::load(&config.config)?;
            let mut ctl = client::control(&cfg).await?;
            let r = ctl
                .cancel_job(confide_proto::CancelJobRequest {
                    job_id: job.clone(),
                })
                .await
                .map_err(|s| client::daemon_error(&cfg, &s))?
                .into_inner();
            if r.cancelled {
                println!("job {job} cancelled");
            } else {
                println!("job {job} had already ended");
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
        Command::Psi(a) => psi(a).await,
        Command::Train(a) => crate::jobs::train::command(a).await,
        Command::Predict(a) => crate::jobs::train::predict_command(a).await,
        Command::Risk(c) => crate::jobs::risk::command(c).await,
        Command::Audit(c) => audit(c).await,
        Command::Demo(a) => crate::demo::run(a).await,
    }
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

/// `confide psi`.
async fn psi(a: crate::cli::PsiArgs) -> Result<ExitCode> {
    let cfg = PartyConfig::load(&a.config.config)?;
    let peers = a
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<Result<Vec<_>>>()?;
    let mode = if a.size_only {
        "size-only"
    } else if a.to_all {
        "all"
    } else {
        "initiator"
    };
    let output = match (&a.output, a.size_only) {
        (Some(o), false) => absolute(o)?.to_string_lossy().into_owned(),
        _ => String::new(),
    };
    let req = SubmitRequest {
        kind: "psi".into(),
        dataset: a.dataset.clone(),
        peers: peers.clone(),
        options: [("mode".to_string(), mode.to_string())].into(),
        output,
        timeout_secs: 0,
    };
    let (job, r) = submit(&cfg, req).await?;
    println!("{}", psi_summary(&job, &cfg.party.name, &r));
    Ok(ExitCode::SUCCESS)
}

/// The one-line summary of a PSI job.
pub fn psi_summary(job: &str, me: &str, r: &serde_json::Value) -> String {
    let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let mut s = format!("psi job {job}: {me} {} distinct IDs", n("distinct"));
    let dups = n("duplicates");
    let bad = n("malformed");
    if dups > 0 || bad > 0 || n("blank") > 0 {
        s.push_str(&format!(
            " ({dups} duplicates, {bad} malformed rows skipped"
        ));
        if let Some(lines) = r.get("malformed_lines").and_then(|v| v.as_array())
            && !lines.is_empty()
        {
            let l: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
            s.push_str(&format!(" at lines {}", l.join(",")));
        }
        s.push_str(&format!(", {} blank)", n("blank")));
    }
    if let Some(peers) = r.get("peer_set_sizes").and_then(|v| v.as_object()) {
        for (p, size) in peers {
            s.push_str(&format!(", {p} {size}"));
        }
    }
    match r.get("intersection_size").and_then(|v| v.as_u64()) {
        Some(i) => s.push_str(&format!("; intersection {i}")),
        None => s.push_str("; intersection not revealed to this party"),
    }
    if let Some(out) = r.get("output").and_then(|v| v.as_str()) {
        s.push_str(&format!(" written to {out}"));
    }
    s.push_str(&format!(" in {:.2} s", n("elapsed_ms") as f64 / 1000.0));
    s
}

/// `confide audit ...`.
async fn audit(c: AuditCommand) -> Result<ExitCode> {
    use confide_proto::{LogRequest, VerifyRequest};
    match c {
        AuditCommand::Check { proof, genesis } => {
            let b = std::fs::read_to_string(&proof)
                .with_context(|| format!("reading {}", proof.display()))?;
            let g = std::fs::read_to_string(&genesis)
                .with_context(|| format!("reading {}", genesis.display()))?;
            let v = confide_audit::verify_bundle(&b, &g)
                .map_err(|e| anyhow!("{}: proof rejected: {e}", proof.display()))?;
            let body = v.entry.body();
            println!(
                "proof OK: entry #{} ({} job {} by {}, served by {}) is in the log of size {}, cosigned by {} (offline check against {})",
                v.index,
                body.kind.as_str(),
                body.job_id,
                body.member,
                if body.served_by.is_empty() {
                    "-".to_string()
                } else {
                    body.served_by.join(",")
                },
                v.tree_size,
                v.cosigners.join(", "),
                genesis.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Log { config, summary } => {
            let cfg = PartyConfig::load(&config.config)?;
            let mut a = client::audit(&cfg).await?;
            let r = a
                .log(LogRequest { summary })
                .await
                .map_err(|s| client::daemon_error(&cfg, &s))?
                .into_inner();
            let v: serde_json::Value = serde_json::from_str(&r.json)?;
            if summary {
                println!("{:<12} {:>8} {:>8}", "member", "started", "served");
                if let Some(m) = v.as_object() {
                    for (name, x) in m {
                        println!("{:<12} {:>8} {:>8}", name, x["started"], x["served"]);
                    }
                }
            } else {
                println!(
                    "{} entries; final checkpoint at size {}",
                    v["size"],
                    v["final_size"]
                        .as_u64()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none yet".into())
                );
                println!(
                    "{:>6} {:<24} {:<8} {:<11} {:<26} {:<16} fingerprint",
                    "index", "time (UTC ms)", "member", "kind", "job", "served by"
                );
                for e in v["entries"].as_array().into_iter().flatten() {
                    let served: Vec<&str> = e["served_by"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect();
                    println!(
                        "{:>6} {:<24} {:<8} {:<11} {:<26} {:<16} {}",
                        e["index"],
                        e["timestamp_ms"],
                        e["member"].as_str().unwrap_or(""),
                        e["kind"].as_str().unwrap_or(""),
                        e["job_id"].as_str().unwrap_or(""),
                        served.join(","),
                        e["fingerprint"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify(config) => {
            let cfg = PartyConfig::load(&config.config)?;
            let mut a = client::audit(&cfg).await?;
            let r = a
                .verify(VerifyRequest {})
                .await
                .map_err(|s| client::daemon_error(&cfg, &s))?
                .into_inner();
            if r.ok {
                println!("{}: audit log intact: {}", cfg.party.name, r.report);
                Ok(ExitCode::SUCCESS)
            } else {
                bail!(
                    "{}: audit log verification FAILED: {}",
                    cfg.party.name,
                    r.report
                )
            }
        }
        AuditCommand::Prove {
            config,
            job,
            output,
        } => {
            let cfg = PartyConfig::load(&config.config)?;
            let bundle = prove(&cfg, &job, Duration::from_secs(15)).await?;
            std::fs::write(&output, &bundle)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "wrote the proof of job {job} to {} (check it offline: confide audit check {} --genesis genesis.json)",
                output.display(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Asks the daemon for a job's proof bundle, waiting up to `within` for its checkpoint
/// to become final.
pub async fn prove(cfg: &PartyConfig, job: &str, within: Duration) -> Result<String> {
    let mut a = client::audit(cfg).await?;
    let started = Instant::now();
    loop {
        match a
            .prove(confide_proto::ProveRequest {
                job_id: job.to_string(),
            })
            .await
        {
            Ok(r) => return Ok(r.into_inner().bundle_json),
            Err(s)
                if started.elapsed() < within
                    && (s.message().contains("final")
                        || s.message().contains("not found")
                        || s.message().contains("no ")) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(s) => return Err(client::daemon_error(cfg, &s).into()),
        }
    }
}
