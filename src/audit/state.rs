//! This member's copy of the audit log (confide-audit over redb) and appending to it
//! through the sequencer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use confide_audit::{
    AuditStore, Entry, EntryBody, Genesis, InclusionPromise, ProofBundle, SetAside,
};
use confide_proto::AppendRequest;
use confide_proto::audit_client::AuditClient;

use super::failover::APPEND_TIMEOUT;
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
    /// Wakes the replication loop after an append, or a contact by a member.
    pub(crate) kick: tokio::sync::Notify,
    /// Members that contacted this member since the replication loop last looked (it
    /// ends their backoff: see [`Self::contacted`]).
    contacts: Mutex<Vec<String>>,
    /// Size of the latest final checkpoint this member holds (wakes [`Self::proof_when_final`]).
    finals: tokio::sync::watch::Sender<u64>,
    /// The corrupt store found at start, set aside for the operator.
    pub(crate) set_aside: Option<SetAside>,
    /// How the rebuild of a corrupt sequencer store goes (its last attempt), or how it ended.
    pub(crate) rebuild_note: Mutex<String>,
    /// One view change led at a time ([`super::failover`]).
    pub(crate) leading: tokio::sync::Mutex<()>,
    /// Counts this member's view changes (wakes the replication loop's supervisor).
    pub(crate) roles: tokio::sync::watch::Sender<u64>,
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
            contacts: Mutex::new(Vec::new()),
            finals: tokio::sync::watch::Sender::new(final_size),
            set_aside,
            rebuild_note: Mutex::new(String::new()),
            leading: tokio::sync::Mutex::new(()),
            roles: tokio::sync::watch::Sender::new(0),
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

    /// `member` called this member (append, fetch, replicate): when this member is the
    /// sequencer, the replication loop probes it at once instead of waiting out a backoff
    /// (a member back from a restart catches up in its first second, not after up to 30 s).
    pub(crate) fn contacted(&self, member: &str) {
        if !self.is_sequencer() {
            return;
        }
        if let Ok(mut c) = self.contacts.lock()
            && !c.iter().any(|m| m == member)
        {
            c.push(member.to_string());
        }
        self.kick.notify_one();
    }

    /// The members that made contact since the last call.
    pub(crate) fn take_contacts(&self) -> Vec<String> {
        self.contacts
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }

    /// Wakes whoever waits for this member's role to change (after a view change).
    pub(crate) fn role_changed(&self) {
        self.roles.send_modify(|v| *v += 1);
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
                let mut line = format!(
                    "ok: {} entries, final at {fin}; sequencer `{}` (view {})",
                    s.size(),
                    s.sequencer(),
                    s.view()
                );
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

    /// Whether this member is the sequencer of its current view.
    pub fn is_sequencer(&self) -> bool {
        self.with(|s| Ok(s.is_sequencer())).unwrap_or(false)
    }

    /// Appends a signed entry of this member through the sequencer and returns once a
    /// checkpoint cosigned by a quorum covers it (so no view change can lose it): the
    /// entry and the sequencer's promise. When the sequencer cannot be reached, answers
    /// that it is not the sequencer, or does not get the entry final, the next one is
    /// asked to take over ([`super::failover`]) and the same entry is appended there
    /// (a copy already in the log is recognised by its leaf hash).
    pub async fn append(&self, body: EntryBody) -> Result<(Entry, InclusionPromise), DaemonError> {
        let entry = self.with(|s| s.sign_entry(body))?;
        let leaf = entry.leaf_hash();
        let deadline = tokio::time::Instant::now() + APPEND_DEADLINE;
        let mut promise: Option<InclusionPromise> = None;
        loop {
            let view = self.with(|s| Ok(s.view()))?;
            let failure = match self.append_once(&entry).await {
                Ok(p) => {
                    promise = Some(p);
                    None
                }
                Err(Attempt::AlreadyLogged) => None,
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Sequencer(e)) => Some(e),
            };
            let failure = match failure {
                Some(e) => e,
                None => match self.wait_final(&leaf, PER_ATTEMPT_FINAL).await? {
                    Some(index) => {
                        return match promise.filter(|p| p.index == index) {
                            Some(p) => Ok((entry, p)),
                            // Logged by an earlier sequencer: its promise was lost with it.
                            None => Err(lost_promise(&entry, index)),
                        };
                    }
                    None => DaemonError::Protocol(format!(
                        "audit: the entry was not cosigned by a quorum within {} s",
                        PER_ATTEMPT_FINAL.as_secs()
                    )),
                },
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(failure);
            }
            tracing::warn!(error = %failure, view, "audit: append failed; asking for a new sequencer");
            if let Err(e) = self.change_view(view).await {
                tracing::warn!(error = %e, "audit: view change failed");
                if tokio::time::Instant::now() >= deadline {
                    return Err(failure);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// One append at the sequencer of this member's view.
    async fn append_once(&self, entry: &Entry) -> Result<InclusionPromise, Attempt> {
        let a = self;
        let seq = a
            .with(|s| Ok(s.sequencer().to_string()))
            .map_err(Attempt::Fatal)?;
        if seq == a.me {
            return match a.append_or_promise(entry) {
                Ok(p) => Ok(p),
                // Voted for a later view: no longer the sequencer.
                Err(e @ DaemonError::Audit(confide_audit::AuditError::WrongRole(_))) => {
                    Err(Attempt::Sequencer(e))
                }
                Err(e) => Err(Attempt::Fatal(e)),
            };
        }
        let mut c = audit_client(&a.channels, &seq).map_err(Attempt::Fatal)?;
        let r = tokio::time::timeout(
            APPEND_TIMEOUT,
            c.append(AppendRequest {
                entry: entry.as_bytes().to_vec(),
            }),
        )
        .await;
        let r = match r {
            Err(_) => {
                return Err(Attempt::Sequencer(a.channels.peer_error(
                    &seq,
                    format!(
                        "audit append: no answer within {} s",
                        APPEND_TIMEOUT.as_secs()
                    ),
                )));
            }
            Ok(Err(s)) => {
                let e = a
                    .channels
                    .peer_error(&seq, format!("audit append: {}", status_line(&s)));
                return Err(match s.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown => Attempt::Sequencer(e),
                    tonic::Code::FailedPrecondition
                        if s.message().contains("not the sequencer") =>
                    {
                        Attempt::Sequencer(e)
                    }
                    _ if s.message().contains("already in the log") => Attempt::AlreadyLogged,
                    _ => Attempt::Fatal(e),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        let p: InclusionPromise = serde_json::from_slice(&r.promise).map_err(|e| {
            Attempt::Fatal(DaemonError::Protocol(format!(
                "audit: bad promise from `{seq}`: {e}"
            )))
        })?;
        p.verify(&a.genesis)
            .map_err(|e| Attempt::Fatal(DaemonError::Audit(e)))?;
        if p.entry_hash != entry.leaf_hash() || p.sequencer != seq {
            return Err(Attempt::Fatal(DaemonError::Protocol(format!(
                "audit: `{seq}` promised another entry"
            ))));
        }
        Ok(p)
    }

    /// Waits (at most `within`) until this member's log holds the entry with `leaf` under a
    /// final checkpoint; its index, or `None` on timeout.
    async fn wait_final(
        &self,
        leaf: &confide_audit::Hash,
        within: Duration,
    ) -> Result<Option<u64>, DaemonError> {
        let mut rx = self.finals.subscribe();
        let until = tokio::time::Instant::now() + within;
        loop {
            let final_size = *rx.borrow_and_update();
            if let Some(i) = self.with(|s| s.index_of(leaf))?
                && i < final_size
            {
                return Ok(Some(i));
            }
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(DaemonError::Internal("audit state closed".into())),
                Err(_) => return Ok(None),
            }
        }
    }

    /// At the sequencer: appends `entry`, or, if the log already holds it (an append
    /// retried after a view change), promises it again at its index.
    pub(crate) fn append_or_promise(&self, entry: &Entry) -> Result<InclusionPromise, DaemonError> {
        let e = entry.clone();
        match self.with(move |s| s.append_signed(&[e])) {
            Ok(mut p) => {
                self.kick.notify_one();
                p.pop()
                    .ok_or_else(|| DaemonError::Internal("no promise".into()))
            }
            Err(err) => match self.with(|s| s.promise_again(entry)) {
                Ok(Some(p)) => Ok(p),
                _ => Err(err),
            },
        }
    }
}

/// An entry found final at `index` whose promise no sequencer gave this member (the
/// append reached a sequencer that failed before answering, and the next one could not
/// promise it again).
fn lost_promise(entry: &Entry, index: u64) -> DaemonError {
    DaemonError::Protocol(format!(
        "audit: entry {index} of job `{}` is final (see `confide audit prove`), but no \
         sequencer's promise for it reached this member: run the job again",
        entry.body().job_id
    ))
}

/// How one append attempt ended.
enum Attempt {
    /// The log already holds the entry (an earlier attempt got it in).
    AlreadyLogged,
    /// The sequencer is unreachable or not the sequencer: try the next one.
    Sequencer(DaemonError),
    /// Anything else: the append fails.
    Fatal(DaemonError),
}

/// Longest time an append may take, view changes included.
const APPEND_DEADLINE: Duration = Duration::from_secs(25);
/// How long one attempt waits for a final checkpoint over the entry.
const PER_ATTEMPT_FINAL: Duration = Duration::from_secs(6);

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
