//! `confide train` and `confide predict`.

use std::process::ExitCode;

use confide_proto::{DatasetRef, SubmitRequest};
use confide_training::{GbdtOptions, StoredGbdt};

use super::CliError;
use super::args::{ModelKind, PredictArgs, TrainArgs};
use super::submit::{absolute, parse_peer, request, submit};
use crate::base::config::PartyConfig;
use crate::kinds::train::stop_name;
use crate::kinds::train_common::{models_dir, read_meta, valid_model_id};
use crate::kinds::{self, JobOptions};
use confide_training::Stop;

/// The dealer a `train` or `predict` job uses: the configured one, distinct from both
/// computing parties.
pub fn configured_dealer(cfg: &PartyConfig, peer: &str) -> Result<String, CliError> {
    let dealer = cfg.alliance.dealer.clone().ok_or_else(|| {
        CliError::Usage(format!(
            "no training dealer is configured: set `dealer` under [alliance] in {} (confide init --dealer NAME)",
            cfg.source.display()
        ))
    })?;
    if dealer == cfg.party.name || dealer == peer {
        return Err(CliError::Usage(format!(
            "the configured dealer `{dealer}` is a party of this job; the dealer must be a third party"
        )));
    }
    Ok(dealer)
}

/// The parties of a `train` or `predict` job after the initiator: the peer, then the
/// dealer (without a dataset).
fn peers_and_dealer(peer: DatasetRef, dealer: &str) -> Vec<DatasetRef> {
    vec![
        peer,
        DatasetRef {
            party: dealer.into(),
            dataset: String::new(),
        },
    ]
}

/// `confide train`.
pub async fn train(a: TrainArgs) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(&a.config.config)?;
    let req = train_request(&cfg, &a)?;
    let (job, r) = submit(&cfg, req).await?;
    outln!("{}", train_summary(&job, &r));
    Ok(ExitCode::SUCCESS)
}

/// The job request of `confide train` (also what the Python package submits).
pub fn train_request(cfg: &PartyConfig, a: &TrainArgs) -> Result<SubmitRequest, CliError> {
    let peer = parse_peer(&a.peer)?;
    let dealer = configured_dealer(cfg, &peer.party)?;
    let opts = train_options(a, dealer.clone())?;
    let output = absolute(&a.output)?;
    Ok(request(
        &JobOptions::Train(opts),
        &a.dataset,
        peers_and_dealer(peer, &dealer),
        Some(&output),
    ))
}

/// The job options of `confide train` (the `--seed` given, else a fresh random job seed).
fn train_options(a: &TrainArgs, dealer: String) -> Result<kinds::train::Opts, CliError> {
    let f = &a.fit;
    let named = |e: String| CliError::Usage(e);
    let seed = a.seed.unwrap_or_else(rand::random);
    let mut o = kinds::train::Opts::new(&a.label, seed, &dealer);
    o.epochs = f.epochs as usize;
    o.batch_size = f.batch_size as usize;
    o.learning_rate = f.learning_rate;
    o.optimizer = f.optimizer.parse().map_err(named)?;
    o.penalty = f.penalty.parse().map_err(named)?;
    o.c = f.c;
    o.class_weight = f.class_weight.parse().map_err(named)?;
    o.tolerance = f.tolerance;
    o.validation = f.validation;
    o.keep_shared = a.keep_shared;
    o.resume = a.resume.clone();
    o.seed_from_checkpoint = a.resume.is_some() && a.seed.is_none();
    o.gbdt = (a.model == ModelKind::Gbdt).then_some(GbdtOptions {
        trees: a.gbdt.trees as usize,
        depth: a.gbdt.depth as usize,
        bins: a.gbdt.bins as usize,
        lambda: a.gbdt.lambda,
        gamma: a.gbdt.gamma,
        min_child_weight: a.gbdt.min_child_weight,
        subsample: a.gbdt.subsample,
        colsample_bytree: a.gbdt.colsample_bytree,
        early_stopping_rounds: a.gbdt.early_stopping_rounds as usize,
    });
    o.validate()
        .map_err(|e| CliError::Usage(format!("confide train: {e}")))?;
    Ok(o)
}

