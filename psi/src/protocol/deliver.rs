//! After the masking rounds: who sends which fully masked set where, the combination,
//! and the result (see "Protocol" in the crate docs).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use confide_mpc::transport::Transport;
use rayon::prelude::*;

use super::{Ctx, Net, recv_tags, send_tags, shuffled};
use crate::crypto::Tag;
use crate::error::PsiError;
use crate::exec::cpu;
use crate::wire::{self, Chunk, Items, STREAM_OWN, STREAM_RESULT, STREAM_SET};
use crate::{OutputMode, Progress};

/// What this party learns.
pub(super) struct Outcome {
    /// For each of this party's IDs, in its send order: in the intersection? (Only at a
    /// party that learns the intersection itself.)
    pub(super) hits: Option<Vec<bool>>,
    /// The intersection's size, if this party learns it.
    pub(super) size: Option<u64>,
}

impl Outcome {
    const NOTHING: Self = Self {
        hits: None,
        size: None,
    };
}

/// For each tag of `own`, in order: is it in `theirs`?
fn hits(own: Vec<Tag>, mut theirs: Vec<Tag>) -> Vec<bool> {
    theirs.par_sort_unstable();
    own.par_iter()
        .map(|t| theirs.binary_search(t).is_ok())
        .collect()
}

/// The positions in `first` of the tags present in every set of `rest`, ascending.
fn positions_in_all(first: Vec<Tag>, mut rest: Vec<Vec<Tag>>) -> Vec<u64> {
    for s in &mut rest {
        s.par_sort_unstable();
    }
    first
        .par_iter()
        .enumerate()
        .filter(|(_, t)| rest.iter().all(|s| s.binary_search(t).is_ok()))
        .map(|(i, _)| i as u64)
        .collect()
}

fn matching_started(ctx: &Ctx<'_>, total: usize) {
    (ctx.progress)(Progress {
        stage: "matching",
        done: 0,
        total: total as u64,
    });
}

/// Two parties: each holds the other's fully masked set. The responder returns the
/// initiator's tags (in order, or shuffled for `SizeOnly`); in `All` the initiator also
/// returns the responder's tags, in order.
pub(super) async fn two_party<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    sizes: &[u64],
    mut finished: BTreeMap<usize, Vec<Tag>>,
) -> Result<Outcome, PsiError> {
    let (me, peer) = (ctx.me, 1 - ctx.me);
    let held = finished
        .remove(&peer)
        .ok_or_else(|| PsiError::Internal("the peer's set was not finished".into()))?;
    let all = ctx.mode == OutputMode::All;
    let (to_send, theirs) = if peer == ctx.initiator {
        let theirs = all.then(|| held.clone());
        let held = if ctx.mode == OutputMode::SizeOnly {
            shuffled(held).await?
        } else {
            held
        };
        (Some(held), theirs)
    } else {
        (all.then(|| held.clone()), Some(held))
    };
    let send = async {
        match &to_send {
            Some(tags) => send_tags(net, ctx, peer, STREAM_OWN, peer, tags).await,
            None => Ok(()),
        }
    };
    let own = async {
        if ctx.receives() {
            recv_tags(net, ctx, peer, STREAM_OWN, me, sizes[me], true)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    };
    let ((), own) = tokio::try_join!(send, own)?;
    let (Some(own), Some(theirs)) = (own, theirs) else {
        return Ok(Outcome::NOTHING);
    };
    matching_started(ctx, own.len());
    let hits = cpu(move || hits(own, theirs)).await?;
    let size = hits.iter().filter(|&&h| h).count() as u64;
    Ok(Outcome {
        hits: (ctx.mode != OutputMode::SizeOnly).then_some(hits),
        size: Some(size),
    })
}

/// Three or more parties: every finisher sends its set to the combiner, shuffled (the
/// initiator's in the initiator's order in `Initiator` mode); the combiner intersects
/// all `n` sets and sends the initiator the positions, in its send order, of its IDs in
/// the intersection (or, for `SizeOnly`, only their number).
pub(super) async fn multi_party<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    sizes: &[u64],
    finished: BTreeMap<usize, Vec<Tag>>,
) -> Result<Outcome, PsiError> {
    let (me, i0, combiner) = (ctx.me, ctx.initiator, ctx.route.combiner());
    if me == combiner {
        let mut sets = finished;
        for (o, &size) in sizes.iter().enumerate() {
            if let Entry::Vacant(slot) = sets.entry(o) {
                let from = ctx.route.finisher(o);
                slot.insert(recv_tags(net, ctx, from, STREAM_SET, o, size, true).await?);
            }
        }
        let first = sets
            .remove(&i0)
            .ok_or_else(|| PsiError::Internal("the initiator's set is missing".into()))?;
        let rest: Vec<Vec<Tag>> = sets.into_values().collect();
        matching_started(ctx, first.len());
        let found = cpu(move || positions_in_all(first, rest)).await?;
        let to = ctx.name(i0);
        if ctx.mode == OutputMode::Initiator {
            for chunk in found.chunks(ctx.tuning.chunk_tags.max(1)) {
                net.send(to, wire::indices(STREAM_RESULT, i0 as u16, chunk))
                    .await?;
            }
        }
        let size = found.len() as u64;
        net.send(to, wire::end(STREAM_RESULT, i0 as u16, size))
            .await?;
        return Ok(Outcome {
            hits: None,
            size: Some(size),
        });
    }
    let send = async {
        for (o, tags) in finished {
            let tags = if o == i0 && ctx.mode == OutputMode::Initiator {
                tags
            } else {
                shuffled(tags).await?
            };
            send_tags(net, ctx, combiner, STREAM_SET, o, &tags).await?;
        }
        Ok::<(), PsiError>(())
    };
    let result = async {
        if me == i0 {
            recv_result(net, ctx, sizes).await.map(Some)
        } else {
            Ok(None)
        }
    };
    let ((), result) = tokio::try_join!(send, result)?;
    Ok(result.unwrap_or(Outcome::NOTHING))
}

