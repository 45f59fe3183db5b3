//! The bottom layer: errors, configuration, TLS material, identifiers, job kinds and
//! descriptions, files, counters. Imports nothing else of this crate.

pub mod config;
pub mod dataset;
pub mod error;
pub mod files;
pub mod ids;
pub mod job;
pub mod kind;
pub mod metrics;
pub mod tls;

pub use config::PartyConfig;
pub use error::DaemonError;
pub use job::JobSpec;
pub use kind::{JobKind, PolicyKind};
