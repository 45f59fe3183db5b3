//! Job kinds: what each party checks before a job starts, and the protocol it runs.
//!
//! | kind | file | what it does |
//! |---|---|---|
//! | `netcheck` | [`netcheck`] | messages to every party of the job, measured (no data) |
//! | `psi` | [`psi`] | ECDH private set intersection (confide-psi) |
//! | `train` | [`train`] | PSI row alignment, then vertical logistic regression or gradient-boosted trees ([`train_gbdt`]) on secret shares (confide-training) |
//! | `predict` | [`predict`] | PSI row alignment, then scoring with a secret-shared model; only the initiator sees the scores |
//! | `risk-ingest` | [`risk_ingest`] | a holder tags and uploads its dataset to the two risk compute nodes (confide-risk) |
//! | `risk-query` | [`risk_query`] | a lender asks the compute nodes about applicants and learns only the sums |
//!
//! Every kind implements [`Kind`] over the narrow [`Env`] (its dataset lookup, work
//! directory, progress, audit log and compute-node calls), never the whole daemon. Options
//! are typed structs, parsed once where a job enters a daemon ([`JobOptions::parse`], at
//! `Control.Submit` and at `Peer.Propose`).
//!
//! Adding a kind: a variant in [`crate::base::JobKind`], one file here with its `Opts` and
//! its `impl Kind`, one arm in each `match` of [`JobOptions`], and its protocol in a crate below.

use std::future::Future;
use std::path::{Path, PathBuf};

use confide_mpc::ChannelTransport;
use confide_proto::DatasetRef;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::base::config::{DatasetSection, PartyConfig};
use crate::base::error::DaemonError;
use crate::base::job::JobSpec;
use crate::base::kind::{JobKind, PolicyKind};

pub mod netcheck;
pub mod predict;
pub mod psi;
pub mod resume;
mod risk_common;
pub mod risk_ingest;
pub mod risk_query;
pub mod train;
pub mod train_common;
pub mod train_gbdt;

/// A job as one party sees it before it starts: who proposes it, with which parties.
#[derive(Debug, Clone, Copy)]
pub struct Plan<'a> {
    /// This party.
    pub me: &'a str,
    /// The initiator (at the initiator: itself).
    pub initiator: &'a str,
    /// Every party with its dataset, the initiator first.
    pub parties: &'a [DatasetRef],
}

impl<'a> Plan<'a> {
    /// The dataset this party brings ("" for none).
    pub fn my_dataset(&self) -> &'a str {
        self.dataset_of(self.me)
    }

    /// The dataset `party` brings ("" for none).
    pub fn dataset_of(&self, party: &str) -> &'a str {
        self.parties
            .iter()
            .find(|p| p.party == party)
            .map(|p| p.dataset.as_str())
            .unwrap_or("")
    }

    pub fn is_initiator(&self) -> bool {
        self.me == self.initiator
    }

    /// This party's dataset, checked against `kind`'s policy for the initiator (at a
    /// peer: a refusal naming the initiator; at the initiator: a plain error).
    pub fn checked_dataset<'c>(
        &self,
        cfg: &'c PartyConfig,
        kind: PolicyKind,
    ) -> Result<&'c DatasetSection, DaemonError> {
        let name = self.my_dataset();
        cfg.check_policy(name, kind, self.initiator).map_err(|e| {
            if self.is_initiator() {
                DaemonError::InvalidRequest(e)
            } else {
                DaemonError::PermissionDenied(e)
            }
        })
    }
}

