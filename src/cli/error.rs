//! The error of the command layer (`cli`, `kit`, `demo`): every failure a command reports.
//!
//! Each message is one line naming the file, field, peer, job or address at fault; `main`
//! prints it (with its sources, see [`crate::base::error::error_chain`]) after `error: `.

use crate::base::config::ConfigError;
use crate::base::error::DaemonError;

/// Everything a CLI command, the in-process kit or the demo can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon, or the client's talk with it, failed (unreachable, refused, bad TLS
    /// material, a protocol crate's error); the message names the party or the address.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// `party.toml` could not be read or parsed, or a field is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or directory could not be read or written (the context names it).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A CSV file could not be read or written (the context names it).
    #[error("{context}: {source}")]
    Csv { context: String, source: csv::Error },
    /// JSON from the daemon or from a file could not be parsed (the context names which).
    #[error("{context}: {source}")]
    Json {
        context: String,
        source: serde_json::Error,
    },
    /// A command-line value that cannot work (a malformed `--peer`, an empty `--id`, a
    /// dealer or model that does not fit the job); the message names the flag.
    #[error("{0}")]
    Usage(String),
    /// An input file's content is invalid; the message names the file and line.
    #[error("{0}")]
    Input(String),
    /// The daemon refused a job at submission (bad options, policy, inputs), before it ran;
    /// `code` tells which (`PermissionDenied` for a policy refusal, `InvalidArgument` for
    /// a request that cannot work, `Unavailable` for an unreachable peer).
    #[error("{kind}: {}", unprefixed(.kind, .message))]
    Submit {
        kind: String,
        code: tonic::Code,
        message: String,
    },
    /// A submitted job's progress stream broke or ended early.
    #[error("{kind} job {job}: {}", unprefixed(.kind, .message))]
    Stream {
        kind: String,
        job: String,
        message: String,
    },
    /// A submitted job failed or was cancelled (`state`), with the daemon's reason.
    #[error("{kind} job {job} {state}: {}", unprefixed(.kind, .message))]
    Job {
        kind: String,
        job: String,
        state: &'static str,
        message: String,
    },
    /// An audit proof bundle was rejected by the offline check.
    #[error("{bundle}: proof rejected: {source}")]
    Proof {
        bundle: String,
        source: confide_audit::AuditError,
    },
    /// A check that failed, or a wait that ran out, with its one-line reason (audit
    /// verification, no free ports, daemons not healthy in time, a demo result that
    /// differs from the plaintext one).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// An I/O error with what was being done to which file.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A CSV error with the file it concerns.
    pub fn csv(context: impl Into<String>, source: csv::Error) -> Self {
        Self::Csv {
            context: context.into(),
            source,
        }
    }

    /// A JSON error with what was being parsed.
    pub fn json(context: impl Into<String>, source: serde_json::Error) -> Self {
        Self::Json {
            context: context.into(),
            source,
        }
    }
}

/// The protocol crates' errors reach the command layer as the daemon wraps them.
impl From<confide_training::TrainError> for CliError {
    fn from(e: confide_training::TrainError) -> Self {
        Self::Daemon(e.into())
    }
}

impl From<confide_risk::RiskError> for CliError {
    fn from(e: confide_risk::RiskError) -> Self {
        Self::Daemon(e.into())
    }
}

/// `message` without a leading "KIND: " (or "KIND WITH SPACES: ") that would repeat the
/// job kind the CLI already puts in front ("risk-query: risk query: no IDs").
fn unprefixed<'a>(kind: &str, message: &'a str) -> &'a str {
    let spaced = kind.replace('-', " ");
    for k in [kind, spaced.as_str()] {
        if let Some(rest) = message.strip_prefix(k).and_then(|r| r.strip_prefix(": ")) {
            return rest;
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_does_not_repeat_the_kind() {
        let e = CliError::Submit {
            kind: "risk-query".into(),
            code: tonic::Code::InvalidArgument,
            message: "risk query: no IDs".into(),
        };
        assert_eq!(e.to_string(), "risk-query: no IDs");
        let e = CliError::Job {
            kind: "psi".into(),
            job: "j1".into(),
            state: "failed",
            message: "psi: an output file is needed".into(),
        };
        assert_eq!(e.to_string(), "psi job j1 failed: an output file is needed");
        assert_eq!(unprefixed("psi", "psim: x"), "psim: x");
    }
}
