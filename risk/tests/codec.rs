//! Wire encodings: round trips, and decoding arbitrary bytes never panics.

use confide_risk::codec::{Purpose, Request, Response, ShareRow};
use proptest::prelude::*;

fn samples() -> Vec<Request> {
    vec![
        Request::Eval {
            purpose: Purpose::Query,
            evidence: b"entry+promise".to_vec(),
            elements: vec![[1; 32], [2; 32]],
        },
        Request::Eval {
            purpose: Purpose::Ingest,
            evidence: vec![],
            elements: vec![],
        },
        Request::IngestBegin {
            upload: 7,
            rows: 1024,
        },
        Request::IngestRows {
            upload: 7,
            rows: vec![ShareRow {
                tag: [3; 64],
                share: [1, 2, 3, u64::MAX],
            }],
        },
        Request::IngestCommit { upload: 7 },
        Request::Query {
            nonce: [9; 16],
            evidence: b"entry+promise".to_vec(),
            blinded_points_hash: [6; 32],
            tags: vec![[4; 64], [5; 64]],
        },
    ]
}

#[test]
fn requests_and_responses_round_trip() {
    for r in samples() {
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
    }
    for r in [
        Response::Eval(vec![[7; 32]]),
        Response::IngestAck(42),
        Response::Query(vec![[1, 2, 3, 4, 5]]),
        Response::Error("refused".into()),
    ] {
        assert_eq!(Response::decode(&r.encode()).unwrap(), r);
    }
}

#[test]
fn malformed_messages_are_clear_errors() {
    let ok = Request::Query {
        nonce: [0; 16],
        evidence: vec![],
        blinded_points_hash: [0; 32],
        tags: vec![[1; 64]],
    }
    .encode();
    let e = Request::decode(&ok[..ok.len() - 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("announced") || e.contains("truncated"), "{e}");
    let mut long = ok.clone();
    long.push(0);
    assert!(
        Request::decode(&long)
            .unwrap_err()
            .to_string()
            .contains("trailing")
    );
    let mut v2 = ok.clone();
    v2[0] = 1;
    assert!(
        Request::decode(&v2)
            .unwrap_err()
            .to_string()
            .contains("version")
    );
    assert!(Request::decode(&[2]).is_err());
    assert!(
        Request::decode(&[2, 0x7f])
            .unwrap_err()
            .to_string()
            .contains("unknown request")
    );
    // A count far larger than the message cannot make the decoder allocate.
    let mut huge = vec![2, 0x05];
    huge.extend_from_slice(&[0; 48]);
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(Request::decode(&huge).is_err());
}

/// 256 cases by default; `CONFIDE_FUZZ_CASES=100000` in CI's dedicated decoder step.
fn cases() -> u32 {
    std::env::var("CONFIDE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Arbitrary bytes never panic, and what decodes holds no more than the input: its
    /// encoding is no longer than the bytes it came from (no amplification).
    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(r) = Request::decode(&bytes) {
            prop_assert!(r.encode().len() <= bytes.len());
        }
        if let Ok(r) = Response::decode(&bytes) {
            prop_assert!(r.encode().len() <= bytes.len());
        }
    }

    #[test]
    fn decoding_mutated_messages_never_panics(i in 0usize..6, pos in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
        let mut m = samples()[i].encode();
        let p = pos % m.len();
        m[p] = byte;
        m.truncate(m.len().saturating_sub(cut % 4));
        if let Ok(r) = Request::decode(&m) {
            prop_assert!(r.encode().len() <= m.len());
        }
    }
}