/// The one-line summary of a train job.
pub fn train_summary(job: &str, r: &serde_json::Value) -> String {
    let n = |k: &str| r.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let f = |k: &str| r.get(k).and_then(|v| v.as_f64());
    if r.get("model").and_then(|v| v.as_str()) == Some("gbdt") {
        let aucs: Vec<f64> = r
            .get("validation_auc_per_tree")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let early = match aucs.iter().copied().reduce(f64::max) {
            Some(best) => format!(
                " ({} grown, best validation AUC {best:.4})",
                n("trees_grown")
            ),
            None => String::new(),
        };
        let resumed = match r.get("resumed_from").and_then(|v| v.as_str()) {
            Some(orig) => format!("; resumed job {orig} after tree {}", n("resumed_trees")),
            None => String::new(),
        };
        return format!(
            "train job {job}: {} common rows, {} trees of depth {}{early}; model kept split between the parties (use `confide predict --model {job}`); this party's split rules written to {} in {:.2} s{resumed}",
            n("common_rows"),
            n("trees"),
            n("depth"),
            r.get("output").and_then(|v| v.as_str()).unwrap_or("-"),
            n("elapsed_ms") as f64 / 1000.0
        );
    }
    let mut s = format!(
        "train job {job}: {} common rows, {} epochs",
        n("common_rows"),
        n("epochs")
    );
    if let Some(stop) = r
        .get("stop")
        .and_then(|v| serde_json::from_value::<Stop>(v.clone()).ok())
    {
        s.push_str(&format!(" ({}, {} steps)", stop_name(stop), n("steps")));
    }
    if let Some(l) = f("final_loss") {
        s.push_str(&format!(", final loss {l:.4}"));
    }
    if let Some(a) = f("best_validation_auc") {
        s.push_str(&format!(
            ", validation AUC {a:.4} (epoch {})",
            n("best_epoch")
        ));
    }
    if let Some(auc) = f("train_auc") {
        s.push_str(&format!(", train AUC {auc:.4}"));
    }
    match (
        r.get("output").and_then(|v| v.as_str()),
        r.get("shared_model").and_then(|v| v.as_str()),
    ) {
        (Some(out), _) => s.push_str(&format!("; model written to {out}")),
        (None, Some(_)) => s.push_str(&format!(
            "; model kept secret-shared (use `confide predict --model {job}`)"
        )),
        (None, None) => s.push_str("; model not revealed to this party"),
    }
    s.push_str(&format!(" in {:.2} s", n("elapsed_ms") as f64 / 1000.0));
    if let Some(orig) = r.get("resumed_from").and_then(|v| v.as_str()) {
        s.push_str(&format!(
            "; resumed job {orig} after epoch {}",
            n("resumed_epochs")
        ));
    }
    s
}

/// `confide predict`.
pub async fn predict(a: PredictArgs) -> Result<ExitCode, CliError> {
    let cfg = PartyConfig::load(&a.config.config)?;
    let req = predict_request(&cfg, &a)?;
    let (job, r) = submit(&cfg, req).await?;
    outln!(
        "predict job {job}: scored {} common rows with model {}; scores written to {} (only {} sees them) in {:.2} s",
        r.get("common_rows").and_then(|v| v.as_u64()).unwrap_or(0),
        a.model,
        r.get("output").and_then(|v| v.as_str()).unwrap_or("-"),
        cfg.party.name,
        r.get("elapsed_ms").and_then(|v| v.as_u64()).unwrap_or(0) as f64 / 1000.0
    );
    Ok(ExitCode::SUCCESS)
}

