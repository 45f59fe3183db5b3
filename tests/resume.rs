//! Resume across real daemons: a PSI whose peer's daemon is killed part way continues, after
//! the peer restarts, from the checkpoints instead of from zero, with the same result; a
//! changed input or a missing checkpoint is refused with a message naming the party.
//! Training jobs resume per epoch (logistic regression, here) or per tree (boosted trees,
//! in `resume/gbdt.rs`).

mod common;
#[path = "resume/gbdt.rs"]
mod gbdt;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Small units: many checkpoints in a PSI of a few thousand IDs.
const KNOBS: [(&str, &str); 2] = [
    ("CONFIDE_PSI_CHUNK_POINTS", "250"),
    ("CONFIDE_PSI_KKRT_TAGS", "256"),
];

fn serve_tuned(dir: &Path, party: &str) -> Daemon {
    let child = cli(&["serve", "--config", path_str(&config(dir, party))])
        .env("RUST_LOG", "warn")
        .envs(KNOBS)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    Daemon {
        name: party.to_string(),
        child,
    }
}

fn write_csv(path: &Path, ids: impl Iterator<Item = usize>) {
    let mut s = String::from("phone,x\n");
    for i in ids {
        s.push_str(&format!("+4470{i:08},1\n"));
    }
    std::fs::write(path, s).unwrap();
}

struct Setup {
    _root: tempfile::TempDir,
    dir: PathBuf,
    bob_csv: PathBuf,
    out: PathBuf,
    expected: BTreeSet<String>,
}

fn setup(n: usize) -> Setup {
    let (root, dir, _) = new_alliance("alice,bob");
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (a, b) = (data.join("alice.csv"), data.join("bob.csv"));
    write_csv(&a, 0..n);
    write_csv(&b, n / 2..n + n / 2);
    let allow = "{ psi = [\"alice\", \"bob\"] }";
    add_dataset(&dir, "alice", "phones", &a, "phone", allow);
    add_dataset(&dir, "bob", "phones", &b, "phone", allow);
    let expected = (n / 2..n).map(|i| format!("+4470{i:08}")).collect();
    Setup {
        out: root.path().join("matched.csv"),
        _root: root,
        dir,
        bob_csv: b,
        expected,
    }
}

fn jobs_dir(dir: &Path, party: &str) -> PathBuf {
    dir.join(party).join("data").join("jobs")
}

/// The ids of the jobs with a checkpoint at `party`.
fn checkpointed(dir: &Path, party: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(jobs_dir(dir, party)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().join("checkpoint").join("state").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Size of `file` in the checkpoint of the only checkpointed job at `party` (0 if none).
fn ck_file_len(dir: &Path, party: &str, file: &str) -> u64 {
    checkpointed(dir, party)
        .first()
        .and_then(|j| {
            std::fs::metadata(jobs_dir(dir, party).join(j).join("checkpoint").join(file)).ok()
        })
        .map_or(0, |m| m.len())
}

fn psi_args<'a>(s: &'a Setup, protocol: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "psi",
        "--config",
        "",
        "--dataset",
        "phones",
        "--peer",
        "bob:phones",
        "--protocol",
        protocol,
        "--output",
        path_str(&s.out),
    ];
    args.extend_from_slice(extra);
    args
}

