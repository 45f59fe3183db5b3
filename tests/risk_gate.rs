//! The compute nodes' audit gate (`check_risk_evidence`) on evidence built from real audit
//! stores: an entry is accepted only with an RFC 6962 inclusion proof in a checkpoint
//! cosigned by a quorum that includes a member other than the node and the caller; a bare
//! inclusion promise, a checkpoint below quorum, or one signed only by the node and the
//! caller is refused.

use confide::audit::evidence::{RISK_EVIDENCE_FORMAT, RiskEvidence, check_risk_evidence};
use confide_audit::{
    AuditStore, EntryBody, Genesis, JobKind, Member, ProofBundle, SignedCheckpoint, fingerprint,
    new_salt,
};
use ed25519_dalek::SigningKey;

/// alice (sequencer), bob, carol: quorum 2 of 3.
struct Log {
    _dir: tempfile::TempDir,
    genesis: Genesis,
    stores: Vec<AuditStore>,
}

const NAMES: [&str; 3] = ["alice", "bob", "carol"];

fn log() -> Log {
    let keys: Vec<SigningKey> = (1..=3u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let members = NAMES
        .iter()
        .zip(&keys)
        .map(|(n, k)| Member::new(*n, &k.verifying_key()))
        .collect();
    let genesis = Genesis::new(members, "alice").unwrap();
    assert_eq!(genesis.quorum, 2);
    let dir = tempfile::tempdir().unwrap();
    let stores = NAMES
        .iter()
        .zip(keys)
        .map(|(n, k)| AuditStore::open(dir.path().join(n), genesis.clone(), n, k).unwrap())
        .collect();
    Log {
        _dir: dir,
        genesis,
        stores,
    }
}

fn who(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).unwrap()
}

/// `member` logs a risk-query entry bound to `hash`; the members in `cosigners` (in order)
/// catch up and cosign until the checkpoint is final; the member gets the final checkpoint
/// and the evidence is built from its proof. Without cosigners: the sequencer-only
/// checkpoint and a proof against it.
fn evidence(l: &mut Log, member: &str, hash: [u8; 32], cosigners: &[&str]) -> Vec<u8> {
    let salt = new_salt();
    let body = EntryBody {
        timestamp_ms: 1,
        member: member.into(),
        kind: JobKind::RiskQuery,
        job_id: format!("q-{}", hex::encode(salt)),
        served_by: vec!["alice".into(), "bob".into()],
        fingerprint: fingerprint(&salt, &hash, b""),
    };
    let entry = l.stores[who(member)].sign_entry(body).unwrap();
    let promise = l.stores[0]
        .append_signed(std::slice::from_ref(&entry))
        .unwrap()
        .remove(0);
    l.stores[0].checkpoint().unwrap();
    let mut fin = None;
    for c in cosigners {
        let i = who(c);
        let up = l.stores[0].update_for(l.stores[i].size(), 10_000).unwrap();
        let cosig = l.stores[i]
            .apply(&up.entries, &up.checkpoint, &up.proof)
            .unwrap();
        if let Some(f) = l.stores[0].add_cosignature(&cosig).unwrap() {
            fin = Some(f);
        }
    }
    let proof = match fin {
        Some(f) => {
            let i = who(member);
            if i != 0 {
                if l.stores[i].size() < f.checkpoint.size {
                    let up = l.stores[0].update_for(l.stores[i].size(), 10_000).unwrap();
                    l.stores[i]
                        .apply(&up.entries, &up.checkpoint, &up.proof)
                        .unwrap();
                }
                l.stores[i].record_final(&f).unwrap();
            }
            l.stores[i].prove(promise.index).unwrap()
        }
        None => {
            // A bundle against a checkpoint below quorum: a final one of an earlier entry
            // re-pointed at the sequencer's latest signed checkpoint.
            let mut b = sequencer_only_bundle(l, promise.index);
            b.entry = entry;
            b
        }
    };
    serde_json::to_vec(&RiskEvidence {
        format: RISK_EVIDENCE_FORMAT.into(),
        proof,
        promise,
        salt_hex: hex::encode(salt),
        blinded_hash_hex: hex::encode(hash),
    })
    .unwrap()
}

/// A proof bundle of entry `index` against the sequencer's latest checkpoint, carrying only
/// the sequencer's signature (as a node colluding with the sequencer could produce).
fn sequencer_only_bundle(l: &Log, index: u64) -> ProofBundle {
    let signed: SignedCheckpoint = l.stores[0].latest_signed().unwrap().clone();
    // Reuse a real bundle's shape (format, genesis hash) and swap in the pieces.
    let prior = l.stores[0].prove(0).unwrap();
    let size = signed.checkpoint.size;
    let mut tree = confide_audit::merkle::MerkleTree::new();
    for e in l.stores[0].entries_range(0, size).unwrap() {
        tree.push(e.leaf_hash());
    }
    ProofBundle {
        index,
        tree_size: size,
        audit_path: tree.inclusion_proof(index, size).unwrap(),
        checkpoint: signed,
        ..prior
    }
}

fn check(l: &Log, node: &str, querier: &str, hash: [u8; 32], ev: &[u8]) -> Result<(), String> {
    check_risk_evidence(&l.genesis, node, querier, hash, ev).map(|_| ())
}

