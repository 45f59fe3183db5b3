//! The `train` job kind: rows aligned by ECDH-PSI on the ID columns, then vertical logistic
//! regression on secret shares (confide-training), with the alliance's dealer.
//!
//! Not wired yet: every entry point refuses with a clear message.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use confide_mpc::ChannelTransport;
use confide_proto::DatasetRef;

use crate::daemon::Daemon;
use crate::daemon::jobs::JobCtx;
use crate::error::DaemonError;

const NOT_YET: &str = "training jobs are not available in this build yet";

pub fn check_local(
    _d: &Daemon,
    _dataset: &str,
    _peers: &[DatasetRef],
    _options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    Err(DaemonError::InvalidRequest(NOT_YET.into()))
}

pub fn check_peer(
    _d: &Daemon,
    _dataset: &str,
    _caller: &str,
    _options: &HashMap<String, String>,
) -> Result<(), DaemonError> {
    Err(DaemonError::PermissionDenied(NOT_YET.into()))
}

pub async fn run(_ctx: &JobCtx, _t: &ChannelTransport) -> Result<serde_json::Value, DaemonError> {
    Err(DaemonError::InvalidRequest(NOT_YET.into()))
}

/// `confide train`.
pub async fn command(_a: crate::cli::TrainArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`confide train`: {NOT_YET}")
}

/// `confide predict`.
pub async fn predict_command(_a: crate::cli::PredictArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`confide predict`: {NOT_YET}")
}

/// Writes the demo's training data and declares it (before the daemons start).
pub fn demo_data(_dir: &Path, _rows: usize) -> anyhow::Result<()> {
    Ok(())
}

/// The demo's training step.
pub async fn demo_step(_alliance: &crate::demo::LocalAlliance) -> anyhow::Result<()> {
    Ok(())
}
