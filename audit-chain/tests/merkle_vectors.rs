//! RFC 6962 known-answer vectors (transparency-dev/merkle proof/verify_test.go,
//! certificate-transparency-go) plus corruption probes and property tests.

use confide_audit::merkle::{
    Hash, MerkleTree, empty_root, leaf_hash, root_from_inclusion, verify_consistency,
    verify_inclusion,
};
use proptest::prelude::*;

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| hex::decode(s).unwrap())
    .collect()
}

/// Roots for sizes 1..=8.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index 0-based, tree size, path)
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// (size1, size2, proof)
fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

fn tree() -> MerkleTree {
    let mut t = MerkleTree::new();
    for l in leaves() {
        t.push(leaf_hash(&l));
    }
    t
}

fn root(size: u64) -> Hash {
    h(ROOTS[size as usize - 1])
}

#[test]
fn known_roots() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let t = tree();
    for size in 1..=8 {
        assert_eq!(t.root_at(size).unwrap(), root(size), "size {size}");
    }
}

#[test]
fn known_inclusion_paths_generate_and_verify() {
    let t = tree();
    let ls = leaves();
    for (index, size, path) in inclusion_vectors() {
        assert_eq!(
            t.inclusion_proof(index, size).unwrap(),
            path,
            "{index}/{size}"
        );
        let leaf = leaf_hash(&ls[index as usize]);
        assert_eq!(
            root_from_inclusion(index, size, &leaf, &path),
            Some(root(size))
        );
        assert!(verify_inclusion(index, size, &leaf, &path, &root(size)));
        for (desc, ok) in corrupt_inclusion(index, size, &leaf, &path, &root(size)) {
            assert!(!ok, "corrupted inclusion {index}/{size} verified: {desc}");
        }
    }
    // A one-leaf tree: empty path, root = leaf hash.
    let l = leaf_hash(b"data");
    assert!(verify_inclusion(0, 1, &l, &[], &l));
    for (i, s) in [(0, 0), (1, 0), (2, 1)] {
        assert!(!verify_inclusion(i, s, &l, &[], &l));
    }
}

/// The probes of transparency-dev's corruptInclusionProof.
fn corrupt_inclusion(
    i: u64,
    n: u64,
    leaf: &Hash,
    path: &[Hash],
    root: &Hash,
) -> Vec<(String, bool)> {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let v = |i: u64, n: u64, leaf: &Hash, p: &[Hash], r: &Hash| verify_inclusion(i, n, leaf, p, r);
    let mut out = vec![
        (
            "index - 1".into(),
            v(i.wrapping_sub(1), n, leaf, path, root),
        ),
        ("index + 1".into(), v(i + 1, n, leaf, path, root)),
        ("index ^ 2".into(), v(i ^ 2, n, leaf, path, root)),
        ("size * 2".into(), v(i, n * 2, leaf, path, root)),
        ("size / 2".into(), v(i, n / 2, leaf, path, root)),
        (
            "wrong leaf".into(),
            v(i, n, &leaf_hash(b"WrongLeaf"), path, root),
        ),
        ("empty root".into(), v(i, n, leaf, path, &empty_root())),
        ("random root".into(), v(i, n, leaf, path, &some)),
    ];
    let ext = |front: bool, x: Hash| {
        let mut p = path.to_vec();
        if front {
            p.insert(0, x)
        } else {
            p.push(x)
        }
        p
    };
    out.push((
        "trailing root".into(),
        v(i, n, leaf, &ext(false, *root), root),
    ));
    out.push((
        "trailing zero".into(),
        v(i, n, leaf, &ext(false, [0; 32]), root),
    ));
    out.push((
        "preceding root".into(),
        v(i, n, leaf, &ext(true, *root), root),
    ));
    out.push((
        "preceding zero".into(),
        v(i, n, leaf, &ext(true, [0; 32]), root),
    ));
    for k in 0..path.len() {
        let mut p = path.to_vec();
        p[k][0] ^= 8;
        out.push((format!("bit flip in path[{k}]"), v(i, n, leaf, &p, root)));
    }
    if !path.is_empty() {
        out.push((
            "truncated".into(),
            v(i, n, leaf, &path[..path.len() - 1], root),
        ));
    }
    if path.len() > 1 {
        let mut p = vec![path[0], some];
        p.extend_from_slice(&path[1..]);
        out.push(("inserted component".into(), v(i, n, leaf, &p, root)));
    }
    out
}

