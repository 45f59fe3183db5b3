//! The replicator driven with plain function calls: a sequencer, in-memory
//! members (redb in a temp dir), a "network" that can drop members, and a
//! clock that only moves when a test moves it.

use std::collections::{BTreeMap, HashSet};

use ed25519_dalek::SigningKey;

use super::*;
use crate::entry::{Entry, EntryBody, JobKind, fingerprint};
use crate::genesis::{Genesis, Member};

fn key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&[i as u8 + 1; 32])
}

fn genesis(n: usize) -> Genesis {
    let members = (0..n)
        .map(|i| Member::new(format!("m{i}"), &key(i).verifying_key()))
        .collect();
    Genesis::new(members, "m0").unwrap()
}

fn body(member: &str, tag: &str, i: u64) -> EntryBody {
    EntryBody {
        timestamp_ms: 1_700_000_000_000 + i,
        member: member.into(),
        kind: JobKind::Psi,
        job_id: format!("{tag}-{i}"),
        served_by: vec![],
        fingerprint: fingerprint(&i.to_be_bytes(), tag.as_bytes(), b"result"),
    }
}

/// Sequencer m0 and members m1.. with a replicator between them.
struct Net {
    dir: tempfile::TempDir,
    n: usize,
    seq: AuditStore,
    members: BTreeMap<String, AuditStore>,
    down: HashSet<String>,
    rep: Replicator,
    now: Instant,
    /// Checkpoints `on_reply` reported as newly final.
    finals: Vec<FinalCheckpoint>,
    /// Every failure: the member's refusal or the sequencer's.
    errors: Vec<(String, AuditError)>,
    /// Most entries seen in one batch.
    biggest_batch: usize,
    appended: u64,
}

impl Net {
    fn new(n: usize, config: ReplicatorConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let open = |i: usize| {
            let name = format!("m{i}");
            let path = dir.path().join(format!("{name}.redb"));
            AuditStore::open(path, genesis(n), &name, key(i)).unwrap()
        };
        let seq = open(0);
        let members = (1..n).map(|i| (format!("m{i}"), open(i))).collect();
        let rep = Replicator::new(&seq, config).unwrap();
        Net {
            n,
            seq,
            members,
            down: HashSet::new(),
            rep,
            now: Instant::now(),
            finals: Vec::new(),
            errors: Vec::new(),
            biggest_batch: 0,
            appended: 0,
            dir,
        }
    }

    /// The sequencer appends `k` entries signed by rotating members.
    fn append(&mut self, k: u64) {
        let entries: Vec<Entry> = (self.appended..self.appended + k)
            .map(|i| {
                let who = (i as usize) % self.n;
                Entry::create(
                    body(&format!("m{who}"), "job", i),
                    &self.seq.log_id(),
                    &key(who),
                )
                .unwrap()
            })
            .collect();
        self.seq.append_signed(&entries).unwrap();
        self.appended += k;
    }

    fn member(&self, name: &str) -> &AuditStore {
        &self.members[name]
    }

    fn view(&self, name: &str) -> &MemberView {
        self.rep.view(name).unwrap()
    }

    /// One round: every due batch is carried (through the wire fields, as the
    /// daemon does) and answered. Returns the number of batches.
    fn step(&mut self) -> usize {
        let batches = self.rep.next_batch(&mut self.seq, self.now).unwrap();
        let n = batches.len();
        for (m, b) in batches {
            self.biggest_batch = self.biggest_batch.max(b.entries.len());
            if self.down.contains(&m) {
                self.rep.on_error(&m, "unreachable", self.now);
                continue;
            }
            let b = ReplicateBatch::from_wire(
                b.first_index,
                &b.entry_bytes(),
                &b.checkpoint_note(),
                &b.proof_bytes(),
                &b.final_notes(),
                (b.view, &b.new_view_json().unwrap()),
            )
            .unwrap();
            let store = self.members.get_mut(&m).unwrap();
            match handle_replicate(store, "m0", &b) {
                Ok(ack) => {
                    let wire = ack.cosignature_json().unwrap();
                    let nv = ack.new_view_json().unwrap();
                    let ack = ReplicateAck::from_wire(&wire, ack.size, &nv).unwrap();
                    match self.rep.on_reply(&mut self.seq, &m, &ack, self.now) {
                        Ok(out) => self.finals.extend(out.new_final),
                        Err(e) => self.errors.push((m, e)),
                    }
                }
                Err(e) => {
                    self.rep.on_error(&m, &e, self.now);
                    self.errors.push((m, e));
                }
            }
        }
        n
    }

