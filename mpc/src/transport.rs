//! The message transport every protocol crate runs over.
//!
//! Protocols are written against [`Transport`]: a party (`me`) exchanges opaque byte
//! messages with named peers. Sending and receiving take `&self`, so a protocol can send a
//! long stream to a peer while it receives the peer's stream (`tokio::join!`) without
//! deadlocking on bounded buffers. Messages between one pair of parties arrive in order.
//!
//! * [`ChannelTransport`] is the one implementation: bounded `tokio::mpsc` channels per
//!   peer (backpressure, never unbounded buffering). [`memory_mesh`] wires several of them
//!   together in memory for unit tests; the daemon pumps gRPC streams into the same
//!   channels ([`ChannelTransport::from_links`]).
//! * [`RecordingTransport`] wraps any transport and keeps a copy of every byte sent and
//!   received, for the privacy tests that inspect what crosses the wire.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, mpsc};

/// Default number of in-flight messages per direction and peer before `send` waits.
pub const DEFAULT_CHANNEL_DEPTH: usize = 8;

/// Errors raised by a transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer is not part of this job.
    #[error("unknown peer `{0}` (not a party of this job)")]
    UnknownPeer(String),
    /// The link to the peer closed: it disconnected, crashed or cancelled the job.
    #[error("peer `{peer}` disconnected: {reason}")]
    Disconnected {
        /// The peer's name.
        peer: String,
        /// What the transport knows about why.
        reason: String,
    },
    /// A received message could not be decoded by the protocol.
    #[error("malformed message from peer `{peer}`: {reason}")]
    Malformed {
        /// The peer's name.
        peer: String,
        /// What was wrong with it.
        reason: String,
    },
}

impl TransportError {
    /// What may leave this party about this error: the category and the peer, without
    /// the free-text reason (it may quote what a peer sent).
    pub fn public(&self) -> String {
        match self {
            TransportError::UnknownPeer(p) => format!("unknown peer `{}`", clean(p)),
            TransportError::Disconnected { peer, .. } => {
                format!("peer `{}` disconnected", clean(peer))
            }
            TransportError::Malformed { peer, .. } => {
                format!("malformed message from peer `{}`", clean(peer))
            }
        }
    }

    /// Convenience constructor for protocol decoders.
    pub fn malformed(peer: &str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            peer: peer.to_string(),
            reason: reason.into(),
        }
    }
}

