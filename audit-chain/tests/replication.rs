//! Sequencer → members replication, cosigning, finality, catch-up,
//! equivocation and the crash rules on open.

mod common;

use common::{body, genesis, key, open};
use confide_audit::{AuditError, AuditStore, Checkpoint, Entry, SignedCheckpoint, store::ENTRIES};

/// Append `n` entries (alternating members' signed entries and the
/// sequencer's own), checkpoint, replicate to members, collect cosignatures.
fn round(
    seq: &mut AuditStore,
    members: &mut [&mut AuditStore],
    n: u64,
) -> Option<SignedCheckpoint> {
    let start = seq.size();
    let signed: Vec<Entry> = (start..start + n)
        .map(|i| {
            let who = common::NAMES[(i % 3) as usize];
            Entry::create(body(who, i), &seq.log_id(), &key(who)).unwrap()
        })
        .collect();
    let promises = seq.append_signed(&signed).unwrap();
    for (i, p) in promises.iter().enumerate() {
        assert_eq!(p.index, start + i as u64);
        assert_eq!(p.entry_hash, signed[i].leaf_hash());
        p.verify(seq.genesis()).unwrap();
    }
    seq.checkpoint().unwrap();
    let mut fin = None;
    for m in members.iter_mut() {
        let up = seq.update_for(m.size(), u64::MAX).unwrap();
        let cosig = m.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
        if let Some(f) = seq.add_cosignature(&cosig).unwrap() {
            fin = Some(f);
        }
    }
    fin
}

#[test]
fn replicate_cosign_finalize_and_prove() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, mut c) = (
        open(dir.path(), "alice"),
        open(dir.path(), "bob"),
        open(dir.path(), "carol"),
    );
    let (e, promise) = a.append(body("alice", 100)).unwrap();
    assert_eq!(promise.index, 0);
    assert_eq!(promise.entry_hash, e.leaf_hash());
    let fin = round(&mut a, &mut [&mut b, &mut c], 20).expect("quorum reached");
    assert_eq!(fin.checkpoint.size, 21);
    assert_eq!(
        fin.signatures.len(),
        2,
        "sequencer + first member = quorum 2 of 3"
    );
    for m in [&mut b, &mut c] {
        m.record_final(&fin).unwrap();
        assert_eq!(m.root(), a.root());
        assert_eq!(m.verify_all().unwrap().entries, 21);
    }
    // Proof bundles verify offline from any member's copy.
    let gjson = genesis().to_json();
    for store in [&a, &b, &c] {
        let bundle = store.prove_job("job-bob-4").unwrap();
        let v = confide_audit::verify_bundle(&bundle.to_json(), &gjson).unwrap();
        assert_eq!(v.entry.body().job_id, "job-bob-4");
        assert_eq!(v.index, 4);
    }
    assert!(matches!(a.prove(21), Err(AuditError::NotFound(_))));
    // Summary: started per member and served counts.
    let s = b.summary().unwrap();
    // indices 1..=20: i % 3 picks alice (6), bob (7), carol (7); entry 0 is alice's.
    assert_eq!(s["alice"].started, 1 + 6);
    assert_eq!(s["bob"].started, 7);
    assert_eq!(s["carol"].started, 7);
    assert_eq!(s["alice"].served, 7 + 7);
    assert_eq!(s["bob"].served, 7 + 7);
    assert_eq!(b.log().unwrap().len(), 21);
    // Applying the same checkpoint again is idempotent (retries).
    let same = a.update_for(21, 1000).unwrap();
    let cs = c
        .apply(&same.entries, &same.checkpoint, &same.proof)
        .unwrap();
    assert_eq!(cs.size, 21);
    // Hostile sizes and indexes are errors or empty answers, never panics.
    assert!(a.entry(u64::MAX).is_err());
    assert!(a.prove(u64::MAX).is_err());
    let far = a.update_for(u64::MAX, u64::MAX).unwrap();
    assert!(far.entries.is_empty());
    // bob holds the checkpoint already: an idempotent re-cosign.
    assert_eq!(
        b.apply(&far.entries, &far.checkpoint, &far.proof)
            .unwrap()
            .size,
        21
    );
    assert!(a.consistency_proof(5, u64::MAX).is_err());
    // Roles are enforced.
    assert!(matches!(
        b.append(body("bob", 1)),
        Err(AuditError::WrongRole(_))
    ));
    assert!(matches!(
        a.apply(&[], &fin, &[]),
        Err(AuditError::WrongRole(_))
    ));
}

