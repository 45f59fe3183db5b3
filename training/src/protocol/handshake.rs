//! The opening exchange of a job: shapes, parameters and local errors, checked by every seat.

use serde::{Deserialize, Serialize};

use super::prep::Prep;
use super::{PartyNames, Role};
use crate::error::{Result, TrainError};
use confide_mpc::Transport;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Hello {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) features: Vec<String>,
    pub(crate) params: String,
    pub(crate) error: Option<String>,
    /// Boosted trees with column subsampling: this party's number of columns, told to its
    /// peer (not to the dealer) so both draw each tree's columns alike; 0 otherwise.
    #[serde(default)]
    pub(crate) columns: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Verdict {
    error: Option<String>,
}

impl Hello {
    /// A computing party's hello: its prepared shape and what it tells its peer in
    /// `features`.
    pub(super) fn party(p: &Prep, features: Vec<String>, params: &str) -> Self {
        Self {
            rows: p.x.nrows(),
            cols: p.x.ncols(),
            features,
            params: params.to_string(),
            error: None,
            columns: 0,
        }
    }

    /// The dealer's hello: no data.
    pub(crate) fn dealer(params: &str) -> Self {
        Self {
            rows: 0,
            cols: 0,
            features: vec![],
            params: params.to_string(),
            error: None,
            columns: 0,
        }
    }
}

/// The job parameters as every seat serializes them for comparison.
pub(crate) fn params_json<P: Serialize>(params: &P) -> Result<String> {
    serde_json::to_string(params)
        .map_err(|e| TrainError::Internal(format!("serializing the parameters: {e}")))
}

pub(super) fn to_json<S: Serialize>(v: &S) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs serialize")
}

pub(super) fn from_json<D: for<'de> Deserialize<'de>>(peer: &str, b: &[u8]) -> Result<D> {
    serde_json::from_slice(b).map_err(|e| TrainError::Peer {
        peer: peer.into(),
        reason: format!("bad message: {e}"),
    })
}

/// Most rows a peer may announce.
pub const MAX_ROWS: usize = 100_000_000;
/// Most columns (features) a peer may announce.
pub const MAX_COLS: usize = 10_000;
/// Most cells (rows × columns) of one party's matrix: what the dealer and the engine
/// allocate triples and masks for.
pub const MAX_CELLS: usize = 1 << 30;

/// A peer's announced shape, checked before anything is sized by it.
fn check_shape(peer: &str, h: &Hello) -> Result<()> {
    let bad = |what: String| TrainError::Peer {
        peer: peer.to_string(),
        reason: format!("announced {what}"),
    };
    if h.rows > MAX_ROWS {
        return Err(bad(format!("{} rows (the limit is {MAX_ROWS})", h.rows)));
    }
    if h.cols > MAX_COLS || h.features.len() > MAX_COLS || h.columns > MAX_COLS {
        return Err(bad(format!(
            "{} columns (the limit is {MAX_COLS})",
            h.cols.max(h.features.len()).max(h.columns)
        )));
    }
    match h.rows.checked_mul(h.cols.max(1)) {
        Some(c) if c <= MAX_CELLS => Ok(()),
        _ => Err(bad(format!(
            "{} rows of {} columns (the limit is {MAX_CELLS} cells)",
            h.rows, h.cols
        ))),
    }
}

/// A peer's hello from the bytes it sent, its shape checked before anything is sized by
/// it. Memory: what the JSON itself holds (no count in it is trusted for an allocation).
pub(crate) fn decode_hello(peer: &str, b: &[u8]) -> Result<Hello> {
    let h: Hello = from_json(peer, b)?;
    check_shape(peer, &h)?;
    Ok(h)
}

