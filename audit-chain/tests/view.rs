//! Sequencer failover: the next member takes over with every final entry; a replaced
//! sequencer and members holding a non-final tail drop it; forged or stale certificates
//! and old-view checkpoints are refused; everything survives a reopen.

mod common;

use std::path::Path;

use common::{body, cases, genesis, key, open};
use confide_audit::{
    AuditError, AuditStore, EntryBody, Genesis, Member, NewView, ReplicateBatch, SignedCheckpoint,
    Vote, handle_replicate, serve_fetch,
};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;

/// `seq` sends `m` what it lacks; `m` cosigns; the final checkpoint if one completes.
fn push(seq: &mut AuditStore, m: &mut AuditStore) -> Option<SignedCheckpoint> {
    seq.checkpoint().unwrap();
    let up = seq.update_for(m.size(), 1000).unwrap();
    let cs = m.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    seq.add_cosignature(&cs).unwrap()
}

fn bodies(member: &str, r: std::ops::Range<u64>) -> Vec<EntryBody> {
    r.map(|i| body(member, i)).collect()
}

fn leaves(s: &AuditStore, n: u64) -> Vec<[u8; 32]> {
    s.entries_range(0, n)
        .unwrap()
        .iter()
        .map(|e| e.leaf_hash())
        .collect()
}

/// bob, the sequencer of view 1, takes over from alice with the votes of `voters`,
/// fetching what he lacks from the voter with the longest log.
fn take_over(bob: &mut AuditStore, voters: &mut [&mut AuditStore]) -> NewView {
    let mut votes = vec![bob.vote(1).unwrap()];
    votes.extend(voters.iter_mut().map(|m| m.vote(1).unwrap()));
    let base = votes.iter().map(|v| v.size).max().unwrap();
    let mut tail = Vec::new();
    if let Some(from) = voters.iter().find(|m| m.size() == base) {
        tail = serve_fetch(from, bob.size(), base - bob.size())
            .unwrap()
            .entries;
    }
    bob.lead_view(votes, &tail).unwrap()
}

