//! The data-independent part of [`Engine::masked_tmul_owned`], computed ahead of time.
//!
//! Each owned product needs, besides the data, dense products of dealer randomness:
//! `U_pᵀR_p` at the dealer and `E_oᵀR_o` at each party (see
//! [`Engine::masked_tmul_owned`]). Neither depends on the data, only on the masked matrix
//! and on the masks `R` (and party 0's share `Z₀` of the dealer's product). These are drawn
//! from their own ChaCha12 streams: batch `b` of calls uses stream `b + 1` of each seed
//! (the engine's other randomness is stream 0), so a batch can be drawn and multiplied
//! at any time, in any order relative to the other protocols, identically at all seats.
//!
//! A caller that knows the widths of its next calls (the boosted trees: one batch per
//! tree, `2, 2, 4, …` vectors per level) announces them with [`Engine::plan_owned`]: a
//! background worker (one per engine, on its own thread pool, one batch at a time in plan
//! order) draws the whole batch's masks and computes its products in one pass over the
//! masked matrix while the protocol runs other phases. Each call then takes its columns of
//! the batch. A call without a plan is a batch of one call, computed on the spot. What goes
//! on the wire is exactly what it was: the same masked values and corrections, each mask
//! used once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::Array2;
use rand_chacha::ChaCha12Rng;
use zeroize::Zeroizing;

use super::cache::MaskedMatrix;
use super::{Engine, State, fill};
use crate::error::{MpcError, Result};
use crate::offload::heavy;
use crate::ring::R64;
use crate::transport::Transport;

/// The dealer's masks `[U₀, U₁]`, shared with its background products.
pub(super) type Masks = Arc<[Array2<R64>; 2]>;

/// A planned batch's precomputed material (row-major, `total` columns each).
pub(super) enum Batch {
    /// The correction `[U₀ᵀR₀; U₁ᵀR₁] − Z₀` for party 1 (`width × total`).
    Dealer { corr: Vec<u64> },
    /// This party's masks `R` (`rows × total`), `E_oᵀR` over the other party's columns
    /// (`cols[o] × total`) and, at party 0, `Z₀` (`width × total`; empty at party 1).
    Party {
        r: Zeroizing<Vec<R64>>,
        other: Vec<R64>,
        z0: Zeroizing<Vec<R64>>,
    },
}

/// One call's columns of a batch: the same fields, `l` columns wide.
pub(super) type Slice = Batch;

/// What a background product works on.
enum Work {
    Dealer {
        u: Masks,
        /// Stream `b + 1` of seed 0 and of seed 1.
        g: Box<[ChaCha12Rng; 2]>,
        c0: usize,
    },
    Party {
        e: Arc<Array2<R64>>,
        g: Box<ChaCha12Rng>,
        first: bool,
        /// Stride of `e`, the other party's first column in it and its column count.
        stride: usize,
        other_at: usize,
        other_c: usize,
    },
}

struct Job {
    work: Work,
    rows: usize,
    width: usize,
    total: usize,
    cancelled: Arc<AtomicBool>,
    reply: Sender<Batch>,
}

/// The matrix a batch was planned for (checked when a call takes its columns).
enum Key {
    Dealer(Masks),
    Party(Arc<Array2<R64>>),
}

struct Planned {
    key: Key,
    widths: Vec<usize>,
    /// Calls served so far and their columns.
    served: usize,
    offset: usize,
    total: usize,
    /// The worker's answer (a `Mutex` only to keep the engine `Sync`).
    result: Mutex<Receiver<Batch>>,
    ready: Option<Batch>,
    cancelled: Arc<AtomicBool>,
}

