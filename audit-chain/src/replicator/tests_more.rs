//! Replicator edge cases: refused replies, backoff, the wire forms, the
//! member's catch-up answer, Fetch.

use std::time::Duration;

use super::*;
use crate::checkpoint::Cosignature;

/// The batches due now, by member (in flight; the network is not used).
fn due(net: &mut Net) -> BTreeMap<String, ReplicateBatch> {
    net.rep
        .next_batch(&mut net.seq, net.now)
        .unwrap()
        .into_iter()
        .collect()
}

/// `m` answers `size` and `cosignature` to its batch in flight; the refusal.
fn refused(net: &mut Net, m: &str, size: u64, cosignature: Option<Cosignature>) -> AuditError {
    let ack = ReplicateAck {
        size,
        cosignature,
        new_view: None,
    };
    net.rep
        .on_reply(&mut net.seq, m, &ack, net.now)
        .unwrap_err()
}

/// The batch due now for `m`.
fn batch_for(net: &mut Net, m: &str) -> ReplicateBatch {
    due(net).remove(m).unwrap()
}

#[test]
fn refused_replies_count_as_failures() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(2);
    // No batch in flight.
    let stray = ReplicateAck {
        size: 0,
        cosignature: None,
        new_view: None,
    };
    assert!(matches!(
        net.rep.on_reply(&mut net.seq, "m1", &stray, net.now),
        Err(AuditError::Replication { .. })
    ));
    assert!(matches!(
        net.rep.on_reply(&mut net.seq, "nobody", &stray, net.now),
        Err(AuditError::UnknownMember(_))
    ));
    net.step(); // probes
    let mut batches = due(&mut net);
    assert!(net.view("m1").in_flight() && net.view("m2").in_flight());
    let b1 = batches.remove("m1").unwrap();
    let b2 = batches.remove("m2").unwrap();
    assert!(due(&mut net).is_empty(), "one batch in flight per member");
    let ack1 = handle_replicate(net.members.get_mut("m1").unwrap(), "m0", &b1).unwrap();
    let ack2 = handle_replicate(net.members.get_mut("m2").unwrap(), "m0", &b2).unwrap();
    // m1 answers with m2's cosignature: refused, m1 backs off, nothing final.
    let err = refused(&mut net, "m1", 2, ack2.cosignature.clone());
    assert!(err.to_string().contains("cosignature by \"m2\""), "{err}");
    let v = net.view("m1");
    assert_eq!(v.failures, 1);
    assert!(v.retry_at.is_some() && !v.in_flight());
    assert!(net.seq.latest_final().is_none());
    // m2 answers with a cosignature whose signature bytes are forged.
    let mut forged = ack2.cosignature.clone();
    if let Some(c) = forged.as_mut() {
        c.signature.signature[0] ^= 1;
    }
    let err = refused(&mut net, "m2", 2, forged);
    assert!(matches!(err, AuditError::BadSignature(_)), "{err}");
    assert!(net.seq.latest_final().is_none());
    // Both already hold the checkpoint; their answers were lost. After the
    // backoff they are probed, asked to cosign it again, and it becomes final.
    assert_eq!(net.member("m1").size(), 2);
    net.wait_backoff();
    net.settle();
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert_eq!(net.seq.latest_final().unwrap().checkpoint.size, 2);
    assert_eq!(net.view("m1").failures, 0);
    assert_eq!(net.member("m2").latest_final().unwrap().checkpoint.size, 2);
    // Answers that do not fit the batch in flight are refused.
    net.append(1);
    let m1_at_2 = ack1.cosignature;
    let answers = [
        (99, None, "more than the sequencer signed"),
        (1, None, "went back from 2 to 1"),
        (
            3,
            m1_at_2.clone(),
            "cosigned size 2 holding 3, for a checkpoint at 3",
        ),
    ];
    for (size, cosignature, why) in answers {
        let b = batch_for(&mut net, "m1");
        assert_eq!(b.checkpoint.map(|c| c.checkpoint.size), Some(3));
        let err = refused(&mut net, "m1", size, cosignature);
        assert!(err.to_string().contains(why), "{err}");
        net.wait_backoff();
    }
    // A cosignature in answer to a probe.
    net.rep.on_error("m1", "timed out", net.now);
    net.wait_backoff();
    assert!(batch_for(&mut net, "m1").is_probe());
    let err = refused(&mut net, "m1", 2, m1_at_2);
    assert!(err.to_string().contains("no checkpoint sent"), "{err}");
    assert_eq!(net.view("m1").failures, 5);
}

