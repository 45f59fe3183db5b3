//! Reading the input CSV: hygiene, de-duplication and bucketing to disk.
//!
//! IDs compare as exact strings after trimming surrounding whitespace. Rows whose fields
//! are all blank are skipped; rows with the wrong number of columns or invalid UTF-8 are
//! skipped and counted as malformed; repeated IDs are counted and kept once.
//!
//! An input larger than [`Tuning::bucket_bytes`] is split into buckets on disk by a keyed
//! hash of the ID (SHA-256 under a secret per-job seed that never leaves the party), so
//! that de-duplication holds only one bucket in memory at a time. Each bucket is then
//! de-duplicated and shuffled with a CSPRNG: the concatenation of the buckets is the
//! order in which this party sends its masked set. Bucket membership is a pseudorandom
//! function of the ID under a secret key and each bucket is uniformly shuffled, so the
//! order a peer sees is unrelated to the input order and to the IDs. Both the bucket key
//! and the shuffles derive from the job's secret [`StoreSeed`]: the same seed on the same
//! file gives the same order, which is what lets a job resume from a checkpoint.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::PsiError;

/// How many malformed line numbers a report keeps.
pub const MAX_MALFORMED_LINES: usize = 10;

/// Size knobs (the defaults suit 10^7 rows under 1 GiB; tests shrink them).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Input bytes per on-disk bucket; an input no larger than this stays in memory.
    pub bucket_bytes: u64,
    /// Points per message.
    pub chunk_points: usize,
    /// Tags per message.
    pub chunk_tags: usize,
    /// Tags per message of a KKRT responder (a checkpoint unit of KKRT).
    pub kkrt_tags: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            bucket_bytes: 32 << 20,
            chunk_points: 8192,
            chunk_tags: 32768,
            kkrt_tags: 1 << 16,
        }
    }
}

/// The secret seed of a job's input order (bucket key and shuffles). Never leaves the
/// party; zeroized on drop, redacted in `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StoreSeed(pub(crate) [u8; 32]);

impl std::fmt::Debug for StoreSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSeed(<redacted>)")
    }
}

impl StoreSeed {
    /// A fresh seed from the thread's CSPRNG.
    pub fn random() -> Self {
        Self(rand::random())
    }

    fn derive(&self, what: &[u8], i: u64) -> [u8; 32] {
        Sha256::new()
            .chain_update(b"confide-psi/store/v1")
            .chain_update(self.0)
            .chain_update(what)
            .chain_update(i.to_le_bytes())
            .finalize()
            .into()
    }

    fn bucket_of(&self, id: &str, nb: u64) -> usize {
        let d = Sha256::new()
            .chain_update(b"confide-psi/bucket/v1")
            .chain_update(self.0)
            .chain_update(id.as_bytes())
            .finalize();
        let mut a = [0u8; 8];
        a.copy_from_slice(&d[..8]);
        (u64::from_le_bytes(a) % nb) as usize
    }
}

/// What reading this party's input found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Data rows read (after the header; empty lines are not rows).
    pub rows: u64,
    /// Distinct IDs (this party's set size).
    pub distinct: u64,
    /// Rows whose ID repeats an earlier row's.
    pub duplicates: u64,
    /// Rows skipped because the ID (or the whole row) is blank.
    pub blank: u64,
    /// Rows skipped because they have the wrong number of columns or invalid UTF-8.
    pub malformed: u64,
    /// Line numbers (1-based, as in the file) of the first malformed rows.
    pub malformed_lines: Vec<u64>,
}

/// Checks that `path` is a readable CSV whose header has the column `id_column`.
/// Returns the column's index.
pub fn check_input(path: &Path, id_column: &str) -> Result<usize, PsiError> {
    let mut reader = open(path)?;
    id_index(path, &mut reader, id_column)
}

fn open(path: &Path) -> Result<csv::Reader<File>, PsiError> {
    let file = File::open(path).map_err(|e| PsiError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(file))
}

fn csv_error(path: &Path, e: csv::Error) -> PsiError {
    if e.is_io_error() {
        if let csv::ErrorKind::Io(io) = e.into_kind() {
            return PsiError::io(path, io);
        }
        return PsiError::Internal("csv io error without an io error".into());
    }
    PsiError::Csv {
        path: path.to_path_buf(),
        line: e.position().map(|p| p.line()),
        reason: e.to_string(),
    }
}

fn id_index(path: &Path, reader: &mut csv::Reader<File>, column: &str) -> Result<usize, PsiError> {
    let headers = reader.byte_headers().map_err(|e| csv_error(path, e))?;
    let names: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    names
        .iter()
        .position(|h| h == column.trim())
        .ok_or_else(|| PsiError::MissingColumn {
            path: path.to_path_buf(),
            column: column.to_string(),
            available: names.join(", "),
        })
}