/// `s` with control characters (NUL, escapes, newlines) replaced by `?`, at most 200
/// characters: for text that came from elsewhere and is echoed to a log or a terminal.
pub fn clean(s: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = s
        .chars()
        .take(MAX)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// A party's view of the network of one job.
pub trait Transport: Send + Sync {
    /// This party's name.
    fn me(&self) -> &str;
    /// The other parties of the job, sorted by name.
    fn peers(&self) -> Vec<String>;
    /// Sends one message to `to`. Waits while the link's buffer is full.
    fn send(
        &self,
        to: &str,
        msg: Vec<u8>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
    /// Receives the next message from `from`.
    fn recv(&self, from: &str) -> impl Future<Output = Result<Vec<u8>, TransportError>> + Send;
}

/// Byte and message counters for one direction of one link.
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Bytes sent to the peer.
    pub bytes_sent: AtomicU64,
    /// Bytes received from the peer.
    pub bytes_received: AtomicU64,
    /// Messages sent to the peer.
    pub messages_sent: AtomicU64,
    /// Messages received from the peer.
    pub messages_received: AtomicU64,
}

/// An item on an incoming link: a message, or the reason the link broke.
pub type Incoming = Result<Vec<u8>, String>;

/// The two channel ends that connect this party to one peer.
#[derive(Debug)]
pub struct Link {
    /// Messages to the peer.
    pub outgoing: mpsc::Sender<Vec<u8>>,
    /// Messages (or a failure reason) from the peer.
    pub incoming: mpsc::Receiver<Incoming>,
}

#[derive(Debug)]
struct Peer {
    tx: mpsc::Sender<Vec<u8>>,
    rx: AsyncMutex<mpsc::Receiver<Incoming>>,
    counters: Arc<LinkCounters>,
}

/// A [`Transport`] over bounded channels, one pair per peer.
#[derive(Debug)]
pub struct ChannelTransport {
    me: String,
    peers: BTreeMap<String, Peer>,
}

impl ChannelTransport {
    /// Builds a transport from one [`Link`] per peer (the daemon's gRPC pumps feed these).
    pub fn from_links(me: impl Into<String>, links: BTreeMap<String, Link>) -> Self {
        let peers = links
            .into_iter()
            .map(|(name, link)| {
                (
                    name,
                    Peer {
                        tx: link.outgoing,
                        rx: AsyncMutex::new(link.incoming),
                        counters: Arc::new(LinkCounters::default()),
                    },
                )
            })
            .collect();
        Self {
            me: me.into(),
            peers,
        }
    }

    /// The counters of the link to `peer`, if it is a peer of this job.
    pub fn counters(&self, peer: &str) -> Option<Arc<LinkCounters>> {
        self.peers.get(peer).map(|p| p.counters.clone())
    }

    fn peer(&self, name: &str) -> Result<&Peer, TransportError> {
        self.peers
            .get(name)
            .ok_or_else(|| TransportError::UnknownPeer(name.to_string()))
    }
}

impl Transport for ChannelTransport {
    fn me(&self) -> &str {
        &self.me
    }

    fn peers(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), TransportError> {
        let peer = self.peer(to)?;
        let len = msg.len() as u64;
        peer.tx
            .send(msg)
            .await
            .map_err(|_| TransportError::Disconnected {
                peer: to.to_string(),
                reason: "link closed while sending".into(),
            })?;
        peer.counters.bytes_sent.fetch_add(len, Ordering::Relaxed);
        peer.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        let peer = self.peer(from)?;
        let mut rx = peer.rx.lock().await;
        match rx.recv().await {
            Some(Ok(msg)) => {
                peer.counters
                    .bytes_received
                    .fetch_add(msg.len() as u64, Ordering::Relaxed);
                peer.counters
                    .messages_received
                    .fetch_add(1, Ordering::Relaxed);
                Ok(msg)
            }
            Some(Err(reason)) => Err(TransportError::Disconnected {
                peer: from.to_string(),
                reason,
            }),
            None => Err(TransportError::Disconnected {
                peer: from.to_string(),
                reason: "link closed".into(),
            }),
        }
    }
}

/// Wires `names` together in memory: one [`ChannelTransport`] per name, in the same order.
///
/// Must be called inside a tokio runtime (it spawns one forwarding task per link).
pub fn memory_mesh(names: &[&str], depth: usize) -> Vec<ChannelTransport> {
    // For each ordered pair (a, b): a channel from a to b.
    let mut senders: BTreeMap<(String, String), mpsc::Sender<Vec<u8>>> = BTreeMap::new();
    let mut receivers: BTreeMap<(String, String), mpsc::Receiver<Incoming>> = BTreeMap::new();
    for a in names {
        for b in names {
            if a == b {
                continue;
            }
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(depth.max(1));
            let (ftx, frx) = mpsc::channel::<Incoming>(depth.max(1));
            // Forwarder: turns a plain byte channel into the `Incoming` shape the daemon's
            // pumps produce, so tests run the same receive path.
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    if ftx.send(Ok(m)).await.is_err() {
                        break;
                    }
                }
            });
            senders.insert((a.to_string(), b.to_string()), tx);
            receivers.insert((a.to_string(), b.to_string()), frx);
        }
    }
    names
        .iter()
        .map(|me| {
            let mut links = BTreeMap::new();
            for other in names {
                if other == me {
                    continue;
                }
                let outgoing = senders
                    .remove(&(me.to_string(), other.to_string()))
                    .expect("each pair wired once");
                let incoming = receivers
                    .remove(&(other.to_string(), me.to_string()))
                    .expect("each pair wired once");
                links.insert(other.to_string(), Link { outgoing, incoming });
            }
            ChannelTransport::from_links(*me, links)
        })
        .collect()
}

