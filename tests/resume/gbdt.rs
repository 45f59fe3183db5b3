//! Boosted trees resumed across real daemons (a module of `tests/resume.rs`, on its
//! helpers): a GBDT job whose peer is killed after some trees continues, after the peer
//! restarts, from the last tree every party checkpointed, and its model predicts like the
//! uninterrupted run's; a checkpoint holds nothing of the other party.

use std::collections::BTreeMap;

use super::*;

const TREES: usize = 8;

/// The training data of `train_data` with long column names (findable in a file), bob's
/// values moved to [9, 11] (apart from alice's, in [-1, 1]; the trees do not change).
fn gbdt_data(root: &Path) -> (PathBuf, PathBuf) {
    let (pa, pb) = train_data(root, 2000);
    let text = std::fs::read_to_string(&pa).unwrap();
    let text = text.replacen("id,label,a1,a2", "id,label,alice_income,alice_debt", 1);
    std::fs::write(&pa, text).unwrap();
    let mut b = String::from("id,bob_spend,bob_visits\n");
    for l in std::fs::read_to_string(&pb).unwrap().lines().skip(1) {
        let c: Vec<&str> = l.split(',').collect();
        let v = |i: usize| c[i].parse::<f64>().unwrap() + 10.0;
        b.push_str(&format!("{},{:.4},{:.4}\n", c[0], v(1), v(2)));
    }
    std::fs::write(&pb, b).unwrap();
    (pa, pb)
}

fn train_cmd(cfg: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let fixed = format!(
        "train --model gbdt --trees {TREES} --depth 3 --bins 16 --subsample 0.8 \
         --validation 0.2 --dataset credit --peer bob:credit --label label"
    );
    let mut args: Vec<&str> = fixed.split_whitespace().collect();
    args.extend(["--config", path_str(cfg), "--output", path_str(out)]);
    args.extend_from_slice(extra);
    cli(&args)
}

/// Every node of every tree of an export: its owner's column and bin, or "other".
fn rules(path: &Path) -> Vec<String> {
    let e: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let trees = e["trees"].as_array().unwrap();
    assert_eq!(trees.len(), TREES, "{e}");
    trees
        .iter()
        .flat_map(|t| t["nodes"].as_array().unwrap().iter())
        .map(|n| format!("{} {} {}", n["owner"], n["column"], n["bin"]))
        .collect()
}

/// The thresholds of the rules of an export, as their bytes in a file.
fn thresholds(path: &Path) -> Vec<[u8; 8]> {
    let text = std::fs::read_to_string(path).unwrap();
    let e: serde_json::Value = serde_json::from_str(&text).unwrap();
    let nodes = e["trees"].as_array().unwrap().iter();
    let nodes = nodes.flat_map(|t| t["nodes"].as_array().unwrap().iter());
    nodes
        .filter_map(|n| n["threshold"].as_f64())
        .map(f64::to_le_bytes)
        .collect()
}

/// alice's scores of the common rows with model `job`, by row id.
fn scores(dir: &Path, root: &Path, job: &str) -> BTreeMap<String, f64> {
    let out = root.join(format!("scores-{job}.csv"));
    let cfg = config(dir, "alice");
    let mut args: Vec<&str> = "predict --dataset credit --peer bob:credit"
        .split_whitespace()
        .collect();
    args.extend([
        "--config",
        path_str(&cfg),
        "--model",
        job,
        "--output",
        path_str(&out),
    ]);
    ok(&cli(&args).output().unwrap(), "predict");
    let text = std::fs::read_to_string(&out).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let (id, s) = l.split_once(',').unwrap();
            (id.to_string(), s.parse().unwrap())
        })
        .collect()
}

/// The 8-byte encodings of the values of `columns` of a CSV (first 200 rows).
fn values(csv: &Path, columns: std::ops::Range<usize>) -> Vec<[u8; 8]> {
    let text = std::fs::read_to_string(csv).unwrap();
    let rows = text.lines().skip(1).take(200);
    rows.flat_map(|l| {
        let cells: Vec<f64> = l.split(',').skip(1).map(|v| v.parse().unwrap()).collect();
        cells[columns.clone()].to_vec()
    })
    .map(f64::to_le_bytes)
    .collect()
}

/// Asserts that none of `needles` is in `party`'s checkpoint files, nor `names`.
fn assert_absent(dir: &Path, party: &str, needles: &[[u8; 8]], names: &[&str]) {
    let files = checkpoint_files(dir, party);
    assert!(files.len() >= 2, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for v in needles {
            assert!(!bytes.windows(8).any(|w| w == v), "{v:?} in {f}");
        }
        for n in names {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{n} in {f}"
            );
        }
    }
}

