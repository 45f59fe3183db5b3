//! The query side of the index: used audit entries, lookup budgets and the query flags behind
//! `queried_by`.

use redb::{ReadableDatabase, ReadableTable};

use super::{AGG, EVIDENCE, LOOKUPS, QFLAG, RiskIndex, check_name, get_or};
use crate::error::{Result, RiskError};
use crate::oprf::Tag;

/// Longest member-name suffix of a flag key, plus one: bounds a tag's key range.
const FLAG_RANGE_END: [u8; 256] = [0xff; 256];

fn flag_key(tag: &Tag, member: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(64 + member.len());
    k.extend_from_slice(tag);
    k.extend_from_slice(member.as_bytes());
    k
}

/// What a lookup is authorised by: the evaluated query entry, and the retention window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LookupGrant<'a> {
    /// Canonical id of the logged query entry.
    pub entry: &'a [u8; 32],
    /// Retention window of query flags, in seconds.
    pub window_secs: u64,
}

impl RiskIndex {
    /// Records audit evidence as used; fails with [`RiskError::Replay`] if it already was.
    pub fn use_evidence(&self, querier: &str, evidence_hash: &[u8; 32], now: u64) -> Result<()> {
        self.spend_entry(querier, evidence_hash, 0, now)
    }

    /// Records the logged entry `id` as used for one evaluation (refusing a replay with
    /// [`RiskError::Replay`]) and, if `lookups > 0`, lets its evaluated tags be looked up:
    /// at most `lookups` tags in total, flagged at `logged_secs`.
    pub(crate) fn spend_entry(
        &self,
        querier: &str,
        id: &[u8; 32],
        lookups: u64,
        logged_secs: u64,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        {
            let mut t = tx.open_table(EVIDENCE).map_err(RiskError::storage)?;
            if t.get(id).map_err(RiskError::storage)?.is_some() {
                return Err(RiskError::Replay(querier.to_string()));
            }
            t.insert(id, logged_secs).map_err(RiskError::storage)?;
            if lookups > 0 {
                let mut l = tx.open_table(LOOKUPS).map_err(RiskError::storage)?;
                l.insert(id, (lookups, logged_secs))
                    .map_err(RiskError::storage)?;
            }
        }
        tx.commit().map_err(RiskError::storage)
    }

    /// Looks tags up under `grant` and records the querier's flags, in one transaction.
    ///
    /// The entry must have been evaluated here for a query and still cover `tags.len()`
    /// lookups (the budget shrinks by that much). For each tag returns this node's shares of the
    /// four sums (zeros if unknown) and of `queried_by`: `member` itself plus every other
    /// member whose last logged query of the tag is at most `window_secs` older than this
    /// entry's logged time `T`. `flags[i]` is this node's share of 1 for `member` and tag `i`;
    /// the member's flag for the tag is set to `max(its last time, T)`.
    pub(crate) fn lookup_and_flag(
        &self,
        member: &str,
        grant: LookupGrant<'_>,
        tags: &[Tag],
        flags: &[u64],
    ) -> Result<Vec<[u64; 5]>> {
        check_name(member)?;
        let refuse = |reason: String| RiskError::LookupRefused {
            querier: member.to_string(),
            reason,
        };
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        let mut out = Vec::with_capacity(tags.len());
        {
            let mut lookups = tx.open_table(LOOKUPS).map_err(RiskError::storage)?;
            let (left, logged) = lookups
                .get(grant.entry)
                .map_err(RiskError::storage)?
                .map(|g| g.value())
                .ok_or_else(|| {
                    refuse("no query evaluation under this logged entry at this node".into())
                })?;
            let asked = tags.len() as u64;
            if asked > left {
                return Err(refuse(format!(
                    "the logged entry covers {left} more lookups, {asked} asked"
                )));
            }
            if asked == left {
                lookups.remove(grant.entry).map_err(RiskError::storage)?;
            } else {
                lookups
                    .insert(grant.entry, (left - asked, logged))
                    .map_err(RiskError::storage)?;
            }
            let since = logged.saturating_sub(grant.window_secs);
            let agg = tx.open_table(AGG).map_err(RiskError::storage)?;
            let mut qflag = tx.open_table(QFLAG).map_err(RiskError::storage)?;
            for (tag, flag) in tags.iter().zip(flags) {
                let sums = get_or(&agg, tag, [0; 4])?;
                let mine = flag_key(tag, member);
                let (share, last) = qflag
                    .get(mine.as_slice())
                    .map_err(RiskError::storage)?
                    .map(|g| g.value())
                    .unwrap_or((*flag, logged));
                qflag
                    .insert(mine.as_slice(), (share, last.max(logged)))
                    .map_err(RiskError::storage)?;
                let mut count = share;
                let mut end = tag.to_vec();
                end.extend_from_slice(&FLAG_RANGE_END);
                for e in qflag
                    .range(tag.as_slice()..end.as_slice())
                    .map_err(RiskError::storage)?
                {
                    let (k, v) = e.map_err(RiskError::storage)?;
                    let (s, t) = v.value();
                    if k.value() != mine.as_slice() && t >= since {
                        count = count.wrapping_add(s);
                    }
                }
                out.push([sums[0], sums[1], sums[2], sums[3], count]);
            }
        }
        tx.commit().map_err(RiskError::storage)?;
        Ok(out)
    }

    /// Forgets query flags last refreshed before `cutoff` (unix seconds); returns how many were
    /// dropped. This only reclaims space: a flag older than the retention window no longer
    /// counts anyway. Choose `cutoff` at most `T − window` for the earliest logged time `T` of
    /// a lookup still to come (e.g. now − window − a day), and the same at both nodes.
    pub fn prune_queries(&self, cutoff: u64) -> Result<u64> {
        let tx = self.db.begin_write().map_err(RiskError::storage)?;
        let dropped;
        {
            let mut qflag = tx.open_table(QFLAG).map_err(RiskError::storage)?;
            dropped = qflag
                .extract_if(|_, (_, last)| last < cutoff)
                .map_err(RiskError::storage)?
                .try_fold(0u64, |n, e| e.map(|_| n + 1))
                .map_err(RiskError::storage)?;
        }
        tx.commit().map_err(RiskError::storage)?;
        Ok(dropped)
    }

    /// Whether the logged entry `id` was already used for an evaluation at this node.
    pub fn entry_used(&self, id: &[u8; 32]) -> Result<bool> {
        let tx = self.db.begin_read().map_err(RiskError::storage)?;
        let t = tx.open_table(EVIDENCE).map_err(RiskError::storage)?;
        Ok(t.get(id).map_err(RiskError::storage)?.is_some())
    }

    /// Tags the entry `id` may still look up at this node (0 if none).
    pub fn lookups_left(&self, id: &[u8; 32]) -> Result<u64> {
        let tx = self.db.begin_read().map_err(RiskError::storage)?;
        let t = tx.open_table(LOOKUPS).map_err(RiskError::storage)?;
        Ok(get_or(&t, id, (0, 0))?.0)
    }
}
