//! The protocol core against the curve floor.
//!
//! Per item and party, ECDH-PSI cannot cost less than one hash-to-point, two
//! variable-base scalar multiplications, one decompression and one (batched)
//! compression: the *floor*. The core is `mask_ids` (hash, multiply, batch-compress our
//! own IDs) plus `remask_to_tags` (decompress, multiply, batch-compress and truncate-hash
//! the peer's points). Both are measured single-threaded in the same run and the ratio
//! core/floor is printed; criterion then reports each piece.

use std::hint::black_box;
use std::time::{Duration, Instant};

use confide_psi::crypto::{JobKey, hash_to_point};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;

const N: usize = 1024;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("+86138{i:08}")).collect()
}

fn per_item(n: usize, reps: u32, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / (reps as f64 * n as f64)
}

struct Inputs {
    ids: Vec<String>,
    points: Vec<RistrettoPoint>,
    encodings: Vec<CompressedRistretto>,
    peer_msg: Vec<u8>,
    k: Scalar,
    key: JobKey,
}

fn inputs() -> Inputs {
    let ids = ids(N);
    let k = Scalar::from(0x0123_4567_89ab_cdef_u64) * Scalar::from(0xfedc_ba98_u64);
    let points: Vec<RistrettoPoint> = ids.iter().map(|i| hash_to_point(i.as_bytes())).collect();
    let encodings = points.iter().map(|p| p.compress()).collect();
    let peer = JobKey::from_scalar(Scalar::from(77u64));
    let peer_msg = peer.mask_ids(&ids);
    Inputs {
        ids,
        points,
        encodings,
        peer_msg,
        k,
        key: JobKey::from_scalar(k),
    }
}

/// Single-threaded µs per item of the floor and the core; prints the ratio.
fn ratio(inp: &Inputs) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let reps = 5;
    let hash = per_item(N, reps, || {
        for id in &inp.ids {
            black_box(hash_to_point(id.as_bytes()));
        }
    });
    let mul = per_item(N, reps, || {
        for p in &inp.points {
            black_box(p * inp.k);
        }
    });
    let decompress = per_item(N, reps, || {
        for e in &inp.encodings {
            black_box(e.decompress());
        }
    });
    let compress = per_item(N, reps, || {
        black_box(RistrettoPoint::double_and_compress_batch(&inp.points));
    });
    let floor = hash + 2.0 * mul + decompress + compress;
    let (mask, remask) = pool.install(|| {
        (
            per_item(N, reps, || {
                black_box(inp.key.mask_ids(&inp.ids));
            }),
            per_item(N, reps, || {
                black_box(inp.key.remask_to_tags(&inp.peer_msg).unwrap());
            }),
        )
    });
    let core = mask + remask;
    println!(
        "floor per item and party (1 core): hash-to-point {hash:.2} µs + 2 × mul {mul:.2} µs + \
         decompress {decompress:.2} µs + batched compress {compress:.2} µs = {floor:.2} µs \
         ({:.0} items/s/core)",
        1e6 / floor
    );
    println!(
        "core per item and party (1 core): mask {mask:.2} µs + remask-to-tags {remask:.2} µs = \
         {core:.2} µs ({:.0} items/s/core); core/floor = {:.3}",
        1e6 / core,
        core / floor
    );
}

fn benches(c: &mut Criterion) {
    let inp = inputs();
    ratio(&inp);
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("hash_to_point", |b| {
        b.iter(|| {
            for id in &inp.ids {
                black_box(hash_to_point(id.as_bytes()));
            }
        })
    });
    g.bench_function("variable_base_mul", |b| {
        b.iter(|| {
            for p in &inp.points {
                black_box(p * inp.k);
            }
        })
    });
    g.bench_function("decompress", |b| {
        b.iter(|| {
            for e in &inp.encodings {
                black_box(e.decompress());
            }
        })
    });
    g.bench_function("double_and_compress_batch", |b| {
        b.iter(|| black_box(RistrettoPoint::double_and_compress_batch(&inp.points)))
    });
    g.finish();
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("mask_ids", |b| {
        b.iter(|| black_box(inp.key.mask_ids(&inp.ids)))
    });
    g.bench_function("remask_to_tags", |b| {
        b.iter(|| black_box(inp.key.remask_to_tags(&inp.peer_msg).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = core;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(core);