/// What a running job may use of its daemon.
pub trait Env: Send + Sync {
    /// This party's configuration (datasets, alliance, policy, data directory).
    fn config(&self) -> &PartyConfig;
    /// The job, as every party sees it.
    fn spec(&self) -> &JobSpec;
    /// A directory for this job's temporary files, removed when the job ends.
    fn work_dir(&self) -> &Path;
    /// Reports progress to the submitter (never blocks).
    fn progress(&self, stage: &str, done: u64, total: u64, message: &str);
    /// Appends a signed `risk-ingest` / `risk-query` entry committing to `hash` and
    /// returns the evidence the compute nodes check before they evaluate anything.
    fn log_risk_eval(
        &self,
        kind: JobKind,
        served_by: Vec<String>,
        hash: [u8; 32],
    ) -> BoxFuture<'_, Result<Vec<u8>, DaemonError>>;
    /// One request to a risk compute node (in-process when the node is this party).
    fn node_call(
        &self,
        node: &str,
        request: Vec<u8>,
    ) -> BoxFuture<'_, Result<Vec<u8>, DaemonError>>;

    fn me(&self) -> &str {
        &self.config().party.name
    }

    fn is_initiator(&self) -> bool {
        self.spec().initiator() == self.me()
    }

    /// This party's dataset in the job.
    fn my_dataset(&self) -> Result<(&str, &DatasetSection), DaemonError> {
        let me = self.me();
        let name = self.spec().dataset_of(me).ok_or_else(|| {
            DaemonError::InvalidRequest(format!("no dataset of `{me}` in the job"))
        })?;
        let ds = dataset(self.config(), name)?;
        Ok((name, ds))
    }

    /// Where a party that is not the initiator keeps outputs it receives.
    fn results_dir(&self) -> PathBuf {
        self.config().party.data_dir.join("results")
    }
}

