//! The one setup helper of the root crate's tests and benches: real `confide` processes
//! on 127.0.0.1 (`confide init`, `serve`, commands run against a party's config), free
//! loopback ports, datasets declared in `party.toml` (through [`confide::kit`], as the demo
//! does), and mutual-TLS channels that hold a party's certificate.
//!
//! The bench binaries include this file (`#[path = "../tests/common/mod.rs"]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use confide::base::config::PartyConfig;

pub const BIN: &str = env!("CARGO_BIN_EXE_confide");

/// A daemon process, killed on drop.
pub struct Daemon {
    pub name: String,
    pub child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `confide` CLI with `args`, without the caller's RUST_LOG.
pub fn cli(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("RUST_LOG");
    c
}

/// Runs the `confide` CLI to completion.
pub fn confide(args: &[&str]) -> Output {
    cli(args).output().expect("run confide")
}

/// Runs `confide ARGS --config <party's party.toml>` to completion.
pub fn at(dir: &Path, party: &str, args: &[&str]) -> Output {
    let cfg = config(dir, party);
    let mut all = args.to_vec();
    all.extend(["--config", path_str(&cfg)]);
    confide(&all)
}

/// `confide psi` at `party` on its `dataset` with `peers` (`PARTY:DATASET`), then `extra`.
pub fn psi(dir: &Path, party: &str, dataset: &str, peers: &[&str], extra: &[&str]) -> Output {
    let mut args = vec!["psi", "--dataset", dataset];
    for p in peers {
        args.extend(["--peer", p]);
    }
    args.extend_from_slice(extra);
    at(dir, party, &args)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that a command succeeded (naming `what` and its stderr otherwise); its stdout.
pub fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}", stderr(o));
    stdout(o)
}

