//! Connections to peers and the per-job streams between them.
//!
//! For every job and pair of parties there is one `Peer.Stream`, opened by the party whose
//! name sorts first. Both ends are pumped into the bounded channels of a
//! [`confide_mpc::Link`], so protocols see a [`confide_mpc::ChannelTransport`]. A stream
//! that breaks (peer crashed, network gone: HTTP/2 keepalive notices within ~7–8 s) turns
//! into an error on the job's transport and trips the job's failure signal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confide_mpc::transport::{DEFAULT_CHANNEL_DEPTH, Incoming, Link};
use confide_proto::Frame;
use confide_proto::peer_client::PeerClient;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::base::error::{DaemonError, status_line};
use crate::base::metrics::Metrics;
use crate::base::tls::TlsMaterial;

/// Largest gRPC message accepted or sent between daemons.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Lazily connected channels to every peer. When the CRL file changes, every cached
/// channel is dropped, so the next call dials anew and checks the peer against the new list.
#[derive(Debug)]
pub struct PeerChannels {
    tls: TlsMaterial,
    addresses: HashMap<String, String>,
    /// The CRL bytes the cached channels were dialed under, and the channels.
    channels: Mutex<(Vec<u8>, HashMap<String, Channel>)>,
}

impl PeerChannels {
    pub fn new(tls: TlsMaterial, addresses: HashMap<String, String>) -> Self {
        Self {
            tls,
            addresses,
            channels: Mutex::new((Vec::new(), HashMap::new())),
        }
    }

    /// The address configured for `peer`.
    pub fn address(&self, peer: &str) -> Result<&str, DaemonError> {
        self.addresses.get(peer).map(String::as_str).ok_or_else(|| {
            DaemonError::InvalidRequest(format!(
                "unknown peer `{peer}` (not in [peers] of the config)"
            ))
        })
    }

    /// An error naming `peer` and its configured address.
    pub fn peer_error(&self, peer: &str, message: impl Into<String>) -> DaemonError {
        DaemonError::Peer {
            peer: peer.to_string(),
            address: self.address(peer).unwrap_or_default().to_string(),
            message: message.into(),
        }
    }

