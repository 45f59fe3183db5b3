//! The `Control` service: the local CLI (and Python) to its own daemon. Only the party
//! itself, holding its own certificate, may call it.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confide_proto::control_server::{Control, ControlServer};
use confide_proto::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{Daemon, VERSION, jobs};
use crate::base::config::PartyConfig;
use crate::base::error::{DaemonError, status_line};
use crate::base::ids::{new_job_id, now_ms};
use crate::base::job::JobSpec;
use crate::kinds::{JobOptions, Plan};
use crate::net::authz::only_self;
use crate::net::{FailureSignal, MAX_MESSAGE};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Debug)]
pub struct ControlService {
    daemon: Arc<Daemon>,
}

pub fn server(daemon: Arc<Daemon>) -> ControlServer<ControlService> {
    ControlServer::new(ControlService { daemon })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl ControlService {
    fn local<T>(&self, req: &Request<T>) -> Result<(), Status> {
        only_self(self.daemon.me(), req, "control its own daemon")
    }
}

/// Pings one peer (4 s at most).
async fn ping_peer(d: &Daemon, name: &str, address: &str) -> PeerStatus {
    let started = Instant::now();
    let mut st = PeerStatus {
        name: name.to_string(),
        address: address.to_string(),
        ..Default::default()
    };
    let res = match d.channels.client(name) {
        Ok(mut c) => {
            match tokio::time::timeout(Duration::from_secs(4), c.ping(PingRequest {})).await {
                Ok(Ok(r)) if r.get_ref().party == name => Ok(()),
                Ok(Ok(r)) => Err(format!("answered as `{}`", r.get_ref().party)),
                Ok(Err(s)) => Err(status_line(&s)),
                Err(_) => Err("no answer within 4 s".to_string()),
            }
        }
        Err(e) => Err(e.to_string()),
    };
    match res {
        Ok(()) => {
            st.reachable = true;
            st.latency_ms = started.elapsed().as_millis() as u64;
        }
        Err(e) => st.error = e,
    }
    st
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        self.local(&req)?;
        let d = &self.daemon;
        let peers = if req.get_ref().self_only {
            Vec::new()
        } else {
            futures::future::join_all(
                d.cfg
                    .peers
                    .iter()
                    .map(|(name, p)| ping_peer(d, name, &p.address)),
            )
            .await
        };
        let (audit_ok, audit) = d
            .audit
            .as_ref()
            .map_or((true, String::new()), |a| a.health());
        Ok(Response::new(StatusReply {
            party: d.me().to_string(),
            version: VERSION.into(),
            peers,
            jobs_running: d.jobs.running(),
            audit,
            audit_fault: !audit_ok,
        }))
    }

    type SubmitStream = BoxStream<JobEvent>;

    async fn submit(
        &self,
        req: Request<SubmitRequest>,
    ) -> Result<Response<Self::SubmitStream>, Status> {
        self.local(&req)?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        let (spec, options, abort) = prepare(&d, r).await.map_err(DaemonError::local_status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let _ = tx
            .send(JobEvent {
                job_id: spec.job_id.clone(),
                state: JobState::Queued as i32,
                stage: "accepted".into(),
                message: format!("all parties accepted job {}", spec.job_id),
                ..Default::default()
            })
            .await;
        let span =
            tracing::info_span!("job", job = %spec.job_id, kind = %spec.kind, party = %d.me());
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _ = jobs::run(d, spec, options, abort, Some(tx)).await;
            },
            span,
        ));
        use tokio_stream::StreamExt;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok),
        )))
    }

    async fn list_jobs(
        &self,
        req: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsReply>, Status> {
        self.local(&req)?;
        Ok(Response::new(ListJobsReply {
            jobs: self.daemon.jobs.list(),
        }))
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobReply>, Status> {
        self.local(&req)?;
        let id = req.into_inner().job_id;
        let cancelled = self
            .daemon
            .jobs
            .abort(&id, None, "cancelled by the submitter".into())
            .map_err(DaemonError::local_status)?;
        Ok(Response::new(CancelJobReply { cancelled }))
    }

    async fn add_dataset(
        &self,
        req: Request<AddDatasetRequest>,
    ) -> Result<Response<AddDatasetReply>, Status> {
        self.local(&req)?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        // One registration at a time: each re-reads and rewrites party.toml.
        static ADDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one = ADDING.lock().await;
        let name = r.name.clone();
        let config = d.cfg.source.display().to_string();
        let res = tokio::task::spawn_blocking(move || add_dataset(&d, &r))
            .await
            .map_err(|e| Status::internal(format!("adding dataset `{name}`: {e}")))?;
        match res {
            Ok(grants) => {
                tracing::warn!(dataset = %name, allow = %grants, config = %config, "policy changed: dataset registered");
                Ok(Response::new(AddDatasetReply { config }))
            }
            Err(e) => {
                tracing::warn!(dataset = %name, error = %e, "refused dataset registration");
                Err(e.local_status())
            }
        }
    }
}

/// Checks a dataset registration, appends its table to `party.toml` and re-reads that file
/// (the file stays the source of truth: a restarted daemon reads the same datasets).
/// Returns the grants as written, for the log.
fn add_dataset(d: &Daemon, r: &AddDatasetRequest) -> Result<String, DaemonError> {
    let invalid = |m: String| DaemonError::InvalidRequest(format!("dataset `{}`: {m}", r.name));
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(invalid("a name is letters, digits, '_' and '-'".into()));
    }
    if d.current().datasets.contains_key(&r.name) {
        return Err(invalid(format!(
            "already declared in {} (choose another name)",
            d.cfg.source.display()
        )));
    }
    let path = std::path::PathBuf::from(&r.path);
    if !path.is_absolute() {
        return Err(invalid(format!("{} is not an absolute path", r.path)));
    }
    let header = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(&path)
        .and_then(|mut rd| rd.headers().cloned())
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    if !header.iter().any(|h| h.trim() == r.id_column) {
        let cols: Vec<&str> = header.iter().collect();
        return Err(invalid(format!(
            "{} has no column `{}` (its columns: {})",
            path.display(),
            r.id_column,
            cols.join(", ")
        )));
    }
    let mut allow = toml::Table::new();
    for g in &r.allow {
        allow.insert(
            g.kind.clone(),
            toml::Value::Array(g.parties.iter().cloned().map(toml::Value::String).collect()),
        );
    }
    let mut table = toml::Table::new();
    table.insert("path".into(), toml::Value::String(r.path.clone()));
    table.insert("id_column".into(), toml::Value::String(r.id_column.clone()));
    table.insert("allow".into(), toml::Value::Table(allow.clone()));
    let mut datasets = toml::Table::new();
    datasets.insert(r.name.clone(), toml::Value::Table(table));
    let mut doc = toml::Table::new();
    doc.insert("datasets".into(), toml::Value::Table(datasets));
    let appended = toml::to_string(&doc)
        .map_err(|e| DaemonError::Internal(format!("writing dataset `{}`: {e}", r.name)))?;
    let source = &d.cfg.source;
    let text = std::fs::read_to_string(source)
        .map_err(|e| DaemonError::io(format!("reading {}", source.display()), e))?;
    let next = format!("{}\n{appended}", text.trim_end());
    // Parsed (and so validated: known parties, known kinds, the file exists) before the
    // file is replaced.
    let reloaded = PartyConfig::parse(&next, source, |k| std::env::var(k).ok())?;
    crate::base::files::write_atomic(source, next.as_bytes(), false)?;
    d.set_datasets(reloaded);
    Ok(allow.to_string().replace('\n', "; "))
}

