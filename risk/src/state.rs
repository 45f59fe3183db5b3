//! A compute node's state on disk: its OPRF key share, the pair seed and the index, under one
//! directory, and the sans-IO hand-off of the pair seed from S0 to S1.
//!
//! Files in `dir` (created 0700 on Unix):
//! * `oprf.key`: this node's key share `k_j`, 32 bytes, generated on first open;
//! * `pair.seed`: the seed shared by S0 and S1 only (see [`PairSeed`]): S0 generates it on
//!   first open; S1 gets it once from S0 (the daemon carries [`NodeState::pair_seed_for`]'s
//!   bytes over mutual TLS and calls [`install_pair_seed`]);
//! * `index.redb`: the [`RiskIndex`].
//!
//! Secret files are created with mode 0600 from the start (`create_new`, never widened
//! afterwards), refused if group or others may read them, and held in memory only in
//! zeroizing buffers. Losing `oprf.key` at either node changes every tag: the index must then be
//! rebuilt by re-ingesting.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use rand_core::Rng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::audit::AuditGate;
use crate::error::{Result, RiskError};
use crate::index::RiskIndex;
use crate::node::{ComputeNode, PairSeed, Role};
use crate::oprf::OprfKey;
use crate::ratelimit::Limits;

/// The key share's file name in the node directory.
pub const KEY_FILE: &str = "oprf.key";
/// The pair seed's file name in the node directory.
pub const SEED_FILE: &str = "pair.seed";
/// The index's file name in the node directory.
pub const INDEX_FILE: &str = "index.redb";

fn file_err(path: &Path, what: &str, e: impl fmt::Display) -> RiskError {
    RiskError::File {
        path: path.to_path_buf(),
        message: format!("{what}: {e}"),
    }
}

/// Reads a 32-byte secret file, or `None` if it does not exist. Refuses a file that group or
/// others may access (Unix).
fn read_secret(path: &Path) -> Result<Option<Zeroizing<[u8; 32]>>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(path, "cannot open", e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f
            .metadata()
            .map_err(|e| file_err(path, "cannot stat", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(file_err(
                path,
                "refusing a secret others may read",
                format!("mode {:o}; run `chmod 600` on it", mode & 0o777),
            ));
        }
    }
    // One byte more than expected, to tell a longer file from a 32-byte one.
    let mut buf = Zeroizing::new([0u8; 33]);
    let mut n = 0;
    loop {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n == buf.len() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(file_err(path, "cannot read", e)),
        }
    }
    if n != 32 {
        return Err(file_err(path, "not a 32-byte secret", "wrong length"));
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&buf[..32]);
    Ok(Some(out))
}

/// Creates a secret file (mode 0600 from creation). `Ok(false)` if the file already exists.
fn create_secret(path: &Path, secret: &[u8; 32]) -> Result<bool> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(mut f) => {
            f.write_all(secret)
                .and_then(|()| f.sync_all())
                .map_err(|e| file_err(path, "cannot write", e))?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(file_err(path, "cannot create", e)),
    }
}

/// Loads the secret at `path`, or creates it from `make()`; if another opener created it in
/// between, returns that one.
fn load_or_create(
    path: &Path,
    make: impl FnOnce() -> Zeroizing<[u8; 32]>,
) -> Result<Zeroizing<[u8; 32]>> {
    if let Some(s) = read_secret(path)? {
        return Ok(s);
    }
    let s = make();
    if create_secret(path, &s)? {
        return Ok(s);
    }
    read_secret(path)?.ok_or_else(|| file_err(path, "vanished while being created", "gone"))
}

/// Creates `dir` (0700 on Unix) if needed.
fn ensure_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| file_err(dir, "cannot create", e))
}

/// Whether this node still needs the pair seed from S0 before [`NodeState::open`]: true for
/// S1 without `pair.seed` in `dir`.
pub fn needs_pair_seed(dir: &Path, role: Role) -> Result<bool> {
    Ok(role == Role::S1 && read_secret(&dir.join(SEED_FILE))?.is_none())
}