    /// A client for `peer` (mutual TLS, the peer's certificate must name it).
    pub fn client(&self, peer: &str) -> Result<PeerClient<Channel>, DaemonError> {
        Ok(PeerClient::new(self.channel(peer)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// The (lazily connected, shared) channel to `peer`.
    pub fn channel(&self, peer: &str) -> Result<Channel, DaemonError> {
        let address = self.address(peer)?.to_string();
        let crl = self.tls.crl_state();
        let mut guard = self
            .channels
            .lock()
            .map_err(|_| DaemonError::Internal("channel cache poisoned".into()))?;
        let (seen, cache) = &mut *guard;
        if *seen != crl {
            cache.clear();
            *seen = crl;
        }
        let channel = match cache.get(peer) {
            Some(c) => c.clone(),
            None => {
                let c = plain_endpoint(&address)
                    .map_err(|message| DaemonError::Peer {
                        peer: peer.to_string(),
                        address: address.clone(),
                        message,
                    })?
                    .connect_with_connector_lazy(tls_connector(self.tls.clone(), peer));
                cache.insert(peer.to_string(), c.clone());
                c
            }
        };
        Ok(channel)
    }
}

/// An HTTP/2 endpoint over tonic's own TLS (`tls`), with [`keepalive`].
pub fn endpoint(address: &str, tls: tonic::transport::ClientTlsConfig) -> Result<Endpoint, String> {
    Endpoint::from_shared(format!("https://{address}"))
        .map_err(|e| format!("bad address: {e}"))?
        .tls_config(tls)
        .map_err(|e| format!("TLS configuration: {e}"))
        .map(keepalive)
}

/// The endpoint for a connection whose TLS [`tls_connector`] does (so the scheme is
/// `http`), with [`keepalive`].
pub fn plain_endpoint(address: &str) -> Result<Endpoint, String> {
    Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| format!("bad address: {e}"))
        .map(keepalive)
}

/// Connect timeout and HTTP/2 keepalive, so a vanished peer is noticed within
/// [`UNRESPONSIVE_AFTER`].
pub fn keepalive(e: Endpoint) -> Endpoint {
    e.connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_EVERY)
        .keep_alive_timeout(UNRESPONSIVE_AFTER - KEEPALIVE_EVERY)
        .keep_alive_while_idle(true)
        .http2_adaptive_window(true)
}

pub use crate::base::error::{KEEPALIVE_EVERY, UNRESPONSIVE_AFTER};

/// Dials over mutual TLS as this party toward `peer` (whose certificate must name it),
/// building the TLS configuration at every new connection so the current CRL applies: a
/// revoked peer fails the handshake.
pub fn tls_connector(
    tls: TlsMaterial,
    peer: &str,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Send
+ Clone
+ 'static {
    let peer = peer.to_string();
    tower::service_fn(move |uri: tonic::codegen::http::Uri| {
        let tls = tls.clone();
        let peer = peer.clone();
        async move {
            let other = |m: String| std::io::Error::other(m);
            let config = tls.rustls_client().map_err(other)?;
            let authority = uri
                .authority()
                .ok_or_else(|| other(format!("no address in {uri}")))?
                .to_string();
            let tcp = tokio::net::TcpStream::connect(authority).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from(peer)
                .map_err(|e| other(format!("peer name: {e}")))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

/// Reports a broken link to the job: the first reason wins.
pub type FailureSignal = Arc<watch::Sender<Option<String>>>;

/// Pumps an inbound gRPC stream into a link's incoming channel.
fn pump_inbound(
    peer: String,
    mut inbound: tonic::Streaming<Frame>,
    tx: mpsc::Sender<Incoming>,
    failure: FailureSignal,
    metrics: Arc<Metrics>,
) {
    let counter = metrics.peer(&peer);
    tokio::spawn(async move {
        loop {
            match inbound.message().await {
                Ok(Some(frame)) => {
                    counter.received.fetch_add(
                        frame.payload.len() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    if tx.send(Ok(frame.payload)).await.is_err() {
                        break; // the job is over
                    }
                }
                Ok(None) => {
                    let _ = tx.send(Err("peer closed the stream".into())).await;
                    break;
                }
                Err(status) => {
                    let reason = status_line(&status);
                    failure.send_if_modified(|f| {
                        if f.is_none() {
                            *f = Some(format!("peer `{peer}`: {reason}"));
                            true
                        } else {
                            false
                        }
                    });
                    let _ = tx.send(Err(reason)).await;
                    break;
                }
            }
        }
    });
}

/// Turns a link's outgoing channel into the gRPC frame stream.
fn outbound_stream(
    peer: String,
    rx: mpsc::Receiver<Vec<u8>>,
    metrics: Arc<Metrics>,
) -> impl tokio_stream::Stream<Item = Frame> + Send + 'static {
    let counter = metrics.peer(&peer);
    ReceiverStream::new(rx).map(move |payload| {
        counter
            .sent
            .fetch_add(payload.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Frame { payload }
    })
}

/// Opens the stream of `job` to `peer` (this party's name sorts first).
pub async fn open_stream(
    channels: &PeerChannels,
    job_id: &str,
    peer: &str,
    failure: FailureSignal,
    metrics: Arc<Metrics>,
) -> Result<Link, DaemonError> {
    let mut client = channels.client(peer)?;
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(DEFAULT_CHANNEL_DEPTH);
    let (in_tx, in_rx) = mpsc::channel::<Incoming>(DEFAULT_CHANNEL_DEPTH);
    let mut req = tonic::Request::new(outbound_stream(peer.to_string(), out_rx, metrics.clone()));
    req.metadata_mut().insert(
        confide_proto::JOB_HEADER,
        job_id
            .parse()
            .map_err(|_| DaemonError::Internal("job id is not a valid header".into()))?,
    );
    let address = channels.address(peer)?.to_string();
    let inbound = client
        .stream(req)
        .await
        .map_err(|s| DaemonError::Peer {
            peer: peer.to_string(),
            address,
            message: status_line(&s),
        })?
        .into_inner();
    pump_inbound(peer.to_string(), inbound, in_tx, failure, metrics);
    Ok(Link {
        outgoing: out_tx,
        incoming: in_rx,
    })
}

/// The halves an accepted stream hands to its job.
#[derive(Debug)]
pub struct Accepted {
    pub inbound: tonic::Streaming<Frame>,
    pub outgoing: mpsc::Sender<Vec<u8>>,
}

enum Slot {
    Waiting(oneshot::Sender<Accepted>),
    Arrived(Box<Accepted>, Instant),
}

/// Matches streams that peers open with the jobs waiting for them.
#[derive(Default)]
pub struct Rendezvous {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous").finish_non_exhaustive()
    }
}

impl Rendezvous {
    /// Called by the `Peer.Stream` handler: returns the response stream for the peer.
    pub fn accept(
        &self,
        job_id: &str,
        peer: &str,
        inbound: tonic::Streaming<Frame>,
        metrics: Arc<Metrics>,
    ) -> Result<impl tokio_stream::Stream<Item = Frame> + Send + 'static, DaemonError> {
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(DEFAULT_CHANNEL_DEPTH);
        let accepted = Accepted {
            inbound,
            outgoing: out_tx,
        };
        let mut slots = self
            .slots
            .lock()
            .map_err(|_| DaemonError::Internal("rendezvous poisoned".into()))?;
        // Forget streams nobody claimed within a minute.
        slots.retain(
            |_, s| !matches!(s, Slot::Arrived(_, t) if t.elapsed() > Duration::from_secs(60)),
        );
        let key = (job_id.to_string(), peer.to_string());
        match slots.remove(&key) {
            Some(Slot::Waiting(tx)) => {
                if tx.send(accepted).is_err() {
                    return Err(DaemonError::JobNotFound(job_id.to_string()));
                }
            }
            Some(Slot::Arrived(..)) => {
                return Err(DaemonError::InvalidRequest(format!(
                    "a stream for job {job_id} from `{peer}` is already open"
                )));
            }
            None => {
                slots.insert(key, Slot::Arrived(Box::new(accepted), Instant::now()));
            }
        }
        Ok(outbound_stream(peer.to_string(), out_rx, metrics))
    }

    /// Called by a job: waits up to `timeout` for `peer` to open its stream.
    pub async fn wait(
        &self,
        job_id: &str,
        peer: &str,
        timeout: Duration,
        failure: FailureSignal,
        metrics: Arc<Metrics>,
    ) -> Result<Link, DaemonError> {
        let key = (job_id.to_string(), peer.to_string());
        let rx = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| DaemonError::Internal("rendezvous poisoned".into()))?;
            match slots.remove(&key) {
                Some(Slot::Arrived(acc, _)) => return Ok(finish(peer, *acc, failure, metrics)),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(key.clone(), Slot::Waiting(tx));
                    rx
                }
            }
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(acc)) => Ok(finish(peer, acc, failure, metrics)),
            _ => {
                if let Ok(mut slots) = self.slots.lock() {
                    slots.remove(&key);
                }
                Err(DaemonError::Peer {
                    peer: peer.to_string(),
                    address: String::new(),
                    message: format!("did not join job {job_id} within {} s", timeout.as_secs()),
                })
            }
        }
    }
}

fn finish(peer: &str, acc: Accepted, failure: FailureSignal, metrics: Arc<Metrics>) -> Link {
    let (in_tx, in_rx) = mpsc::channel::<Incoming>(DEFAULT_CHANNEL_DEPTH);
    pump_inbound(peer.to_string(), acc.inbound, in_tx, failure, metrics);
    Link {
        outgoing: acc.outgoing,
        incoming: in_rx,
    }
}
