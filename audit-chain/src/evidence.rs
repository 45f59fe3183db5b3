//! Equivocation evidence, as plain data. `Equivocation::verify` is defined in
//! the checkpoint module (it needs signed notes and the genesis); the type lives
//! down here so that the error type can carry it without pointing back up.

use serde::{Deserialize, Serialize};

use crate::codec::{hex_array, hex_hashes};
use crate::merkle::Hash;

/// Evidence that the sequencer signed two inconsistent checkpoints: `note_a`
/// (size_a) and `note_b` (size_b ≤ size_a). `proof` is a consistency proof from
/// (size_b, `alt_root`) to note_a's root, so note_a commits to `alt_root` at
/// size_b, which differs from note_b's root. (size_a = size_b: empty proof,
/// alt_root = note_a's root.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// The earlier-accepted checkpoint note.
    pub note_a: String,
    /// Its size.
    pub size_a: u64,
    /// The conflicting checkpoint note.
    pub note_b: String,
    /// Its size.
    pub size_b: u64,
    /// The root note_a implies at size_b.
    #[serde(with = "hex_array")]
    pub alt_root: Hash,
    /// Consistency proof (size_b, alt_root) → (size_a, root of note_a).
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
}