/// `name` among this party's datasets, or an error listing them.
pub fn dataset<'c>(cfg: &'c PartyConfig, name: &str) -> Result<&'c DatasetSection, DaemonError> {
    if let Some(problem) = cfg.datasets.get(name).and_then(|d| d.problem.as_ref()) {
        let me = &cfg.party.name;
        return Err(DaemonError::local(
            format!("dataset `{name}` of party `{me}` is disabled: {problem}"),
            format!("dataset `{name}` of party `{me}` is disabled (its file is unusable)"),
        ));
    }
    cfg.datasets.get(name).ok_or_else(|| {
        let known: Vec<&str> = cfg.datasets.keys().map(String::as_str).collect();
        DaemonError::InvalidRequest(format!(
            "party `{}` has no dataset `{name}` (its datasets: {})",
            cfg.party.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// One job kind.
pub trait Kind {
    /// Its typed options.
    type Opts: Serialize + for<'de> Deserialize<'de> + Clone + std::fmt::Debug + Send + Sync;
    const KIND: JobKind;
    /// Whether other parties take part over streams (`false`: the initiator runs alone and
    /// calls services, as risk jobs call the compute nodes).
    const WITH_PEERS: bool = true;

    /// At the initiator, before anything is sent: options, own dataset, the parties.
    fn check_local(
        cfg: &PartyConfig,
        plan: &Plan<'_>,
        opts: &Self::Opts,
    ) -> Result<(), DaemonError>;

    /// At a peer, on a proposal: may the initiator run this here, with these parties?
    fn check_peer(cfg: &PartyConfig, plan: &Plan<'_>, opts: &Self::Opts)
    -> Result<(), DaemonError>;

    /// This party's side of the protocol; returns its JSON summary.
    fn run(
        env: &dyn Env,
        opts: &Self::Opts,
        t: &ChannelTransport,
    ) -> impl Future<Output = Result<serde_json::Value, DaemonError>> + Send;
}

/// The typed options of a job; the variant is its kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", content = "options", rename_all = "kebab-case")]
pub enum JobOptions {
    Netcheck(<netcheck::Netcheck as Kind>::Opts),
    Psi(<psi::Psi as Kind>::Opts),
    Train(<train::Train as Kind>::Opts),
    Predict(<predict::Predict as Kind>::Opts),
    RiskIngest(<risk_ingest::RiskIngest as Kind>::Opts),
    RiskQuery(<risk_query::RiskQuery as Kind>::Opts),
}

/// Dispatches `$body` with `K` bound to the kind's type and `$o` to its options.
macro_rules! each_kind {
    ($self:expr, $o:ident, $K:ident => $body:expr) => {
        match $self {
            JobOptions::Netcheck($o) => {
                type $K = netcheck::Netcheck;
                $body
            }
            JobOptions::Psi($o) => {
                type $K = psi::Psi;
                $body
            }
            JobOptions::Train($o) => {
                type $K = train::Train;
                $body
            }
            JobOptions::Predict($o) => {
                type $K = predict::Predict;
                $body
            }
            JobOptions::RiskIngest($o) => {
                type $K = risk_ingest::RiskIngest;
                $body
            }
            JobOptions::RiskQuery($o) => {
                type $K = risk_query::RiskQuery;
                $body
            }
        }
    };
}

impl JobOptions {
    /// Parses the options of a `kind` job from their JSON (`""` = all defaults). Unknown
    /// fields and out-of-range values are refused here, once.
    pub fn parse(kind: &str, json: &str) -> Result<Self, DaemonError> {
        let kind = JobKind::parse(kind)?;
        let options: serde_json::Value = if json.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(json).map_err(|e| {
                DaemonError::InvalidRequest(format!("{kind}: options are not JSON: {e}"))
            })?
        };
        serde_json::from_value(serde_json::json!({ "kind": kind, "options": options }))
            .map_err(|e| DaemonError::InvalidRequest(format!("{kind}: {e}")))
    }

    pub fn kind(&self) -> JobKind {
        each_kind!(self, _o, K => K::KIND)
    }

    /// The options as canonical JSON (fields in declaration order): what travels in a
    /// proposal and what the audit fingerprint commits to.
    pub fn to_json(&self) -> String {
        let v = each_kind!(self, o, _K => serde_json::to_string(o));
        v.unwrap_or_default()
    }

    /// The job whose checkpoint this job resumes from, if it resumes.
    pub fn resume_of(&self) -> Option<&str> {
        match self {
            JobOptions::Psi(o) => o.resume.as_deref(),
            JobOptions::Train(o) => o.resume.as_deref(),
            _ => None,
        }
    }

    pub fn with_peers(&self) -> bool {
        each_kind!(self, _o, K => K::WITH_PEERS)
    }

    pub fn check_local(&self, cfg: &PartyConfig, plan: &Plan<'_>) -> Result<(), DaemonError> {
        if self.with_peers() && plan.parties.len() < 2 {
            return Err(DaemonError::InvalidRequest(
                "a job needs at least one peer".into(),
            ));
        }
        each_kind!(self, o, K => K::check_local(cfg, plan, o))
    }

    pub fn check_peer(&self, cfg: &PartyConfig, plan: &Plan<'_>) -> Result<(), DaemonError> {
        if !self.with_peers() {
            return Err(DaemonError::InvalidRequest(format!(
                "a `{}` job is not proposed to peers",
                self.kind()
            )));
        }
        each_kind!(self, o, K => K::check_peer(cfg, plan, o))
    }

    pub async fn run(
        &self,
        env: &dyn Env,
        t: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        each_kind!(self, o, K => K::run(env, o, t).await)
    }
}

/// Writes a CSV field, quoted when needed.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_once_and_refuse_unknown_fields() {
        let o = JobOptions::parse("netcheck", r#"{"rounds": 5}"#).unwrap();
        assert_eq!(o.kind(), JobKind::Netcheck);
        assert!(o.to_json().contains("\"rounds\":5"));
        let e = JobOptions::parse("netcheck", r#"{"colour": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = JobOptions::parse("psi", r#"{"mode": "everyone"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("everyone"), "{e}");
        let e = JobOptions::parse("mine", "").unwrap_err().to_string();
        assert!(e.contains("unknown job kind `mine`"), "{e}");
        // Defaults when no options are given.
        let o = JobOptions::parse("psi", "").unwrap();
        assert_eq!(o.to_json(), r#"{"mode":"initiator"}"#);
    }
}