/// One bucket of IDs: in memory, or a file of length-prefixed IDs.
#[derive(Debug)]
enum Bucket {
    Memory(Vec<String>),
    File(PathBuf),
}

/// This party's distinct IDs, in the (shuffled) order it sends them, bucket by bucket.
#[derive(Debug)]
pub struct IdStore {
    buckets: Vec<Bucket>,
    lens: Vec<u64>,
    len: u64,
}

impl IdStore {
    /// Number of distinct IDs.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if there are no IDs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of buckets.
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Number of IDs in bucket `i`.
    pub fn bucket_len(&self, i: usize) -> u64 {
        self.lens.get(i).copied().unwrap_or(0)
    }

    /// Loads bucket `i` (in send order).
    pub fn load(&self, i: usize) -> Result<Vec<String>, PsiError> {
        match &self.buckets[i] {
            Bucket::Memory(ids) => Ok(ids.clone()),
            Bucket::File(path) => read_ids(path),
        }
    }
}

fn write_id(w: &mut impl Write, id: &str, path: &Path) -> Result<(), PsiError> {
    // IDs come from one CSV field of a bucket-sized file: far below 4 GiB.
    w.write_all(&(id.len() as u32).to_le_bytes())
        .and_then(|()| w.write_all(id.as_bytes()))
        .map_err(|e| PsiError::io(path, e))
}

fn read_ids(path: &Path) -> Result<Vec<String>, PsiError> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path).map_err(|e| PsiError::io(path, e))?)
        .read_to_end(&mut bytes)
        .map_err(|e| PsiError::io(path, e))?;
    let mut ids = Vec::new();
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let corrupt = || PsiError::Internal(format!("{}: corrupt bucket file", path.display()));
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(*len) as usize;
        let (id, tail) = tail.split_at_checked(len).ok_or_else(corrupt)?;
        ids.push(String::from_utf8(id.to_vec()).map_err(|_| corrupt())?);
        rest = tail;
    }
    Ok(ids)
}

fn write_ids(path: &Path, ids: &[String]) -> Result<(), PsiError> {
    let mut w = BufWriter::new(File::create(path).map_err(|e| PsiError::io(path, e))?);
    for id in ids {
        write_id(&mut w, id, path)?;
    }
    w.flush().map_err(|e| PsiError::io(path, e))
}

/// Reads, cleans, de-duplicates and shuffles the input. Buckets (if any) are written
/// under `dir`, which the caller keeps alive as long as the store.
pub fn prepare(
    path: &Path,
    id_column: &str,
    dir: &Path,
    tuning: &Tuning,
    progress: &dyn Fn(u64, u64),
) -> Result<(IdStore, InputStats), PsiError> {
    prepare_seeded(path, id_column, dir, tuning, &StoreSeed::random(), progress)
}

