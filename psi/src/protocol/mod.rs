//! The protocol (see the crate docs): hello, n-1 masking rounds ([`exchange`]), delivery
//! of the fully masked sets and combination ([`deliver`]), output ([`output`]).

mod deliver;
mod exchange;
mod output;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use confide_mpc::transport::{Transport, TransportError};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::{BadPoint, JobKey, TAG_LEN, Tag};
use crate::error::PsiError;
use crate::exec::{blocking, cpu};
use crate::input::{self, IdStore, InputStats, Tuning};
use crate::route::{Route, check_parties};
use crate::wire::{self, Chunk, Items, Msg};
use crate::{OutputMode, Progress, Protocol, PsiJob, PsiReport, kkrt};

/// The transport plus byte counters.
struct Net<'a, T> {
    t: &'a T,
    sent: AtomicU64,
    received: AtomicU64,
}

impl<T: Transport> Net<'_, T> {
    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), PsiError> {
        self.sent.fetch_add(msg.len() as u64, Ordering::Relaxed);
        Ok(self.t.send(to, msg).await?)
    }

    async fn recv(&self, from: &str) -> Result<Vec<u8>, PsiError> {
        let m = self.t.recv(from).await?;
        self.received.fetch_add(m.len() as u64, Ordering::Relaxed);
        Ok(m)
    }
}

/// The KKRT protocol runs its OT extension over the counted transport.
impl<T: Transport> Transport for Net<'_, T> {
    fn me(&self) -> &str {
        self.t.me()
    }

    fn peers(&self) -> Vec<String> {
        self.t.peers()
    }

    async fn send(&self, to: &str, msg: Vec<u8>) -> Result<(), TransportError> {
        self.sent.fetch_add(msg.len() as u64, Ordering::Relaxed);
        self.t.send(to, msg).await
    }

    async fn recv(&self, from: &str) -> Result<Vec<u8>, TransportError> {
        let m = self.t.recv(from).await?;
        self.received.fetch_add(m.len() as u64, Ordering::Relaxed);
        Ok(m)
    }
}

/// This party's digests for KKRT, in send order (bucket by bucket).
fn digests(store: &IdStore) -> Result<Vec<u128>, PsiError> {
    let mut xs = Vec::with_capacity(store.len() as usize);
    for b in 0..store.bucket_count() {
        let ids = store.load(b)?;
        xs.par_extend(ids.par_iter().map(|id| kkrt::digest(id)));
    }
    Ok(xs)
}

/// The fixed facts of one job at this party.
struct Ctx<'a> {
    names: &'a [String],
    n: usize,
    me: usize,
    initiator: usize,
    route: Route,
    mode: OutputMode,
    tuning: Tuning,
    key: Arc<JobKey>,
    dir: PathBuf,
    progress: &'a (dyn Fn(Progress) + Send + Sync),
}

impl Ctx<'_> {
    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
    /// True if this party learns the intersection (or, in `SizeOnly`, its size).
    fn receives(&self) -> bool {
        self.me == self.initiator || (self.n == 2 && self.mode == OutputMode::All)
    }
}

fn validate<T: Transport>(t: &T, job: &PsiJob) -> Result<(usize, usize), PsiError> {
    let initiator = check_parties(&job.parties, &job.initiator, job.mode)?;
    job.protocol
        .check(job.parties.len(), job.mode)
        .map_err(PsiError::InvalidJob)?;
    let Some(me) = job.parties.iter().position(|p| p == t.me()) else {
        return Err(PsiError::InvalidJob(format!(
            "this party `{}` is not in the party list",
            t.me()
        )));
    };
    let mut others: Vec<String> = job
        .parties
        .iter()
        .filter(|p| *p != t.me())
        .cloned()
        .collect();
    others.sort();
    if others != t.peers() {
        return Err(PsiError::InvalidJob(format!(
            "the party list {:?} does not match the transport's peers {:?}",
            others,
            t.peers()
        )));
    }
    Ok((me, initiator))
}

