//! Resume from a checkpoint: a run cut off part way continues from its last completed unit
//! and gives the intersection of an uninterrupted run, written in the same order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use confide_mpc::transport::{ChannelTransport, Transport, TransportError, memory_mesh};
use confide_psi::{
    CheckpointSpec, OutputMode, Protocol, PsiError, PsiJob, PsiReport, Tuning, run_checkpointed,
};
use sha2::{Digest, Sha256};

const NAMES: [&str; 3] = ["alice", "bob", "carol"];

/// A transport that fails after `budget` received messages, as if its party crashed.
struct Cut {
    inner: ChannelTransport,
    budget: AtomicI64,
}

impl Transport for Cut {
    fn me(&self) -> &str {
        self.inner.me()
    }
    fn peers(&self) -> Vec<String> {
        self.inner.peers()
    }
    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), TransportError> {
        self.inner.send(to, msg).await
    }
    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        if self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(TransportError::malformed(from, "cut off (test)"));
        }
        self.inner.recv(from).await
    }
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("+49{i:09}")).collect()
}

fn write_input(dir: &Path, me: &str, ids: &[String]) {
    let mut s = String::from("name,phone\n");
    for id in ids {
        s.push_str(&format!("n,{id}\n"));
    }
    std::fs::write(dir.join(format!("{me}.csv")), s).unwrap();
}

fn job(dir: &Path, me: &str, n: usize, protocol: Protocol) -> PsiJob {
    PsiJob {
        initiator: "alice".into(),
        parties: NAMES[..n].iter().map(|s| s.to_string()).collect(),
        mode: OutputMode::Initiator,
        protocol,
        input: dir.join(format!("{me}.csv")),
        id_column: "phone".into(),
        output: (me == "alice").then(|| dir.join("out.csv")),
        work_dir: dir.join(format!("work-{me}")),
    }
}

fn ck_dir(dir: &Path, me: &str) -> PathBuf {
    dir.join(format!("ck-{me}"))
}

fn tuning() -> Tuning {
    Tuning {
        chunk_points: 50,
        kkrt_tags: 64,
        ..Tuning::default()
    }
}

