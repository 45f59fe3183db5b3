//! Checkpoints: what a party keeps on disk so that a job cut off by a crash can resume from
//! its last completed unit instead of from zero, with the same result.
//!
//! A checkpoint holds only what its party holds during the job anyway: its own secret
//! ECDH key and the secret seed of its input order ([`StoreSeed`]), the digest of its own
//! input file, every party's announced set size, and what it has *received* so far (the
//! re-masked points or tags of each stream; for KKRT its own OPRF outputs or OPRF key and
//! the matches found). It never holds another party's key or IDs. The secrets are zeroized
//! when dropped and redacted in `Debug`; every file is created 0600, the state file is
//! replaced atomically (temporary file, fsync, rename) and data files only grow, each
//! append synced before the state that counts it.
//!
//! Units: ECDH checkpoints after every received chunk of every stream
//! ([`crate::Tuning::chunk_points`] points); KKRT after the OPRF (the OT extension is one
//! unit: cut off during it, it runs again) and after every chunk of tags
//! ([`crate::Tuning::kkrt_tags`]). On resume the parties exchange what each already holds
//! and each sender skips it; a party masks with the same key and sends in the same order,
//! so every value it sends again is the one it sent before and nothing new is revealed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::PsiError;
use crate::input::StoreSeed;
use crate::{PsiJob, Tuning};

const MAGIC: &[u8; 5] = b"CPSI1";
const STATE: &str = "state";

/// Where a job keeps its checkpoint, and whether this run resumes from it.
#[derive(Debug, Clone)]
pub struct CheckpointSpec {
    /// The checkpoint's directory (created if missing).
    pub dir: PathBuf,
    /// Resume from the checkpoint in `dir` (an error if there is none); `false`: start
    /// afresh, replacing whatever `dir` holds.
    pub resume: bool,
}

/// The KKRT part of a checkpoint.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KkrtState {
    /// The cuckoo seed of the attempt (the initiator's; 0 until the hello).
    pub seed: u128,
    /// Whether this party holds its OPRF outputs (initiator) or key (responder).
    pub have_oprf: bool,
    /// The peer's set size.
    pub peer_size: u64,
    /// Tags processed by the initiator over the three lists.
    pub tags_done: u64,
    /// Matches recorded by the initiator.
    pub found: u64,
}

struct Meta {
    protocol: u8,
    fingerprint: [u8; 32],
    input_digest: [u8; 32],
    input_len: u64,
    seed: StoreSeed,
    key: [u8; 32],
    sizes: Vec<u64>,
    streams: BTreeMap<(u8, u16), u64>,
    kkrt: KkrtState,
}

impl Drop for Meta {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for Meta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meta")
            .field("protocol", &self.protocol)
            .field("sizes", &self.sizes)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Meta {
    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut m = zeroize::Zeroizing::new(Vec::with_capacity(256));
        m.extend_from_slice(MAGIC);
        m.push(self.protocol);
        m.extend_from_slice(&self.fingerprint);
        m.extend_from_slice(&self.input_digest);
        m.extend_from_slice(&self.input_len.to_le_bytes());
        m.extend_from_slice(&self.seed.0);
        m.extend_from_slice(&self.key);
        m.extend_from_slice(&(self.sizes.len() as u32).to_le_bytes());
        for s in &self.sizes {
            m.extend_from_slice(&s.to_le_bytes());
        }
        m.extend_from_slice(&(self.streams.len() as u32).to_le_bytes());
        for (&(r, o), c) in &self.streams {
            m.push(r);
            m.extend_from_slice(&o.to_le_bytes());
            m.extend_from_slice(&c.to_le_bytes());
        }
        let k = &self.kkrt;
        m.extend_from_slice(&k.seed.to_le_bytes());
        m.push(k.have_oprf as u8);
        m.extend_from_slice(&k.peer_size.to_le_bytes());
        m.extend_from_slice(&k.tags_done.to_le_bytes());
        m.extend_from_slice(&k.found.to_le_bytes());
        m
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Cursor(b);
        if r.take(5)? != MAGIC {
            return None;
        }
        let protocol = r.take(1)?[0];
        let fingerprint = r.array()?;
        let input_digest = r.array()?;
        let input_len = r.u64()?;
        let seed = StoreSeed(r.array()?);
        let key = r.array()?;
        let n = r.u32()? as usize;
        let sizes = (0..n.min(1 << 16))
            .map(|_| r.u64())
            .collect::<Option<Vec<_>>>()?;
        let n = r.u32()? as usize;
        let mut streams = BTreeMap::new();
        for _ in 0..n.min(1 << 16) {
            let round = r.take(1)?[0];
            let o = u16::from_le_bytes(r.array()?);
            streams.insert((round, o), r.u64()?);
        }
        let kkrt = KkrtState {
            seed: u128::from_le_bytes(r.array()?),
            have_oprf: r.take(1)?[0] == 1,
            peer_size: r.u64()?,
            tags_done: r.u64()?,
            found: r.u64()?,
        };
        r.0.is_empty().then_some(Self {
            protocol,
            fingerprint,
            input_digest,
            input_len,
            seed,
            key,
            sizes,
            streams,
            kkrt,
        })
    }
}

