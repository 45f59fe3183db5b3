//! Shared test fixtures: a mock audit log (gate + evidence source) and an in-memory alliance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use confide_mpc::transport::{ChannelTransport, Recording, RecordingTransport, memory_mesh};
use confide_risk::audit::{AuditGate, LoggedEntry};
use confide_risk::codec::Purpose;
use confide_risk::{
    ComputeNode, EvidenceSource, OprfKey, PairSeed, RiskError, RiskIndex, Role, serve,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

/// A stand-in for the audit chain: entries `(member, hash, serial)` that were "logged", each
/// with its logged time (ms; set with [`MockLog::set_time_ms`]).
#[derive(Debug)]
pub struct MockLog {
    entries: Mutex<HashMap<Vec<u8>, u64>>,
    serial: AtomicU64,
    now_ms: AtomicU64,
}

impl Default for MockLog {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
            serial: AtomicU64::new(0),
            now_ms: AtomicU64::new(1_700_000_000_000),
        }
    }
}

fn entry(member: &str, hash: &[u8; 32], serial: u64) -> Vec<u8> {
    let mut e = b"entry|".to_vec();
    e.extend_from_slice(member.as_bytes());
    e.push(b'|');
    e.extend_from_slice(hash);
    e.extend_from_slice(&serial.to_le_bytes());
    e
}

/// Evidence: `u16le(len(entry)) ‖ entry ‖ anything` — like JSON whitespace, bytes after the
/// entry are ignored, so one entry has many valid encodings.
pub fn encode_evidence(entry: &[u8], trailing: &[u8]) -> Vec<u8> {
    let mut ev = (entry.len() as u16).to_le_bytes().to_vec();
    ev.extend_from_slice(entry);
    ev.extend_from_slice(trailing);
    ev
}

fn entry_of(evidence: &[u8]) -> Option<&[u8]> {
    let len = u16::from_le_bytes(evidence.get(..2)?.try_into().ok()?) as usize;
    evidence.get(2..2 + len)
}

impl MockLog {
    /// Logs an entry for `member` at the log's current time and returns it as evidence.
    pub fn log(&self, member: &str, hash: &[u8; 32]) -> Vec<u8> {
        let e = entry(member, hash, self.serial.fetch_add(1, Ordering::Relaxed));
        let t = self.now_ms.load(Ordering::Relaxed);
        self.entries.lock().unwrap().insert(e.clone(), t);
        encode_evidence(&e, b"")
    }

    /// Sets the time at which later entries are logged.
    pub fn set_time_ms(&self, t: u64) {
        self.now_ms.store(t, Ordering::Relaxed);
    }
}

/// The gate: evidence must be a logged entry of this querier carrying this hash. The entry's
/// canonical id is the SHA-256 of the entry (not of the evidence bytes).
#[derive(Debug, Clone)]
pub struct MockGate(pub Arc<MockLog>);

impl AuditGate for MockGate {
    fn check(&self, querier: &str, hash: [u8; 32], evidence: &[u8]) -> Result<(), RiskError> {
        self.verify(querier, hash, evidence).map(|_| ())
    }

    fn verify(
        &self,
        querier: &str,
        hash: [u8; 32],
        evidence: &[u8],
    ) -> Result<LoggedEntry, RiskError> {
        let refuse = |reason: &str| RiskError::AuditRefused {
            querier: querier.to_string(),
            reason: reason.to_string(),
        };
        let e = entry_of(evidence).ok_or_else(|| refuse("no such logged entry (malformed)"))?;
        let Some(&logged_at) = self.0.entries.lock().unwrap().get(e) else {
            return Err(refuse("no such logged entry"));
        };
        let serial: [u8; 8] = e[e.len() - 8..].try_into().unwrap();
        if entry(querier, &hash, u64::from_le_bytes(serial)) != e {
            return Err(refuse(
                "entry does not bind this querier and these blinded elements",
            ));
        }
        Ok(LoggedEntry {
            id: Sha256::digest(e).into(),
            logged_at_ms: Some(logged_at),
        })
    }
}

