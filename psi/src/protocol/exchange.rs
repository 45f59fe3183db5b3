//! The n-1 masking rounds: in round `r` every set moves one hop along its route
//! ([`crate::route`]) and its receiver raises it to its key. Sets in transit between
//! rounds wait in files under the job's work directory; a set's last hop yields tags.

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use confide_mpc::transport::Transport;

use super::{Ctx, Net, bad_point, reserve};
use crate::Progress;
use crate::crypto::{POINT_LEN, TAG_LEN, Tag};
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

/// Runs the masking rounds; returns the tags of every set this party finishes, by origin,
/// and the items a resumed run did not compute again.
pub(super) async fn exchange<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    store: &Arc<IdStore>,
    sizes: &[u64],
) -> Result<(BTreeMap<usize, Vec<Tag>>, u64), PsiError> {
    let (n, me, route) = (ctx.n, ctx.me, ctx.route);
    let total: u64 = (1..n)
        .flat_map(|r| route.sends(me, r).into_iter().chain(route.receives(me, r)))
        .map(|(o, _)| sizes[o])
        .sum();
    // On resume: what the receivers of this party's streams hold and what it holds itself.
    let mut skipped: u64 = ctx.skip.values().sum();
    if let Some(ck) = &ctx.ck {
        for r in 1..n {
            for (o, _) in route.receives(me, r) {
                skipped += ck.received(r, o)?;
            }
        }
    }
    if skipped > 0 {
        (ctx.progress)(Progress {
            stage: "resuming",
            done: skipped,
            total,
        });
    }
    let done = AtomicU64::new(skipped);
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
    Ok((finished, skipped))
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
    // Items the receiver already holds (resume): not masked or sent again.
    let skip = ctx.skip.get(&(r, origin)).copied().unwrap_or(0);
    let mut sent = skip;
    let to = ctx.name(to);
    match from_file {
        None if origin == ctx.me => {
            let mut before = 0u64;
            for b in 0..store.bucket_count() {
                let len = store.bucket_len(b);
                if before + len <= skip {
                    before += len;
                    continue;
                }
                let s = store.clone();
                let ids = Arc::new(blocking(move || s.load(b)).await?);
                let mut at = skip.saturating_sub(before) as usize;
                before += len;
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
            let mut file = File::open(&p).map_err(|e| PsiError::io(&p, e))?;
            file.seek(SeekFrom::Start(skip * POINT_LEN as u64))
                .map_err(|e| PsiError::io(&p, e))?;
            let mut reader = BufReader::new(file);
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
            // A checkpoint keeps it: a receiver that restarts may need its tail again.
            if ctx.ck.is_none() {
                std::fs::remove_file(path).map_err(|e| PsiError::io(path, e))?;
            }
        }
    }
    if sent != sizes[origin] {
        return Err(PsiError::Internal("forwarded set changed size".into()));
    }
    net.send(to, wire::end(stream, origin as u16, sent)).await
}

/// Receives set `origin` from `from` in round `r` and raises it to this party's key: to a
/// file for the next round, or, on the set's last hop, to tags. With a checkpoint, each
/// chunk's result is appended to the checkpoint's file of the stream and counted there;
/// a resumed stream starts after what that file holds.
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
    let item_len = if last { TAG_LEN } else { POINT_LEN } as u64;
    let mut tags: Vec<Tag> = Vec::with_capacity(if last { reserve(announced) } else { 0 });
    let mut got = 0u64;
    let (mut file, path) = match &ctx.ck {
        Some(ck) => {
            let (ck, want) = (ck.clone(), last);
            let (f, path, existing) =
                blocking(move || ck.open_stream(r, origin, item_len as usize, want)).await?;
            got = std::fs::metadata(&path)
                .map_err(|e| PsiError::io(&path, e))?
                .len()
                / item_len;
            tags.extend(existing.chunks_exact(TAG_LEN).map(|c| {
                let mut t = [0u8; TAG_LEN];
                t.copy_from_slice(c);
                t
            }));
            (Some(f), path)
        }
        None if last => (None, ctx.dir.join("unused")),
        None => {
            let path = ctx.dir.join(format!("round-{r}-set-{origin}.pts"));
            let f = File::create(&path).map_err(|e| PsiError::io(&path, e))?;
            (Some(f), path)
        }
    };
    if got > announced {
        return Err(PsiError::Checkpoint(
            "the checkpoint holds more items than the stream has".into(),
        ));
    }
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
                let out: Vec<u8> = if last {
                    let t = cpu(move || key.remask_to_tags(&data))
                        .await?
                        .map_err(|e| bad_point(from, e, got))?;
                    let bytes = if file.is_some() {
                        t.concat()
                    } else {
                        Vec::new()
                    };
                    tags.extend(t);
                    bytes
                } else {
                    cpu(move || key.remask(&data))
                        .await?
                        .map_err(|e| bad_point(from, e, got))?
                };
                if let Some(mut f) = file.take() {
                    let (ck, p) = (ctx.ck.clone(), path.clone());
                    let f = blocking(move || {
                        match ck {
                            Some(ck) => ck.append(&mut f, r, origin, &out, count)?,
                            None => f.write_all(&out).map_err(|e| PsiError::io(&p, e))?,
                        }
                        Ok(f)
                    })
                    .await?;
                    file = Some(f);
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
    if last {
        return Ok(Received::Tags(tags));
    }
    if let Some(f) = file {
        f.sync_data().map_err(|e| PsiError::io(&path, e))?;
    }
    Ok(Received::Forward(path))
}
