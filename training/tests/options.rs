//! Job options of the `train` and `predict` kinds: parsing, defaults, every range check
//! and its message, serde.

use std::collections::HashMap;

use confide_training::{
    ClassWeight, Optimizer, PREDICT_BATCH, PartyNames, Penalty, PredictOptions, TrainError,
    TrainOptions, check_model_id,
};

fn train_opts(extra: &[(&str, &str)]) -> Result<TrainOptions, TrainError> {
    let mut o: HashMap<&str, &str> = [("label", "y"), ("seed", "42"), ("dealer", "d")].into();
    for (k, v) in extra {
        o.insert(k, v);
    }
    TrainOptions::from_options(o)
}

/// The message of an `Options` error (and that it is one).
fn msg<T: std::fmt::Debug>(r: Result<T, TrainError>) -> String {
    match r {
        Err(TrainError::Options(m)) => m,
        other => panic!("expected an options error, got {other:?}"),
    }
}

#[test]
fn train_defaults_and_values() {
    let o = train_opts(&[]).unwrap();
    assert_eq!(o, TrainOptions::new("y", 42, "d"));
    assert_eq!(
        (
            o.epochs,
            o.batch_size,
            o.learning_rate,
            o.c,
            o.tolerance,
            o.validation
        ),
        (200, 1024, None, 1.0, 3e-5, 0.0)
    );
    assert_eq!(
        (o.optimizer, o.penalty, o.class_weight),
        (Optimizer::Nesterov, Penalty::L2, ClassWeight::None)
    );
    let o = train_opts(&[
        ("epochs", "3"),
        ("batch_size", "64"),
        ("learning_rate", "0.5"),
        ("keep_shared", "true"),
        ("optimizer", "momentum"),
        ("penalty", "l1"),
        ("c", "0.25"),
        ("class_weight", "balanced"),
        ("tolerance", "0.001"),
        ("validation", "0.1"),
    ])
    .unwrap();
    assert_eq!(
        (o.epochs, o.batch_size, o.learning_rate),
        (3, 64, Some(0.5))
    );
    assert_eq!(
        (
            o.optimizer,
            o.penalty,
            o.c,
            o.class_weight,
            o.tolerance,
            o.validation
        ),
        (
            Optimizer::Momentum,
            Penalty::L1,
            0.25,
            ClassWeight::Balanced,
            0.001,
            0.1
        )
    );
    assert!(o.keep_shared);
    assert_eq!(
        train_opts(&[("learning_rate", "auto")])
            .unwrap()
            .learning_rate,
        None
    );
    // `to_options` is the inverse of `from_options`.
    assert_eq!(TrainOptions::from_options(o.to_options()).unwrap(), o);
}

#[test]
fn train_range_checks_keep_their_messages() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("epochs", "0")], "epochs must be in 1..=100000, got 0"),
        (
            &[("epochs", "100001")],
            "epochs must be in 1..=100000, got 100001",
        ),
        (
            &[("batch_size", "0")],
            "batch size must be in 1..=1048576, got 0",
        ),
        (
            &[("batch_size", "1048577")],
            "batch size must be in 1..=1048576, got 1048577",
        ),
        (
            &[("learning_rate", "0")],
            "learning rate must be in (0, 10], got 0",
        ),
        (
            &[("learning_rate", "11")],
            "learning rate must be in (0, 10], got 11",
        ),
        (
            &[("learning_rate", "NaN")],
            "learning rate must be in (0, 10], got NaN",
        ),
        (
            &[("keep_shared", "yes")],
            "keep_shared = `yes` (true or false)",
        ),
        (
            &[("epochs", "ten")],
            "option `epochs` = `ten` is not a valid number",
        ),
        (
            &[("label", " ")],
            "option `label` (the label column) is missing",
        ),
        (&[("colour", "red")], "unknown option `colour`"),
        (
            &[("optimizer", "adagrad")],
            "option `optimizer`: optimizer must be one of sgd, momentum, nesterov, adam, got `adagrad`",
        ),
        (
            &[("penalty", "l3")],
            "option `penalty`: penalty must be one of none, l2, l1, got `l3`",
        ),
        (
            &[("class_weight", "auto")],
            "option `class_weight`: class weight must be one of none, balanced, got `auto`",
        ),
        (&[("c", "0")], "C must be a positive number, got 0"),
        (&[("c", "inf")], "C must be a positive number, got inf"),
        (
            &[("tolerance", "-1")],
            "tolerance must be in [0, 0.1), got -1",
        ),
        (
            &[("validation", "0.6")],
            "validation must be in [0, 0.5], got 0.6",
        ),
        (
            &[("optimizer", "adam"), ("learning_rate", "2")],
            "Adam's learning rate must be at most 1, got 2",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(msg(train_opts(extra)), *want, "{extra:?}");
    }
    // Bounds are inclusive.
    assert!(train_opts(&[("epochs", "100000"), ("batch_size", "1048576")]).is_ok());
    assert!(train_opts(&[("learning_rate", "10")]).is_ok());
    assert!(train_opts(&[("optimizer", "adam"), ("learning_rate", "1")]).is_ok());
    for missing in ["seed", "dealer"] {
        let o: Vec<(&str, &str)> = [("label", "y"), ("seed", "1"), ("dealer", "d")]
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        assert_eq!(
            msg(TrainOptions::from_options(o)),
            format!("option `{missing}` is missing")
        );
    }
    let o = [
        ("label", "y"),
        ("label", "z"),
        ("seed", "1"),
        ("dealer", "d"),
    ];
    assert_eq!(
        msg(TrainOptions::from_options(o)),
        "option `label` is given twice"
    );
}