#[test]
fn the_next_sequencer_takes_over_with_every_final_entry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut a, mut b, mut c) = (open(d, "alice"), open(d, "bob"), open(d, "carol"));
    // 10 entries final everywhere; 4 more final with carol only; 3 more nobody has.
    a.append_batch(bodies("alice", 0..10)).unwrap();
    push(&mut a, &mut b).unwrap();
    let fin = push(&mut a, &mut c).unwrap_or_else(|| a.latest_final().unwrap().clone());
    b.record_final(&fin).unwrap();
    c.record_final(&fin).unwrap();
    a.append_batch(bodies("alice", 10..14)).unwrap();
    let fin14 = push(&mut a, &mut c).expect("alice and carol are a quorum");
    c.record_final(&fin14).unwrap();
    a.append_batch(bodies("alice", 14..17)).unwrap();
    let final_leaves = leaves(&a, 14);

    // alice is gone; bob (view 1's sequencer) takes over with carol's vote.
    let nv = take_over(&mut b, &mut [&mut c]);
    assert_eq!((nv.view, nv.base.checkpoint.size), (1, 14));
    assert!(b.is_sequencer() && b.view() == 1);
    assert_eq!(
        leaves(&b, 14),
        final_leaves,
        "every final entry is in the new base"
    );
    assert!(c.enter_view(&nv).unwrap());
    assert!(!c.is_sequencer() && c.sequencer() == "bob");
    // An append of entry 12 retried at bob: not appended twice, promised again at 12.
    let e12 = b.entry(12).unwrap();
    assert!(b.append_signed(std::slice::from_ref(&e12)).is_err());
    let again = b.promise_again(&e12).unwrap().expect("bob holds entry 12");
    assert_eq!(
        (again.index, again.view, again.entry_hash),
        (12, 1, e12.leaf_hash())
    );
    again.verify(&genesis()).unwrap();
    assert!(
        c.promise_again(&e12).is_err(),
        "only the sequencer promises"
    );

    // bob's view goes on: carol cosigns, the log is final at 16.
    b.append_batch(bodies("bob", 0..2)).unwrap();
    let fin16 = push(&mut b, &mut c).expect("bob and carol are a quorum");
    assert_eq!(fin16.checkpoint.size, 16);
    c.record_final(&fin16).unwrap();
    let p = b.append_batch(bodies("bob", 2..3)).unwrap().remove(0).1;
    assert_eq!((p.view, p.sequencer.as_str()), (1, "bob"));
    p.verify(&genesis()).unwrap();

    // alice returns, still at view 0 with 17 entries: carol answers her batch with view 1's
    // certificate; alice enters it, drops her 3 unfinal entries, and catches up from bob.
    assert!(a.is_sequencer());
    let up = a.update_for(c.size(), 1000);
    let old = ReplicateBatch {
        first_index: c.size(),
        checkpoint: up.ok().map(|u| u.checkpoint),
        ..ReplicateBatch::default()
    };
    let ack = handle_replicate(&mut c, "alice", &old).unwrap();
    let got = ack.new_view.expect("the certificate of view 1");
    assert_eq!(a.tail_beyond(&got), 3);
    assert!(a.enter_view(&got).unwrap());
    assert!(!a.is_sequencer());
    assert_eq!(a.size(), 14);
    let fin17 = push(&mut b, &mut a).unwrap_or_else(|| b.latest_final().unwrap().clone());
    a.record_final(&fin17).unwrap();
    assert_eq!(leaves(&a, 14), final_leaves);
    assert_eq!(a.root(), b.root());
    for s in [&a, &b, &c] {
        s.verify_all().unwrap();
    }
    // Everything survives a reopen.
    drop(a);
    let a = open(d, "alice");
    assert_eq!((a.view(), a.size(), a.fault()), (1, 17, None));
    assert!(!a.is_sequencer());
    a.verify_all().unwrap();
    drop(b);
    let b = open(d, "bob");
    assert!(b.is_sequencer() && b.new_view() == Some(&got));
}

fn five_key(name: &str) -> SigningKey {
    SigningKey::from_bytes(&[name.as_bytes()[1] + 40; 32])
}

fn five() -> Genesis {
    let members = (0..5)
        .map(|i| {
            let n = format!("m{i}");
            Member::new(&n, &five_key(&n).verifying_key())
        })
        .collect();
    Genesis::new(members, "m0").unwrap()
}

fn open5(d: &Path, name: &str) -> AuditStore {
    AuditStore::open(d.join(name), five(), name, five_key(name)).unwrap()
}

#[test]
fn a_member_drops_a_tail_no_quorum_cosigned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s: Vec<AuditStore> = (0..5).map(|i| open5(d, &format!("m{i}"))).collect();
    let (m0, rest) = s.split_first_mut().unwrap();
    m0.append_batch(bodies("m0", 0..6)).unwrap();
    let mut fin = None;
    for m in rest.iter_mut() {
        fin = push(m0, m).or(fin);
    }
    let fin = fin.expect("final at 3 of 5");
    for m in rest.iter_mut() {
        m.record_final(&fin).unwrap();
    }
    // m2 cosigns two more entries: m0 and m2 are not a quorum of 5.
    m0.append_batch(bodies("m0", 6..8)).unwrap();
    assert!(push(m0, &mut rest[1]).is_none());
    let tail_leaf = rest[1].entry(6).unwrap().leaf_hash();
    // m1 takes over with the votes of m3 and m4 (m2 is cut off): the base is 6.
    let (m1, others) = rest.split_first_mut().unwrap();
    let (m2, m34) = others.split_first_mut().unwrap();
    let mut votes = vec![m1.vote(1).unwrap()];
    votes.extend(m34.iter_mut().map(|m| m.vote(1).unwrap()));
    let nv = m1.lead_view(votes, &[]).unwrap();
    assert_eq!(nv.base.checkpoint.size, 6);
    // m2 enters view 1 and drops entries 6 and 7, from the log and its indexes.
    assert_eq!(m2.tail_beyond(&nv), 2);
    assert!(m2.enter_view(&nv).unwrap());
    assert_eq!(m2.size(), 6);
    assert_eq!(m2.index_of(&tail_leaf).unwrap(), None);
    assert!(!m2.has_entry_row(6).unwrap());
    assert!(m2.job_entries("job-m0-6").unwrap().is_empty());
    // The new sequencer's log extends m2's without conflict.
    for m in m34.iter_mut() {
        assert!(m.enter_view(&nv).unwrap());
    }
    m1.append_batch(bodies("m1", 0..3)).unwrap();
    assert!(push(m1, m2).is_none());
    let fin = push(m1, &mut m34[0]).expect("m1, m2 and m3 are a quorum");
    m2.record_final(&fin).unwrap();
    assert_eq!((m2.size(), m2.root()), (9, m1.root()));
    m2.verify_all().unwrap();
    drop(s);
    let m2 = open5(d, "m2");
    assert_eq!((m2.size(), m2.view(), m2.fault()), (9, 1, None));
}

