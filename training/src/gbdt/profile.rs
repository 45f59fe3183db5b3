//! An opt-in per-phase profile of boosted-tree training (`CONFIDE_GBDT_PROFILE=1`).
//!
//! Each seat accumulates, per phase, the wall time spent in it and (when a byte counter is
//! installed with [`count_bytes_with`], as the in-process profiling example does) the bytes
//! it sent meanwhile. [`report`] renders the table; [`train_gbdt`](super::train_gbdt) prints
//! it to stderr at the end of a run when the variable is set. Off by default: a disabled
//! [`span`] is one relaxed load. Phases nest (a level contains its reciprocals), so the
//! rows do not add up to the total.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Counter = Box<dyn Fn(&str) -> u64 + Send + Sync>;

#[derive(Default, Clone, Copy)]
struct Row {
    time: Duration,
    bytes: u64,
    calls: u64,
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CONFIDE_GBDT_PROFILE").is_some_and(|v| v != "0"))
}

fn table() -> &'static Mutex<BTreeMap<(String, &'static str), Row>> {
    static T: OnceLock<Mutex<BTreeMap<(String, &'static str), Row>>> = OnceLock::new();
    T.get_or_init(Mutex::default)
}

fn counter() -> &'static OnceLock<Counter> {
    static C: OnceLock<Counter> = OnceLock::new();
    &C
}

/// Installs the function giving the bytes a seat (by transport name) has sent so far.
pub fn count_bytes_with(f: impl Fn(&str) -> u64 + Send + Sync + 'static) {
    let _ = counter().set(Box::new(f));
}

fn sent(seat: &str) -> u64 {
    counter().get().map_or(0, |f| f(seat))
}

/// A running phase; recorded when dropped.
#[derive(Debug)]
pub struct Span {
    on: Option<(String, &'static str, Instant, u64)>,
}

/// Starts timing `phase` at `seat` (a no-op unless profiling is on).
pub fn span(seat: &str, phase: &'static str) -> Span {
    Span {
        on: enabled().then(|| (seat.to_string(), phase, Instant::now(), sent(seat))),
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((seat, phase, t, b)) = self.on.take() {
            let bytes = sent(&seat).saturating_sub(b);
            if let Ok(mut tab) = table().lock() {
                let r = tab.entry((seat, phase)).or_default();
                r.time += t.elapsed();
                r.bytes += bytes;
                r.calls += 1;
            }
        }
    }
}

/// The profile of `seat` so far (one line per phase), `None` when profiling is off.
pub fn report(seat: &str) -> Option<String> {
    if !enabled() {
        return None;
    }
    let tab = table().lock().ok()?;
    let mut s = String::from("seat\tphase\tcalls\tseconds\tMB sent\n");
    for ((seat, phase), r) in tab.iter().filter(|((s, _), _)| s == seat) {
        s.push_str(&format!(
            "{seat}\t{phase}\t{}\t{:.2}\t{:.1}\n",
            r.calls,
            r.time.as_secs_f64(),
            r.bytes as f64 / 1e6
        ));
    }
    Some(s)
}
