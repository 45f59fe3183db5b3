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

use crate::checkpoint::{Checkpoint, CheckpointSpec, decode_held, encode_held};
use crate::crypto::{BadPoint, JobKey, TAG_LEN, Tag};
use crate::error::PsiError;
use crate::exec::{blocking, cpu};
use crate::input::{self, IdStore, InputStats, StoreSeed, Tuning};
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
    /// The job's checkpoint, if it keeps one.
    ck: Option<Arc<Checkpoint>>,
    /// On resume: items of each stream this party sends, by (round, origin), that its
    /// receiver already holds.
    skip: BTreeMap<(usize, usize), u64>,
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
    ck: Option<&CheckpointSpec>,
) -> Result<(PsiReport, Option<Vec<String>>), PsiError> {
    let start = Instant::now();
    let (me, initiator) = validate(t, job)?;
    input::check_input(&job.input, &job.id_column)?;
    let (key, seed, ck) = match ck {
        Some(spec) => {
            let (spec, j, fresh) = (spec.clone(), job.clone(), key.to_bytes());
            let (ck, seed, kb) =
                blocking(move || Checkpoint::open(&spec, &j, &tuning, &fresh)).await?;
            let key = JobKey::from_bytes(&kb)
                .ok_or_else(|| PsiError::Checkpoint("the checkpoint's key is invalid".into()))?;
            (key, seed, Some(Arc::new(ck)))
        }
        None => (key, StoreSeed::random(), None),
    };
    std::fs::create_dir_all(&job.work_dir).map_err(|e| PsiError::io(&job.work_dir, e))?;
    let dir = tempfile::Builder::new()
        .prefix("psi-")
        .tempdir_in(&job.work_dir)
        .map_err(|e| PsiError::io(&job.work_dir, e))?;
    let (store, stats) = read_input(job, dir.path(), tuning, &seed, progress).await?;
    drop(seed);
    let net = Net {
        t,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    };
    let store = Arc::new(store);
    let resumed_items: u64;
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
        let (peer_size, hits, skipped) = kkrt::core(
            &net,
            &peer,
            role,
            job.mode,
            xs,
            progress,
            &tuning,
            ck.as_deref(),
        )
        .await?;
        resumed_items = skipped;
        let size = hits
            .as_ref()
            .map(|h| h.iter().filter(|x| **x).count() as u64);
        (BTreeMap::from([(peer, peer_size)]), size, hits)
    } else {
        let n = job.parties.len();
        let mut ctx = Ctx {
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
            ck: ck.clone(),
            skip: BTreeMap::new(),
        };
        let sizes = hello(&net, &ctx, job, store.len()).await?;
        if let Some(ck) = &ctx.ck {
            ctx.skip = resume_streams(&net, &ctx, ck, &sizes).await?;
        }
        let (finished, skipped) = exchange::exchange(&net, &ctx, &store, &sizes).await?;
        resumed_items = skipped;
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
        resumed_items,
    };
    Ok((report, ids))
}

async fn read_input(
    job: &PsiJob,
    dir: &Path,
    tuning: Tuning,
    seed: &StoreSeed,
    progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(IdStore, InputStats), PsiError> {
    let (path, column, dir) = (job.input.clone(), job.id_column.clone(), dir.to_path_buf());
    let seed = seed.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let mut task = tokio::task::spawn_blocking(move || {
        // One message per 65536 rows: the channel stays small.
        input::prepare_seeded(&path, &column, &dir, &tuning, &seed, &|done, _| {
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
    let mut fp = fingerprint(job);
    if ctx.ck.as_ref().is_some_and(|c| c.resumed) {
        // A resumed party and a fresh one must not run together: they would mix keys.
        fp = Sha256::new()
            .chain_update(b"confide-psi resume")
            .chain_update(fp)
            .finalize()
            .into();
    }
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
                        "the peer's job (parties, initiator, output mode, or whether it resumes) differs from ours",
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

/// Records every party's set size in the checkpoint (a resumed job checks they are the
/// recorded ones) and, on resume, tells each peer which items of its streams this party
/// holds and learns the same of the streams it sends; returns the items to skip.
async fn resume_streams<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    ck: &Arc<Checkpoint>,
    sizes: &[u64],
) -> Result<BTreeMap<(usize, usize), u64>, PsiError> {
    let recorded = ck.sizes()?;
    if !ck.resumed {
        let s = sizes.to_vec();
        let c = ck.clone();
        blocking(move || c.update(|_, sz| *sz = s)).await?;
        return Ok(BTreeMap::new());
    }
    if !recorded.is_empty() && recorded != sizes {
        return Err(PsiError::Checkpoint(
            "a party's input changed since the checkpoint (its set size differs)".into(),
        ));
    }
    if recorded.is_empty() {
        let s = sizes.to_vec();
        let c = ck.clone();
        blocking(move || c.update(|_, sz| *sz = s)).await?;
    }
    let peers: Vec<usize> = (0..ctx.n).filter(|&i| i != ctx.me).collect();
    for &p in &peers {
        let mut held = Vec::new();
        for r in 1..ctx.n {
            for (o, from) in ctx.route.receives(ctx.me, r) {
                if from == p {
                    held.push((r, o, ck.received(r, o)?));
                }
            }
        }
        net.send(ctx.name(p), encode_held(&held)).await?;
    }
    let mut skip = BTreeMap::new();
    for &p in &peers {
        let peer = ctx.name(p);
        let m = net.recv(peer).await?;
        let held = decode_held(&m)
            .ok_or_else(|| PsiError::malformed(peer, "expected the resume message"))?;
        for (r, o, c) in held {
            let mine = (1..ctx.n).contains(&r) && ctx.route.sends(ctx.me, r).contains(&(o, p));
            if !mine || c > sizes[o] {
                return Err(PsiError::malformed(peer, "resume message out of range"));
            }
            skip.insert((r, o), c);
        }
    }
    Ok(skip)
}

/// Capacity to reserve for `announced` items: the peer's announced size, capped so that a
/// wrong announcement cannot make us allocate more than ~200 MB up front.
/// Largest set a peer may announce (2^36 IDs: far beyond any real alliance, small enough
/// that sums of sizes and byte counts cannot overflow).
pub const MAX_SET_SIZE: u64 = 1 << 36;

fn reserve(announced: u64) -> usize {
    announced.min(1 << 24) as usize
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