#[test]
fn member_rejects_bad_updates_without_storing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
    a.append_batch((0..5).map(|i| body("alice", i)).collect())
        .unwrap();
    let cp = a.checkpoint().unwrap();
    let entries = a.entries_since(0).unwrap();
    // Wrong entry set: root mismatch.
    let mut swapped = entries.clone();
    swapped.swap(1, 2);
    assert!(matches!(
        b.apply(&swapped, &cp, &[]),
        Err(AuditError::RootMismatch { .. })
    ));
    // Missing entries.
    assert!(b.apply(&entries[..4], &cp, &[]).is_err());
    // Checkpoint not signed by the sequencer (signed by carol instead).
    let forged = SignedCheckpoint {
        signatures: vec![cp.checkpoint.sign("carol", &key("carol"))],
        checkpoint: cp.checkpoint.clone(),
    };
    assert!(matches!(
        b.apply(&entries, &forged, &[]),
        Err(AuditError::BadSignature(_))
    ));
    // Entry signed with the wrong key.
    let mut bad = entries.clone();
    bad[3] = Entry::create(body("bob", 3), &a.log_id(), &key("carol")).unwrap();
    assert!(matches!(
        b.apply(&bad, &cp, &[]),
        Err(AuditError::BadSignature(_))
    ));
    assert_eq!(b.size(), 0, "nothing stored after rejected updates");
    // Sequencer rejects foreign-signed or duplicate entries.
    let foreign = Entry::create(body("bob", 9), &a.log_id(), &key("carol")).unwrap();
    assert!(a.append_signed(&[foreign]).is_err());
    assert!(a.append_signed(&entries[..1]).is_err(), "duplicate entry");
    assert!(
        a.append(body("bob", 1)).is_err(),
        "sequencer cannot sign for bob"
    );
    // The good update is accepted.
    b.apply(&entries, &cp, &[]).unwrap();
    assert_eq!(b.root(), a.root());
}

#[test]
fn member_catches_up_in_steps_after_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, c) = (
        open(dir.path(), "alice"),
        open(dir.path(), "bob"),
        open(dir.path(), "carol"),
    );
    // carol is down for 5 rounds: bob alone completes the quorum.
    for _ in 0..5 {
        assert!(round(&mut a, &mut [&mut b], 7).is_some());
    }
    drop(c);
    let mut c = open(dir.path(), "carol");
    assert_eq!(c.size(), 0);
    let mut steps = 0;
    while c.size() < a.size() {
        let up = a.update_for(c.size(), 10).unwrap();
        assert!(up.entries.len() <= 10);
        let before = c.size();
        let cs = c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
        assert!(c.size() > before);
        a.add_cosignature(&cs).unwrap();
        steps += 1;
    }
    assert_eq!(steps, 5);
    assert_eq!(c.root(), a.root());
    // A wrong consistency proof is refused even with the right entries.
    round(&mut a, &mut [&mut b], 3).unwrap();
    let mut up = a.update_for(c.size(), 100).unwrap();
    up.proof[0][0] ^= 1;
    assert!(matches!(
        c.apply(&up.entries, &up.checkpoint, &up.proof),
        Err(AuditError::InvalidProof(_))
    ));
    up.proof[0][0] ^= 1;
    c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
}

