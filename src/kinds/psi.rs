//! `psi`: ECDH private set intersection (confide-psi) between the daemons of the job.
//!
//! Options: `mode` = `initiator` (default: the initiator learns the intersection), `all`
//! (both parties of a two-party job learn it) or `size-only`; `protocol` = `ecdh` or
//! `kkrt`. Without a protocol every party resolves the same default from the job it was
//! proposed: KKRT for two parties unless the job is size-only, ECDH otherwise
//! ([`confide_psi::Protocol::default_for`]).

use confide_mpc::ChannelTransport;
use confide_psi::{OutputMode, Protocol as PsiProtocol, PsiJob};
use serde::{Deserialize, Serialize};

use super::{Env, Kind, Plan};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::kind::{JobKind, PolicyKind};

/// Who learns the intersection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Initiator,
    All,
    SizeOnly,
}

impl From<Mode> for OutputMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Initiator => OutputMode::Initiator,
            Mode::All => OutputMode::All,
            Mode::SizeOnly => OutputMode::SizeOnly,
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Initiator => "initiator",
            Mode::All => "all",
            Mode::SizeOnly => "size-only",
        }
    }
}

/// The PSI protocol asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Ecdh,
    Kkrt,
}

impl From<Protocol> for PsiProtocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Ecdh => PsiProtocol::Ecdh,
            Protocol::Kkrt => PsiProtocol::Kkrt,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Opts {
    pub mode: Mode,
    /// `None`: the default for the job's party count and mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

impl Opts {
    /// The protocol this job runs with `parties` parties.
    pub fn protocol(&self, parties: usize) -> PsiProtocol {
        match self.protocol {
            Some(p) => p.into(),
            None => PsiProtocol::default_for(parties, self.mode.into()),
        }
    }
}

#[derive(Debug)]
pub struct Psi;

fn check(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
    if o.mode == Mode::All && plan.parties.len() != 2 {
        return Err(DaemonError::InvalidRequest(
            "psi: delivering the intersection to every party needs exactly two parties".into(),
        ));
    }
    o.protocol(plan.parties.len())
        .check(plan.parties.len(), o.mode.into())
        .map_err(|m| DaemonError::InvalidRequest(format!("psi: {m}")))?;
    let ds = plan.checked_dataset(cfg, PolicyKind::Psi)?;
    confide_psi::check_input(&ds.path, &ds.id_column).map_err(|e| {
        let at = format!("dataset `{}` of `{}`", plan.my_dataset(), plan.me);
        DaemonError::local(format!("{at}: {e}"), format!("{at}: {}", e.public()))
    })?;
    // Consent of every participant: this party's policy must allow psi for every party
    // that learns anything derived from its data in this job (with this protocol: every
    // other party learns at least its set size).
    let names: Vec<String> = plan.parties.iter().map(|p| p.party.clone()).collect();
    let learners = confide_psi::learners(&names, plan.initiator, o.mode.into())?;
    let not_allowed: Vec<&str> = learners
        .get(plan.me)
        .into_iter()
        .flatten()
        .filter(|l| !ds.allows(PolicyKind::Psi, l))
        .map(String::as_str)
        .collect();
    if !not_allowed.is_empty() {
        let msg = format!(
            "dataset `{}` of `{}` does not allow psi for {} (each learns at least its size in this job)",
            plan.my_dataset(),
            plan.me,
            not_allowed
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Err(if plan.is_initiator() {
            DaemonError::InvalidRequest(msg)
        } else {
            DaemonError::PermissionDenied(msg)
        });
    }
    Ok(())
}

impl Kind for Psi {
    type Opts = Opts;
    const KIND: JobKind = JobKind::Psi;

    fn check_local(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        check(cfg, plan, o)
    }

    fn check_peer(cfg: &PartyConfig, plan: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        check(cfg, plan, o)
    }

    async fn run(
        env: &dyn Env,
        o: &Opts,
        t: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        let (name, ds) = env.my_dataset()?;
        let spec = env.spec();
        let output = if env.is_initiator() {
            match o.mode {
                Mode::SizeOnly => None,
                _ => Some(spec.output.clone().ok_or_else(|| {
                    DaemonError::InvalidRequest(
                        "psi: an output file is needed unless the job is size-only".into(),
                    )
                })?),
            }
        } else if o.mode == Mode::All {
            let dir = env.results_dir();
            std::fs::create_dir_all(&dir)
                .map_err(|e| DaemonError::io(format!("creating {}", dir.display()), e))?;
            Some(dir.join(format!("psi-{}.csv", spec.job_id)))
        } else {
            None
        };
        let parties = spec.party_names();
        let protocol = o.protocol(parties.len());
        let job = PsiJob {
            initiator: spec.initiator().to_string(),
            parties,
            mode: o.mode.into(),
            protocol,
            input: ds.path.clone(),
            id_column: ds.id_column.clone(),
            output,
            work_dir: env.work_dir().to_path_buf(),
        };
        let progress = |p: confide_psi::Progress| env.progress(p.stage, p.done, p.total, "");
        let report = confide_psi::run(t, &job, &progress).await?;
        Ok(serde_json::json!({
            "kind": "psi",
            "job_id": spec.job_id,
            "mode": o.mode.as_str(),
            "protocol": protocol.as_str(),
            "party": env.me(),
            "dataset": name,
            "rows": report.input.rows,
            "distinct": report.input.distinct,
            "duplicates": report.input.duplicates,
            "blank": report.input.blank,
            "malformed": report.input.malformed,
            "malformed_lines": report.input.malformed_lines,
            "peer_set_sizes": report.peer_set_sizes,
            "intersection_size": report.intersection_size,
            "output": report.output,
            "elapsed_ms": report.elapsed.as_millis() as u64,
            "bytes_sent": report.bytes_sent,
            "bytes_received": report.bytes_received,
        }))
    }
}
