//! The compute node's persistent, secret-shared risk index (redb).
//!
//! Tables (all values are this node's additive shares in Z_2^64 unless noted):
//! * `agg`: tag → share of `[blacklisted, loans, amount, overdue]` summed over holders;
//! * `contrib`: (holder, tag) → that holder's share for the tag — kept so that a re-ingest
//!   *replaces* the holder's previous contribution (subtracted from `agg` first);
//! * `staging` / `uploads`: an upload in progress, applied atomically at commit;
//! * `qflag`: (tag, member) → (share of 1, last query time): one flag per distinct querier;
//! * `qcount`: tag → share of the number of distinct members that queried it;
//! * `evidence`: SHA-256 of used audit evidence → time (replay protection).

use std::path::Path;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::error::{Result, RiskError};
use crate::oprf::Tag;

const AGG: TableDefinition<&[u8; 64], [u64; 4]> = TableDefinition::new("agg");
const CONTRIB: TableDefinition<&[u8], [u64; 4]> = TableDefinition::new("contrib");
const STAGING: TableDefinition<&[u8], [u64; 4]> = TableDefinition::new("staging");
/// holder → (upload id, announced rows, received rows)
const UPLOADS: TableDefinition<&str, (u64, u64, u64)> = TableDefinition::new("uploads");
const QFLAG: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("qflag");
const QCOUNT: TableDefinition<&[u8; 64], u64> = TableDefinition::new("qcount");
const EVIDENCE: TableDefinition<&[u8; 32], u64> = TableDefinition::new("evidence");

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

fn tag_of(key: &[u8]) -> Tag {
    key[key.len() - 64..]
        .try_into()
        .expect("keys end with a 64-byte tag")
}

fn flag_key(tag: &Tag, member: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(64 + member.len());
    k.extend_from_slice(tag);
    k.extend_from_slice(member.as_bytes());
    k
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

/// One query flag to record: the tag, and this node's share of 1 for a first-time querier.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlagUpdate {
    pub flag_share: u64,
}

/// A compute node's redb index.
#[derive(Debug)]
pub struct RiskIndex {
    db: Database,
}

impl RiskIndex {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let db = Database::create(path).map_err(RiskError::storage)?;
        let tx = db.begin_write().map_err(RiskError::storage)?;
        {
            tx.open_table(AGG).map_err(RiskError::storage)?;
            tx.open_table(CONTRIB).map_err(RiskError::storage)?;
            tx.open_table(STAGING).map_err(RiskError::storage)?;
            tx.open_table(UPLOADS).map_err(RiskError::storage)?;
            tx.open_table(QFLAG).map_err(RiskError::storage)?;
            tx.open_table(QCOUNT).map_err(RiskError::storage)?;
            tx.open_table(EVIDENCE).map_err(RiskError::storage)?;
        }
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
            let old: Vec<(Tag, [u64; 4])> = contrib
                .extract_from_if(lo.as_slice()..=hi.as_slice(), |_, _| true)
                .map_err(RiskError::storage)?
                .map(|e| e.map(|(k, v)| (tag_of(k.value()), v.value())))
                .collect::<std::result::Result<_, _>>()
                .map_err(RiskError::storage)?;
            for (tag, share) in old {
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
                let tag = tag_of(&key);
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

    /// Looks tags up and records the querier's flags. For each tag returns this node's shares of
    /// the four sums (zeros if unknown) and of the number of distinct members that queried it
    /// (this query included). `flags[i]` is this node's share of 1 for tag `i`, stored only the
    /// first time `member` queries the tag.
    pub(crate) fn lookup_and_flag(
        &self,
        member: &str,
        tags: &[Tag],
        flags: &[FlagUpdate],
        now: u64,
    ) -> Result<Vec<[u64; 5]>> {
        check_name(member)?;
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        let mut out = Vec::with_capacity(tags.len());
        {
            let agg = tx.open_table(AGG).map_err(RiskError::storage)?;
            let mut qflag = tx.open_table(QFLAG).map_err(RiskError::storage)?;
            let mut qcount = tx.open_table(QCOUNT).map_err(RiskError::storage)?;
            for (tag, flag) in tags.iter().zip(flags) {
                let sums = get_or(&agg, tag, [0; 4])?;
                let fk = flag_key(tag, member);
                let existing = qflag
                    .get(fk.as_slice())
                    .map_err(RiskError::storage)?
                    .map(|g| g.value());
                let mut count = get_or(&qcount, tag, 0)?;
                let share = match existing {
                    Some((share, _)) => share,
                    None => {
                        count = count.wrapping_add(flag.flag_share);
                        qcount.insert(tag, count).map_err(RiskError::storage)?;
                        flag.flag_share
                    }
                };
                qflag
                    .insert(fk.as_slice(), (share, now))
                    .map_err(RiskError::storage)?;
                out.push([sums[0], sums[1], sums[2], sums[3], count]);
            }
        }
        tx.commit().map_err(RiskError::storage)?;
        Ok(out)
    }

    /// Forgets query flags last refreshed before `cutoff` (unix seconds), so that `queried_by`
    /// counts the members that asked "lately". Returns how many flags were dropped.
    pub fn prune_queries(&self, cutoff: u64) -> Result<u64> {
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        let mut dropped = 0;
        {
            let mut qflag = tx.open_table(QFLAG).map_err(RiskError::storage)?;
            let mut qcount = tx.open_table(QCOUNT).map_err(RiskError::storage)?;
            let old: Vec<(Tag, u64)> = qflag
                .extract_if(|_, (_, last)| last < cutoff)
                .map_err(RiskError::storage)?
                .map(|e| {
                    e.map(|(k, v)| {
                        (
                            k.value()[..64]
                                .try_into()
                                .expect("flag keys start with a tag"),
                            v.value().0,
                        )
                    })
                })
                .collect::<std::result::Result<_, _>>()
                .map_err(RiskError::storage)?;
            for (tag, share) in old {
                let cur = get_or(&qcount, &tag, 0)?;
                qcount
                    .insert(&tag, cur.wrapping_sub(share))
                    .map_err(RiskError::storage)?;
                dropped += 1;
            }
        }
        tx.commit().map_err(RiskError::storage)?;
        Ok(dropped)
    }

    /// Records audit evidence as used; fails with [`RiskError::Replay`] if it already was.
    pub fn use_evidence(&self, querier: &str, evidence_hash: &[u8; 32], now: u64) -> Result<()> {
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        {
            let mut t = tx.open_table(EVIDENCE).map_err(RiskError::storage)?;
            if t.get(evidence_hash).map_err(RiskError::storage)?.is_some() {
                return Err(RiskError::Replay(querier.to_string()));
            }
            t.insert(evidence_hash, now).map_err(RiskError::storage)?;
        }
        tx.commit().map_err(RiskError::storage)
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
