//! Correctness against a plaintext intersection, and failure behaviour.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use confide_mpc::transport::{
    ChannelTransport, Recording, RecordingTransport, Transport, TransportError, memory_mesh,
};
use confide_psi::{OutputMode, Protocol, PsiError, PsiJob, PsiReport, Tuning, run_tuned};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["alice", "bob", "carol", "dave"];

fn job(dir: &Path, me: &str, n: usize, initiator: usize, mode: OutputMode) -> PsiJob {
    PsiJob {
        initiator: NAMES[initiator].to_string(),
        parties: NAMES[..n].iter().map(|s| s.to_string()).collect(),
        mode,
        protocol: Protocol::Ecdh,
        input: dir.join(format!("{me}.csv")),
        id_column: "phone".into(),
        output: Some(dir.join(format!("{me}.out.csv"))),
        work_dir: dir.join("work"),
    }
}

fn write_input(dir: &Path, me: &str, lines: &[String]) {
    let mut s = String::from("name,phone\n");
    for l in lines {
        s.push_str(&format!("n,\"{l}\"\n"));
    }
    std::fs::write(dir.join(format!("{me}.csv")), s).unwrap();
}

fn read_output(path: &Path) -> BTreeSet<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), vec!["id"]);
    let ids: Vec<String> = r.records().map(|x| x.unwrap()[0].to_string()).collect();
    let set: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "each ID once in the output");
    set
}

