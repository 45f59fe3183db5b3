//! PSI frames from a peer: decoding arbitrary or mutated bytes never panics, allocates
//! nothing (a decoded message borrows its payload from the input), and a decoded
//! message's payload lies inside the input.
//!
//! Cases: 256 by default; `CONFIDE_FUZZ_CASES=100000` in CI's dedicated decoder step.

use confide_psi::wire::{self, Items, Msg};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("CONFIDE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        wire::hello(1, 2, &[7; 32], 1 << 20),
        wire::points(wire::STREAM_RESULT, 1, &[5; 64]),
        wire::tags(2, 0, &[[9; confide_psi::crypto::TAG_LEN]; 3]),
        wire::indices(3, 1, &[0, 1, u64::MAX]),
        wire::end(2, 0, 3),
    ]
}

/// The payload of `msg` lies inside `input` (nothing was copied or allocated for it).
fn borrows_from(msg: &Msg<'_>, input: &[u8]) -> bool {
    let inside = |d: &[u8]| {
        let (lo, hi) = (
            input.as_ptr() as usize,
            input.as_ptr() as usize + input.len(),
        );
        let p = d.as_ptr() as usize;
        d.is_empty() || (p >= lo && p + d.len() <= hi)
    };
    match msg {
        Msg::Points { data, .. } | Msg::Tags { data, .. } | Msg::Indices { data, .. } => {
            inside(data)
        }
        Msg::Hello { .. } | Msg::End { .. } => true,
    }
}

fn check(bytes: &[u8]) {
    if let Ok(m) = wire::decode("peer", bytes) {
        assert!(borrows_from(&m, bytes));
    }
    for items in [Items::Points, Items::Tags, Items::Indices] {
        let _ = wire::decode_chunk("peer", bytes, items, 2, 0, "in the fuzz test");
    }
    let _ = wire::positions(bytes).count();
}

#[test]
fn samples_decode() {
    for s in samples() {
        wire::decode("peer", &s).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn decoding_random_frames_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check(&bytes);
    }

    #[test]
    fn decoding_mutated_frames_never_panics(
        i in 0usize..5,
        pos in 0usize..200,
        byte in any::<u8>(),
        cut in 0usize..200,
    ) {
        let mut m = samples()[i].clone();
        let p = pos % m.len();
        m[p] = byte;
        check(&m);
        m.truncate(m.len().saturating_sub(cut % 16));
        check(&m);
    }
}