/// A sequencer key signing two different logs: members detect it, keep the
/// evidence (persisted), and stop cosigning.
#[test]
fn equivocation_is_detected_reported_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
    round(&mut a, &mut [&mut b], 8).unwrap();
    let origin = a.genesis().origin();
    let fork = |size: u64, root: [u8; 32]| {
        let cp = Checkpoint {
            origin: origin.clone(),
            size,
            root,
        };
        SignedCheckpoint {
            signatures: vec![cp.sign("alice", &key("alice"))],
            checkpoint: cp,
        }
    };
    // A consistent older checkpoint is only stale.
    let old = fork(5, b.root_at(5).unwrap());
    assert!(matches!(
        b.apply(&[], &old, &[]),
        Err(AuditError::Stale { got: 5, have: 8 })
    ));
    // A shrinking, inconsistent checkpoint is equivocation.
    let err = b.apply(&[], &fork(5, [7; 32]), &[]).unwrap_err();
    let AuditError::Equivocation(ev) = err else {
        panic!("{err}")
    };
    ev.verify(&genesis()).unwrap();
    assert_eq!((ev.size_a, ev.size_b), (8, 5));
    // Tampered evidence does not verify.
    let mut bad = (*ev).clone();
    bad.alt_root = [7; 32];
    assert!(bad.verify(&genesis()).is_err());
    // Halted, and still halted after a restart.
    let good = a.update_for(8, 100).unwrap();
    assert!(matches!(
        b.apply(&good.entries, &good.checkpoint, &good.proof),
        Err(AuditError::Halted)
    ));
    drop(b);
    let mut b = open(dir.path(), "bob");
    assert_eq!(b.halt_evidence(), Some(&*ev));
    assert!(matches!(
        b.apply(&good.entries, &good.checkpoint, &good.proof),
        Err(AuditError::Halted)
    ));

    // Same size, different root: carol, fresh, sees it too.
    let mut c = open(dir.path(), "carol");
    let up = a.update_for(0, 100).unwrap();
    c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    let err = c.apply(&[], &fork(8, [9; 32]), &[]).unwrap_err();
    let AuditError::Equivocation(ev) = err else {
        panic!("{err}")
    };
    assert_eq!((ev.size_a, ev.size_b), (8, 8));
    ev.verify(&genesis()).unwrap();
}

#[test]
fn reopen_recomputes_root_and_refuses_on_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
    round(&mut a, &mut [&mut b], 6).unwrap();
    let root = b.root();
    drop(b);
    // Clean reopen: same root, can cosign.
    let b2 = open(dir.path(), "bob");
    assert_eq!(b2.root(), root);
    assert!(b2.fault().is_none());
    drop(b2);
    // Tamper with a stored entry behind the store's back.
    {
        let db = redb::Database::create(dir.path().join("bob.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(ENTRIES).unwrap();
            let other = Entry::create(body("bob", 999), &genesis().log_id(), &key("bob")).unwrap();
            t.insert(2, other.as_bytes()).unwrap();
        }
        txn.commit().unwrap();
    }
    let mut b3 = open(dir.path(), "bob");
    assert!(b3.fault().is_some());
    assert!(b3.verify_all().is_err());
    round_until_apply(&mut a, &mut b3);
    drop(b3);
    // Another genesis cannot open the store.
    let mut g = genesis();
    g.quorum = 3;
    assert!(matches!(
        AuditStore::open(dir.path().join("bob.redb"), g, "bob", key("bob")),
        Err(AuditError::Genesis(_))
    ));
    // A wrong key for the name is refused.
    assert!(AuditStore::open(dir.path().join("x.redb"), genesis(), "bob", key("carol")).is_err());
}

fn round_until_apply(a: &mut AuditStore, b: &mut AuditStore) {
    a.append(body("alice", 777)).unwrap();
    a.checkpoint().unwrap();
    let up = a.update_for(b.size(), 100).unwrap();
    assert!(matches!(
        b.apply(&up.entries, &up.checkpoint, &up.proof),
        Err(AuditError::Fault(_))
    ));
}

#[test]
fn sequencer_restart_keeps_collecting_cosignatures() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = (open(dir.path(), "alice"), open(dir.path(), "bob"));
    a.append_batch((0..4).map(|i| body("alice", i)).collect())
        .unwrap();
    let cp = a.checkpoint().unwrap();
    let up = a.update_for(0, 100).unwrap();
    let cs = b.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    drop(a);
    let mut a = open(dir.path(), "alice");
    assert!(a.fault().is_none());
    assert_eq!(a.latest_signed(), Some(&cp));
    let fin = a
        .add_cosignature(&cs)
        .unwrap()
        .expect("final after restart");
    assert_eq!(fin.checkpoint, cp.checkpoint);
    drop(a);
    let a = open(dir.path(), "alice");
    assert_eq!(a.latest_final().map(|f| f.checkpoint.size), Some(4));
    a.verify_all().unwrap();
}
