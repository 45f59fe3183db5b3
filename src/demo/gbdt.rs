//! The demo's boosted-tree step: alice and bob train a small boosted model on the same
//! generated columns as the logistic-regression step (carol deals), alice scores the common
//! rows with it (the model stays split), and its AUC is printed beside the plaintext twin's
//! (the same boosting on the same bins in `f64`).

use std::collections::BTreeMap;
use std::time::Instant;

use confide_proto::DatasetRef;
use confide_training::gbdt::bins::Binned;
use confide_training::gbdt::{predict_gbdt_plain, train_gbdt_plain};
use confide_training::{GbdtOptions, PartyNames};

use super::train::{DEMO_FEATURES, DEMO_SEED, REFERENCE};
use crate::cli::CliError;
use crate::cli::submit::{Show, read_file, request, submit_with};
use crate::cli::train::{configured_dealer, train_summary};
use crate::kinds::{JobOptions, predict, train};
use crate::kit::LocalAlliance;

/// The demo model: 5 trees of depth 3 (XGBoost's defaults otherwise).
const TREES: usize = 5;
const DEPTH: usize = 3;

fn peers(dealer: &str) -> Vec<DatasetRef> {
    vec![
        DatasetRef {
            party: "bob".into(),
            dataset: "credit".into(),
        },
        DatasetRef {
            party: dealer.into(),
            dataset: String::new(),
        },
    ]
}

/// Trains, scores and compares (see the module docs).
pub async fn step(alliance: &LocalAlliance) -> Result<(), CliError> {
    let t = Instant::now();
    let alice = alliance.config("alice")?;
    let dealer = configured_dealer(&alice, "bob")?;
    let mut opts = train::Opts::new("default", DEMO_SEED, &dealer);
    opts.gbdt = Some(GbdtOptions {
        trees: TREES,
        depth: DEPTH,
        ..GbdtOptions::default()
    });
    let names = PartyNames {
        active: "alice".into(),
        passive: "bob".into(),
        dealer: dealer.clone(),
    };
    let params = opts
        .gbdt_params(names)
        .ok_or_else(|| CliError::Failed("no boosted-tree parameters".into()))?;
    let rules = alliance.dir.join("alice").join("trees.json");
    let mut req = request(
        &JobOptions::Train(opts),
        "credit",
        peers(&dealer),
        Some(&rules),
    );
    req.timeout_secs = 600;
    let (job, r) = submit_with(&alice, req, Show::Lines).await?;
    let scores_path = alliance.dir.join("alice").join("tree-scores.csv");
    let popts = predict::Opts {
        model: job.clone(),
        active: "alice".into(),
        passive: "bob".into(),
        dealer: dealer.clone(),
        frac_bits: params.frac_bits,
        trees: Some(TREES),
        depth: Some(DEPTH),
    };
    let mut req = request(
        &JobOptions::Predict(popts),
        "credit",
        peers(&dealer),
        Some(&scores_path),
    );
    req.timeout_secs = 600;
    submit_with(&alice, req, Show::Lines).await?;
    let scores: BTreeMap<String, f64> = read_file(&scores_path)?
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (id, s) = l.split_once(',')?;
            Some((id.to_string(), s.parse().ok()?))
        })
        .collect();

    // The plaintext twin on the joined common rows (the same rows, so the same bins).
    let reference = alliance.dir.join("demo-data").join(REFERENCE);
    let table = confide_training::load_table(&reference, "customer_id", Some("default"))?;
    let y = table
        .label
        .clone()
        .ok_or_else(|| CliError::Failed("the reference table has no label".into()))?;
    let secure: Vec<f64> = table
        .ids
        .iter()
        .map(|id| {
            scores
                .get(id)
                .copied()
                .ok_or_else(|| CliError::Failed(format!("no score for `{id}`")))
        })
        .collect::<Result<_, _>>()?;
    let (xa, xb) = table
        .features
        .view()
        .split_at(ndarray::Axis(1), DEMO_FEATURES);
    let (xa, xb) = (xa.to_owned(), xb.to_owned());
    let bins = [Binned::fit(&xa, params.bins), Binned::fit(&xb, params.bins)];
    let (trees, _) = train_gbdt_plain([&bins[0], &bins[1]], &y, &params);
    let plain = predict_gbdt_plain(&trees, [(&xa, &bins[0]), (&xb, &bins[1])]);
    let auc = |s: &[f64]| {
        confide_training::auc(s, &y).ok_or_else(|| CliError::Failed("AUC needs both labels".into()))
    };
    super::step(
        &format!(
            "{}; scored by `predict` at alice only; AUC on the {} common rows: boosted on shares {:.4}, plaintext twin {:.4}",
            train_summary(&job, &r),
            table.ids.len(),
            auc(&secure)?,
            auc(&plain)?,
        ),
        t,
    );
    Ok(())
}
