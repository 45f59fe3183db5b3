//! KKRT16 PSI: correctness against a plaintext intersection and privacy on the wire.

use std::collections::BTreeSet;

use confide_mpc::transport::{Recording, RecordingTransport, memory_mesh, recording_contains};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use crate::OutputMode;
use crate::kkrt::{Role, bins, run};
use crate::privacy_tests::assert_no_id_leaks;

type Outputs = (Option<Vec<String>>, Option<Vec<String>>);

async fn psi(a: &[String], b: &[String], mode: OutputMode, log: Option<Recording>) -> Outputs {
    let mut mesh = memory_mesh(&["a", "b"], 4);
    let tb = mesh.pop().unwrap();
    let ta = mesh.pop().unwrap();
    let log = log.unwrap_or_default();
    let (ta, tb) = (
        RecordingTransport::new(ta, log.clone()),
        RecordingTransport::new(tb, log),
    );
    let (x, y) = tokio::join!(
        run(&ta, "b", Role::Initiator, mode, a),
        run(&tb, "a", Role::Responder, mode, b)
    );
    (x.unwrap(), y.unwrap())
}

fn plain(a: &[String], b: &[String]) -> Vec<String> {
    let clean = |v: &[String]| -> BTreeSet<String> {
        v.iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    clean(a).intersection(&clean(b)).cloned().collect()
}

fn ids(r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("cust-{i:07}")).collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn matches_the_plaintext_intersection(
        a in proptest::collection::vec(0u16..300, 0..200),
        b in proptest::collection::vec(0u16..300, 0..200),
        all in any::<bool>(),
    ) {
        // A small universe: duplicates, overlaps, and padded copies of the same ID.
        let a: Vec<String> = a.iter().map(|i| if i % 7 == 0 { format!(" id{i} ") } else { format!("id{i}") }).collect();
        let b: Vec<String> = b.iter().map(|i| format!("id{i}")).collect();
        let mode = if all { OutputMode::All } else { OutputMode::Initiator };
        let (x, y) = block_on(psi(&a, &b, mode, None));
        let want = plain(&a, &b);
        prop_assert_eq!(x.unwrap(), want.clone());
        if all {
            prop_assert_eq!(y.unwrap(), want);
        } else {
            prop_assert!(y.is_none());
        }
    }
}

#[test]
fn edge_cases_empty_one_side_identical_and_table_boundaries() {
    let empty: Vec<String> = Vec::new();
    let some = ids(0..50);
    for (a, b) in [
        (&empty, &empty),
        (&empty, &some),
        (&some, &empty),
        (&some, &some),
    ] {
        let (x, y) = block_on(psi(a, b, OutputMode::All, None));
        assert_eq!(x.unwrap(), plain(a, b));
        assert_eq!(y.unwrap(), plain(a, b));
    }
    // Around the switch of the cuckoo expansion (2^12) and an extension chunk (2^13 bins).
    for n in [4095usize, 4096, 6450, 6451] {
        let a = ids(0..n);
        let b = ids(n / 2..n / 2 + n);
        let (x, _) = block_on(psi(&a, &b, OutputMode::Initiator, None));
        assert_eq!(x.unwrap(), plain(&a, &b), "n = {n}");
        assert!(bins(n) >= n);
    }
}

#[test]
fn size_only_is_refused() {
    let r = block_on(async {
        let mut mesh = memory_mesh(&["a", "b"], 4);
        let tb = mesh.pop().unwrap();
        run(&tb, "a", Role::Responder, OutputMode::SizeOnly, &ids(0..3)).await
    });
    assert!(matches!(r, Err(crate::PsiError::InvalidJob(_))));
}

fn sizes(log: &Recording) -> Vec<(String, usize)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|m| (m.from.clone(), m.bytes.len()))
        .collect()
}