/// At S1: stores the pair seed received from S0 (`bytes`, exactly 32) as `dir/pair.seed`,
/// mode 0600. Installing the same seed again is a no-op; a different one is refused (the
/// nodes' correlated randomness would no longer match).
pub fn install_pair_seed(dir: &Path, bytes: &[u8]) -> Result<()> {
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .try_into()
            .map_err(|_| RiskError::Decode(format!("a pair seed of {} bytes", bytes.len())))?,
    );
    ensure_dir(dir)?;
    let path = dir.join(SEED_FILE);
    if create_secret(&path, &seed)? {
        return Ok(());
    }
    match read_secret(&path)? {
        Some(old) if bool::from(old.ct_eq(&*seed)) => Ok(()),
        _ => Err(file_err(
            &path,
            "a different pair seed is already installed",
            "remove it only if S0's seed changed",
        )),
    }
}

/// A compute node opened from its directory: the [`ComputeNode`] and, at S0, the pair seed to
/// hand to S1. Never prints a secret.
pub struct NodeState<G> {
    dir: PathBuf,
    node: ComputeNode<G>,
    seed_for_s1: Option<Zeroizing<[u8; 32]>>,
}

impl<G> fmt::Debug for NodeState<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeState")
            .field("dir", &self.dir)
            .field("node", &self.node)
            .field(
                "seed_for_s1",
                &self.seed_for_s1.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl<G: AuditGate> NodeState<G> {
    /// Opens (creating on first use) the node state in `dir`: loads or generates `oprf.key`,
    /// at S0 loads or generates `pair.seed`, at S1 loads it (error if not installed yet: see
    /// [`needs_pair_seed`], [`install_pair_seed`]), opens the index and applies `limits`.
    /// Blocking (file and database I/O).
    pub fn open(dir: &Path, role: Role, gate: G, limits: Limits) -> Result<Self> {
        ensure_dir(dir)?;
        let key_path = dir.join(KEY_FILE);
        let key_bytes = load_or_create(&key_path, || OprfKey::random(&mut rand::rng()).to_bytes())?;
        let key = OprfKey::from_bytes(&key_bytes).map_err(|e| file_err(&key_path, "bad key", e))?;
        let seed_path = dir.join(SEED_FILE);
        let seed = match role {
            Role::S0 => load_or_create(&seed_path, || {
                let mut s = Zeroizing::new([0u8; 32]);
                rand::rng().fill_bytes(&mut *s);
                s
            })?,
            Role::S1 => read_secret(&seed_path)?.ok_or_else(|| {
                file_err(
                    &seed_path,
                    "missing",
                    "S1 must install the pair seed from S0 first",
                )
            })?,
        };
        let index = RiskIndex::open(dir.join(INDEX_FILE))?;
        let node = ComputeNode::new(
            role,
            key,
            PairSeed::from_zeroizing(seed.clone()),
            index,
            gate,
        )
        .with_limits(limits);
        Ok(Self {
            dir: dir.to_path_buf(),
            node,
            seed_for_s1: (role == Role::S0).then_some(seed),
        })
    }

    /// The compute node.
    pub fn node(&self) -> &ComputeNode<G> {
        &self.node
    }

    /// The node, without the directory and the seed to hand out.
    pub fn into_node(self) -> ComputeNode<G> {
        self.node
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// At S0: the pair seed for `caller`, given only if `caller` is S1 (`s1_name`, the
    /// authenticated peer name). Anyone else, or any request at S1, is refused.
    pub fn pair_seed_for(&self, caller: &str, s1_name: &str) -> Result<Zeroizing<[u8; 32]>> {
        match &self.seed_for_s1 {
            Some(seed) if !s1_name.is_empty() && caller == s1_name => Ok(seed.clone()),
            Some(_) => Err(RiskError::PermissionDenied(format!(
                "the risk pair seed goes only to the compute node S1 `{s1_name}`, not to `{caller}`"
            ))),
            None => Err(RiskError::PermissionDenied(format!(
                "this node is S1: it hands the pair seed to nobody (asked by `{caller}`)"
            ))),
        }
    }
}
