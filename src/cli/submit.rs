//! One submit-and-progress path for every job kind: build the request from typed options,
//! submit it to the party's own daemon, follow its progress (a bar on a terminal, plain
//! lines otherwise), return the job id and its JSON summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use confide_proto::{DatasetRef, JobEvent, JobState, SubmitRequest};

use super::CliError;
use crate::base::config::PartyConfig;
use crate::base::error::status_line;
use crate::kinds::JobOptions;
use crate::net::client;

/// A job request: this party's dataset ("" for none), the other parties, the typed
/// options, and where this party's output goes.
pub fn request(
    options: &JobOptions,
    dataset: &str,
    peers: Vec<DatasetRef>,
    output: Option<&Path>,
) -> SubmitRequest {
    SubmitRequest {
        kind: options.kind().as_str().to_string(),
        dataset: dataset.to_string(),
        peers,
        options_json: options.to_json(),
        output: output
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        timeout_secs: 0,
    }
}

pub fn state_name(s: JobState) -> &'static str {
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
pub fn parse_peer(s: &str) -> Result<DatasetRef, CliError> {
    let (party, dataset) = s
        .split_once(':')
        .filter(|(p, d)| !p.is_empty() && !d.is_empty())
        .ok_or_else(|| CliError::Usage(format!("--peer `{s}`: expected PARTY:DATASET")))?;
    Ok(DatasetRef {
        party: party.to_string(),
        dataset: dataset.to_string(),
    })
}

/// An absolute form of a path given on the command line (the daemon resolves nothing).
/// A path that is not UTF-8 is refused: the daemon gets it as text, and rewriting it (with
/// U+FFFD) would write somewhere else.
pub fn absolute(p: &Path) -> Result<PathBuf, CliError> {
    if p.to_str().is_none() {
        return Err(CliError::Usage(format!(
            "the path {} is not valid UTF-8; use a UTF-8 name",
            p.display()
        )));
    }
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .map_err(|e| CliError::io("current directory", e))?
            .join(p))
    }
}

/// Reads a whole text file, naming it on failure.
pub fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::io(format!("reading {}", path.display()), e))
}

/// How a submitted job's progress is shown on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// A progress bar (a terminal).
    Bar,
    /// A plain line per stage, at most one every 2 s (logs, pipes).
    Lines,
    /// Nothing (commands whose stdout/stderr is parsed, like `risk query`).
    Quiet,
}

impl Show {
    /// A bar on a terminal, else `otherwise`.
    pub fn bar_or(otherwise: Show) -> Show {
        if std::io::stderr().is_terminal() {
            Show::Bar
        } else {
            otherwise
        }
    }
}

/// Submits a job to this party's daemon and follows its progress (a bar on a terminal,
/// plain lines otherwise). Returns the job id and its JSON result.
pub async fn submit(
    cfg: &PartyConfig,
    req: SubmitRequest,
) -> Result<(String, serde_json::Value), CliError> {
    submit_with(cfg, req, Show::bar_or(Show::Lines)).await
}

/// As [`submit`], choosing the progress display.
pub async fn submit_with(
    cfg: &PartyConfig,
    req: SubmitRequest,
    show: Show,
) -> Result<(String, serde_json::Value), CliError> {
    let pb = (show == Show::Bar).then(|| {
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
    let mut last_plain = Instant::now() - Duration::from_secs(10);
    let mut last_stage = String::new();
    let res = submit_events(cfg, req, |ev| {
        let state = JobState::try_from(ev.state).unwrap_or(JobState::Unspecified);
        if matches!(
            state,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        ) {
            return;
        }
        if let Some(pb) = &pb {
            pb.set_prefix(ev.stage.clone());
            pb.set_length(ev.total);
            pb.set_position(ev.done);
            pb.set_message(ev.message.clone());
        } else if show == Show::Lines
            && (ev.stage != last_stage || last_plain.elapsed() > Duration::from_secs(2))
        {
            last_plain = Instant::now();
            last_stage = ev.stage.clone();
            let job_id = &ev.job_id;
            if ev.total > 0 {
                eprintln!(
                    "[{job_id}] {}: {}/{} {}",
                    ev.stage, ev.done, ev.total, ev.message
                );
            } else {
                eprintln!("[{job_id}] {}: {}", ev.stage, ev.message);
            }
        }
    })
    .await;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    res
}

/// Submits a job to this party's daemon and hands every event of its progress stream to
/// `on_event` (the final one included); returns the job id and its JSON result, or the
/// job's failure. The one submit path of the CLI and of the Python package.
pub async fn submit_events(
    cfg: &PartyConfig,
    req: SubmitRequest,
    mut on_event: impl FnMut(&JobEvent),
) -> Result<(String, serde_json::Value), CliError> {
    let mut ctl = client::control(cfg).await?;
    let kind = req.kind.clone();
    let mut stream = ctl
        .submit(req)
        .await
        .map_err(|s| CliError::Submit {
            kind: kind.clone(),
            code: s.code(),
            message: status_line(&s),
        })?
        .into_inner();
    let mut job_id = String::new();
    loop {
        let ev = match stream.message().await {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                return Err(CliError::Stream {
                    kind,
                    job: job_id,
                    message: "the daemon closed the stream before the job ended".into(),
                });
            }
            Err(s) => {
                return Err(CliError::Stream {
                    kind,
                    job: job_id,
                    message: status_line(&s),
                });
            }
        };
        job_id = ev.job_id.clone();
        on_event(&ev);
        let state = JobState::try_from(ev.state).unwrap_or(JobState::Unspecified);
        match state {
            JobState::Succeeded => {
                let v = serde_json::from_str(&ev.result_json).unwrap_or(serde_json::Value::Null);
                return Ok((job_id, v));
            }
            JobState::Failed | JobState::Cancelled => {
                return Err(CliError::Job {
                    kind,
                    job: job_id,
                    state: state_name(state),
                    message: ev.error,
                });
            }
            _ => {}
        }
    }
}
