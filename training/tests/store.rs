//! The stored model-share format: round trip, file mode, checks on reading, metadata
//! checks against a `predict` job.

use confide_training::{
    PartyNames, PredictOptions, Role, SHARE_FORMAT, ShareMeta, SharedModel, Standardizer,
    StoredShare, TrainError, share_path,
};

fn names() -> PartyNames {
    PartyNames {
        active: "bank".into(),
        passive: "shop".into(),
        dealer: "dealer".into(),
    }
}

fn stored(job: &str) -> StoredShare {
    let mut meta = ShareMeta::new(
        job,
        names(),
        Role::Active,
        "credit",
        vec!["income".into(), "age".into()],
        18,
    );
    meta.label = Some("default".into());
    StoredShare {
        meta,
        share: SharedModel {
            party: 0,
            cols: [3, 2],
            frac_bits: 18,
            weight_share: vec![0xdead_beef_0bad_f00d, 2, 3, 4, 5],
            standardizer: Standardizer {
                names: vec!["income".into(), "age".into()],
                kept: vec![0, 1],
                means: vec![1.0, 2.0],
                stds: vec![0.5, 4.0],
                dropped: vec![],
            },
        },
    }
}

#[test]
fn write_then_read_round_trips_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let path = share_path(&models, "00ff").unwrap();
    assert_eq!(path, models.join("00ff.share"));
    let s = stored("00ff");
    s.write(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&models).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o077, 0, "models dir is private: {dir_mode:o}");
    }
    // Nothing but the share is left in the directory (the temporary file was renamed).
    let files: Vec<_> = std::fs::read_dir(&models).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("\"format\":\"{SHARE_FORMAT}\"")));
    let back = StoredShare::read(&path, "00ff").unwrap();
    assert_eq!(back.meta, s.meta);
    assert_eq!(back.share, s.share);
    assert_eq!(ShareMeta::read(&path, "00ff").unwrap(), s.meta);
    // Debug never shows the share.
    let dbg = format!("{back:?}");
    assert!(dbg.contains("redacted"), "{dbg}");
    assert!(
        !dbg.contains(&0xdead_beef_0bad_f00du64.to_string()),
        "{dbg}"
    );
}

#[test]
fn reading_checks_presence_format_and_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = share_path(dir.path(), "abc").unwrap();
    assert!(matches!(
        StoredShare::read(&path, "abc"),
        Err(TrainError::NoSharedModel { .. })
    ));
    let err = ShareMeta::read(&path, "abc").unwrap_err().to_string();
    assert!(err.contains("train with --keep-shared first"), "{err}");
    stored("abc").write(&path).unwrap();
    // Another model's id at this path.
    assert!(matches!(
        StoredShare::read(&path, "abd"),
        Err(TrainError::ShareFile { .. })
    ));
    // Another format tag.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(SHARE_FORMAT, "confide-shared-model-v0");
    std::fs::write(&path, text).unwrap();
    assert!(matches!(
        ShareMeta::read(&path, "abc"),
        Err(TrainError::ShareFile { .. })
    ));
    std::fs::write(&path, "{not json").unwrap();
    assert!(matches!(
        StoredShare::read(&path, "abc"),
        Err(TrainError::ShareFile { .. })
    ));
    // Writing refuses metadata of another format.
    let mut s = stored("abc");
    s.meta.format = "other".into();
    assert!(s.write(&path).is_err());
    assert!(share_path(dir.path(), "../x").is_err());
}

#[test]
fn metadata_checks_a_predict_job() {
    let meta = stored("ab").meta;
    let opts = PredictOptions {
        model: "ab".into(),
        active: "bank".into(),
        passive: "shop".into(),
        dealer: "dealer".into(),
        frac_bits: 18,
        trees: None,
        depth: None,
    };
    meta.check_options(&opts).unwrap();
    for wrong in [
        PredictOptions {
            frac_bits: 16,
            ..opts.clone()
        },
        PredictOptions {
            dealer: "other".into(),
            ..opts.clone()
        },
        PredictOptions {
            active: "shop".into(),
            passive: "bank".into(),
            ..opts.clone()
        },
    ] {
        assert!(matches!(
            meta.check_options(&wrong),
            Err(TrainError::Options(_))
        ));
    }
    assert!(meta.shared_between("bank", "shop") && meta.shared_between("shop", "bank"));
    assert!(!meta.shared_between("bank", "bank") && !meta.shared_between("bank", "dealer"));
    let header = vec!["id".to_string(), "age".to_string()];
    assert_eq!(meta.missing_features(&header), vec!["income"]);
}