#[test]
fn train_params_follow_the_options() {
    let names = PartyNames {
        active: "a".into(),
        passive: "b".into(),
        dealer: "d".into(),
    };
    let o = train_opts(&[("epochs", "3"), ("batch_size", "50")]).unwrap();
    let p = o.params(names.clone());
    assert_eq!((p.fit.epochs, p.fit.batch_size, p.fit.seed), (3, 50, 42));
    assert_eq!(p.fit, o.fit());
    assert_eq!(p.reveal_to, vec!["a".to_string(), "b".to_string()]);
    let shared = train_opts(&[("keep_shared", "true")])
        .unwrap()
        .params(names);
    assert!(shared.reveal_to.is_empty());
}

#[test]
fn train_options_serde_refuses_unknown_fields_and_validates_separately() {
    let o: TrainOptions =
        serde_json::from_str(r#"{"label":"y","seed":7,"dealer":"d","epochs":2}"#).unwrap();
    assert_eq!((o.epochs, o.batch_size, o.learning_rate), (2, 1024, None));
    let named: TrainOptions = serde_json::from_str(
        r#"{"label":"y","seed":7,"dealer":"d","optimizer":"sgd","penalty":"none","class_weight":"balanced","c":2.0}"#,
    )
    .unwrap();
    assert_eq!(
        (named.optimizer, named.penalty, named.class_weight, named.c),
        (Optimizer::Sgd, Penalty::None, ClassWeight::Balanced, 2.0)
    );
    assert!(o.validate().is_ok());
    let back: TrainOptions = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
    assert_eq!(back, o);
    let err = serde_json::from_str::<TrainOptions>(r#"{"label":"y","seed":7,"dealer":"d","x":1}"#)
        .unwrap_err();
    assert!(err.to_string().contains("unknown field `x`"), "{err}");
    assert!(serde_json::from_str::<TrainOptions>(r#"{"label":"y","dealer":"d"}"#).is_err());
    let zero: TrainOptions =
        serde_json::from_str(r#"{"label":"y","seed":7,"dealer":"d","epochs":0}"#).unwrap();
    assert_eq!(msg(zero.validate()), "epochs must be in 1..=100000, got 0");
}

fn predict_opts(extra: &[(&str, &str)]) -> Result<PredictOptions, TrainError> {
    let mut o: HashMap<&str, &str> = [
        ("model", "00ab"),
        ("active", "a"),
        ("passive", "b"),
        ("dealer", "d"),
        ("frac_bits", "18"),
    ]
    .into();
    for (k, v) in extra {
        o.insert(k, v);
    }
    PredictOptions::from_options(o)
}

#[test]
fn predict_options_parse_and_check() {
    let o = predict_opts(&[]).unwrap();
    assert_eq!(o.names().passive, "b");
    let p = o.params("b");
    assert_eq!((p.receiver.as_str(), p.frac_bits), ("b", 18));
    assert_eq!(p.batch_size, PREDICT_BATCH);
    assert_eq!(PredictOptions::from_options(o.to_options()).unwrap(), o);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("model", "../etc")],
            "`../etc` is not a model id (the job id of a `train --keep-shared` job)",
        ),
        (
            &[("frac_bits", "30")],
            "frac_bits must be in 12..=24, got 30",
        ),
        (
            &[("frac_bits", "x")],
            "option `frac_bits` = `x` is not a valid number",
        ),
        (
            &[("passive", "a")],
            "the three seats need distinct party names",
        ),
        (&[("label", "y")], "unknown option `label`"),
    ];
    for (extra, want) in cases {
        assert_eq!(msg(predict_opts(extra)), *want, "{extra:?}");
    }
    let o: Vec<(&str, &str)> = vec![("model", "ab"), ("active", "a"), ("dealer", "d")];
    assert_eq!(
        msg(PredictOptions::from_options(o)),
        "option `passive` is missing"
    );
    let err = serde_json::from_str::<PredictOptions>(
        r#"{"model":"ab","active":"a","passive":"b","dealer":"d","frac_bits":18,"y":0}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `y`"), "{err}");
}

#[test]
fn model_ids_are_short_hex_only() {
    assert!(check_model_id("0123456789abcdefABCDEF").is_ok());
    assert!(check_model_id(&"f".repeat(64)).is_ok());
    for bad in ["", "x1", "a/b", "..", &"f".repeat(65)] {
        assert!(check_model_id(bad).is_err(), "{bad}");
    }
}
