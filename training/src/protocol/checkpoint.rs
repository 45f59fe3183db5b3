//! Per-epoch checkpoints of logistic regression: after every epoch each computing party
//! writes its own shares of the model and the optimizer state (w, momentum, Adam's
//! moments, the best epoch's w) and the public schedule (epoch, step size, plateaus, best
//! validation AUC, losses); the dealer writes the epoch count. Nothing of another party:
//! shares are this party's, the rest is what both computing parties learn anyway.
//!
//! Two generations are kept (`state-0`, `state-1`, by epoch parity; each replaced
//! atomically, 0600): a party cut off while the others had already written epoch `e`
//! still has `e-1`, and on resume the parties agree on the latest epoch all of them hold.
//! Shares are zeroized on drop and never printed.
//!
//! The file handling ([`save`], [`load`], [`resume_from`]) is shared with the boosted
//! trees' per-tree checkpoints, through [`Generation`].

use std::io::Write;
use std::path::{Path, PathBuf};

use confide_mpc::{R64, SharedVec, Transport};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::{Result, TrainError};

/// Where a job keeps its training checkpoint and whether this run resumes from it.
#[derive(Debug, Clone)]
pub struct TrainCheckpoint {
    /// The checkpoint folder (created if missing).
    pub dir: PathBuf,
    /// Continue from the checkpoint in `dir` (an error if there is none).
    pub resume: bool,
}

const MAGIC: &[u8; 5] = b"CTRN1";

/// One generation of a checkpoint at one party: logistic regression's state after an
/// epoch, boosted trees' after a tree.
pub(crate) trait Generation: Sized {
    /// What the checkpoint is bound to ([`fingerprint`]).
    fn fingerprint(&self) -> &[u8; 32];
    /// The units done (epochs, trees); the generation file is chosen by its parity.
    fn done(&self) -> u64;
    /// The file's bytes.
    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>>;
    /// The state in `b`, `None` if `b` is not one (never panics).
    fn decode(b: &[u8]) -> Option<Self>;
}

/// One epoch's state at one party.
pub(super) struct Saved {
    pub fingerprint: [u8; 32],
    pub epoch: u64,
    pub steps: u64,
    pub sched: Vec<u8>,
    pub losses: Vec<f64>,
    pub val_aucs: Vec<f64>,
    /// w, momentum, Adam's m and v, best w (this party's shares; empty at the dealer).
    pub shares: [Vec<u64>; 5],
    pub adam_t: u64,
    /// Why training stopped after this epoch (0: it goes on; see [`stop_code`]).
    pub stop: u8,
}

/// The code of a stop decision in a checkpoint.
pub(super) fn stop_code(s: Option<crate::Stop>) -> u8 {
    match s {
        None => 0,
        Some(crate::Stop::Converged) => 1,
        Some(crate::Stop::Validation) => 2,
        Some(crate::Stop::Cap) => 3,
    }
}

