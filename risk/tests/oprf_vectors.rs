//! RFC 9497 Appendix A.1.1 (ristretto255-SHA512, OPRF mode) test vectors and the two-share
//! evaluation.

use confide_risk::oprf::{self, BlindedBatch, OprfKey};
use curve25519_dalek::scalar::Scalar;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const SEED: &str = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";
const KEY_INFO: &str = "74657374206b6579";
const SK_SM: &str = "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e";
const BLIND: &str = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";

struct Vector {
    input: &'static str,
    blinded: &'static str,
    evaluation: &'static str,
    output: &'static str,
}

const VECTORS: [Vector; 2] = [
    Vector {
        input: "00",
        blinded: "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        evaluation: "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        output: "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    },
    Vector {
        input: "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        blinded: "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        evaluation: "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        output: "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    },
];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn arr32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

#[test]
fn derive_key_pair_matches_rfc() {
    let key = oprf::derive_key_pair(&h(SEED), &h(KEY_INFO)).unwrap();
    assert_eq!(hex::encode(*key.to_bytes()), SK_SM);
    assert_eq!(format!("{key:?}"), "OprfKey(<redacted>)");
}

#[test]
fn blind_evaluate_finalize_match_rfc() {
    let key = OprfKey::from_bytes(&arr32(SK_SM)).unwrap();
    let blind = Scalar::from_canonical_bytes(arr32(BLIND)).unwrap();
    for v in &VECTORS {
        let input = h(v.input);
        let blinded = oprf::blind_with(&input, &blind).unwrap();
        assert_eq!(hex::encode(blinded), v.blinded);
        let evaluated = key.blind_evaluate(&[blinded]).unwrap();
        assert_eq!(hex::encode(evaluated[0]), v.evaluation);
        let out = oprf::finalize(&input, &blind, &evaluated[0]).unwrap();
        assert_eq!(hex::encode(out), v.output);
        assert_eq!(hex::encode(oprf::evaluate(&key, &input).unwrap()), v.output);
    }
}

#[test]
fn two_share_evaluation_equals_single_key_oprf() {
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let key = oprf::derive_key_pair(&h(SEED), &h(KEY_INFO)).unwrap();
    let (k0, k1) = key.split(&mut rng);
    assert!(OprfKey::combine(&k0, &k1).unwrap() == key);
    let inputs: Vec<Vec<u8>> = VECTORS
        .iter()
        .map(|v| h(v.input))
        .chain([b"CUST-1".to_vec()])
        .collect();
    let batch = BlindedBatch::new(&inputs, 3, &mut rng).unwrap();
    assert_eq!(batch.elements().len(), inputs.len() + 3);
    let e0 = k0.blind_evaluate(batch.elements()).unwrap();
    let e1 = k1.blind_evaluate(batch.elements()).unwrap();
    let tags = batch.finalize(&inputs, &e0, &e1).unwrap();
    assert_eq!(hex::encode(tags[0]), VECTORS[0].output);
    assert_eq!(hex::encode(tags[1]), VECTORS[1].output);
    assert_eq!(tags[2], oprf::evaluate(&key, b"CUST-1").unwrap());
    // One share alone gives something else.
    let wrong = batch.finalize(&inputs, &e0, &e0).unwrap();
    assert_ne!(wrong[2], tags[2]);
}

#[test]
fn invalid_elements_are_refused() {
    let key = OprfKey::from_bytes(&arr32(SK_SM)).unwrap();
    // Identity and a non-canonical encoding.
    let err = key.blind_evaluate(&[[0u8; 32]]).unwrap_err();
    assert!(err.to_string().contains("position 0"), "{err}");
    assert!(key.blind_evaluate(&[[0xff; 32]]).is_err());
    assert!(OprfKey::from_bytes(&[0u8; 32]).is_err());
    assert!(OprfKey::from_bytes(&[0xff; 32]).is_err());
}