/// The opening exchange. Parties tell each other (and the dealer) their row and column
/// counts, feature names (not to the dealer), the parameters and any local error; the
/// dealer answers with a verdict. Returns the peer's hello at a party, both hellos at the
/// dealer. Every seat fails if any seat reported an error or the shapes disagree.
pub(crate) async fn handshake<T: Transport>(
    t: &T,
    role: Role,
    names: &PartyNames,
    params_json: &str,
    mine: std::result::Result<Hello, TrainError>,
) -> Result<[Hello; 2]> {
    let (me, peer) = match role {
        Role::Active => (&names.active, &names.passive),
        Role::Passive => (&names.passive, &names.active),
        Role::Dealer => {
            let (a, b) = tokio::join!(t.recv(&names.active), t.recv(&names.passive));
            let a = decode_hello(&names.active, &a?)?;
            let b = decode_hello(&names.passive, &b?)?;
            let err = if let Some(e) = a.error.as_ref().or(b.error.as_ref()) {
                Some(format!("a party failed: {e}"))
            } else if a.params != params_json || b.params != params_json {
                Some("the parties' job parameters differ from the dealer's".to_string())
            } else if a.rows != b.rows {
                Some(format!("row counts differ: {} vs {}", a.rows, b.rows))
            } else {
                None
            };
            let v = to_json(&Verdict { error: err.clone() });
            let (s1, s2) =
                tokio::join!(t.send(&names.active, v.clone()), t.send(&names.passive, v));
            s1?;
            s2?;
            return match err {
                Some(e) => Err(TrainError::Data(e)),
                None => Ok([a, b]),
            };
        }
    };
    let _ = me;
    let (hello, local_err) = match mine {
        Ok(h) => (h, None),
        Err(e) => (
            Hello {
                rows: 0,
                cols: 0,
                features: vec![],
                params: params_json.to_string(),
                // Only the public rendering leaves: no path, ID or cell value.
                error: Some(e.public()),
                columns: 0,
            },
            Some(e),
        ),
    };
    let to_dealer = Hello {
        features: vec![],
        columns: 0,
        ..hello.clone()
    };
    let (s1, s2, r) = tokio::join!(
        t.send(peer, to_json(&hello)),
        t.send(&names.dealer, to_json(&to_dealer)),
        t.recv(peer)
    );
    s1?;
    s2?;
    let theirs = decode_hello(peer, &r?)?;
    let verdict: Verdict = from_json(&names.dealer, &t.recv(&names.dealer).await?)?;
    if let Some(e) = local_err {
        return Err(e);
    }
    if let Some(e) = theirs.error {
        return Err(TrainError::Peer {
            peer: peer.clone(),
            reason: confide_mpc::clean(&e),
        });
    }
    if theirs.params != params_json {
        return Err(TrainError::Params(format!(
            "job parameters differ from `{peer}`'s"
        )));
    }
    if theirs.rows != hello.rows {
        return Err(TrainError::Data(format!(
            "row counts differ: {} here, {} at `{peer}` (inputs are not aligned)",
            hello.rows, theirs.rows
        )));
    }
    if let Some(e) = verdict.error {
        return Err(TrainError::Peer {
            peer: names.dealer.clone(),
            reason: confide_mpc::clean(&e),
        });
    }
    Ok(match role {
        Role::Active => [hello, theirs],
        _ => [theirs, hello],
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Cases per property of the crate's decoder tests: `CONFIDE_FUZZ_CASES` (CI's
    /// decoder step sets 100,000).
    pub(crate) fn cases() -> u32 {
        std::env::var("CONFIDE_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2_000)
    }

    fn valid() -> Vec<u8> {
        to_json(&Hello {
            rows: 1000,
            cols: 3,
            features: vec!["age".into(), "income".into()],
            params: "{\"epochs\":5}".into(),
            error: None,
            columns: 0,
        })
    }

    #[test]
    fn a_valid_hello_decodes_and_oversized_shapes_are_refused() {
        assert_eq!(decode_hello("bob", &valid()).unwrap().rows, 1000);
        let huge =
            br#"{"rows":18446744073709551615,"cols":1,"features":[],"params":"","error":null}"#;
        let e = decode_hello("bob", huge).unwrap_err().to_string();
        assert!(e.contains("bob") && e.contains("announced"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        #[test]
        fn training_hello_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_hello("bob", &bytes);
        }

        #[test]
        fn mutated_training_hellos_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = valid();
            for (i, v) in flips {
                let at = i.index(b.len());
                b[at] = v;
            }
            let keep = cut.index(b.len() + 1);
            b.truncate(keep);
            if let Ok(h) = decode_hello("bob", &b) {
                prop_assert!(h.rows <= MAX_ROWS && h.cols <= MAX_COLS);
            }
        }
    }
}