    /// Rounds until nothing is due; returns how many rounds sent something.
    fn settle(&mut self) -> usize {
        for rounds in 0..100 {
            if self.step() == 0 {
                return rounds;
            }
        }
        panic!("replication does not settle");
    }

    /// Move the clock to the end of the earliest backoff.
    fn wait_backoff(&mut self) {
        self.now = self.rep.next_wakeup().expect("a member waits");
    }

    fn signers(fin: &FinalCheckpoint) -> Vec<&str> {
        fin.signatures.iter().map(|s| s.name.as_str()).collect()
    }
}

#[test]
fn replicates_to_two_members_and_pushes_the_final() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(5);
    // Probe, update (cosigned: final at 2 of 3), the final pushed back.
    assert_eq!(net.settle(), 3);
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert_eq!(net.seq.latest_signed().unwrap().checkpoint.size, 5);
    assert_eq!(net.finals.len(), 1);
    assert_eq!(Net::signers(&net.finals[0]), ["m0", "m1"]);
    for m in ["m1", "m2"] {
        let s = net.member(m);
        assert_eq!((s.size(), s.root()), (5, net.seq.root()));
        assert_eq!(s.latest_final().unwrap().checkpoint.size, 5);
        let v = net.view(m);
        assert_eq!((v.acked, v.cosigned, v.final_sent), (Some(5), 5, 5));
        assert!(v.last_error.is_none() && !v.in_flight());
    }
    // Idle until the log grows; then one update round and one final round.
    assert!(
        net.rep
            .next_batch(&mut net.seq, net.now)
            .unwrap()
            .is_empty()
    );
    net.append(3);
    assert_eq!(net.settle(), 2);
    assert_eq!(net.finals.len(), 2);
    for m in ["m1", "m2"] {
        assert_eq!(net.member(m).latest_final().unwrap().checkpoint.size, 8);
        assert_eq!(net.member(m).verify_all().unwrap().entries, 8);
    }
    assert!(net.errors.is_empty(), "{:?}", net.errors);
}

#[test]
fn member_down_then_catches_up_in_steps() {
    let cfg = ReplicatorConfig {
        max_entries: 4,
        ..ReplicatorConfig::default()
    };
    let mut net = Net::new(3, cfg);
    net.down.insert("m2".into());
    for _ in 0..4 {
        net.append(3);
        net.settle();
    }
    // m1 alone completes the quorum; m2 failed and waits out its backoff.
    assert_eq!(net.seq.latest_final().unwrap().checkpoint.size, 12);
    assert_eq!(net.member("m1").latest_final().unwrap().checkpoint.size, 12);
    assert_eq!(net.member("m2").size(), 0);
    let v = net.view("m2").clone();
    assert_eq!(v.acked, None);
    assert_eq!(v.last_error.as_deref(), Some("unreachable"));
    assert!(v.retry_at.unwrap() > net.now);
    assert!(
        net.rep
            .next_batch(&mut net.seq, net.now)
            .unwrap()
            .is_empty(),
        "nothing is sent during the backoff"
    );
    // m2 returns: probed at 0, then brought up through the checkpoints signed
    // at 3, 6, 9 and 12 (at most 4 entries a batch), each cosigned, then the final.
    net.down.clear();
    net.wait_backoff();
    assert_eq!(net.settle(), 1 + 4 + 1);
    assert!(net.errors.is_empty(), "{:?}", net.errors);
    assert!(net.biggest_batch <= 4);
    let m2 = net.member("m2");
    assert_eq!((m2.size(), m2.root()), (12, net.seq.root()));
    assert_eq!(m2.latest_final().unwrap().checkpoint.size, 12);
    let v = net.view("m2");
    assert_eq!((v.acked, v.cosigned, v.final_sent), (Some(12), 12, 12));
    assert_eq!(
        (v.failures, v.retry_at, v.last_error.as_deref()),
        (0, None, None)
    );
}

