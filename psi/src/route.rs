//! Who masks which set when, who finishes each set, and who combines (pure functions of
//! the number of parties and the initiator's position; see the crate docs).
//!
//! Every set visits every party once, starting at its owner, one hop per round. Sets
//! travel the ring forwards (party `i` to `i+1`), except, with three or more parties, the
//! set of the initiator's successor, which travels backwards. The party a set visits last
//! applies the last key and *finishes* it. With the initiator at position 0:
//!
//! * set `o ≠ 1` is finished by `o-1`; set 1 (backwards: 1, 0, n-1, …, 2) by party 2;
//! * so the initiator finishes no set, party 2 (the *combiner*) finishes sets 1 and 3
//!   (for n = 3, sets 1 and 0), and every other party finishes exactly one set, never its
//!   own.

use std::collections::BTreeSet;

use crate::OutputMode;
use crate::error::PsiError;

/// Checks a job's party list, initiator and mode; returns the initiator's index.
pub(crate) fn check_parties(
    parties: &[String],
    initiator: &str,
    mode: OutputMode,
) -> Result<usize, PsiError> {
    let bad = |why: String| Err(PsiError::InvalidJob(why));
    let n = parties.len();
    if n < 2 {
        return bad("a PSI needs at least two parties".into());
    }
    if n > 255 {
        return bad("at most 255 parties".into());
    }
    let distinct: BTreeSet<&String> = parties.iter().collect();
    if distinct.len() != n {
        return bad("a party is listed twice".into());
    }
    let Some(i) = parties.iter().position(|p| p == initiator) else {
        return bad(format!("initiator `{initiator}` is not in the party list"));
    };
    if n > 2 && mode == OutputMode::All {
        return bad(
            "with three or more parties only the initiator may receive the intersection".into(),
        );
    }
    Ok(i)
}

/// The schedule of one job: `n` parties, the initiator at index `initiator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    n: usize,
    initiator: usize,
}

impl Route {
    /// The schedule for `n ≥ 2` parties (the caller has checked `initiator < n`).
    pub(crate) fn new(n: usize, initiator: usize) -> Self {
        Self { n, initiator }
    }

    /// The set that travels backwards (three or more parties).
    fn backward(&self) -> Option<usize> {
        (self.n >= 3).then_some((self.initiator + 1) % self.n)
    }

    /// The party that set `o` visits at hop `step` (0: its owner; `n-1`: its finisher).
    pub(crate) fn at(&self, o: usize, step: usize) -> usize {
        let step = step % self.n;
        if self.backward() == Some(o) {
            (o + self.n - step) % self.n
        } else {
            (o + step) % self.n
        }
    }

    /// The party that applies the last key to set `o`.
    pub(crate) fn finisher(&self, o: usize) -> usize {
        self.at(o, self.n - 1)
    }

    /// With three or more parties: the party that intersects the fully masked sets.
    pub(crate) fn combiner(&self) -> usize {
        (self.initiator + 2) % self.n
    }

    /// `(origin, to)` of every set `me` sends in round `r` (1 ≤ r < n).
    pub(crate) fn sends(&self, me: usize, r: usize) -> Vec<(usize, usize)> {
        (0..self.n)
            .filter(|&o| self.at(o, r - 1) == me)
            .map(|o| (o, self.at(o, r)))
            .collect()
    }

    /// `(origin, from)` of every set `me` receives in round `r` (1 ≤ r < n).
    pub(crate) fn receives(&self, me: usize, r: usize) -> Vec<(usize, usize)> {
        (0..self.n)
            .filter(|&o| self.at(o, r) == me)
            .map(|o| (o, self.at(o, r - 1)))
            .collect()
    }

    /// The sets `me` finishes.
    #[cfg(test)]
    pub(crate) fn finished_by(&self, me: usize) -> Vec<usize> {
        (0..self.n).filter(|&o| self.finisher(o) == me).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys already applied to set `o` when it reaches hop `step`.
    fn keys_before(route: &Route, o: usize, step: usize) -> BTreeSet<usize> {
        (0..step).map(|s| route.at(o, s)).collect()
    }

    #[test]
    fn every_schedule_keeps_the_promised_invariants() {
        for n in 2..=12 {
            for i0 in 0..n {
                let route = Route::new(n, i0);
                for o in 0..n {
                    let visits: BTreeSet<usize> = (0..n).map(|s| route.at(o, s)).collect();
                    assert_eq!(visits.len(), n, "set {o} visits every party once");
                    assert_eq!(route.at(o, 0), o);
                }
                for r in 1..n {
                    let mut links = BTreeSet::new();
                    for me in 0..n {
                        let sends = route.sends(me, r);
                        let recvs = route.receives(me, r);
                        assert!(sends.len() <= 2 && recvs.len() <= 2, "n={n} r={r}");
                        for &(o, to) in &sends {
                            assert!(links.insert((me, to)), "one stream per link and round");
                            assert!(route.receives(to, r).contains(&(o, me)));
                        }
                    }
                }
                if n == 2 {
                    assert_eq!(route.finisher(i0), 1 - i0);
                    continue;
                }
                let c = route.combiner();
                assert_ne!(c, i0);
                assert!(
                    route.finished_by(i0).is_empty(),
                    "the initiator finishes nothing"
                );
                for p in (0..n).filter(|&p| p != i0 && p != c) {
                    assert_eq!(route.finished_by(p).len(), 1, "n={n} i0={i0} p={p}");
                }
                assert_eq!(route.finished_by(c).len(), 2);
                for o in 0..n {
                    assert_ne!(route.finisher(o), o);
                }
                // Apart from the sets it finishes, no party receives two point streams it
                // could compare: the keys already applied differ (it never receives a set
                // carrying its own key, so multiplying by its key cannot align them).
                for p in 0..n {
                    let mut seen: Vec<BTreeSet<usize>> = Vec::new();
                    for r in 1..n {
                        for (o, _) in route.receives(p, r) {
                            let keys = keys_before(&route, o, r);
                            assert!(!keys.contains(&p));
                            if r < n - 1 {
                                assert!(!seen.contains(&keys), "n={n} i0={i0} p={p}");
                                seen.push(keys);
                            }
                        }
                    }
                }
            }
        }
    }
}