#[test]
fn no_id_or_unkeyed_hash_on_the_wire_and_sizes_depend_only_on_set_sizes() {
    let a = ids(0..3000);
    let b = ids(1500..4000);
    let log = Recording::default();
    let (x, _) = block_on(psi(&a, &b, OutputMode::Initiator, Some(log.clone())));
    assert_eq!(x.unwrap(), plain(&a, &b));
    let all: Vec<String> = a.iter().chain(&b).cloned().collect();
    assert_no_id_leaks(&log, &all);
    // Nor this protocol's own local digest of an ID (or its first 8 bytes).
    for id in all.iter().step_by(101) {
        let d = Sha256::new()
            .chain_update(b"confide-psi/kkrt/id/v1")
            .chain_update(id.as_bytes())
            .finalize();
        for n in [&d[1..16], &d[1..9]] {
            assert!(!recording_contains(&log, n), "{id}");
        }
    }
    // Nor the cuckoo hash of a digest, AES under the public seed of the initiator's hello
    // (56 bytes: fingerprint, set size, seed), whole or its first 8 bytes.
    let hello = log
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.from == "a" && m.bytes.len() == 56)
        .map(|m| m.bytes.clone())
        .expect("the hello");
    let seed = u128::from_le_bytes(hello[40..56].try_into().unwrap());
    let aes = confide_ot::block::FixedAes::new(seed);
    for id in all.iter().step_by(101) {
        let x = crate::kkrt::digest(id);
        for k in 0..3u128 {
            let h = aes.encrypt_one(x | k).to_le_bytes();
            for n in [&h[..], &h[..8]] {
                assert!(!recording_contains(&log, n), "{id}");
            }
        }
    }
    // The responder's tag lists (2500 tags of 8 bytes each) go sorted, not in input order.
    let lists: Vec<Vec<u8>> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.from == "b" && m.bytes.len() == 2500 * 8)
        .map(|m| m.bytes.clone())
        .collect();
    assert!(lists.len() >= 3);
    for l in &lists {
        let tags: Vec<u64> = l
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(
            tags.windows(2).all(|w| w[0] < w[1]),
            "tags are sorted and distinct"
        );
    }
    // Other sets of the same sizes, a different overlap: the same message sizes.
    let a2 = ids(10_000..13_000);
    let b2 = ids(11_000..13_500);
    let log2 = Recording::default();
    let (x2, _) = block_on(psi(&a2, &b2, OutputMode::Initiator, Some(log2.clone())));
    assert_eq!(x2.unwrap().len(), 2000);
    let (mut s1, mut s2) = (sizes(&log), sizes(&log2));
    // Each message is recorded by both ends; compare per sender in order.
    s1.sort_by(|p, q| p.0.cmp(&q.0));
    s2.sort_by(|p, q| p.0.cmp(&q.0));
    assert_eq!(s1, s2);
}

#[test]
fn an_absurd_set_size_from_the_peer_is_refused_without_allocating() {
    let r = block_on(async {
        let mut mesh = memory_mesh(&["a", "b"], 4);
        let tb = mesh.pop().unwrap();
        let ta = mesh.pop().unwrap();
        let hello = crate::kkrt::hello(
            OutputMode::Initiator,
            "a",
            "b",
            crate::kkrt::MAX_ITEMS + 1,
            0,
        );
        confide_mpc::transport::Transport::send(&ta, "b", hello)
            .await
            .unwrap();
        run(&tb, "a", Role::Responder, OutputMode::Initiator, &ids(0..3)).await
    });
    let e = r.unwrap_err();
    assert!(e.to_string().contains("announced a set of"), "{e}");
}

#[test]
fn a_peer_running_another_job_is_refused() {
    // The initiator asks for output `All`, the responder was told `Initiator`.
    let r = block_on(async {
        let mut mesh = memory_mesh(&["a", "b"], 4);
        let tb = mesh.pop().unwrap();
        let ta = mesh.pop().unwrap();
        // Each side owns its transport, so the failing side's end closes when it returns.
        let (x, y) = tokio::join!(
            async move { run(&ta, "b", Role::Initiator, OutputMode::All, &ids(0..3)).await },
            async move { run(&tb, "a", Role::Responder, OutputMode::Initiator, &ids(0..3)).await }
        );
        (x.map(|_| ()), y.map(|_| ()))
    });
    let e = r.1.unwrap_err();
    assert!(e.to_string().contains("differs from ours"), "{e}");
}