fn spawn_psi(s: &Setup, protocol: &str) -> Child {
    let cfg = config(&s.dir, "alice");
    let mut args = psi_args(s, protocol, &[]);
    args[2] = path_str(&cfg);
    cli(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn resume(s: &Setup, protocol: &str, job: &str) -> std::process::Output {
    let cfg = config(&s.dir, "alice");
    let mut args = psi_args(s, protocol, &["--resume", job]);
    args[2] = path_str(&cfg);
    cli(&args).output().unwrap()
}

/// Kills `bob`'s daemon once `ready` holds (within 2 minutes); `job` must then fail (its
/// output is returned).
fn kill_when(job: Child, bob: &mut Daemon, ready: &dyn Fn() -> bool) -> std::process::Output {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never reached the cut-off point"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    bob.child.kill().unwrap();
    bob.child.wait().unwrap();
    let out = job.wait_with_output().unwrap();
    assert!(!out.status.success(), "the job survived bob's death");
    out
}

/// Runs a PSI, kills bob's daemon once `ready` holds, restarts it; returns the job id.
fn cut_off(s: &Setup, protocol: &str, bob: &mut Daemon, ready: &dyn Fn() -> bool) -> String {
    let job = spawn_psi(s, protocol);
    let out = kill_when(job, bob, ready);
    assert!(!s.out.exists(), "a partial output was written");
    let ids = checkpointed(&s.dir, "alice");
    assert_eq!(ids.len(), 1, "alice keeps the checkpoint of the failed job");
    // The failure says which job to resume.
    assert!(
        stderr(&out).contains(&format!("continue it with `--resume {}`", ids[0])),
        "{}",
        stderr(&out)
    );
    *bob = serve_tuned(&s.dir, "bob");
    wait_all_ok(&s.dir, &["alice", "bob"], Duration::from_secs(20));
    assert_eq!(
        checkpointed(&s.dir, "bob"),
        ids,
        "bob's checkpoint survives his restart"
    );
    ids[0].clone()
}

fn output_ids(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The resumed job's summary: resumed from `job`, with items not computed again.
fn assert_resumed(o: &std::process::Output, job: &str) -> u64 {
    let out = ok(o, "psi --resume");
    let tail = format!("resumed job {job} (");
    let at = out.find(&tail).unwrap_or_else(|| panic!("{out}"));
    let n: u64 = out[at + tail.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n > 0, "the resumed job computed everything again: {out}");
    assert!(
        stderr(o).contains("resuming"),
        "progress does not show the resumed position: {}",
        stderr(o)
    );
    n
}

fn resume_test(protocol: &str, n: usize, bob_file: &'static str, cut_at: u64, party: &str) {
    let s = setup(n);
    let _alice = serve_tuned(&s.dir, "alice");
    let mut bob = serve_tuned(&s.dir, "bob");
    wait_all_ok(&s.dir, &["alice", "bob"], Duration::from_secs(20));
    let dir = s.dir.clone();
    let party = party.to_string();
    let job = cut_off(&s, protocol, &mut bob, &move || {
        ck_file_len(&dir, &party, bob_file) >= cut_at
    });
    // The checkpoint is private to its party: folder 0700, files 0600.
    use std::os::unix::fs::PermissionsExt;
    let ck = jobs_dir(&s.dir, "bob").join(&job).join("checkpoint");
    assert_eq!(
        std::fs::metadata(&ck).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in std::fs::read_dir(&ck).unwrap() {
        let m = f.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o600, "{m:o}");
    }
    let o = resume(&s, protocol, &job);
    let skipped = assert_resumed(&o, &job);
    assert!(stdout(&o).contains(&format!("({protocol} PSI)")));
    assert_eq!(output_ids(&s.out), s.expected, "resumed {skipped}");
    // Success deletes the checkpoints at both parties.
    assert!(checkpointed(&s.dir, "alice").is_empty());
    let started = Instant::now();
    while !checkpointed(&s.dir, "bob").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "bob keeps it");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The resumed attempt is anchored like any job: it has a proof.
    let attempt = job_id(&stdout(&o));
    let proof = s.dir.join("proof.json");
    ok(&audit_prove(&s.dir, "alice", &attempt, &proof), "prove");
}

#[test]
fn an_ecdh_psi_resumes_after_the_peer_restarts() {
    // bob holds alice's set as tags (12 bytes each): cut after 1,000 of 6,000.
    resume_test("ecdh", 6000, "recv-1-0", 12_000, "bob");
}

#[test]
fn a_kkrt_psi_resumes_after_the_peer_restarts() {
    // alice records matches (12 bytes each) chunk by chunk after the OPRF.
    resume_test("kkrt", 40_000, "kkrt-found", 1_200, "alice");
}

#[test]
fn a_resume_with_changed_inputs_or_no_checkpoint_is_refused() {
    let s = setup(6000);
    let _alice = serve_tuned(&s.dir, "alice");
    let mut bob = serve_tuned(&s.dir, "bob");
    wait_all_ok(&s.dir, &["alice", "bob"], Duration::from_secs(20));
    let dir = s.dir.clone();
    let job = cut_off(&s, "ecdh", &mut bob, &move || {
        ck_file_len(&dir, "bob", "recv-1-0") >= 12_000
    });
    // Another protocol is another job.
    let o = resume(&s, "kkrt", &job);
    assert_clean_error(
        &o,
        "the job's parties or options differ from the checkpoint's",
    );
    // bob's input changes (same length: the digest finds it when the job runs).
    let text = std::fs::read_to_string(&s.bob_csv).unwrap();
    std::fs::write(
        &s.bob_csv,
        text.replacen("+447000003000", "+447000009999", 1),
    )
    .unwrap();
    let o = resume(&s, "ecdh", &job);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("inputs changed since the checkpoint") && e.contains("bob"),
        "{e}"
    );
    // A failed resumed attempt names the original job, whose checkpoint it worked on.
    assert!(
        e.contains(&format!("continue it with `--resume {job}`")),
        "{e}"
    );
    // A longer file is refused when proposed.
    std::fs::write(&s.bob_csv, format!("{text}+449999999999,1\n")).unwrap();
    let o = resume(&s, "ecdh", &job);
    assert_clean_error(
        &o,
        &format!("cannot resume job {job} at `bob`: inputs changed since the checkpoint"),
    );
    std::fs::write(&s.bob_csv, text).unwrap();
    // bob loses his checkpoint.
    std::fs::remove_dir_all(jobs_dir(&s.dir, "bob").join(&job)).unwrap();
    let o = resume(&s, "ecdh", &job);
    assert_clean_error(&o, &format!("job {job} has no checkpoint at `bob`"));
    // A job that alice never ran.
    let o = resume(&s, "ecdh", "0123456789abcdef01234567");
    assert_clean_error(
        &o,
        "job 0123456789abcdef01234567 has no checkpoint at `alice`",
    );
}

/// Training data: alice `id,label,a1,a2`, bob `id,b1,b2` (the label depends on all four).
fn train_data(dir: &Path, rows: usize) -> (PathBuf, PathBuf) {
    let mut a = String::from("id,label,a1,a2\n");
    let mut b = String::from("id,b1,b2\n");
    let mut x = 12345u64;
    let mut r = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    for i in 0..rows {
        let v = [r(), r(), r(), r()];
        let z = 1.5 * v[0] - v[1] + 0.8 * v[2] + 0.3 * v[3] + 0.5 * r();
        a.push_str(&format!(
            "c{i:05},{},{:.4},{:.4}\n",
            (z > 0.0) as u8,
            v[0],
            v[1]
        ));
        b.push_str(&format!("c{i:05},{:.4},{:.4}\n", v[2], v[3]));
    }
    let (pa, pb) = (dir.join("ta.csv"), dir.join("tb.csv"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    (pa, pb)
}

fn weights(path: &Path) -> (f64, Vec<f64>, usize) {
    let m: confide_training::Model = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (
        m.intercept,
        m.weights.values().copied().collect(),
        m.metrics.epochs,
    )
}

#[test]
fn a_training_job_resumes_from_its_last_epoch_after_the_peer_restarts() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let (pa, pb) = train_data(root.path(), 3000);
    let [_alice, mut bob, _carol] = serve_training(&dir, &pa, &pb);
    let cfg = config(&dir, "alice");
    let args = |out: &Path, extra: &[&str]| {
        let mut v: Vec<String> = [
            "train",
            "--config",
            path_str(&cfg),
            "--dataset",
            "credit",
            "--peer",
            "bob:credit",
            "--label",
            "label",
            "--epochs",
            "10",
            "--batch-size",
            "32",
            "--tolerance",
            "0",
            "--output",
            path_str(out),
        ]
        .map(String::from)
        .to_vec();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    // The uninterrupted run.
    let whole = root.path().join("whole.json");
    let o = cli(&args(&whole, &["--seed", "77"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>())
    .output()
    .unwrap();
    ok(&o, "uninterrupted train");
    let (i0, w0, e0) = weights(&whole);
    // The same job, bob's daemon killed once both generations of his checkpoint exist
    // (at least two epochs done).
    let cut = root.path().join("cut.json");
    let job = cli(&args(&cut, &["--seed", "77"])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let orig = cut_training(&dir, job, &mut bob, &cut);
    // bob's data changed: refused (his rows' digest is in his checkpoint).
    let text = replace_row(&pb, "c00007,0.1234,0.5678");
    let run = |extra: &[&str]| {
        let v = args(&cut, extra);
        cli(&v.iter().map(String::as_str).collect::<Vec<_>>())
            .output()
            .unwrap()
    };
    let o = run(&["--resume", &orig]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("inputs changed since the checkpoint") && e.contains("bob"),
        "{e}"
    );
    std::fs::write(&pb, text).unwrap();
    // bob's checkpoint holds his shares and the public schedule: none of alice's values.
    let alice_values: Vec<[u8; 8]> = std::fs::read_to_string(&pa)
        .unwrap()
        .lines()
        .skip(1)
        .take(50)
        .flat_map(|l| {
            l.split(',')
                .skip(2)
                .map(|v| v.parse::<f64>().unwrap().to_le_bytes())
        })
        .collect();
    for f in checkpoint_files(&dir, "bob") {
        let bytes = std::fs::read(&f).unwrap();
        for v in &alice_values {
            assert!(!bytes.windows(8).any(|w| w == v), "alice's value in {f}");
        }
    }
    // Resume (the seed comes from the checkpoint).
    let o = cli(&args(&cut, &["--resume", &orig])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>())
    .output()
    .unwrap();
    let line = ok(&o, "train --resume");
    let tail = format!("resumed job {orig} after epoch ");
    let at = line.find(&tail).unwrap_or_else(|| panic!("{line}"));
    let from: usize = line[at + tail.len()..]
        .trim()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap();
    assert!(from >= 1, "{line}");
    let err = stderr(&o);
    assert!(
        !err.contains("epoch: 1/") && err.contains(&format!("epoch: {}/", from + 1)),
        "progress starts past epoch 0: {err}"
    );
    let (i1, w1, e1) = weights(&cut);
    assert_eq!(e1, e0, "the same schedule");
    // Fresh dealer randomness after the resume changes fixed-point roundings only.
    eprintln!(
        "epochs {e0}, resumed after {from}: intercept {i0} vs {i1}, weights {w0:?} vs {w1:?}"
    );
    for (a, b) in std::iter::once((i0, i1)).chain(w0.into_iter().zip(w1)) {
        assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0), "{a} vs {b}");
    }
    assert!(
        checkpointed_train(&dir, "alice").is_empty(),
        "deleted on success"
    );
    drop(bob);
}

/// alice, bob and carol (the dealer) serving; alice's `credit` at `pa` (with the label),
/// bob's at `pb`. Returns their daemons.
fn serve_training(dir: &Path, pa: &Path, pb: &Path) -> [Daemon; 3] {
    add_dataset(dir, "alice", "credit", pa, "id", "{ train = [\"bob\"] }");
    add_dataset(dir, "bob", "credit", pb, "id", "{ train = [\"alice\"] }");
    let daemons = ["alice", "bob", "carol"].map(|p| serve_tuned(dir, p));
    wait_all_ok(dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    daemons
}

/// Kills bob's daemon once both generations of his checkpoint exist (at least two epochs
/// or trees done), checks that the training `job` failed without output at `out` and
/// alice kept its checkpoint, restarts bob; returns the job's id.
fn cut_training(dir: &Path, job: Child, bob: &mut Daemon, out: &Path) -> String {
    let state = |g: u32| -> bool {
        checkpoint_files(dir, "bob")
            .iter()
            .any(|f| f.ends_with(&format!("state-{g}")))
    };
    let o = kill_when(job, bob, &|| state(0) && state(1));
    assert!(!out.exists());
    let ids = checkpointed_train(dir, "alice");
    assert_eq!(ids.len(), 1, "alice keeps the training checkpoint");
    let hint = format!("continue it with `--resume {}`", ids[0]);
    assert!(stderr(&o).contains(&hint), "{}", stderr(&o));
    *bob = serve_tuned(dir, "bob");
    wait_all_ok(dir, &["alice", "bob", "carol"], Duration::from_secs(20));
    ids[0].clone()
}

/// Replaces the row of `csv` with the ID of `row` by `row`; returns the file's text before.
fn replace_row(csv: &Path, row: &str) -> String {
    let text = std::fs::read_to_string(csv).unwrap();
    let id = row.split(',').next().unwrap();
    let changed: Vec<&str> = text
        .lines()
        .map(|l| {
            if l.split(',').next() == Some(id) {
                row
            } else {
                l
            }
        })
        .collect();
    std::fs::write(csv, changed.join("\n") + "\n").unwrap();
    text
}

fn checkpoint_files(dir: &Path, party: &str) -> Vec<String> {
    let mut out = Vec::new();
    for j in std::fs::read_dir(jobs_dir(dir, party))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(j.path().join("checkpoint"))
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(f.path().to_string_lossy().into_owned());
        }
    }
    out
}

fn checkpointed_train(dir: &Path, party: &str) -> Vec<String> {
    std::fs::read_dir(jobs_dir(dir, party))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("checkpoint").join("options.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
