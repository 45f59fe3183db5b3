//! `psi`: ECDH private set intersection (confide-psi) between the daemons of the job.
//!
//! Options: `mode` = `initiator` (default: the initiator learns the intersection), `all`
//! (both parties of a two-party job learn it) or `size-only`; `protocol` = `ecdh` or
//! `kkrt`. Without a protocol every party resolves the same default from the job it was
//! proposed: KKRT for two parties unless the job is size-only, ECDH otherwise
//! ([`confide_psi::Protocol::default_for`]). `resume` = the id of an earlier job of the
//! same parties and options whose checkpoint every party continues from
//! ([`super::resume`]).
//!
//! Every PSI job checkpoints (ECDH: per received chunk of points; KKRT: after the OPRF and
//! per chunk of tags). Size knobs for operators and tests: `CONFIDE_PSI_CHUNK_POINTS`
//! (points per message, the ECDH unit), `CONFIDE_PSI_KKRT_TAGS` (tags per message of a
//! KKRT responder, the KKRT unit) and `CONFIDE_PSI_BUCKET_BYTES` (input bytes per
//! on-disk bucket; a resumed job must use the value of its first run).

use confide_mpc::ChannelTransport;
use confide_psi::{CheckpointSpec, OutputMode, Protocol as PsiProtocol, PsiJob, Tuning};
use serde::{Deserialize, Serialize};

use super::{Env, Kind, Plan, resume};
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
    /// The job whose checkpoint this one continues from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
}

/// The PSI size knobs from the environment (defaults otherwise).
pub fn tuning() -> Tuning {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut t = Tuning::default();
    if let Some(v) = env("CONFIDE_PSI_CHUNK_POINTS") {
        t.chunk_points = v.clamp(1, 1 << 20) as usize;
    }
    if let Some(v) = env("CONFIDE_PSI_KKRT_TAGS") {
        t.kkrt_tags = v.clamp(1, 1 << 20) as usize;
    }
    if let Some(v) = env("CONFIDE_PSI_BUCKET_BYTES") {
        t.bucket_bytes = v.max(1);
    }
    t
}

/// The PSI job of this party (without output; the checkpoint checks compare this).
fn psi_job(plan: &Plan<'_>, o: &Opts, input: &std::path::Path, id_column: &str) -> PsiJob {
    let parties: Vec<String> = plan.parties.iter().map(|p| p.party.clone()).collect();
    PsiJob {
        initiator: plan.initiator.to_string(),
        protocol: o.protocol(parties.len()),
        parties,
        mode: o.mode.into(),
        input: input.to_path_buf(),
        id_column: id_column.to_string(),
        output: None,
        work_dir: std::path::PathBuf::new(),
    }
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
    if let Some(orig) = &o.resume {
        resume::check_id(orig)?;
        let dir = resume::checkpoint_dir(&cfg.party.data_dir, orig);
        let job = psi_job(plan, o, &ds.path, &ds.id_column);
        confide_psi::checkpoint::check(&dir, &job, &tuning()).map_err(|e| {
            let problem = match &e {
                confide_psi::PsiError::Checkpoint(m) => m.clone(),
                other => other.public(),
            };
            resume::refusal(orig, plan.me, &problem, plan.is_initiator())
        })?;
    }
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
        let message = match &o.resume {
            Some(orig) => format!("resuming job {orig} from its checkpoint"),
            None => String::new(),
        };
        let progress = |p: confide_psi::Progress| {
            let m = if p.stage == "resuming" { &message } else { "" };
            env.progress(p.stage, p.done, p.total, m)
        };
        let ck = CheckpointSpec {
            dir: resume::checkpoint_dir(
                &env.config().party.data_dir,
                resume::anchor_job(&spec.job_id, o.resume.as_deref()),
            ),
            resume: o.resume.is_some(),
        };
        let report = confide_psi::run_checkpointed(t, &job, &progress, tuning(), &ck)
            .await
            .map_err(|e| match (&o.resume, e) {
                (Some(orig), confide_psi::PsiError::Checkpoint(m)) => {
                    let me = env.me();
                    let m = resume::refusal(orig, me, &m, true).to_string();
                    DaemonError::local(m.clone(), confide_mpc::clean(&m))
                }
                (_, e) => e.into(),
            })?;
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
            "resumed_from": o.resume,
            "resumed_items": report.resumed_items,
        }))
    }
}
