//! A corrupt store is set aside and rebuilt: the sequencer adopts the log the members
//! hold (no final entry lost, no equivocation afterwards), a member catches up from zero.

mod common;

use std::path::{Path, PathBuf};

use common::{body, genesis, key, open};
use confide_audit::{AuditError, AuditStore, Checkpoint, SignedCheckpoint, serve_fetch};

fn reopen(dir: &Path, name: &str) -> (AuditStore, Option<confide_audit::SetAside>) {
    AuditStore::open_or_rebuild(dir.join(format!("{name}.redb")), genesis(), name, key(name))
        .unwrap()
}

/// Flips one byte inside the stored entry `i` of `member` (found by its fingerprint, which
/// only the entry holds) in `name`'s store file.
fn flip(dir: &Path, name: &str, member: &str, i: u64) {
    let path = dir.join(format!("{name}.redb"));
    let needle = body(member, i).fingerprint;
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the entry is in the file");
    bytes[at + 2] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
}

/// The sequencer `a` sends each member what it lacks and gathers the cosignatures; the
/// checkpoint that became final, if any.
fn replicate<const N: usize>(
    a: &mut AuditStore,
    members: [&mut AuditStore; N],
) -> Option<SignedCheckpoint> {
    let mut fin = None;
    for m in members {
        let up = a.update_for(m.size(), 1000).unwrap();
        let cs = m.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
        fin = a.add_cosignature(&cs).unwrap().or(fin);
    }
    fin
}

fn aside_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.redb.corrupt-"))
        })
        .collect()
}

#[test]
fn a_corrupt_sequencer_store_is_rebuilt_from_the_members() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut a, mut b, mut c) = (open(d, "alice"), open(d, "bob"), open(d, "carol"));
    // 10 entries final at every member; 5 more cosigned by bob only; 3 more nobody has.
    a.append_batch((0..10).map(|i| body("alice", i)).collect())
        .unwrap();
    a.checkpoint().unwrap();
    let fin = replicate(&mut a, [&mut b, &mut c]);
    let fin = fin.expect("final at a majority");
    b.record_final(&fin).unwrap();
    c.record_final(&fin).unwrap();
    a.append_batch((10..15).map(|i| body("alice", i)).collect())
        .unwrap();
    a.checkpoint().unwrap();
    let up = a.update_for(b.size(), 1000).unwrap();
    b.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    a.append_batch((15..18).map(|i| body("alice", i)).collect())
        .unwrap();
    let root15 = a.root_at(15).unwrap();
    drop(a);

    flip(d, "alice", "alice", 3);
    // redb's checksums or the open checks catch the flip.
    match AuditStore::open(d.join("alice.redb"), genesis(), "alice", key("alice")) {
        Ok(s) => assert!(s.fault().is_some()),
        Err(e) => assert!(e.to_string().contains("corrupt"), "{e}"),
    }
    let (mut a, aside) = reopen(d, "alice");
    let aside = aside.expect("set aside");
    assert!(aside.moved_to.exists(), "{aside:?}");
    assert_eq!(aside_files(d, "alice"), vec![aside.moved_to.clone()]);
    assert_eq!(a.size(), 0);
    assert!(a.rebuilding().is_some());
    // Nothing is appended or signed on the empty log.
    assert!(matches!(
        a.append(body("alice", 99)),
        Err(AuditError::Rebuilding(_))
    ));
    assert!(matches!(a.checkpoint(), Err(AuditError::Rebuilding(_))));
    // The mark survives a restart; the fresh store is not set aside again.
    drop(a);
    let (mut a, again) = reopen(d, "alice");
    assert!(again.is_none() && a.rebuilding().is_some());

    // What the members hold: bob the longest cosigned checkpoint (15), both final 10.
    let from_b = serve_fetch(&b, 0, 1000).unwrap();
    let from_c = serve_fetch(&c, 0, 1000).unwrap();
    let signed = from_b.latest_signed.clone().unwrap();
    assert_eq!(signed.checkpoint.size, 15);
    assert_eq!(from_c.latest_signed.as_ref().unwrap().checkpoint.size, 10);
    let fin10 = from_c.final_checkpoint.clone().unwrap();

    // Refused: a checkpoint that does not cover the entries, one signed by someone
    // else, entries out of order, a final checkpoint that is not final.
    let e = &from_b.entries;
    let short = from_c.latest_signed.as_ref().unwrap();
    assert!(a.restore(e, Some(short), Some(&fin10)).is_err());
    let by_bob = SignedCheckpoint {
        signatures: vec![signed.checkpoint.sign("bob", &key("bob"))],
        checkpoint: signed.checkpoint.clone(),
    };
    assert!(matches!(
        a.restore(e, Some(&by_bob), Some(&fin10)),
        Err(AuditError::BadSignature(_))
    ));
    let mut swapped = e.clone();
    swapped.swap(3, 4);
    assert!(matches!(
        a.restore(&swapped, Some(&signed), Some(&fin10)),
        Err(AuditError::RootMismatch { .. })
    ));
    assert!(a.restore(e, Some(&signed), Some(&signed)).is_err());
    let fake = Checkpoint {
        size: 15,
        ..signed.checkpoint.clone()
    };
    let mut forged = signed.clone();
    forged.checkpoint = Checkpoint {
        root: [7; 32],
        ..fake
    };
    assert!(a.restore(e, Some(&forged), Some(&fin10)).is_err());
    assert_eq!(a.size(), 0);

    a.restore(e, Some(&signed), Some(&fin10)).unwrap();
    assert!(a.rebuilding().is_none());
    assert_eq!((a.size(), a.root()), (15, root15));
    assert_eq!(a.latest_final().unwrap().checkpoint.size, 10);
    assert!(a.restore(e, Some(&signed), None).is_err());
    drop(a);
    let (mut a, none) = reopen(d, "alice");
    assert!(none.is_none() && a.rebuilding().is_none() && a.size() == 15);

    // The alliance goes on: new entries are checkpointed, both members accept them
    // (no equivocation), and they become final.
    a.append(body("alice", 100)).unwrap();
    a.checkpoint().unwrap();
    let fin = replicate(&mut a, [&mut b, &mut c]);
    let fin = fin.unwrap();
    assert_eq!(fin.checkpoint.size, 16);
    for m in [&mut b, &mut c] {
        m.record_final(&fin).unwrap();
        assert_eq!(m.verify_all().unwrap().entries, 16);
        assert_eq!(m.root(), a.root());
    }
    assert_eq!(a.verify_all().unwrap().final_size, Some(16));
}

