//! Confide's secret-sharing engine.
//!
//! Holds the ring Z_2^64 ([`ring`]), fixed-point encoding, additive 2-of-2 shares
//! ([`share`]), dealer-supplied Beaver and matrix triples, truncation and comparisons
//! ([`engine`]), sigmoid approximations ([`sigmoid`]), local SecureML truncation
//! ([`local_trunc`]), and the [`transport`] that every protocol crate runs over.
//!
//! # Security model and leakage
//! Two semi-honest computing parties and a semi-honest dealer that colludes with neither.
//! The dealer only sends (two 32-byte seeds, then party 1's corrections); it learns the
//! shapes of the computation (vector lengths, batch rows) and nothing else. Each computing
//! party sees only its own shares and values masked with fresh uniform dealer randomness,
//! so it learns nothing beyond what a protocol explicitly opens to it (see [`engine`]).
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod engine;
pub mod error;
pub mod local_trunc;
pub mod offload;
pub mod ring;
pub mod share;
pub mod sigmoid;
pub mod transport;

pub use engine::{Engine, MaskedMatrix, Names, OwnProduct, OwnRows, Seat};
pub use error::{MpcError, Result};
pub use ring::{FixedPoint, R64};
pub use share::{BoolShares, Party, Shared, SharedMat, SharedVec};
pub use sigmoid::Spline;
pub use transport::{
    ChannelTransport, Link, OnePeer, Recorded, Recording, RecordingTransport, Transport,
    TransportError, clean, memory_mesh, recording_contains,
};
