//! Job identifiers and clocks.

/// A fresh job id: 24 hex digits from the OS CSPRNG.
pub fn new_job_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Is `id` a job id as [`new_job_id`] makes them (so it is safe in a file name)?
pub fn valid_job_id(id: &str) -> bool {
    (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_are_valid_and_distinct() {
        let a = new_job_id();
        let b = new_job_id();
        assert!(valid_job_id(&a) && valid_job_id(&b));
        assert_ne!(a, b);
        assert!(!valid_job_id("../etc"));
        assert!(!valid_job_id(""));
    }
}
