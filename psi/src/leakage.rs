//! Who learns what from whose data: the statement "What each party learns" of the crate
//! docs as pure functions, so that a caller can check every data owner's consent before a
//! job starts.

use std::collections::BTreeMap;

use crate::OutputMode;
use crate::error::PsiError;
use crate::route::{Route, check_parties};

/// What one party learns about another party's set in a PSI job (semi-honest parties
/// that do not collude; see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learns {
    /// Only the set's size (its number of distinct IDs).
    SetSize,
    /// The set's size and the size of the final intersection.
    IntersectionSize,
    /// The set's size and, for every group of the job's sets that includes it, the size
    /// of the group's intersection; no ID (the combiner of a job of three or more).
    IntersectionSizes,
    /// The set's size and which of the learner's own IDs are in the final intersection,
    /// which contains some of this set's IDs: the intersection itself.
    Intersection,
}

/// For every data owner, what every other party learns from its data, in a job with
/// these parties (in ring order), initiator and mode. Errors for a job
/// [`run`](crate::run) would refuse (duplicate or fewer than two parties, unknown
/// initiator, `All` with more than two parties).
pub fn disclosures(
    parties: &[String],
    initiator: &str,
    mode: OutputMode,
) -> Result<BTreeMap<String, BTreeMap<String, Learns>>, PsiError> {
    let i0 = check_parties(parties, initiator, mode)?;
    let n = parties.len();
    let combiner = (n > 2).then(|| Route::new(n, i0).combiner());
    let learns = |learner: usize| {
        let receives = learner == i0 || (n == 2 && mode == OutputMode::All);
        if receives {
            if mode == OutputMode::SizeOnly {
                Learns::IntersectionSize
            } else {
                Learns::Intersection
            }
        } else if Some(learner) == combiner {
            Learns::IntersectionSizes
        } else {
            Learns::SetSize
        }
    };
    Ok((0..n)
        .map(|owner| {
            let by: BTreeMap<String, Learns> = (0..n)
                .filter(|&l| l != owner)
                .map(|l| (parties[l].clone(), learns(l)))
                .collect();
            (parties[owner].clone(), by)
        })
        .collect())
}

/// For every data owner, the parties that learn anything derived from its data (at
/// least its set size: with this protocol, every other party). A caller that needs each
/// owner's consent for each learner checks every pair of this map; [`disclosures`] says
/// what each learns.
pub fn learners(
    parties: &[String],
    initiator: &str,
    mode: OutputMode,
) -> Result<BTreeMap<String, Vec<String>>, PsiError> {
    Ok(disclosures(parties, initiator, mode)?
        .into_iter()
        .map(|(owner, by)| (owner, by.into_keys().collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        ["a", "b", "c", "d", "e"][..n]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn two_parties() {
        let p = names(2);
        let d = disclosures(&p, "a", OutputMode::Initiator).unwrap();
        assert_eq!(d["b"]["a"], Learns::Intersection);
        assert_eq!(d["a"]["b"], Learns::SetSize);
        let d = disclosures(&p, "b", OutputMode::All).unwrap();
        assert_eq!(d["b"]["a"], Learns::Intersection);
        assert_eq!(d["a"]["b"], Learns::Intersection);
        let d = disclosures(&p, "a", OutputMode::SizeOnly).unwrap();
        assert_eq!(d["b"]["a"], Learns::IntersectionSize);
        assert_eq!(d["a"]["b"], Learns::SetSize);
        let l = learners(&p, "a", OutputMode::SizeOnly).unwrap();
        assert_eq!(l["a"], vec!["b".to_string()]);
        assert_eq!(l["b"], vec!["a".to_string()]);
    }

    #[test]
    fn more_parties() {
        let p = names(4);
        // Initiator b (index 1): the combiner is d (index 3).
        let d = disclosures(&p, "b", OutputMode::Initiator).unwrap();
        for owner in ["a", "c", "d"] {
            assert_eq!(d[owner]["b"], Learns::Intersection);
        }
        for owner in ["a", "b", "c"] {
            assert_eq!(d[owner]["d"], Learns::IntersectionSizes);
        }
        assert_eq!(d["b"]["a"], Learns::SetSize);
        assert_eq!(d["d"]["c"], Learns::SetSize);
        assert_eq!(d["d"]["a"], Learns::SetSize);
        let d = disclosures(&p[..3], "a", OutputMode::SizeOnly).unwrap();
        assert_eq!(d["b"]["a"], Learns::IntersectionSize);
        assert_eq!(d["a"]["c"], Learns::IntersectionSizes);
        assert_eq!(d["c"]["b"], Learns::SetSize);
        let l = learners(&p, "b", OutputMode::Initiator).unwrap();
        assert_eq!(l.len(), 4);
        for (owner, who) in &l {
            let others: Vec<String> = p.iter().filter(|x| *x != owner).cloned().collect();
            assert_eq!(who, &others, "every other party learns at least the size");
        }
    }

    #[test]
    fn refuses_what_run_refuses() {
        assert!(learners(&names(3), "a", OutputMode::All).is_err());
        assert!(learners(&names(3), "z", OutputMode::Initiator).is_err());
        assert!(learners(&names(1), "a", OutputMode::Initiator).is_err());
        let dup = vec!["a".to_string(), "a".to_string()];
        assert!(learners(&dup, "a", OutputMode::Initiator).is_err());
    }
}