#[test]
fn known_consistency_proofs_generate_and_verify() {
    let t = tree();
    for (m, n, proof) in consistency_vectors() {
        assert_eq!(t.consistency_proof(m, n).unwrap(), proof, "{m}->{n}");
        assert!(
            verify_consistency(m, n, &root(m), &root(n), &proof),
            "{m}->{n}"
        );
        if proof.is_empty() {
            continue;
        }
        let (r1, r2) = (root(m), root(n));
        let v = |a: u64, b: u64, x: &Hash, y: &Hash, p: &[Hash]| verify_consistency(a, b, x, y, p);
        let mut probes = vec![
            ("m - 1", v(m - 1, n, &r1, &r2, &proof)),
            ("m + 1", v(m + 1, n, &r1, &r2, &proof)),
            ("m ^ 2", v(m ^ 2, n, &r1, &r2, &proof)),
            ("n * 2", v(m, n * 2, &r1, &r2, &proof)),
            ("n / 2", v(m, n / 2, &r1, &r2, &proof)),
            (
                "wrong root1",
                v(m, n, &leaf_hash(b"WrongRoot"), &r2, &proof),
            ),
            (
                "wrong root2",
                v(m, n, &r1, &leaf_hash(b"WrongRoot"), &proof),
            ),
            ("swapped roots", v(m, n, &r2, &r1, &proof)),
            ("empty proof", v(m, n, &r1, &r2, &[])),
            ("truncated", v(m, n, &r1, &r2, &proof[..proof.len() - 1])),
        ];
        for (desc, extra, front) in [
            ("trailing root1", r1, false),
            ("trailing root2", r2, false),
            ("trailing zero", [0; 32], false),
            ("preceding root1", r1, true),
            ("preceding root2", r2, true),
            ("preceding proof[0]", proof[0], true),
        ] {
            let mut p = proof.clone();
            if front {
                p.insert(0, extra)
            } else {
                p.push(extra)
            }
            probes.push((desc, v(m, n, &r1, &r2, &p)));
        }
        for k in 0..proof.len() {
            let mut p = proof.clone();
            p[k][0] ^= 16;
            probes.push(("bit flip", v(m, n, &r1, &r2, &p)));
        }
        for (desc, ok) in probes {
            assert!(!ok, "corrupted consistency {m}->{n} verified: {desc}");
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let e = empty_root();
    assert!(!verify_consistency(0, 0, &a, &b, &[]));
    assert!(!verify_consistency(1, 1, &a, &b, &[]));
    assert!(verify_consistency(0, 0, &a, &a, &[]));
    assert!(verify_consistency(0, 1, &a, &b, &[]));
    assert!(verify_consistency(1, 1, &b, &b, &[]));
    assert!(!verify_consistency(1, 0, &a, &b, &[]));
    assert!(!verify_consistency(2, 1, &a, &b, &[]));
    assert!(!verify_consistency(1, 2, &a, &b, &[]));
    assert!(!verify_consistency(0, 0, &e, &e, &[e]));
    assert!(!verify_consistency(0, 1, &e, &e, &[e]));
    assert!(!verify_consistency(1, 1, &e, &e, &[e]));
}

fn build(n: usize, seed: u64) -> (MerkleTree, Vec<Hash>) {
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), (i as u64).to_be_bytes()].concat()))
        .collect();
    let mut t = MerkleTree::new();
    for l in &leaves {
        t.push(*l);
    }
    (t, leaves)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_inclusion_proof_verifies(n in 1usize..300, seed: u64, pick: prop::sample::Index,
                                      flip in 0usize..(32 * 8)) {
        let (t, leaves) = build(n, seed);
        let size = n as u64;
        let root = t.root();
        let i = pick.index(n) as u64;
        let path = t.inclusion_proof(i, size).unwrap();
        prop_assert!(verify_inclusion(i, size, &leaves[i as usize], &path, &root));
        // Any single changed byte (one flipped bit) of leaf, root or path fails.
        let (byte, bit) = (flip / 8, 1u8 << (flip % 8));
        let mut l2 = leaves[i as usize]; l2[byte] ^= bit;
        prop_assert!(!verify_inclusion(i, size, &l2, &path, &root));
        let mut r2 = root; r2[byte] ^= bit;
        prop_assert!(!verify_inclusion(i, size, &leaves[i as usize], &path, &r2));
        for k in 0..path.len() {
            let mut p = path.clone(); p[k][byte] ^= bit;
            prop_assert!(!verify_inclusion(i, size, &leaves[i as usize], &p, &root));
        }
    }

    #[test]
    fn every_consistency_proof_verifies(n in 1usize..300, seed: u64, pick: prop::sample::Index,
                                        flip in 0usize..(32 * 8)) {
        let (t, _) = build(n, seed);
        let size2 = n as u64;
        let size1 = pick.index(n + 1) as u64;
        let (r1, r2) = (t.root_at(size1).unwrap(), t.root());
        let proof = t.consistency_proof(size1, size2).unwrap();
        prop_assert!(verify_consistency(size1, size2, &r1, &r2, &proof));
        let (byte, bit) = (flip / 8, 1u8 << (flip % 8));
        for k in 0..proof.len() {
            let mut p = proof.clone(); p[k][byte] ^= bit;
            prop_assert!(!verify_consistency(size1, size2, &r1, &r2, &p));
        }
        if size1 > 0 {
            // (Every tree is consistent with the empty one, so only for size1 > 0.)
            let mut r2b = r2; r2b[byte] ^= bit;
            prop_assert!(!verify_consistency(size1, size2, &r1, &r2b, &proof));
            let mut r1b = r1; r1b[byte] ^= bit;
            prop_assert!(!verify_consistency(size1, size2, &r1b, &r2, &proof));
        }
    }
}
