//! CPU-heavy steps of a protocol without stalling the async runtime.
//!
//! Protocol futures interleave messages with local work (expanding dealer randomness,
//! matrix products, comparison circuits). A step of a few milliseconds inside a future
//! would hold a runtime worker thread for that long, delaying every other task scheduled
//! on it (the daemon's gRPC pumps, keepalives, other jobs). [`heavy`] runs such a step
//! through [`tokio::task::block_in_place`] on a multi-threaded runtime: the worker hands
//! its other tasks to a fresh thread for the duration, and the step may borrow the
//! protocol's state (no `'static` copies, unlike `spawn_blocking`).
//!
//! On a current-thread runtime (or outside any runtime) there is no other worker to hand
//! tasks to, and the step runs inline; small steps (below [`INLINE_MAX`] units of work)
//! always run inline, because handing a worker over costs more than they do.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Work units (roughly: ring elements touched) below which a step runs inline.
pub const INLINE_MAX: usize = 1 << 15;

/// Runs the CPU-bound step `f`, of about `work` units (ring elements touched), without
/// blocking other tasks of a multi-threaded tokio runtime; see the module docs.
pub fn heavy<R>(work: usize, f: impl FnOnce() -> R) -> R {
    if work >= INLINE_MAX && on_multi_thread_runtime() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// True inside a multi-threaded tokio runtime (where `block_in_place` is allowed).
fn on_multi_thread_runtime() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// A ticker shares the runtime's only worker with a task doing 300 ms of blocking
    /// work through `heavy`: the ticker keeps running meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn heavy_steps_leave_the_worker_to_other_tasks() {
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Let the ticker start on the worker.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before = ticks.load(Ordering::Relaxed);
        let worker = tokio::spawn(async {
            heavy(usize::MAX, || {
                std::thread::sleep(Duration::from_millis(300))
            });
            7
        });
        assert_eq!(worker.await.unwrap(), 7);
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        // Inline, the sleeping step would hold the only worker: about 0 ticks.
        assert!(during >= 20, "the ticker ran only {during} times");
    }

    #[tokio::test]
    async fn current_thread_runtime_runs_inline() {
        assert_eq!(heavy(usize::MAX, || 5), 5);
    }

    #[test]
    fn outside_a_runtime_runs_inline() {
        assert_eq!(heavy(usize::MAX, || 6), 6);
    }
}
