//! End-to-end PSI between two real daemons (separate `confide serve` processes on
//! 127.0.0.1, mutual TLS), timed from `confide psi` submission to its summary line, for
//! each protocol on the same inputs: wall time, the daemons' CPU time per item, bytes each
//! daemon sent per item (from its Prometheus `/metrics`), each daemon's peak RSS (VmHWM;
//! a fresh pair of daemons per protocol and size), and the ECDH curve floor measured in
//! the same run.
//!
//! `cargo bench --bench psi_e2e` runs the default sizes; `PSI_E2E_SIZES="200000x150000,1048576"`
//! picks others (`N` means N×N), `PSI_E2E_PROTOCOLS="kkrt"` the protocols.

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;
#[path = "e2e_common.rs"]
mod e2e_common;
use e2e_common::metrics_bytes_sent;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::Sha512;

/// Per-item, per-party curve floor in µs on one core: hash-to-point, two variable-base
/// scalar multiplications, one decompression and one batched compression.
fn floor_us() -> f64 {
    let n = 4096;
    let k1 = Scalar::from_bytes_mod_order([7u8; 32]);
    let k2 = Scalar::from_bytes_mod_order([9u8; 32]);
    let ids: Vec<String> = (0..n).map(|i| format!("+4479{i:08}")).collect();
    let t = Instant::now();
    let pts: Vec<RistrettoPoint> = ids
        .iter()
        .map(|id| RistrettoPoint::hash_from_bytes::<Sha512>(id.as_bytes()))
        .collect();
    let masked: Vec<RistrettoPoint> = pts.iter().map(|p| p * k1).collect();
    let enc = RistrettoPoint::double_and_compress_batch(&masked);
    let dec: Vec<RistrettoPoint> = enc
        .iter()
        .map(|c| {
            CompressedRistretto(c.to_bytes())
                .decompress()
                .unwrap_or_default()
        })
        .collect();
    let twice: Vec<RistrettoPoint> = dec.iter().map(|p| p * k2).collect();
    std::hint::black_box(&twice);
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn write_ids(path: &Path, range: std::ops::Range<u64>) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(f, "id").unwrap();
    for i in range {
        writeln!(
            f,
            "{:012}",
            i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_000_000
        )
        .unwrap();
    }
}

/// User plus system CPU seconds of a process so far.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses) come the state, ..., utime and stime: the
    // 12th and 13th fields from there.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    let ticks = 100.0; // USER_HZ on Linux
    (field(11) + field(12)) / ticks
}

struct Row {
    wall: f64,
    cpu: f64,
    sent: [u64; 2],
    rss: [f64; 2],
    inter: u64,
}

fn run(root: &Path, protocol: &str, a: u64, b: u64) -> Row {
    let port = free_base_port(4);
    let metrics = (port + 2).to_string();
    let dir = init_with(
        &root.join(format!("alliance-{protocol}-{a}x{b}")),
        "alice,bob",
        port,
        &["--metrics-base-port", &metrics],
    );
    let (fa, fb) = (
        root.join(format!("a-{a}.csv")),
        root.join(format!("b-{b}.csv")),
    );
    // Half of the smaller side is common.
    write_ids(&fa, 0..a);
    write_ids(&fb, a - b.min(a) / 2..a - b.min(a) / 2 + b);
    for (party, file, peer) in [("alice", &fa, "bob"), ("bob", &fb, "alice")] {
        let allow = format!("{{ psi = [\"{peer}\"] }}");
        add_dataset(&dir, party, "ids", file, "id", &allow);
    }
    let daemons = start(&dir, &["alice", "bob"], Duration::from_secs(30));
    let pids = [daemons[0].child.id(), daemons[1].child.id()];
    let mport = |i: usize| port + 2 + i as u16;
    let sent0 = [metrics_bytes_sent(mport(0)), metrics_bytes_sent(mport(1))];
    let cpu0: f64 = pids.iter().map(|&p| cpu_secs(p)).sum();
    let out = root.join("out.csv");
    let t = Instant::now();
    let o = psi(
        &dir,
        "alice",
        "ids",
        &["bob:ids"],
        &["--output", path_str(&out), "--protocol", protocol],
    );
    let wall = t.elapsed().as_secs_f64();
    let line = ok(&o, "psi");
    assert!(line.contains(&format!("({protocol} PSI)")), "{line}");
    let inter = line
        .split("intersection ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cpu = pids.iter().map(|&p| cpu_secs(p)).sum::<f64>() - cpu0;
    let sent = [
        metrics_bytes_sent(mport(0)).saturating_sub(sent0[0]),
        metrics_bytes_sent(mport(1)).saturating_sub(sent0[1]),
    ];
    let rss = [peak_rss_mib(pids[0]), peak_rss_mib(pids[1])];
    let _ = std::fs::remove_file(&fa);
    let _ = std::fs::remove_file(&fb);
    let _ = std::fs::remove_file(&out);
    Row {
        wall,
        cpu,
        sent,
        rss,
        inter,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("psi_e2e: benchmark");
        return;
    }
    let sizes = std::env::var("PSI_E2E_SIZES").unwrap_or_else(|_| "65536,262144,1048576".into());
    let protocols = std::env::var("PSI_E2E_PROTOCOLS").unwrap_or_else(|_| "kkrt,ecdh".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let floor = (0..3).map(|_| floor_us()).fold(f64::INFINITY, f64::min);
    println!("ECDH curve floor: {floor:.1} µs per item and party on one core ({cores} cores)");
    println!(
        "| protocol | items A × B | wall s | ECDH floor s | wall/floor | CPU µs/item | alice sent B/item | bob sent B/item | peak RSS alice MiB | peak RSS bob MiB | intersection |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let root = std::env::temp_dir().join(format!("confide-psi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    for spec in sizes.split(',') {
        let (a, b): (u64, u64) = match spec.split_once('x') {
            Some((a, b)) => (a.trim().parse().unwrap(), b.trim().parse().unwrap()),
            None => {
                let n: u64 = spec.trim().parse().unwrap();
                (n, n)
            }
        };
        for protocol in protocols.split(',').map(str::trim) {
            let r = run(&root, protocol, a, b);
            let floor_s = floor * 1e-6 * (a + b) as f64 / cores;
            let items = (a + b) as f64;
            println!(
                "| {protocol} | {a} × {b} | {:.2} | {floor_s:.2} | {:.3} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {} |",
                r.wall,
                r.wall / floor_s,
                r.cpu * 1e6 / items,
                r.sent[0] as f64 / a as f64,
                r.sent[1] as f64 / b as f64,
                r.rss[0],
                r.rss[1],
                r.inter
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
