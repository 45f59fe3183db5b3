//! KKRT's checkpoint (see [`crate::checkpoint`]): the OPRF is one unit, every chunk of
//! tags another. The initiator keeps its own OPRF outputs and cuckoo table, and the
//! matches it found; the responder keeps its OPRF key. Neither keeps anything of the
//! other's set beyond what the run gave it.

use std::io::Write;

use confide_ot::block::Block;
use confide_ot::oprf::OprfSender;
use zeroize::Zeroize;

use crate::checkpoint::{Checkpoint, Cursor, open_cut, write_atomic};
use crate::error::PsiError;

const OPRF_FILE: &str = "kkrt-oprf";
const FOUND_FILE: &str = "kkrt-found";
const NO_ITEM: u32 = u32::MAX;

/// The cuckoo table: per bin, the item and hash function, if any.
pub(crate) type Table = Vec<Option<(u32, u8)>>;

fn unusable() -> PsiError {
    PsiError::Checkpoint("the KKRT state of the checkpoint is unusable; run the job again".into())
}

/// Saves the initiator's OPRF outputs and table after the OPRF.
pub(crate) fn save_initiator(
    ck: &Checkpoint,
    outs: &[Block],
    table: &Table,
    peer_size: u64,
) -> Result<(), PsiError> {
    let mut b = zeroize::Zeroizing::new(Vec::with_capacity(outs.len() * 21));
    for (o, slot) in outs.iter().zip(table) {
        b.extend_from_slice(&o.to_le_bytes());
        let (i, k) = slot.unwrap_or((NO_ITEM, 0));
        b.extend_from_slice(&i.to_le_bytes());
        b.push(k);
    }
    write_atomic(&ck.path(OPRF_FILE), &b)?;
    open_cut(&ck.path(FOUND_FILE), 0, false)?;
    ck.update(|k, _| {
        k.have_oprf = true;
        k.peer_size = peer_size;
        k.tags_done = 0;
        k.found = 0;
    })
}

/// The initiator's saved OPRF outputs and table for `bins` bins of `items` items.
pub(crate) fn load_initiator(
    ck: &Checkpoint,
    bins: usize,
    items: usize,
) -> Result<(Vec<Block>, Table), PsiError> {
    let path = ck.path(OPRF_FILE);
    let mut b = std::fs::read(&path).map_err(|e| PsiError::io(&path, e))?;
    if b.len() != bins * 21 {
        b.zeroize();
        return Err(unusable());
    }
    let mut outs = Vec::with_capacity(bins);
    let mut table = Vec::with_capacity(bins);
    for rec in b.chunks_exact(21) {
        let mut r = Cursor(rec);
        let (o, i, k) = (r.array::<16>(), r.u32(), r.take(1));
        let (Some(o), Some(i), Some(k)) = (o, i, k) else {
            return Err(unusable());
        };
        outs.push(u128::from_le_bytes(o));
        table.push(if i == NO_ITEM {
            None
        } else if (i as usize) < items && k[0] < 3 {
            Some((i, k[0]))
        } else {
            b.zeroize();
            return Err(unusable());
        });
    }
    b.zeroize();
    Ok((outs, table))
}

/// Saves the responder's OPRF key after the OPRF.
pub(crate) fn save_responder(
    ck: &Checkpoint,
    key: &OprfSender,
    peer_size: u64,
) -> Result<(), PsiError> {
    write_atomic(&ck.path(OPRF_FILE), &key.export())?;
    ck.update(|k, _| {
        k.have_oprf = true;
        k.peer_size = peer_size;
    })
}

/// The responder's saved OPRF key of `bins` instances.
pub(crate) fn load_responder(ck: &Checkpoint, bins: usize) -> Result<OprfSender, PsiError> {
    let path = ck.path(OPRF_FILE);
    let mut b = std::fs::read(&path).map_err(|e| PsiError::io(&path, e))?;
    let key = OprfSender::import(&b);
    b.zeroize();
    key.filter(|k| k.instances() == bins).ok_or_else(unusable)
}

/// The matches the initiator recorded: `(item, position)`.
pub(crate) fn load_found(ck: &Checkpoint, found: u64) -> Result<Vec<(u32, u64)>, PsiError> {
    let (_, b) = open_cut(&ck.path(FOUND_FILE), found * 12, true)?;
    Ok(b.chunks_exact(12)
        .filter_map(|rec| {
            let mut r = Cursor(rec);
            Some((r.u32()?, r.u64()?))
        })
        .collect())
}

/// Appends the matches of one chunk of `tags` tags and counts the chunk as done.
pub(crate) fn record_chunk(
    ck: &Checkpoint,
    found: &[(u32, u64)],
    tags: u64,
) -> Result<(), PsiError> {
    let path = ck.path(FOUND_FILE);
    let have = ck.kkrt()?.found;
    let (mut f, _) = open_cut(&path, have * 12, false)?;
    let mut b = Vec::with_capacity(found.len() * 12);
    for (i, p) in found {
        b.extend_from_slice(&i.to_le_bytes());
        b.extend_from_slice(&p.to_le_bytes());
    }
    f.write_all(&b)
        .and_then(|()| f.sync_data())
        .map_err(|e| PsiError::io(&path, e))?;
    ck.update(|k, _| {
        k.tags_done += tags;
        k.found += found.len() as u64;
    })
}
