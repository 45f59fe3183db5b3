//! `netcheck`: every party sends `rounds` messages of `size` bytes to every other party of
//! the job and checks that it receives theirs, in order. No data is involved.

use std::time::{Duration, Instant};

use confide_mpc::{ChannelTransport, Transport, TransportError};
use serde::{Deserialize, Serialize};

use super::{Env, Kind, Plan};
use crate::base::config::PartyConfig;
use crate::base::error::DaemonError;
use crate::base::kind::JobKind;

/// Most rounds a netcheck may ask for.
pub const MAX_ROUNDS: u64 = 1_000_000;
/// Largest message a netcheck may ask for (below the stream's message limit).
pub const MAX_SIZE: u64 = 16 << 20;
/// Longest pause between rounds.
pub const MAX_INTERVAL_MS: u64 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Opts {
    pub rounds: u64,
    pub size: u64,
    pub interval_ms: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            rounds: 3,
            size: 1024,
            interval_ms: 0,
        }
    }
}

impl Opts {
    /// Checks every bound before anything is allocated or sent.
    pub fn validate(&self) -> Result<(), DaemonError> {
        for (k, v, max) in [
            ("rounds", self.rounds, MAX_ROUNDS),
            ("size", self.size, MAX_SIZE),
            ("interval_ms", self.interval_ms, MAX_INTERVAL_MS),
        ] {
            if v > max {
                return Err(DaemonError::InvalidRequest(format!(
                    "netcheck: option `{k}` = {v} exceeds {max}"
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Netcheck;

impl Kind for Netcheck {
    type Opts = Opts;
    const KIND: JobKind = JobKind::Netcheck;

    fn check_local(_: &PartyConfig, _: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        o.validate()
    }

    fn check_peer(_: &PartyConfig, _: &Plan<'_>, o: &Opts) -> Result<(), DaemonError> {
        o.validate()
    }

    async fn run(
        env: &dyn Env,
        o: &Opts,
        t: &ChannelTransport,
    ) -> Result<serde_json::Value, DaemonError> {
        o.validate()?;
        let size = o.size as usize;
        let interval = Duration::from_millis(o.interval_ms);
        let peers = t.peers();
        let started = Instant::now();
        for round in 0..o.rounds {
            let mut msg = round.to_le_bytes().to_vec();
            msg.resize(8 + size, 0);
            let sends = peers.iter().map(|p| t.send(p, msg.clone()));
            let recvs = peers.iter().map(|p| async move {
                let m = t.recv(p).await?;
                let got = m
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_le_bytes);
                if got != Some(round) || m.len() != 8 + size {
                    return Err(TransportError::malformed(
                        p,
                        format!("expected round {round}"),
                    ));
                }
                Ok(())
            });
            let (s, r) = tokio::join!(
                futures::future::try_join_all(sends),
                futures::future::try_join_all(recvs)
            );
            s?;
            r?;
            env.progress("exchange", round + 1, o.rounds, "");
            if !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
        }
        let bytes = o.rounds * (8 + o.size) * peers.len() as u64;
        Ok(serde_json::json!({
            "kind": "netcheck",
            "peers": peers,
            "rounds": o.rounds,
            "bytes_sent": bytes,
            "elapsed_ms": started.elapsed().as_millis() as u64,
        }))
    }
}
