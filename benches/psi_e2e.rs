//! End-to-end PSI between two real daemons (separate `confide serve` processes on
//! 127.0.0.1), timed from `confide psi` submission to its summary line, with each daemon's
//! peak RSS (VmHWM) and the curve floor measured in the same run.
//!
//! `cargo bench --bench psi_e2e` runs the default sizes; `PSI_E2E_SIZES="200000x150000,1048576"`
//! picks others (`N` means N×N).

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

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

fn run(root: &Path, a: u64, b: u64) -> (f64, f64, f64, u64) {
    let dir = init(
        root,
        &format!("alliance-{a}x{b}"),
        "alice,bob",
        free_base_port(2),
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
    let out = root.join("out.csv");
    let t = Instant::now();
    let o = psi(
        &dir,
        "alice",
        "ids",
        &["bob:ids"],
        &["--output", path_str(&out)],
    );
    let wall = t.elapsed().as_secs_f64();
    let line = ok(&o, "psi");
    let inter = line
        .split("intersection ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (ra, rb) = (
        peak_rss_mib(daemons[0].child.id()),
        peak_rss_mib(daemons[1].child.id()),
    );
    let _ = std::fs::remove_file(&fa);
    let _ = std::fs::remove_file(&fb);
    (wall, ra, rb, inter)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("psi_e2e: benchmark");
        return;
    }
    let sizes = std::env::var("PSI_E2E_SIZES")
        .unwrap_or_else(|_| "65536,200000x150000,262144,1048576".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let floor = (0..3).map(|_| floor_us()).fold(f64::INFINITY, f64::min);
    println!("curve floor: {floor:.1} µs per item and party on one core ({cores} cores)");
    println!(
        "| items A × B | wall s | floor s | wall/floor | items/s/core | peak RSS alice MiB | peak RSS bob MiB | intersection |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let root = std::env::temp_dir().join(format!("confide-psi-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    for spec in sizes.split(',') {
        let (a, b) = match spec.split_once('x') {
            Some((a, b)) => (a.trim().parse().unwrap(), b.trim().parse().unwrap()),
            None => {
                let n: u64 = spec.trim().parse().unwrap();
                (n, n)
            }
        };
        let (wall, ra, rb, inter) = run(&root, a, b);
        let floor_s = floor * 1e-6 * (a + b) as f64 / cores;
        println!(
            "| {a} × {b} | {wall:.2} | {floor_s:.2} | {:.2} | {:.0} | {ra:.0} | {rb:.0} | {inter} |",
            wall / floor_s,
            (a + b) as f64 / wall / cores
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
