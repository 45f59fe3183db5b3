//! Talking to other daemons: peer channels over mutual TLS, per-job streams and their
//! rendezvous, message limits, and the CLI's dialing of its own daemon.

pub mod authz;
pub mod client;
pub mod links;

pub use links::{FailureSignal, MAX_MESSAGE, PeerChannels, Rendezvous};
