//! In-process KKRT16 PSI benchmark over `memory_mesh`: wall time and bytes per item and
//! party. `cargo bench -p confide-psi --bench kkrt_core -- [log2 sizes…]` (default 16 20).

use std::sync::atomic::Ordering;
use std::time::Instant;

use confide_mpc::transport::memory_mesh;
use confide_psi::OutputMode;
use confide_psi::kkrt::{Role, run};

fn main() {
    let logs: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let logs = if logs.is_empty() { vec![16, 20] } else { logs };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| n per side | wall time | initiator → responder B/item | responder → initiator B/item | intersection |"
    );
    println!("|---|---|---|---|---|");
    for lg in logs {
        let n = 1usize << lg;
        // Half of each side overlaps.
        let a: Vec<String> = (0..n).map(|i| format!("cust-{i:09}")).collect();
        let b: Vec<String> = (n / 2..n / 2 + n).map(|i| format!("cust-{i:09}")).collect();
        let (secs, sent_a, sent_b, size) = rt.block_on(async {
            let mut mesh = memory_mesh(&["a", "b"], 8);
            let tb = mesh.pop().expect("b");
            let ta = mesh.pop().expect("a");
            let start = Instant::now();
            let (x, y) = tokio::join!(
                run(&ta, "b", Role::Initiator, OutputMode::Initiator, &a),
                run(&tb, "a", Role::Responder, OutputMode::Initiator, &b)
            );
            let secs = start.elapsed().as_secs_f64();
            y.expect("responder");
            let size = x.expect("initiator").map(|v| v.len()).unwrap_or(0);
            let ca = ta.counters("b").expect("link");
            let cb = tb.counters("a").expect("link");
            (
                secs,
                ca.bytes_sent.load(Ordering::Relaxed),
                cb.bytes_sent.load(Ordering::Relaxed),
                size,
            )
        });
        assert_eq!(size, n / 2);
        println!(
            "| 2^{lg} | {secs:.2} s | {:.1} | {:.1} | {size} |",
            sent_a as f64 / n as f64,
            sent_b as f64 / n as f64
        );
    }
}