#[test]
fn the_gate_wants_a_quorum_checkpoint_with_an_independent_cosigner() {
    let mut l = log();
    let hash = [7u8; 32];
    // A valid one: carol's entry, final with alice (sequencer) and bob; node bob (S1) accepts
    // (alice is neither bob nor carol), and so does node alice (bob is independent of her).
    let ev = evidence(&mut l, "carol", hash, &["bob"]);
    check(&l, "bob", "carol", hash, &ev).unwrap();
    check(&l, "alice", "carol", hash, &ev).unwrap();
    // Wrong caller, wrong points.
    assert!(
        check(&l, "bob", "alice", hash, &ev)
            .unwrap_err()
            .contains("not `alice`'s")
    );
    let e = check(&l, "bob", "carol", [8; 32], &ev).unwrap_err();
    assert!(e.contains("does not commit"), "{e}");

    // Final with alice (the sequencer, also the node) and carol (the caller) only: a quorum,
    // but nobody independent of node and caller vouches for the entry. Refused at alice; at
    // bob, alice is independent.
    let ev = evidence(&mut l, "carol", hash, &["carol"]);
    let e = check(&l, "alice", "carol", hash, &ev).unwrap_err();
    assert!(
        e.contains("cosigned by no member other than `alice` and `carol`"),
        "{e}"
    );
    check(&l, "bob", "carol", hash, &ev).unwrap();

    // A checkpoint signed only by the sequencer (= the node alice): below quorum.
    let ev = evidence(&mut l, "carol", hash, &[]);
    let e = check(&l, "alice", "carol", hash, &ev).unwrap_err();
    assert!(e.contains("quorum"), "{e}");
    let e = check(&l, "bob", "carol", hash, &ev).unwrap_err();
    assert!(e.contains("quorum"), "{e}");

    // A valid entry with a broken inclusion path.
    let ev = evidence(&mut l, "carol", hash, &["bob"]);
    let mut v: RiskEvidence = serde_json::from_slice(&ev).unwrap();
    v.proof.index += 1;
    let e = check(&l, "bob", "carol", hash, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.contains("audit proof"), "{e}");
}

#[test]
fn a_bare_inclusion_promise_is_refused() {
    let mut l = log();
    let hash = [9u8; 32];
    let ev = evidence(&mut l, "carol", hash, &["bob"]);
    let v: serde_json::Value = serde_json::from_slice(&ev).unwrap();
    // The version 1 shape: the entry and the sequencer's promise, no proof.
    let v1 = serde_json::json!({
        "entry_hex": hex::encode(l.stores[0].entry(v["proof"]["index"].as_u64().unwrap()).unwrap().as_bytes()),
        "promise": v["promise"],
        "salt_hex": v["salt_hex"],
        "blinded_hash_hex": v["blinded_hash_hex"],
    });
    let e = check(&l, "bob", "carol", hash, &serde_json::to_vec(&v1).unwrap()).unwrap_err();
    assert!(e.contains("malformed evidence"), "{e}");
    // Nor does relabelling a version-1 object help, nor an unknown version.
    let mut v2 = v.clone();
    v2["format"] = "confide-risk-evidence/v1".into();
    let e = check(&l, "bob", "carol", hash, &serde_json::to_vec(&v2).unwrap()).unwrap_err();
    assert!(e.contains("expected `confide-risk-evidence/v2`"), "{e}");
    check(&l, "bob", "carol", hash, &ev).unwrap();
}

#[test]
fn a_promise_made_after_a_view_change_must_be_timed_near_the_nodes_clock() {
    use confide::audit::evidence::{PROMISE_SKEW_MS, check_risk_evidence_at};
    let mut l = log();
    let hash = [5u8; 32];
    // bob takes over as the sequencer of view 1 with carol's vote.
    let [_, b, c] = &mut l.stores[..] else {
        unreachable!()
    };
    let votes = vec![b.vote(1).unwrap(), c.vote(1).unwrap()];
    let nv = b.lead_view(votes, &[]).unwrap();
    assert!(c.enter_view(&nv).unwrap());
    // carol's query, appended by bob, final with carol's cosignature.
    let salt = new_salt();
    let entry = c
        .sign_entry(EntryBody {
            timestamp_ms: 1,
            member: "carol".into(),
            kind: JobKind::RiskQuery,
            job_id: format!("q-{}", hex::encode(salt)),
            served_by: vec!["alice".into(), "bob".into()],
            fingerprint: fingerprint(&salt, &hash, b""),
        })
        .unwrap();
    let promise = b.append_signed(&[entry]).unwrap().remove(0);
    assert_eq!((promise.view, promise.sequencer.as_str()), (1, "bob"));
    b.checkpoint().unwrap();
    let up = b.update_for(c.size(), 10_000).unwrap();
    let cosig = c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    let fin = b.add_cosignature(&cosig).unwrap().expect("bob and carol");
    c.record_final(&fin).unwrap();
    let t = promise.timestamp_ms;
    let ev = serde_json::to_vec(&RiskEvidence {
        format: RISK_EVIDENCE_FORMAT.into(),
        proof: c.prove(promise.index).unwrap(),
        promise,
        salt_hex: hex::encode(salt),
        blinded_hash_hex: hex::encode(hash),
    })
    .unwrap();
    let at = |now| check_risk_evidence_at(&l.genesis, ("alice", "carol"), hash, &ev, now);
    at(t).unwrap();
    at(t + PROMISE_SKEW_MS).unwrap();
    for off in [t + PROMISE_SKEW_MS + 1_000, t - PROMISE_SKEW_MS - 1_000] {
        let e = at(off).unwrap_err();
        assert!(e.contains("away from this node's clock"), "{e}");
    }
}
