//! The audit store's Merkle tree: only the frontier in memory.
//!
//! A [`crate::merkle::MerkleTree`] keeps every node, about 64 bytes per entry, so a member's
//! memory grew with its log for as long as the daemon ran. [`PrunedTree`] cuts the leaves
//! into chunks of [`CHUNK`] (256) and keeps in memory:
//!
//! * the hash of every complete chunk and of every complete subtree above the chunks
//!   (about 0.25 bytes per entry);
//! * every node of the latest [`KEEP_CHUNKS`] chunks, the last of which is the growing one
//!   (so appends, the root, and proofs about recent entries never read the disk).
//!
//! A node inside an older chunk is recomputed from that chunk's leaf hashes, which the
//! caller supplies ([`LeafSource`]; the store reads its entries). A whole-tree root never
//! needs the source, since every node of it is a complete subtree above the chunks or a node
//! of the growing chunk. Roots and proofs are the same RFC 6962 algorithms as the in-memory
//! tree's ([`crate::merkle::Nodes`]); tests compare the two on every size.

use std::cell::RefCell;
use std::collections::VecDeque;

use crate::merkle::{self, Hash, MerkleTree, Nodes, empty_root};

/// log2 of the chunk size.
const CHUNK_LOG: u32 = 8;
/// Leaves per chunk.
pub const CHUNK: u64 = 1 << CHUNK_LOG;
/// Chunks whose every node stays in memory (the latest ones, the growing one included).
pub const KEEP_CHUNKS: usize = 16;

/// Where a [`PrunedTree`] reads the leaf hashes of an older chunk.
pub trait LeafSource {
    /// The leaf hashes with index in `[start, start + len)`, or `None` if they cannot be read.
    fn leaf_hashes(&self, start: u64, len: u64) -> Option<Vec<Hash>>;
}

/// A source with no leaves: for operations that only need the frontier.
#[derive(Debug, Clone, Copy)]
pub struct NoLeaves;

impl LeafSource for NoLeaves {
    fn leaf_hashes(&self, _start: u64, _len: u64) -> Option<Vec<Hash>> {
        None
    }
}

/// An append-only RFC 6962 tree with its frontier in memory (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct PrunedTree {
    size: u64,
    /// A tree over the roots of the complete chunks: its level j holds the complete
    /// subtrees of 2^(CHUNK_LOG + j) leaves.
    upper: MerkleTree,
    /// The latest chunks with all their nodes: (chunk index, tree), consecutive, oldest first.
    recent: VecDeque<(u64, MerkleTree)>,
}