#[test]
fn a_corrupt_member_store_is_set_aside_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut a, mut c) = (open(d, "alice"), open(d, "carol"));
    a.append_batch((0..6).map(|i| body("alice", i)).collect())
        .unwrap();
    a.checkpoint().unwrap();
    let up = a.update_for(0, 1000).unwrap();
    c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    drop(c);
    flip(d, "carol", "alice", 2);
    let (mut c, aside) = reopen(d, "carol");
    assert!(aside.is_some());
    assert!(c.rebuilding().is_none(), "a member needs no rebuild mark");
    assert_eq!(c.size(), 0);
    let up = a.update_for(c.size(), 1000).unwrap();
    let cs = c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    assert_eq!(cs.size, 6);
    assert_eq!(c.verify_all().unwrap().entries, 6);
    // A healthy store opens as is.
    drop(c);
    let (c, none) = reopen(d, "carol");
    assert!(none.is_none() && c.size() == 6);
    assert_eq!(aside_files(d, "carol").len(), 1);
}

#[test]
fn a_store_of_another_alliance_is_not_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    drop(open(d, "bob"));
    // bob's key, but opened as carol: an error, and the file stays where it is.
    let r = AuditStore::open_or_rebuild(d.join("bob.redb"), genesis(), "carol", key("bob"));
    assert!(r.is_err());
    assert!(aside_files(d, "bob").is_empty() && d.join("bob.redb").exists());
}

#[test]
fn the_duplicate_check_and_job_index_live_on_disk_and_are_rebuilt_for_old_stores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut a = open(d, "alice");
    let appended = a
        .append_batch((0..4).map(|i| body("alice", i)).collect())
        .unwrap();
    let first = appended[0].0.clone();
    drop(a);
    // After a restart: a replayed entry is still refused, and a job's entries are found.
    let mut a = open(d, "alice");
    assert!(matches!(
        a.append_signed(std::slice::from_ref(&first)),
        Err(AuditError::InvalidEntry(_))
    ));
    assert_eq!(a.job_entries("job-alice-2").unwrap(), vec![2]);
    drop(a);
    // A store from before the on-disk indexes (tables emptied): rebuilt at open.
    {
        let db = redb::Database::create(d.join("alice.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(confide_audit::store::LEAVES).unwrap();
        txn.delete_table(confide_audit::store::JOB_ENTRIES).unwrap();
        txn.commit().unwrap();
    }
    let mut a = open(d, "alice");
    assert_eq!(a.job_entries("job-alice-3").unwrap(), vec![3]);
    assert!(a.append_signed(&[first]).is_err());
    a.append(body("alice", 4)).unwrap();
    assert_eq!(a.job_entries("job-alice-4").unwrap(), vec![4]);
}

#[test]
fn a_damaged_job_index_is_rewritten_from_the_entries_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut a = open(d, "alice");
    a.append_batch((0..4).map(|i| body("alice", i)).collect())
        .unwrap();
    drop(a);
    // The job id is stored in its entry (next to the entry's fingerprint) and as a key of
    // the job index: flip a byte of the index's copy only. redb does not notice.
    let path = d.join("alice.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let at_fp = bytes
        .windows(32)
        .position(|w| w == body("alice", 2).fingerprint)
        .unwrap();
    let job = b"job-alice-2";
    let in_index: Vec<usize> = (0..bytes.len() - job.len())
        .filter(|&i| &bytes[i..i + job.len()] == job && i.abs_diff(at_fp) > 512)
        .collect();
    assert!(!in_index.is_empty(), "the job index holds the id");
    for i in in_index {
        bytes[i + 4] ^= 0x01;
    }
    std::fs::write(&path, bytes).unwrap();
    let a = open(d, "alice");
    assert_eq!(a.job_entries("job-alice-2").unwrap(), vec![2]);
    assert_eq!(a.verify_all().unwrap().entries, 4);
}
