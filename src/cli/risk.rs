//! `confide risk ingest|query`: both are ordinary jobs submitted to the party's own daemon.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use confide_proto::SubmitRequest;
use confide_risk::Answer;

use super::CliError;
use super::args::RiskCommand;
use super::submit::{Show, request, submit_with};
use crate::base::config::PartyConfig;
use crate::kinds::{self, JobOptions};

/// Asks this party's daemon to ingest `dataset` (a `risk-ingest` job); returns its JSON
/// summary. With `bar`, shows progress on the terminal.
pub async fn ingest_dataset(
    cfg: &PartyConfig,
    dataset: &str,
    bar: bool,
) -> Result<serde_json::Value, CliError> {
    let req = ingest_request(dataset);
    let show = if bar { Show::Bar } else { Show::Quiet };
    let (_, r) = submit_with(cfg, req, show).await?;
    Ok(r)
}

/// The request of a `risk-ingest` job of `dataset` (also what the Python package submits).
pub fn ingest_request(dataset: &str) -> SubmitRequest {
    request(
        &JobOptions::RiskIngest(kinds::risk_ingest::Opts {}),
        dataset,
        vec![],
        None,
    )
}

/// Asks the alliance about `ids` through this party's daemon (a `risk-query` job).
pub async fn query_ids(cfg: &PartyConfig, ids: &[String]) -> Result<Vec<Answer>, CliError> {
    let opts = kinds::risk_query::Opts { ids: ids.to_vec() };
    let req = request(&JobOptions::RiskQuery(opts), "", vec![], None);
    let (_, r) = submit_with(cfg, req, Show::Quiet).await?;
    let rows: Vec<[u64; 5]> = r
        .get("answers")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| CliError::json("risk query: malformed answer from the daemon", e))?
        .unwrap_or_default();
    if rows.len() != ids.len() {
        return Err(CliError::Failed(format!(
            "risk query: {} answers for {} IDs from the daemon",
            rows.len(),
            ids.len()
        )));
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
pub fn read_ids(path: &Path) -> Result<Vec<String>, CliError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .map_err(|e| CliError::csv(format!("cannot read {}", path.display()), e))?;
    let header = rdr
        .headers()
        .map_err(|e| CliError::csv(format!("{}: unreadable header", path.display()), e))?;
    let col = header.iter().position(|h| h.trim() == "id").unwrap_or(0);
    let mut ids = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| CliError::csv(path.display().to_string(), e))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec.get(col).unwrap_or("").trim();
        if id.is_empty() {
            return Err(CliError::Input(format!(
                "{} line {line}: empty ID",
                path.display()
            )));
        }
        ids.push(id.to_string());
    }
    if ids.is_empty() {
        return Err(CliError::Input(format!(
            "{}: no IDs (a header line, then one ID per line)",
            path.display()
        )));
    }
    Ok(ids)
}

/// Writes answers as CSV `id,blacklisted,loans,amount,overdue,queried_by`.
pub fn write_answers(
    out: impl std::io::Write,
    ids: &[String],
    answers: &[Answer],
    to: &str,
) -> Result<(), CliError> {
    let err = |e: csv::Error| CliError::csv(format!("writing answers to {to}"), e);
    let mut w = csv::Writer::from_writer(out);
    w.write_record([
        "id",
        "blacklisted",
        "loans",
        "amount",
        "overdue",
        "queried_by",
    ])
    .map_err(err)?;
    for (id, a) in ids.iter().zip(answers) {
        w.write_record([
            id.clone(),
            a.blacklisted.to_string(),
            a.loans.to_string(),
            a.amount.to_string(),
            a.overdue.to_string(),
            a.queried_by.to_string(),
        ])
        .map_err(err)?;
    }
    w.flush()
        .map_err(|e| CliError::io(format!("writing answers to {to}"), e))?;
    Ok(())
}

/// `confide risk ingest|query`.
pub async fn risk(c: RiskCommand) -> Result<ExitCode, CliError> {
    match c {
        RiskCommand::Ingest { config, dataset } => {
            let cfg = PartyConfig::load(&config.config)?;
            let r = ingest_dataset(&cfg, &dataset, std::io::stderr().is_terminal()).await?;
            outln!("{}", ingest_summary(&r));
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
                        return Err(CliError::Usage("--id is empty".into()));
                    }
                    let a = query_ids(&cfg, std::slice::from_ref(&id)).await?;
                    outln!("{}", answer_json(&id, &a[0]));
                }
                (None, Some(file)) => {
                    let ids = read_ids(&file)?;
                    let answers = query_ids(&cfg, &ids).await?;
                    match output {
                        Some(out) => {
                            let f = std::fs::File::create(&out).map_err(|e| {
                                CliError::io(format!("cannot create {}", out.display()), e)
                            })?;
                            write_answers(
                                std::io::BufWriter::new(f),
                                &ids,
                                &answers,
                                &out.display().to_string(),
                            )?;
                            eprintln!("{} answers written to {}", ids.len(), out.display());
                        }
                        None => write_answers(std::io::stdout().lock(), &ids, &answers, "stdout")?,
                    }
                }
                (None, None) => {
                    return Err(CliError::Usage("give --id ID or --ids-file FILE".into()));
                }
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
