//! The ring protocol (see the crate docs): hello, n-1 masking rounds, delivery of the
//! fully masked tags, combination, matching.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use confide_mpc::transport::Transport;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::{BadPoint, JobKey, POINT_LEN, Tag};
use crate::error::PsiError;
use crate::input::{self, IdStore, InputStats, Tuning};
use crate::wire::{self, Msg, STREAM_OWN, STREAM_SET, STREAM_UNION};
use crate::{OutputMode, Progress, PsiJob, PsiReport};

/// Runs `f` on the rayon pool and awaits its result without blocking the runtime. A panic
/// in `f` (a bug) becomes an error instead of aborting the process.
async fn cpu<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, PsiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(r)) => Ok(r),
        _ => Err(PsiError::Internal("a rayon task panicked".into())),
    }
}

/// Runs blocking file I/O on tokio's blocking pool.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, PsiError> + Send + 'static,
) -> Result<R, PsiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PsiError::Internal(format!("blocking task failed: {e}")))?
}

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

/// The fixed facts of one job at this party.
struct Ctx<'a> {
    names: &'a [String],
    n: usize,
    me: usize,
    initiator: usize,
    mode: OutputMode,
    tuning: Tuning,
    key: Arc<JobKey>,
    dir: PathBuf,
    progress: &'a (dyn Fn(Progress) + Send + Sync),
}

impl Ctx<'_> {
    fn succ(&self) -> usize {
        (self.me + 1) % self.n
    }
    fn pred(&self) -> usize {
        (self.me + self.n - 1) % self.n
    }
    /// The party that intersects the non-initiators' sets (n ≥ 3).
    fn combiner(&self) -> usize {
        (self.initiator + 1) % self.n
    }
    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
    /// True if this party learns the result.
    fn receives(&self) -> bool {
        self.me == self.initiator || (self.n == 2 && self.mode == OutputMode::All)
    }
}

fn validate<T: Transport>(t: &T, job: &PsiJob) -> Result<(usize, usize), PsiError> {
    let bad = |why: String| Err(PsiError::InvalidJob(why));
    let n = job.parties.len();
    if n < 2 {
        return bad("a PSI needs at least two parties".into());
    }
    if n > 255 {
        return bad("at most 255 parties".into());
    }
    let distinct: BTreeSet<&String> = job.parties.iter().collect();
    if distinct.len() != n {
        return bad("a party is listed twice".into());
    }
    let Some(me) = job.parties.iter().position(|p| p == t.me()) else {
        return bad(format!("this party `{}` is not in the party list", t.me()));
    };
    let Some(initiator) = job.parties.iter().position(|p| *p == job.initiator) else {
        return bad(format!(
            "initiator `{}` is not in the party list",
            job.initiator
        ));
    };
    let mut others: Vec<String> = job
        .parties
        .iter()
        .filter(|p| *p != t.me())
        .cloned()
        .collect();
    others.sort();
    if others != t.peers() {
        return bad(format!(
            "the party list {:?} does not match the transport's peers {:?}",
            others,
            t.peers()
        ));
    }
    if n > 2 && job.mode == OutputMode::All {
        return bad(
            "with three or more parties only the initiator may receive the intersection".into(),
        );
    }
    Ok((me, initiator))
}

