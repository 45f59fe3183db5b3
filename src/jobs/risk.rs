//! Joint risk queries (confide-risk): holders ingest secret-shared per-customer figures
//! into the two compute nodes; lenders query by OPRF tag and add the two shares.
//!
//! Not wired yet: every entry point refuses with a clear message.

use std::path::Path;
use std::process::ExitCode;

use crate::daemon::Daemon;
use crate::error::DaemonError;

const NOT_YET: &str = "risk queries are not available in this build yet";

/// Per-daemon risk state (the compute node's index and key share), opened on first use.
#[derive(Debug)]
pub struct RiskState {}

/// `Peer.Call` methods `risk.*` (the prefix is stripped).
pub async fn handle_call(
    _d: &Daemon,
    _caller: &str,
    _method: &str,
    _job_id: &str,
    _payload: Vec<u8>,
) -> Result<Vec<u8>, DaemonError> {
    Err(DaemonError::InvalidRequest(NOT_YET.into()))
}

/// `confide risk ingest|query`.
pub async fn command(_c: crate::cli::RiskCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`confide risk`: {NOT_YET}")
}

/// Writes the demo's risk data and declares it (before the daemons start).
pub fn demo_data(_dir: &Path, _rows: usize) -> anyhow::Result<()> {
    Ok(())
}

/// The demo's risk step.
pub async fn demo_step(_alliance: &crate::demo::LocalAlliance) -> anyhow::Result<()> {
    Ok(())
}
