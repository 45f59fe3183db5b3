//! Per-phase profile of secure boosted-tree training: two parties and the dealer in one
//! process over the in-memory mesh (no TLS, no PSI), with `CONFIDE_GBDT_PROFILE` on.
//!
//! `cargo run --release -p confide-training --example gbdt_profile -- [ROWS FA FB TREES DEPTH BINS]`
//! (defaults 100000 25 25 3 5 32). Prints the wall time per tree and, per seat, each
//! phase's calls, seconds and MB sent (phases nest: a split level contains its
//! reciprocals, a tree everything below it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use confide_mpc::transport::LinkCounters;
use confide_mpc::{Transport, memory_mesh};
use confide_training::gbdt::profile;
use confide_training::{GbdtParams, PartyNames, Role, generate_credit, train_gbdt};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("ROWS FA FB TREES DEPTH BINS"))
        .collect();
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (rows, fa, fb, trees, depth, bins) = (
        arg(0, 100_000),
        arg(1, 25),
        arg(2, 25),
        arg(3, 3),
        arg(4, 5),
        arg(5, 32),
    );
    assert!(
        std::env::var_os("CONFIDE_GBDT_PROFILE").is_some(),
        "run with CONFIDE_GBDT_PROFILE=1"
    );
    let (ta, tb) = generate_credit(rows, fa, fb, 42);
    let names = PartyNames {
        active: "alice".into(),
        passive: "bob".into(),
        dealer: "carol".into(),
    };
    let mut params = GbdtParams::new(names);
    params.trees = trees;
    params.depth = depth;
    params.bins = bins;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mesh = memory_mesh(&["alice", "bob", "carol"], 8);
        let counters: Vec<(String, Vec<Arc<LinkCounters>>)> = mesh
            .iter()
            .map(|t| {
                let cs = t.peers().iter().filter_map(|p| t.counters(p)).collect();
                (t.me().to_string(), cs)
            })
            .collect();
        profile::count_bytes_with(move |seat| {
            counters
                .iter()
                .filter(|(s, _)| s == seat)
                .flat_map(|(_, cs)| cs.iter())
                .map(|c| c.bytes_sent.load(Ordering::Relaxed))
                .sum()
        });
        let start = Instant::now();
        let on_level = |p: confide_training::GbdtProgress| {
            if p.level == p.depth {
                println!(
                    "tree {}/{} done at {:.1?}",
                    p.tree,
                    p.trees,
                    start.elapsed()
                );
            }
        };
        let quiet = |_| {};
        let (ra, rb, rd) = tokio::join!(
            train_gbdt(
                &mesh[0],
                Role::Active,
                Some(ta.into_local()),
                &params,
                &on_level
            ),
            train_gbdt(
                &mesh[1],
                Role::Passive,
                Some(tb.into_local()),
                &params,
                &quiet
            ),
            train_gbdt(&mesh[2], Role::Dealer, None, &params, &quiet)
        );
        ra.expect("alice");
        rb.expect("bob");
        rd.expect("carol");
        println!(
            "{rows} rows × ({fa} + {fb}), {trees} trees of depth {depth}, {bins} bins: {:.1?}",
            start.elapsed()
        );
    });
}