fn fingerprint(job: &PsiJob) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confide-psi job v2");
    h.update([job.mode.byte()]);
    for p in std::iter::once(&job.initiator).chain(&job.parties) {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// Runs this party's side of `job`; returns its report and, if `collect` and this party
/// learns the intersection, the intersection's IDs (sorted).
pub(crate) async fn run<T: Transport>(
    t: &T,
    job: &PsiJob,
    progress: &(dyn Fn(Progress) + Send + Sync),
    key: JobKey,
    tuning: Tuning,
    collect: bool,
) -> Result<(PsiReport, Option<Vec<String>>), PsiError> {
    let start = Instant::now();
    let (me, initiator) = validate(t, job)?;
    input::check_input(&job.input, &job.id_column)?;
    std::fs::create_dir_all(&job.work_dir).map_err(|e| PsiError::io(&job.work_dir, e))?;
    let dir = tempfile::Builder::new()
        .prefix("psi-")
        .tempdir_in(&job.work_dir)
        .map_err(|e| PsiError::io(&job.work_dir, e))?;
    let (store, stats) = read_input(job, dir.path(), tuning, progress).await?;
    let net = Net {
        t,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    };
    let store = Arc::new(store);
    // Each protocol ends with: every peer's set size, the intersection's size and, where
    // this party learns it, one flag per ID of the store.
    let (peer_set_sizes, size, hits) = if job.protocol == Protocol::Kkrt {
        let peer = job.parties[1 - me].clone();
        let role = if me == initiator {
            kkrt::Role::Initiator
        } else {
            kkrt::Role::Responder
        };
        let s = store.clone();
        let xs = blocking(move || digests(&s)).await?;
        let (peer_size, hits) = kkrt::core(&net, &peer, role, job.mode, xs, progress).await?;
        let size = hits
            .as_ref()
            .map(|h| h.iter().filter(|x| **x).count() as u64);
        (BTreeMap::from([(peer, peer_size)]), size, hits)
    } else {
        let n = job.parties.len();
        let ctx = Ctx {
            names: &job.parties,
            n,
            me,
            initiator,
            route: Route::new(n, initiator),
            mode: job.mode,
            tuning,
            key: Arc::new(key),
            dir: dir.path().to_path_buf(),
            progress,
        };
        let sizes = hello(&net, &ctx, job, store.len()).await?;
        let finished = exchange::exchange(&net, &ctx, &store, &sizes).await?;
        let outcome = if n == 2 {
            deliver::two_party(&net, &ctx, &sizes, finished).await?
        } else {
            deliver::multi_party(&net, &ctx, &sizes, finished).await?
        };
        if let Some(size) = outcome.size {
            (ctx.progress)(Progress {
                stage: "matching",
                done: size,
                total: size,
            });
        }
        let peers = (0..n)
            .filter(|&i| i != me)
            .map(|i| (ctx.name(i).to_string(), sizes[i]))
            .collect::<BTreeMap<_, _>>();
        (peers, outcome.size, outcome.hits)
    };
    let (output, ids) = match hits {
        Some(hits) => {
            let path = job.output.clone();
            let (s, p) = (store.clone(), path.clone());
            let ids =
                blocking(move || output::write_matches(&s, &hits, p.as_deref(), collect)).await?;
            (path, ids)
        }
        None => (None, None),
    };
    drop(dir);
    let report = PsiReport {
        input: stats,
        peer_set_sizes,
        intersection_size: size,
        output,
        elapsed: start.elapsed(),
        bytes_sent: net.sent.load(Ordering::Relaxed),
        bytes_received: net.received.load(Ordering::Relaxed),
    };
    Ok((report, ids))
}

async fn read_input(
    job: &PsiJob,
    dir: &Path,
    tuning: Tuning,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(IdStore, InputStats), PsiError> {
    let (path, column, dir) = (job.input.clone(), job.id_column.clone(), dir.to_path_buf());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut task = tokio::task::spawn_blocking(move || {
        // One message per 65536 rows: the channel stays small.
        input::prepare(&path, &column, &dir, &tuning, &|done, _| {
            let _ = tx.send(done);
        })
    });
    let report = |done| {
        progress(Progress {
            stage: "reading input",
            done,
            total: 0,
        })
    };
    loop {
        tokio::select! {
            res = &mut task => {
                let (store, stats) = res.map_err(|e| PsiError::Internal(format!("input task failed: {e}")))??;
                report(stats.rows);
                return Ok((store, stats));
            }
            Some(done) = rx.recv() => report(done),
        }
    }
}

/// Exchanges hellos with every peer; returns every party's set size.
async fn hello<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    job: &PsiJob,
    my_size: u64,
) -> Result<Vec<u64>, PsiError> {
    let fp = fingerprint(job);
    let msg = wire::hello(job.mode.byte(), ctx.n as u8, &fp, my_size);
    let peers: Vec<usize> = (0..ctx.n).filter(|&i| i != ctx.me).collect();
    // One small message per link: it fits the link's buffer, so sending all first is safe.
    for &p in &peers {
        net.send(ctx.name(p), msg.clone()).await?;
    }
    let mut sizes = vec![0u64; ctx.n];
    sizes[ctx.me] = my_size;
    for &p in &peers {
        let peer = ctx.name(p);
        let m = net.recv(peer).await?;
        match wire::decode(peer, &m)? {
            Msg::Hello {
                version,
                mode,
                parties,
                fingerprint,
                set_size,
            } => {
                if version != wire::VERSION {
                    return Err(PsiError::malformed(
                        peer,
                        format!("protocol version {version}"),
                    ));
                }
                if set_size > MAX_SET_SIZE {
                    return Err(PsiError::malformed(
                        peer,
                        format!("announced a set of {set_size} IDs (the limit is {MAX_SET_SIZE})"),
                    ));
                }
                if mode != job.mode.byte() || parties as usize != ctx.n || fingerprint != fp {
                    return Err(PsiError::malformed(
                        peer,
                        "the peer's job (parties, initiator or output mode) differs from ours",
                    ));
                }
                sizes[p] = set_size;
            }
            _ => return Err(PsiError::malformed(peer, "expected a hello message")),
        }
    }
    Ok(sizes)
}

fn bad_point(peer: &str, e: BadPoint, offset: u64) -> PsiError {
    PsiError::malformed(
        peer,
        format!(
            "item {} is not a valid ristretto255 point",
            offset + e.index as u64
        ),
    )
}

/// Capacity to reserve for `announced` items: the peer's announced size, capped so that a
/// wrong announcement cannot make us allocate more than ~200 MB up front.
/// Largest set a peer may announce (2^36 IDs: far beyond any real alliance, small enough
/// that sums of sizes and byte counts cannot overflow).
pub const MAX_SET_SIZE: u64 = 1 << 36;

fn reserve(announced: u64) -> usize {
    announced.min(1 << 24) as usize
}

/// An error raised inside a rayon task, before the peer's name is attached.
enum TaskError {
    Point(BadPoint, u64),
    Other(PsiError),
}

impl TaskError {
    fn into_error(self, peer: &str) -> PsiError {
        match self {
            Self::Point(e, offset) => bad_point(peer, e, offset),
            Self::Other(e) => e,
        }
    }
}

async fn send_tags<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    to: usize,
    stream: u8,
    origin: usize,
    tags: &[Tag],
) -> Result<(), PsiError> {
    let to = ctx.name(to);
    for chunk in tags.chunks(ctx.tuning.chunk_tags.max(1)) {
        net.send(to, wire::tags(stream, origin as u16, chunk))
            .await?;
    }
    net.send(to, wire::end(stream, origin as u16, tags.len() as u64))
        .await
}

