//! `risk-ingest`: a holder contributes one of its datasets to the joint risk index. Its
//! daemon reads the CSV, has the IDs tagged by both compute nodes (OPRF, each evaluation
//! logged first as a `risk-ingest` entry), and uploads one additive share of each
//! customer's figures to each node, padded with dummy rows. Only the initiator runs it; the
//! nodes serve `Peer.Call` requests (see [`crate::risk_node`]).
//!
//! The dataset: CSV with a header, the dataset's `id_column` and the columns `blacklisted`
//! (0/1), `loans`, `amount` (minor units), `overdue`: non-negative integers, each `< 2^40`.
//! Its `allow.risk` must name both compute nodes (the holder's consent to send them shares).
//! Re-ingesting replaces the holder's earlier contribution.

use std::sync::Mutex;
use std::time::Instant;

use confide_mpc::ChannelTransport;
use confide_risk::RiskDataset;
use serde::{Deserialize, Serialize};

use super::risk_common::{EnvCaller, EnvEvidence};
use super::{Env, Kind, Plan, dataset};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::kind::{JobKind, PolicyKind};
use crate::risk_node::{compute_nodes, refuse_compute_node};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Opts {}

#[derive(Debug)]
pub struct RiskIngest;

impl Kind for RiskIngest {
    type Opts = Opts;
    const KIND: JobKind = JobKind::RiskIngest;
    const WITH_PEERS: bool = false;

    fn check_local(cfg: &PartyConfig, plan: &Plan<'_>, _: &Opts) -> Result<(), DaemonError> {
        let compute = compute_nodes(cfg)?;
        refuse_compute_node(cfg, &cfg.party.name, "ingest")?;
        let name = plan.my_dataset();
        dataset(cfg, name)?;
        for c in &compute {
            if let Err(reason) = cfg.check_policy(name, PolicyKind::Risk, c) {
                tracing::warn!(dataset = %name, node = %c, "risk: ingest refused by policy");
                return Err(DaemonError::PermissionDenied(format!(
                    "{reason}: a risk ingest sends shares to both compute nodes; add \
                     `risk = [\"{}\", \"{}\"]` to the dataset's `allow`",
                    compute[0], compute[1]
                )));
            }
        }
        Ok(())
    }

    fn check_peer(_: &PartyConfig, _: &Plan<'_>, _: &Opts) -> Result<(), DaemonError> {
        Err(DaemonError::InvalidRequest(
            "risk-ingest runs at the holder only".into(),
        ))
    }

    async fn run(
        env: &dyn Env,
        _: &Opts,
        _: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        let started = Instant::now();
        let compute = compute_nodes(env.config())?;
        let (name, ds) = env.my_dataset()?;
        env.progress("loading", 0, 0, "");
        let (path, id_col) = (ds.path.clone(), ds.id_column.clone());
        let data = tokio::task::spawn_blocking(move || RiskDataset::load(&path, &id_col))
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))?
            .map_err(|e| {
                DaemonError::local(
                    format!(
                        "dataset `{name}` of `{}` ({}): {e}",
                        env.me(),
                        ds.path.display()
                    ),
                    format!("dataset `{name}` of `{}`: {}", env.me(), e.public()),
                )
            })?;
        let padded = confide_risk::client::padded_len(data.records.len()) as u64;
        let caller = EnvCaller {
            env,
            progress: Some(Mutex::new(("tagging", 0, 2 * padded))),
        };
        let evidence = EnvEvidence {
            env,
            kind: JobKind::RiskIngest,
            served_by: compute.to_vec(),
        };
        let report = confide_risk::ingest(
            &caller,
            [&compute[0], &compute[1]],
            &data.records,
            &evidence,
        )
        .await?;
        tracing::info!(
            job = %env.spec().job_id, dataset = %name, rows = report.rows, dummies = report.dummies,
            "risk: ingested"
        );
        Ok(serde_json::json!({
            "kind": "risk-ingest",
            "job_id": env.spec().job_id,
            "party": env.me(),
            "dataset": name,
            "rows": report.rows,
            "duplicates": data.duplicates,
            "dummies": report.dummies,
            "compute": compute,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }))
    }
}
