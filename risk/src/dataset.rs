//! Risk datasets: CSV with a header, an ID column and the columns `blacklisted` (0/1), `loans`,
//! `amount`, `overdue` (non-negative integers; `amount` in minor currency units).
//!
//! **Overflow bound.** Shares live in Z_2^64. Every field of a row must be `< 2^40`
//! ([`MAX_FIELD`]); an alliance has fewer than `2^20` members and each member contributes one
//! row per customer (duplicate IDs are merged first), so every alliance-wide sum is
//! `< 2^60 < 2^64` and the wrapping sums equal the integer sums.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Result, RiskError};

/// Exclusive upper bound on each field of one row.
pub const MAX_FIELD: u64 = 1 << 40;
/// The value columns, in the order of the share vectors.
pub const FIELDS: [&str; 4] = ["blacklisted", "loans", "amount", "overdue"];

/// One customer of a holder.
#[derive(Clone, PartialEq, Eq)]
pub struct RiskRecord {
    /// The customer ID (raw: never leaves the holder).
    pub id: String,
    /// `[blacklisted, loans, amount, overdue]`.
    pub values: [u64; 4],
}

impl std::fmt::Debug for RiskRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RiskRecord(<redacted>)")
    }
}

/// A loaded dataset.
#[derive(Debug, Clone, Default)]
pub struct RiskDataset {
    /// One record per distinct ID, in first-seen order.
    pub records: Vec<RiskRecord>,
    /// Rows whose ID had already been seen (merged: `blacklisted` = max, others summed).
    pub duplicates: u64,
}

impl RiskDataset {
    /// Loads a CSV file; `id_column` names the ID column.
    pub fn load(path: impl AsRef<Path>, id_column: &str) -> Result<Self> {
        let f = std::fs::File::open(path.as_ref()).map_err(|e| RiskError::Dataset {
            line: 0,
            message: format!("cannot open {}: {e}", path.as_ref().display()),
        })?;
        Self::from_reader(f, id_column)
    }

    /// Parses CSV from any reader.
    pub fn from_reader<R: Read>(reader: R, id_column: &str) -> Result<Self> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(reader);
        let header = rdr
            .headers()
            .map_err(|e| RiskError::Dataset {
                line: 1,
                message: format!("unreadable header: {e}"),
            })?
            .clone();
        let col = |name: &str| -> Result<usize> {
            header
                .iter()
                .position(|h| h.trim() == name)
                .ok_or_else(|| RiskError::Dataset {
                    line: 1,
                    message: format!(
                        "missing column `{name}` (header has: {})",
                        header.iter().collect::<Vec<_>>().join(", ")
                    ),
                })
        };
        let id_col = col(id_column)?;
        let cols = [
            col(FIELDS[0])?,
            col(FIELDS[1])?,
            col(FIELDS[2])?,
            col(FIELDS[3])?,
        ];

        let mut out = RiskDataset::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| RiskError::Dataset {
                line: e.position().map(|p| p.line()).unwrap_or(0),
                message: e.to_string(),
            })?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let bad = |message: String| RiskError::Dataset { line, message };
            let id = rec.get(id_col).unwrap_or("").trim();
            if id.is_empty() {
                return Err(bad(format!("empty `{id_column}`")));
            }
            if id.len() > u16::MAX as usize {
                return Err(bad(format!("`{id_column}` longer than 65535 bytes")));
            }
            let mut values = [0u64; 4];
            for (k, &c) in cols.iter().enumerate() {
                let raw = rec.get(c).unwrap_or("").trim();
                let v: u64 = raw.parse().map_err(|_| {
                    bad(format!(
                        "`{}` must be a non-negative integer, got `{raw}`",
                        FIELDS[k]
                    ))
                })?;
                if v >= MAX_FIELD {
                    return Err(bad(format!("`{}` = {v} is not below 2^40", FIELDS[k])));
                }
                values[k] = v;
            }
            if values[0] > 1 {
                return Err(bad(format!(
                    "`blacklisted` must be 0 or 1, got {}",
                    values[0]
                )));
            }
            match seen.get(id) {
                Some(&i) => {
                    let r = &mut out.records[i].values;
                    r[0] = r[0].max(values[0]);
                    for k in 1..4 {
                        r[k] += values[k];
                        if r[k] >= MAX_FIELD {
                            return Err(bad(format!(
                                "`{}` summed over duplicate ID rows is not below 2^40",
                                FIELDS[k]
                            )));
                        }
                    }
                    out.duplicates += 1;
                }
                None => {
                    seen.insert(id.to_string(), out.records.len());
                    out.records.push(RiskRecord {
                        id: id.to_string(),
                        values,
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RiskDataset> {
        RiskDataset::from_reader(s.as_bytes(), "id")
    }

    #[test]
    fn loads_and_merges_duplicates() {
        let d = parse("id,blacklisted,loans,amount,overdue,extra\na,0,1,100,0,x\nb,1,2,50,1,y\na,1,1,20,1,z\n")
            .unwrap();
        assert_eq!(d.records.len(), 2);
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.records[0].id, "a");
        assert_eq!(d.records[0].values, [1, 2, 120, 1]);
        assert_eq!(d.records[1].values, [1, 2, 50, 1]);
        assert_eq!(format!("{:?}", d.records[0]), "RiskRecord(<redacted>)");
    }

    #[test]
    fn clear_errors_with_line_numbers() {
        let e = parse("id,blacklisted,loans,amount\na,0,1,2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1") && e.contains("missing column `overdue`"),
            "{e}"
        );
        let e = parse("id,blacklisted,loans,amount,overdue\na,0,1,2,0\nb,0,-1,2,0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("`loans`") && e.contains("`-1`"),
            "{e}"
        );
        let e = parse("id,blacklisted,loans,amount,overdue\na,0,1,2.5,0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("`amount`"), "{e}");
        let e = parse("id,blacklisted,loans,amount,overdue\na,2,1,2,0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("0 or 1"), "{e}");
        let e = parse("id,blacklisted,loans,amount,overdue\na,0,1,1099511627776,0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("2^40"), "{e}");
        let e = parse("id,blacklisted,loans,amount,overdue\na,0,1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("id,blacklisted,loans,amount,overdue\n,0,1,2,0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("empty"), "{e}");
    }
}
