//! Confide's gRPC API: the `Peer` (daemon to daemon), `Control` (local CLI to its daemon)
//! and `Audit` (the members' log) services, generated from `proto/confide.proto` without a
//! system `protoc`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![allow(missing_docs, missing_debug_implementations, clippy::all)]

/// Generated types and service stubs of package `confide.v1`.
pub mod v1 {
    tonic::include_proto!("confide.v1");
}

pub use v1::*;

/// Metadata header carrying the job id on `Peer.Stream`.
pub const JOB_HEADER: &str = "x-confide-job";
