//! This member's copy of the audit log (confide-audit over redb) and appending to it
//! through the sequencer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confide_audit::{
    AuditStore, Entry, EntryBody, Genesis, InclusionPromise, ProofBundle, SetAside,
};
use confide_proto::AppendRequest;
use confide_proto::audit_client::AuditClient;

use crate::base::config::PartyConfig;
use crate::base::error::{DaemonError, status_line};
use crate::net::{MAX_MESSAGE, PeerChannels};

/// This member's audit state.
pub struct AuditState {
    /// This member.
    pub me: String,
    /// Channels to the other members (the sequencer, or the members it replicates to).
    pub channels: Arc<PeerChannels>,
    pub genesis: Genesis,
    pub genesis_json: String,
    store: Mutex<AuditStore>,
    /// Wakes the replication loop after an append.
    pub(crate) kick: tokio::sync::Notify,
    /// Size of the latest final checkpoint this member holds (wakes [`Self::proof_when_final`]).
    finals: tokio::sync::watch::Sender<u64>,
    /// The corrupt store found at start, set aside for the operator.
    pub(crate) set_aside: Option<SetAside>,
    /// How the rebuild of a corrupt sequencer store goes (its last attempt), or how it ended.
    pub(crate) rebuild_note: Mutex<String>,
}

impl std::fmt::Debug for AuditState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditState").finish_non_exhaustive()
    }
}

