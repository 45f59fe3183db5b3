//! Two-party PSI from the KKRT16 OPRF (Kolesnikov, Kumaresan, Rosulek, Trieu, CCS 2016),
//! over [`confide_ot::oprf`]. Semi-honest; the initiator is the OPRF *receiver*.
//!
//! # Protocol
//!
//! 1. Each party maps each distinct (trimmed, non-blank) ID to 128 bits,
//!    `x̂ = SHA-256(DST ‖ id)[..16]` with the two low bits cleared (kept local: only
//!    keyed values leave a party). The parties exchange their set sizes `n_I`, `n_R`; the
//!    initiator draws a public seed for the cuckoo hash functions
//!    `h_k(x̂) = AES_seed(x̂ | k) mod B`, `k ∈ {0, 1, 2}`.
//! 2. The initiator places its items in a stash-less cuckoo table of `B` bins (see
//!    [`bins`]), item `x̂` in bin `h_k(x̂)` for one `k`, and runs one OPRF instance per bin
//!    on `x̂ | k` (a fresh random input for an empty bin), learning `F_b(x̂ | k)`.
//! 3. The responder evaluates `F_{h_k(ŷ)}(ŷ | k)` for each of its items and each `k`,
//!    truncates them to tags of `ℓ = 40 + ⌈log2(n_I·n_R)⌉` bits and sends three lists (one
//!    per `k`), each sorted by value, so their order says nothing about its input order.
//! 4. The initiator's item in bin `b` via `k` is in the intersection iff its tag is in
//!    list `k`. With output `All` the initiator returns the positions of the matching tags
//!    so the responder learns the intersection too.
//!
//! # What each party learns
//!
//! Both learn the other's number of distinct IDs. The initiator learns the intersection
//! (an unmatched tag is the OPRF of an item it did not query, pseudorandom to it); the
//! responder learns nothing else (OPRF receiver privacy), or with `All`, the
//! intersection. `SizeOnly` is refused: the initiator compares its own OPRF outputs, so it
//! learns *which* of its items match whatever order the responder sends its tags in; a
//! size-only result needs a different protocol (ECDH-PSI offers it).
//!
//! # Parameters
//!
//! * 128-bit computational security from the OT layer (see `confide_ot`).
//! * Tags: each initiator item is compared with the `n_R` tags of one list, so a false
//!   match anywhere has probability ≤ `n_I·n_R·2^-ℓ` = 2^-40 with `ℓ` as above.
//! * Cuckoo table: 3 hash functions, no stash; `B = ⌈1.27·n⌉` bins for `n ≥ 2^12`
//!   (Pinkas, Schneider, Zohner, ACM TOPS 2018, report failure < 2^-40 for `ε = 1.27` at
//!   such sizes), `B = 2n + 128` below. A failed insertion (≥ [`MAX_KICKS`] evictions)
//!   aborts the job rather than retrying with a new seed, which would tell the responder
//!   something about the initiator's set.
//!
//! Memory: the OT extension runs in chunks. The responder holds its digests (16 bytes per
//! item), the OPRF matrix (64 bytes per bin, 81 per initiator item), one sorted tag list
//! at a time (16 bytes per item) and, for output `All`, 12 bytes per item for the
//! positions; the initiator its table, its OPRF outputs and `n_I` tags in hash maps.
//! Measured peaks are in BENCHMARKS.md (10^7 per side: about 1.2 GiB per daemon).

use std::collections::HashMap;
use std::sync::Arc;

use confide_mpc::transport::Transport;
use confide_ot::block::{Block, FixedAes};
use confide_ot::oprf;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, KkrtState};
use crate::exec::cpu;
use crate::{OutputMode, Progress, PsiError, Tuning};

const ID_DST: &[u8] = b"confide-psi/kkrt/id/v1";
/// Responder items evaluated at a time.
const EVAL_CHUNK: usize = 1 << 16;
/// Evictions before a cuckoo insertion fails.
pub const MAX_KICKS: usize = 2000;
/// Largest set size a peer may announce (2^28 items: the OPRF matrix for that many is
/// about 21 GiB, so larger claims are refused before anything is allocated).
pub const MAX_ITEMS: u64 = 1 << 28;
/// Statistical security parameter of the tags.
const LAMBDA: u32 = 40;

/// The party's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Learns the intersection (OPRF receiver).
    Initiator,
    /// Holds the OPRF key.
    Responder,
}

