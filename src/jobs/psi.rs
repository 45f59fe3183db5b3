//! The `psi` job kind: ECDH-PSI (confide-psi) between the daemons of the job.
//!
//! Options: `mode` = `initiator` (default: the initiator learns the intersection),
//! `all` (both parties of a two-party job learn it) or `size-only`.

use std::collections::HashMap;

use confide_mpc::ChannelTransport;
use confide_psi::{OutputMode, PsiJob};

use crate::daemon::Daemon;
use crate::daemon::jobs::JobCtx;
use crate::error::DaemonError;

fn mode(options: &HashMap<String, String>) -> Result<OutputMode, DaemonError> {
    match options
        .get("mode")
        .map(String::as_str)
        .unwrap_or("initiator")
    {
        "initiator" => Ok(OutputMode::Initiator),
        "all" => Ok(OutputMode::All),
        "size-only" => Ok(OutputMode::SizeOnly),
        other => Err(DaemonError::InvalidRequest(format!(
            "psi: option mode = `{other}` (expected initiator, all or size-only)"
        ))),
    }
}

/// Checks the options and this party's input before anything is sent.
pub fn check(
    d: &Daemon,
    dataset: &str,
    parties: usize,
    options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    for key in options.keys() {
        if key != "mode" {
            return Err(DaemonError::InvalidRequest(format!(
                "psi: unknown option `{key}`"
            )));
        }
    }
    if mode(options)? == OutputMode::All && parties != 2 {
        return Err(DaemonError::InvalidRequest(
            "psi: delivering the intersection to every party needs exactly two parties".into(),
        ));
    }
    let ds = d.cfg.datasets.get(dataset).ok_or_else(|| {
        DaemonError::InvalidRequest(format!("party `{}` has no dataset `{dataset}`", d.me))
    })?;
    confide_psi::check_input(&ds.path, &ds.id_column)
        .map_err(|e| DaemonError::InvalidRequest(format!("dataset `{dataset}` of `{}`: {e}", d.me)))
}

/// Runs this party's side.
pub async fn run(ctx: &JobCtx, t: &ChannelTransport) -> Result<serde_json::Value, DaemonError> {
    let d = &ctx.daemon;
    let options: HashMap<String, String> = ctx.spec.options.clone().into_iter().collect();
    let mode = mode(&options)?;
    let dataset = ctx.spec.dataset_of(&d.me).ok_or_else(|| {
        DaemonError::InvalidRequest(format!("no dataset of `{}` in the job", d.me))
    })?;
    let ds = d.cfg.datasets.get(dataset).ok_or_else(|| {
        DaemonError::InvalidRequest(format!("party `{}` has no dataset `{dataset}`", d.me))
    })?;
    let output = if ctx.is_initiator() {
        match mode {
            OutputMode::SizeOnly => None,
            _ => Some(ctx.spec.output.clone().ok_or_else(|| {
                DaemonError::InvalidRequest(
                    "psi: an output file is needed unless the job is size-only".into(),
                )
            })?),
        }
    } else if mode == OutputMode::All {
        let dir = d.cfg.party.data_dir.join("results");
        std::fs::create_dir_all(&dir)
            .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
        Some(dir.join(format!("psi-{}.csv", ctx.spec.job_id)))
    } else {
        None
    };
    let job = PsiJob {
        initiator: ctx.spec.initiator().to_string(),
        parties: ctx.spec.party_names(),
        mode,
        input: ds.path.clone(),
        id_column: ds.id_column.clone(),
        output,
        work_dir: ctx.work_dir.clone(),
    };
    let progress = |p: confide_psi::Progress| ctx.progress(p.stage, p.done, p.total, "");
    let report = confide_psi::run(t, &job, &progress)
        .await
        .map_err(|e| match e {
            confide_psi::PsiError::Transport(t) => DaemonError::Transport(t),
            other => DaemonError::Protocol(format!("psi: {other}")),
        })?;
    Ok(serde_json::json!({
        "kind": "psi",
        "job_id": ctx.spec.job_id,
        "mode": options.get("mode").map(String::as_str).unwrap_or("initiator"),
        "party": d.me,
        "dataset": dataset,
        "rows": report.input.rows,
        "distinct": report.input.distinct,
        "duplicates": report.input.duplicates,
        "blank": report.input.blank,
        "malformed": report.input.malformed,
        "malformed_lines": report.input.malformed_lines,
        "peer_set_sizes": report.peer_set_sizes,
        "intersection_size": report.intersection_size,
        "output": report.output,
        "elapsed_ms": report.elapsed.as_millis() as u64,
        "bytes_sent": report.bytes_sent,
        "bytes_received": report.bytes_received,
    }))
}
