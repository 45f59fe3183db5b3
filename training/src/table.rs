//! CSV input: loading a table, aligning it to a common ID order, and preparing features.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// A party's table as read from CSV: IDs, numeric features and optionally a 0/1 label.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Row IDs (trimmed strings), unique.
    pub ids: Vec<String>,
    /// Feature column names, in file order.
    pub feature_names: Vec<String>,
    /// rows × features.
    pub features: Array2<f64>,
    /// The label column (0.0 / 1.0), if one was requested.
    pub label: Option<Vec<f64>>,
}

/// A party's training input: its rows already in the common (PSI-aligned) order.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalData {
    /// Feature names (columns of `features`).
    pub feature_names: Vec<String>,
    /// rows × features, raw units.
    pub features: Array2<f64>,
    /// The label (only at the active party).
    pub label: Option<Vec<f64>>,
}

/// Loads a CSV with a header: `id_column` holds row IDs, `label` (if given) the 0/1 label,
/// every other column must be numeric. Errors name the file, the 1-based line and the
/// column (missing or non-numeric value, label not 0/1, duplicate ID, ragged row).
pub fn load_table(path: impl AsRef<Path>, id_column: &str, label: Option<&str>) -> Result<Table> {
    let path = path.as_ref();
    let p = path.display().to_string();
    let err = |line: u64, column: &str, reason: String| TrainError::Csv {
        path: p.clone(),
        line,
        column: column.to_string(),
        reason,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(0, "-", e.to_string()))?;
    let headers = rdr
        .headers()
        .map_err(|e| err(1, "-", e.to_string()))?
        .clone();
    let find = |name: &str| headers.iter().position(|h| h == name);
    let id_idx =
        find(id_column).ok_or_else(|| err(1, id_column, "ID column not in header".into()))?;
    let label_idx = match label {
        Some(l) => Some(find(l).ok_or_else(|| err(1, l, "label column not in header".into()))?),
        None => None,
    };
    let feat_idx: Vec<usize> = (0..headers.len())
        .filter(|&i| i != id_idx && Some(i) != label_idx)
        .collect();
    let feature_names: Vec<String> = feat_idx.iter().map(|&i| headers[i].to_string()).collect();
    let mut ids = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            err(line, "-", e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec[id_idx].to_string();
        if id.is_empty() {
            return Err(err(line, id_column, "missing ID".into()));
        }
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(err(
                line,
                id_column,
                format!("duplicate ID `{id}` (first on line {first})"),
            ));
        }
        ids.push(id);
        for &i in &feat_idx {
            let cell = &rec[i];
            if cell.is_empty() {
                return Err(err(line, &headers[i], "missing value".into()));
            }
            let v: f64 = cell
                .parse()
                .map_err(|_| err(line, &headers[i], format!("not a number: `{cell}`")))?;
            if !v.is_finite() {
                return Err(err(
                    line,
                    &headers[i],
                    format!("not a finite number: `{cell}`"),
                ));
            }
            values.push(v);
        }
        if let Some(li) = label_idx {
            let cell = &rec[li];
            let v = match cell {
                "0" | "0.0" => 0.0,
                "1" | "1.0" => 1.0,
                _ => {
                    return Err(err(
                        line,
                        &headers[li],
                        format!("label must be 0 or 1, got `{cell}`"),
                    ));
                }
            };
            labels.push(v);
        }
    }
    let features = Array2::from_shape_vec((ids.len(), feat_idx.len()), values)
        .map_err(|e| err(0, "-", e.to_string()))?;
    Ok(Table {
        ids,
        feature_names,
        features,
        label: label_idx.map(|_| labels),
    })
}

impl Table {
    /// Reorders the table to `common_ids` (the PSI output, in the order both parties
    /// agreed on). Every common ID must be present.
    pub fn align(&self, common_ids: &[String]) -> Result<LocalData> {
        let index: HashMap<&str, usize> = self
            .ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let rows = common_ids
            .iter()
            .map(|id| {
                index.get(id.as_str()).copied().ok_or_else(|| {
                    TrainError::Data(format!("common ID `{id}` is not in the table"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LocalData {
            feature_names: self.feature_names.clone(),
            features: self.features.select(Axis(0), &rows),
            label: self
                .label
                .as_ref()
                .map(|l| rows.iter().map(|&r| l[r]).collect()),
        })
    }

    /// The table as-is (rows already in the agreed order, e.g. in tests).
    pub fn into_local(self) -> LocalData {
        LocalData {
            feature_names: self.feature_names,
            features: self.features,
            label: self.label,
        }
    }
}

/// Per-column standardization of one party's features (computed locally, never sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Names of the kept columns.
    pub names: Vec<String>,
    /// Indices of the kept columns in the input.
    pub kept: Vec<usize>,
    /// Means of the kept columns.
    pub means: Vec<f64>,
    /// Standard deviations (population) of the kept columns, all > 0.
    pub stds: Vec<f64>,
    /// Names of constant columns that were dropped.
    pub dropped: Vec<String>,
}

impl Standardizer {
    /// Fits on `x`; constant columns (std below 1e-12 × (1 + |mean|)) are dropped.
    pub fn fit(names: &[String], x: &Array2<f64>) -> Result<Self> {
        if names.len() != x.ncols() {
            return Err(TrainError::Data(format!(
                "{} feature names for {} columns",
                names.len(),
                x.ncols()
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::Data(
                "features contain NaN or infinite values".into(),
            ));
        }
        let n = x.nrows().max(1) as f64;
        let mut s = Self {
            names: vec![],
            kept: vec![],
            means: vec![],
            stds: vec![],
            dropped: vec![],
        };
        for (j, col) in x.axis_iter(Axis(1)).enumerate() {
            let mean = col.sum() / n;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let std = var.sqrt();
            if std <= 1e-12 * (1.0 + mean.abs()) {
                s.dropped.push(names[j].clone());
            } else {
                s.names.push(names[j].clone());
                s.kept.push(j);
                s.means.push(mean);
                s.stds.push(std);
            }
        }
        Ok(s)
    }

    /// Standardized kept columns of `x` (same column layout as at fit time).
    pub fn transform(&self, x: &Array2<f64>) -> Array2<f64> {
        let mut out = x.select(Axis(1), &self.kept);
        for (j, mut col) in out.axis_iter_mut(Axis(1)).enumerate() {
            let (m, s) = (self.means[j], self.stds[j]);
            col.mapv_inplace(|v| (v - m) / s);
        }
        out
    }
}

/// Checks a label vector: present, right length, only 0/1.
pub fn check_label(label: Option<&Vec<f64>>, rows: usize) -> Result<Array1<f64>> {
    let y = label.ok_or_else(|| TrainError::Data("the active party needs the label".into()))?;
    if y.len() != rows {
        return Err(TrainError::Data(format!(
            "{} labels for {rows} rows",
            y.len()
        )));
    }
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| **v != 0.0 && **v != 1.0) {
        return Err(TrainError::Data(format!(
            "label of row {i} is `{v}`, must be 0 or 1"
        )));
    }
    Ok(Array1::from_vec(y.clone()))
}
