//! The compute node's persistent, secret-shared risk index (redb).
//!
//! Tables (all values are this node's additive shares in Z_2^64 unless noted):
//! * `agg`: tag → share of `[blacklisted, loans, amount, overdue]` summed over holders;
//! * `contrib`: (holder, tag) → that holder's share for the tag — kept so that a re-ingest
//!   *replaces* the holder's previous contribution (subtracted from `agg` first);
//! * `staging` / `uploads`: an upload in progress, applied atomically at commit;
//! * `qflag`: (tag, member) → (share of 1, last logged query time in unix seconds): one flag
//!   per distinct querier; `queried_by` sums the shares of the flags inside the retention
//!   window (see the crate documentation);
//! * `evidence`: canonical id of a used audit entry → time (replay protection);
//! * `lookups`: canonical id of a query entry used for an evaluation → (tags it may still look
//!   up, logged time in unix seconds).

use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::error::{Result, RiskError};
use crate::oprf::Tag;

mod queries;

pub(crate) use queries::LookupGrant;

/// redb's page cache for the index: lookups of a 10^6-customer index stay in it, and
/// memory no longer grows towards redb's 1 GiB default as queries are flagged.
const CACHE_BYTES: usize = 128 << 20;

const AGG: TableDefinition<&[u8; 64], [u64; 4]> = TableDefinition::new("agg");
const CONTRIB: TableDefinition<&[u8], [u64; 4]> = TableDefinition::new("contrib");
const STAGING: TableDefinition<&[u8], [u64; 4]> = TableDefinition::new("staging");
/// holder → (upload id, announced rows, received rows)
const UPLOADS: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("uploads");
const QFLAG: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("qflag");
/// Per-tag counts of an earlier format (a count kept up to date instead of a window).
const OLD_QCOUNT: TableDefinition<&[u8; 64], u64> = TableDefinition::new("qcount");
const EVIDENCE: TableDefinition<&[u8; 32], u64> = TableDefinition::new("evidence");
const LOOKUPS: TableDefinition<&[u8; 32], (u64, u64)> = TableDefinition::new("lookups");

/// Longest member name accepted (names come from certificates).
const MAX_NAME: usize = 255;

/// `len(name) ‖ name ‖ tag` — a prefix-ordered composite key.
fn holder_key(holder: &str, tag: &Tag) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + holder.len() + 64);
    k.push(holder.len() as u8);
    k.extend_from_slice(holder.as_bytes());
    k.extend_from_slice(tag);
    k
}

fn holder_range(holder: &str) -> (Vec<u8>, Vec<u8>) {
    (
        holder_key(holder, &[0; 64]),
        holder_key(holder, &[0xff; 64]),
    )
}

/// The tag at the end of a stored key (a damaged index is an error, not a panic).
fn tag_of(key: &[u8]) -> Result<Tag> {
    key.len()
        .checked_sub(64)
        .and_then(|start| key[start..].try_into().ok())
        .ok_or_else(|| RiskError::Storage(format!("a stored key of {} bytes", key.len())))
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(RiskError::InvalidInput(format!(
            "member name must have 1..={MAX_NAME} bytes"
        )));
    }
    Ok(())
}

fn add4(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    std::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

fn sub4(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    std::array::from_fn(|i| a[i].wrapping_sub(b[i]))
}

/// `table[key]`, or `default` when absent (for owned value types such as `u64`, `[u64; 4]`).
fn get_or<'k, K, V, T>(
    table: &T,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
    default: V,
) -> Result<V>
where
    K: redb::Key + 'static,
    V: for<'b> redb::Value<SelfType<'b> = V> + 'static,
    T: ReadableTable<K, V>,
{
    Ok(table
        .get(key)
        .map_err(RiskError::storage)?
        .map(|g| g.value())
        .unwrap_or(default))
}

fn upload_in_progress(
    uploads: &redb::Table<&str, (u64, u64, u64)>,
    holder: &str,
) -> Result<(u64, u64, u64)> {
    uploads
        .get(holder)
        .map_err(RiskError::storage)?
        .map(|g| g.value())
        .ok_or_else(|| RiskError::Ingest(format!("`{holder}` has no upload in progress")))
}

/// A compute node's redb index.
#[derive(Debug)]
pub struct RiskIndex {
    db: Database,
}