#[test]
fn forged_stale_and_old_view_messages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut a, mut b, mut c) = (open(d, "alice"), open(d, "bob"), open(d, "carol"));
    a.append_batch(bodies("alice", 0..4)).unwrap();
    let fin = push(&mut a, &mut b).unwrap();
    b.record_final(&fin).unwrap();
    push(&mut a, &mut c);

    // Only the view's sequencer leads it, and only with a quorum of votes.
    let own = c.vote(1).unwrap();
    assert!(matches!(
        c.lead_view(vec![own], &[]),
        Err(AuditError::WrongRole(_))
    ));
    let alone = vec![b.vote(1).unwrap()];
    assert!(matches!(
        b.lead_view(alone, &[]),
        Err(AuditError::QuorumNotMet { .. })
    ));
    assert!(!b.is_sequencer() && b.size() == 4);
    // No vote for the current view or below one already given; the same view again
    // names the same log.
    assert!(matches!(a.vote(0), Err(AuditError::OldView { .. })));
    let again = c.vote(1).unwrap();
    assert_eq!((again.size, again.root), (4, c.root()));
    // carol voted for view 1: she cosigns nothing more of view 0.
    a.append_batch(bodies("alice", 4..6)).unwrap();
    a.checkpoint().unwrap();
    let up = a.update_for(c.size(), 1000).unwrap();
    assert!(matches!(
        c.apply(&up.entries, &up.checkpoint, &up.proof),
        Err(AuditError::OldView {
            got: 0,
            have: 1,
            ..
        })
    ));

    let own = b.vote(1).unwrap();
    let nv = b.lead_view(vec![own, again.clone()], &[]).unwrap();
    // Forged certificates.
    let mut short = nv.clone();
    short.votes.truncate(1);
    let mut twice = nv.clone();
    twice.votes.push(nv.votes[0].clone());
    let mut bigger: NewView = nv.clone();
    bigger.votes[1].size += 1;
    let mut shorter_base = nv.clone();
    shorter_base.base.checkpoint.size = 3;
    let mut by_carol = nv.clone();
    by_carol.base.signatures = vec![nv.base.checkpoint.sign("carol", &key("carol"))];
    let mut other_view: NewView = nv.clone();
    other_view.view = 2;
    for (what, bad) in [
        ("one vote", short),
        ("a vote twice", twice),
        ("a vote altered", bigger),
        ("a base that is not the longest log", shorter_base),
        ("a base signed by another member", by_carol),
        ("votes for another view", other_view),
    ] {
        assert!(bad.verify(&genesis()).is_err(), "{what}");
        assert!(a.enter_view(&bad).is_err(), "{what}");
        assert_eq!(a.view(), 0, "{what}");
    }
    // A later certificate without its view in the batch, or a batch from a non-sequencer.
    let no_cert = ReplicateBatch {
        view: 1,
        ..ReplicateBatch::default()
    };
    assert!(handle_replicate(&mut c, "bob", &no_cert).is_err());
    let cert = ReplicateBatch {
        view: 1,
        new_view: Some(nv.clone()),
        ..ReplicateBatch::default()
    };
    assert!(matches!(
        handle_replicate(&mut c, "alice", &cert),
        Err(AuditError::WrongRole(_))
    ));
    assert_eq!(c.view(), 1, "the certificate itself was good");
    // A leader does not enter its own view; an older certificate changes nothing.
    assert!(matches!(b.enter_view(&nv), Ok(false)));
    assert!(!c.enter_view(&nv).unwrap());
    // A promise relabelled with another view does not verify.
    let mut p = b.append_batch(bodies("bob", 0..1)).unwrap().remove(0).1;
    p.view = 4; // bob again (4 mod 3 = 1), but not what he signed
    assert!(p.verify(&genesis()).is_err());
    p.view = 2;
    assert!(p.verify(&genesis()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Votes and certificates from a peer: arbitrary or mutated JSON never panics, and a
    /// mutated certificate that still parses never verifies.
    #[test]
    fn view_messages_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        i in 0usize..4000,
        x in 1u8..=255,
    ) {
        let _ = Vote::from_json(&bytes);
        let _ = NewView::from_json(&bytes);
        let json = fixture_json();
        let mut m = json.clone();
        let i = i % m.len();
        m[i] ^= x;
        if let Ok(nv) = NewView::from_json(&m)
            && nv.to_json().unwrap() != json
        {
            prop_assert!(nv.verify(&genesis()).is_err());
        }
    }
}

