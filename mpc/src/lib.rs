//! Confide's secret-sharing engine.
//!
//! Holds the ring Z_2^64, fixed-point encoding, additive 2-of-2 shares, dealer-supplied
//! Beaver and matrix triples, truncation, sigmoid approximations, and the [`transport`]
//! that every protocol crate runs over.
#![forbid(unsafe_code)]

pub mod transport;

pub use transport::{
    ChannelTransport, Link, Recorded, Recording, RecordingTransport, Transport, TransportError,
    memory_mesh, recording_contains,
};
