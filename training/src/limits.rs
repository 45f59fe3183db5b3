//! The ranges of job parameters, checked in one place for [`crate::TrainParams`] and for
//! the daemon's job options ([`crate::TrainOptions`], [`crate::PredictOptions`]).
//!
//! Each check returns the message the caller wraps in its error variant.

/// Most passes over the data a job may ask for.
pub const MAX_EPOCHS: usize = 100_000;
/// Largest mini-batch (rows per SGD step).
pub const MAX_BATCH: usize = 1 << 20;
/// Largest learning rate.
pub const MAX_LEARNING_RATE: f64 = 10.0;
/// Fixed-point fractional bits a job may use.
pub const FRAC_BITS: std::ops::RangeInclusive<u32> = 12..=24;

pub(crate) fn epochs(epochs: usize) -> Result<(), String> {
    if (1..=MAX_EPOCHS).contains(&epochs) {
        Ok(())
    } else {
        Err(format!("epochs must be in 1..={MAX_EPOCHS}, got {epochs}"))
    }
}

pub(crate) fn batch_size(batch: usize) -> Result<(), String> {
    if (1..=MAX_BATCH).contains(&batch) {
        Ok(())
    } else {
        Err(format!(
            "batch size must be in 1..={MAX_BATCH}, got {batch}"
        ))
    }
}

pub(crate) fn learning_rate(lr: f64) -> Result<(), String> {
    if lr > 0.0 && lr <= MAX_LEARNING_RATE {
        Ok(())
    } else {
        Err(format!(
            "learning rate must be in (0, {MAX_LEARNING_RATE}], got {lr}"
        ))
    }
}

pub(crate) fn frac_bits(bits: u32) -> Result<(), String> {
    if FRAC_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "frac_bits must be in {}..={}, got {bits}",
            FRAC_BITS.start(),
            FRAC_BITS.end()
        ))
    }
}

/// The three seats of a job need three distinct names.
pub(crate) fn distinct(active: &str, passive: &str, dealer: &str) -> Result<(), String> {
    if active == passive || active == dealer || passive == dealer {
        Err("the three seats need distinct party names".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_messages_name_the_range() {
        assert!(epochs(1).is_ok() && epochs(MAX_EPOCHS).is_ok());
        assert_eq!(
            epochs(0).unwrap_err(),
            "epochs must be in 1..=100000, got 0"
        );
        assert!(epochs(MAX_EPOCHS + 1).is_err());
        assert!(batch_size(1).is_ok() && batch_size(1 << 20).is_ok());
        assert_eq!(
            batch_size((1 << 20) + 1).unwrap_err(),
            "batch size must be in 1..=1048576, got 1048577"
        );
        assert!(batch_size(0).is_err());
        assert!(learning_rate(10.0).is_ok() && learning_rate(1e-9).is_ok());
        assert_eq!(
            learning_rate(0.0).unwrap_err(),
            "learning rate must be in (0, 10], got 0"
        );
        assert!(learning_rate(10.5).is_err() && learning_rate(f64::NAN).is_err());
        assert!(frac_bits(12).is_ok() && frac_bits(24).is_ok());
        assert_eq!(
            frac_bits(25).unwrap_err(),
            "frac_bits must be in 12..=24, got 25"
        );
        assert!(frac_bits(11).is_err());
        assert!(distinct("a", "b", "c").is_ok());
        assert!(distinct("a", "a", "c").is_err() && distinct("a", "b", "b").is_err());
        assert!(distinct("a", "b", "a").is_err());
    }
}