/// Per-engine state of the products computed ahead.
pub(super) struct Ahead {
    /// Generators at stream 0, position 0: the party's seed, or the dealer's two.
    base: Vec<ChaCha12Rng>,
    /// Batches drawn so far.
    drawn: u64,
    queue: VecDeque<Planned>,
    worker: Option<Sender<Job>>,
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // Batches not started yet are skipped by the worker.
        for p in &self.queue {
            p.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

/// The background thread pool (as many threads as cores; separate from rayon's global
/// pool, so that the protocol's own parallel steps never queue behind a background product).
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("confide-ahead-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

fn compute(job: &Job) -> Batch {
    let (n, d, l) = (job.rows, job.width, job.total);
    match &job.work {
        Work::Dealer { u, g, c0 } => {
            let [mut g0, mut g1] = (**g).clone();
            // Party 0 draws R₁ (the mask for owner 1) and Z₀, party 1 draws R₀.
            let r1 = Zeroizing::new(fill(&mut g0, n * l));
            let z0 = Zeroizing::new(fill(&mut g0, d * l));
            let r0 = Zeroizing::new(fill(&mut g1, n * l));
            let (u0, u1) = (
                u[0].as_slice().unwrap_or_default(),
                u[1].as_slice().unwrap_or_default(),
            );
            let mut z = super::gemm::tmul(u0, *c0, &r0, l);
            z.extend(super::gemm::tmul(u1, d - c0, &r1, l));
            let corr = z.iter().zip(z0.iter()).map(|(a, c)| (a - c).0).collect();
            Batch::Dealer { corr }
        }
        Work::Party {
            e,
            g,
            first,
            stride,
            other_at,
            other_c,
        } => {
            let mut g = (**g).clone();
            let r = Zeroizing::new(fill(&mut g, n * l));
            let z0 = Zeroizing::new(if *first {
                fill(&mut g, d * l)
            } else {
                Vec::new()
            });
            let e = e.as_slice().unwrap_or_default();
            let other = super::gemm::tmul_cols(e, *stride, *other_at, *other_c, &r, l);
            Batch::Party { r, other, z0 }
        }
    }
}

fn run_worker(jobs: Receiver<Job>) {
    for job in jobs {
        if job.cancelled.load(Ordering::Relaxed) {
            continue;
        }
        let batch = match pool() {
            Some(p) => p.install(|| compute(&job)),
            None => compute(&job),
        };
        // The engine may be gone (an abandoned plan): nothing to deliver then.
        let _ = job.reply.send(batch);
    }
}

/// Columns `from..from + l` of a row-major matrix with `total` columns.
fn columns<V: Copy>(m: &[V], total: usize, from: usize, l: usize) -> Vec<V> {
    m.chunks_exact(total.max(1))
        .flat_map(|row| row[from..from + l].iter().copied())
        .collect()
}

impl Ahead {
    pub(super) fn new(seeds: &[[u8; 32]]) -> Self {
        use rand_core::SeedableRng;
        Self {
            base: seeds.iter().map(|s| ChaCha12Rng::from_seed(*s)).collect(),
            drawn: 0,
            queue: VecDeque::new(),
            worker: None,
        }
    }

    fn stream(&self, i: usize, batch: u64) -> Result<ChaCha12Rng> {
        let mut g = self
            .base
            .get(i)
            .cloned()
            .ok_or_else(|| MpcError::Param("no seed for the products ahead".into()))?;
        g.set_stream(batch + 1);
        g.set_word_pos(0);
        Ok(g)
    }

    fn submit(&mut self, job: Job) -> Result<()> {
        let worker = match &self.worker {
            Some(w) => w.clone(),
            None => {
                let (tx, rx) = channel();
                std::thread::Builder::new()
                    .name("confide-ahead".into())
                    .spawn(move || run_worker(rx))
                    .map_err(|e| MpcError::Param(format!("cannot start a worker: {e}")))?;
                self.worker = Some(tx.clone());
                tx
            }
        };
        worker
            .send(job)
            .map_err(|_| MpcError::Param("the background worker stopped".into()))
    }
}

impl<T: Transport> Engine<'_, T> {
    /// Announces that the next calls of [`Self::masked_tmul_owned`] on `m` will multiply
    /// `widths[0]`, `widths[1]`, … vectors, in that order, after the calls already planned:
    /// their masks and dense products are computed in the background (see the module
    /// docs). Every seat must plan the same widths at the same point of the protocol.
    pub fn plan_owned(&mut self, m: &MaskedMatrix, widths: &[usize]) -> Result<()> {
        let total: usize = widths.iter().sum();
        if total == 0 || widths.contains(&0) {
            return Err(MpcError::Param("a planned product of no vector".into()));
        }
        let batch = self.ahead.drawn;
        let (rows, width, c0) = (m.rows, m.width(), m.cols[0]);
        let (work, key) = match &self.state {
            State::Dealer { mask, .. } => {
                let u = mask
                    .clone()
                    .ok_or_else(|| MpcError::Param("no masked matrix".into()))?;
                let g = Box::new([self.ahead.stream(0, batch)?, self.ahead.stream(1, batch)?]);
                let work = Work::Dealer {
                    u: u.clone(),
                    g,
                    c0,
                };
                (work, Key::Dealer(u))
            }
            State::Party { me, .. } => {
                let other_c = m.cols[me.other().index()];
                let other_from = if me.is_first() { c0 } else { 0 };
                let (stride, other_at) = if m.other_only {
                    (other_c, 0)
                } else {
                    (width, other_from)
                };
                let work = Work::Party {
                    e: m.e.clone(),
                    g: Box::new(self.ahead.stream(0, batch)?),
                    first: me.is_first(),
                    stride,
                    other_at,
                    other_c,
                };
                (work, Key::Party(m.e.clone()))
            }
        };
        let (reply, result) = channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.ahead.submit(Job {
            work,
            rows,
            width,
            total,
            cancelled: cancelled.clone(),
            reply,
        })?;
        self.ahead.drawn += 1;
        self.ahead.queue.push_back(Planned {
            key,
            widths: widths.to_vec(),
            served: 0,
            offset: 0,
            total,
            result: Mutex::new(result),
            ready: None,
            cancelled,
        });
        Ok(())
    }

    /// Batches planned so far (including single unplanned calls) and those not used up.
    pub fn owned_plans(&self) -> (u64, usize) {
        (self.ahead.drawn, self.ahead.queue.len())
    }

    /// The next call's columns (`l` wide) of the planned material for `m`; a call
    /// without a plan is planned here as a batch of its own.
    pub(super) fn take_owned(&mut self, m: &MaskedMatrix, l: usize) -> Result<Slice> {
        if self.ahead.queue.is_empty() {
            self.plan_owned(m, &[l])?;
        }
        let mask = match &self.state {
            State::Dealer { mask, .. } => mask.clone(),
            State::Party { .. } => None,
        };
        let p = self
            .ahead
            .queue
            .front_mut()
            .ok_or_else(|| MpcError::Param("no planned product".into()))?;
        let same = match (&p.key, &mask) {
            (Key::Dealer(u), Some(now)) => Arc::ptr_eq(u, now),
            (Key::Party(e), _) => Arc::ptr_eq(e, &m.e),
            (Key::Dealer(_), None) => false,
        };
        if !same || p.widths.get(p.served) != Some(&l) {
            return Err(MpcError::Param(format!(
                "an owned product of {l} vectors does not match the plan {:?} (call {})",
                p.widths, p.served
            )));
        }
        if p.ready.is_none() {
            let rows = m.rows;
            let got = heavy(rows * m.width() * p.total, || {
                p.result.lock().ok().and_then(|r| r.recv().ok())
            });
            p.ready =
                Some(got.ok_or_else(|| MpcError::Param("a background product failed".into()))?);
        }
        let (from, total) = (p.offset, p.total);
        let out = match &p.ready {
            Some(Batch::Dealer { corr }) => Batch::Dealer {
                corr: columns(corr, total, from, l),
            },
            Some(Batch::Party { r, other, z0 }) => Batch::Party {
                r: Zeroizing::new(columns(r, total, from, l)),
                other: columns(other, total, from, l),
                z0: Zeroizing::new(columns(z0, total, from, l)),
            },
            None => return Err(MpcError::Param("no planned product".into())),
        };
        p.served += 1;
        p.offset += l;
        if p.served == p.widths.len() {
            self.ahead.queue.pop_front();
        }
        Ok(out)
    }
}
