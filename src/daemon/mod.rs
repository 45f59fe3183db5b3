//! The party daemon: gRPC services over mutual TLS, the job manager, policy, metrics.

pub mod jobs;
pub mod links;
pub mod metrics;
mod services;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use confide_proto::JobInfo;
use tonic::transport::Server;

use crate::config::PartyConfig;
use crate::error::DaemonError;
use crate::tls::TlsMaterial;
use links::{FailureSignal, PeerChannels, Rendezvous};
use metrics::Metrics;

/// One job in the job table.
#[derive(Debug)]
pub struct JobRecord {
    pub info: JobInfo,
    pub abort: FailureSignal,
}

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    pub me: String,
    pub cfg: PartyConfig,
    pub channels: PeerChannels,
    pub rendezvous: Rendezvous,
    pub metrics: Arc<Metrics>,
    pub jobs: Mutex<BTreeMap<String, JobRecord>>,
    /// This member's audit chain, if the config names a genesis and an audit key.
    pub audit: Option<Arc<crate::audit::AuditState>>,
    /// Risk-query state, opened on first use (see `jobs::risk`).
    pub risk: tokio::sync::OnceCell<Arc<crate::jobs::risk::RiskState>>,
}

impl Daemon {
    /// Builds the state from a validated config.
    pub fn new(cfg: PartyConfig) -> Result<Arc<Self>, DaemonError> {
        let tls = TlsMaterial::load(&cfg)?;
        let addresses: HashMap<String, String> = cfg
            .peers
            .iter()
            .map(|(n, p)| (n.clone(), p.address.clone()))
            .collect();
        std::fs::create_dir_all(&cfg.party.data_dir).map_err(|e| {
            DaemonError::io(
                format!("creating data_dir {}", cfg.party.data_dir.display()),
                e,
            )
        })?;
        Ok(Arc::new(Self {
            me: cfg.party.name.clone(),
            channels: PeerChannels::new(tls, addresses),
            rendezvous: Rendezvous::default(),
            metrics: Arc::new(Metrics::default()),
            jobs: Mutex::new(BTreeMap::new()),
            risk: tokio::sync::OnceCell::new(),
            audit: crate::audit::AuditState::open(&cfg)?,
            cfg,
        }))
    }

    /// Number of running or queued jobs.
    pub fn jobs_running(&self) -> u64 {
        self.jobs
            .lock()
            .map(|j| {
                j.values()
                    .filter(|r| {
                        r.info.state == confide_proto::JobState::Running as i32
                            || r.info.state == confide_proto::JobState::Queued as i32
                    })
                    .count() as u64
            })
            .unwrap_or(0)
    }
}

/// Runs the daemon until `shutdown` resolves (SIGINT/SIGTERM in `confide serve`).
pub async fn serve(
    cfg: PartyConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let addr = cfg.listen_addr()?;
    let tls = TlsMaterial::load(&cfg)?;
    let daemon = Daemon::new(cfg)?;
    // Bind first so that "address in use" is a clear error before anything else starts.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(m) = &daemon.cfg.party.metrics_listen {
        let maddr: std::net::SocketAddr = m.parse().map_err(|_| {
            DaemonError::Config(format!(
                "config file {}: field `party.metrics_listen`: `{m}` is not an IP:PORT address",
                daemon.cfg.source.display()
            ))
        })?;
        let mut rx = stop_rx.clone();
        metrics::serve(
            maddr,
            daemon.metrics.clone(),
            daemon.me.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        )
        .await?;
        tracing::info!(%maddr, "metrics on /metrics");
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<confide_proto::peer_server::PeerServer<services::PeerService>>()
        .await;
    // Accepted sockets do not inherit the builder's tcp_nodelay: set it, or small replies
    // wait for delayed ACKs (~40 ms per unary call).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |s| s.inspect(|s| drop(s.set_nodelay(true))),
    );
    tracing::info!(party = %daemon.me, %addr, "confide daemon listening (mutual TLS)");
    let server = Server::builder()
        .tls_config(tls.server())
        .map_err(|e| DaemonError::Config(format!("TLS configuration: {e}")))?
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(4)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(6)))
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(services::peer_server(daemon.clone()))
        .add_service(services::control_server(daemon.clone()))
        .add_service(crate::audit::audit_server(daemon.clone()));
    tokio::spawn(crate::audit::replication_loop(
        daemon.clone(),
        stop_rx.clone(),
    ));
    let mut stop_rx2 = stop_rx.clone();
    let result = server.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop_rx2.wait_for(|s| *s).await;
    });
    tokio::pin!(result);
    tokio::select! {
        r = &mut result => r.map_err(|e| DaemonError::Internal(format!("server: {e}")))?,
        _ = shutdown => {
            tracing::info!("shutting down: cancelling running jobs");
            if let Ok(jobs) = daemon.jobs.lock() {
                for r in jobs.values() {
                    r.abort.send_if_modified(|a| {
                        if a.is_none() { *a = Some("cancelled: the daemon is shutting down".into()); true } else { false }
                    });
                }
            }
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), result).await;
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}
