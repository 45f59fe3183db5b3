//! A log far longer than the Merkle frontier the store keeps in memory
//! ([`confide_audit::pruned`]): old entries still prove offline, a member far behind
//! catches up with a consistency proof from an old size, reopening restores the same
//! roots, and the hashes held in memory do not grow with the log.

mod common;

use common::{body, genesis, open};
use confide_audit::pruned::{CHUNK, KEEP_CHUNKS};
use confide_audit::verify_bundle;

const ENTRIES: u64 = 40 * CHUNK + 77;
const BATCH: u64 = 250;

#[test]
fn old_entries_prove_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b, mut c) = (
        open(dir.path(), "alice"),
        open(dir.path(), "bob"),
        open(dir.path(), "carol"),
    );
    let bound = KEEP_CHUNKS * 2 * CHUNK as usize + 200;
    let mut carol_synced = false;
    let mut peak = 0;
    while a.size() < ENTRIES {
        let start = a.size();
        let n = BATCH.min(ENTRIES - start);
        a.append_batch((start..start + n).map(|i| body("alice", i)).collect())
            .unwrap();
        a.checkpoint().unwrap();
        let up = a.update_for(b.size(), u64::MAX).unwrap();
        let cs = b.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
        let fin = a
            .add_cosignature(&cs)
            .unwrap()
            .expect("alice and bob are a quorum");
        b.record_final(&fin).unwrap();
        if !carol_synced {
            // carol takes the first batch only, then falls far behind.
            let up = a.update_for(c.size(), u64::MAX).unwrap();
            c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
            carol_synced = true;
        }
        peak = peak
            .max(a.tree_hashes_in_memory())
            .max(b.tree_hashes_in_memory());
    }
    assert!(
        peak < bound,
        "{peak} hashes in memory for {ENTRIES} entries"
    );

    // carol catches up from size 250 (a chunk long out of alice's memory).
    assert_eq!(c.size(), BATCH);
    let up = a.update_for(c.size(), u64::MAX).unwrap();
    assert!(
        !up.proof.is_empty(),
        "a consistency proof from the old size"
    );
    let cs = c.apply(&up.entries, &up.checkpoint, &up.proof).unwrap();
    assert_eq!((cs.size, cs.root), (a.size(), a.root()));

    // Entries in old chunks prove offline, at the sequencer and at a member.
    let g = genesis().to_json();
    for index in [0, 7, CHUNK + 3, 20 * CHUNK + 255, ENTRIES - 1] {
        for store in [&a, &b] {
            let bundle = store.prove(index).unwrap().to_json();
            let v = verify_bundle(&bundle, &g).unwrap();
            assert_eq!((v.index, v.tree_size), (index, ENTRIES));
        }
    }
    // Roots at old sizes match a member's.
    for size in [1, 250, 3 * CHUNK + 1, 17 * CHUNK] {
        assert_eq!(a.root_at(size), b.root_at(size), "size {size}");
        assert!(a.root_at(size).is_some());
    }

    // Reopened, the stores rebuild the same frontier and still prove old entries.
    let (root, size) = (a.root(), a.size());
    drop((a, b, c));
    let a = open(dir.path(), "alice");
    assert_eq!((a.size(), a.root()), (size, root));
    assert!(a.tree_hashes_in_memory() < bound);
    verify_bundle(&a.prove(3).unwrap().to_json(), &g).unwrap();
    assert_eq!(a.verify_all().unwrap().entries, ENTRIES);
}
