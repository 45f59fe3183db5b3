//! The `Peer` and `Control` gRPC services.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confide_proto::control_server::{Control, ControlServer};
use confide_proto::peer_server::{Peer, PeerServer};
use confide_proto::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Daemon;
use super::jobs::{self, JobSpec};
use super::links::MAX_MESSAGE;
use crate::error::{DaemonError, status_line};
use crate::tls::caller;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Debug)]
pub struct PeerService {
    daemon: Arc<Daemon>,
}

#[derive(Debug)]
pub struct ControlService {
    daemon: Arc<Daemon>,
}

pub fn peer_server(daemon: Arc<Daemon>) -> PeerServer<PeerService> {
    PeerServer::new(PeerService { daemon })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

pub fn control_server(daemon: Arc<Daemon>) -> ControlServer<ControlService> {
    ControlServer::new(ControlService { daemon })
}

/// A peer must be a member this daemon knows.
fn known_peer(daemon: &Daemon, name: &str) -> Result<(), Status> {
    if daemon.cfg.peers.contains_key(name) {
        Ok(())
    } else {
        tracing::warn!(peer = name, "refused: not a peer of this party");
        Err(Status::permission_denied(format!(
            "`{name}` is not a peer of `{}`",
            daemon.me
        )))
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let who = caller(&req)?;
        if who != self.daemon.me {
            known_peer(&self.daemon, &who)?;
        }
        Ok(Response::new(PingReply {
            party: self.daemon.me.clone(),
            version: VERSION.into(),
        }))
    }

    async fn propose(&self, req: Request<JobProposal>) -> Result<Response<ProposalReply>, Status> {
        let who = caller(&req)?;
        known_peer(&self.daemon, &who)?;
        let p = req.into_inner();
        let d = &self.daemon;
        let initiator = p
            .parties
            .first()
            .map(|x| x.party.clone())
            .unwrap_or_default();
        if initiator != who {
            return Err(Status::permission_denied(format!(
                "`{who}` proposed a job whose initiator is `{initiator}`"
            )));
        }
        let mine = p.parties.iter().find(|x| x.party == d.me).ok_or_else(|| {
            Status::invalid_argument(format!("`{}` is not a party of this job", d.me))
        })?;
        for x in &p.parties {
            if x.party != d.me {
                known_peer(d, &x.party)?;
            }
        }
        let refuse = |reason: String| {
            tracing::warn!(job = %p.job_id, kind = %p.kind, peer = %who, %reason, "refused job");
            Ok(Response::new(ProposalReply {
                accepted: false,
                reason,
                dataset_hash: Vec::new(),
            }))
        };
        if let Err(e) = crate::jobs::check_peer(d, &p.kind, &mine.dataset, &who, &p.options) {
            // The initiator adds "refused:" itself.
            return refuse(match e {
                DaemonError::PermissionDenied(m) => m,
                other => other.to_string(),
            });
        }
        let deadline_ms = p.deadline_unix_ms.saturating_sub(jobs::now_ms());
        let spec = JobSpec {
            job_id: p.job_id.clone(),
            kind: p.kind.clone(),
            parties: p.parties.clone(),
            options: p.options.into_iter().collect(),
            deadline: Duration::from_millis(deadline_ms.clamp(1_000, 30 * 86_400_000)),
            output: None,
            dataset_hashes: BTreeMap::new(),
        };
        // The content hash of the dataset this party brings, for the initiator's audit entry.
        let dataset_hash = match d.cfg.datasets.get(&mine.dataset) {
            Some(ds) if !mine.dataset.is_empty() => {
                let path = ds.path.clone();
                tokio::task::spawn_blocking(move || crate::audit::file_hash(&path))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(Status::from)?
                    .to_vec()
            }
            _ => Vec::new(),
        };
        let abort = jobs::register(d, &spec).map_err(Status::from)?;
        tracing::info!(job = %spec.job_id, kind = %spec.kind, peer = %who, "accepted job");
        let daemon = d.clone();
        let span = tracing::info_span!("job", job = %spec.job_id, kind = %spec.kind, party = %d.me);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _ = jobs::run(daemon, spec, abort, None).await;
            },
            span,
        ));
        Ok(Response::new(ProposalReply {
            accepted: true,
            reason: String::new(),
            dataset_hash,
        }))
    }

    type StreamStream = BoxStream<Frame>;

    async fn stream(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let who = caller(&req)?;
        known_peer(&self.daemon, &who)?;
        let job_id = req
            .metadata()
            .get(JOB_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Status::invalid_argument(format!("missing `{JOB_HEADER}` header")))?;
        let out = self
            .daemon
            .rendezvous
            .accept(&job_id, &who, req.into_inner(), self.daemon.metrics.clone())
            .map_err(Status::from)?;
        use tokio_stream::StreamExt;
        Ok(Response::new(Box::pin(out.map(Ok))))
    }

    async fn abort(&self, req: Request<AbortRequest>) -> Result<Response<AbortReply>, Status> {
        let who = caller(&req)?;
        known_peer(&self.daemon, &who)?;
        let r = req.into_inner();
        if let Ok(jobs) = self.daemon.jobs.lock()
            && let Some(rec) = jobs.get(&r.job_id)
            && rec.info.parties.contains(&who)
        {
            let reason = format!("peer `{who}` ended the job: {}", r.reason);
            rec.abort.send_if_modified(|a| {
                if a.is_none() {
                    *a = Some(reason);
                    true
                } else {
                    false
                }
            });
        }
        Ok(Response::new(AbortReply {}))
    }

    async fn call(&self, req: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        let who = caller(&req)?;
        if who != self.daemon.me {
            known_peer(&self.daemon, &who)?;
        }
        let r = req.into_inner();
        let payload = crate::jobs::handle_call(&self.daemon, &who, &r.method, &r.job_id, r.payload)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(CallReply { payload }))
    }
}