/// A view of a transport restricted to one of its peers.
///
/// `peers()` lists only that peer, and sending to or receiving from any other party fails
/// with [`TransportError::UnknownPeer`] without touching the inner transport. A two-party
/// sub-protocol (such as a PSI between the two computing parties of a three-party job)
/// runs over it while the job's other links stay idle; messages that other parties send
/// meanwhile wait in the inner transport.
#[derive(Debug)]
pub struct OnePeer<'a, T> {
    inner: &'a T,
    peer: String,
}

impl<'a, T: Transport> OnePeer<'a, T> {
    /// Restricts `inner` to `peer`, which must be one of its peers.
    pub fn new(inner: &'a T, peer: impl Into<String>) -> Result<Self, TransportError> {
        let peer = peer.into();
        if !inner.peers().contains(&peer) {
            return Err(TransportError::UnknownPeer(peer));
        }
        Ok(Self { inner, peer })
    }

    /// The one peer this view reaches.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The unrestricted transport.
    pub fn inner(&self) -> &'a T {
        self.inner
    }

    fn check(&self, name: &str) -> Result<(), TransportError> {
        if name == self.peer {
            Ok(())
        } else {
            Err(TransportError::UnknownPeer(name.to_string()))
        }
    }
}

impl<T: Transport> Transport for OnePeer<'_, T> {
    fn me(&self) -> &str {
        self.inner.me()
    }

    fn peers(&self) -> Vec<String> {
        vec![self.peer.clone()]
    }

    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), TransportError> {
        self.check(to)?;
        self.inner.send(to, msg).await
    }

    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        self.check(from)?;
        self.inner.recv(from).await
    }
}

/// One message as seen by a [`RecordingTransport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Sender's name.
    pub from: String,
    /// Receiver's name.
    pub to: String,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

/// A shared log of recorded messages.
pub type Recording = Arc<Mutex<Vec<Recorded>>>;

/// Wraps a transport and records every message it sends and receives.
#[derive(Debug)]
pub struct RecordingTransport<T> {
    inner: T,
    log: Recording,
}

impl<T: Transport> RecordingTransport<T> {
    /// Records into `log` (share one log between all parties to see the whole wire).
    pub fn new(inner: T, log: Recording) -> Self {
        Self { inner, log }
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    fn push(&self, from: &str, to: &str, bytes: &[u8]) {
        if let Ok(mut log) = self.log.lock() {
            log.push(Recorded {
                from: from.to_string(),
                to: to.to_string(),
                bytes: bytes.to_vec(),
            });
        }
    }
}

impl<T: Transport> Transport for RecordingTransport<T> {
    fn me(&self) -> &str {
        self.inner.me()
    }

    fn peers(&self) -> Vec<String> {
        self.inner.peers()
    }

    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), TransportError> {
        // Only sends are recorded: with every party wrapped, that is every message once.
        self.push(self.inner.me(), to, &msg);
        self.inner.send(to, msg).await
    }

    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        self.inner.recv(from).await
    }
}

