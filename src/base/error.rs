//! The daemon's error type, and its one mapping to `tonic::Status`.
//!
//! Each protocol crate's error is wrapped as it is (typed, with its source); strings are
//! used only where no typed error exists. Every message is one line that names the file,
//! field, peer or address at fault — the CLI prints it as it is.
//!
//! An error has two renderings. `Display` is the full, local one (file paths, the
//! offending ID or cell): it goes to this party's log, its job table and its own CLI.
//! [`DaemonError::public`] is what may leave the party — in an abort sent to peers, a
//! refusal of a proposal, any `Status` of the Peer or Audit service (the `From` impl
//! below) and a compute node's answer: the category, a line number of the input and the
//! party at fault, never a value, an ID, a path or a column name of the input. Text that
//! came from elsewhere is echoed only through [`confide_mpc::clean`] (no control
//! characters, bounded length).

use confide_mpc::{TransportError, clean};

use crate::base::config::ConfigError;

/// Everything that can go wrong in the daemon and in the CLI's talk with it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A setting that cannot work (missing audit chain, bad TLS material, no compute nodes),
    /// with the file and field in the message.
    #[error("{0}")]
    Config(String),
    /// `party.toml` could not be read or parsed, or a field is invalid.
    #[error(transparent)]
    ConfigFile(#[from] ConfigError),
    /// The daemon's listen (or metrics) address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// A peer (or this party's own daemon, seen from the CLI) failed or is unreachable;
    /// `address` is empty when it is not known where the failure happened.
    #[error("peer `{peer}`{}: {message}", at_address(.address))]
    Peer {
        peer: String,
        address: String,
        message: String,
    },
    /// A policy refusal: who is not allowed what, on which dataset.
    #[error("refused: {0}")]
    PermissionDenied(String),
    /// A request that can never succeed as sent (unknown kind, bad option, missing dataset).
    #[error("{0}")]
    InvalidRequest(String),
    #[error("job {0} not found")]
    JobNotFound(String),
    /// A job's link to a peer broke or carried a malformed message.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Private set intersection failed (input, peer or transport).
    #[error("psi: {0}")]
    Psi(#[from] confide_psi::PsiError),
    /// Training or prediction failed.
    #[error(transparent)]
    Training(#[from] confide_training::TrainError),
    /// A risk ingest, query or compute-node request failed.
    #[error("risk: {0}")]
    Risk(#[from] confide_risk::RiskError),
    /// The audit chain refused or failed.
    #[error("audit: {0}")]
    Audit(#[from] confide_audit::AuditError),
    /// A protocol step failed where no typed error exists.
    #[error("{0}")]
    Protocol(String),
    #[error("job timed out after {0} s")]
    Deadline(u64),
    #[error("job cancelled: {0}")]
    Cancelled(String),
    /// The job was ended by a failure elsewhere (a peer's abort, a broken link).
    #[error("{0}")]
    Aborted(String),
    /// A file could not be read or written (the context names it).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// A bug or a broken invariant of this daemon (poisoned lock, task panic).
    #[error("{0}")]
    Internal(String),
    /// A problem with this party's own input, as text: `message` (file, line, value) stays
    /// here, `public` (category and line) is what peers see.
    #[error("{message}")]
    Local { message: String, public: String },
}

impl DaemonError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// A problem with this party's input: `message` stays local, `public` may leave.
    pub fn local(message: impl Into<String>, public: impl Into<String>) -> Self {
        Self::Local {
            message: message.into(),
            public: public.into(),
        }
    }

    /// The rendering that may leave this party (see the module documentation): category,
    /// line and party at fault, no data, no path, no control characters.
    pub fn public(&self) -> String {
        match self {
            DaemonError::Config(_) | DaemonError::ConfigFile(_) => {
                "configuration error at this party".into()
            }
            DaemonError::Bind { .. } => "cannot listen".into(),
            DaemonError::Peer { peer, message, .. } => {
                format!("peer `{}`: {}", clean(peer), clean(message))
            }
            DaemonError::PermissionDenied(m) => format!("refused: {}", clean(m)),
            DaemonError::InvalidRequest(m) | DaemonError::Protocol(m) => clean(m),
            DaemonError::JobNotFound(_) | DaemonError::Deadline(_) => clean(&self.to_string()),
            DaemonError::Transport(e) => e.public(),
            DaemonError::Psi(e) => format!("psi: {}", e.public()),
            DaemonError::Training(e) => e.public(),
            DaemonError::Risk(e) => format!("risk: {}", e.public()),
            DaemonError::Audit(e) => format!("audit: {}", clean(&e.to_string())),
            DaemonError::Cancelled(m) => format!("job cancelled: {}", clean(m)),
            DaemonError::Aborted(m) => clean(m),
            DaemonError::Io { .. } => "input/output error on a file of this party".into(),
            DaemonError::Internal(_) => "internal error".into(),
            DaemonError::Local { public, .. } => public.clone(),
        }
    }

    /// The `Status` for this party's own CLI (the Control service): the full rendering.
    pub fn local_status(self) -> tonic::Status {
        let msg = printable(&self.to_string());
        self.status_with(msg)
    }

    fn status_with(self, msg: String) -> tonic::Status {
        use tonic::Status;
        if self.is_transport() {
            return Status::unavailable(msg);
        }
        match self {
            DaemonError::PermissionDenied(_) => Status::permission_denied(msg),
            DaemonError::InvalidRequest(_)
            | DaemonError::Local { .. }
            | DaemonError::Config(_)
            | DaemonError::ConfigFile(_) => Status::invalid_argument(msg),
            DaemonError::JobNotFound(_) => Status::not_found(msg),
            DaemonError::Deadline(_) => Status::deadline_exceeded(msg),
            DaemonError::Cancelled(_) => Status::cancelled(msg),
            DaemonError::Aborted(_) => Status::aborted(msg),
            _ => Status::internal(msg),
        }
    }

    /// Did a link to a peer break (rather than the protocol or input fail)?
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            DaemonError::Transport(_)
                | DaemonError::Peer { .. }
                | DaemonError::Psi(confide_psi::PsiError::Transport(_))
        )
    }
}

/// The one mapping to `Status` for everything that answers another party (Peer, Audit,
/// compute-node calls): the public rendering. This party's own CLI gets
/// [`DaemonError::local_status`].
impl From<DaemonError> for tonic::Status {
    fn from(e: DaemonError) -> Self {
        let msg = e.public();
        e.status_with(msg)
    }
}

/// `s` on one line with every control character (NUL, escapes, newlines) replaced by `?`:
/// for text that may have come from a file or a peer and is printed or logged.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// A one-line description of a tonic status, for the CLI and for job errors.
pub fn status_line(s: &tonic::Status) -> String {
    if let Some(cause) = transport_cause(s) {
        return cause;
    }
    let mut m = printable(s.message());
    if m.is_empty() {
        m = format!("{:?}", s.code());
    }
    m
}

/// " at ADDRESS" for an error message, or nothing when the address is not known.
fn at_address(address: &str) -> String {
    if address.is_empty() {
        String::new()
    } else {
        format!(" at {address}")
    }
}

/// How often an idle connection to a peer is pinged (HTTP/2 keepalive).
pub const KEEPALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A peer that answers no ping for this long (from the last traffic) is unresponsive.
pub const UNRESPONSIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(7);

/// What went wrong with the connection, in words an operator can act on, when `s` was
/// raised by the transport (it has a source error) rather than sent by the peer.
fn transport_cause(s: &tonic::Status) -> Option<String> {
    use std::error::Error;
    let mut chain = String::new();
    let mut io_kind = None;
    let mut cur = s.source();
    while let Some(e) = cur {
        chain.push_str(&e.to_string().to_lowercase());
        chain.push('|');
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        cur = e.source();
    }
    if chain.is_empty() {
        return None;
    }
    use std::io::ErrorKind as K;
    let after = UNRESPONSIVE_AFTER.as_secs();
    // hyper ends a connection whose keepalive ping goes unanswered; its streams then end
    // with h2's "broken pipe" (a peer that went away instead shows EOF or a reset).
    Some(
        if chain.contains("keep-alive timed out") || chain.contains("because of a broken pipe") {
            format!("unresponsive: no keepalive reply within {after} s")
        } else if io_kind == Some(K::ConnectionRefused) || chain.contains("connection refused") {
            "connection refused (is its daemon running?)".into()
        } else if io_kind == Some(K::TimedOut) || chain.contains("timed out") {
            "unresponsive: the connection timed out".into()
        } else if matches!(
            io_kind,
            Some(K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof | K::ConnectionAborted)
        ) || chain.contains("connection reset")
            || chain.contains("broken pipe")
            || chain.contains("connection closed")
            || chain.contains("error reading a body")
        {
            "the connection dropped (its daemon stopped or restarted)".into()
        } else {
            format!("connection failed: {}", printable(s.message()))
        },
    )
}

/// "a: b: c" from an error and its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    printable(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_for_other_parties_carry_only_the_public_rendering() {
        let e = || {
            DaemonError::local(
                "/srv/SECRET/x.csv: line 3: not a number: `SECRET`",
                "input: line 3: not a number",
            )
        };
        let s = tonic::Status::from(e());
        assert_eq!(s.message(), "input: line 3: not a number");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(e().local_status().message().contains("SECRET"));
        let io = DaemonError::io("reading /srv/SECRET", std::io::Error::other("x"));
        assert!(!io.public().contains("SECRET"));
        assert_eq!(printable("a\0b\nc\u{1b}"), "a?b c?");
    }
}
