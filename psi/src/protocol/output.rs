//! The intersection's IDs: written to the output file and/or collected in memory.

use std::io::BufWriter;
use std::path::Path;

use crate::error::PsiError;
use crate::input::IdStore;

/// Goes through this party's IDs in send order, bucket by bucket (one bucket in memory at
/// a time); writes those flagged in `hits` to `path` (if any) and, if `collect`, returns
/// them sorted. The file is written to a temporary file next to `path`, then renamed into
/// place: a failed job never leaves a partial output behind.
pub(super) fn write_matches(
    store: &IdStore,
    hits: &[bool],
    path: Option<&Path>,
    collect: bool,
) -> Result<Option<Vec<String>>, PsiError> {
    let mut writer = match path {
        Some(path) => Some((path, open(path)?)),
        None => None,
    };
    let mut ids_out = collect.then(Vec::new);
    let mut at = 0usize;
    for b in 0..store.bucket_count() {
        let ids = store.load(b)?;
        let len = ids.len();
        let flags = hits
            .get(at..at + len)
            .ok_or_else(|| PsiError::Internal("tag count differs from the set size".into()))?;
        for (id, &hit) in ids.into_iter().zip(flags) {
            if !hit {
                continue;
            }
            if let Some((path, w)) = &mut writer {
                w.write_record([&id]).map_err(|e| csv_error(path, e))?;
            }
            if let Some(out) = &mut ids_out {
                out.push(id);
            }
        }
        at += len;
    }
    if at != hits.len() {
        return Err(PsiError::Internal(
            "tag count differs from the set size".into(),
        ));
    }
    if let Some((path, w)) = writer {
        let tmp = w
            .into_inner()
            .map_err(|e| PsiError::io(path, e.into_error()))?
            .into_inner()
            .map_err(|e| PsiError::io(path, e.into_error()))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| PsiError::io(path, e))?;
        tmp.persist(path).map_err(|e| PsiError::io(path, e.error))?;
    }
    if let Some(out) = &mut ids_out {
        out.sort_unstable();
    }
    Ok(ids_out)
}

type Writer = csv::Writer<BufWriter<tempfile::NamedTempFile>>;

fn csv_error(path: &Path, e: csv::Error) -> PsiError {
    PsiError::Csv {
        path: path.to_path_buf(),
        line: e.position().map(|p| p.line()),
        reason: e.to_string(),
    }
}

/// A CSV writer on a temporary file next to `path`, with the header written.
fn open(path: &Path) -> Result<Writer, PsiError> {
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|e| PsiError::io(parent, e))?;
            parent
        }
        None => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| PsiError::io(parent, e))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(tmp));
    w.write_record(["id"]).map_err(|e| csv_error(path, e))?;
    Ok(w)
}