/// A member's evidence source over the mock log.
#[derive(Debug, Clone)]
pub struct MockSource {
    pub log: Arc<MockLog>,
    pub member: String,
}

impl EvidenceSource for MockSource {
    async fn evidence(&self, _p: Purpose, hash: [u8; 32], _n: usize) -> Result<Vec<u8>, RiskError> {
        Ok(self.log.log(&self.member, &hash))
    }
}

pub fn nodes(
    dir: &std::path::Path,
    log: &Arc<MockLog>,
    seed: u64,
) -> (ComputeNode<MockGate>, ComputeNode<MockGate>, OprfKey) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let key = OprfKey::random(&mut rng);
    let (k0, k1) = key.split(&mut rng);
    let pair = PairSeed::new([seed as u8; 32]);
    let n0 = ComputeNode::new(
        Role::S0,
        k0,
        pair.clone(),
        RiskIndex::open(dir.join("s0.redb")).unwrap(),
        MockGate(log.clone()),
    );
    let n1 = ComputeNode::new(
        Role::S1,
        k1,
        pair,
        RiskIndex::open(dir.join("s1.redb")).unwrap(),
        MockGate(log.clone()),
    );
    (n0, n1, key)
}

pub type Party = RecordingTransport<ChannelTransport>;

/// An alliance in memory: compute nodes "s0", "s1" serving every other party.
#[allow(missing_debug_implementations)]
pub struct Alliance {
    pub clients: Vec<Party>,
    pub recording: Recording,
    pub log: Arc<MockLog>,
    pub servers: Vec<tokio::task::JoinHandle<()>>,
    pub _dir: tempfile::TempDir,
}

impl Alliance {
    /// Two fresh nodes (mock log) serving `clients`.
    pub fn start(clients: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(MockLog::default());
        let (n0, n1, _) = nodes(dir.path(), &log, 42);
        Self::serve(n0, n1, log, dir, clients)
    }

    /// `n0`, `n1` (gated by `log`) serving `clients`; `dir` is kept alive with the alliance.
    pub fn serve(
        n0: ComputeNode<MockGate>,
        n1: ComputeNode<MockGate>,
        log: Arc<MockLog>,
        dir: tempfile::TempDir,
        clients: &[&str],
    ) -> Self {
        let mut names = vec!["s0", "s1"];
        names.extend_from_slice(clients);
        let recording = Recording::default();
        let mut mesh: Vec<Party> = memory_mesh(&names, 8)
            .into_iter()
            .map(|t| RecordingTransport::new(t, recording.clone()))
            .collect();
        let client_ts: Vec<Party> = mesh.drain(2..).collect();
        let t1 = Arc::new(mesh.pop().unwrap());
        let t0 = Arc::new(mesh.pop().unwrap());
        let mut servers = Vec::new();
        for (node, t) in [(Arc::new(n0), t0), (Arc::new(n1), t1)] {
            for c in clients {
                let (node, t, c) = (node.clone(), t.clone(), c.to_string());
                servers.push(tokio::spawn(async move {
                    serve(&*node, &*t, &c).await.unwrap();
                }));
            }
        }
        Alliance {
            clients: client_ts,
            recording,
            log,
            servers,
            _dir: dir,
        }
    }

    pub fn source(&self, member: &str) -> MockSource {
        MockSource {
            log: self.log.clone(),
            member: member.to_string(),
        }
    }

    /// Disconnects the clients and waits for the node loops to end cleanly.
    pub async fn shutdown(self) {
        drop(self.clients);
        for s in self.servers {
            s.await.unwrap();
        }
    }
}

/// The canonical id [`MockGate`] gives the entry inside `evidence`.
pub fn entry_id(evidence: &[u8]) -> [u8; 32] {
    Sha256::digest(entry_of(evidence).unwrap()).into()
}
