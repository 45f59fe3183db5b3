//! `confide demo`: a whole local alliance (daemons in this process, on loopback, over
//! mutual TLS; [`crate::kit`]) on an embedded default, running every kind of job.

mod gbdt;
mod risk;
pub mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use confide_proto::DatasetRef;

use crate::base::config::PartyConfig;
use crate::cli::CliError;
use crate::cli::args::DemoArgs;
use crate::cli::audit::{prove, verify};
use crate::cli::psi::psi_summary;
use crate::cli::submit::{Show, read_file, request, submit_with};
use crate::kinds::{JobOptions, netcheck, psi};
use crate::kit::{LocalAlliance, PARTIES, add_dataset};

static STEP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Prints one numbered demo step with its duration.
pub fn step(what: &str, started: Instant) {
    let n = STEP.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    outln!("[{n}] {what} ({:.2} s)", started.elapsed().as_secs_f64());
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    let total = Instant::now();
    outln!(
        "Confide demo: a local alliance of {} on loopback, mutual TLS everywhere \
         (s0 and s1: the dedicated risk compute nodes, holding no data)",
        PARTIES.join(", ")
    );
    let t = Instant::now();
    if let Some(k) = &args.keep {
        std::fs::create_dir_all(k)
            .map_err(|e| CliError::io(format!("creating {}", k.display()), e))?;
    }
    let (dir, tmp) = LocalAlliance::create(args.keep.as_deref(), args.base_port)?;
    let data = generate_data(&dir, args.rows)?;
    train::data(&dir, args.rows)?;
    risk::data(&dir, args.rows)?;
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
        &format!(
            "started {} party daemons; every daemon reaches every peer over mutual TLS",
            PARTIES.len()
        ),
        t,
    );

    let t = Instant::now();
    for c in &alliance.configs {
        let code = crate::cli::daemon::status(c, false, false).await?;
        if code != ExitCode::SUCCESS {
            return Err(CliError::Failed(format!(
                "status failed at {}",
                c.display()
            )));
        }
    }
    step("`confide status` at each party: all peers reachable", t);

    let t = Instant::now();
    let alice = alliance.config("alice")?;
    let peers = ["bob", "carol"]
        .iter()
        .map(|p| DatasetRef {
            party: p.to_string(),
            dataset: String::new(),
        })
        .collect();
    let opts = netcheck::Opts {
        rounds: 20,
        size: 65536,
        interval_ms: 0,
    };
    let req = request(&JobOptions::Netcheck(opts), "", peers, None);
    let (job, result) = submit_with(&alice, req, Show::Lines).await?;
    step(
        &format!("netcheck job {job} between alice, bob and carol over per-job streams: {result}"),
        t,
    );

    let t = Instant::now();
    let out = dir.join("alice").join("matched.csv");
    let peers = vec![DatasetRef {
        party: "bob".into(),
        dataset: "customers".into(),
    }];
    let mut req = request(
        &JobOptions::Psi(psi::Opts::default()),
        "customers",
        peers,
        Some(&out),
    );
    req.timeout_secs = 600;
    let (job, result) = submit_with(&alice, req, Show::Lines).await?;
    let got = result
        .get("intersection_size")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    if got != data.psi_expected {
        return Err(CliError::Failed(format!(
            "PSI found {got} common customers, expected {}",
            data.psi_expected
        )));
    }
    step(&psi_summary(&job, "alice", &result), t);

    train::step(&alliance).await?;
    gbdt::step(&alliance).await?;
    risk::step(&alliance).await?;

    let t = Instant::now();
    let size = alliance
        .wait_audit_replicated(Duration::from_secs(30))
        .await?;
    for c in &alliance.configs {
        let cfg = PartyConfig::load(c)?;
        let r = verify(&cfg).await?;
        if !r.ok {
            return Err(CliError::Failed(format!(
                "audit verify failed at {}: {}",
                cfg.party.name, r.report
            )));
        }
    }
    let quorum = confide_audit::Genesis::from_json(&read_file(&dir.join("genesis.json"))?)
        .map(|g| g.quorum)
        .unwrap_or_default();
    let members = PARTIES.len();
    step(
        &format!(
            "audit chain: {size} entries replicated to all {members} members, cosigned (quorum {quorum} of {members}) and verified at each"
        ),
        t,
    );

    let t = Instant::now();
    let bundle = prove(&alice, &job, Duration::from_secs(15)).await?;
    let proof = dir.join("alice").join("psi-proof.json");
    std::fs::write(&proof, &bundle)
        .map_err(|e| CliError::io(format!("writing {}", proof.display()), e))?;
    let genesis = read_file(&dir.join("genesis.json"))?;
    let v = confide_audit::verify_bundle(&bundle, &genesis).map_err(|source| CliError::Proof {
        bundle: proof.display().to_string(),
        source,
    })?;
    let mut tampered = bundle.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let rejected =
        confide_audit::verify_bundle(&String::from_utf8_lossy(&tampered), &genesis).is_err();
    if !rejected {
        return Err(CliError::Failed("a tampered proof was accepted".into()));
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
    outln!("demo finished in {:.2} s", total.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// What the demo generated, and the answers it expects.
#[derive(Debug)]
pub struct DemoData {
    pub psi_expected: u64,
}

/// Writes a generated CSV file, naming it on failure.
pub(crate) fn write_csv(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}

/// The directory of the demo's generated data, created if missing.
pub(crate) fn data_dir(dir: &Path) -> Result<PathBuf, CliError> {
    let data = dir.join("demo-data");
    std::fs::create_dir_all(&data)
        .map_err(|e| CliError::io(format!("creating {}", data.display()), e))?;
    Ok(data)
}

/// Writes the demo's CSV files and declares them in the parties' configs.
fn generate_data(dir: &Path, rows: usize) -> Result<DemoData, CliError> {
    use std::fmt::Write as _;
    let rows = rows.max(100);
    let data = data_dir(dir)?;
    // Customers: alice has phones 0..rows, bob has rows/2 .. rows/2 + 3/4 rows.
    let phone = |i: usize| format!("+44790{:07}", i * 7919 % 10_000_000);
    let write = |name: &str, range: std::ops::Range<usize>| -> Result<PathBuf, CliError> {
        let p = data.join(name);
        let mut text = String::from("phone,segment\n");
        for i in range {
            let _ = writeln!(text, "{},{}", phone(i), i % 5);
        }
        write_csv(&p, &text)?;
        Ok(p)
    };
    let a = write("alice-customers.csv", 0..rows)?;
    let b = write("bob-customers.csv", rows / 2..rows / 2 + rows * 3 / 4)?;
    add_dataset(
        dir,
        "alice",
        "customers",
        &a,
        "phone",
        "{ psi = [\"bob\"] }",
    )?;
    add_dataset(
        dir,
        "bob",
        "customers",
        &b,
        "phone",
        "{ psi = [\"alice\"] }",
    )?;
    Ok(DemoData {
        psi_expected: (rows - rows / 2) as u64,
    })
}
