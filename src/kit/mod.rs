//! An in-process alliance: N daemons in this process on loopback listeners, each served
//! with [`crate::daemon::serve`], driven through the same client as the CLI. The demo runs
//! on it, and so do the tests of every job kind (tests/kinds.rs) and the bench binaries.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::base::config::PartyConfig;
use crate::cli::CliError;
use crate::cli::init::{self, InitOptions};
use crate::net::client;

/// The members of a local alliance: three lenders (alice, bob, carol) and two dedicated risk
/// compute nodes `s0`, `s1` (`confide init`'s default for four or more parties: the last two).
pub const PARTIES: [&str; 5] = ["alice", "bob", "carol", "s0", "s1"];

/// A running local alliance: the daemons stop when it is dropped.
pub struct LocalAlliance {
    pub dir: PathBuf,
    pub configs: Vec<PathBuf>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for LocalAlliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAlliance")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Finds `n` consecutive free loopback ports.
pub fn free_ports(n: usize) -> Result<u16, CliError> {
    for _ in 0..200 {
        let base: u16 = 20_000 + (rand::random::<u16>() % 30_000);
        let ok =
            (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i as u16)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    Err(CliError::Failed(format!(
        "no {n} consecutive free ports found on 127.0.0.1"
    )))
}

/// The `party.toml` of `party` in an alliance directory written by `confide init`.
pub fn config_path(dir: &Path, party: &str) -> PathBuf {
    dir.join(party).join("party.toml")
}

/// Declares a dataset in `party`'s `party.toml`: appends the table
/// `[datasets.NAME]` with `path = CSV`, `id_column` and `allow` (a TOML inline table such
/// as `{ psi = ["bob"] }`). The demo, the tests and the benches all declare data this way.
pub fn add_dataset(
    dir: &Path,
    party: &str,
    name: &str,
    csv: &Path,
    id_column: &str,
    allow: &str,
) -> Result<(), CliError> {
    use std::io::Write;
    let path = config_path(dir, party);
    let csv = toml::Value::String(csv.display().to_string());
    let table =
        format!("\n[datasets.{name}]\npath = {csv}\nid_column = \"{id_column}\"\nallow = {allow}");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{table}"))
        .map_err(|e| CliError::io(format!("appending to {}", path.display()), e))
}

impl LocalAlliance {
    /// Writes an alliance with `init` under `dir` (a temp dir if None).
    pub fn create(
        dir: Option<&Path>,
        base_port: u16,
    ) -> Result<(PathBuf, Option<tempfile::TempDir>), CliError> {
        let (dir, tmp) = match dir {
            Some(d) => (d.to_path_buf(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("confide-demo-")
                    .tempdir()
                    .map_err(|e| CliError::io("creating a temp dir", e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let base_port = if base_port == 0 {
            free_ports(PARTIES.len())?
        } else {
            base_port
        };
        init::run(&InitOptions {
            dir: dir.clone(),
            parties: PARTIES.iter().map(|s| s.to_string()).collect(),
            base_port,
            compute: vec![],
            dealer: None,
            host: "127.0.0.1".into(),
            valid_days: 30,
            metrics_base_port: 0,
        })?;
        Ok((dir, tmp))
    }

    /// Starts a daemon per party in this process and waits until they all answer.
    pub async fn start(dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Result<Self, CliError> {
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut configs = Vec::new();
        for p in PARTIES {
            let path = config_path(&dir, p);
            let cfg = PartyConfig::load(&path)?;
            let listener = crate::daemon::bind(&cfg).await?;
            let mut rx = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let name = cfg.party.name.clone();
                if let Err(e) = crate::daemon::serve(listener, cfg, async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
                {
                    eprintln!("error: daemon {name}: {e}");
                }
            }));
            configs.push(path);
        }
        let a = Self {
            dir,
            configs,
            stop,
            tasks,
            _tmp: tmp,
        };
        a.wait_healthy(Duration::from_secs(20)).await?;
        Ok(a)
    }

    /// Waits until every daemon reaches every peer.
    pub async fn wait_healthy(&self, within: Duration) -> Result<(), CliError> {
        let started = Instant::now();
        for c in &self.configs {
            let cfg = PartyConfig::load(c)?;
            loop {
                let ok = match client::control(&cfg).await {
                    Ok(mut ctl) => ctl
                        .status(confide_proto::StatusRequest { self_only: false })
                        .await
                        .map(|r| r.into_inner().peers.iter().all(|p| p.reachable))
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if ok {
                    break;
                }
                if started.elapsed() > within {
                    return Err(CliError::Failed(format!(
                        "daemon `{}` did not reach all its peers within {} s",
                        cfg.party.name,
                        within.as_secs()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Waits until every member holds every entry under a final checkpoint; returns the size.
    pub async fn wait_audit_replicated(&self, within: Duration) -> Result<u64, CliError> {
        let started = Instant::now();
        loop {
            let mut sizes = Vec::new();
            for c in &self.configs {
                let v = crate::cli::audit::log(&PartyConfig::load(c)?, false).await?;
                sizes.push((v["size"].as_u64().unwrap_or(0), v["final_size"].as_u64()));
            }
            let first = sizes.first().map_or(0, |s| s.0);
            if first > 0 && sizes.iter().all(|(s, f)| *s == first && *f == Some(first)) {
                return Ok(first);
            }
            if started.elapsed() > within {
                return Err(CliError::Failed(format!(
                    "audit log not replicated to every member within {} s: {sizes:?}",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The config of party `name`.
    pub fn config(&self, name: &str) -> Result<PartyConfig, CliError> {
        Ok(PartyConfig::load(&config_path(&self.dir, name))?)
    }

    /// Stops every daemon.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}