/// The stop decision of [`stop_code`] (`None`: training goes on).
pub(super) fn stop_of(c: u8) -> Option<crate::Stop> {
    match c {
        1 => Some(crate::Stop::Converged),
        2 => Some(crate::Stop::Validation),
        3 => Some(crate::Stop::Cap),
        _ => None,
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for s in &mut self.shares {
            s.zeroize();
        }
    }
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

fn bad(m: impl Into<String>) -> TrainError {
    TrainError::Checkpoint(m.into())
}

/// What a checkpoint is bound to: the job's parameters, this party's seat and its rows.
pub(crate) fn fingerprint(
    params_json: &str,
    seat: u8,
    data: Option<&crate::LocalData>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confide-training checkpoint v1");
    h.update((params_json.len() as u64).to_le_bytes());
    h.update(params_json.as_bytes());
    h.update([seat]);
    if let Some(d) = data {
        for n in &d.feature_names {
            h.update((n.len() as u64).to_le_bytes());
            h.update(n.as_bytes());
        }
        h.update((d.features.len() as u64).to_le_bytes());
        for v in d.features.iter().chain(d.label.iter().flatten()) {
            h.update(v.to_bits().to_le_bytes());
        }
    }
    h.finalize().into()
}

pub(crate) fn raw(v: &SharedVec) -> Vec<u64> {
    v.as_slice().iter().map(|x| x.0).collect()
}

pub(crate) fn vec_of(v: &[u64]) -> SharedVec {
    SharedVec::from_vec(
        v.iter()
            .map(|&x| std::num::Wrapping(x))
            .collect::<Vec<R64>>(),
    )
}

impl Generation for Saved {
    fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    fn done(&self) -> u64 {
        self.epoch
    }

    fn encode(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut m = zeroize::Zeroizing::new(MAGIC.to_vec());
        m.extend_from_slice(&self.fingerprint);
        m.push(self.stop);
        for v in [self.epoch, self.steps, self.adam_t, self.sched.len() as u64] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.extend_from_slice(&self.sched);
        for l in [&self.losses, &self.val_aucs] {
            m.extend_from_slice(&(l.len() as u64).to_le_bytes());
            l.iter()
                .for_each(|x| m.extend_from_slice(&x.to_bits().to_le_bytes()));
        }
        for s in &self.shares {
            m.extend_from_slice(&(s.len() as u64).to_le_bytes());
            s.iter().for_each(|x| m.extend_from_slice(&x.to_le_bytes()));
        }
        m
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader(b);
        if r.take(5)? != MAGIC {
            return None;
        }
        let fingerprint: [u8; 32] = r.take(32)?.try_into().ok()?;
        let stop = r.take(1)?[0];
        let (epoch, steps, adam_t, sl) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let sched = r.take(usize::try_from(sl).ok()?)?.to_vec();
        let losses = r.list()?.into_iter().map(f64::from_bits).collect();
        let val_aucs = r.list()?.into_iter().map(f64::from_bits).collect();
        let mut shares: [Vec<u64>; 5] = Default::default();
        for s in &mut shares {
            *s = r.list()?;
        }
        r.0.is_empty().then_some(Self {
            fingerprint,
            epoch,
            steps,
            sched,
            losses,
            val_aucs,
            shares,
            adam_t,
            stop,
        })
    }
}

/// A bounds-checked reader of a checkpoint file (no panics on a damaged file; nothing
/// allocated beyond the file's length).
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(a)
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn list(&mut self) -> Option<Vec<u64>> {
        let n = usize::try_from(self.u64()?).ok()?;
        let body = self.take(n.checked_mul(8)?)?;
        body.chunks_exact(8)
            .map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .collect()
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| TrainError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut f = o.open(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `s` into `dir` (the generation of the parity of its units done).
pub(crate) fn save<S: Generation>(dir: &Path, s: &S) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    write_private(&dir.join(format!("state-{}", s.done() % 2)), &s.encode())
}

/// Both generations in `dir` that belong to `fingerprint`, newest first.
pub(crate) fn load<S: Generation>(dir: &Path, fingerprint: &[u8; 32]) -> Result<Vec<S>> {
    let mut found = Vec::new();
    let mut other = false;
    for g in 0..2 {
        let Ok(mut b) = std::fs::read(dir.join(format!("state-{g}"))) else {
            continue;
        };
        let s = S::decode(&b);
        b.zeroize();
        match s {
            Some(s) if s.fingerprint() == fingerprint => found.push(s),
            Some(_) => other = true,
            None => {
                return Err(bad(
                    "the training checkpoint is unreadable; run the job again",
                ));
            }
        }
    }
    if found.is_empty() {
        return Err(bad(if other {
            "inputs changed since the checkpoint (or the job's options differ)"
        } else {
            "no checkpoint"
        }));
    }
    found.sort_by_key(|s| std::cmp::Reverse(s.done()));
    Ok(found)
}

/// On resume (`ck.resume`): this party's checkpoint in `ck.dir`, at the newest point
/// (epoch, tree) that every party's checkpoint holds ([`agree`]); `None` without a resume.
/// Every seat must call it, or none.
pub(crate) async fn resume_from<T: Transport, S: Generation>(
    t: &T,
    ck: Option<&TrainCheckpoint>,
    fingerprint: &[u8; 32],
    names: &crate::PartyNames,
) -> Result<Option<S>> {
    let Some(c) = ck.filter(|c| c.resume) else {
        return Ok(None);
    };
    let saved: Vec<S> = load(&c.dir, fingerprint)?;
    let me = t.me().to_string();
    let others: Vec<&str> = [&names.active, &names.passive, &names.dealer]
        .into_iter()
        .map(String::as_str)
        .filter(|p| *p != me)
        .collect();
    let [p, q] = others[..] else {
        return Err(TrainError::Internal("three distinct seats expected".into()));
    };
    let at = agree(t, [p, q], &saved).await?;
    Ok(saved.into_iter().find(|s| s.done() == at))
}

/// On resume: tells the other two parties which points (epochs, trees) this one holds
/// and picks the newest every party holds.
async fn agree<T: Transport, S: Generation>(t: &T, peers: [&str; 2], mine: &[S]) -> Result<u64> {
    let mut msg = Vec::new();
    for g in 0..2 {
        let e = mine.get(g).map_or(u64::MAX, Generation::done);
        msg.extend_from_slice(&e.to_le_bytes());
    }
    for p in peers {
        t.send(p, msg.clone()).await?;
    }
    let have = |m: &[u8]| -> Vec<u64> {
        m.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .filter(|&e| e != u64::MAX)
            .collect()
    };
    let mut sets = vec![have(&msg)];
    for p in peers {
        let m = t.recv(p).await?;
        if m.len() != 16 {
            return Err(TrainError::Peer {
                peer: p.into(),
                reason: "bad resume message".into(),
            });
        }
        sets.push(have(&m));
    }
    let common = sets[0]
        .iter()
        .copied()
        .filter(|e| sets[1..].iter().all(|s| s.contains(e)))
        .max();
    common.ok_or_else(|| bad("the parties' checkpoints have no epoch or tree in common"))
}
