//! Prometheus metrics: jobs by kind and status, bytes sent and received per peer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes sent to and received from one peer; links hold it, so counting a frame is two
/// relaxed atomic adds (no lock, no allocation).
#[derive(Debug, Default)]
pub struct PeerBytes {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// The daemon's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<(String, String), u64>>,
    bytes: Mutex<BTreeMap<String, Arc<PeerBytes>>>,
}

impl Metrics {
    /// Counts a job reaching `status`.
    pub fn job(&self, kind: &str, status: &str) {
        if let Ok(mut m) = self.jobs.lock() {
            *m.entry((kind.to_string(), status.to_string())).or_default() += 1;
        }
    }

    /// The byte counters of `peer` (created on first use).
    pub fn peer(&self, peer: &str) -> Arc<PeerBytes> {
        match self.bytes.lock() {
            Ok(mut m) => m.entry(peer.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Adds bytes sent to / received from `peer`.
    pub fn bytes(&self, peer: &str, sent: u64, received: u64) {
        let c = self.peer(peer);
        c.sent.fetch_add(sent, Ordering::Relaxed);
        c.received.fetch_add(received, Ordering::Relaxed);
    }

    /// Bytes (sent, received) for `peer` so far.
    pub fn peer_bytes(&self, peer: &str) -> (u64, u64) {
        let c = self.peer(peer);
        (
            c.sent.load(Ordering::Relaxed),
            c.received.load(Ordering::Relaxed),
        )
    }

    /// The Prometheus text exposition.
    pub fn render(&self, party: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP confide_jobs_total Jobs by kind and final status."
        );
        let _ = writeln!(s, "# TYPE confide_jobs_total counter");
        if let Ok(m) = self.jobs.lock() {
            for ((kind, status), n) in m.iter() {
                let _ = writeln!(
                    s,
                    "confide_jobs_total{{party=\"{party}\",kind=\"{kind}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP confide_peer_bytes_sent_total Protocol bytes sent to each peer."
        );
        let _ = writeln!(s, "# TYPE confide_peer_bytes_sent_total counter");
        let _ = writeln!(
            s,
            "# HELP confide_peer_bytes_received_total Protocol bytes received from each peer."
        );
        let _ = writeln!(s, "# TYPE confide_peer_bytes_received_total counter");
        if let Ok(m) = self.bytes.lock() {
            for (peer, c) in m.iter() {
                let (sent, recv) = (
                    c.sent.load(Ordering::Relaxed),
                    c.received.load(Ordering::Relaxed),
                );
                let _ = writeln!(
                    s,
                    "confide_peer_bytes_sent_total{{party=\"{party}\",peer=\"{peer}\"}} {sent}"
                );
                let _ = writeln!(
                    s,
                    "confide_peer_bytes_received_total{{party=\"{party}\",peer=\"{peer}\"}} {recv}"
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters() {
        let m = super::Metrics::default();
        m.job("psi", "succeeded");
        m.job("psi", "succeeded");
        m.bytes("bob", 10, 20);
        let text = m.render("alice");
        assert!(
            text.contains(
                "confide_jobs_total{party=\"alice\",kind=\"psi\",status=\"succeeded\"} 2"
            )
        );
        assert!(
            text.contains("confide_peer_bytes_received_total{party=\"alice\",peer=\"bob\"} 20")
        );
    }
}
