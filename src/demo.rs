//! `confide demo`: a whole local alliance (three daemons in this process, on loopback,
//! over mutual TLS) on an embedded default, running every kind of job that has landed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cli::DemoArgs;
use crate::config::PartyConfig;
use crate::init::{self, InitOptions};

pub const PARTIES: [&str; 3] = ["alice", "bob", "carol"];

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
pub fn free_ports(n: usize) -> Result<u16> {
    for _ in 0..200 {
        let base: u16 = 20_000 + (rand::random::<u16>() % 30_000);
        let ok =
            (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i as u16)).is_ok());
        if ok {
            return Ok(base);
        }
    }
    bail!("no {n} consecutive free ports found on 127.0.0.1")
}

impl LocalAlliance {
    /// Writes an alliance with `init` under `dir` (a temp dir if None).
    pub fn create(
        dir: Option<&Path>,
        base_port: u16,
    ) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
        let (dir, tmp) = match dir {
            Some(d) => (d.to_path_buf(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("confide-demo-")
                    .tempdir()
                    .context("creating a temp dir")?;
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
    pub async fn start(dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Result<Self> {
        let (stop, _) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut configs = Vec::new();
        for p in PARTIES {
            let path = dir.join(p).join("party.toml");
            let cfg = PartyConfig::load(&path)?;
            let mut rx = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let name = cfg.party.name.clone();
                if let Err(e) = crate::daemon::serve(cfg, async move {
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
    pub async fn wait_healthy(&self, within: Duration) -> Result<()> {
        let started = Instant::now();
        for c in &self.configs {
            let cfg = PartyConfig::load(c)?;
            loop {
                let ok = match crate::client::control(&cfg).await {
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
                    bail!(
                        "daemon `{}` did not reach all its peers within {} s",
                        cfg.party.name,
                        within.as_secs()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Waits until every member holds every entry under a final checkpoint; returns the size.
    pub async fn wait_audit_replicated(&self, within: Duration) -> Result<u64> {
        let started = Instant::now();
        loop {
            let mut sizes = Vec::new();
            for c in &self.configs {
                let cfg = PartyConfig::load(c)?;
                let mut a = crate::client::audit(&cfg).await?;
                let r = a
                    .log(confide_proto::LogRequest { summary: false })
                    .await
                    .map_err(|s| crate::client::daemon_error(&cfg, &s))?
                    .into_inner();
                let v: serde_json::Value = serde_json::from_str(&r.json)?;
                sizes.push((v["size"].as_u64().unwrap_or(0), v["final_size"].as_u64()));
            }
            let first = sizes[0].0;
            if first > 0 && sizes.iter().all(|(s, f)| *s == first && *f == Some(first)) {
                return Ok(first);
            }
            if started.elapsed() > within {
                bail!(
                    "audit log not replicated to every member within {} s: {sizes:?}",
                    within.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The config of party `name`.
    pub fn config(&self, name: &str) -> Result<PartyConfig> {
        Ok(PartyConfig::load(&self.dir.join(name).join("party.toml"))?)
    }

    /// Stops every daemon.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

static STEP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Prints one numbered demo step with its duration.
pub fn step(what: &str, started: Instant) {
    let n = STEP.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    println!("[{n}] {what} ({:.2} s)", started.elapsed().as_secs_f64());
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let total = Instant::now();
    println!(
        "Confide demo: a local alliance of {} on loopback, mutual TLS everywhere",
        PARTIES.join(", ")
    );
    let t = Instant::now();
    if let Some(k) = &args.keep {
        std::fs::create_dir_all(k).with_context(|| format!("creating {}", k.display()))?;
    }
    let (dir, tmp) = LocalAlliance::create(args.keep.as_deref(), args.base_port)?;
    let data = generate_data(&dir, args.rows)?;
    crate::jobs::train::demo_data(&dir, args.rows)?;
    crate::jobs::risk::demo_data(&dir, args.rows)?;
    step(
        &format!(
            "wrote the alliance (CA, certificates, party.toml, genesis.json) and generated data in {}",
            dir.display()
        ),
        t,
    );

    let t = Instant::now();
    let alliance = LocalAlliance::start(dir.clone(), tmp).await?;
    step(
        "started 3 party daemons; every daemon reaches every peer over mutual TLS",
        t,
    );

    let t = Instant::now();
    for c in &alliance.configs {
        let code = crate::commands::status(c, false, false).await?;
        if code != ExitCode::SUCCESS {
            bail!("status failed at {}", c.display());
        }
    }
    step("`confide status` at each party: all peers reachable", t);

    let t = Instant::now();
    let alice = alliance.config("alice")?;
    let req = confide_proto::SubmitRequest {
        kind: "netcheck".into(),
        peers: ["bob", "carol"]
            .iter()
            .map(|p| confide_proto::DatasetRef {
                party: p.to_string(),
                dataset: String::new(),
            })
            .collect(),
        options: [
            ("rounds".to_string(), "20".to_string()),
            ("size".to_string(), "65536".to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let (job, result) = crate::commands::submit_with(&alice, req, false).await?;
    step(
        &format!("netcheck job {job} between alice, bob and carol over per-job streams: {result}"),
        t,
    );

    let t = Instant::now();
    let out = dir.join("alice").join("matched.csv");
    let req = confide_proto::SubmitRequest {
        kind: "psi".into(),
        dataset: "customers".into(),
        peers: vec![confide_proto::DatasetRef {
            party: "bob".into(),
            dataset: "customers".into(),
        }],
        options: [("mode".to_string(), "initiator".to_string())].into(),
        output: out.to_string_lossy().into_owned(),
        timeout_secs: 600,
    };
    let (job, result) = crate::commands::submit_with(&alice, req, false).await?;
    let got = result
        .get("intersection_size")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if got != data.psi_expected {
        bail!(
            "PSI found {got} common customers, expected {}",
            data.psi_expected
        );
    }
    step(&crate::commands::psi_summary(&job, "alice", &result), t);

    crate::jobs::train::demo_step(&alliance).await?;
    crate::jobs::risk::demo_step(&alliance).await?;

    let t = Instant::now();
    let size = alliance
        .wait_audit_replicated(Duration::from_secs(30))
        .await?;
    for c in &alliance.configs {
        let cfg = PartyConfig::load(c)?;
        let mut a = crate::client::audit(&cfg).await?;
        let r = a
            .verify(confide_proto::VerifyRequest {})
            .await
            .map_err(|s| crate::client::daemon_error(&cfg, &s))?
            .into_inner();
        if !r.ok {
            bail!("audit verify failed at {}: {}", cfg.party.name, r.report);
        }
    }
    step(
        &format!(
            "audit chain: {size} entries replicated to all 3 members, cosigned (quorum 2 of 3) and verified at each"
        ),
        t,
    );

    let t = Instant::now();
    let bundle = crate::commands::prove(&alice, &job, Duration::from_secs(15)).await?;
    let proof = dir.join("alice").join("psi-proof.json");
    std::fs::write(&proof, &bundle)?;
    let genesis = std::fs::read_to_string(dir.join("genesis.json"))?;
    let v = confide_audit::verify_bundle(&bundle, &genesis)
        .map_err(|e| anyhow::anyhow!("proof rejected: {e}"))?;
    let mut tampered = bundle.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let rejected =
        confide_audit::verify_bundle(&String::from_utf8_lossy(&tampered), &genesis).is_err();
    if !rejected {
        bail!("a tampered proof was accepted");
    }
    step(
        &format!(
            "proof of the PSI job checked offline against genesis.json: entry #{} in a log of {} cosigned by {}; a tampered copy is rejected",
            v.index,
            v.tree_size,
            v.cosigners.join(", ")
        ),
        t,
    );

    alliance.stop().await;
    println!("demo finished in {:.2} s", total.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// What the demo generated, and the answers it expects.
#[derive(Debug)]
pub struct DemoData {
    pub psi_expected: u64,
}

/// Writes the demo's CSV files and declares them in the parties' configs.
fn generate_data(dir: &Path, rows: usize) -> Result<DemoData> {
    use std::io::Write;
    let rows = rows.max(100);
    let data = dir.join("demo-data");
    std::fs::create_dir_all(&data)?;
    // Customers: alice has phones 0..rows, bob has rows/2 .. rows/2 + 3/4 rows.
    let phone = |i: usize| format!("+44790{:07}", i * 7919 % 10_000_000);
    let write = |name: &str, range: std::ops::Range<usize>| -> Result<PathBuf> {
        let p = data.join(name);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p)?);
        writeln!(f, "phone,segment")?;
        for i in range {
            writeln!(f, "{},{}", phone(i), i % 5)?;
        }
        f.flush()?;
        Ok(p)
    };
    let a = write("alice-customers.csv", 0..rows)?;
    let b = write("bob-customers.csv", rows / 2..rows / 2 + rows * 3 / 4)?;
    let append = |party: &str, table: String| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(party).join("party.toml"))?;
        writeln!(f, "\n{table}")?;
        Ok(())
    };
    append(
        "alice",
        format!(
            "[datasets.customers]\npath = \"{}\"\nid_column = \"phone\"\nallow = {{ psi = [\"bob\"] }}",
            a.display()
        ),
    )?;
    append(
        "bob",
        format!(
            "[datasets.customers]\npath = \"{}\"\nid_column = \"phone\"\nallow = {{ psi = [\"alice\"] }}",
            b.display()
        ),
    )?;
    Ok(DemoData {
        psi_expected: (rows - rows / 2) as u64,
    })
}