/// The job request of `confide predict` (also what the Python package submits): the
/// model's parties and shape come from its metadata at this party.
pub fn predict_request(cfg: &PartyConfig, a: &PredictArgs) -> Result<SubmitRequest, CliError> {
    let peer = parse_peer(&a.peer)?;
    valid_model_id(&a.model)?;
    let meta = read_meta(cfg, &a.model)?;
    let holders = [&meta.parties.active, &meta.parties.passive];
    if !holders.contains(&&peer.party) || peer.party == cfg.party.name {
        return Err(CliError::Usage(format!(
            "model `{}` is shared between `{}` and `{}`: the peer must be the other one",
            a.model, meta.parties.active, meta.parties.passive
        )));
    }
    let opts = kinds::predict::Opts {
        model: a.model.clone(),
        active: meta.parties.active.clone(),
        passive: meta.parties.passive.clone(),
        dealer: meta.parties.dealer.clone(),
        frac_bits: meta.frac_bits,
        trees: None,
        depth: None,
    };
    let opts = if meta.is_gbdt() {
        // The shape of a boosted model (public) goes into the job for the dealer.
        let path = confide_training::share_path(&models_dir(cfg), &a.model)?;
        let stored = StoredGbdt::read(&path, &a.model)?;
        kinds::predict::Opts {
            trees: Some(stored.model.trees.len()),
            depth: Some(stored.model.depth),
            ..opts
        }
    } else {
        opts
    };
    let output = absolute(&a.output)?;
    Ok(request(
        &JobOptions::Predict(opts),
        &a.dataset,
        peers_and_dealer(peer, &meta.parties.dealer),
        Some(&output),
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::args::{Cli, Command};
    use confide_training::{ClassWeight, Optimizer, Penalty};

    fn args(extra: &[&str]) -> TrainArgs {
        let mut v = vec![
            "confide",
            "train",
            "-c",
            "p.toml",
            "--dataset",
            "d",
            "--peer",
            "b:d",
            "--label",
            "y",
            "--output",
            "m.json",
        ];
        v.extend_from_slice(extra);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Train(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_the_job_options() {
        let o = train_options(&args(&[]), "dealer".into()).unwrap();
        let d = confide_training::TrainOptions::new("y", o.seed, "dealer");
        assert_eq!(o, d, "no flags: every default of the training crate");
        let o = train_options(
            &args(&[
                "--epochs",
                "7",
                "--batch-size",
                "99",
                "--learning-rate",
                "0.3",
                "--optimizer",
                "sgd",
                "--penalty",
                "l1",
                "--C",
                "0.5",
                "--class-weight",
                "balanced",
                "--tolerance",
                "0.001",
                "--validation",
                "0.2",
                "--keep-shared",
            ]),
            "dealer".into(),
        )
        .unwrap();
        assert_eq!(
            (o.epochs, o.batch_size, o.learning_rate),
            (7, 99, Some(0.3))
        );
        assert_eq!(
            (o.optimizer, o.penalty, o.c, o.class_weight),
            (Optimizer::Sgd, Penalty::L1, 0.5, ClassWeight::Balanced)
        );
        assert_eq!(
            (o.tolerance, o.validation, o.keep_shared),
            (0.001, 0.2, true)
        );
        // The seed is random per job unless given.
        let seeds: Vec<u64> = (0..4)
            .map(|_| train_options(&args(&[]), "dealer".into()).unwrap().seed)
            .collect();
        assert!(seeds.windows(2).any(|w| w[0] != w[1]), "{seeds:?}");
        let o = train_options(&args(&["--seed", "42"]), "dealer".into()).unwrap();
        assert_eq!(o.seed, 42);
        let o = train_options(&args(&["--optimizer", "adam"]), "dealer".into()).unwrap();
        assert_eq!((o.optimizer, o.learning_rate), (Optimizer::Adam, None));
        let e = train_options(
            &args(&["--optimizer", "adam", "--learning-rate", "2"]),
            "dealer".into(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("Adam's learning rate must be at most 1"),
            "{e}"
        );
        let e = train_options(&args(&["--tolerance", "0.5"]), "dealer".into()).unwrap_err();
        assert!(
            e.to_string().contains("tolerance must be in [0, 0.1)"),
            "{e}"
        );
    }
}
