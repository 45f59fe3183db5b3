//! Confide: the party daemon and the CLI.
//!
//! Layers, each importing only those below it (docs/architecture.md):
//!
//! | layer | what lives there |
//! |---|---|
//! | [`demo`] | `confide demo`'s steps |
//! | [`kit`] | an in-process alliance (N daemons on loopback) for the demo, tests and benches |
//! | [`cli`] | one file per command family; one submit-and-progress path |
//! | [`daemon`] | the job table and runner, the Peer and Control services, metrics, `serve` |
//! | [`kinds`] | one file per job kind behind the [`kinds::Kind`] trait, over a narrow [`kinds::Env`] |
//! | [`risk_node`], [`audit`] | the risk compute node's state and handlers; the audit chain's state, evidence, service and replication |
//! | [`net`] | peer links, per-job streams, message limits, authorization, client dialing |
//! | [`base`] | errors, configuration, TLS material, ids, job kinds and descriptions, files |
//!
//! The protocol crates (`confide-psi`, `confide-training`, `confide-risk`, `confide-audit`)
//! are pure logic over [`confide_mpc::Transport`] and sit below all of these.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

/// `println!` for command output that may go to a pipe: see [`base::files::stdout_line`]
/// (a reader that closed early, as in `confide audit log | head -1`, ends the command
/// quietly instead of panicking).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::base::files::stdout_line(format_args!($($arg)*))
    };
}

pub mod audit;
pub mod base;
pub mod cli;
pub mod daemon;
pub mod demo;
pub mod kinds;
pub mod kit;
pub mod net;
pub mod risk_node;
