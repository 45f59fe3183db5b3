//! What the two risk kinds share: the compute-node caller and the evidence source over
//! [`Env`], with progress counting.

use std::sync::Mutex;
use std::time::Instant;

use confide_risk::{EvidenceSource, NodeCaller, Purpose, Request, RiskError};

use super::Env;
use crate::base::kind::JobKind;

/// [`NodeCaller`] over the job's [`Env`], reporting tagging/upload progress.
pub(super) struct EnvCaller<'a> {
    pub env: &'a dyn Env,
    /// (stage, done, total), when the job reports progress.
    pub progress: Option<Mutex<(&'static str, u64, u64)>>,
}

impl EnvCaller<'_> {
    fn track(&self, request: &[u8]) {
        let Some(p) = &self.progress else { return };
        let Ok(mut p) = p.lock() else { return };
        match Request::decode(request) {
            Ok(Request::Eval { elements, .. }) => {
                if p.0 != "tagging" {
                    *p = ("tagging", 0, p.2);
                }
                p.1 += elements.len() as u64;
            }
            Ok(Request::IngestBegin { rows, .. }) => {
                if p.0 != "uploading" {
                    *p = ("uploading", 0, 0);
                }
                p.2 += rows;
            }
            Ok(Request::IngestRows { rows, .. }) => p.1 += rows.len() as u64,
            _ => return,
        }
        self.env.progress(p.0, p.1, p.2, "");
    }
}

impl NodeCaller for EnvCaller<'_> {
    async fn call(&self, node: &str, request: Vec<u8>) -> confide_risk::Result<Vec<u8>> {
        self.track(&request);
        self.env
            .node_call(node, request)
            .await
            .map_err(|e| RiskError::Remote {
                node: node.to_string(),
                message: e.to_string(),
            })
    }
}

/// [`EvidenceSource`]: one signed audit entry per evaluation batch, through the sequencer.
pub(super) struct EnvEvidence<'a> {
    pub env: &'a dyn Env,
    pub kind: JobKind,
    pub served_by: Vec<String>,
}

impl EvidenceSource for EnvEvidence<'_> {
    async fn evidence(
        &self,
        _purpose: Purpose,
        blinded_points_hash: [u8; 32],
        _count: usize,
    ) -> confide_risk::Result<Vec<u8>> {
        let t = Instant::now();
        let ev = self
            .env
            .log_risk_eval(self.kind, self.served_by.clone(), blinded_points_hash)
            .await
            .map_err(|e| RiskError::AuditLog(e.to_string()))?;
        tracing::debug!(
            job = %self.env.spec().job_id,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "risk: logged before asking"
        );
        Ok(ev)
    }
}
