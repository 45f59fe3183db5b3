//! Row alignment before training or scoring: a two-party KKRT PSI (confide-psi, mode
//! `All`) between the two computing parties, then each party's table in the sorted
//! common-ID order.
//!
//! Both parties learn the common IDs (and each other's ID count); the dealer takes no
//! part. The PSI runs over a transport restricted to the other computing party
//! ([`confide_mpc::transport::OnePeer`]), so it cannot reach the dealer.

use std::path::{Path, PathBuf};

use confide_mpc::Transport;
use confide_psi::{OutputMode, Protocol, PsiJob, PsiReport};

use crate::error::{Result, TrainError};
use crate::protocol::MIN_ROWS;
use crate::table::{LocalData, Table};

/// A party's rows after [`align`].
#[derive(Debug)]
pub struct Aligned {
    /// This party's rows, in the order of `ids`.
    pub data: LocalData,
    /// The common IDs, sorted (the same order at both parties).
    pub ids: Vec<String>,
    /// The PSI's report at this party (set sizes, bytes, time).
    pub psi: PsiReport,
}

/// Runs the PSI on the IDs of `table` with the other computing party and returns this
/// party's rows in the sorted common-ID order.
///
/// * `t` reaches exactly the other computing party (e.g. a
///   [`OnePeer`](confide_mpc::transport::OnePeer) view of the job's transport);
/// * `parties` are the two computing parties in the job's order (the first initiates the
///   PSI); this party is one of them;
/// * `work_dir` is an existing private directory for temporary files (removed on return).
///
/// Fails with [`TrainError::TooFewRows`] below [`MIN_ROWS`] common rows. File work runs on
/// tokio's blocking pool and the PSI's curve work on rayon, never on the async runtime.
pub async fn align<T: Transport>(
    t: &T,
    table: Table,
    parties: [&str; 2],
    work_dir: &Path,
    progress: &(dyn Fn(confide_psi::Progress) + Send + Sync),
) -> Result<Aligned> {
    let me = t.me();
    let other = match parties {
        [a, b] if a == me && b != me => b,
        [a, b] if b == me && a != me => a,
        _ => {
            return Err(TrainError::Params(format!(
                "`{me}` must be exactly one of the two computing parties {parties:?}"
            )));
        }
    };
    if t.peers() != [other] {
        return Err(TrainError::Params(format!(
            "row alignment needs a transport restricted to `{other}`, not to {:?}",
            t.peers()
        )));
    }
    let scratch = tempfile::Builder::new()
        .prefix("align-")
        .tempdir_in(work_dir)
        .map_err(|e| TrainError::io(work_dir, e))?;
    let input = scratch.path().join("ids.csv");
    let output = scratch.path().join("common.csv");
    let (table, input) =
        blocking(move || write_ids(&table.ids, &input).map(|()| (table, input))).await?;
    let job = PsiJob {
        initiator: parties[0].to_string(),
        parties: parties.iter().map(|p| p.to_string()).collect(),
        mode: OutputMode::All,
        protocol: Protocol::Kkrt,
        input,
        id_column: "id".into(),
        output: Some(output.clone()),
        work_dir: scratch.path().to_path_buf(),
    };
    let psi = confide_psi::run(t, &job, progress).await?;
    let pair = [parties[0].to_string(), parties[1].to_string()];
    let (data, ids) = blocking(move || {
        let mut ids = read_ids(&output)?;
        ids.sort_unstable();
        ids.dedup();
        if ids.len() < MIN_ROWS {
            return Err(TrainError::TooFewRows {
                rows: ids.len(),
                min: MIN_ROWS,
                parties: pair,
            });
        }
        Ok((table.align(&ids)?, ids))
    })
    .await?;
    drop(scratch);
    Ok(Aligned { data, ids, psi })
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TrainError::Internal(format!("row alignment: {e}")))?
}

/// The PSI input: a one-column CSV (`id`) of the table's IDs (unique and trimmed already).
fn write_ids(ids: &[String], path: &PathBuf) -> Result<()> {
    let io = |e: csv::Error| TrainError::Io {
        path: path.clone(),
        source: e.into(),
    };
    let mut w = csv::Writer::from_path(path).map_err(io)?;
    w.write_record(["id"]).map_err(io)?;
    for id in ids {
        w.write_record([id]).map_err(io)?;
    }
    w.flush().map_err(|e| TrainError::io(path, e))
}

/// The PSI output: header `id`, one ID per row.
fn read_ids(path: &Path) -> Result<Vec<String>> {
    let err = |e: csv::Error| TrainError::Csv {
        path: path.display().to_string(),
        line: e.position().map_or(0, |p| p.line()),
        column: "id".into(),
        reason: e.to_string(),
    };
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(err)?;
    r.records()
        .map(|rec| rec.map(|r| r.get(0).unwrap_or("").to_string()).map_err(err))
        .collect()
}
