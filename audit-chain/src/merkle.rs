//! RFC 6962 Merkle tree: hashing, an in-memory tree with O(log n) subtree
//! lookups, inclusion and consistency proofs (RFC 6962 §2.1.1/§2.1.2) and their
//! verification (RFC 9162 §2.1.3.2/§2.1.4.2).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// SHA-256 of the empty string: the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two strictly smaller than `n` (n ≥ 2).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Complete, aligned RFC 6962 subtrees of a tree: `node(k, i)` is the hash of leaves
/// `[i·2^k, (i+1)·2^k)`, or `None` when that subtree is not available. Every root and proof
/// below is assembled from such nodes, so an in-memory tree ([`MerkleTree`]) and a tree that
/// keeps only its frontier in memory (the audit store's pruned tree) share one algorithm.
pub(crate) trait Nodes {
    /// Number of leaves.
    fn leaves(&self) -> u64;
    /// Hash of the complete subtree of 2^`level` leaves with index `index` at that level.
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

/// MTH of leaves [start, start+len); callers keep to RFC 6962 splits, so the left part of
/// every split is a complete, aligned subtree.
fn subtree(t: &(impl Nodes + ?Sized), start: u64, len: u64) -> Option<Hash> {
    if len.is_power_of_two() && start.is_multiple_of(len) {
        let k = len.trailing_zeros();
        return t.node(k, start >> k);
    }
    let k = split_point(len);
    Some(node_hash(
        &subtree(t, start, k)?,
        &subtree(t, start + k, len - k)?,
    ))
}

/// Root of the first `size` leaves (`None` beyond the tree or when a node is unavailable).
pub(crate) fn root_at(t: &(impl Nodes + ?Sized), size: u64) -> Option<Hash> {
    match size {
        0 => Some(empty_root()),
        s if s <= t.leaves() => subtree(t, 0, s),
        _ => None,
    }
}

/// RFC 6962 PATH(index, D\[size\]).
pub(crate) fn inclusion_proof(
    t: &(impl Nodes + ?Sized),
    index: u64,
    size: u64,
) -> Option<Vec<Hash>> {
    if index >= size || size > t.leaves() {
        return None;
    }
    let mut out = Vec::new();
    path(t, index, 0, size, &mut out)?;
    Some(out)
}

fn path(t: &(impl Nodes + ?Sized), m: u64, start: u64, n: u64, out: &mut Vec<Hash>) -> Option<()> {
    if n == 1 {
        return Some(());
    }
    let k = split_point(n);
    if m < k {
        path(t, m, start, k, out)?;
        out.push(subtree(t, start + k, n - k)?);
    } else {
        path(t, m - k, start + k, n - k, out)?;
        out.push(subtree(t, start, k)?);
    }
    Some(())
}

/// RFC 6962 PROOF(m, D\[n\]): consistency proof between sizes m ≤ n.
pub(crate) fn consistency_proof(t: &(impl Nodes + ?Sized), m: u64, n: u64) -> Option<Vec<Hash>> {
    if m > n || n > t.leaves() {
        return None;
    }
    let mut out = Vec::new();
    if m > 0 && m < n {
        subproof(t, m, 0, n, true, &mut out)?;
    }
    Some(out)
}

fn subproof(
    t: &(impl Nodes + ?Sized),
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Option<()> {
    if m == n {
        if !whole {
            out.push(subtree(t, start, n)?);
        }
        return Some(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(t, m, start, k, whole, out)?;
        out.push(subtree(t, start + k, n - k)?);
    } else {
        subproof(t, m - k, start + k, n - k, false, out)?;
        out.push(subtree(t, start, k)?);
    }
    Some(())
}

/// An append-only Merkle tree over leaf hashes. `levels[k]` holds the hashes
/// of all complete subtrees of 2^k leaves, so every RFC 6962 subtree hash is
/// found in O(log n) and the tree costs about two hashes per leaf in memory
/// (the audit store keeps only a frontier in memory).
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    levels: Vec<Vec<Hash>>,
}

impl Nodes for MerkleTree {
    fn leaves(&self) -> u64 {
        self.size()
    }
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        self.levels
            .get(level as usize)?
            .get(usize::try_from(index).ok()?)
            .copied()
    }
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let mut k = 0;
        while self.levels[k].len().is_multiple_of(2) {
            let n = self.levels[k].len();
            let h = node_hash(&self.levels[k][n - 2], &self.levels[k][n - 1]);
            if self.levels.len() == k + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[k + 1].push(h);
            k += 1;
        }
    }

    /// Drop every leaf at index ≥ `size` (used to roll back a rejected batch).
    pub fn truncate(&mut self, size: u64) {
        for (k, level) in self.levels.iter_mut().enumerate() {
            level.truncate((size >> k) as usize);
        }
        while self.levels.last().is_some_and(|l| l.is_empty()) && self.levels.len() > 1 {
            self.levels.pop();
        }
    }

    /// Leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.node(0, index)
    }

    /// Root of the first `size` leaves, if the tree has that many.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        root_at(self, size)
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        root_at(self, self.size()).unwrap_or_else(empty_root)
    }

    /// RFC 6962 PATH(index, D\[size\]): the audit path of leaf `index` in the
    /// tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        inclusion_proof(self, index, size)
    }

    /// RFC 6962 PROOF(m, D\[n\]): consistency proof between sizes m ≤ n.
    pub fn consistency_proof(&self, m: u64, n: u64) -> Option<Vec<Hash>> {
        consistency_proof(self, m, n)
    }
}

/// Root recomputed from an inclusion proof (RFC 9162 §2.1.3.2), or `None`
/// when the proof has the wrong shape for (index, size).
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Verify that `leaf` is at `index` in the tree of `size` leaves with `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    root_from_inclusion(index, size, leaf, path).is_some_and(|r| &r == root)
}

/// Verify a consistency proof between (size1, root1) and (size2, root2)
/// (RFC 9162 §2.1.4.2; size1 = 0 or size1 = size2 need an empty proof).
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> bool {
    if size1 > size2 {
        return false;
    }
    if size1 == size2 {
        return proof.is_empty() && root1 == root2;
    }
    if size1 == 0 {
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(*root1);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    &fr == root1 && &sr == root2 && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference MTH straight from the RFC 6962 definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn tree_matches_recursive_definition_and_truncates() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut t = MerkleTree::new();
        for (i, l) in leaves.iter().enumerate() {
            t.push(*l);
            assert_eq!(t.root(), mth(&leaves[..=i]));
        }
        for s in 0..=70u64 {
            assert_eq!(t.root_at(s), Some(mth(&leaves[..s as usize])));
        }
        assert_eq!(t.root_at(71), None);
        t.truncate(37);
        assert_eq!(t.size(), 37);
        assert_eq!(t.root(), mth(&leaves[..37]));
        t.push(leaves[37]);
        assert_eq!(t.root(), mth(&leaves[..38]));
        t.truncate(0);
        assert_eq!(t.root(), empty_root());
    }

    #[test]
    fn split_points() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)] {
            assert_eq!(split_point(n), k, "n={n}");
        }
    }
}
