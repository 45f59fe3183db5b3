//! The store's Merkle tree reads the leaves of chunks it no longer holds in memory
//! ([`crate::pruned`]) from the stored entries.

use redb::{Database, ReadableDatabase};

use super::{AuditStore, ENTRIES};
use crate::merkle::{Hash, leaf_hash};
use crate::pruned::LeafSource;

/// The stored entries as the tree's leaf source: leaf = SHA-256(0x00 ‖ entry bytes).
pub(super) struct DbLeaves<'a>(&'a Database);

impl LeafSource for DbLeaves<'_> {
    fn leaf_hashes(&self, start: u64, len: u64) -> Option<Vec<Hash>> {
        let rtx = self.0.begin_read().ok()?;
        let t = rtx.open_table(ENTRIES).ok()?;
        let mut out = Vec::with_capacity(usize::try_from(len).ok()?);
        for (i, row) in t.range(start..start.checked_add(len)?).ok()?.enumerate() {
            let (k, v) = row.ok()?;
            if k.value() != start + i as u64 {
                return None;
            }
            out.push(leaf_hash(v.value()));
        }
        (out.len() as u64 == len).then_some(out)
    }
}

impl AuditStore {
    /// Where the tree reads the leaves of chunks it no longer holds: the stored entries.
    pub(super) fn leaf_source(&self) -> DbLeaves<'_> {
        DbLeaves(&self.db)
    }

    /// Rolls the tree back to `size` entries (all committed: every caller truncates to a
    /// size it held before an uncommitted batch or to a view's base). If the entries below
    /// `size` cannot be read, the store stops signing rather than keep a wrong tree.
    pub(super) fn truncate_tree(&mut self, size: u64) {
        if !self.tree.truncate(size, &DbLeaves(&self.db)) {
            self.fault.get_or_insert(format!(
                "could not read the stored entries below {size} to roll the tree back"
            ));
        }
    }
}