/// [`prepare`] with the order drawn from `seed`: the same seed on the same file and tuning
/// gives the same store.
pub fn prepare_seeded(
    path: &Path,
    id_column: &str,
    dir: &Path,
    tuning: &Tuning,
    seed: &StoreSeed,
    progress: &dyn Fn(u64, u64),
) -> Result<(IdStore, InputStats), PsiError> {
    let file_len = std::fs::metadata(path)
        .map_err(|e| PsiError::io(path, e))?
        .len();
    let mut reader = open(path)?;
    let col = id_index(path, &mut reader, id_column)?;
    let columns = reader.byte_headers().map_err(|e| csv_error(path, e))?.len();
    let nb = file_len.div_ceil(tuning.bucket_bytes.max(1)).max(1) as usize;

    enum Sink {
        Memory(Vec<Vec<String>>),
        Files(Vec<(PathBuf, BufWriter<File>)>),
    }
    let mut sink = if nb == 1 {
        Sink::Memory(vec![Vec::new()])
    } else {
        let mut files = Vec::with_capacity(nb);
        for i in 0..nb {
            let p = dir.join(format!("input-{i}.raw"));
            let f = File::create(&p).map_err(|e| PsiError::io(&p, e))?;
            files.push((p, BufWriter::new(f)));
        }
        Sink::Files(files)
    };

    let mut stats = InputStats::default();
    let mut valid = 0u64;
    let mut record = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(path, e)),
        }
        stats.rows += 1;
        if stats.rows.is_multiple_of(1 << 16) {
            progress(stats.rows, 0);
        }
        let line = record.position().map_or(0, |p| p.line());
        let all_blank = record.iter().all(|f| f.trim_ascii().is_empty());
        if all_blank {
            stats.blank += 1;
            continue;
        }
        let utf8 = record.iter().all(|f| std::str::from_utf8(f).is_ok());
        let id = record.get(col).and_then(|f| std::str::from_utf8(f).ok());
        let (Some(id), true, true) = (id, record.len() == columns, utf8) else {
            stats.malformed += 1;
            if stats.malformed_lines.len() < MAX_MALFORMED_LINES {
                stats.malformed_lines.push(line);
            }
            continue;
        };
        let id = id.trim();
        if id.is_empty() {
            stats.blank += 1;
            continue;
        }
        valid += 1;
        match &mut sink {
            Sink::Memory(b) => b[0].push(id.to_string()),
            Sink::Files(files) => {
                let (p, w) = &mut files[seed.bucket_of(id, nb as u64)];
                write_id(w, id, p)?;
            }
        }
    }

    // De-duplication keeps the input order (first occurrences), so that the CSPRNG
    // shuffle below (seeded per bucket from the job's secret seed) is the only thing that
    // decides the send order.
    let dedup = |ids: Vec<String>, bucket: usize| -> Vec<String> {
        let mut rng = ChaCha20Rng::from_seed(seed.derive(b"shuffle", bucket as u64));
        let mut seen: HashSet<&str> = HashSet::with_capacity(ids.len());
        let first: Vec<bool> = ids.iter().map(|id| seen.insert(id.as_str())).collect();
        drop(seen);
        let mut v: Vec<String> = ids
            .into_iter()
            .zip(first)
            .filter_map(|(id, first)| first.then_some(id))
            .collect();
        v.shuffle(&mut rng);
        v
    };
    let mut bucket_lens = Vec::new();
    let buckets = match sink {
        Sink::Memory(mut b) => vec![Bucket::Memory(dedup(b.pop().unwrap_or_default(), 0))],
        Sink::Files(files) => {
            let mut out = Vec::with_capacity(files.len());
            for (i, (raw, mut w)) in files.into_iter().enumerate() {
                w.flush().map_err(|e| PsiError::io(&raw, e))?;
                drop(w);
                let ids = dedup(read_ids(&raw)?, i);
                std::fs::remove_file(&raw).map_err(|e| PsiError::io(&raw, e))?;
                let p = dir.join(format!("input-{i}.ids"));
                write_ids(&p, &ids)?;
                stats.distinct += ids.len() as u64;
                bucket_lens.push(ids.len() as u64);
                out.push(Bucket::File(p));
            }
            out
        }
    };
    if let [Bucket::Memory(ids)] = &buckets[..] {
        stats.distinct = ids.len() as u64;
        bucket_lens.push(stats.distinct);
    }
    stats.duplicates = valid - stats.distinct;
    progress(stats.rows, stats.rows);
    let lens = buckets
        .iter()
        .zip(&bucket_lens)
        .map(|(b, &l)| match b {
            Bucket::Memory(ids) => ids.len() as u64,
            Bucket::File(_) => l,
        })
        .collect();
    Ok((
        IdStore {
            buckets,
            lens,
            len: stats.distinct,
        },
        stats,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ids(store: &IdStore) -> Vec<String> {
        (0..store.bucket_count())
            .flat_map(|i| store.load(i).unwrap())
            .collect()
    }

    #[test]
    fn hygiene_counts_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        let mut data = b"name, phone ,x\n".to_vec();
        data.extend_from_slice(b"a, 123 ,1\n\nb,123,2\n   ,  ,  \nc,456\nd,\xff\xfe,3\n");
        data.extend_from_slice(b"e,,4\nf,  789,5\ng,\"7,8\",6\n");
        std::fs::write(&path, &data).unwrap();
        for bucket_bytes in [1 << 20, 16] {
            let tuning = Tuning {
                bucket_bytes,
                ..Tuning::default()
            };
            let (store, stats) = prepare(&path, "phone", dir.path(), &tuning, &|_, _| {}).unwrap();
            assert_eq!(stats.rows, 8);
            assert_eq!(stats.malformed, 2);
            assert_eq!(stats.malformed_lines, vec![6, 7]);
            assert_eq!(stats.blank, 2);
            assert_eq!(stats.duplicates, 1);
            assert_eq!(stats.distinct, 3);
            let mut ids = all_ids(&store);
            ids.sort();
            assert_eq!(ids, vec!["123", "7,8", "789"]);
            assert_eq!(store.len(), 3);
        }
    }

    #[test]
    fn missing_column_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, "id,name\n1,a\n").unwrap();
        assert_eq!(check_input(&path, "id").unwrap(), 0);
        let err = check_input(&path, "phone").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("phone") && msg.contains("id, name"), "{msg}");
        assert!(matches!(
            check_input(&dir.path().join("nope.csv"), "id"),
            Err(PsiError::Io { .. })
        ));
    }
}
