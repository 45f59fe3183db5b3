//! Per-member query rate limit: a token bucket per member (default 1,000 IDs per minute, burst
//! of one minute's worth). A batch costs one token per ID and is refused whole if the bucket
//! does not hold enough.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Result, RiskError};

/// Default: IDs per minute and member.
pub const DEFAULT_IDS_PER_MINUTE: u64 = 1_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by member name.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u64,
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
        Self {
            per_minute: per_minute.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured rate.
    pub fn per_minute(&self) -> u64 {
        self.per_minute
    }

    /// Takes `ids` tokens from `member`'s bucket now, or refuses with a clear error.
    pub fn check(&self, member: &str, ids: u64) -> Result<()> {
        self.check_at(member, ids, Instant::now())
    }

    /// As [`check`](Self::check) at time `now` (monotonic; for tests and replays).
    pub fn check_at(&self, member: &str, ids: u64, now: Instant) -> Result<()> {
        if ids > self.per_minute {
            return Err(RiskError::InvalidInput(format!(
                "a batch of {ids} IDs exceeds member `{member}`'s limit of {} IDs per minute; \
                 split it into smaller batches",
                self.per_minute
            )));
        }
        let cap = self.per_minute as f64;
        let rate_per_sec = cap / 60.0;
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
                per_minute: self.per_minute,
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
}