/// Only the party itself (holding its own certificate) may drive its daemon.
fn local_only<T>(daemon: &Daemon, req: &Request<T>) -> Result<(), Status> {
    let who = caller(req)?;
    if who == daemon.me {
        Ok(())
    } else {
        tracing::warn!(caller = %who, "refused control call from another party");
        Err(Status::permission_denied(format!(
            "only `{}` may control its own daemon; `{who}` may not",
            daemon.me
        )))
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<StatusReply>, Status> {
        local_only(&self.daemon, &req)?;
        let d = &self.daemon;
        let mut peers = Vec::new();
        if !req.get_ref().self_only {
            let futs = d.cfg.peers.iter().map(|(name, p)| async move {
                let started = Instant::now();
                let mut st = PeerStatus {
                    name: name.clone(),
                    address: p.address.clone(),
                    ..Default::default()
                };
                let res = match d.channels.client(name) {
                    Ok(mut c) => {
                        match tokio::time::timeout(Duration::from_secs(4), c.ping(PingRequest {}))
                            .await
                        {
                            Ok(Ok(r)) if r.get_ref().party == *name => Ok(()),
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
            });
            peers = futures::future::join_all(futs).await;
        }
        Ok(Response::new(StatusReply {
            party: d.me.clone(),
            version: VERSION.into(),
            peers,
            jobs_running: d.jobs_running(),
        }))
    }

    type SubmitStream = BoxStream<JobEvent>;

    async fn submit(
        &self,
        req: Request<SubmitRequest>,
    ) -> Result<Response<Self::SubmitStream>, Status> {
        local_only(&self.daemon, &req)?;
        let r = req.into_inner();
        let d = self.daemon.clone();
        let (spec, abort) = prepare(&d, r).await.map_err(Status::from)?;
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
        let span = tracing::info_span!("job", job = %spec.job_id, kind = %spec.kind, party = %d.me);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _ = jobs::run(d, spec, abort, Some(tx)).await;
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
        local_only(&self.daemon, &req)?;
        let jobs = self
            .daemon
            .jobs
            .lock()
            .map(|j| j.values().map(|r| r.info.clone()).collect())
            .unwrap_or_default();
        Ok(Response::new(ListJobsReply { jobs }))
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobReply>, Status> {
        local_only(&self.daemon, &req)?;
        let id = req.into_inner().job_id;
        let jobs = self
            .daemon
            .jobs
            .lock()
            .map_err(|_| Status::internal("job table poisoned"))?;
        let rec = jobs
            .get(&id)
            .ok_or_else(|| Status::from(DaemonError::JobNotFound(id.clone())))?;
        let cancelled = rec.abort.send_if_modified(|a| {
            if a.is_none() {
                *a = Some("cancelled by the submitter".into());
                true
            } else {
                false
            }
        });
        Ok(Response::new(CancelJobReply { cancelled }))
    }
}

/// Validates a submitted job locally, proposes it to every peer, and registers it.
async fn prepare(
    d: &Arc<Daemon>,
    r: SubmitRequest,
) -> Result<(JobSpec, super::links::FailureSignal), DaemonError> {
    crate::jobs::check_local(d, &r.kind, &r.dataset, &r.peers, &r.options)?;
    let mut parties = vec![DatasetRef {
        party: d.me.clone(),
        dataset: r.dataset.clone(),
    }];
    for p in &r.peers {
        if p.party == d.me || parties.iter().any(|q| q.party == p.party) {
            return Err(DaemonError::InvalidRequest(format!(
                "party `{}` named twice",
                p.party
            )));
        }
        d.channels.address(&p.party)?;
        parties.push(p.clone());
    }
    let timeout = if r.timeout_secs == 0 {
        d.cfg.policy.job_timeout_secs
    } else {
        r.timeout_secs
    };
    let options: BTreeMap<String, String> = r.options.into_iter().collect();
    let mut spec = JobSpec {
        job_id: jobs::new_job_id(),
        kind: r.kind.clone(),
        parties: parties.clone(),
        options: options.clone(),
        deadline: Duration::from_secs(timeout),
        output: (!r.output.is_empty()).then(|| r.output.clone().into()),
        dataset_hashes: BTreeMap::new(),
    };
    let proposal = JobProposal {
        job_id: spec.job_id.clone(),
        kind: spec.kind.clone(),
        parties,
        options: options.into_iter().collect(),
        deadline_unix_ms: jobs::now_ms() + timeout * 1000,
    };
    // Register first so that early streams from peers find the job.
    let abort = jobs::register(d, &spec)?;
    let futs = spec.parties.iter().skip(1).map(|p| {
        let proposal = proposal.clone();
        async move {
            let address = d.channels.address(&p.party)?.to_string();
            let peer_err = |message: String| DaemonError::Peer {
                peer: p.party.clone(),
                address: address.clone(),
                message,
            };
            let mut c = d.channels.client(&p.party)?;
            let reply = tokio::time::timeout(Duration::from_secs(10), c.propose(proposal))
                .await
                .map_err(|_| peer_err("no answer within 10 s".into()))?
                .map_err(|s| peer_err(status_line(&s)))?
                .into_inner();
            if reply.accepted {
                Ok((
                    p.party.clone(),
                    <[u8; 32]>::try_from(reply.dataset_hash.as_slice()).ok(),
                ))
            } else {
                Err(DaemonError::PermissionDenied(reply.reason))
            }
        }
    });
    let replies = futures::future::try_join_all(futs).await;
    if let Ok(hashes) = &replies {
        for (party, hash) in hashes {
            if let Some(h) = hash {
                spec.dataset_hashes.insert(party.clone(), *h);
            }
        }
    }
    if let Err(e) = replies {
        abort.send_if_modified(|a| {
            *a = Some(format!("not started: {e}"));
            true
        });
        if let Ok(mut jobs) = d.jobs.lock()
            && let Some(rec) = jobs.get_mut(&spec.job_id)
        {
            rec.info.state = JobState::Failed as i32;
            rec.info.error = e.to_string();
        }
        d.metrics.job(&spec.kind, "failed");
        // Peers that did accept are told to stop.
        for p in spec.parties.iter().skip(1) {
            if let Ok(mut c) = d.channels.client(&p.party) {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    c.abort(AbortRequest {
                        job_id: spec.job_id.clone(),
                        reason: e.to_string(),
                    }),
                )
                .await;
            }
        }
        return Err(e);
    }
    Ok((spec, abort))
}