fn fixture_json() -> Vec<u8> {
    use std::sync::OnceLock;
    static J: OnceLock<Vec<u8>> = OnceLock::new();
    J.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b, mut c) = (
            open(dir.path(), "alice"),
            open(dir.path(), "bob"),
            open(dir.path(), "carol"),
        );
        a.append_batch(bodies("alice", 0..2)).unwrap();
        push(&mut a, &mut c);
        take_over(&mut b, &mut [&mut c]).to_json().unwrap()
    })
    .clone()
}

#[test]
fn a_member_refuses_a_base_below_its_final_checkpoint() {
    // m2 votes with a stale copy of its store (a member lying, or restored from a backup):
    // the base then lacks entries m2 itself holds under a final checkpoint. Honest votes
    // cannot do this (any two quorums share a member); m2's live store refuses the view.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s: Vec<AuditStore> = (0..5).map(|i| open5(d, &format!("m{i}"))).collect();
    let (m0, rest) = s.split_first_mut().unwrap();
    m0.append_batch(bodies("m0", 0..4)).unwrap();
    for m in rest.iter_mut() {
        push(m0, m);
    }
    std::fs::copy(d.join("m2"), d.join("m2-stale")).unwrap();
    // Entries 4..6 final with m0, m2 and m3.
    m0.append_batch(bodies("m0", 4..6)).unwrap();
    push(m0, &mut rest[1]);
    let fin = push(m0, &mut rest[2]).expect("m0, m2, m3");
    rest[1].record_final(&fin).unwrap();
    let mut stale = AuditStore::open(d.join("m2-stale"), five(), "m2", five_key("m2")).unwrap();
    let (m1, others) = rest.split_first_mut().unwrap();
    let votes = vec![
        m1.vote(1).unwrap(),
        others[2].vote(1).unwrap(),
        stale.vote(1).unwrap(),
    ];
    let nv = m1.lead_view(votes, &[]).unwrap();
    assert_eq!(nv.base.checkpoint.size, 4);
    let e = others[0].enter_view(&nv).unwrap_err();
    assert!(e.to_string().contains("final checkpoint at 6"), "{e}");
    assert_eq!((others[0].view(), others[0].size()), (0, 6));
}