/// Returns true if `needle` occurs anywhere in any recorded message.
pub fn recording_contains(log: &Recording, needle: &[u8]) -> bool {
    if needle.is_empty() {
        return false;
    }
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    log.iter()
        .any(|m| m.bytes.windows(needle.len()).any(|w| w == needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn mesh_delivers_in_order_and_counts_bytes() {
        let mut mesh = memory_mesh(&["a", "b", "c"], 2);
        let c = mesh.pop().unwrap();
        let b = mesh.pop().unwrap();
        let a = mesh.pop().unwrap();
        assert_eq!(a.peers(), vec!["b".to_string(), "c".to_string()]);
        let sender = async {
            for i in 0..10u8 {
                a.send("b", vec![i; 3]).await.unwrap();
            }
        };
        let receiver = async {
            for i in 0..10u8 {
                assert_eq!(b.recv("a").await.unwrap(), vec![i; 3]);
            }
        };
        tokio::join!(sender, receiver);
        assert_eq!(
            a.counters("b").unwrap().bytes_sent.load(Ordering::Relaxed),
            30
        );
        assert_eq!(
            b.counters("a")
                .unwrap()
                .messages_received
                .load(Ordering::Relaxed),
            10
        );
        assert!(matches!(
            a.send("zed", vec![]).await,
            Err(TransportError::UnknownPeer(_))
        ));
        drop(c);
        assert!(matches!(
            a.recv("c").await,
            Err(TransportError::Disconnected { .. })
        ));
    }

    #[tokio::test]
    async fn simultaneous_bulk_exchange_does_not_deadlock() {
        let mut mesh = memory_mesh(&["a", "b"], 1);
        let b = mesh.pop().unwrap();
        let a = mesh.pop().unwrap();
        async fn run(t: &ChannelTransport, peer: &str) {
            let s = async {
                for _ in 0..100 {
                    t.send(peer, vec![0; 1000]).await.unwrap();
                }
            };
            let r = async {
                for _ in 0..100 {
                    t.recv(peer).await.unwrap();
                }
            };
            tokio::join!(s, r);
        }
        tokio::join!(run(&a, "b"), run(&b, "a"));
    }

    #[tokio::test]
    async fn one_peer_reaches_only_its_peer() {
        let mut mesh = memory_mesh(&["a", "b", "c"], 4);
        let c = mesh.pop().unwrap();
        let b = mesh.pop().unwrap();
        let a = mesh.pop().unwrap();
        assert_eq!(
            OnePeer::new(&a, "zed").unwrap_err(),
            TransportError::UnknownPeer("zed".into())
        );
        assert_eq!(
            OnePeer::new(&a, "a").unwrap_err(),
            TransportError::UnknownPeer("a".into())
        );
        let ab = OnePeer::new(&a, "b").unwrap();
        assert_eq!(ab.me(), "a");
        assert_eq!(ab.peer(), "b");
        assert_eq!(ab.peers(), vec!["b".to_string()]);
        // The restricted view neither sends to nor receives from `c`.
        assert_eq!(
            ab.send("c", b"x".to_vec()).await,
            Err(TransportError::UnknownPeer("c".into()))
        );
        c.send("a", b"from c".to_vec()).await.unwrap();
        assert_eq!(
            ab.recv("c").await,
            Err(TransportError::UnknownPeer("c".into()))
        );
        assert_eq!(
            a.counters("c")
                .unwrap()
                .messages_sent
                .load(Ordering::Relaxed),
            0
        );
        // With `b` it is the inner transport.
        ab.send("b", b"hi".to_vec()).await.unwrap();
        assert_eq!(b.recv("a").await.unwrap(), b"hi");
        b.send("a", b"back".to_vec()).await.unwrap();
        assert_eq!(ab.recv("b").await.unwrap(), b"back");
        // The message from `c` waited in the inner transport.
        assert_eq!(ab.inner().recv("c").await.unwrap(), b"from c");
    }

    #[tokio::test]
    async fn recording_sees_every_byte() {
        let log = Recording::default();
        let mut mesh = memory_mesh(&["a", "b"], 4);
        let b = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
        let a = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
        a.send("b", b"hello secret".to_vec()).await.unwrap();
        assert_eq!(b.recv("a").await.unwrap(), b"hello secret");
        assert!(recording_contains(&log, b"secret"));
        assert!(!recording_contains(&log, b"nothing"));
    }
}
