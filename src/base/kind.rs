//! Job kinds, and the kinds a dataset policy can allow.

use serde::{Deserialize, Serialize};

use crate::base::error::DaemonError;

/// Every kind of job a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Messages to every party of the job, measured (no data).
    Netcheck,
    /// Private set intersection.
    Psi,
    /// Secret-shared vertical model training.
    Train,
    /// Scoring with a secret-shared model.
    Predict,
    /// A holder contributes a dataset to the joint risk index.
    RiskIngest,
    /// A lender asks the risk compute nodes about applicants.
    RiskQuery,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::Netcheck,
        JobKind::Psi,
        JobKind::Train,
        JobKind::Predict,
        JobKind::RiskIngest,
        JobKind::RiskQuery,
    ];

    /// The name on the wire, in job lists and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Netcheck => "netcheck",
            JobKind::Psi => "psi",
            JobKind::Train => "train",
            JobKind::Predict => "predict",
            JobKind::RiskIngest => "risk-ingest",
            JobKind::RiskQuery => "risk-query",
        }
    }

    /// Parses a name from the wire.
    pub fn parse(s: &str) -> Result<Self, DaemonError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                DaemonError::InvalidRequest(format!(
                    "unknown job kind `{s}` (known: {})",
                    Self::ALL.map(JobKind::as_str).join(", ")
                ))
            })
    }

    /// The dataset permission this kind needs from the other parties' policies.
    pub fn policy(self) -> Option<PolicyKind> {
        match self {
            JobKind::Netcheck => None,
            JobKind::Psi => Some(PolicyKind::Psi),
            JobKind::Train | JobKind::Predict => Some(PolicyKind::Train),
            JobKind::RiskIngest | JobKind::RiskQuery => Some(PolicyKind::Risk),
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a dataset's `allow` table can grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Psi,
    Train,
    Risk,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Psi => "psi",
            PolicyKind::Train => "train",
            PolicyKind::Risk => "risk",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::parse(k.as_str()).unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        let e = JobKind::parse("mine").unwrap_err().to_string();
        assert!(e.contains("unknown job kind `mine`"), "{e}");
    }
}