/// Receives a tag stream of at most `max` (exactly `max` if `exact`) tags.
async fn recv_tags<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    from: usize,
    stream: u8,
    origin: usize,
    max: u64,
    exact: bool,
) -> Result<Vec<Tag>, PsiError> {
    let from = ctx.name(from);
    let mut tags: Vec<Tag> = Vec::with_capacity(reserve(max));
    loop {
        let m = net.recv(from).await?;
        let context = "while receiving tags";
        match wire::decode_chunk(from, &m, Items::Tags, stream, origin, context)? {
            Chunk::Data(data) => {
                if (tags.len() + data.len() / TAG_LEN) as u64 > max {
                    return Err(PsiError::malformed(from, "more tags than expected"));
                }
                tags.extend(data.chunks_exact(TAG_LEN).map(|c| {
                    let mut t = [0u8; TAG_LEN];
                    t.copy_from_slice(c);
                    t
                }));
            }
            Chunk::End(total) => {
                if total != tags.len() as u64 || (exact && total != max) {
                    return Err(PsiError::malformed(from, "tag stream of the wrong length"));
                }
                (ctx.progress)(Progress {
                    stage: "delivering",
                    done: total,
                    total: max,
                });
                return Ok(tags);
            }
        }
    }
}

async fn shuffled(mut tags: Vec<Tag>) -> Result<Vec<Tag>, PsiError> {
    cpu(move || {
        tags.shuffle(&mut rand::rng());
        tags
    })
    .await
}
