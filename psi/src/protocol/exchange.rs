//! The n-1 masking rounds: in round `r` every set moves one hop along its route
//! ([`crate::route`]) and its receiver raises it to its key. Sets in transit between
//! rounds wait in files under the job's work directory; a set's last hop yields tags.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use confide_mpc::transport::Transport;

use super::{Ctx, Net, TaskError, bad_point, reserve};
use crate::Progress;
use crate::crypto::{POINT_LEN, Tag};
use crate::error::PsiError;
use crate::exec::{blocking, cpu};
use crate::input::IdStore;
use crate::wire::{self, Chunk, Items};

/// What receiving one stream produced.
enum Received {
    /// Re-masked points stored for the next round.
    Forward(PathBuf),
    /// The set's last hop: its fully masked tags, in the order received.
    Tags(Vec<Tag>),
}

type Tick<'a> = &'a (dyn Fn(usize) + Send + Sync);

/// Awaits `f` if there is one.
async fn maybe<R>(
    f: Option<impl Future<Output = Result<R, PsiError>>>,
) -> Result<Option<R>, PsiError> {
    match f {
        Some(f) => f.await.map(Some),
        None => Ok(None),
    }
}

/// Runs the masking rounds; returns the tags of every set this party finishes, by origin.
pub(super) async fn exchange<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    store: &Arc<IdStore>,
    sizes: &[u64],
) -> Result<BTreeMap<usize, Vec<Tag>>, PsiError> {
    let (n, me, route) = (ctx.n, ctx.me, ctx.route);
    let total: u64 = (1..n)
        .flat_map(|r| route.sends(me, r).into_iter().chain(route.receives(me, r)))
        .map(|(o, _)| sizes[o])
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
    let mut pending: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let mut finished = BTreeMap::new();
    for r in 1..n {
        let sends: Vec<(usize, usize, Option<PathBuf>)> = route
            .sends(me, r)
            .into_iter()
            .map(|(o, to)| (o, to, pending.remove(&o)))
            .collect();
        let recvs = route.receives(me, r);
        if sends.len() > 2 || recvs.len() > 2 {
            return Err(PsiError::Internal(
                "more than two streams in a round".into(),
            ));
        }
        let send = |i: usize| {
            sends.get(i).map(|(o, to, from_file)| {
                send_stream(
                    net,
                    ctx,
                    store,
                    r,
                    *o,
                    *to,
                    from_file.as_deref(),
                    sizes,
                    &tick,
                )
            })
        };
        let recv = |i: usize| {
            recvs.get(i).map(|&(o, from)| async move {
                let got = recv_stream(net, ctx, r, o, from, sizes[o], &tick).await?;
                Ok::<_, PsiError>((o, got))
            })
        };
        let (_, _, a, b) = tokio::try_join!(
            maybe(send(0)),
            maybe(send(1)),
            maybe(recv(0)),
            maybe(recv(1))
        )?;
        for (o, got) in [a, b].into_iter().flatten() {
            match got {
                Received::Forward(path) => {
                    pending.insert(o, path);
                }
                Received::Tags(tags) => {
                    finished.insert(o, tags);
                }
            }
        }
    }
    if !pending.is_empty() {
        return Err(PsiError::Internal("a set was not forwarded".into()));
    }
    Ok(finished)
}

/// Sends set `origin` to `to` in round `r`: this party's own set, masked (round 1), or
/// the points received in the previous round, already raised to this party's key.
#[allow(clippy::too_many_arguments)]
async fn send_stream<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    store: &Arc<IdStore>,
    r: usize,
    origin: usize,
    to: usize,
    from_file: Option<&Path>,
    sizes: &[u64],
    tick: Tick<'_>,
) -> Result<(), PsiError> {
    let stream = r as u8;
    let mut sent = 0u64;
    let to = ctx.name(to);
    match from_file {
        None if origin == ctx.me => {
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
        None => return Err(PsiError::Internal("nothing to forward".into())),
        Some(path) => {
            let p = path.to_path_buf();
            let mut reader = BufReader::new(File::open(&p).map_err(|e| PsiError::io(&p, e))?);
            loop {
                let want = ctx.tuning.chunk_points.max(1) * POINT_LEN;
                let p = path.to_path_buf();
                let (rd, data) = blocking(move || {
                    let mut buf = Vec::with_capacity(want);
                    (&mut reader)
                        .take(want as u64)
                        .read_to_end(&mut buf)
                        .map_err(|e| PsiError::io(&p, e))?;
                    Ok((reader, buf))
                })
                .await?;
                reader = rd;
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
}

/// Receives set `origin` from `from` in round `r` and raises it to this party's key: to a
/// file for the next round, or, on the set's last hop, to tags.
async fn recv_stream<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    r: usize,
    origin: usize,
    from: usize,
    announced: u64,
    tick: Tick<'_>,
) -> Result<Received, PsiError> {
    let stream = r as u8;
    let from = ctx.name(from);
    let last = r == ctx.n - 1;
    let path = ctx.dir.join(format!("round-{r}-set-{origin}.pts"));
    let mut writer = if last {
        None
    } else {
        Some(BufWriter::new(
            File::create(&path).map_err(|e| PsiError::io(&path, e))?,
        ))
    };
    let mut tags: Vec<Tag> = Vec::with_capacity(if last { reserve(announced) } else { 0 });
    let mut got = 0u64;
    loop {
        let m = net.recv(from).await?;
        let context = format!("in round {r}");
        match wire::decode_chunk(from, &m, Items::Points, stream, origin, &context)? {
            Chunk::Data(data) => {
                let count = (data.len() / POINT_LEN) as u64;
                if got + count > announced {
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
            Chunk::End(total) => {
                if total != got || got != announced {
                    return Err(PsiError::malformed(
                        from,
                        format!(
                            "stream ended after {got} points ({total} claimed, {announced} announced)"
                        ),
                    ));
                }
                break;
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
}
