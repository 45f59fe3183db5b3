//! Privacy tests: every byte that crosses the wire in a two-party and a three-party run
//! is recorded; no raw ID, no unkeyed hash of one, and no masked set in input order.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use confide_mpc::transport::{Recording, RecordingTransport, memory_mesh, recording_contains};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha256, Sha512};

use crate::crypto::{HASH_TO_POINT_DST, JobKey, hash_to_point};
use crate::{OutputMode, PsiJob, Tuning};

fn write_ids(path: &Path, ids: &[String]) {
    let mut s = String::from("id,other\n");
    for id in ids {
        s.push_str(&format!("{id},x\n"));
    }
    std::fs::write(path, s).unwrap();
}

fn job(dir: &Path, me: &str, parties: &[&str], mode: OutputMode) -> PsiJob {
    PsiJob {
        initiator: parties[0].to_string(),
        parties: parties.iter().map(|p| p.to_string()).collect(),
        mode,
        protocol: crate::Protocol::Ecdh,
        input: dir.join(format!("{me}.csv")),
        id_column: "id".into(),
        output: Some(dir.join(format!("{me}-out.csv"))),
        work_dir: dir.join(format!("{me}-work")),
    }
}

fn read_output(path: &PathBuf) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

pub(crate) fn assert_no_id_leaks(log: &Recording, ids: &[String]) {
    let wire: Vec<Vec<u8>> = log
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.bytes.clone())
        .collect();
    assert!(!wire.is_empty());
    let mut windows: HashMap<usize, HashSet<&[u8]>> = HashMap::new();
    for (k, id) in ids.iter().enumerate() {
        let raw = id.as_bytes();
        let sha256 = Sha256::digest(raw);
        let sha512 = Sha512::digest(raw);
        let dst_sha512 = Sha512::new()
            .chain_update(HASH_TO_POINT_DST)
            .chain_update(raw)
            .finalize();
        let plain_point =
            curve25519_dalek::ristretto::RistrettoPoint::hash_from_bytes::<Sha512>(raw);
        let needles: Vec<Vec<u8>> = vec![
            raw.to_vec(),
            sha256.to_vec(),
            sha256[..12].to_vec(),
            sha512.to_vec(),
            sha512[..12].to_vec(),
            dst_sha512[..12].to_vec(),
            hash_to_point(raw).compress().to_bytes().to_vec(),
            plain_point.compress().to_bytes().to_vec(),
        ];
        for n in needles {
            // Every window of the wire of this length (built once per length).
            let set = windows
                .entry(n.len())
                .or_insert_with(|| wire.iter().flat_map(|m| m.windows(n.len())).collect());
            assert!(!set.contains(&n[..]), "the wire carries a form of `{id}`");
            if k < 5 {
                // The transport's own helper agrees on a sample.
                assert!(!recording_contains(log, &n));
            }
        }
    }
}

