//! The `Audit` gRPC service: the sequencer's `Append`, members' `Replicate` and `Fetch`,
//! and the local CLI's read access.

use std::sync::Arc;

use confide_audit::{Entry, ReplicateBatch, handle_replicate, serve_fetch};
use confide_proto::audit_server::{Audit, AuditServer};
use confide_proto::*;
use tonic::{Request, Response, Status};

use super::state::AuditState;
use crate::base::error::DaemonError;
use crate::net::MAX_MESSAGE;
use crate::net::authz::{caller, only_self};

/// Most entries in one answer to `Audit.Log` (about 2.5 MB of JSON; the CLI reads pages).
pub const LOG_PAGE: u64 = 10_000;

/// The Audit gRPC service.
#[derive(Debug)]
pub struct AuditService {
    me: String,
    audit: Option<Arc<AuditState>>,
}

pub fn audit_server(me: String, audit: Option<Arc<AuditState>>) -> AuditServer<AuditService> {
    AuditServer::new(AuditService { me, audit })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl AuditService {
    fn state(&self) -> Result<&Arc<AuditState>, Status> {
        self.audit
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this party has no audit chain configured"))
    }
}

fn st(e: DaemonError) -> Status {
    Status::from(e)
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn append(&self, req: Request<AppendRequest>) -> Result<Response<AppendReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?;
        if !a.is_sequencer() {
            let (view, seq) = a
                .with(|s| Ok((s.view(), s.sequencer().to_string())))
                .map_err(st)?;
            return Err(Status::failed_precondition(format!(
                "`{}` is not the sequencer (view {view}: `{seq}`)",
                self.me
            )));
        }
        let entry = Entry::from_bytes(&req.into_inner().entry)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if entry.body().member != who {
            tracing::warn!(caller = %who, member = %entry.body().member, "refused audit entry signed for another member");
            return Err(Status::permission_denied(format!(
                "`{who}` may only append its own entries"
            )));
        }
        let a2 = a.clone();
        let promise = tokio::task::spawn_blocking(move || a2.append_or_promise(&entry))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        // Wakes the replication loop (and ends a backoff `who` may be in).
        a.contacted(&who);
        Ok(Response::new(AppendReply {
            index: promise.index,
            promise: serde_json::to_vec(&promise).map_err(|e| Status::internal(e.to_string()))?,
        }))
    }

    async fn replicate(
        &self,
        req: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?.clone();
        if !a.genesis.is_member(&who) {
            return Err(Status::permission_denied(format!(
                "`{who}` is not a member"
            )));
        }
        a.contacted(&who);
        let r = req.into_inner();
        let reply = tokio::task::spawn_blocking(move || -> Result<ReplicateReply, DaemonError> {
            let batch = ReplicateBatch::from_wire(
                r.first_index,
                &r.entries,
                &r.checkpoint,
                &r.consistency_proof,
                &r.final_checkpoints,
                (r.view, &r.new_view),
            )?;
            let view = a.with(|s| Ok(s.view()))?;
            let ack = a.with(|s| handle_replicate(s, &who, &batch))?;
            if a.with(|s| Ok(s.view()))? != view {
                tracing::warn!(view = batch.view, sequencer = %who, "audit: entered a new view");
                a.role_changed();
            }
            a.note_finals();
            Ok(ReplicateReply {
                cosignature: ack.cosignature_json()?,
                size: ack.size,
                new_view: ack.new_view_json()?,
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(st)?;
        Ok(Response::new(reply))
    }

    async fn fetch(&self, req: Request<FetchRequest>) -> Result<Response<FetchReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?;
        if !a.genesis.is_member(&who) {
            return Err(Status::permission_denied(format!(
                "`{who}` is not a member"
            )));
        }
        a.contacted(&who);
        let r = req.into_inner();
        let batch = a
            .with(|s| serve_fetch(s, r.from_index, r.limit))
            .map_err(st)?;
        Ok(Response::new(FetchReply {
            entries: batch
                .entries
                .iter()
                .map(|e| e.as_bytes().to_vec())
                .collect(),
            checkpoint: batch
                .final_checkpoint
                .map(|c| c.to_note())
                .unwrap_or_default(),
            signed_checkpoint: batch.latest_signed.map(|c| c.to_note()).unwrap_or_default(),
        }))
    }

    async fn vote(&self, req: Request<VoteRequest>) -> Result<Response<VoteReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?.clone();
        let view = req.into_inner().view;
        if a.genesis.sequencer_at(view) != who {
            return Err(Status::permission_denied(format!(
                "`{who}` is not the sequencer of view {view}"
            )));
        }
        let vote = tokio::task::spawn_blocking(move || a.with(|s| s.vote(view)))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        tracing::warn!(view, sequencer = %who, "audit: voted for a new sequencer");
        Ok(Response::new(VoteReply {
            vote: vote.to_json().map_err(|e| st(e.into()))?,
        }))
    }

    async fn take_over(
        &self,
        req: Request<TakeOverRequest>,
    ) -> Result<Response<TakeOverReply>, Status> {
        let who = caller(&req)?;
        let a = self.state()?.clone();
        if !a.genesis.is_member(&who) {
            return Err(Status::permission_denied(format!(
                "`{who}` is not a member"
            )));
        }
        let view = req.into_inner().view;
        if a.genesis.sequencer_at(view) != self.me {
            return Err(Status::invalid_argument(format!(
                "`{}` is not the sequencer of view {view}",
                self.me
            )));
        }
        let nv = a.lead(view, true).await.map_err(st)?;
        Ok(Response::new(TakeOverReply {
            new_view: nv.to_json().map_err(|e| st(e.into()))?,
        }))
    }

    async fn log(&self, req: Request<LogRequest>) -> Result<Response<LogReply>, Status> {
        only_self(&self.me, &req, "read its own audit log through this call")?;
        let a = self.state()?;
        let r = req.into_inner();
        let summary = r.summary;
        let json = a
            .with(|s| {
                if summary {
                    let sum = s.summary()?;
                    let v: serde_json::Map<String, serde_json::Value> = sum
                        .into_iter()
                        .map(|(k, m)| (k, serde_json::json!({"started": m.started, "served": m.served})))
                        .collect();
                    Ok(serde_json::Value::Object(v))
                } else {
                    // One page: a long log does not fit one message (nor the daemon's memory).
                    let size = s.size();
                    let from = r.from_index.min(size);
                    let limit = if r.limit == 0 { LOG_PAGE } else { r.limit.min(LOG_PAGE) };
                    let entries = s.entries_range(from, size.min(from.saturating_add(limit)))?;
                    let final_size = s.latest_final().map(|c| c.checkpoint.size);
                    Ok(serde_json::json!({
                        "size": size,
                        "final_size": final_size,
                        "entries": (from..).zip(&entries).map(|(i, e)| {
                            let b = e.body();
                            serde_json::json!({"index": i, "timestamp_ms": b.timestamp_ms, "member": b.member, "kind": b.kind.as_str(), "job_id": b.job_id, "served_by": b.served_by, "fingerprint": hex::encode(b.fingerprint)})
                        }).collect::<Vec<_>>(),
                    }))
                }
            })
            .map_err(st)?;
        Ok(Response::new(LogReply {
            json: json.to_string(),
        }))
    }

    async fn verify(&self, req: Request<VerifyRequest>) -> Result<Response<VerifyReply>, Status> {
        only_self(&self.me, &req, "read its own audit log through this call")?;
        let a = self.state()?;
        let fault = a.with(|s| Ok(s.fault().map(str::to_string))).map_err(st)?;
        match a.with(|s| s.verify_all()) {
            Ok(r) if fault.is_none() => Ok(Response::new(VerifyReply {
                ok: true,
                report: format!(
                    "{} entries verified (signatures, Merkle root {}), final checkpoint at size {}",
                    r.entries,
                    hex::encode(r.root),
                    r.final_size
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "none yet".into())
                ),
            })),
            Ok(_) => Ok(Response::new(VerifyReply {
                ok: false,
                report: fault.unwrap_or_default(),
            })),
            Err(e) => Ok(Response::new(VerifyReply {
                ok: false,
                report: e.to_string(),
            })),
        }
    }

    async fn prove(&self, req: Request<ProveRequest>) -> Result<Response<ProveReply>, Status> {
        only_self(&self.me, &req, "read its own audit log through this call")?;
        let a = self.state()?;
        let job = req.into_inner().job_id;
        let bundle = a.with(|s| s.prove_job(&job)).map_err(st)?;
        Ok(Response::new(ProveReply {
            bundle_json: bundle.to_json(),
        }))
    }
}