/// Runs every party of a job over an in-memory mesh; returns each party's result.
async fn run_all(
    protocol: Protocol,
    dir: &Path,
    n: usize,
    initiator: usize,
    mode: OutputMode,
    tuning: Tuning,
) -> Vec<Result<PsiReport, PsiError>> {
    let mesh = memory_mesh(&NAMES[..n], 2);
    let mut handles = Vec::new();
    for (i, t) in mesh.into_iter().enumerate() {
        let mut j = job(dir, NAMES[i], n, initiator, mode);
        j.protocol = protocol;
        handles.push(tokio::spawn(async move {
            run_tuned(&t, &j, &|_| {}, tuning).await
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(
            tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("no hang")
                .unwrap(),
        );
    }
    out
}

fn plain_intersection(sets: &[Vec<String>]) -> BTreeSet<String> {
    let mut it = sets.iter().map(|s| {
        s.iter()
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect::<BTreeSet<_>>()
    });
    let first = it.next().unwrap_or_default();
    it.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
}

fn check(sets: Vec<Vec<String>>, initiator: usize, mode: OutputMode, tuning: Tuning) {
    check_with(Protocol::Ecdh, sets, initiator, mode, tuning);
}

fn check_with(
    protocol: Protocol,
    sets: Vec<Vec<String>>,
    initiator: usize,
    mode: OutputMode,
    tuning: Tuning,
) {
    let dir = tempfile::tempdir().unwrap();
    let n = sets.len();
    for (i, s) in sets.iter().enumerate() {
        write_input(dir.path(), NAMES[i], s);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(run_all(protocol, dir.path(), n, initiator, mode, tuning));
    let want = plain_intersection(&sets);
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        let mine: BTreeSet<String> = sets[i]
            .iter()
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        assert_eq!(r.input.distinct, mine.len() as u64);
        let valid = sets[i].iter().filter(|x| !x.trim().is_empty()).count() as u64;
        assert_eq!(r.input.duplicates, valid - mine.len() as u64);
        assert_eq!(r.input.rows, sets[i].len() as u64);
        for (j, name) in NAMES[..n].iter().enumerate() {
            if j != i {
                let theirs = plain_intersection(&sets[j..=j]).len() as u64;
                assert_eq!(r.peer_set_sizes[*name], theirs);
            }
        }
        let receives = i == initiator || mode == OutputMode::All;
        // With three or more parties the combiner, two places after the initiator,
        // computes the intersection's size.
        let combiner = n > 2 && i == (initiator + 2) % n;
        let out = dir.path().join(format!("{}.out.csv", NAMES[i]));
        if receives || combiner {
            assert_eq!(r.intersection_size, Some(want.len() as u64));
        } else {
            assert_eq!(r.intersection_size, None);
        }
        if receives && mode != OutputMode::SizeOnly {
            assert_eq!(read_output(&out), want);
            assert_eq!(r.output.as_deref(), Some(out.as_path()));
        } else {
            assert!(!out.exists());
            assert_eq!(r.output, None);
        }
    }
    // The private work directories are removed.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("work"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "work dir not cleaned: {left:?}");
}

fn id_strategy() -> impl Strategy<Value = String> {
    (0u8..24, 0u8..3, 0u8..3).prop_map(|(v, pre, post)| {
        format!(
            "{}id{v}{}",
            " ".repeat(pre as usize),
            " ".repeat(post as usize)
        )
    })
}

fn tuning_strategy() -> impl Strategy<Value = Tuning> {
    prop_oneof![
        Just(Tuning::default()),
        (16u64..200, 1usize..6, 1usize..6).prop_map(|(b, p, t)| Tuning {
            bucket_bytes: b,
            chunk_points: p,
            chunk_tags: t,
            ..Tuning::default()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn two_party_matches_plaintext(
        a in prop::collection::vec(id_strategy(), 0..30),
        b in prop::collection::vec(id_strategy(), 0..30),
        initiator in 0usize..2,
        mode in prop_oneof![Just(OutputMode::Initiator), Just(OutputMode::All), Just(OutputMode::SizeOnly)],
        tuning in tuning_strategy(),
        kkrt in any::<bool>(),
    ) {
        let protocol = if kkrt && mode != OutputMode::SizeOnly { Protocol::Kkrt } else { Protocol::Ecdh };
        check_with(protocol, vec![a, b], initiator, mode, tuning);
    }

    #[test]
    fn multi_party_matches_plaintext(
        sets in prop::collection::vec(prop::collection::vec(id_strategy(), 0..25), 3..5),
        initiator in 0usize..3,
        size_only in any::<bool>(),
        tuning in tuning_strategy(),
    ) {
        let mode = if size_only { OutputMode::SizeOnly } else { OutputMode::Initiator };
        check(sets, initiator, mode, tuning);
    }
}

fn ids(r: std::ops::Range<u32>) -> Vec<String> {
    r.map(|i| format!("{i}")).collect()
}

#[test]
fn edge_cases() {
    let t = Tuning::default();
    check(vec![vec![], vec![]], 0, OutputMode::All, t);
    check(vec![ids(0..50), vec![]], 0, OutputMode::Initiator, t);
    check(vec![vec![], ids(0..50)], 1, OutputMode::All, t);
    check(vec![ids(0..80), ids(0..80)], 0, OutputMode::All, t);
    check(
        vec![ids(0..80), ids(0..80), ids(0..80)],
        2,
        OutputMode::Initiator,
        t,
    );
    check(vec![ids(0..40), ids(40..80)], 0, OutputMode::Initiator, t);
    for (sets, initiator, mode) in [
        (vec![vec![], vec![]], 0, OutputMode::All),
        (vec![ids(0..50), vec![]], 0, OutputMode::Initiator),
        (vec![vec![], ids(0..50)], 1, OutputMode::All),
        (vec![ids(0..80), ids(0..80)], 1, OutputMode::All),
        (vec![ids(0..40), ids(40..80)], 0, OutputMode::Initiator),
        // Around the cuckoo table's switch of expansion (2^12 items).
        (vec![ids(0..4095), ids(2000..6096)], 0, OutputMode::All),
    ] {
        check_with(Protocol::Kkrt, sets, initiator, mode, t);
    }
    check(
        vec![ids(0..40), ids(40..80), vec![]],
        1,
        OutputMode::SizeOnly,
        t,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_column_fails_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), "alice", &ids(0..10));
    let log = Recording::default();
    let mut mesh = memory_mesh(&["alice", "bob"], 2);
    let _bob = mesh.pop().unwrap();
    let alice = RecordingTransport::new(mesh.pop().unwrap(), log.clone());
    let mut j = job(dir.path(), "alice", 2, 0, OutputMode::All);
    j.id_column = "national_id".into();
    assert!(matches!(
        confide_psi::check_input(&j.input, &j.id_column),
        Err(PsiError::MissingColumn { .. })
    ));
    let err = confide_psi::run(&alice, &j, &|_| {}).await.unwrap_err();
    assert!(err.to_string().contains("national_id"), "{err}");
    assert!(log.lock().unwrap().is_empty(), "nothing may be sent");
    assert!(
        !dir.path().join("work").exists(),
        "no work dir before the check"
    );
}

/// Rewrites every message it sends with a function.
struct Rewrite<F>(ChannelTransport, F);

impl<F: Fn(&mut [u8]) + Send + Sync> Transport for Rewrite<F> {
    fn me(&self) -> &str {
        self.0.me()
    }
    fn peers(&self) -> Vec<String> {
        self.0.peers()
    }
    async fn send(&self, to: &str, mut msg: Vec<u8>) -> Result<(), TransportError> {
        (self.1)(&mut msg);
        self.0.send(to, msg).await
    }
    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        self.0.recv(from).await
    }
}

/// Corrupts the first point of every points message.
fn corrupt_points(msg: &mut [u8]) {
    if msg.first() == Some(&2) && msg.len() >= 40 {
        msg[8..40].copy_from_slice(&[0xff; 32]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_point_from_a_peer_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), "alice", &ids(0..300));
    write_input(dir.path(), "bob", &ids(100..400));
    let mut mesh = memory_mesh(&["alice", "bob"], 2);
    let bob = Rewrite(mesh.pop().unwrap(), corrupt_points);
    let alice = mesh.pop().unwrap();
    let ja = job(dir.path(), "alice", 2, 0, OutputMode::Initiator);
    let jb = job(dir.path(), "bob", 2, 0, OutputMode::Initiator);
    let tuning = Tuning {
        chunk_points: 50,
        ..Tuning::default()
    };
    let a = tokio::spawn(async move { run_tuned(&alice, &ja, &|_| {}, tuning).await });
    let b = tokio::spawn(async move { run_tuned(&bob, &jb, &|_| {}, tuning).await });
    let ra = tokio::time::timeout(Duration::from_secs(30), a)
        .await
        .unwrap()
        .unwrap();
    let rb = tokio::time::timeout(Duration::from_secs(30), b)
        .await
        .unwrap()
        .unwrap();
    match ra {
        Err(PsiError::Malformed { peer, reason }) => {
            assert_eq!(peer, "bob");
            assert!(reason.contains("item 0"), "{reason}");
        }
        other => panic!("expected a malformed-point error, got {other:?}"),
    }
    // Bob fails too (alice's points are corrupted on his side, or alice left).
    assert!(rb.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn disagreeing_jobs_fail_at_hello() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), "alice", &ids(0..10));
    write_input(dir.path(), "bob", &ids(0..10));
    let mut mesh = memory_mesh(&["alice", "bob"], 2);
    let bob = mesh.pop().unwrap();
    let alice = mesh.pop().unwrap();
    let ja = job(dir.path(), "alice", 2, 0, OutputMode::Initiator);
    let jb = job(dir.path(), "bob", 2, 0, OutputMode::SizeOnly);
    let (ra, rb) = tokio::join!(
        confide_psi::run(&alice, &ja, &|_| {}),
        confide_psi::run(&bob, &jb, &|_| {})
    );
    for r in [ra, rb] {
        assert!(
            matches!(&r, Err(PsiError::Malformed { reason, .. }) if reason.contains("differs")),
            "{r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_jobs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), "alice", &ids(0..10));
    let mesh = memory_mesh(&["alice", "bob", "carol"], 2);
    let mut j = job(dir.path(), "alice", 3, 0, OutputMode::All);
    assert!(matches!(
        confide_psi::run(&mesh[0], &j, &|_| {}).await,
        Err(PsiError::InvalidJob(_))
    ));
    // KKRT is for two parties only, and offers no size-only output.
    j.mode = OutputMode::Initiator;
    j.protocol = Protocol::Kkrt;
    let r = confide_psi::run(&mesh[0], &j, &|_| {}).await;
    assert!(
        matches!(&r, Err(PsiError::InvalidJob(m)) if m.contains("--protocol ecdh")),
        "{r:?}"
    );
    j.protocol = Protocol::Ecdh;
    j.parties.pop();
    assert!(matches!(
        confide_psi::run(&mesh[0], &j, &|_| {}).await,
        Err(PsiError::InvalidJob(_))
    ));
    let mesh = memory_mesh(&["alice", "bob"], 2);
    j.mode = OutputMode::SizeOnly;
    j.protocol = Protocol::Kkrt;
    let r = confide_psi::run(&mesh[0], &j, &|_| {}).await;
    assert!(
        matches!(&r, Err(PsiError::InvalidJob(m)) if m.contains("size-only")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_peer_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), "alice", &ids(0..10));
    let mut mesh = memory_mesh(&["alice", "bob"], 2);
    drop(mesh.pop());
    let alice = mesh.pop().unwrap();
    let ja = job(dir.path(), "alice", 2, 0, OutputMode::Initiator);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        confide_psi::run(&alice, &ja, &|_| {}),
    )
    .await
    .unwrap();
    assert!(
        matches!(
            r,
            Err(PsiError::Transport(TransportError::Disconnected { .. }))
        ),
        "{r:?}"
    );
}

/// alice (500 IDs) and bob (450, 250 in common) run `protocol`; returns both reports
/// and alice's progress events.
async fn progress_run(protocol: Protocol) -> (PsiReport, PsiReport, Vec<confide_psi::Progress>) {
    let dir = tempfile::tempdir().unwrap();
    write_input(dir.path(), "alice", &ids(0..500));
    write_input(dir.path(), "bob", &ids(250..700));
    let mut mesh = memory_mesh(&["alice", "bob"], 2);
    let bob = mesh.pop().unwrap();
    let alice = mesh.pop().unwrap();
    let [mut ja, mut jb] =
        ["alice", "bob"].map(|p| job(dir.path(), p, 2, 0, OutputMode::Initiator));
    ja.protocol = protocol;
    jb.protocol = protocol;
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |p: confide_psi::Progress| seen.lock().unwrap().push(p);
    let (ra, rb) = tokio::join!(
        confide_psi::run(&alice, &ja, &record),
        confide_psi::run(&bob, &jb, &|_| {})
    );
    (ra.unwrap(), rb.unwrap(), seen.into_inner().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_is_reported() {
    let (ra, _rb, seen) = progress_run(Protocol::Ecdh).await;
    assert_eq!(ra.intersection_size, Some(250));
    assert!(ra.bytes_sent > 500 * 32 && ra.bytes_received > 450 * 32 + 500 * 12);
    let last_exchange = seen.iter().rev().find(|p| p.stage == "exchanging").unwrap();
    assert_eq!((last_exchange.done, last_exchange.total), (950, 950));
    assert!(seen.iter().any(|p| p.stage == "matching"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kkrt_reports_progress_and_bytes() {
    let (ra, rb, seen) = progress_run(Protocol::Kkrt).await;
    assert_eq!(ra.intersection_size, Some(250));
    assert_eq!(rb.intersection_size, None);
    assert_eq!(ra.peer_set_sizes["bob"], 450);
    assert_eq!(rb.peer_set_sizes["alice"], 500);
    assert_eq!(ra.bytes_sent, rb.bytes_received);
    assert_eq!(rb.bytes_sent, ra.bytes_received);
    // Three tag lists of 450 tags each, at least 6 bytes per tag.
    assert!(ra.bytes_received > 3 * 450 * 6, "{}", ra.bytes_received);
    assert!(seen.iter().any(|p| p.stage == "reading input"));
    assert!(seen.iter().any(|p| p.stage == "oprf"));
    let last = seen.iter().rev().find(|p| p.stage == "matching").unwrap();
    assert_eq!((last.done, last.total), (3 * 450, 3 * 450));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_to_memory_returns_the_intersection_to_those_who_learn_it() {
    let dir = tempfile::tempdir().unwrap();
    let sets = [ids(0..400), ids(150..700), ids(100..300)];
    for (i, s) in sets.iter().enumerate() {
        write_input(dir.path(), NAMES[i], s);
    }
    let plain = |n: usize| {
        plain_intersection(&sets[..n])
            .into_iter()
            .collect::<Vec<_>>()
    };
    let cases = [
        (2, OutputMode::All, vec![true, true]),
        (2, OutputMode::Initiator, vec![true, false]),
        (3, OutputMode::Initiator, vec![true, false, false]),
        (3, OutputMode::SizeOnly, vec![false, false, false]),
    ];
    let cases = cases.into_iter().flat_map(|(n, mode, learns)| {
        [
            Some((n, mode, learns.clone(), Protocol::Ecdh)),
            (n == 2).then_some((n, mode, learns, Protocol::Kkrt)),
        ]
        .into_iter()
        .flatten()
    });
    for (n, mode, learns, protocol) in cases {
        let mesh = memory_mesh(&NAMES[..n], 2);
        let mut handles = Vec::new();
        for (i, t) in mesh.into_iter().enumerate() {
            let mut j = job(dir.path(), NAMES[i], n, 0, mode);
            j.protocol = protocol;
            // Alice keeps the result in memory only; the others also write it.
            if i == 0 {
                j.output = None;
            }
            handles.push(tokio::spawn(async move {
                let r = confide_psi::run_to_memory(&t, &j, &|_| {}).await;
                (j, r)
            }));
        }
        for (i, h) in handles.into_iter().enumerate() {
            let (j, r) = h.await.unwrap();
            let (report, got) = r.unwrap();
            if learns[i] {
                let got = got.expect("the intersection in memory");
                assert_eq!(got, plain(n), "{n} parties, {mode:?}, party {i}");
                match &j.output {
                    Some(path) => {
                        let want: BTreeSet<String> = plain(n).into_iter().collect();
                        assert_eq!(read_output(path), want);
                        assert_eq!(report.output.as_deref(), Some(path.as_path()));
                    }
                    None => assert_eq!(report.output, None),
                }
            } else {
                assert_eq!(got, None, "{n} parties, {mode:?}, party {i}");
            }
        }
        for name in &NAMES[..n] {
            let _ = std::fs::remove_file(dir.path().join(format!("{name}.out.csv")));
        }
    }
    assert!(!dir.path().join("alice.out.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_result_from_the_combiner_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for (i, r) in [0..300, 100..400, 50..250].into_iter().enumerate() {
        write_input(dir.path(), NAMES[i], &ids(r));
    }
    let tuning = Tuning {
        chunk_tags: 1,
        ..Tuning::default()
    };
    // Out of range; and, with one position per chunk, a position repeated.
    for bad in [u64::MAX, 299] {
        let mut mesh = memory_mesh(&NAMES[..3], 2);
        // Rewrites the first position of every result chunk.
        let rewrite = move |msg: &mut [u8]| {
            if msg.first() == Some(&5) && msg.len() >= 16 {
                msg[8..16].copy_from_slice(&bad.to_le_bytes());
            }
        };
        let carol = Rewrite(mesh.pop().unwrap(), rewrite);
        let bob = mesh.pop().unwrap();
        let alice = mesh.pop().unwrap();
        let [ja, jb, jc] =
            [0, 1, 2].map(|i| job(dir.path(), NAMES[i], 3, 0, OutputMode::Initiator));
        // Each task owns its transport: alice's failure disconnects her from carol.
        let a = tokio::spawn(async move { run_tuned(&alice, &ja, &|_| {}, tuning).await });
        let b = tokio::spawn(async move { run_tuned(&bob, &jb, &|_| {}, tuning).await });
        let c = tokio::spawn(async move { run_tuned(&carol, &jc, &|_| {}, tuning).await });
        let ra = tokio::time::timeout(Duration::from_secs(60), a)
            .await
            .unwrap()
            .unwrap();
        match ra {
            Err(PsiError::Malformed { peer, reason }) => {
                assert_eq!(peer, "carol");
                assert!(reason.contains("out of order or out of range"), "{reason}");
            }
            other => panic!("expected a malformed-result error, got {other:?}"),
        }
        assert!(b.await.unwrap().is_ok());
        let _ = tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .unwrap();
        assert!(!dir.path().join("alice.out.csv").exists());
    }
}