#[test]
fn a_gbdt_job_resumes_from_its_last_tree_after_the_peer_restarts() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let (pa, pb) = gbdt_data(root.path());
    let [_alice, mut bob, _carol] = serve_training(&dir, &pa, &pb);
    let cfg = config(&dir, "alice");
    // The uninterrupted run; its checkpoints go when it succeeds.
    let whole = root.path().join("whole.json");
    let o = train_cmd(&cfg, &whole, &["--seed", "77"]).output().unwrap();
    let whole_job = job_id(&ok(&o, "uninterrupted gbdt"));
    let started = Instant::now();
    while !checkpoint_files(&dir, "bob").is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "bob keeps it");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The same job, bob's daemon killed after at least two trees, then restarted.
    let cut = root.path().join("cut.json");
    let job = train_cmd(&cfg, &cut, &["--seed", "77"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let orig = cut_training(&dir, job, &mut bob, &cut);
    // bob's checkpoint is private to him: folder 0700, files 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&jobs_dir(&dir, "bob").join(&orig).join("checkpoint")),
        0o700
    );
    for f in checkpoint_files(&dir, "bob") {
        assert_eq!(mode(Path::new(&f)), 0o600, "{f}");
    }
    // Each party's checkpoint holds its own rules (a control of the search), none of the
    // other party's values, thresholds, column names or labels.
    let bob_export = dir
        .join("bob/data/results")
        .join(format!("model-{whole_job}.json"));
    let (alice_th, bob_th) = (thresholds(&whole), thresholds(&bob_export));
    assert!(!alice_th.is_empty() && !bob_th.is_empty());
    let bob_files: Vec<Vec<u8>> = checkpoint_files(&dir, "bob")
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(
        bob_th
            .iter()
            .any(|t| bob_files.iter().any(|b| b.windows(8).any(|w| w == t))),
        "bob's checkpoint keeps his own rules"
    );
    let labels: Vec<u8> = values(&pa, 0..1).concat();
    let mut alice_secret = values(&pa, 1..3);
    alice_secret.extend(alice_th);
    assert_absent(&dir, "bob", &alice_secret, &["alice_income", "alice_debt"]);
    let bob_secret = [values(&pb, 0..2), bob_th].concat();
    assert_absent(&dir, "alice", &bob_secret, &["bob_spend", "bob_visits"]);
    for f in checkpoint_files(&dir, "bob") {
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(labels.len()).any(|w| w == labels),
            "labels in {f}"
        );
    }
    // Refusals, naming the party: other options; bob's rows changed; bob's checkpoint gone.
    let run = |extra: &[&str]| {
        let mut v = vec!["--resume", orig.as_str()];
        v.extend_from_slice(extra);
        train_cmd(&cfg, &cut, &v).output().unwrap()
    };
    let o = run(&["--lambda", "2"]);
    assert_clean_error(
        &o,
        "the job's parties or options differ from the checkpoint's",
    );
    let text = replace_row(&pb, "c00007,10.1234,10.5678");
    let e = stderr(&run(&[]));
    assert!(
        e.contains("inputs changed since the checkpoint") && e.contains("bob"),
        "{e}"
    );
    std::fs::write(&pb, &text).unwrap();
    let bob_job = jobs_dir(&dir, "bob").join(&orig);
    let aside = root.path().join("aside");
    std::fs::rename(&bob_job, &aside).unwrap();
    assert_clean_error(&run(&[]), &format!("job {orig} has no checkpoint at `bob`"));
    std::fs::rename(&aside, &bob_job).unwrap();
    // The resume: from the last tree all three hold, not from zero.
    let o = run(&[]);
    let line = ok(&o, "train --model gbdt --resume");
    let tail = format!("resumed job {orig} after tree ");
    let at = line.find(&tail).unwrap_or_else(|| panic!("{line}"));
    let from: usize = line[at + tail.len()..].trim().parse().unwrap();
    assert!((1..TREES).contains(&from), "{line}");
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    // The same trees (splits), and the same scores up to fixed-point rounding.
    assert_eq!(rules(&cut), rules(&whole), "the same splits");
    let (s0, s1) = (
        scores(&dir, root.path(), &whole_job),
        scores(&dir, root.path(), &job_id(&line)),
    );
    assert_eq!(s0.len(), s1.len());
    let text = std::fs::read_to_string(&pa).unwrap();
    let y: BTreeMap<&str, f64> = text
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            (c[0], c[1].parse().unwrap())
        })
        .collect();
    let labels: Vec<f64> = s0.keys().map(|id| y[id.as_str()]).collect();
    let (v0, v1): (Vec<f64>, Vec<f64>) = (
        s0.values().copied().collect(),
        s1.values().copied().collect(),
    );
    let worst = v0
        .iter()
        .zip(&v1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let (a0, a1) = (
        confide_training::auc(&v0, &labels).unwrap(),
        confide_training::auc(&v1, &labels).unwrap(),
    );
    eprintln!("resumed after tree {from}: worst score difference {worst:e}, AUC {a0} vs {a1}");
    assert!(worst < 1e-3, "{worst}");
    assert!((a0 - a1).abs() < 1e-3, "{a0} vs {a1}");
    assert!(
        checkpointed_train(&dir, "alice").is_empty(),
        "deleted on success"
    );
    drop(bob);
}