/// A bounds-checked reader (checkpoint files are trusted less than memory: no panics).
pub(crate) struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(a)
    }
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
}

/// The checkpoint of one job at this party.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    dir: PathBuf,
    meta: Mutex<Meta>,
    /// True if this run resumes (the state was loaded, not created).
    pub resumed: bool,
}

fn corrupt(dir: &Path) -> PsiError {
    PsiError::Checkpoint(format!(
        "the checkpoint in {} is unreadable; run the job again",
        dir.display()
    ))
}

/// Opens `path` for writing with mode 0600 (created if missing).
pub(crate) fn open_private(path: &Path, truncate: bool) -> Result<File, PsiError> {
    let mut o = OpenOptions::new();
    o.create(true).write(true).read(true).truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path).map_err(|e| PsiError::io(path, e))
}

/// Replaces `path` with `bytes` atomically: a 0600 temporary file, synced, renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PsiError> {
    let tmp = path.with_extension("tmp");
    let mut f = open_private(&tmp, true)?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| PsiError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| PsiError::io(path, e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// SHA-256 of the input file and its length.
fn digest_file(path: &Path) -> Result<([u8; 32], u64), PsiError> {
    let mut f = File::open(path).map_err(|e| PsiError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| PsiError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((h.finalize().into(), len))
}

/// What a checkpoint is bound to: the protocol, output mode, parties, the ID column and
/// the bucket size (which decides the send order).
fn job_fingerprint(job: &PsiJob, tuning: &Tuning) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confide-psi checkpoint v1");
    h.update([job.protocol as u8, job.mode.byte()]);
    for p in std::iter::once(&job.initiator)
        .chain(&job.parties)
        .chain(std::iter::once(&job.id_column))
    {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.update(tuning.bucket_bytes.to_le_bytes());
    h.finalize().into()
}

fn read_meta(dir: &Path) -> Result<Option<Meta>, PsiError> {
    let path = dir.join(STATE);
    match std::fs::read(&path) {
        Ok(mut b) => {
            let m = Meta::decode(&b);
            b.zeroize();
            m.map(Some).ok_or_else(|| corrupt(dir))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PsiError::io(path, e)),
    }
}

/// Fast check, before a resumed job is accepted, that `dir` holds a checkpoint of this
/// job (same protocol, mode, parties, ID column, bucket size) whose input file still has
/// the same length. The full digest of the input is compared when the job runs.
pub fn check(dir: &Path, job: &PsiJob, tuning: &Tuning) -> Result<(), PsiError> {
    let meta = read_meta(dir)?.ok_or_else(|| PsiError::Checkpoint("no checkpoint".into()))?;
    if meta.fingerprint != job_fingerprint(job, tuning) {
        return Err(PsiError::Checkpoint(
            "the job's parties or options differ from the checkpoint's".into(),
        ));
    }
    let len = std::fs::metadata(&job.input)
        .map_err(|e| PsiError::io(&job.input, e))?
        .len();
    if len != meta.input_len {
        return Err(inputs_changed());
    }
    Ok(())
}

fn inputs_changed() -> PsiError {
    PsiError::Checkpoint("inputs changed since the checkpoint".into())
}

impl Checkpoint {
    /// Opens the checkpoint of `spec`: loads it to resume (checking the job and the input's
    /// digest), or starts a fresh one with a new seed and `fresh_key`. Returns the seed of
    /// the input order and the ECDH key bytes to use.
    pub fn open(
        spec: &CheckpointSpec,
        job: &PsiJob,
        tuning: &Tuning,
        fresh_key: &[u8; 32],
    ) -> Result<(Self, StoreSeed, zeroize::Zeroizing<[u8; 32]>), PsiError> {
        let dir = &spec.dir;
        let fingerprint = job_fingerprint(job, tuning);
        let (digest, len) = digest_file(&job.input)?;
        if spec.resume {
            let meta =
                read_meta(dir)?.ok_or_else(|| PsiError::Checkpoint("no checkpoint".into()))?;
            if meta.fingerprint != fingerprint {
                return Err(PsiError::Checkpoint(
                    "the job's parties or options differ from the checkpoint's".into(),
                ));
            }
            if meta.input_digest != digest || meta.input_len != len {
                return Err(inputs_changed());
            }
            let (seed, key) = (meta.seed.clone(), zeroize::Zeroizing::new(meta.key));
            let ck = Self {
                dir: dir.clone(),
                meta: Mutex::new(meta),
                resumed: true,
            };
            return Ok((ck, seed, key));
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| PsiError::io(dir, e))?;
        }
        create_private_dir(dir)?;
        let seed = StoreSeed::random();
        let meta = Meta {
            protocol: job.protocol as u8,
            fingerprint,
            input_digest: digest,
            input_len: len,
            seed: seed.clone(),
            key: *fresh_key,
            sizes: Vec::new(),
            streams: BTreeMap::new(),
            kkrt: KkrtState::default(),
        };
        let ck = Self {
            dir: dir.clone(),
            meta: Mutex::new(meta),
            resumed: false,
        };
        ck.save(&*ck.lock()?)?;
        Ok((ck, seed, zeroize::Zeroizing::new(*fresh_key)))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Meta>, PsiError> {
        self.meta
            .lock()
            .map_err(|_| PsiError::Internal("checkpoint lock poisoned".into()))
    }

    /// Writes the state; the caller holds the lock, so writers never interleave.
    fn save(&self, m: &Meta) -> Result<(), PsiError> {
        write_atomic(&self.dir.join(STATE), &m.encode())
    }

    /// Updates the state with `f` and writes it.
    pub fn update(&self, f: impl FnOnce(&mut KkrtState, &mut Vec<u64>)) -> Result<(), PsiError> {
        let mut m = self.lock()?;
        let Meta { kkrt, sizes, .. } = &mut *m;
        f(kkrt, sizes);
        self.save(&m)
    }

    /// Every party's set size as recorded (empty before the hello).
    pub fn sizes(&self) -> Result<Vec<u64>, PsiError> {
        Ok(self.lock()?.sizes.clone())
    }

    /// The KKRT state.
    pub fn kkrt(&self) -> Result<KkrtState, PsiError> {
        Ok(self.lock()?.kkrt)
    }

    /// Items of stream (`round`, `origin`) held here.
    pub fn received(&self, round: usize, origin: usize) -> Result<u64, PsiError> {
        Ok(self
            .lock()?
            .streams
            .get(&(round as u8, origin as u16))
            .copied()
            .unwrap_or(0))
    }

    /// The path of a data file of this checkpoint.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Opens the data file of stream (`round`, `origin`) for appending, cut to the `held`
    /// items of `item_len` bytes the state counts; returns it and those items' bytes.
    pub fn open_stream(
        &self,
        round: usize,
        origin: usize,
        item_len: usize,
        want_existing: bool,
    ) -> Result<(File, PathBuf, Vec<u8>), PsiError> {
        let held = self.received(round, origin)?;
        let path = self.path(&format!("recv-{round}-{origin}"));
        let (f, existing) = open_cut(&path, held * item_len as u64, want_existing)?;
        Ok((f, path, existing))
    }

    /// Appends `data` (`items` items) to stream (`round`, `origin`)'s file, syncs it, then
    /// records the new count.
    pub fn append(
        &self,
        f: &mut File,
        round: usize,
        origin: usize,
        data: &[u8],
        items: u64,
    ) -> Result<(), PsiError> {
        let path = self.path(&format!("recv-{round}-{origin}"));
        f.write_all(data)
            .and_then(|()| f.sync_data())
            .map_err(|e| PsiError::io(&path, e))?;
        let mut m = self.lock()?;
        *m.streams.entry((round as u8, origin as u16)).or_insert(0) += items;
        self.save(&m)
    }
}

/// Opens `path` (0600) cut to `len` bytes, positioned at its end; with `want`, also
/// returns those bytes. A file shorter than `len` is a corrupt checkpoint.
pub(crate) fn open_cut(path: &Path, len: u64, want: bool) -> Result<(File, Vec<u8>), PsiError> {
    let mut f = open_private(path, false)?;
    let have = f.metadata().map_err(|e| PsiError::io(path, e))?.len();
    if have < len {
        return Err(PsiError::Checkpoint(format!(
            "the checkpoint file {} is shorter than its state says; run the job again",
            path.display()
        )));
    }
    f.set_len(len).map_err(|e| PsiError::io(path, e))?;
    let mut existing = Vec::new();
    if want {
        f.seek(SeekFrom::Start(0))
            .and_then(|_| f.read_to_end(&mut existing))
            .map_err(|e| PsiError::io(path, e))?;
    }
    f.seek(SeekFrom::End(0))
        .map_err(|e| PsiError::io(path, e))?;
    Ok((f, existing))
}

fn create_private_dir(dir: &Path) -> Result<(), PsiError> {
    std::fs::create_dir_all(dir).map_err(|e| PsiError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| PsiError::io(dir, e))?;
    }
    Ok(())
}

/// The resume message of ECDH: for each stream this party receives from the peer, the
/// items it holds. `(round, origin, count)`.
pub(crate) fn encode_held(held: &[(usize, usize, u64)]) -> Vec<u8> {
    let mut m = b"RSM1".to_vec();
    m.extend_from_slice(&(held.len() as u32).to_le_bytes());
    for &(r, o, c) in held {
        m.push(r as u8);
        m.extend_from_slice(&(o as u16).to_le_bytes());
        m.extend_from_slice(&c.to_le_bytes());
    }
    m
}

/// Decodes [`encode_held`]; `None` if malformed.
pub(crate) fn decode_held(b: &[u8]) -> Option<Vec<(usize, usize, u64)>> {
    let mut r = Cursor(b);
    if r.take(4)? != b"RSM1" {
        return None;
    }
    let n = r.u32()? as usize;
    if n > 64 {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let round = r.take(1)?[0] as usize;
        let o = u16::from_le_bytes(r.array()?) as usize;
        out.push((round, o, r.u64()?));
    }
    r.0.is_empty().then_some(out)
}
