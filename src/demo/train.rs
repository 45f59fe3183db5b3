//! The demo's training step: alice (a bank with the `default` label) and bob (a platform)
//! train on generated columns with carol as the dealer; the secure model's AUC is printed
//! beside plaintext logistic regression's on the same rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use confide_proto::DatasetRef;
use confide_training::{Fit, Model, Table, Twin};

use super::data_dir;
use crate::cli::CliError;
use crate::cli::submit::{Show, read_file, request, submit_with};
use crate::cli::train::{configured_dealer, train_summary};
use crate::kinds::{JobOptions, train};
use crate::kit::{LocalAlliance, add_dataset};

/// Rows and features of the demo's training data, and its job parameters.
const DEMO_MAX_ROWS: usize = 3000;
pub(super) const DEMO_FEATURES: usize = 5;
pub(super) const DEMO_SEED: u64 = 2024;
/// The joined common rows, for the demo's plaintext reference only.
pub(super) const REFERENCE: &str = "plaintext-reference.csv";

/// Writes `rows` of `tables` side by side (IDs from the first), with the label of
/// `label` (a table holding one) as column `default`.
fn write_rows(
    path: &Path,
    label: Option<&Table>,
    tables: &[&Table],
    rows: impl Iterator<Item = usize>,
) -> Result<(), CliError> {
    use std::io::Write;
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        write!(f, "customer_id")?;
        if label.is_some() {
            write!(f, ",default")?;
        }
        for t in tables {
            for n in &t.feature_names {
                write!(f, ",{n}")?;
            }
        }
        writeln!(f)?;
        for i in rows {
            write!(f, "{}", tables[0].ids[i])?;
            if let Some(y) = label.and_then(|t| t.label.as_ref()) {
                write!(f, ",{}", y[i])?;
            }
            for t in tables {
                for v in t.features.row(i) {
                    write!(f, ",{v}")?;
                }
            }
            writeln!(f)?;
        }
        f.flush()
    };
    write().map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}

/// Writes the demo's training data and declares it (before the daemons start): alice (a
/// bank: the `default` label and 5 features) holds customers 0..n, bob (a platform: 5
/// features) holds customers n/10..n·11/10 in reverse order, so the rows must be aligned.
pub fn data(dir: &Path, rows: usize) -> Result<(), CliError> {
    let n = rows.clamp(200, DEMO_MAX_ROWS);
    let extra = n / 10;
    let (ta, tb) = confide_training::generate_credit(n + extra, DEMO_FEATURES, DEMO_FEATURES, 11);
    let data = data_dir(dir)?;
    let a = data.join("alice-credit.csv");
    let b = data.join("bob-credit.csv");
    write_rows(&a, Some(&ta), &[&ta], 0..n)?;
    write_rows(&b, None, &[&tb], (extra..n + extra).rev())?;
    // IDs are zero-padded, so the sorted common order is the row order.
    write_rows(&data.join(REFERENCE), Some(&ta), &[&ta, &tb], extra..n)?;
    for (party, path, peer) in [("alice", &a, "bob"), ("bob", &b, "alice")] {
        let allow = format!("{{ train = [\"{peer}\"] }}");
        add_dataset(dir, party, "credit", path, "customer_id", &allow)?;
    }
    Ok(())
}

/// The demo's training step: alice and bob train on their generated columns with carol as
/// the dealer; the secure model's AUC is printed beside the plaintext one.
pub async fn step(alliance: &LocalAlliance) -> Result<(), CliError> {
    let t = Instant::now();
    let alice = alliance.config("alice")?;
    let out = alliance.dir.join("alice").join("model.json");
    let dealer = configured_dealer(&alice, "bob")?;
    // Every optimizer setting at its default: training stops when the loss converges.
    let opts = train::Opts::new("default", DEMO_SEED, &dealer);
    let fit = opts.fit();
    let peers = vec![
        DatasetRef {
            party: "bob".into(),
            dataset: "credit".into(),
        },
        DatasetRef {
            party: dealer,
            dataset: String::new(),
        },
    ];
    let mut req = request(&JobOptions::Train(opts), "credit", peers, Some(&out));
    req.timeout_secs = 600;
    let (job, r) = submit_with(&alice, req, Show::Lines).await?;
    let model: Model = serde_json::from_str(&read_file(&out)?)
        .map_err(|e| CliError::json(out.display().to_string(), e))?;
    let (secure, plain, rows) = demo_reference(
        &alliance.dir.join("demo-data").join(REFERENCE),
        &model,
        &fit,
    )?;
    super::step(
        &format!(
            "{}; AUC on the {rows} common rows: secure {secure:.4} (binned on shares {:.4}), plaintext {plain:.4}",
            train_summary(&job, &r),
            r.get("train_auc")
                .and_then(|v| v.as_f64())
                .unwrap_or(f64::NAN),
        ),
        t,
    );
    Ok(())
}

/// The secure model's AUC on the demo's common rows and the plaintext reference's.
/// Returns (secure, plaintext, rows).
fn demo_reference(path: &Path, model: &Model, fit: &Fit) -> Result<(f64, f64, usize), CliError> {
    let t = confide_training::load_table(path, "customer_id", Some("default"))?;
    let (secure, plain) = reference_aucs(&t, model, fit, Twin::Exact)?;
    Ok((secure, plain, t.ids.len()))
}

/// On a joined table of common rows (label and every party's features, rows in the
/// sorted common-ID order the job used): the AUC of a revealed `model` (raw units, scored
/// in plaintext) and of plaintext logistic regression trained on the same rows — the
/// plaintext twin of the job's optimizer settings `fit` (same standardization, batch
/// schedule, optimizer and stopping rule), evaluating the sigmoid and the validation AUC
/// as `twin` says ([`Twin::Exact`]: plain logistic regression; [`Twin::Secure`]: the
/// secure run's splines and binned AUC, so it takes the same early-stopping decisions).
/// Returns (model AUC, plaintext AUC).
pub fn reference_aucs(
    t: &Table,
    model: &Model,
    fit: &Fit,
    twin: Twin,
) -> Result<(f64, f64), CliError> {
    let y = t
        .label
        .clone()
        .ok_or_else(|| CliError::Failed("the reference table has no label".into()))?;
    let mut secure_scores = Vec::with_capacity(t.ids.len());
    for i in 0..t.ids.len() {
        let row: BTreeMap<String, f64> = t
            .feature_names
            .iter()
            .cloned()
            .zip(t.features.row(i).iter().copied())
            .collect();
        secure_scores.push(
            model.predict(&row).ok_or_else(|| {
                CliError::Failed("the model has a feature the table lacks".into())
            })?,
        );
    }
    let std = confide_training::Standardizer::fit(&t.feature_names, &t.features)?;
    let xs = std.transform(&t.features);
    let p = confide_training::train_plain(&xs, &y, fit, twin);
    let plain_scores = (xs.dot(&p.weights) + p.intercept).to_vec();
    let auc = |s: &[f64]| {
        confide_training::auc(s, &y).ok_or_else(|| CliError::Failed("AUC needs both labels".into()))
    };
    Ok((auc(&secure_scores)?, auc(&plain_scores)?))
}