#[test]
fn lost_answers_are_asked_again() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(2);
    net.step(); // probes
    // Both members apply and cosign, but their answers never arrive.
    for (m, b) in due(&mut net) {
        handle_replicate(net.members.get_mut(&m).unwrap(), "m0", &b).unwrap();
        net.rep.on_error(&m, "timed out", net.now);
    }
    assert_eq!(net.member("m1").size(), 2);
    assert!(net.seq.latest_final().is_none());
    // Probed at 2 = the latest checkpoint, still not final: asked to cosign it again.
    net.wait_backoff();
    assert_eq!(net.settle(), 3);
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert_eq!(net.seq.latest_final().unwrap().checkpoint.size, 2);
    assert_eq!(net.member("m2").latest_final().unwrap().checkpoint.size, 2);
    // Once final, members holding it are not asked again.
    net.rep.on_error("m1", "restarted", net.now);
    net.wait_backoff();
    assert_eq!(net.settle(), 2, "probe, then the final only");
    assert_eq!(net.view("m1").cosigned, 2);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let cfg = ReplicatorConfig {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..ReplicatorConfig::default()
    };
    let mut net = Net::new(3, cfg);
    net.down.insert("m1".into());
    net.down.insert("m2".into());
    assert_eq!(net.rep.next_wakeup(), None);
    let ms = Duration::from_millis;
    for wait in [100, 200, 400, 800, 1000, 1000].map(ms) {
        assert_eq!(net.step(), 2);
        let t = net.now + wait;
        assert_eq!(net.view("m1").retry_at, Some(t));
        assert_eq!(net.rep.next_wakeup(), Some(t));
        net.now = t - ms(1);
        assert_eq!(net.step(), 0, "nothing before the backoff ends");
        net.now = t;
    }
    assert_eq!(net.view("m2").failures, 6);
    // Not the sequencer: no replicator.
    let m1 = net.member("m1");
    assert!(matches!(
        Replicator::new(m1, ReplicatorConfig::default()),
        Err(AuditError::WrongRole(_))
    ));
}

#[test]
fn a_member_that_makes_contact_leaves_its_backoff() {
    let cfg = ReplicatorConfig {
        backoff_initial: Duration::from_secs(30),
        backoff_max: Duration::from_secs(30),
        ..ReplicatorConfig::default()
    };
    let mut net = Net::new(3, cfg);
    net.down.insert("m1".into());
    net.append(4);
    net.settle();
    assert!(net.view("m1").retry_at.is_some_and(|t| t > net.now));
    assert_eq!(net.member("m1").size(), 0);
    // Back up, but the sequencer does not know yet: nothing for 30 s.
    net.down.clear();
    assert_eq!(net.step(), 0, "still in its backoff");
    // It makes contact: probed and caught up at once, without waiting out the backoff.
    assert!(net.rep.on_contact("m1"));
    assert!(!net.rep.on_contact("m1"), "no backoff left to end");
    assert!(!net.rep.on_contact("m2") && !net.rep.on_contact("nobody"));
    net.settle();
    assert_eq!(net.member("m1").size(), 4);
    assert_eq!(net.member("m1").latest_final().unwrap().checkpoint.size, 4);
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    // A batch in flight is left alone.
    net.append(1);
    let _ = batch_for(&mut net, "m1");
    assert!(net.view("m1").in_flight());
    assert!(!net.rep.on_contact("m1"));
    assert!(net.view("m1").in_flight());
}

