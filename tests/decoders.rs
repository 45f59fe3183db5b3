//! What a daemon decodes from a peer besides protocol frames: job proposals' options and
//! risk evidence. Arbitrary or mutated input is an error, never a panic.
//!
//! Cases: 256 by default; `CONFIDE_FUZZ_CASES=100000` in CI's dedicated decoder step.

use confide::audit::evidence::risk_evidence_kind;
use confide::base::kind::JobKind;
use confide::kinds::JobOptions;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("CONFIDE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Valid options of every kind, as a proposal carries them (re-encoded by the daemon).
fn samples() -> Vec<(JobKind, String)> {
    let written = [
        (
            JobKind::Train,
            r#"{"label":"default","epochs":5,"seed":7,"dealer":"d"}"#,
        ),
        (
            JobKind::Predict,
            r#"{"model":"0123456789abcdef01234567","active":"a","passive":"b","dealer":"d","frac_bits":18}"#,
        ),
        (JobKind::RiskQuery, r#"{"ids":["+447900000001","x"]}"#),
    ];
    let defaults = JobKind::ALL.iter().map(|k| (*k, ""));
    defaults
        .chain(written)
        .filter_map(|(k, json)| {
            JobOptions::parse(k.as_str(), json)
                .ok()
                .map(|o| (k, o.to_json()))
        })
        .collect()
}

#[test]
fn every_kind_has_default_options_that_parse_back() {
    let s = samples();
    let kinds: std::collections::BTreeSet<_> = s.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds.len(), JobKind::ALL.len(), "{s:?}");
    for (k, json) in s {
        JobOptions::parse(k.as_str(), &json).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn proposal_options_never_panic(kind in 0usize..6, json in "\\PC{0,200}") {
        let _ = JobOptions::parse(JobKind::ALL[kind].as_str(), &json);
        let _ = JobOptions::parse(&json, "{}");
    }

    #[test]
    fn mutated_proposal_options_never_panic(
        i in 0usize..16,
        pos in 0usize..400,
        c in any::<char>(),
        cut in 0usize..400,
    ) {
        let all = samples();
        let (k, json) = &all[i % all.len()];
        let mut chars: Vec<char> = json.chars().collect();
        if !chars.is_empty() {
            let p = pos % chars.len();
            chars[p] = c;
        }
        let m: String = chars.iter().collect();
        let _ = JobOptions::parse(k.as_str(), &m);
        let cut: String = chars.iter().take(cut).collect();
        let _ = JobOptions::parse(k.as_str(), &cut);
    }

    #[test]
    fn risk_evidence_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = risk_evidence_kind(&bytes);
    }
}
