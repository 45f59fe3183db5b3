//! Per-member rate limits and the node's other limits ([`Limits`]).
//!
//! A [`RateLimiter`] is a token bucket per member: `limit` IDs per window (a minute for queries,
//! an hour for ingest), burst of one window's worth. A batch costs one token per ID and is
//! refused whole if the bucket does not hold enough.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Result, RiskError};

/// Default: IDs per minute and member, for queries.
pub const DEFAULT_IDS_PER_MINUTE: u64 = 1_000;
/// Default: IDs per hour and member, for ingest tagging (2^21: a holder of 10^6 customers can
/// ingest, padded, twice an hour).
pub const DEFAULT_INGEST_IDS_PER_HOUR: u64 = 1 << 21;
/// Default retention window of `queried_by`: 90 days, in seconds.
pub const DEFAULT_RETENTION_SECS: u64 = 90 * 24 * 3600;

/// A compute node's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// IDs a member may have evaluated for queries per minute (burst: one minute's worth).
    pub query_ids_per_minute: u64,
    /// IDs a member may have evaluated for ingest per hour (burst: one hour's worth). Keep it at
    /// least [`crate::codec::MAX_EVAL_BATCH`] so that a full evaluation batch fits.
    pub ingest_ids_per_hour: u64,
    /// How long a member's query of a tag counts in `queried_by`, in seconds of logged time
    /// (see the crate documentation).
    pub retention_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            query_ids_per_minute: DEFAULT_IDS_PER_MINUTE,
            ingest_ids_per_hour: DEFAULT_INGEST_IDS_PER_HOUR,
            retention_secs: DEFAULT_RETENTION_SECS,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by member name.
#[derive(Debug)]
pub struct RateLimiter {
    limit: u64,
    window: Duration,
    per: &'static str,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_IDS_PER_MINUTE)
    }
}

impl RateLimiter {
    /// `per_minute` IDs per minute per member (also the burst size); at least 1.
    pub fn new(per_minute: u64) -> Self {
        Self::with_window(per_minute, Duration::from_secs(60), "minute")
    }

    /// `per_hour` IDs per hour per member (also the burst size); at least 1.
    pub fn per_hour(per_hour: u64) -> Self {
        Self::with_window(per_hour, Duration::from_secs(3600), "hour")
    }

    fn with_window(limit: u64, window: Duration, per: &'static str) -> Self {
        Self {
            limit: limit.max(1),
            window,
            per,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate, in IDs per minute (rounded down).
    pub fn per_minute(&self) -> u64 {
        (u128::from(self.limit) * 60 / u128::from(self.window.as_secs().max(1)))
            .try_into()
            .unwrap_or(u64::MAX)
    }

    /// IDs per window (also the burst size).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Takes `ids` tokens from `member`'s bucket now, or refuses with a clear error.
    pub fn check(&self, member: &str, ids: u64) -> Result<()> {
        self.check_at(member, ids, Instant::now())
    }

    /// As [`check`](Self::check) at time `now` (monotonic; for tests and replays).
    pub fn check_at(&self, member: &str, ids: u64, now: Instant) -> Result<()> {
        if ids > self.limit {
            return Err(RiskError::InvalidInput(format!(
                "a batch of {ids} IDs exceeds member `{member}`'s limit of {} IDs per {}; \
                 split it into smaller batches",
                self.limit, self.per
            )));
        }
        let cap = self.limit as f64;
        let rate_per_sec = cap / self.window.as_secs_f64();
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| RiskError::Storage("rate limiter lock poisoned".into()))?;
        let b = buckets.entry(member.to_string()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate_per_sec).min(cap);
        b.last = b.last.max(now);
        let want = ids as f64;
        if b.tokens + 1e-9 < want {
            let wait = Duration::from_secs_f64((want - b.tokens) / rate_per_sec);
            return Err(RiskError::RateLimited {
                member: member.to_string(),
                requested: ids,
                available: b.tokens.floor() as u64,
                limit: self.limit,
                per: self.per,
                retry_after_ms: wait.as_millis().try_into().unwrap_or(u64::MAX),
            });
        }
        b.tokens -= want;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_and_refuses_clearly() {
        let rl = RateLimiter::new(1000);
        let t0 = Instant::now();
        rl.check_at("bank-a", 600, t0).unwrap();
        rl.check_at("bank-a", 400, t0).unwrap();
        let err = rl.check_at("bank-a", 1, t0).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("bank-a") && msg.contains("1000 IDs per minute"),
            "{msg}"
        );
        assert!(
            matches!(
                err,
                RiskError::RateLimited {
                    retry_after_ms: 60,
                    ..
                }
            ),
            "{err:?}"
        );
        // Other members have their own bucket.
        rl.check_at("bank-b", 1000, t0).unwrap();
        // 30 s later, half the bucket is back.
        let t1 = t0 + Duration::from_secs(30);
        rl.check_at("bank-a", 500, t1).unwrap();
        assert!(rl.check_at("bank-a", 1, t1).is_err());
        // A batch larger than the burst is refused outright.
        let big = rl.check_at("bank-c", 1001, t1).unwrap_err().to_string();
        assert!(big.contains("split"), "{big}");
    }

    #[test]
    fn hourly_bucket_refills_over_the_hour() {
        let rl = RateLimiter::per_hour(3600);
        assert_eq!(rl.per_minute(), 60);
        let t0 = Instant::now();
        rl.check_at("h", 3600, t0).unwrap();
        let err = rl.check_at("h", 60, t0).unwrap_err().to_string();
        assert!(err.contains("3600 IDs per hour"), "{err}");
        rl.check_at("h", 60, t0 + Duration::from_secs(60)).unwrap();
        assert!(rl.check_at("h", 1, t0 + Duration::from_secs(60)).is_err());
    }
}
