//! Shared test fixtures: a mock audit log (gate + evidence source) and an in-memory alliance.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use confide_mpc::transport::{ChannelTransport, Recording, RecordingTransport, memory_mesh};
use confide_risk::audit::AuditGate;
use confide_risk::codec::Purpose;
use confide_risk::{
    ComputeNode, EvidenceSource, OprfKey, PairSeed, RiskError, RiskIndex, Role, serve,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A stand-in for the audit chain: entries `(member, hash, serial)` that were "logged".
#[derive(Debug, Default)]
pub struct MockLog {
    entries: Mutex<HashSet<Vec<u8>>>,
    serial: AtomicU64,
}

fn entry(member: &str, hash: &[u8; 32], serial: u64) -> Vec<u8> {
    let mut e = b"entry|".to_vec();
    e.extend_from_slice(member.as_bytes());
    e.push(b'|');
    e.extend_from_slice(hash);
    e.extend_from_slice(&serial.to_le_bytes());
    e
}

impl MockLog {
    /// Logs an entry for `member` and returns it as evidence.
    pub fn log(&self, member: &str, hash: &[u8; 32]) -> Vec<u8> {
        let e = entry(member, hash, self.serial.fetch_add(1, Ordering::Relaxed));
        self.entries.lock().unwrap().insert(e.clone());
        e
    }
}

/// The gate: evidence must be a logged entry of this querier carrying this hash.
#[derive(Debug, Clone)]
pub struct MockGate(pub Arc<MockLog>);

impl AuditGate for MockGate {
    fn check(&self, querier: &str, hash: [u8; 32], evidence: &[u8]) -> Result<(), RiskError> {
        let refuse = |reason: &str| RiskError::AuditRefused {
            querier: querier.to_string(),
            reason: reason.to_string(),
        };
        if !self.0.entries.lock().unwrap().contains(evidence) {
            return Err(refuse("no such logged entry"));
        }
        let serial: [u8; 8] = evidence[evidence.len() - 8..].try_into().unwrap();
        if entry(querier, &hash, u64::from_le_bytes(serial)) != evidence {
            return Err(refuse(
                "entry does not bind this querier and these blinded elements",
            ));
        }
        Ok(())
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
    pub key: OprfKey,
    pub _dir: tempfile::TempDir,
}

impl Alliance {
    pub fn start(clients: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(MockLog::default());
        let (n0, n1, key) = nodes(dir.path(), &log, 42);
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
            key,
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
