//! `confide._native`: the Python package's extension. It calls the CLI's own client
//! functions (`confide::cli`, over `confide::net::client`'s mutual TLS to the party's own
//! daemon): job requests are built by parsing the same flags as `confide psi|train|
//! predict|risk ingest`, so defaults, validation and messages are the CLI's. The Python
//! layer (`confide/__init__.py`) turns the JSON answers into DataFrames.
#![forbid(unsafe_code)]

mod errors;
mod wait;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Parser;
use confide::base::config::PartyConfig;
use confide::cli::args::{Cli, Command, RiskCommand};
use confide::cli::submit::{state_name, submit_events};
use confide::cli::{CliError, audit, daemon, psi, risk, train};
use confide_proto::{AddDatasetRequest, DatasetGrant, JobState};
use pyo3::prelude::*;
use wait::{Stopped, wait};

/// A connection to one party's own daemon, from its `party.toml`.
#[pyclass(module = "confide._native", frozen)]
struct Client {
    cfg: PartyConfig,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// Runs a call to the daemon (GIL released, Ctrl-C honoured), mapping errors.
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        job: Option<(&Arc<Mutex<String>>, &wait::Raised)>,
        fut: impl std::future::Future<Output = Result<T, CliError>> + Send,
    ) -> PyResult<T> {
        wait(py, &self.rt, &self.cfg, job, fut).map_err(|s| match s {
            Stopped::Failed(e) => errors::to_py(e, &self.cfg.party.name),
            Stopped::Interrupted(e) => e,
        })
    }

    fn fail(&self, e: CliError) -> PyErr {
        errors::to_py(e, &self.cfg.party.name)
    }
}

fn json(v: &serde_json::Value) -> String {
    v.to_string()
}

