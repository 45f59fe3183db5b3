//! The CLI's errors as Python exceptions: each [`CliError`] becomes the subclass of
//! `confide.ConfideError` (defined in `confide/errors.py`) that names its cause, carrying
//! the one-line message the CLI prints after `error: `.

use confide::base::error::{DaemonError, error_chain};
use confide::cli::CliError;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The exception class (in `confide.errors`) for an error of the party `me`.
pub fn class_of(e: &CliError, me: &str) -> &'static str {
    match e {
        CliError::Daemon(DaemonError::Peer { peer, message, .. })
            if peer == me
                && (message.starts_with("cannot reach the daemon")
                    || message.starts_with("no answer within")) =>
        {
            "DaemonNotRunningError"
        }
        CliError::Daemon(DaemonError::Peer { peer, message, .. })
            if peer == me && message.starts_with("job ") && message.ends_with(" not found") =>
        {
            "JobNotFoundError"
        }
        CliError::Daemon(DaemonError::Peer { peer, message, .. })
            if peer == me && message.starts_with("job ") && message.ends_with(" not found") =>
        {
            "JobNotFoundError"
        }
        CliError::Daemon(DaemonError::Peer { .. }) => "DaemonError",
        CliError::Daemon(DaemonError::ConfigFile(_) | DaemonError::Config(_))
        | CliError::Config(_) => "ConfigError",
        CliError::Daemon(DaemonError::JobNotFound(_)) => "JobNotFoundError",
        CliError::Daemon(_) => "DaemonError",
        CliError::Submit { code, message, .. } => match code {
            tonic::Code::PermissionDenied => "PolicyError",
            // This party's own policy, checked before the job is proposed.
            tonic::Code::InvalidArgument if message.contains("does not allow") => "PolicyError",
            tonic::Code::InvalidArgument if message.contains("unknown peer") => "UnknownPeerError",
            tonic::Code::InvalidArgument => "InvalidRequestError",
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => "PeerUnreachableError",
            _ => "ConfideError",
        },
        CliError::Job { state, .. } if *state == "cancelled" => "JobCancelledError",
        CliError::Job { .. } | CliError::Stream { .. } => "JobFailedError",
        CliError::Usage(_) => "UsageError",
        CliError::Io { .. } | CliError::Csv { .. } | CliError::Input(_) | CliError::Json { .. } => {
            "InputError"
        }
        CliError::Proof { .. } => "ProofError",
        CliError::Failed(_) => "ConfideError",
    }
}

/// The job an error concerns, if any.
fn job_of(e: &CliError) -> Option<&str> {
    match e {
        CliError::Job { job, .. } | CliError::Stream { job, .. } if !job.is_empty() => {
            Some(job.as_str())
        }
        _ => None,
    }
}

/// A Python exception for `e`: the class from [`class_of`], the CLI's message, and
/// `job_id` set where the error concerns a job.
pub fn to_py(e: CliError, me: &str) -> PyErr {
    let message = error_chain(&e);
    let class = class_of(&e, me);
    let job = job_of(&e).map(str::to_string);
    Python::attach(|py| {
        raise(py, class, &message, job.as_deref())
            .unwrap_or_else(|err| PyRuntimeError::new_err(format!("{message} ({err})")))
    })
}

/// An instance of `confide.errors.<class>` as a PyErr.
pub fn raise(py: Python<'_>, class: &str, message: &str, job: Option<&str>) -> PyResult<PyErr> {
    let cls = py.import("confide.errors")?.getattr(class)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("job_id", job)?;
    let exc = cls.call((message,), Some(&kwargs))?;
    Ok(PyErr::from_value(exc))
}