impl PrunedTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hashes held in memory (for tests and the memory budget).
    pub fn hashes_in_memory(&self) -> usize {
        let upper = 2 * self.upper.size().saturating_sub(1) + 1;
        let recent: u64 = self
            .recent
            .iter()
            .map(|(_, t)| 2 * t.size().saturating_sub(1) + 1)
            .sum();
        (upper + recent) as usize
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let chunk = self.size >> CHUNK_LOG;
        if self.recent.back().is_none_or(|(c, _)| *c != chunk) {
            self.recent.push_back((chunk, MerkleTree::new()));
            while self.recent.len() > KEEP_CHUNKS {
                self.recent.pop_front();
            }
        }
        let Some((_, tree)) = self.recent.back_mut() else {
            return;
        };
        tree.push(leaf);
        self.size += 1;
        if tree.size() == CHUNK {
            let root = tree.root();
            self.upper.push(root);
        }
    }

    /// Drop every leaf at index ≥ `size`. The leaves below `size` of the chunk that then
    /// grows are read from `src` when that chunk is no longer in memory; on a read failure
    /// nothing changes and `false` is returned.
    pub fn truncate(&mut self, size: u64, src: &dyn LeafSource) -> bool {
        if size >= self.size {
            return true;
        }
        let chunk = size >> CHUNK_LOG;
        let keep = size & (CHUNK - 1);
        let in_memory = self.recent.iter().any(|(c, _)| *c == chunk);
        let loaded = if keep > 0 && !in_memory {
            match src.leaf_hashes(chunk << CHUNK_LOG, keep) {
                Some(l) if l.len() as u64 == keep => Some(l),
                _ => return false,
            }
        } else {
            None
        };
        self.upper.truncate(size >> CHUNK_LOG);
        self.recent.retain(|(c, _)| (*c << CHUNK_LOG) < size);
        if let Some((c, tree)) = self.recent.back_mut()
            && *c == chunk
        {
            tree.truncate(keep);
        }
        if let Some(leaves) = loaded {
            self.recent.clear();
            let mut tree = MerkleTree::new();
            for h in leaves {
                tree.push(h);
            }
            self.recent.push_back((chunk, tree));
        }
        self.size = size;
        true
    }

    /// Root of the whole tree (never reads older chunks).
    pub fn root(&self) -> Hash {
        // Every node of the whole-tree root is a complete subtree above the chunks or a node
        // of the growing chunk, both in memory; `None` would be a bug in this type, and a
        // root that matches nothing is refused by every member, so it is not hidden.
        self.root_at(self.size, &NoLeaves).unwrap_or([0u8; 32])
    }

    /// Root of the first `size` leaves.
    pub fn root_at(&self, size: u64, src: &dyn LeafSource) -> Option<Hash> {
        if size == 0 {
            return Some(empty_root());
        }
        merkle::root_at(&self.with(src), size)
    }

    /// RFC 6962 PATH(index, D\[size\]).
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
        src: &dyn LeafSource,
    ) -> Option<Vec<Hash>> {
        merkle::inclusion_proof(&self.with(src), index, size)
    }

    /// RFC 6962 PROOF(m, D\[n\]).
    pub fn consistency_proof(&self, m: u64, n: u64, src: &dyn LeafSource) -> Option<Vec<Hash>> {
        merkle::consistency_proof(&self.with(src), m, n)
    }

    fn with<'a>(&'a self, src: &'a dyn LeafSource) -> WithSource<'a> {
        WithSource {
            tree: self,
            src,
            loaded: RefCell::new(None),
        }
    }
}

/// A tree and its leaf source for one root or proof, with the last chunk read from the
/// source kept, since a proof asks for several nodes of the same chunk.
struct WithSource<'a> {
    tree: &'a PrunedTree,
    src: &'a dyn LeafSource,
    loaded: RefCell<Option<(u64, MerkleTree)>>,
}