#[test]
fn wire_forms_roundtrip_and_refuse_garbage() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(3);
    net.settle();
    net.append(2);
    let b = batch_for(&mut net, "m1");
    assert!(!b.is_probe() && b.checkpoint.is_some() && !b.consistency_proof.is_empty());
    let (e, c, p) = (b.entry_bytes(), b.checkpoint_note(), b.proof_bytes());
    let finals = vec![net.seq.latest_final().unwrap().to_note()];
    let back = ReplicateBatch::from_wire(b.first_index, &e, &c, &p, &finals, (0, &[])).unwrap();
    assert_eq!(back.entries, b.entries);
    assert_eq!(back.checkpoint, b.checkpoint);
    assert_eq!(back.consistency_proof, b.consistency_proof);
    assert_eq!(back.final_checkpoints.len(), 1);
    assert!(
        ReplicateBatch::from_wire(0, &[], "", &[], &[], (0, &[]))
            .unwrap()
            .is_probe()
    );
    let short = vec![vec![0u8; 31]];
    let long = vec![vec![0u8; 32]; MAX_PROOF_HASHES + 1];
    let many = vec![finals[0].clone(); MAX_FINALS_PER_BATCH + 1];
    for bad in [
        ReplicateBatch::from_wire(3, &[vec![1, 2, 3]], &c, &p, &[], (0, &[])),
        ReplicateBatch::from_wire(3, &e, "not a note", &p, &[], (0, &[])),
        ReplicateBatch::from_wire(3, &e, &c, &short, &[], (0, &[])),
        ReplicateBatch::from_wire(3, &e, &c, &long, &[], (0, &[])),
        ReplicateBatch::from_wire(3, &e, &c, &p, &["x".into()], (0, &[])),
        ReplicateBatch::from_wire(3, &e, &c, &p, &many, (0, &[])),
    ] {
        assert!(bad.is_err());
    }
    let ack = handle_replicate(net.members.get_mut("m1").unwrap(), "m0", &b).unwrap();
    let json = ack.cosignature_json().unwrap();
    assert_eq!(ReplicateAck::from_wire(&json, ack.size, &[]).unwrap(), ack);
    assert_eq!(
        ReplicateAck::from_wire("", 7, &[]).unwrap().cosignature,
        None
    );
    assert!(ReplicateAck::from_wire("{", 7, &[]).is_err());
}

#[test]
fn member_asks_to_resume_from_its_size() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(4);
    net.settle();
    net.append(4);
    let b = batch_for(&mut net, "m1");
    assert_eq!(b.first_index, 4);
    let m1 = net.members.get_mut("m1").unwrap();
    // Entries that start before or after m1's size are not applied: m1
    // answers with its size, and the sequencer resumes from there.
    for first_index in [2, 6] {
        let off = ReplicateBatch {
            first_index,
            ..b.clone()
        };
        let ack = handle_replicate(m1, "m0", &off).unwrap();
        assert_eq!((ack.size, ack.cosignature.is_none()), (4, true));
    }
    let err = refused(&mut net, "m1", 4, None);
    assert!(err.to_string().contains("did not cosign"), "{err}");
    assert_eq!(
        net.view("m1").acked,
        Some(4),
        "resumes from the size m1 gave"
    );
    net.wait_backoff();
    let again = batch_for(&mut net, "m1");
    assert_eq!((again.first_index, again.entries.len()), (4, 4));
    // A consistent older checkpoint is a replay: size only. The same one is
    // cosigned again. The sequencer itself takes no batches.
    let m1 = net.members.get_mut("m1").unwrap();
    let cp4 = m1.latest_signed().unwrap().clone();
    let ack = handle_replicate(m1, "m0", &again).unwrap();
    assert_eq!(ack.cosignature.as_ref().map(|c| c.size), Some(8));
    let replay = ReplicateBatch {
        checkpoint: Some(cp4),
        ..ReplicateBatch::default()
    };
    let ack = handle_replicate(m1, "m0", &replay).unwrap();
    assert_eq!((ack.size, ack.cosignature), (8, None));
    let same = ReplicateBatch {
        checkpoint: again.checkpoint.clone(),
        ..ReplicateBatch::default()
    };
    assert!(
        handle_replicate(m1, "m0", &same)
            .unwrap()
            .cosignature
            .is_some()
    );
    assert!(matches!(
        handle_replicate(&mut net.seq, "m0", &same),
        Err(AuditError::WrongRole(_))
    ));
}

#[test]
fn fetch_clamps_and_includes_the_final() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(5);
    net.settle();
    let m1 = net.member("m1");
    let f = serve_fetch(m1, 1, 0).unwrap();
    assert_eq!(f.entries, m1.entries_range(1, 2).unwrap());
    assert_eq!(f.final_checkpoint.as_ref(), m1.latest_final());
    assert_eq!(serve_fetch(m1, 2, 100).unwrap().entries.len(), 3);
    assert!(
        serve_fetch(m1, u64::MAX, u64::MAX)
            .unwrap()
            .entries
            .is_empty()
    );
}
