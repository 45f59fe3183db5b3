//! Row alignment: the PSI between the two computing parties over a one-peer transport,
//! then each table in the sorted common-ID order.

use std::path::Path;

use confide_mpc::transport::OnePeer;
use confide_mpc::{ChannelTransport, memory_mesh};
use confide_training::{Aligned, MIN_ROWS, Table, TrainError, align};
use ndarray::Array2;

/// A table with the given IDs; feature `v` of a row is `scale ×` the number in its ID.
fn table(ids: &[String], scale: f64, label: bool) -> Table {
    let vals: Vec<f64> = ids
        .iter()
        .map(|id| id.trim_start_matches("c").parse::<f64>().unwrap() * scale)
        .collect();
    Table {
        ids: ids.to_vec(),
        feature_names: vec!["v".into()],
        features: Array2::from_shape_vec((ids.len(), 1), vals.clone()).unwrap(),
        label: label.then(|| vals.iter().map(|v| (*v as u64 % 2) as f64).collect()),
    }
}

fn ids(range: impl Iterator<Item = u32>) -> Vec<String> {
    range.map(|i| format!("c{i:03}")).collect()
}

/// Runs `align` at "bank" and "shop" of a mesh that also holds a dealer; returns both results.
fn run_pair(
    a: Table,
    b: Table,
    dir: &Path,
) -> (Result<Aligned, TrainError>, Result<Aligned, TrainError>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mesh: Vec<ChannelTransport> = memory_mesh(&["bank", "shop", "dealer"], 8);
        let ta = OnePeer::new(&mesh[0], "shop").unwrap();
        let tb = OnePeer::new(&mesh[1], "bank").unwrap();
        let quiet = |_p: confide_psi::Progress| {};
        tokio::join!(
            align(&ta, a, ["bank", "shop"], dir, &quiet),
            align(&tb, b, ["bank", "shop"], dir, &quiet)
        )
    })
}

#[test]
fn both_parties_get_the_same_sorted_rows() {
    let dir = tempfile::tempdir().unwrap();
    // bank: c000..c059 in order; shop: c030..c089 reversed. Common: c030..c059.
    let a = table(&ids(0..60), 1.0, true);
    let b = table(&ids((30..90).rev()), 10.0, false);
    let (ra, rb) = run_pair(a, b, dir.path());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let want = ids(30..60);
    assert_eq!(ra.ids, want);
    assert_eq!(rb.ids, want);
    // Each row is the row of that ID.
    let expect_a: Vec<f64> = (30..60).map(f64::from).collect();
    let expect_b: Vec<f64> = (30..60).map(|i| f64::from(i) * 10.0).collect();
    assert_eq!(ra.data.features.column(0).to_vec(), expect_a);
    assert_eq!(rb.data.features.column(0).to_vec(), expect_b);
    let label: Vec<f64> = (30..60).map(|i| f64::from(i % 2)).collect();
    assert_eq!(ra.data.label, Some(label));
    assert_eq!(rb.data.label, None);
    assert_eq!(ra.psi.intersection_size, Some(30));
    // The temporary files are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn ids_that_need_csv_quoting_survive() {
    let dir = tempfile::tempdir().unwrap();
    let odd: Vec<String> = (0..12).map(|i| format!("c{i:03}")).collect();
    let mut a = table(&odd, 1.0, false);
    let mut b = table(&odd, 1.0, false);
    for t in [&mut a, &mut b] {
        t.ids[0] = "x,\"y\"".into();
        t.ids[1] = "line\nbreak".into();
    }
    let (ra, rb) = run_pair(a, b, dir.path());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.ids.len(), 12);
    assert!(ra.ids.contains(&"x,\"y\"".to_string()));
    assert!(ra.ids.contains(&"line\nbreak".to_string()));
    assert_eq!(ra.ids, rb.ids);
}

#[test]
fn too_few_common_rows_is_refused_at_both() {
    let dir = tempfile::tempdir().unwrap();
    let n = u32::try_from(MIN_ROWS).unwrap() - 1;
    let a = table(&ids(0..50), 1.0, true);
    let b = table(&ids(50 - n..100), 1.0, false);
    let (ra, rb) = run_pair(a, b, dir.path());
    for r in [ra, rb] {
        let err = r.unwrap_err();
        assert!(
            matches!(err, TrainError::TooFewRows { rows, min, .. } if rows == n as usize && min == MIN_ROWS),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("only {n} common rows between bank and shop (at least {MIN_ROWS} needed)")
        );
    }
}

#[test]
fn the_transport_must_reach_only_the_other_party() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mesh = memory_mesh(&["bank", "shop", "dealer"], 8);
        let quiet = |_p: confide_psi::Progress| {};
        // The whole job transport (it also reaches the dealer).
        let t = table(&ids(0..20), 1.0, false);
        let err = align(&mesh[0], t.clone(), ["bank", "shop"], dir.path(), &quiet)
            .await
            .unwrap_err();
        assert!(matches!(err, TrainError::Params(_)), "{err:?}");
        // A one-peer view of the wrong party.
        let to_dealer = OnePeer::new(&mesh[0], "dealer").unwrap();
        let err = align(&to_dealer, t.clone(), ["bank", "shop"], dir.path(), &quiet)
            .await
            .unwrap_err();
        assert!(matches!(err, TrainError::Params(_)), "{err:?}");
        // This party is not one of the two.
        let ab = OnePeer::new(&mesh[0], "shop").unwrap();
        let err = align(&ab, t, ["shop", "dealer"], dir.path(), &quiet)
            .await
            .unwrap_err();
        assert!(matches!(err, TrainError::Params(_)), "{err:?}");
    });
}
