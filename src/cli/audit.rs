//! `confide audit log|verify|prove|check`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::CliError;
use super::args::AuditCommand;
use super::submit::read_file;
use crate::base::config::PartyConfig;
use crate::net::client;
use confide_proto::audit_client::AuditClient;
use tonic::transport::Channel;

/// `confide audit ...`.
pub async fn audit(c: AuditCommand) -> Result<ExitCode, CliError> {
    match c {
        AuditCommand::Check { proof, genesis } => {
            let (_, line) = check(&proof, &genesis)?;
            outln!("{line}");
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Log { config, summary } => {
            let cfg = PartyConfig::load(&config.config)?;
            if summary {
                let v = log(&cfg, true).await?;
                outln!("{:<12} {:>8} {:>8}", "member", "started", "served");
                if let Some(m) = v.as_object() {
                    for (name, x) in m {
                        outln!("{:<12} {:>8} {:>8}", name, x["started"], x["served"]);
                    }
                }
            } else {
                // Page by page: the log is never held whole, here or at the daemon.
                let mut pages = LogPages::open(&cfg).await?;
                outln!(
                    "{} entries; final checkpoint at size {}",
                    pages.size,
                    pages.head["final_size"]
                        .as_u64()
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none yet".into())
                );
                outln!(
                    "{:>6} {:<24} {:<8} {:<11} {:<26} {:<16} fingerprint",
                    "index",
                    "time (UTC ms)",
                    "member",
                    "kind",
                    "job",
                    "served by"
                );
                loop {
                    let entries = pages.next_page().await?;
                    if entries.is_empty() {
                        break;
                    }
                    print_entries(&entries);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify(config) => {
            let cfg = PartyConfig::load(&config.config)?;
            let r = verify(&cfg).await?;
            if r.ok {
                outln!("{}: audit log intact: {}", cfg.party.name, r.report);
                Ok(ExitCode::SUCCESS)
            } else {
                Err(CliError::Failed(format!(
                    "{}: audit log verification FAILED: {}",
                    cfg.party.name, r.report
                )))
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
                .map_err(|e| CliError::io(format!("writing {}", output.display()), e))?;
            outln!(
                "wrote the proof of job {job} to {} (check it offline: confide audit check {} --genesis genesis.json)",
                output.display(),
                output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The offline check of a proof bundle file against a genesis file: the verified entry
/// and the one line `confide audit check` prints.
pub fn check(
    proof: &Path,
    genesis: &Path,
) -> Result<(confide_audit::VerifiedBundle, String), CliError> {
    let b = read_file(proof)?;
    let g = read_file(genesis)?;
    let v = confide_audit::verify_bundle(&b, &g).map_err(|source| CliError::Proof {
        bundle: proof.display().to_string(),
        source,
    })?;
    let body = v.entry.body();
    let line = format!(
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
    Ok((v, line))
}

fn print_entries(entries: &[serde_json::Value]) {
    for e in entries {
        let served: Vec<&str> = e["served_by"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .collect();
        outln!(
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

/// Entries per `Audit.Log` call: the daemon's page, or `CONFIDE_AUDIT_LOG_PAGE` (tests use
/// a small page to cross page boundaries).
fn page_limit() -> u64 {
    std::env::var("CONFIDE_AUDIT_LOG_PAGE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `Audit.Log` on the client `a`: with `summary`, per member the jobs started and served;
/// otherwise one page of the log from entry `from` (JSON: `size`, `final_size`, `entries`).
async fn log_call(
    cfg: &PartyConfig,
    a: &mut AuditClient<Channel>,
    summary: bool,
    from: u64,
) -> Result<serde_json::Value, CliError> {
    let r = a
        .log(confide_proto::LogRequest {
            summary,
            from_index: from,
            limit: page_limit(),
        })
        .await
        .map_err(|s| client::daemon_error(cfg, &s))?
        .into_inner();
    serde_json::from_str(&r.json).map_err(|e| {
        CliError::json(
            format!("audit log from the daemon of `{}`", cfg.party.name),
            e,
        )
    })
}

/// This party's audit log read page by page over one connection, up to the size it had
/// when the first page was read (the log may grow meanwhile).
struct LogPages<'a> {
    cfg: &'a PartyConfig,
    client: AuditClient<Channel>,
    /// The first page's answer (its `size` and `final_size`; its entries go first).
    head: serde_json::Value,
    size: u64,
    /// Entries handed out so far.
    next: u64,
}

impl<'a> LogPages<'a> {
    async fn open(cfg: &'a PartyConfig) -> Result<Self, CliError> {
        let mut client = client::audit(cfg).await?;
        let head = log_call(cfg, &mut client, false, 0).await?;
        let size = head["size"].as_u64().unwrap_or(0);
        Ok(LogPages {
            cfg,
            client,
            head,
            size,
            next: 0,
        })
    }

    /// The next page's entries; empty once `size` entries were handed out.
    async fn next_page(&mut self) -> Result<Vec<serde_json::Value>, CliError> {
        if self.next >= self.size {
            return Ok(Vec::new());
        }
        let page = if self.next == 0 {
            self.head["entries"].take()
        } else {
            log_call(self.cfg, &mut self.client, false, self.next).await?["entries"].take()
        };
        let mut entries = match page {
            serde_json::Value::Array(e) => e,
            _ => Vec::new(),
        };
        entries.truncate((self.size - self.next) as usize);
        if entries.is_empty() {
            // The daemon has fewer entries than it said: stop rather than ask again.
            self.next = self.size;
        }
        self.next += entries.len() as u64;
        Ok(entries)
    }
}

/// This party's audit log as its daemon reports it (JSON: `size`, `final_size`, `entries`,
/// read page by page up to the size when the first page was read; with `summary`, per member
/// the jobs started and served).
pub async fn log(cfg: &PartyConfig, summary: bool) -> Result<serde_json::Value, CliError> {
    if summary {
        let mut a = client::audit(cfg).await?;
        return log_call(cfg, &mut a, true, 0).await;
    }
    let mut pages = LogPages::open(cfg).await?;
    let mut all = Vec::new();
    loop {
        let page = pages.next_page().await?;
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    let mut v = pages.head;
    v["entries"] = serde_json::Value::Array(all);
    Ok(v)
}

/// The daemon's verification of this party's whole copy of the audit log.
pub async fn verify(cfg: &PartyConfig) -> Result<confide_proto::VerifyReply, CliError> {
    let mut a = client::audit(cfg).await?;
    Ok(a.verify(confide_proto::VerifyRequest {})
        .await
        .map_err(|s| client::daemon_error(cfg, &s))?
        .into_inner())
}

/// Asks the daemon for a job's proof bundle, waiting up to `within` for its checkpoint
/// to become final.
pub async fn prove(cfg: &PartyConfig, job: &str, within: Duration) -> Result<String, CliError> {
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