/// Validates a submitted job locally, proposes it to every peer, and registers it.
async fn prepare(
    d: &Arc<Daemon>,
    r: SubmitRequest,
) -> Result<(JobSpec, JobOptions, FailureSignal), DaemonError> {
    let options = JobOptions::parse(&r.kind, &r.options_json)?;
    let options = crate::kinds::resume::resolve(options, &d.cfg.party.data_dir, d.me())?;
    let mut parties = vec![DatasetRef {
        party: d.me().to_string(),
        dataset: r.dataset.clone(),
    }];
    for p in &r.peers {
        if p.party == d.me() || parties.iter().any(|q| q.party == p.party) {
            return Err(DaemonError::InvalidRequest(format!(
                "party `{}` named twice",
                p.party
            )));
        }
        d.channels.address(&p.party)?;
        parties.push(p.clone());
    }
    if !options.with_peers() && parties.len() > 1 {
        return Err(DaemonError::InvalidRequest(format!(
            "a `{}` job takes no peers",
            options.kind()
        )));
    }
    options.check_local(
        &d.current(),
        &Plan {
            me: d.me(),
            initiator: d.me(),
            parties: &parties,
        },
    )?;
    if !r.output.is_empty() {
        check_writable(Path::new(&r.output))?;
    }
    let timeout = if r.timeout_secs == 0 {
        d.cfg.policy.job_timeout_secs
    } else {
        r.timeout_secs
    };
    let spec = JobSpec {
        job_id: new_job_id(),
        kind: options.kind(),
        parties: parties.clone(),
        options_json: options.to_json(),
        deadline: Duration::from_secs(timeout),
        output: (!r.output.is_empty()).then(|| r.output.clone().into()),
    };
    let proposal = JobProposal {
        job_id: spec.job_id.clone(),
        kind: spec.kind.as_str().to_string(),
        parties,
        options_json: spec.options_json.clone(),
        deadline_unix_ms: now_ms() + timeout * 1000,
    };
    // Register first so that early streams from peers find the job.
    let abort = d.jobs.register(&spec)?;
    let futs = spec.parties.iter().skip(1).map(|p| {
        let proposal = proposal.clone();
        async move {
            let peer_err = |message: String| d.channels.peer_error(&p.party, message);
            let mut c = d.channels.client(&p.party)?;
            let reply = tokio::time::timeout(Duration::from_secs(10), c.propose(proposal))
                .await
                .map_err(|_| peer_err("no answer within 10 s".into()))?
                .map_err(|s| peer_err(status_line(&s)))?
                .into_inner();
            if reply.accepted {
                Ok(())
            } else {
                Err(DaemonError::PermissionDenied(format!(
                    "by `{}`: {}",
                    p.party,
                    confide_mpc::clean(&reply.reason)
                )))
            }
        }
    });
    match futures::future::try_join_all(futs).await {
        Ok(_) => Ok((spec, options, abort)),
        Err(e) => {
            let _ = d
                .jobs
                .abort(&spec.job_id, None, format!("not started: {e}"));
            d.jobs
                .set_state(&spec.job_id, JobState::Failed, &e.to_string());
            d.metrics.job(spec.kind.as_str(), "failed");
            // Peers that did accept are told to stop (the public rendering only).
            jobs::tell_peers_abort(d, &spec, &e.public()).await;
            Err(e)
        }
    }
}

/// Fails before any work if the output file cannot be created where asked (a missing
/// folder is created, as the writer would): a probe file is created next to it and removed.
fn check_writable(output: &Path) -> Result<(), DaemonError> {
    let cannot = |why: String| {
        DaemonError::InvalidRequest(format!(
            "cannot write the output {}: {why}",
            output.display()
        ))
    };
    if output.is_dir() {
        return Err(cannot("it is a directory".into()));
    }
    let dir = output
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| cannot("it names no folder".into()))?;
    let name = output
        .file_name()
        .ok_or_else(|| cannot("it names no file".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| cannot(e.to_string()))?;
    let probe = dir.join(format!(
        ".{}.{:016x}.probe",
        name.to_string_lossy(),
        rand::random::<u64>()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(cannot(e.to_string())),
    }
}
