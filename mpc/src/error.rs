//! The crate's error type.

use crate::transport::TransportError;

/// Errors raised by the secret-sharing engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MpcError {
    /// The transport failed (peer gone, unknown peer, malformed message).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A value cannot be encoded in fixed point (NaN, infinite, or out of range).
    #[error("cannot encode {value} in fixed point with {frac_bits} fractional bits: {reason}")]
    Encode {
        /// The offending value.
        value: f64,
        /// Fractional bits in use.
        frac_bits: u32,
        /// Why.
        reason: &'static str,
    },
    /// Shapes of operands do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An invalid parameter (fractional bits, truncation width, party index, ...).
    #[error("invalid parameter: {0}")]
    Param(String),
}

/// Result alias for this crate.
pub type Result<T, E = MpcError> = std::result::Result<T, E>;

impl MpcError {
    /// What may leave this party about this error: its category and the peer at fault,
    /// never a value (a fixed-point encoding error does not name the value).
    pub fn public(&self) -> String {
        match self {
            MpcError::Transport(e) => e.public(),
            MpcError::Encode { .. } => "a value cannot be encoded in fixed point".into(),
            MpcError::Shape(_) => "shape mismatch".into(),
            MpcError::Param(_) => "invalid parameter".into(),
        }
    }
}