#[pymethods]
impl Client {
    /// Reads and validates `config` (a party.toml), as every CLI command does.
    #[new]
    fn new(config: PathBuf) -> PyResult<Self> {
        let me = "";
        let cfg = PartyConfig::load(&config).map_err(|e| errors::to_py(e.into(), me))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| errors::to_py(CliError::io("starting the client runtime", e), me))?;
        Ok(Self { cfg, rt })
    }

    /// This party's name.
    #[getter]
    fn name(&self) -> String {
        self.cfg.party.name.clone()
    }

    /// The daemon's data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.cfg.party.data_dir.clone()
    }

    /// The configuration file.
    #[getter]
    fn config(&self) -> PathBuf {
        self.cfg.source.clone()
    }

    /// `confide status --json`.
    fn status(&self, py: Python<'_>, self_only: bool) -> PyResult<String> {
        let r = self.run(py, None, daemon::status_reply(&self.cfg, self_only))?;
        Ok(json(&daemon::status_json(&r)))
    }

    /// The jobs the daemon knows, as a JSON list.
    fn jobs(&self, py: Python<'_>) -> PyResult<String> {
        let jobs = self.run(py, None, daemon::list_jobs(&self.cfg))?;
        let rows: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                let state = JobState::try_from(j.state).unwrap_or(JobState::Unspecified);
                serde_json::json!({
                    "job_id": j.job_id, "kind": j.kind, "state": state_name(state),
                    "initiator": j.initiator, "parties": j.parties, "error": j.error,
                    "started_unix_ms": j.started_unix_ms, "finished_unix_ms": j.finished_unix_ms,
                })
            })
            .collect();
        Ok(json(&serde_json::Value::Array(rows)))
    }

    /// `confide cancel`: true if the job was running.
    fn cancel(&self, py: Python<'_>, job: String) -> PyResult<bool> {
        self.run(py, None, daemon::cancel_job(&self.cfg, &job))
    }

    /// Submits the job of a CLI command (`args` as after `confide`, without `--config`:
    /// `psi`, `train`, `predict` or `risk ingest`), calling `progress(state, stage, done,
    /// total, message, job_id)` on each event. Returns (job id, result JSON, the CLI's
    /// summary line).
    #[pyo3(signature = (args, progress=None))]
    fn submit(
        &self,
        py: Python<'_>,
        args: Vec<String>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<(String, String, String)> {
        let mut argv = vec!["confide".to_string()];
        argv.extend(args);
        argv.extend(["--config".into(), self.cfg.source.display().to_string()]);
        let cli = Cli::try_parse_from(&argv).map_err(|e| {
            let text = e.to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            self.fail(CliError::Usage(line.to_string()))
        })?;
        let cfg = &self.cfg;
        let req = match &cli.command {
            Command::Psi(a) => psi::psi_request(a),
            Command::Train(a) => train::train_request(cfg, a),
            Command::Predict(a) => train::predict_request(cfg, a),
            Command::Risk(RiskCommand::Ingest { dataset, .. }) => Ok(risk::ingest_request(dataset)),
            _ => Err(CliError::Usage(format!(
                "`{}` is not a job the Python client submits",
                argv.get(1).map(String::as_str).unwrap_or("")
            ))),
        }
        .map_err(|e| self.fail(e))?;
        let job = Arc::new(Mutex::new(String::new()));
        let seen = job.clone();
        let raised = wait::Raised::default();
        let raise = raised.clone();
        let on_event = move |ev: &confide_proto::JobEvent| {
            if let Ok(mut j) = seen.lock() {
                j.clone_from(&ev.job_id);
            }
            if let Some(cb) = &progress {
                let state =
                    state_name(JobState::try_from(ev.state).unwrap_or(JobState::Unspecified));
                Python::attach(|py| {
                    let args = (state, &ev.stage, ev.done, ev.total, &ev.message, &ev.job_id);
                    match cb.call1(py, args) {
                        // Ctrl-C while the callback ran: the wait cancels the job.
                        Err(e) if !e.is_instance_of::<pyo3::exceptions::PyException>(py) => {
                            if let Ok(mut r) = raise.lock() {
                                r.get_or_insert(e);
                            }
                        }
                        Err(e) => e.print(py),
                        Ok(_) => {}
                    }
                });
            }
        };
        let (id, r) = self.run(py, Some((&job, &raised)), submit_events(cfg, req, on_event))?;
        let summary = match &cli.command {
            Command::Psi(_) => psi::psi_summary(&id, &cfg.party.name, &r),
            Command::Train(_) => train::train_summary(&id, &r),
            Command::Risk(_) => risk::ingest_summary(&r),
            _ => String::new(),
        };
        Ok((id, json(&r), summary))
    }

    /// `confide risk query`: one (blacklisted, loans, amount, overdue, queried_by) per ID.
    fn risk_query(&self, py: Python<'_>, ids: Vec<String>) -> PyResult<Vec<[u64; 5]>> {
        let answers = self.run(py, None, risk::query_ids(&self.cfg, &ids))?;
        Ok(answers
            .iter()
            .map(|a| [a.blacklisted, a.loans, a.amount, a.overdue, a.queried_by])
            .collect())
    }

    /// `confide audit log [--summary]` as JSON.
    fn audit_log(&self, py: Python<'_>, summary: bool) -> PyResult<String> {
        Ok(json(&self.run(py, None, audit::log(&self.cfg, summary))?))
    }

    /// `confide audit verify`: (intact, report).
    fn audit_verify(&self, py: Python<'_>) -> PyResult<(bool, String)> {
        let r = self.run(py, None, audit::verify(&self.cfg))?;
        Ok((r.ok, r.report))
    }

    /// `confide audit prove`: the proof bundle (JSON text) of `job`, waiting up to
    /// `within_secs` for its checkpoint to become final.
    fn prove(&self, py: Python<'_>, job: String, within_secs: f64) -> PyResult<String> {
        let within = std::time::Duration::from_secs_f64(within_secs.max(0.0));
        self.run(py, None, audit::prove(&self.cfg, &job, within))
    }

    /// Registers a dataset (a CSV on the daemon's host) through Control `AddDataset`;
    /// returns the party.toml it was appended to.
    fn add_dataset(
        &self,
        py: Python<'_>,
        name: String,
        path: String,
        id_column: String,
        allow: Vec<(String, Vec<String>)>,
    ) -> PyResult<String> {
        let req = AddDatasetRequest {
            name,
            path,
            id_column,
            allow: allow
                .into_iter()
                .map(|(kind, parties)| DatasetGrant { kind, parties })
                .collect(),
        };
        self.run(py, None, daemon::add_dataset(&self.cfg, req))
    }
}

/// What [`check`] returns: (the CLI's line, entry index, tree size, kind, job id,
/// member, cosigners).
type Checked = (String, u64, u64, String, String, String, Vec<String>);

/// `confide audit check`: the offline check of a proof bundle file against a genesis
/// file. Returns (the CLI's line, entry index, tree size, kind, job id, member, cosigners).
#[pyfunction]
fn check(proof: PathBuf, genesis: PathBuf) -> PyResult<Checked> {
    let (v, line) = audit::check(&proof, &genesis).map_err(|e| errors::to_py(e, ""))?;
    let body = v.entry.body();
    Ok((
        line,
        v.index,
        v.tree_size,
        body.kind.as_str().to_string(),
        body.job_id.clone(),
        body.member.clone(),
        v.cosigners.clone(),
    ))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