impl Nodes for WithSource<'_> {
    fn leaves(&self) -> u64 {
        self.tree.size
    }

    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        if level >= CHUNK_LOG {
            return self.tree.upper.node(level - CHUNK_LOG, index);
        }
        let per_chunk = 1u64 << (CHUNK_LOG - level);
        let (chunk, within) = (index / per_chunk, index % per_chunk);
        if let Some((_, t)) = self.tree.recent.iter().find(|(c, _)| *c == chunk) {
            return t.node(level, within);
        }
        let mut loaded = self.loaded.borrow_mut();
        if loaded.as_ref().is_none_or(|(c, _)| *c != chunk) {
            let start = chunk << CHUNK_LOG;
            if start.checked_add(CHUNK)? > self.tree.size {
                return None; // only complete chunks are ever out of memory
            }
            let leaves = self.src.leaf_hashes(start, CHUNK)?;
            if leaves.len() as u64 != CHUNK {
                return None;
            }
            let mut t = MerkleTree::new();
            for h in leaves {
                t.push(h);
            }
            *loaded = Some((chunk, t));
        }
        loaded.as_ref()?.1.node(level, within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::leaf_hash;
    use std::cell::Cell;

    /// Leaves from a vector, counting reads.
    struct Vecs<'a>(&'a [Hash], Cell<usize>);

    impl LeafSource for Vecs<'_> {
        fn leaf_hashes(&self, start: u64, len: u64) -> Option<Vec<Hash>> {
            self.1.set(self.1.get() + 1);
            let (s, e) = (start as usize, (start + len) as usize);
            self.0.get(s..e).map(<[Hash]>::to_vec)
        }
    }

    fn leaves(n: u32) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn matches_the_full_tree_at_every_size_and_proof() {
        let n = (KEEP_CHUNKS as u32 + 5) * CHUNK as u32 + 77;
        let ls = leaves(n);
        let src = Vecs(&ls, Cell::new(0));
        let (mut full, mut pruned) = (MerkleTree::new(), PrunedTree::new());
        for h in &ls {
            full.push(*h);
            pruned.push(*h);
            assert_eq!(pruned.root(), full.root());
        }
        for s in (0..=u64::from(n)).step_by(37).chain([u64::from(n)]) {
            assert_eq!(pruned.root_at(s, &src), full.root_at(s), "root at {s}");
            if s > 0 {
                for i in [0, s / 3, s - 1] {
                    assert_eq!(
                        pruned.inclusion_proof(i, s, &src),
                        full.inclusion_proof(i, s),
                        "path {i} of {s}"
                    );
                }
            }
            assert_eq!(
                pruned.consistency_proof(s, u64::from(n), &src),
                full.consistency_proof(s, u64::from(n)),
                "consistency {s}"
            );
        }
        assert!(src.1.get() > 0, "older chunks were read from the source");
        assert_eq!(pruned.root_at(u64::from(n) + 1, &src), None);
    }

    #[test]
    fn memory_stays_bounded_and_recent_proofs_do_not_read() {
        let ls = leaves(40 * CHUNK as u32);
        let src = Vecs(&ls, Cell::new(0));
        let mut t = PrunedTree::new();
        for h in &ls {
            t.push(*h);
        }
        // 16 chunks of 511 nodes, plus 40 chunk hashes and the levels above them.
        assert!(
            t.hashes_in_memory() < KEEP_CHUNKS * 512 + 80,
            "{}",
            t.hashes_in_memory()
        );
        let size = t.size();
        t.inclusion_proof(size - 5, size, &src).unwrap();
        t.consistency_proof(size - 300, size, &src).unwrap();
        assert_eq!(src.1.get(), 0, "recent proofs stay in memory");
        assert_eq!(
            t.root_at(100, &NoLeaves),
            None,
            "an old node needs the source"
        );
    }

    #[test]
    fn truncates_into_memory_and_into_older_chunks() {
        let n = 30 * CHUNK as u32 + 9;
        let ls = leaves(n);
        let src = Vecs(&ls, Cell::new(0));
        for cut in [
            u64::from(n) - 3,
            29 * CHUNK,
            20 * CHUNK + 1,
            3 * CHUNK + 100,
            5,
            0,
        ] {
            let mut t = PrunedTree::new();
            for h in &ls {
                t.push(*h);
            }
            assert!(t.truncate(cut, &src));
            let mut full = MerkleTree::new();
            for h in &ls[..cut as usize] {
                full.push(*h);
            }
            assert_eq!((t.size(), t.root()), (cut, full.root()), "cut {cut}");
            for h in &ls[cut as usize..] {
                t.push(*h);
                full.push(*h);
            }
            assert_eq!(t.root(), full.root(), "regrown after cut {cut}");
            assert_eq!(t.root_at(cut, &src), full.root_at(cut), "cut {cut}");
        }
        let mut t = PrunedTree::new();
        for h in &ls {
            t.push(*h);
        }
        let before = t.root();
        assert!(
            !t.truncate(3 * CHUNK + 1, &NoLeaves),
            "an unreadable chunk refuses"
        );
        assert_eq!(
            (t.size(), t.root()),
            (u64::from(n), before),
            "and changes nothing"
        );
    }
}