/// Runs every party; `cut` = (party index, messages it receives before it "crashes").
async fn run_all(
    dir: &Path,
    n: usize,
    protocol: Protocol,
    resume: bool,
    cut: Option<(usize, i64)>,
) -> Vec<Result<PsiReport, PsiError>> {
    let mesh = memory_mesh(&NAMES[..n], 2);
    let mut handles = Vec::new();
    for (i, t) in mesh.into_iter().enumerate() {
        let budget = match cut {
            Some((c, b)) if c == i => b,
            _ => i64::MAX,
        };
        let t = Cut {
            inner: t,
            budget: AtomicI64::new(budget),
        };
        let j = job(dir, NAMES[i], n, protocol);
        let spec = CheckpointSpec {
            dir: ck_dir(dir, NAMES[i]),
            resume,
        };
        handles.push(tokio::spawn(async move {
            run_checkpointed(&t, &j, &|_| {}, tuning(), &spec).await
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn sets(n: usize) -> Vec<Vec<String>> {
    // alice 0..1500, bob 500..2000, carol 0..1000 and 1800..2100.
    let mut c = ids(0..1000);
    c.extend(ids(1800..2100));
    [ids(0..1500), ids(500..2000), c][..n].to_vec()
}

fn expected(n: usize) -> BTreeSet<String> {
    let s = sets(n);
    let mut out: BTreeSet<String> = s[0].iter().cloned().collect();
    for other in &s[1..] {
        let o: BTreeSet<String> = other.iter().cloned().collect();
        out = out.intersection(&o).cloned().collect();
    }
    out
}

fn setup(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, s) in sets(n).iter().enumerate() {
        write_input(dir.path(), NAMES[i], s);
    }
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Cut bob off part way, resume: the output is the uninterrupted intersection, in the
/// order the seeds in the checkpoints fix (the same bytes as resuming from the very start
/// of the same checkpoints), and the resumed run computed less.
async fn cut_and_resume(n: usize, protocol: Protocol, who: usize, early: i64, late: i64) {
    let dir = setup(n);
    let d = dir.path();
    // 1. Cut off right after the start: the checkpoints hold keys and seeds.
    let r = run_all(d, n, protocol, false, Some((who, early))).await;
    assert!(r.iter().any(|x| x.is_err()), "the first run was cut off");
    let saved = d.join("saved");
    for name in &NAMES[..n] {
        copy_dir(&ck_dir(d, name), &saved.join(name));
    }
    // 2. Resume from there without a cut: the reference output.
    let r = run_all(d, n, protocol, true, None).await;
    for x in &r {
        assert!(x.is_ok(), "{x:?}");
    }
    let reference = std::fs::read(d.join("out.csv")).unwrap();
    std::fs::remove_file(d.join("out.csv")).unwrap();
    // 3. From the same start, cut off late, then resume.
    for name in &NAMES[..n] {
        std::fs::remove_dir_all(ck_dir(d, name)).unwrap();
        copy_dir(&saved.join(name), &ck_dir(d, name));
    }
    let r = run_all(d, n, protocol, true, Some((who, late))).await;
    assert!(r.iter().any(|x| x.is_err()), "the second run was cut off");
    assert!(!d.join("out.csv").exists(), "no output from a cut-off run");
    let r = run_all(d, n, protocol, true, None).await;
    let reports: Vec<PsiReport> = r.into_iter().map(|x| x.unwrap()).collect();
    let skipped: u64 = reports.iter().map(|r| r.resumed_items).sum();
    assert!(skipped > 0, "the resumed run computed everything again");
    let out = std::fs::read(d.join("out.csv")).unwrap();
    assert!(
        out == reference,
        "the output differs from the uninterrupted one ({} vs {} bytes)",
        out.len(),
        reference.len()
    );
    let got: BTreeSet<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(got, expected(n));
    // The checkpoint of bob holds nothing of alice's only IDs: no ID, no hash of one.
    let all = sets(n);
    let alice_only: Vec<&String> = all[0].iter().filter(|id| !all[1].contains(id)).collect();
    for e in std::fs::read_dir(ck_dir(d, "bob")).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        for id in alice_only.iter().take(200) {
            let sha = Sha256::digest(id.as_bytes());
            for needle in [id.as_bytes(), &sha[..12]] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "bob's checkpoint holds alice's ID {id} or its hash"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdh_two_parties_resume_from_the_last_chunk() {
    cut_and_resume(2, Protocol::Ecdh, 1, 2, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdh_three_parties_resume_from_the_last_chunk() {
    cut_and_resume(3, Protocol::Ecdh, 1, 2, 45).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kkrt_resumes_after_the_oprf_and_each_tag_chunk() {
    // alice receives the OPRF's few messages, then 24 chunks of tags per list.
    cut_and_resume(2, Protocol::Kkrt, 0, 1, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_input_or_a_missing_checkpoint_is_refused() {
    let dir = setup(2);
    let d = dir.path();
    let r = run_all(d, 2, Protocol::Ecdh, false, Some((1, 10))).await;
    assert!(r.iter().any(|x| x.is_err()));
    let mut changed = sets(2)[1].clone();
    changed[7] = "+49999999999".into();
    write_input(d, "bob", &changed);
    let r = run_all(d, 2, Protocol::Ecdh, true, None).await;
    let e = r[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("inputs changed since the checkpoint"), "{e}");
    std::fs::remove_dir_all(ck_dir(d, "alice")).unwrap();
    let r = run_all(d, 2, Protocol::Ecdh, true, None).await;
    let e = r[0].as_ref().unwrap_err().to_string();
    assert!(e.contains("no checkpoint"), "{e}");
}