impl AuditState {
    /// Opens the store if the config names a genesis and an audit key.
    pub fn open(
        cfg: &PartyConfig,
        channels: Arc<PeerChannels>,
    ) -> Result<Option<Arc<Self>>, DaemonError> {
        let (Some(genesis_path), Some(key_path)) = (&cfg.alliance.genesis, &cfg.tls.audit_key)
        else {
            return Ok(None);
        };
        let field_err = |field: &str, m: String| {
            DaemonError::Config(format!(
                "config file {}: field `{field}`: {m}",
                cfg.source.display()
            ))
        };
        let genesis_json = std::fs::read_to_string(genesis_path).map_err(|e| {
            field_err(
                "alliance.genesis",
                format!("{}: {e}", genesis_path.display()),
            )
        })?;
        let genesis = Genesis::from_json(&genesis_json).map_err(|e| {
            field_err(
                "alliance.genesis",
                format!("{}: {e}", genesis_path.display()),
            )
        })?;
        let key_hex = std::fs::read_to_string(key_path)
            .map_err(|e| field_err("tls.audit_key", format!("{}: {e}", key_path.display())))?;
        let key_hex = zeroize::Zeroizing::new(key_hex);
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(key_hex.trim(), &mut *seed).map_err(|_| {
            field_err(
                "tls.audit_key",
                format!("{}: not a 32-byte hex key", key_path.display()),
            )
        })?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let (store, set_aside) = AuditStore::open_or_rebuild(
            cfg.party.data_dir.join("audit.redb"),
            genesis.clone(),
            &cfg.party.name,
            key,
        )
        .map_err(|e| field_err("alliance.genesis", format!("audit store: {e}")))?;
        if let Some(s) = &set_aside {
            tracing::warn!(
                reason = %s.reason,
                moved_to = %s.moved_to.display(),
                "audit store was corrupt: set aside; rebuilding it from the other members"
            );
        }
        if let Some(fault) = store.fault() {
            tracing::error!(%fault, "audit store refuses to cosign");
        }
        let final_size = store.latest_final().map_or(0, |f| f.checkpoint.size);
        Ok(Some(Arc::new(Self {
            me: cfg.party.name.clone(),
            channels,
            genesis,
            genesis_json,
            store: Mutex::new(store),
            kick: tokio::sync::Notify::new(),
            finals: tokio::sync::watch::Sender::new(final_size),
            set_aside,
            rebuild_note: Mutex::new(String::new()),
        })))
    }

    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut AuditStore) -> Result<R, confide_audit::AuditError>,
    ) -> Result<R, DaemonError> {
        let mut s = self
            .store
            .lock()
            .map_err(|_| DaemonError::Internal("audit store poisoned".into()))?;
        f(&mut s).map_err(DaemonError::Audit)
    }

    /// Publishes the size of the store's latest final checkpoint (after replication).
    pub(crate) fn note_finals(&self) {
        if let Ok(Some(size)) = self.with(|s| Ok(s.latest_final().map(|f| f.checkpoint.size))) {
            self.finals.send_if_modified(|v| {
                let grew = size > *v;
                *v = (*v).max(size);
                grew
            });
        }
    }

    /// Waits (at most `within`) until this member holds a final checkpoint (cosigned by a
    /// quorum) covering entry `index`, then returns the entry's RFC 6962 inclusion proof in it.
    pub async fn proof_when_final(
        &self,
        index: u64,
        within: Duration,
    ) -> Result<ProofBundle, DaemonError> {
        let mut rx = self.finals.subscribe();
        match tokio::time::timeout(within, rx.wait_for(|size| *size > index)).await {
            Ok(Ok(_)) => self.with(|s| s.prove(index)),
            Ok(Err(_)) => Err(DaemonError::Internal("audit state closed".into())),
            Err(_) => Err(DaemonError::Protocol(format!(
                "audit: no checkpoint cosigned by a quorum of members covers entry {index} \
                 after {} s (are enough members up?)",
                within.as_secs()
            ))),
        }
    }

    /// This member's audit store in one line for `confide status`, and whether it signs:
    /// `ok`, `rebuilding` (a corrupt sequencer store waiting for the members' copies),
    /// `fault` or `halted` (both need an operator).
    pub fn health(&self) -> (bool, String) {
        let note = self
            .rebuild_note
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        let aside = self.set_aside.as_ref().map_or(String::new(), |s| {
            format!(
                "; a corrupt copy ({}) was set aside at start as {}",
                s.reason,
                s.moved_to.display()
            )
        });
        let r = self.with(|s| {
            Ok(if s.halt_evidence().is_some() {
                (
                    false,
                    "halted: the sequencer equivocated; this member stopped cosigning".into(),
                )
            } else if let Some(f) = s.fault() {
                (false, format!("fault: {f}"))
            } else if s.rebuilding().is_some() {
                (
                    true,
                    format!("rebuilding from the other members' copies: {note}"),
                )
            } else {
                let fin = s.latest_final().map_or(0, |f| f.checkpoint.size);
                let mut line = format!("ok: {} entries, final at {fin}", s.size());
                if !note.is_empty() {
                    line.push_str(&format!("; {note}"));
                }
                (true, line)
            })
        });
        match r {
            Ok((ok, line)) => (ok, format!("{line}{aside}")),
            Err(e) => (false, format!("fault: {e}")),
        }
    }

    pub fn is_sequencer(&self, me: &str) -> bool {
        self.genesis.sequencer == me
    }

    /// Appends a signed entry of this member through the sequencer; returns the promise.
    pub async fn append(&self, body: EntryBody) -> Result<(Entry, InclusionPromise), DaemonError> {
        let a = self;
        let entry = a.with(|s| s.sign_entry(body))?;
        let promise = if a.is_sequencer(&a.me) {
            let e = entry.clone();
            let p = a.with(move |s| s.append_signed(&[e]))?.remove(0);
            a.kick.notify_one();
            p
        } else {
            let seq = a.genesis.sequencer.clone();
            let mut c = audit_client(&a.channels, &seq)?;
            let r = tokio::time::timeout(
                Duration::from_secs(10),
                c.append(AppendRequest {
                    entry: entry.as_bytes().to_vec(),
                }),
            )
            .await
            .map_err(|_| {
                a.channels
                    .peer_error(&seq, "audit append: no answer within 10 s")
            })?
            .map_err(|s| {
                a.channels
                    .peer_error(&seq, format!("audit append: {}", status_line(&s)))
            })?
            .into_inner();
            let p: InclusionPromise = serde_json::from_slice(&r.promise).map_err(|e| {
                DaemonError::Protocol(format!("audit: bad promise from `{seq}`: {e}"))
            })?;
            p.verify(&a.genesis)?;
            if p.entry_hash != entry.leaf_hash() {
                return Err(DaemonError::Protocol(format!(
                    "audit: `{seq}` promised another entry"
                )));
            }
            p
        };
        Ok((entry, promise))
    }
}

pub(crate) fn audit_client(
    channels: &PeerChannels,
    peer: &str,
) -> Result<AuditClient<tonic::transport::Channel>, DaemonError> {
    // Reuse the peer channel: build an Audit client on the same connection.
    let ch = channels.channel(peer)?;
    Ok(AuditClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}