/// Number of cuckoo bins for `n` items.
pub fn bins(n: usize) -> usize {
    if n >= 1 << 12 {
        (n as f64 * 1.27).ceil() as usize
    } else {
        2 * n + 128
    }
}

/// Tag length in bytes for set sizes `a`, `b`.
pub fn tag_bytes(a: u64, b: u64) -> usize {
    let prod = (a.max(1) as u128) * (b.max(1) as u128);
    let log = 128 - (prod - 1).leading_zeros().min(128);
    ((LAMBDA + log) as usize).div_ceil(8).min(16)
}

/// The digest of an ID that the OPRF is evaluated on (kept local).
pub(crate) fn digest(id: &str) -> Block {
    let d = Sha256::new()
        .chain_update(ID_DST)
        .chain_update(id.as_bytes())
        .finalize();
    let mut a = [0u8; 16];
    a.copy_from_slice(&d[..16]);
    u128::from_le_bytes(a) & !3
}

fn clean_ids(ids: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = ids
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

struct Hasher {
    aes: FixedAes,
    bins: u64,
}

impl Hasher {
    fn bins_of(&self, xs: &[Block]) -> Vec<[u32; 3]> {
        xs.par_chunks(1024)
            .flat_map_iter(|c| {
                let mut v: Vec<Block> = c.iter().flat_map(|&x| [x, x | 1, x | 2]).collect();
                self.aes.encrypt(&mut v);
                v.chunks_exact(3)
                    .map(|h| std::array::from_fn(|k| ((h[k] as u64) % self.bins) as u32))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn tag(v: Block, len: usize) -> Block {
    v & (u128::MAX >> (128 - 8 * len))
}

fn u64_at(peer: &str, msg: &[u8], at: usize) -> Result<u64, PsiError> {
    msg.get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        .ok_or_else(|| PsiError::malformed(peer, "KKRT: short header"))
}

/// What both parties must agree on: the protocol, the output mode and who initiates.
fn fingerprint(mode: OutputMode, initiator: &str, responder: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"confide-psi/kkrt/job/v1");
    h.update([mode.byte()]);
    for p in [initiator, responder] {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

fn check_size(peer: &str, n: u64) -> Result<(), PsiError> {
    if n > MAX_ITEMS {
        return Err(PsiError::malformed(
            peer,
            format!("announced a set of {n} IDs (the limit for KKRT is {MAX_ITEMS})"),
        ));
    }
    Ok(())
}

/// The initiator's first message: the job's fingerprint, its set size `n` and the cuckoo
/// hash seed (public, for tests that play a peer).
pub fn hello(mode: OutputMode, initiator: &str, responder: &str, n: u64, seed: Block) -> Vec<u8> {
    let mut m = fingerprint(mode, initiator, responder).to_vec();
    m.extend_from_slice(&n.to_le_bytes());
    m.extend_from_slice(&seed.to_le_bytes());
    m
}

/// The initiator's hello: job fingerprint, set size, cuckoo seed.
const HELLO_LEN: usize = 32 + 8 + 16;
/// The responder's reply: job fingerprint, set size.
const REPLY_LEN: usize = 32 + 8;

/// Runs two-party KKRT16 PSI with `peer` on in-memory IDs (trimmed, blanks dropped,
/// de-duplicated here). Returns the intersection (sorted) for a party that learns it,
/// `None` for one that does not. Jobs on files go through [`crate::run`] with
/// [`crate::Protocol::Kkrt`].
pub async fn run<T: Transport>(
    t: &T,
    peer: &str,
    role: Role,
    mode: OutputMode,
    ids: &[String],
) -> Result<Option<Vec<String>>, PsiError> {
    let ids = clean_ids(ids);
    let xs: Vec<Block> = ids.par_iter().map(|s| digest(s)).collect();
    let (_, hits, _) = core(t, peer, role, mode, xs, &|_| {}, &Tuning::default(), None).await?;
    // `ids` is sorted, so the matches come out sorted.
    Ok(hits.map(|h| {
        ids.iter()
            .zip(h)
            .filter(|(_, hit)| *hit)
            .map(|(id, _)| id.to_string())
            .collect()
    }))
}

/// Why KKRT refuses a size-only job.
pub const SIZE_ONLY_REFUSED: &str = "KKRT does not offer size-only output; use --protocol ecdh";

fn size_only_refused() -> PsiError {
    PsiError::InvalidJob(SIZE_ONLY_REFUSED.into())
}

/// The protocol on this party's distinct digests `xs` (see [`digest`]). Returns the
/// peer's set size, if this party learns the intersection one flag per item of `xs`, and
/// the items a resumed run did not compute again. With a checkpoint, the OPRF and every
/// chunk of tags are units ([`crate::kkrt_resume`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn core<T: Transport>(
    t: &T,
    peer: &str,
    role: Role,
    mode: OutputMode,
    xs: Vec<Block>,
    progress: &(dyn Fn(Progress) + Send + Sync),
    tuning: &Tuning,
    ck: Option<&Checkpoint>,
) -> Result<(u64, Option<Vec<bool>>, u64), PsiError> {
    if mode == OutputMode::SizeOnly {
        return Err(size_only_refused());
    }
    let xs = Arc::new(xs);
    let n = xs.len();
    let stage = |stage, done, total| progress(Progress { stage, done, total });
    let resumed = ck.is_some_and(|c| c.resumed);
    let saved = match ck {
        Some(c) => c.kkrt()?,
        None => KkrtState::default(),
    };
    match role {
        Role::Initiator => {
            let fp = resume_fp(fingerprint(mode, t.me(), peer), resumed);
            let seed: Block = if resumed && saved.seed != 0 {
                saved.seed
            } else {
                rand::random()
            };
            if let Some(c) = ck {
                c.update(|k, _| k.seed = seed)?;
            }
            let mut msg = hello(mode, t.me(), peer, n as u64, seed);
            msg[..32].copy_from_slice(&fp);
            if resumed {
                msg.push(saved.have_oprf as u8);
                msg.extend_from_slice(&saved.tags_done.to_le_bytes());
            }
            t.send(peer, msg).await?;
            let msg = t.recv(peer).await?;
            if msg.len() != REPLY_LEN + resumed as usize {
                return Err(PsiError::malformed(peer, "KKRT: bad reply to the hello"));
            }
            if msg[..32] != fp {
                return Err(job_differs(peer));
            }
            let n_r = u64_at(peer, &msg, 32)?;
            check_size(peer, n_r)?;
            let reuse = resumed && saved.have_oprf && msg[REPLY_LEN] == 1;
            if reuse && saved.peer_size != n_r {
                return Err(peer_changed());
            }
            let nb = bins(n);
            let (outs, table) = if reuse {
                let c = ck.ok_or_else(|| PsiError::Internal("no checkpoint".into()))?;
                crate::kkrt_resume::load_initiator(c, nb, n)?
            } else {
                let x = xs.clone();
                let table = cpu(move || {
                    let hasher = Hasher {
                        aes: FixedAes::new(seed),
                        bins: nb as u64,
                    };
                    cuckoo(&hasher.bins_of(&x), nb)
                })
                .await??;
                let inputs: Vec<Block> = table
                    .iter()
                    .map(|slot| match slot {
                        Some((i, k)) => xs[*i as usize] | *k as u128,
                        None => rand::random(),
                    })
                    .collect();
                stage("oprf", 0, nb as u64);
                let outs = oprf::receive(t, peer, &inputs)
                    .await
                    .map_err(PsiError::from)?;
                drop(inputs);
                if let Some(c) = ck {
                    crate::kkrt_resume::save_initiator(c, &outs, &table, n_r)?;
                }
                (outs, table)
            };
            stage("oprf", nb as u64, nb as u64);
            let len = tag_bytes(n as u64, n_r);
            let mine: Arc<[HashMap<Block, u32>; 3]> = Arc::new(
                cpu(move || {
                    let mut mine: [HashMap<Block, u32>; 3] = Default::default();
                    for (b, slot) in table.iter().enumerate() {
                        if let Some((i, k)) = slot {
                            mine[*k as usize].insert(tag(outs[b], len), *i);
                        }
                    }
                    mine
                })
                .await?,
            );
            let mut hits = vec![false; n];
            let mut positions: Vec<u64> = Vec::new();
            let total = 3 * n_r;
            let done0 = if reuse { saved.tags_done.min(total) } else { 0 };
            if let (true, Some(c)) = (reuse, ck) {
                for (i, p) in crate::kkrt_resume::load_found(c, saved.found)? {
                    *hits.get_mut(i as usize).ok_or_else(|| {
                        PsiError::Checkpoint("the KKRT matches are out of range".into())
                    })? = true;
                    positions.push(p);
                }
                stage("resuming", done0, total);
            }
            for k in 0..3usize {
                let mut pos = if n_r == 0 {
                    0
                } else {
                    done0.saturating_sub(k as u64 * n_r).min(n_r)
                };
                while pos < n_r {
                    let msg = t.recv(peer).await?;
                    let c = msg.len() / len.max(1);
                    if !msg.len().is_multiple_of(len) || c == 0 || c as u64 > n_r - pos {
                        return Err(PsiError::malformed(peer, "KKRT: bad tag chunk"));
                    }
                    let own = mine.clone();
                    let found: Vec<(u32, u64)> = cpu(move || {
                        msg.par_chunks(len * 1024)
                            .enumerate()
                            .flat_map_iter(|(ci, part)| {
                                let own = &own[k];
                                part.chunks_exact(len)
                                    .enumerate()
                                    .filter_map(move |(j, raw)| {
                                        let mut a = [0u8; 16];
                                        a[..len].copy_from_slice(raw);
                                        own.get(&u128::from_le_bytes(a))
                                            .map(|&i| (i, (ci * 1024 + j) as u64))
                                    })
                            })
                            .collect()
                    })
                    .await?;
                    let found: Vec<(u32, u64)> = found
                        .into_iter()
                        .map(|(i, j)| (i, (pos + j) | (k as u64) << 62))
                        .collect();
                    if let Some(ck) = ck {
                        crate::kkrt_resume::record_chunk(ck, &found, c as u64)?;
                    }
                    for (i, p) in found {
                        hits[i as usize] = true;
                        positions.push(p);
                    }
                    pos += c as u64;
                    stage("matching", k as u64 * n_r + pos, total);
                }
            }
            if mode == OutputMode::All {
                positions.sort_unstable();
                let msg: Vec<u8> = positions.iter().flat_map(|p| p.to_le_bytes()).collect();
                t.send(peer, msg).await?;
            }
            let skipped = if reuse { nb as u64 + done0 } else { 0 };
            Ok((n_r, Some(hits), skipped))
        }
        Role::Responder => {
            let fp = resume_fp(fingerprint(mode, peer, t.me()), resumed);
            let hello = t.recv(peer).await?;
            if hello.len() != HELLO_LEN + 9 * resumed as usize {
                return Err(PsiError::malformed(peer, "KKRT: bad hello"));
            }
            if hello[..32] != fp {
                return Err(job_differs(peer));
            }
            let n_i = u64_at(peer, &hello, 32)?;
            let mut sb = [0u8; 16];
            sb.copy_from_slice(&hello[40..56]);
            let seed = u128::from_le_bytes(sb);
            check_size(peer, n_i)?;
            let have = resumed && saved.have_oprf && saved.seed == seed;
            let reuse = have && hello[HELLO_LEN] == 1;
            if reuse && saved.peer_size != n_i {
                return Err(peer_changed());
            }
            let done0 = if reuse {
                u64_at(peer, &hello, HELLO_LEN + 1)?
            } else {
                0
            };
            if done0 > 3 * n as u64 {
                return Err(PsiError::malformed(
                    peer,
                    "KKRT: resume position out of range",
                ));
            }
            if let (false, Some(c)) = (reuse, ck) {
                c.update(|k, _| {
                    k.seed = seed;
                    k.have_oprf = false;
                })?;
            }
            let mut reply = fp.to_vec();
            reply.extend_from_slice(&(n as u64).to_le_bytes());
            if resumed {
                reply.push(have as u8);
            }
            t.send(peer, reply).await?;
            let nb = bins(n_i as usize);
            let key = if reuse {
                let c = ck.ok_or_else(|| PsiError::Internal("no checkpoint".into()))?;
                Arc::new(crate::kkrt_resume::load_responder(c, nb)?)
            } else {
                stage("oprf", 0, nb as u64);
                let key = oprf::send(t, peer, nb).await.map_err(PsiError::from)?;
                if let Some(c) = ck {
                    crate::kkrt_resume::save_responder(c, &key, n_i)?;
                }
                Arc::new(key)
            };
            stage("oprf", nb as u64, nb as u64);
            let hasher = Arc::new(Hasher {
                aes: FixedAes::new(seed),
                bins: nb as u64,
            });
            let len = tag_bytes(n_i, n as u64);
            if len > 12 {
                // Unreachable: both sets are at most MAX_ITEMS (checked above).
                return Err(PsiError::Internal("KKRT tags longer than 96 bits".into()));
            }
            let chunk = tuning.kkrt_tags.max(1);
            // For output `All`: per hash function, the item behind each sent position.
            let mut order: Vec<Vec<u32>> = Vec::with_capacity(3);
            for k in 0..3usize {
                let from = done0.saturating_sub((k * n) as u64).min(n as u64) as usize;
                if from == n && mode != OutputMode::All {
                    // Every tag of this list reached the initiator before the restart.
                    continue;
                }
                let (x, key, h) = (xs.clone(), key.clone(), hasher.clone());
                // One list per hash function: (tag << 32) | item, sorted, so the tags go
                // out in value order and the item behind each position stays here. 16
                // bytes per item: the evaluation runs in chunks.
                let list = cpu(move || {
                    let mut list = vec![0u128; x.len()];
                    list.par_chunks_mut(EVAL_CHUNK)
                        .zip(x.par_chunks(EVAL_CHUNK))
                        .enumerate()
                        .try_for_each(|(ci, (out, xs))| {
                            let queries: Vec<(usize, Block)> = xs
                                .iter()
                                .zip(h.bins_of(xs))
                                .map(|(&x, c)| (c[k] as usize, x | k as u128))
                                .collect();
                            let vals = key.eval(&queries)?;
                            for (j, (o, v)) in out.iter_mut().zip(vals).enumerate() {
                                *o = (tag(v, len) << 32) | (ci * EVAL_CHUNK + j) as u128;
                            }
                            Some(())
                        })?;
                    list.par_sort_unstable();
                    Some(list)
                })
                .await?
                .ok_or_else(|| PsiError::Internal("bin out of range".into()))?;
                let mut sent = from;
                for part in list[from..].chunks(chunk) {
                    let mut msg = Vec::with_capacity(part.len() * len);
                    for p in part {
                        msg.extend_from_slice(&(p >> 32).to_le_bytes()[..len]);
                    }
                    t.send(peer, msg).await?;
                    sent += part.len();
                    stage("sending tags", (k * n + sent) as u64, 3 * n as u64);
                }
                if mode == OutputMode::All {
                    order.push(list.iter().map(|&p| p as u32).collect());
                }
            }
            let skipped = if reuse { nb as u64 + done0 } else { 0 };
            if mode != OutputMode::All {
                return Ok((n_i, None, skipped));
            }
            let msg = t.recv(peer).await?;
            if msg.len() % 8 != 0 {
                return Err(PsiError::malformed(peer, "KKRT: bad result"));
            }
            let mut hits = vec![false; n];
            for p in msg.chunks_exact(8) {
                let p = u64_at(peer, p, 0)?;
                let (k, pos) = ((p >> 62) as usize, (p & ((1 << 62) - 1)) as usize);
                let i = order
                    .get(k)
                    .and_then(|l| l.get(pos))
                    .ok_or_else(|| PsiError::malformed(peer, "KKRT: result out of range"))?;
                hits[*i as usize] = true;
            }
            Ok((n_i, Some(hits), skipped))
        }
    }
}

/// A resumed party's hello differs from a fresh one's: the two never run together.
fn resume_fp(fp: [u8; 32], resumed: bool) -> [u8; 32] {
    if !resumed {
        return fp;
    }
    Sha256::new()
        .chain_update(b"confide-psi/kkrt/resume")
        .chain_update(fp)
        .finalize()
        .into()
}

fn peer_changed() -> PsiError {
    PsiError::Checkpoint(
        "the peer's input changed since the checkpoint (its set size differs)".into(),
    )
}

fn job_differs(peer: &str) -> PsiError {
    PsiError::malformed(
        peer,
        "the peer's job (protocol, initiator or output mode) differs from ours",
    )
}

/// Stash-less cuckoo hashing: for each bin, the item in it and the hash function used.
fn cuckoo(cand: &[[u32; 3]], nb: usize) -> Result<Vec<Option<(u32, u8)>>, PsiError> {
    let mut table: Vec<Option<(u32, u8)>> = vec![None; nb];
    for i in 0..cand.len() {
        let mut cur = (i as u32, 0u8);
        let mut placed = false;
        for _ in 0..MAX_KICKS {
            // Prefer an empty candidate bin.
            let c = &cand[cur.0 as usize];
            if let Some(k) = (0..3u8).find(|&k| table[c[k as usize] as usize].is_none()) {
                table[c[k as usize] as usize] = Some((cur.0, k));
                placed = true;
                break;
            }
            let k = rand::random_range(0..3u8);
            let b = c[k as usize] as usize;
            let evicted = table[b].replace((cur.0, k)).unwrap_or_default();
            cur = (evicted.0, 0);
        }
        if !placed {
            return Err(PsiError::Internal("cuckoo hashing failed".into()));
        }
    }
    Ok(table)
}
