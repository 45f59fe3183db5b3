//! `risk-query`: a lender asks the two compute nodes about applicants and learns only the
//! alliance-wide sums. One `risk-query` audit entry per batch, bound to the blinded
//! points, is logged before the nodes evaluate anything. Only the initiator runs it.

use confide_mpc::ChannelTransport;
use serde::{Deserialize, Serialize};

use super::risk_common::{EnvCaller, EnvEvidence};
use super::{Env, Kind, Plan};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::kind::JobKind;
use crate::risk_node::{compute_nodes, refuse_compute_node};

/// Most IDs one query job may carry.
pub const MAX_IDS: usize = 1_000_000;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Opts {
    /// The applicants' IDs (they stay at the lender's daemon: only blinded points leave).
    pub ids: Vec<String>,
}

impl Opts {
    fn validate(&self) -> Result<(), DaemonError> {
        if self.ids.is_empty() {
            return Err(DaemonError::InvalidRequest("risk query: no IDs".into()));
        }
        if self.ids.len() > MAX_IDS {
            return Err(DaemonError::InvalidRequest(format!(
                "risk query: {} IDs in one job (at most {MAX_IDS})",
                self.ids.len()
            )));
        }
        if self.ids.iter().any(|i| i.is_empty() || i.len() > 65_535) {
            return Err(DaemonError::InvalidRequest(
                "risk query: every ID must have 1..65535 bytes".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct RiskQuery;

impl Kind for RiskQuery {
    type Opts = Opts;
    const KIND: JobKind = JobKind::RiskQuery;
    const WITH_PEERS: bool = false;

    fn check_local(cfg: &PartyConfig, _: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        compute_nodes(cfg)?;
        refuse_compute_node(cfg, &cfg.party.name, "query")?;
        o.validate()
    }

    fn check_peer(_: &PartyConfig, _: &Plan<'_>, _: &Opts) -> Result<(), DaemonError> {
        Err(DaemonError::InvalidRequest(
            "risk-query runs at the lender only".into(),
        ))
    }

    async fn run(
        env: &dyn Env,
        o: &Opts,
        _: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        o.validate()?;
        let compute = compute_nodes(env.config())?;
        let caller = EnvCaller {
            env,
            progress: None,
        };
        let evidence = EnvEvidence {
            env,
            kind: JobKind::RiskQuery,
            served_by: compute.to_vec(),
        };
        let answers =
            confide_risk::query(&caller, [&compute[0], &compute[1]], &o.ids, &evidence).await?;
        let rows: Vec<[u64; 5]> = answers
            .iter()
            .map(|a| [a.blacklisted, a.loans, a.amount, a.overdue, a.queried_by])
            .collect();
        tracing::info!(job = %env.spec().job_id, ids = rows.len(), "risk: queried");
        Ok(serde_json::json!({
            "kind": "risk-query",
            "job_id": env.spec().job_id,
            "party": env.me(),
            "compute": compute,
            "answers": rows,
        }))
    }
}