/// The initiator receives the combiner's result.
async fn recv_result<T: Transport>(
    net: &Net<'_, T>,
    ctx: &Ctx<'_>,
    sizes: &[u64],
) -> Result<Outcome, PsiError> {
    let from = ctx.name(ctx.route.combiner());
    let me = ctx.me;
    // The intersection is no larger than the smallest set.
    let max = sizes.iter().copied().min().unwrap_or(0);
    let wants_ids = ctx.mode == OutputMode::Initiator;
    let mut hits = vec![false; if wants_ids { sizes[me] as usize } else { 0 }];
    let mut got = 0u64;
    let mut next = 0u64;
    loop {
        let m = net.recv(from).await?;
        let context = "while receiving the result";
        match wire::decode_chunk(from, &m, Items::Indices, STREAM_RESULT, me, context)? {
            Chunk::Data(data) if wants_ids => {
                for p in wire::positions(data) {
                    let slot = usize::try_from(p).ok().and_then(|i| hits.get_mut(i));
                    match slot {
                        Some(h) if p >= next => *h = true,
                        _ => {
                            return Err(PsiError::malformed(
                                from,
                                "result positions out of order or out of range",
                            ));
                        }
                    }
                    next = p + 1;
                    got += 1;
                }
                if got > max {
                    return Err(PsiError::malformed(from, "a result larger than a set"));
                }
            }
            Chunk::Data(_) => {
                return Err(PsiError::malformed(from, "positions in a size-only job"));
            }
            Chunk::End(total) => {
                if total > max || (wants_ids && total != got) {
                    return Err(PsiError::malformed(from, "result of the wrong size"));
                }
                return Ok(Outcome {
                    hits: wants_ids.then_some(hits),
                    size: Some(total),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_those_in_every_set_in_order() {
        let t = |b: u8| [b; crate::crypto::TAG_LEN];
        let first = vec![t(5), t(1), t(9), t(3), t(7)];
        let rest = vec![vec![t(9), t(7), t(5), t(2)], vec![t(7), t(5), t(1)]];
        assert_eq!(positions_in_all(first, rest), vec![0, 4]);
        assert_eq!(hits(vec![t(1), t(2)], vec![t(2)]), vec![false, true]);
    }
}
