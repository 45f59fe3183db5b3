//! The `Peer` service: daemon to daemon.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use confide_proto::peer_server::{Peer, PeerServer};
use confide_proto::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{Daemon, VERSION, jobs};
use crate::audit::commitment;
use crate::base::error::DaemonError;
use crate::base::ids::{now_ms, valid_job_id};
use crate::base::job::JobSpec;
use crate::kinds::{JobOptions, Plan};
use crate::net::MAX_MESSAGE;
use crate::net::authz::{caller, known_peer};

/// How long a `job.dataset-commitment` call waits for the hash of a large dataset.
const COMMITMENT_WAIT: Duration = Duration::from_secs(50);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[derive(Debug)]
pub struct PeerService {
    daemon: Arc<Daemon>,
}

pub fn server(daemon: Arc<Daemon>) -> PeerServer<PeerService> {
    PeerServer::new(PeerService { daemon })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl PeerService {
    fn known(&self, name: &str) -> Result<(), Status> {
        known_peer(self.daemon.me(), &self.daemon.cfg.peers, name)
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        let who = caller(&req)?;
        if who != self.daemon.me() {
            self.known(&who)?;
        }
        Ok(Response::new(PingReply {
            party: self.daemon.me().to_string(),
            version: VERSION.into(),
        }))
    }

    async fn propose(&self, req: Request<JobProposal>) -> Result<Response<ProposalReply>, Status> {
        let who = caller(&req)?;
        self.known(&who)?;
        let p = req.into_inner();
        let d = &self.daemon;
        let me = d.me();
        let initiator = p.parties.first().map(|x| x.party.as_str()).unwrap_or("");
        if initiator != who {
            return Err(Status::permission_denied(format!(
                "`{who}` proposed a job whose initiator is `{initiator}`"
            )));
        }
        if !valid_job_id(&p.job_id) {
            return Err(Status::invalid_argument("malformed job id"));
        }
        if !p.parties.iter().any(|x| x.party == me) {
            return Err(Status::invalid_argument(format!(
                "`{me}` is not a party of this job"
            )));
        }
        for x in &p.parties {
            if x.party != me {
                self.known(&x.party)?;
            }
        }
        // The full reason is logged here; only its public rendering is sent back.
        let refuse = |e: DaemonError| {
            let reason = e.public();
            let error = crate::base::error::printable(&e.to_string());
            tracing::warn!(job = %p.job_id, kind = %p.kind, peer = %who, %error, "refused job");
            Ok(Response::new(ProposalReply {
                accepted: false,
                reason,
            }))
        };
        let plan = Plan {
            me,
            initiator,
            parties: &p.parties,
        };
        let checked = JobOptions::parse(&p.kind, &p.options_json)
            .and_then(|o| o.check_peer(&d.current(), &plan).map(|()| o));
        let options = match checked {
            Ok(o) => o,
            // The initiator adds "refused:" itself.
            Err(DaemonError::PermissionDenied(m)) => {
                return refuse(DaemonError::local(m.clone(), confide_mpc::clean(&m)));
            }
            Err(other) => return refuse(other),
        };
        let deadline_ms = p.deadline_unix_ms.saturating_sub(now_ms());
        let spec = JobSpec {
            job_id: p.job_id.clone(),
            kind: options.kind(),
            parties: p.parties.clone(),
            options_json: options.to_json(),
            deadline: Duration::from_millis(deadline_ms.clamp(1_000, 30 * 86_400_000)),
            output: None,
        };
        let abort = d.jobs.register(&spec).map_err(Status::from)?;
        // A salted commitment to the dataset this party brings, for the initiator's audit
        // entry: hashed in the background (the reply does not wait for a large file).
        let now = d.current();
        if let Some(ds) = now
            .datasets
            .get(plan.my_dataset())
            .filter(|d| d.problem.is_none())
        {
            d.commitments.start(
                d.cfg.party.data_dir.clone(),
                &spec.job_id,
                initiator,
                ds.path.clone(),
            );
        }
        tracing::info!(job = %spec.job_id, kind = %spec.kind, peer = %who, "accepted job");
        let daemon = d.clone();
        let span = tracing::info_span!("job", job = %spec.job_id, kind = %spec.kind, party = %me);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _ = jobs::run(daemon, spec, options, abort, None).await;
            },
            span,
        ));
        Ok(Response::new(ProposalReply {
            accepted: true,
            reason: String::new(),
        }))
    }

    type StreamStream = BoxStream<Frame>;

    async fn stream(
        &self,
        req: Request<Streaming<Frame>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let who = caller(&req)?;
        self.known(&who)?;
        let job_id = req
            .metadata()
            .get(JOB_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| Status::invalid_argument(format!("missing `{JOB_HEADER}` header")))?;
        // Only a party of a live job here may open a stream for it.
        let grace = Duration::from_secs(self.daemon.cfg.policy.peer_timeout_secs.clamp(1, 10));
        if !self.daemon.jobs.wait_for_party(&job_id, &who, grace).await {
            tracing::warn!(job = %job_id, peer = %who, "refused a stream: not a party of a live job here");
            return Err(Status::permission_denied(format!(
                "`{who}` is not a party of a live job {job_id} at `{}`",
                self.daemon.me()
            )));
        }
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
        self.known(&who)?;
        let r = req.into_inner();
        if r.reason == RESTARTED {
            let _ = self.daemon.jobs.peer_restarted(&r.job_id, &who);
            return Ok(Response::new(AbortReply {}));
        }
        // What a peer says is echoed only cleaned (no control characters, bounded).
        let reason = format!(
            "peer `{who}` ended the job: {}",
            confide_mpc::clean(&r.reason)
        );
        // Unknown jobs are ignored: the abort may overtake a proposal that was refused. The
        // initiator's cause is recorded even when the job already failed here.
        let _ = self.daemon.jobs.initiator_failed(&r.job_id, &who, &reason);
        let _ = self.daemon.jobs.abort(&r.job_id, Some(&who), reason);
        Ok(Response::new(AbortReply {}))
    }

    async fn call(&self, req: Request<CallRequest>) -> Result<Response<CallReply>, Status> {
        let who = caller(&req)?;
        if who != self.daemon.me() {
            self.known(&who)?;
        }
        let r = req.into_inner();
        if r.method == commitment::METHOD {
            let c = self
                .daemon
                .commitments
                .get(&r.job_id, &who, COMMITMENT_WAIT)
                .await
                .map_err(Status::from)?;
            return Ok(Response::new(CallReply {
                payload: c.to_vec(),
            }));
        }
        let Some(method) = r.method.strip_prefix("risk.") else {
            return Err(Status::invalid_argument(format!(
                "unknown call `{}`",
                r.method
            )));
        };
        let node = self.daemon.require_risk_node().await.map_err(|e| {
            tracing::warn!(caller = %who, "risk: refused a compute request: not a compute node");
            Status::from(e)
        })?;
        let payload = node
            .handle_call(&who, method, r.payload)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(CallReply { payload }))
    }
}

/// The `Abort` reason a daemon sends, after a restart, for each job the restart cut off.
pub const RESTARTED: &str = "restarted during the job";

/// After a restart: tells every other party of each job this start found cut off that
/// this daemon restarted during it (`Peer.Abort` with [`RESTARTED`]), so each records that
/// cause rather than only the broken link. Parties that are down are retried every 2 s for
/// a minute.
pub async fn restart_notice(daemon: Arc<Daemon>) {
    let me = daemon.me().to_string();
    let mut due: Vec<(String, String)> = daemon
        .jobs
        .interrupted
        .iter()
        .flat_map(|j| {
            j.parties
                .iter()
                .filter(|p| **p != me)
                .map(|p| (j.job_id.clone(), p.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !due.is_empty() && tokio::time::Instant::now() < deadline {
        let tries = due
            .iter()
            .map(|(job, peer)| jobs::send_abort(&daemon, peer, job, RESTARTED));
        let done = futures::future::join_all(tries).await;
        let mut it = done.into_iter();
        due.retain(|_| !it.next().unwrap_or(false));
        if !due.is_empty() {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    for (job, peer) in due {
        tracing::warn!(%job, %peer, "could not tell the peer that this daemon restarted during the job");
    }
}
