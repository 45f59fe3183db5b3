//! The party daemon: gRPC services over mutual TLS, the job table and runner, metrics.
//!
//! [`serve`] runs a daemon on a listener until a shutdown future resolves (the
//! mini-redis shape): `confide serve` binds and passes SIGINT/SIGTERM; tests start several
//! daemons in one process on loopback listeners.

mod commitments;
mod control;
mod job_store;
mod job_table;
pub mod jobs;
pub mod metrics;
mod peer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;

use crate::audit::AuditState;
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::metrics::Metrics;
use crate::base::tls::TlsMaterial;
use crate::net::{PeerChannels, Rendezvous};
use crate::risk_node::RiskNode;
use job_table::JobTable;

/// The package version, reported by `Ping` and `Status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The daemon's shared state.
#[derive(Debug)]
pub struct Daemon {
    /// The configuration the daemon started with: identity, TLS, peers, policy. Datasets
    /// registered since (Control `AddDataset`) are only in [`Daemon::current`].
    pub cfg: Arc<PartyConfig>,
    /// The configuration with every dataset registered so far (re-read from `party.toml`
    /// after each `AddDataset`, which appends to that file first).
    current: std::sync::RwLock<Arc<PartyConfig>>,
    pub channels: Arc<PeerChannels>,
    pub rendezvous: Rendezvous,
    pub metrics: Arc<Metrics>,
    pub jobs: JobTable,
    /// This party's dataset commitments for the jobs it accepted (for their initiators).
    pub commitments: commitments::Commitments,
    /// This member's audit chain, if the config names a genesis and an audit key.
    pub audit: Option<Arc<AuditState>>,
    /// The risk compute node (opened on first use; `None` inside if this party is not one).
    risk: tokio::sync::OnceCell<Option<Arc<RiskNode>>>,
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
        let channels = Arc::new(PeerChannels::new(tls, addresses));
        Ok(Arc::new(Self {
            audit: AuditState::open(&cfg, channels.clone())?,
            channels,
            rendezvous: Rendezvous::default(),
            metrics: Arc::new(Metrics::default()),
            jobs: JobTable::open(&cfg.party.data_dir.join("jobs.redb"))?,
            commitments: commitments::Commitments::default(),
            risk: tokio::sync::OnceCell::new(),
            current: std::sync::RwLock::new(Arc::new(cfg.clone())),
            cfg: Arc::new(cfg),
        }))
    }

    /// The configuration as it is now (the started one plus datasets registered since):
    /// what policy checks and jobs read their datasets from.
    pub fn current(&self) -> Arc<PartyConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the datasets of [`Daemon::current`] with those of `reloaded` (the rest of
    /// the configuration stays as started: a changed peer or key needs a restart).
    pub fn set_datasets(&self, reloaded: PartyConfig) {
        let mut next = (*self.cfg).clone();
        next.datasets = reloaded.datasets;
        match self.current.write() {
            Ok(mut c) => *c = Arc::new(next),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(next),
        }
    }

    /// This party's name.
    pub fn me(&self) -> &str {
        &self.cfg.party.name
    }

    /// The risk compute node of this daemon, if it is one (opened on first use).
    pub async fn risk_node(&self) -> Result<Option<Arc<RiskNode>>, DaemonError> {
        self.risk
            .get_or_try_init(|| async {
                Ok::<_, DaemonError>(
                    RiskNode::open(&self.cfg, self.audit.as_deref(), &self.channels)
                        .await?
                        .map(Arc::new),
                )
            })
            .await
            .cloned()
    }

    /// The risk compute node, or a refusal saying this party is not one.
    pub async fn require_risk_node(&self) -> Result<Arc<RiskNode>, DaemonError> {
        self.risk_node().await?.ok_or_else(|| {
            DaemonError::PermissionDenied(format!(
                "`{}` is not a risk compute node (alliance.compute = [{}])",
                self.me(),
                self.cfg.alliance.compute.join(", ")
            ))
        })
    }
}

/// Binds the daemon's listen address (a clear error if it is taken).
pub async fn bind(cfg: &PartyConfig) -> Result<TcpListener, DaemonError> {
    let addr = cfg.listen_addr()?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// Removes what jobs cut off by a crash or a kill left under `jobs_dir` (spill files of PSI
/// rounds, training temporaries, empty folders), keeping their checkpoints for a resume
/// until they expire ([`crate::kinds::resume::clean_leftovers`]): no job runs before the
/// daemon starts.
fn remove_leftover_work(jobs_dir: &std::path::Path) {
    let (removed, kept) = crate::kinds::resume::clean_leftovers(jobs_dir);
    if removed > 0 {
        tracing::info!("removed {removed} job folder(s) left by an earlier run");
    }
    if kept > 0 {
        tracing::info!("kept the checkpoints of {kept} job(s) for a resume (`--resume JOB`)");
    }
}

/// Runs the daemon on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    cfg: PartyConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let tls = TlsMaterial::load(&cfg)?;
    let daemon = Daemon::new(cfg)?;
    let addr = listener
        .local_addr()
        .map_err(|e| DaemonError::io("reading the listener's address", e))?;
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
            daemon.me().to_string(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        )
        .await?;
        tracing::info!(%maddr, "metrics on /metrics");
    }

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<confide_proto::peer_server::PeerServer<peer::PeerService>>()
        .await;
    // Accepted sockets do not inherit the builder's tcp_nodelay: set it, or small replies
    // wait for delayed ACKs (~40 ms per unary call).
    let incoming = tokio_stream::StreamExt::map(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        |s| s.inspect(|s| drop(s.set_nodelay(true))),
    );
    tracing::info!(party = %daemon.me(), %addr, "confide daemon listening (mutual TLS)");
    for (name, ds) in &daemon.cfg.datasets {
        if let Some(problem) = &ds.problem {
            tracing::warn!(dataset = %name, "dataset disabled: {problem}");
        }
    }
    remove_leftover_work(&daemon.cfg.party.data_dir.join("jobs"));
    let server = Server::builder()
        .tls_config(tls.server())
        .map_err(|e| DaemonError::Config(format!("TLS configuration: {e}")))?
        .http2_keepalive_interval(Some(crate::net::links::KEEPALIVE_EVERY))
        .http2_keepalive_timeout(Some(
            crate::net::links::UNRESPONSIVE_AFTER - crate::net::links::KEEPALIVE_EVERY,
        ))
        .tcp_nodelay(true)
        .layer(tonic::service::InterceptorLayer::new(
            crate::net::authz::not_revoked(tls.clone()),
        ))
        .add_service(health_service)
        .add_service(peer::server(daemon.clone()))
        .add_service(control::server(daemon.clone()))
        .add_service(crate::audit::service::audit_server(
            daemon.me().to_string(),
            daemon.audit.clone(),
        ));
    tokio::spawn(peer::restart_notice(daemon.clone()));
    if let Some(a) = daemon.audit.clone() {
        tokio::spawn(crate::audit::replicate::replication_loop(
            a,
            stop_rx.clone(),
        ));
    }
    let mut stop_rx2 = stop_rx.clone();
    let result = server.serve_with_incoming_shutdown(incoming, async move {
        let _ = stop_rx2.wait_for(|s| *s).await;
    });
    tokio::pin!(result);
    tokio::select! {
        r = &mut result => r.map_err(|e| DaemonError::Internal(format!("server: {e}")))?,
        _ = shutdown => {
            tracing::info!("shutting down: cancelling running jobs");
            daemon.jobs.abort_all("cancelled: the daemon is shutting down");
            let _ = stop_tx.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(5), result).await;
        }
    }
    tracing::info!("daemon stopped");
    Ok(())
}