/// A path as a command-line argument.
pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `n` consecutive free ports on loopback (the demo's search).
pub fn free_base_port(n: u16) -> u16 {
    confide::kit::free_ports(n as usize).expect("free loopback ports")
}

/// Starts a long `confide netcheck` job at the party of `cfg` (100,000 rounds, 20 ms apart),
/// for tests that kill or cancel something while a job runs.
pub fn spawn_long_netcheck(cfg: &Path) -> Child {
    let args = [
        "netcheck",
        "--config",
        path_str(cfg),
        "--rounds",
        "100000",
        "--interval-ms",
        "20",
    ];
    cli(&args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn confide netcheck")
}

/// A fresh alliance of `parties` (comma-separated; `confide init` on free loopback ports)
/// in a new temp dir, at `<temp>/a`: (the temp dir, the alliance dir, the base port).
pub fn new_alliance(parties: &str) -> (tempfile::TempDir, PathBuf, u16) {
    let root = tempfile::tempdir().unwrap();
    let port = free_base_port(parties.split(',').count() as u16);
    let dir = init(root.path(), "a", parties, port);
    (root, dir, port)
}

/// `confide init` of `parties` (comma-separated) in a fresh dir `root/name`.
pub fn init(root: &Path, name: &str, parties: &str, base_port: u16) -> PathBuf {
    init_with(&root.join(name), parties, base_port, &[])
}

/// `confide init --dir DIR --parties PARTIES --base-port PORT EXTRA...`, which must succeed.
pub fn init_with(dir: &Path, parties: &str, base_port: u16, extra: &[&str]) -> PathBuf {
    let port = base_port.to_string();
    let mut args = vec!["--base-port", &port];
    args.extend_from_slice(extra);
    ok(&run_init(dir, parties, &args), "init");
    dir.to_path_buf()
}

/// Runs `confide init --dir DIR --parties PARTIES EXTRA...` (success or not).
pub fn run_init(dir: &Path, parties: &str, extra: &[&str]) -> Output {
    let mut args = vec!["init", "--dir", path_str(dir), "--parties", parties];
    args.extend_from_slice(extra);
    confide(&args)
}

/// The `party.toml` of `party`.
pub fn config(dir: &Path, party: &str) -> PathBuf {
    confide::kit::config_path(dir, party)
}

/// Replaces `from` (which must be there) by `to` in `party`'s config.
pub fn edit_config(dir: &Path, party: &str, from: &str, to: &str) {
    let p = config(dir, party);
    let t = std::fs::read_to_string(&p).unwrap();
    assert!(t.contains(from), "{} has no `{from}`", p.display());
    std::fs::write(&p, t.replace(from, to)).unwrap();
}

/// Appends a dataset table to a party's config ([`confide::kit::add_dataset`]).
pub fn add_dataset(dir: &Path, party: &str, name: &str, csv: &Path, id_column: &str, allow: &str) {
    confide::kit::add_dataset(dir, party, name, csv, id_column, allow).unwrap();
}

/// `confide serve` for `party`, logging at `warn` to nowhere.
pub fn serve(dir: &Path, party: &str) -> Daemon {
    serve_with(dir, party, "warn", Stdio::null())
}

/// `confide serve` for `party` with the log filter `log`, its log (stderr) to `log_to`.
pub fn serve_with(dir: &Path, party: &str, log: &str, log_to: Stdio) -> Daemon {
    let child = Command::new(BIN)
        .args(["serve", "--config", path_str(&config(dir, party))])
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(log_to)
        .spawn()
        .expect("spawn daemon");
    Daemon {
        name: party.to_string(),
        child,
    }
}

/// Starts a daemon per party and waits until each reaches all its peers (`within` each).
pub fn start(dir: &Path, parties: &[&str], within: Duration) -> Vec<Daemon> {
    let daemons = parties.iter().map(|p| serve(dir, p)).collect();
    wait_all_ok(dir, parties, within);
    daemons
}

/// Waits until `confide status` exits 0 at every party (`within` each).
pub fn wait_all_ok(dir: &Path, parties: &[&str], within: Duration) {
    for p in parties {
        wait_status_ok(dir, p, within);
    }
}

/// Waits until `confide status` exits 0 at `party`.
pub fn wait_status_ok(dir: &Path, party: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let o = at(dir, party, &["status"]);
        if o.status.success() {
            return;
        }
        if started.elapsed() > within {
            panic!(
                "status at {party} never succeeded: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(150));
    }
}

/// A mutual-TLS channel to party `to` (its listen address if it is `cfg`'s own party),
/// presenting `cfg`'s certificate.
pub async fn channel_as(cfg: &PartyConfig, to: &str) -> tonic::transport::Channel {
    let tls = confide::base::tls::TlsMaterial::load(cfg).unwrap();
    let addr = if to == cfg.party.name {
        &cfg.party.listen
    } else {
        &cfg.peers[to].address
    };
    confide::net::links::endpoint(addr, tls.client(to))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One-line error, no panic or backtrace.
pub fn assert_clean_error(o: &Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        stdout(o)
    );
    let e = stderr(o);
    assert!(e.contains(needle), "stderr should mention `{needle}`: {e}");
    assert!(!e.contains("panicked") && !e.contains("backtrace"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line expected: {e}");
}

/// Peak resident set size (VmHWM) of a process, in MiB (benches).
pub fn peak_rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// `confide audit log` at `party`: (entries, final size, the whole output).
pub fn log_json(dir: &Path, party: &str) -> (u64, Option<u64>, String) {
    let out = ok(&at(dir, party, &["audit", "log"]), "audit log");
    let first = out.lines().next().unwrap_or("").to_string();
    // "N entries; final checkpoint at size M"
    let n: u64 = first
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    let f: Option<u64> = first.rsplit(' ').next().and_then(|x| x.parse().ok());
    (n, f, out)
}

/// Waits until every one of `parties` holds `n` entries under a final checkpoint.
pub fn wait_replicated(dir: &Path, parties: &[&str], n: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if parties.iter().all(|p| {
            let (size, fin, _) = log_json(dir, p);
            size >= n && fin >= Some(n)
        }) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "audit log not replicated within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The job id in a job's summary line (`<kind> job <id>: ...`).
pub fn job_id(psi_stdout: &str) -> String {
    psi_stdout
        .split_whitespace()
        .nth(2)
        .unwrap()
        .trim_end_matches(':')
        .to_string()
}

/// `confide audit prove --job JOB --output OUT` at `party`.
pub fn audit_prove(dir: &Path, party: &str, job: &str, out: &Path) -> Output {
    at(
        dir,
        party,
        &["audit", "prove", "--job", job, "--output", path_str(out)],
    )
}

/// `ids.csv` under `root`: a column `id` of `n` customer IDs.
pub fn write_ids(root: &Path, n: usize) -> std::path::PathBuf {
    let data = root.join("ids.csv");
    let mut s = String::from("id\n");
    for i in 0..n {
        s.push_str(&format!("customer-{i}\n"));
    }
    std::fs::write(&data, s).unwrap();
    data
}

/// Waits until `party`'s `confide status` prints an audit line containing `needle`.
pub fn wait_audit_status(dir: &Path, party: &str, needle: &str, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let out = stdout(&at(dir, party, &["status"]));
        if out
            .lines()
            .any(|l| l.contains("audit store:") && l.contains(needle))
        {
            return out;
        }
        assert!(
            started.elapsed() < within,
            "{party}: no audit status with {needle:?} within {within:?}: {out}"
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}
