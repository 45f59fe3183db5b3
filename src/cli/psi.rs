//! `confide psi`.

use std::process::ExitCode;

use confide_proto::SubmitRequest;

use super::CliError;
use super::args::{PsiArgs, PsiProtocolArg};
use super::submit::{absolute, parse_peer, request, submit};
use crate::base::config::PartyConfig;
use crate::kinds::JobOptions;
use crate::kinds::psi::{self, Mode};

/// `confide psi`.
pub async fn psi(a: PsiArgs) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(&a.config.config)?;
    let req = psi_request(&a)?;
    let (job, r) = submit(&cfg, req).await?;
    outln!("{}", psi_summary(&job, &cfg.party.name, &r));
    Ok(ExitCode::SUCCESS)
}

/// The job request of `confide psi` (also what the Python package submits).
pub fn psi_request(a: &PsiArgs) -> Result<SubmitRequest, CliError> {
    let peers = a
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mode = if a.size_only {
        Mode::SizeOnly
    } else if a.to_all {
        Mode::All
    } else {
        Mode::Initiator
    };
    let output = match (&a.output, a.size_only) {
        (Some(o), false) => Some(absolute(o)?),
        _ => None,
    };
    let protocol = a.protocol.map(|p| match p {
        PsiProtocolArg::Ecdh => psi::Protocol::Ecdh,
        PsiProtocolArg::Kkrt => psi::Protocol::Kkrt,
    });
    let options = JobOptions::Psi(psi::Opts {
        mode,
        protocol,
        resume: a.resume.clone(),
    });
    Ok(request(&options, &a.dataset, peers, output.as_deref()))
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
    if let Some(p) = r.get("protocol").and_then(|v| v.as_str()) {
        s.push_str(&format!(" ({p} PSI)"));
    }
    if let Some(orig) = r.get("resumed_from").and_then(|v| v.as_str()) {
        s.push_str(&format!(
            "; resumed job {orig} ({} items not computed again)",
            n("resumed_items")
        ));
    }
    s
}