#[test]
fn finality_only_at_a_majority() {
    // Five members: quorum 3 (the sequencer's signature and two cosignatures).
    let mut net = Net::new(5, ReplicatorConfig::default());
    for m in ["m2", "m3", "m4"] {
        net.down.insert(m.into());
    }
    net.append(4);
    net.settle();
    assert_eq!(net.member("m1").size(), 4, "m1 cosigned");
    assert_eq!(net.view("m1").cosigned, 4);
    assert!(net.finals.is_empty() && net.seq.latest_final().is_none());
    assert!(net.member("m1").latest_final().is_none());
    assert_eq!(net.view("m1").final_sent, 0);
    // A second member returns: its cosignature makes the checkpoint final.
    net.down.remove("m2");
    net.wait_backoff();
    net.settle();
    assert_eq!(net.finals.len(), 1);
    let fin = &net.finals[0];
    assert_eq!(Net::signers(fin), ["m0", "m1", "m2"]);
    fin.verify_quorum(&genesis(5), &genesis(5).keys().unwrap())
        .unwrap();
    for m in ["m1", "m2"] {
        assert_eq!(net.member(m).latest_final(), Some(fin));
    }
    for m in ["m3", "m4"] {
        assert!(net.member(m).latest_final().is_none());
        assert!(net.view(m).failures >= 1);
    }
}

#[test]
fn member_rejects_an_inconsistent_checkpoint_and_halts_on_equivocation() {
    let mut net = Net::new(3, ReplicatorConfig::default());
    net.append(6);
    net.settle();
    assert_eq!(net.member("m1").latest_final().unwrap().checkpoint.size, 6);
    // A forked sequencer: the same name and key over another log.
    let mut fork =
        AuditStore::open(net.dir.path().join("fork.redb"), genesis(3), "m0", key(0)).unwrap();
    fork.append_batch((0..4).map(|i| body("m0", "fork", i)).collect())
        .unwrap();
    fork.checkpoint().unwrap();
    fork.append_batch((4..8).map(|i| body("m0", "fork", i)).collect())
        .unwrap();
    let mut frep = Replicator::new(&fork, ReplicatorConfig::default()).unwrap();
    let m1 = net.members.get_mut("m1").unwrap();
    // Driven by the fork's state machine: probe (6), then entries 6..8 under a
    // checkpoint at 8 that m1's log does not lead to: refused, nothing stored.
    let probe = frep.next_batch(&mut fork, net.now).unwrap();
    let (_, b) = probe.iter().find(|(m, _)| m == "m1").unwrap();
    assert!(b.is_probe());
    let ack = handle_replicate(m1, "m0", b).unwrap();
    frep.on_reply(&mut fork, "m1", &ack, net.now).unwrap();
    let up = frep.next_batch(&mut fork, net.now).unwrap();
    let (_, b) = up.iter().find(|(m, _)| m == "m1").unwrap();
    assert_eq!((b.first_index, b.entries.len()), (6, 2));
    let err = handle_replicate(m1, "m0", b).unwrap_err();
    assert!(matches!(err, AuditError::RootMismatch { .. }), "{err}");
    frep.on_error("m1", &err, net.now);
    assert!(frep.view("m1").unwrap().last_error.is_some());
    assert_eq!(m1.size(), 6);
    assert!(fork.latest_final().is_none());
    // The fork's checkpoint at 4, a size m1 holds (a stale view or a replay):
    // equivocation, with evidence anyone with the genesis can check.
    let stale = fork.update_for(0, 4).unwrap();
    let b = ReplicateBatch {
        first_index: 0,
        entries: stale.entries,
        checkpoint: Some(stale.checkpoint),
        consistency_proof: stale.proof,
        ..ReplicateBatch::default()
    };
    let AuditError::Equivocation(ev) = handle_replicate(m1, "m0", &b).unwrap_err() else {
        panic!("not equivocation")
    };
    ev.verify(&genesis(3)).unwrap();
    assert_eq!((ev.size_a, ev.size_b), (6, 4));
    // The real sequencer goes on: m1 refuses for good, m2 keeps the log final.
    net.append(2);
    net.settle();
    assert!(
        net.errors
            .iter()
            .any(|(m, e)| m == "m1" && matches!(e, AuditError::Halted))
    );
    assert!(
        net.view("m1")
            .last_error
            .as_deref()
            .unwrap()
            .contains("halted")
    );
    let fin = net.seq.latest_final().unwrap();
    assert_eq!(fin.checkpoint.size, 8);
    assert_eq!(Net::signers(fin), ["m0", "m2"]);
    assert_eq!(net.member("m1").size(), 6);
}

#[path = "tests_more.rs"]
mod more;
