//! Confide: the party daemon and the CLI.
//!
//! Layers: the protocol crates (`confide-psi`, `confide-training`, `confide-risk`,
//! `confide-audit`) are pure logic over [`confide_mpc::Transport`]; [`daemon`] adapts gRPC
//! streams to it and runs jobs; [`commands`] is what the CLI does.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod init;
pub mod jobs;
pub mod tls;
