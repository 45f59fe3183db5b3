//! Helpers for whole-daemon tests: real `confide` processes on 127.0.0.1.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

pub fn confide(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run confide")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Consecutive free ports on loopback (the demo's search).
pub fn free_base_port(n: u16) -> u16 {
    confide::kit::free_ports(n as usize).expect("free loopback ports")
}

/// Starts a long `confide netcheck` job at the party of `cfg` (100,000 rounds, 20 ms apart),
/// for tests that kill or cancel something while a job runs.
pub fn spawn_long_netcheck(cfg: &Path) -> Child {
    Command::new(BIN)
        .args([
            "netcheck",
            "--config",
            cfg.to_str().unwrap(),
            "--rounds",
            "100000",
            "--interval-ms",
            "20",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `confide init` of `parties` in a fresh dir under `root`.
pub fn init(root: &Path, name: &str, parties: &str, base_port: u16) -> PathBuf {
    let dir = root.join(name);
    let o = confide(&[
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--parties",
        parties,
        "--base-port",
        &base_port.to_string(),
    ]);
    assert!(o.status.success(), "init failed: {}", stderr(&o));
    dir
}

pub fn config(dir: &Path, party: &str) -> PathBuf {
    dir.join(party).join("party.toml")
}

pub fn serve(dir: &Path, party: &str) -> Daemon {
    let child = Command::new(BIN)
        .args(["serve", "--config", config(dir, party).to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    Daemon {
        name: party.to_string(),
        child,
    }
}

/// Waits until `confide status` exits 0 at `party`.
pub fn wait_status_ok(dir: &Path, party: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let o = confide(&["status", "--config", config(dir, party).to_str().unwrap()]);
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

/// Appends a dataset table to a party's config.
pub fn add_dataset(dir: &Path, party: &str, name: &str, csv: &Path, id_column: &str, allow: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(config(dir, party))
        .unwrap();
    writeln!(
        f,
        "\n[datasets.{name}]\npath = \"{}\"\nid_column = \"{id_column}\"\nallow = {allow}",
        csv.display()
    )
    .unwrap();
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
