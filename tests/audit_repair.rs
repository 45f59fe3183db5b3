//! A corrupt audit store, across real daemons: one flipped byte in the sequencer's store
//! no longer keeps the daemon down or the alliance from anchoring. The corrupt file is set
//! aside, `confide status` says so, the sequencer adopts the members' copies (waiting for
//! every member, with jobs refused meanwhile), nothing final is lost, the chain verifies
//! everywhere and new jobs are anchored; a corrupt member store catches up from zero.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const ALL: [&str; 3] = ["alice", "bob", "carol"];

/// The fingerprint of `job`'s first entry in `party`'s log (its daemon running): bytes
/// that only that entry holds in the store file.
fn fingerprint_of(dir: &Path, party: &str, job: &str) -> Vec<u8> {
    let (_, _, log) = log_json(dir, party);
    let line = log
        .lines()
        .find(|l| l.contains(job))
        .expect("the job's entry");
    hex::decode(line.split_whitespace().last().unwrap()).unwrap()
}

/// Flips one byte inside every stored copy of the entry holding `needle` in `party`'s
/// audit store (redb may keep an old copy of a page besides the live one).
fn flip(dir: &Path, party: &str, needle: &[u8]) {
    let path = dir.join(party).join("data").join("audit.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "the job's entry is in the store");
    for i in at {
        bytes[i + 3] ^= 0x01;
    }
    std::fs::write(&path, bytes).unwrap();
}

fn set_aside(dir: &Path, party: &str) -> Vec<String> {
    std::fs::read_dir(dir.join(party).join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("audit.redb.corrupt-"))
        .collect()
}

#[test]
fn a_corrupt_audit_store_is_set_aside_and_rebuilt_from_the_members() {
    let (root, dir, _) = new_alliance("alice,bob,carol");
    let data = write_ids(root.path(), 300);
    add_dataset(&dir, "alice", "ids", &data, "id", "{ psi = [\"bob\"] }");
    add_dataset(&dir, "bob", "ids", &data, "id", "{ psi = [\"alice\"] }");
    let run_psi = |party: &str, peer: &str| {
        let o = psi(&dir, party, "ids", &[peer], &["--size-only"]);
        assert!(o.status.success(), "{}", stderr(&o));
        job_id(&stdout(&o))
    };
    let daemons = start(&dir, &ALL, Duration::from_secs(20));
    let job1 = run_psi("bob", "alice:ids");
    let job2 = run_psi("alice", "bob:ids");
    wait_replicated(&dir, &ALL, 4, Duration::from_secs(10));
    let out = stdout(&at(&dir, "alice", &["status"]));
    assert!(
        out.contains("audit store: ok: 4 entries, final at 4"),
        "{out}"
    );
    let fp1 = fingerprint_of(&dir, "alice", &job1);
    drop(daemons);

    // One flipped byte in the sequencer's store. It starts anyway, sets the file aside
    // and waits for every member's copy: carol is down, so nothing can be anchored.
    flip(&dir, "alice", &fp1);
    let mut up = vec![serve(&dir, "alice"), serve(&dir, "bob")];
    let out = wait_audit_status(
        &dir,
        "alice",
        "waiting for `carol`",
        Duration::from_secs(20),
    );
    assert_eq!(set_aside(&dir, "alice").len(), 1);
    assert!(
        out.contains("rebuilding from the other members' copies")
            && out.contains("set aside at start as"),
        "{out}"
    );
    let o = psi(&dir, "bob", "ids", &["alice:ids"], &["--size-only"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("being rebuilt from the other members' copies"),
        "{}",
        stderr(&o)
    );

    // carol returns: alice adopts the log, nothing final is lost, the chain verifies.
    up.push(serve(&dir, "carol"));
    let out = wait_audit_status(
        &dir,
        "alice",
        "rebuilt at start from the other members' copies",
        Duration::from_secs(20),
    );
    assert!(out.contains("ok: 4 entries, final at 4"), "{out}");
    let (_, _, log) = log_json(&dir, "alice");
    assert!(log.contains(&job1) && log.contains(&job2), "{log}");
    for p in ALL {
        let o = at(&dir, p, &["audit", "verify"]);
        assert!(o.status.success(), "{p}: {}", stderr(&o));
    }
    let proof = root.path().join("proof.json");
    let o = audit_prove(&dir, "bob", &job1, &proof);
    assert!(o.status.success(), "{}", stderr(&o));

    // New jobs are anchored and become final at every member (the refused attempt
    // anchored nothing).
    let job3 = run_psi("bob", "alice:ids");
    wait_replicated(&dir, &ALL, 6, Duration::from_secs(10));
    for p in ALL {
        let (n, fin, log) = log_json(&dir, p);
        assert_eq!((n, fin), (6, Some(6)), "{p}: {log}");
        assert!(log.contains(&job3));
    }
    let fp3 = fingerprint_of(&dir, "bob", &job3);
    drop(up);

    // A corrupt member store: set aside, and caught up from zero by the sequencer.
    flip(&dir, "bob", &fp3);
    let _up = start(&dir, &ALL, Duration::from_secs(20));
    assert_eq!(set_aside(&dir, "bob").len(), 1);
    wait_replicated(&dir, &["bob"], 6, Duration::from_secs(10));
    let out = wait_audit_status(&dir, "bob", "ok: 6 entries", Duration::from_secs(5));
    assert!(out.contains("set aside at start as"), "{out}");
    let o = at(&dir, "bob", &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    run_psi("alice", "bob:ids");
    wait_replicated(&dir, &ALL, 8, Duration::from_secs(10));
}