fn fingerprint(job: &PsiJob) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confide-psi job v1");
    h.update([job.mode.byte()]);
    for p in std::iter::once(&job.initiator).chain(&job.parties) {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

pub(crate) async fn run<T: Transport>(
    t: &T,
    job: &PsiJob,
    progress: &(dyn Fn(Progress) + Send + Sync),
    key: JobKey,
    tuning: Tuning,
) -> Result<PsiReport, PsiError> {
    let start = Instant::now();
    let (me, initiator) = validate(t, job)?;
    input::check_input(&job.input, &job.id_column)?;
    std::fs::create_dir_all(&job.work_dir).map_err(|e| PsiError::io(&job.work_dir, e))?;
    let dir = tempfile::Builder::new()
        .prefix("psi-")
        .tempdir_in(&job.work_dir)
        .map_err(|e| PsiError::io(&job.work_dir, e))?;
    let (store, stats) = read_input(job, dir.path(), tuning, progress).await?;
    let ctx = Ctx {
        names: &job.parties,
        n: job.parties.len(),
        me,
        initiator,
        mode: job.mode,
        tuning,
        key: Arc::new(key),
        dir: dir.path().to_path_buf(),
        progress,
    };
    let net = Net {
        t,
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
    };
    let store = Arc::new(store);
    let sizes = hello(&net, &ctx, job, store.len()).await?;
    let final_tags = exchange(&net, &ctx, &store, &sizes).await?;
    let result = deliver(&net, &ctx, &sizes, final_tags).await?;
    let intersection_size = match result {
        Some((own, others)) => Some(
            matching(
                &ctx,
                store.clone(),
                own,
                others,
                job.output
                    .clone()
                    .filter(|_| ctx.mode != OutputMode::SizeOnly),
            )
            .await?,
        ),
        None => None,
    };
    let output = job
        .output
        .clone()
        .filter(|_| ctx.receives() && ctx.mode != OutputMode::SizeOnly);
    drop(dir);
    Ok(PsiReport {
        input: stats,
        peer_set_sizes: (0..ctx.n)
            .filter(|&i| i != me)
            .map(|i| (ctx.name(i).to_string(), sizes[i]))
            .collect::<BTreeMap<_, _>>(),
        intersection_size,
        output,
        elapsed: start.elapsed(),
        bytes_sent: net.sent.load(Ordering::Relaxed),
        bytes_received: net.received.load(Ordering::Relaxed),
    })
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
fn reserve(announced: u64) -> usize {
    announced.min(1 << 24) as usize
}

/// What a round's receiving side produces.
enum Received {
    /// Re-masked points stored for the next round.
    Forward(PathBuf),
    /// The final round: tags of the successor's set.
    Tags(Vec<Tag>),
}

/// The n-1 masking rounds; returns the tags of the successor's fully masked set.
async fn exchange<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    store: &Arc<IdStore>,
    sizes: &[u64],
) -> Result<Vec<Tag>, PsiError> {
    let n = ctx.n;
    let total: u64 = (1..n)
        .map(|r| sizes[(ctx.me + n + 1 - r) % n] + sizes[(ctx.me + n - r) % n])
        .sum();
    let done = AtomicU64::new(0);
    let tick = |items: usize| {
        let d = done.fetch_add(items as u64, Ordering::Relaxed) + items as u64;
        (ctx.progress)(Progress {
            stage: "exchanging",
            done: d,
            total,
        });
    };
    let mut forward: Option<PathBuf> = None;
    for r in 1..n {
        let stream = r as u8;
        let send = async {
            let origin = (ctx.me + n + 1 - r) % n;
            let mut sent = 0u64;
            let to = ctx.name(ctx.succ());
            match &forward {
                None => {
                    for b in 0..store.bucket_count() {
                        let s = store.clone();
                        let ids = Arc::new(blocking(move || s.load(b)).await?);
                        let mut at = 0;
                        while at < ids.len() {
                            let end = (at + ctx.tuning.chunk_points).min(ids.len());
                            let (key, chunk) = (ctx.key.clone(), ids.clone());
                            let data = cpu(move || key.mask_ids(&chunk[at..end])).await?;
                            net.send(to, wire::points(stream, origin as u16, &data))
                                .await?;
                            tick(end - at);
                            sent += (end - at) as u64;
                            at = end;
                        }
                    }
                }
                Some(path) => {
                    let p = path.clone();
                    let mut reader =
                        BufReader::new(File::open(&p).map_err(|e| PsiError::io(&p, e))?);
                    loop {
                        let want = ctx.tuning.chunk_points * POINT_LEN;
                        let p = path.clone();
                        let (r, data) = blocking(move || {
                            let mut buf = Vec::with_capacity(want);
                            (&mut reader)
                                .take(want as u64)
                                .read_to_end(&mut buf)
                                .map_err(|e| PsiError::io(&p, e))?;
                            Ok((reader, buf))
                        })
                        .await?;
                        reader = r;
                        if data.is_empty() {
                            break;
                        }
                        net.send(to, wire::points(stream, origin as u16, &data))
                            .await?;
                        tick(data.len() / POINT_LEN);
                        sent += (data.len() / POINT_LEN) as u64;
                    }
                    std::fs::remove_file(path).map_err(|e| PsiError::io(path, e))?;
                }
            }
            if sent != sizes[origin] {
                return Err(PsiError::Internal("forwarded set changed size".into()));
            }
            net.send(to, wire::end(stream, origin as u16, sent)).await
        };
        let recv = async {
            let origin = (ctx.me + n - r) % n;
            let from = ctx.name(ctx.pred());
            let last = r == n - 1;
            let path = ctx.dir.join(format!("round-{r}.pts"));
            let mut writer = if last {
                None
            } else {
                Some(BufWriter::new(
                    File::create(&path).map_err(|e| PsiError::io(&path, e))?,
                ))
            };
            let mut tags: Vec<Tag> =
                Vec::with_capacity(if last { reserve(sizes[origin]) } else { 0 });
            let mut got = 0u64;
            loop {
                let m = net.recv(from).await?;
                match wire::decode(from, &m)? {
                    Msg::Points {
                        stream: s,
                        origin: o,
                        data,
                    } if s == stream && o as usize == origin => {
                        let count = (data.len() / POINT_LEN) as u64;
                        if got + count > sizes[origin] {
                            return Err(PsiError::malformed(from, "more points than announced"));
                        }
                        let (key, data) = (ctx.key.clone(), data.to_vec());
                        match writer.take() {
                            Some(mut w) => {
                                let p = path.clone();
                                let (w, res) = cpu(move || {
                                    let res = match key.remask(&data) {
                                        Ok(out) => w
                                            .write_all(&out)
                                            .map_err(|e| TaskError::Other(PsiError::io(&p, e))),
                                        Err(e) => Err(TaskError::Point(e, got)),
                                    };
                                    (w, res)
                                })
                                .await?;
                                res.map_err(|e| e.into_error(from))?;
                                writer = Some(w);
                            }
                            None => {
                                let t = cpu(move || key.remask_to_tags(&data)).await?;
                                tags.extend(t.map_err(|e| bad_point(from, e, got))?);
                            }
                        }
                        got += count;
                        tick(count as usize);
                    }
                    Msg::End {
                        stream: s,
                        origin: o,
                        total,
                    } if s == stream && o as usize == origin => {
                        if total != got || got != sizes[origin] {
                            return Err(PsiError::malformed(
                                from,
                                format!(
                                    "stream ended after {got} points ({total} claimed, {} announced)",
                                    sizes[origin]
                                ),
                            ));
                        }
                        break;
                    }
                    _ => {
                        return Err(PsiError::malformed(
                            from,
                            format!("unexpected message in round {r}"),
                        ));
                    }
                }
            }
            match writer {
                Some(mut w) => {
                    w.flush().map_err(|e| PsiError::io(&path, e))?;
                    Ok(Received::Forward(path))
                }
                None => Ok(Received::Tags(tags)),
            }
        };
        let ((), received) = tokio::try_join!(send, recv)?;
        match received {
            Received::Forward(p) => forward = Some(p),
            Received::Tags(t) => return Ok(t),
        }
    }
    Err(PsiError::Internal("no final round".into()))
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
        match wire::decode(from, &m)? {
            Msg::Tags {
                stream: s,
                origin: o,
                data,
            } if s == stream && o as usize == origin => {
                if (tags.len() + data.len() / crate::crypto::TAG_LEN) as u64 > max {
                    return Err(PsiError::malformed(from, "more tags than expected"));
                }
                tags.extend(
                    data.chunks_exact(crate::crypto::TAG_LEN)
                        .map(|c| <Tag>::try_from(c).expect("exact chunks")),
                );
            }
            Msg::End {
                stream: s,
                origin: o,
                total,
            } if s == stream && o as usize == origin => {
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
            _ => {
                return Err(PsiError::malformed(
                    from,
                    "unexpected message while receiving tags",
                ));
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

/// Sorts `sets[0]` and keeps the tags present in every other set.
fn intersect_all(mut sets: Vec<Vec<Tag>>) -> Vec<Tag> {
    for s in &mut sets {
        s.par_sort_unstable();
    }
    let Some((first, rest)) = sets.split_first() else {
        return Vec::new();
    };
    first
        .par_iter()
        .filter(|t| rest.iter().all(|s| s.binary_search(t).is_ok()))
        .copied()
        .collect()
}

/// Delivers the fully masked tags; returns (own tags, tags to intersect them with) at a
/// party that learns the result.
async fn deliver<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    sizes: &[u64],
    final_tags: Vec<Tag>,
) -> Result<Option<(Vec<Tag>, Vec<Tag>)>, PsiError> {
    let (n, me, i0) = (ctx.n, ctx.me, ctx.initiator);
    let held = ctx.succ();
    let mut sends: Vec<(usize, u8, Vec<Tag>)> = Vec::new();
    let mut local_other: Option<Vec<Tag>> = None;
    let mut local_set: Option<Vec<Tag>> = None;
    if held == i0 {
        if n == 2 && ctx.mode == OutputMode::All {
            local_other = Some(final_tags.clone());
        }
        let tags = if ctx.mode == OutputMode::SizeOnly {
            shuffled(final_tags).await?
        } else {
            final_tags
        };
        sends.push((i0, STREAM_OWN, tags));
    } else if n == 2 {
        if ctx.mode == OutputMode::All {
            sends.push((held, STREAM_OWN, final_tags.clone()));
        }
        local_other = Some(final_tags);
    } else if me == ctx.combiner() {
        local_set = Some(final_tags);
    } else {
        sends.push((ctx.combiner(), STREAM_SET, shuffled(final_tags).await?));
    }

    let send_all = async {
        for (to, stream, tags) in &sends {
            send_tags(net, ctx, *to, *stream, held, tags).await?;
        }
        Ok::<(), PsiError>(())
    };
    let own = async {
        if ctx.receives() {
            let pred = ctx.pred();
            recv_tags(net, ctx, pred, STREAM_OWN, me, sizes[me], true)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let combine = async {
        if n > 2 && me == ctx.combiner() {
            let mut sets = vec![local_set.take().unwrap_or_default()];
            for o in (0..n).filter(|&o| o != i0 && o != held) {
                let holder = (o + n - 1) % n;
                sets.push(recv_tags(net, ctx, holder, STREAM_SET, o, sizes[o], true).await?);
            }
            let union = cpu(move || intersect_all(sets)).await?;
            let union = shuffled(union).await?;
            send_tags(net, ctx, i0, STREAM_UNION, i0, &union).await?;
            Ok(None)
        } else if n > 2 && me == i0 {
            let max = (0..n)
                .filter(|&o| o != i0)
                .map(|o| sizes[o])
                .min()
                .unwrap_or(0);
            recv_tags(net, ctx, ctx.combiner(), STREAM_UNION, i0, max, false)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let ((), own, union) = tokio::try_join!(send_all, own, combine)?;
    Ok(own.map(|own| (own, union.or(local_other).unwrap_or_default())))
}

/// Intersects this party's tags (in its send order, or shuffled) with `others`; writes the
/// matching IDs to `output`; returns the intersection's size.
async fn matching(
    ctx: &Ctx<'_>,
    store: Arc<IdStore>,
    own: Vec<Tag>,
    others: Vec<Tag>,
    output: Option<PathBuf>,
) -> Result<u64, PsiError> {
    (ctx.progress)(Progress {
        stage: "matching",
        done: 0,
        total: own.len() as u64,
    });
    let mut others = others;
    let (own, others) = cpu(move || {
        others.par_sort_unstable();
        (own, others)
    })
    .await?;
    let hits: Vec<bool> = cpu(move || {
        own.par_iter()
            .map(|t| others.binary_search(t).is_ok())
            .collect()
    })
    .await?;
    let count = hits.iter().filter(|&&h| h).count() as u64;
    if let Some(path) = output {
        blocking(move || write_matches(&path, &store, &hits)).await?;
    }
    (ctx.progress)(Progress {
        stage: "matching",
        done: count,
        total: count,
    });
    Ok(count)
}

/// Writes the matching IDs to a temporary file next to `path`, then renames it into
/// place: a failed job never leaves a partial output behind.
fn write_matches(path: &Path, store: &IdStore, hits: &[bool]) -> Result<(), PsiError> {
    let csv_err = |e: csv::Error| PsiError::Csv {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|e| PsiError::io(parent, e))?;
            parent
        }
        None => Path::new("."),
    };
    let tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| PsiError::io(parent, e))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(tmp));
    w.write_record(["id"]).map_err(csv_err)?;
    let mut at = 0usize;
    for b in 0..store.bucket_count() {
        let ids = store.load(b)?;
        let flags = hits
            .get(at..at + ids.len())
            .ok_or_else(|| PsiError::Internal("tag count differs from the set size".into()))?;
        for (id, &hit) in ids.iter().zip(flags) {
            if hit {
                w.write_record([id]).map_err(csv_err)?;
            }
        }
        at += ids.len();
    }
    let tmp = w
        .into_inner()
        .map_err(|e| PsiError::io(path, e.into_error()))?
        .into_inner()
        .map_err(|e| PsiError::io(path, e.into_error()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| PsiError::io(path, e))?;
    tmp.persist(path).map_err(|e| PsiError::io(path, e.error))?;
    Ok(())
}