impl RiskIndex {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(RiskError::storage)?;
        let tx = db.begin_write().map_err(RiskError::storage)?;
        {
            tx.open_table(AGG).map_err(RiskError::storage)?;
            tx.open_table(CONTRIB).map_err(RiskError::storage)?;
            tx.open_table(STAGING).map_err(RiskError::storage)?;
            tx.open_table(UPLOADS).map_err(RiskError::storage)?;
            tx.open_table(QFLAG).map_err(RiskError::storage)?;
            tx.open_table(EVIDENCE).map_err(RiskError::storage)?;
            tx.open_table(LOOKUPS).map_err(RiskError::storage)?;
        }
        tx.delete_table(OLD_QCOUNT).map_err(RiskError::storage)?;
        tx.commit().map_err(RiskError::storage)?;
        Ok(Self { db })
    }

    /// Starts (or restarts, discarding its staged rows) `holder`'s upload `upload` of `rows` rows.
    pub fn begin_upload(&self, holder: &str, upload: u64, rows: u64) -> Result<()> {
        check_name(holder)?;
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        {
            let mut staging = tx.open_table(STAGING).map_err(RiskError::storage)?;
            let (lo, hi) = holder_range(holder);
            staging
                .retain_in(lo.as_slice()..=hi.as_slice(), |_, _| false)
                .map_err(RiskError::storage)?;
            let mut uploads = tx.open_table(UPLOADS).map_err(RiskError::storage)?;
            uploads
                .insert(holder, (upload, rows, 0))
                .map_err(RiskError::storage)?;
        }
        tx.commit().map_err(RiskError::storage)
    }

    /// Stages rows of `holder`'s current upload; returns the rows received so far. Rows with the
    /// same tag add up (wrapping).
    pub fn stage_rows(&self, holder: &str, upload: u64, rows: &[(Tag, [u64; 4])]) -> Result<u64> {
        check_name(holder)?;
        let mut tx = self.db.begin_write().map_err(RiskError::storage)?;
        // Staged rows become durable with the commit's immediate-durability transaction.
        tx.set_durability(Durability::None)
            .map_err(RiskError::storage)?;
        let received;
        {
            let mut uploads = tx.open_table(UPLOADS).map_err(RiskError::storage)?;
            let (id, announced, got) = upload_in_progress(&uploads, holder)?;
            if id != upload {
                return Err(RiskError::Ingest(format!(
                    "rows for upload {upload}, but `{holder}`'s upload in progress is {id}"
                )));
            }
            received = got + rows.len() as u64;
            if received > announced {
                return Err(RiskError::Ingest(format!(
                    "upload {upload} announced {announced} rows, got {received}"
                )));
            }
            uploads
                .insert(holder, (id, announced, received))
                .map_err(RiskError::storage)?;
            let mut staging = tx.open_table(STAGING).map_err(RiskError::storage)?;
            for (tag, share) in rows {
                let k = holder_key(holder, tag);
                let old = get_or(&staging, k.as_slice(), [0; 4])?;
                staging
                    .insert(k.as_slice(), add4(old, *share))
                    .map_err(RiskError::storage)?;
            }
        }
        tx.commit().map_err(RiskError::storage)?;
        Ok(received)
    }

    /// Atomically replaces `holder`'s contribution by its staged upload; returns its row count.
    pub fn commit_upload(&self, holder: &str, upload: u64) -> Result<u64> {
        check_name(holder)?;
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        let rows;
        {
            let mut uploads = tx.open_table(UPLOADS).map_err(RiskError::storage)?;
            let (id, announced, got) = upload_in_progress(&uploads, holder)?;
            if id != upload || got != announced {
                return Err(RiskError::Ingest(format!(
                    "cannot commit upload {upload}: in progress is {id} with {got} of {announced} rows"
                )));
            }
            rows = got;
            uploads.remove(holder).map_err(RiskError::storage)?;
            let (lo, hi) = holder_range(holder);
            let mut agg = tx.open_table(AGG).map_err(RiskError::storage)?;
            let mut contrib = tx.open_table(CONTRIB).map_err(RiskError::storage)?;
            // 1. Take the previous contribution out of the sums.
            let old: Vec<(Vec<u8>, [u64; 4])> = contrib
                .extract_from_if(lo.as_slice()..=hi.as_slice(), |_, _| true)
                .map_err(RiskError::storage)?
                .map(|e| e.map(|(k, v)| (k.value().to_vec(), v.value())))
                .collect::<std::result::Result<_, _>>()
                .map_err(RiskError::storage)?;
            for (key, share) in old {
                let tag = tag_of(&key)?;
                let cur = get_or(&agg, &tag, [0; 4])?;
                agg.insert(&tag, sub4(cur, share))
                    .map_err(RiskError::storage)?;
            }
            // 2. Move the staged rows in.
            let mut staging = tx.open_table(STAGING).map_err(RiskError::storage)?;
            let new: Vec<(Vec<u8>, [u64; 4])> = staging
                .extract_from_if(lo.as_slice()..=hi.as_slice(), |_, _| true)
                .map_err(RiskError::storage)?
                .map(|e| e.map(|(k, v)| (k.value().to_vec(), v.value())))
                .collect::<std::result::Result<_, _>>()
                .map_err(RiskError::storage)?;
            for (key, share) in new {
                let tag = tag_of(&key)?;
                let cur = get_or(&agg, &tag, [0; 4])?;
                agg.insert(&tag, add4(cur, share))
                    .map_err(RiskError::storage)?;
                contrib
                    .insert(key.as_slice(), share)
                    .map_err(RiskError::storage)?;
            }
        }
        tx.commit().map_err(RiskError::storage)?;
        Ok(rows)
    }

    /// Number of distinct tags with a (possibly zero) aggregate entry.
    pub fn tag_count(&self) -> Result<u64> {
        let tx = self.db.begin_read().map_err(RiskError::storage)?;
        let t = tx.open_table(AGG).map_err(RiskError::storage)?;
        t.len().map_err(RiskError::storage)
    }

    /// This node's aggregate shares for `tag` without recording a query (for the daemon's
    /// maintenance tools and tests; answers to members go through [`crate::ComputeNode`]).
    pub fn shares_of(&self, tag: &Tag) -> Result<Option<[u64; 4]>> {
        let tx = self.db.begin_read().map_err(RiskError::storage)?;
        let t = tx.open_table(AGG).map_err(RiskError::storage)?;
        Ok(t.get(tag).map_err(RiskError::storage)?.map(|g| g.value()))
    }
}