/// The concatenated points `from` sent in round 1: its own set, masked, in send order.
pub(crate) fn round_one_points(log: &Recording, from: &str) -> Vec<[u8; 32]> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|m| m.from == from && m.bytes.first() == Some(&2) && m.bytes[1] == 1)
        .flat_map(|m| {
            m.bytes[8..]
                .chunks(32)
                .map(|c| <[u8; 32]>::try_from(c).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts the masked set went out in an order unrelated to the order of the input file:
/// `input` lists the IDs as the CSV has them (a `Vec`: its order is the point).
fn assert_shuffled(sent: &[[u8; 32]], input: &[String], k: Scalar) {
    let pos: HashMap<[u8; 32], usize> = sent.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    // Where each input row's point went, in input order.
    let order: Vec<usize> = input
        .iter()
        .map(|id| pos[&(hash_to_point(id.as_bytes()) * k).compress().to_bytes()])
        .collect();
    assert_eq!(order.len(), sent.len());
    let ascents = order.windows(2).filter(|w| w[0] < w[1]).count() as f64;
    let frac = ascents / (order.len() - 1) as f64;
    // A uniform permutation has about half ascents; the input order would give 1.0.
    assert!((0.4..0.6).contains(&frac), "ascent fraction {frac}");
    let fixed = order.iter().enumerate().filter(|(i, p)| i == *p).count();
    assert!(fixed < 10, "{fixed} items kept their input position");
    // Rows that follow each other in the input and on the wire: about 1 for a uniform
    // permutation; for buckets that were not shuffled, most rows of each bucket.
    let runs = order.windows(2).filter(|w| w[1] == w[0] + 1).count();
    assert!(
        runs < 10,
        "{runs} pairs of rows kept their input succession"
    );
}

fn ids(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    let mut v: Vec<String> = range.map(|i| format!("{prefix}{i:06}")).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn two_party_wire_carries_no_ids_and_shuffled_sets() {
    let dir = tempfile::tempdir().unwrap();
    let a_ids = ids("+8613800", 0..1200);
    let b_ids = ids("+8613800", 600..1800);
    write_ids(&dir.path().join("a.csv"), &a_ids);
    write_ids(&dir.path().join("b.csv"), &b_ids);
    let (ka, kb) = (
        Scalar::from(0x1234_5678_9abc_u64),
        Scalar::from(0xfeed_beef_u64),
    );
    let log = Recording::default();
    let mut mesh = memory_mesh(&["a", "b"], 4);
    let b = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
    let a = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
    let ja = job(dir.path(), "a", &["a", "b"], OutputMode::All);
    let jb = job(dir.path(), "b", &["a", "b"], OutputMode::All);
    // Small buckets for b: its order comes from the on-disk bucket path.
    let small = Tuning {
        bucket_bytes: 4096,
        chunk_points: 100,
        chunk_tags: 150,
        ..Tuning::default()
    };
    let (ra, rb) = tokio::join!(
        crate::run_with_key(&a, &ja, JobKey::from_scalar(ka), Tuning::default()),
        crate::run_with_key(&b, &jb, JobKey::from_scalar(kb), small),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.intersection_size, Some(600));
    assert_eq!(rb.intersection_size, Some(600));
    let want: BTreeSet<String> = ids("+8613800", 600..1200).into_iter().collect();
    assert_eq!(read_output(&ja.output.clone().unwrap()), want);
    assert_eq!(read_output(&jb.output.clone().unwrap()), want);

    let all: Vec<String> = ids("+8613800", 0..1800);
    assert_no_id_leaks(&log, &all);
    assert_shuffled(&round_one_points(&log, "a"), &a_ids, ka);
    assert_shuffled(&round_one_points(&log, "b"), &b_ids, kb);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_party_wire_carries_no_ids_and_shuffled_sets() {
    let dir = tempfile::tempdir().unwrap();
    let sets = [
        ids("id-", 0..600),
        ids("id-", 200..900),
        ids("id-", 100..500),
    ];
    let names = ["a", "b", "c"];
    for (n, s) in names.iter().zip(&sets) {
        write_ids(&dir.path().join(format!("{n}.csv")), s);
    }
    let keys = [
        Scalar::from(11u64),
        Scalar::from(1u64 << 40),
        Scalar::from(987_654_321u64),
    ];
    let log = Recording::default();
    let mesh = memory_mesh(&names, 2);
    let ts: Vec<_> = mesh
        .into_iter()
        .map(|t| RecordingTransport::new(t, log.clone()))
        .collect();
    let jobs: Vec<PsiJob> = names
        .iter()
        .map(|n| job(dir.path(), n, &names, OutputMode::Initiator))
        .collect();
    let tuning = Tuning {
        bucket_bytes: 4096,
        chunk_points: 64,
        chunk_tags: 100,
        ..Tuning::default()
    };
    let (r0, r1, r2) = tokio::join!(
        crate::run_with_key(&ts[0], &jobs[0], JobKey::from_scalar(keys[0]), tuning),
        crate::run_with_key(&ts[1], &jobs[1], JobKey::from_scalar(keys[1]), tuning),
        crate::run_with_key(&ts[2], &jobs[2], JobKey::from_scalar(keys[2]), tuning),
    );
    let (r0, r1, r2) = (r0.unwrap(), r1.unwrap(), r2.unwrap());
    assert_eq!(r0.intersection_size, Some(300));
    assert_eq!(r1.intersection_size, None);
    // c, two places after the initiator, is the combiner: it computes the size.
    assert_eq!(r2.intersection_size, Some(300));
    assert_eq!(r1.peer_set_sizes["a"], 600);
    assert_eq!(r2.peer_set_sizes["b"], 700);
    let want: BTreeSet<String> = ids("id-", 200..500).into_iter().collect();
    assert_eq!(read_output(&jobs[0].output.clone().unwrap()), want);
    assert!(!jobs[1].output.clone().unwrap().exists());

    assert_no_id_leaks(&log, &ids("id-", 0..900));
    for i in 0..3 {
        assert_shuffled(&round_one_points(&log, names[i]), &sets[i], keys[i]);
    }
}

/// The concatenated tags of the stream `from` → `to` of the given stream kind.
fn tag_stream(log: &Recording, from: &str, to: &str, stream: u8) -> Vec<crate::crypto::Tag> {
    let log = log.lock().unwrap();
    log.iter()
        .filter(|m| {
            m.from == from && m.to == to && m.bytes.first() == Some(&3) && m.bytes[1] == stream
        })
        .flat_map(|m| {
            m.bytes[8..]
                .chunks(crate::crypto::TAG_LEN)
                .map(|c| <crate::crypto::Tag>::try_from(c).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn size_only_returns_the_initiators_tags_unlinkably() {
    let dir = tempfile::tempdir().unwrap();
    let a_ids = ids("x", 0..800);
    let b_ids = ids("x", 400..1000);
    write_ids(&dir.path().join("a.csv"), &a_ids);
    write_ids(&dir.path().join("b.csv"), &b_ids);
    let (ka, kb) = (Scalar::from(5u64), Scalar::from(1u64 << 50));
    let log = Recording::default();
    let mut mesh = memory_mesh(&["a", "b"], 4);
    let b = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
    let a = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
    let ja = job(dir.path(), "a", &["a", "b"], OutputMode::SizeOnly);
    let jb = job(dir.path(), "b", &["a", "b"], OutputMode::SizeOnly);
    let (ra, rb) = tokio::join!(
        crate::run_with_key(&a, &ja, JobKey::from_scalar(ka), Tuning::default()),
        crate::run_with_key(&b, &jb, JobKey::from_scalar(kb), Tuning::default()),
    );
    assert_eq!(ra.unwrap().intersection_size, Some(400));
    assert_eq!(rb.unwrap().intersection_size, None);
    assert!(!ja.output.clone().unwrap().exists());
    // What a sent, raised to b's key, in a's order; and what b returned.
    let expected: Vec<_> = round_one_points(&log, "a")
        .iter()
        .map(|p| {
            let q = curve25519_dalek::ristretto::CompressedRistretto(*p)
                .decompress()
                .unwrap();
            crate::crypto::tag_of((q * kb).compress().as_bytes())
        })
        .collect();
    let returned = tag_stream(&log, "b", "a", crate::wire::STREAM_OWN);
    let pos: HashMap<_, usize> = returned.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let order: Vec<usize> = expected.iter().map(|t| pos[t]).collect();
    assert_eq!(order.len(), 800);
    let ascents = order.windows(2).filter(|w| w[0] < w[1]).count() as f64 / 799.0;
    assert!(
        (0.4..0.6).contains(&ascents),
        "returned tags keep a's order: {ascents}"
    );
    assert_no_id_leaks(&log, &ids("x", 0..1000));
}
