//! Typed access to one state machine tree: the [`KvView`] the engine reads,
//! the metadata reads, history reads, and turning pending writes into one
//! sled batch.

use crate::command::KeySelector;
use crate::error::{GcsStoreError, Result};
use crate::kv::{KvView, PendingWrites};
use crate::model::{KeyValue, Lease, LeaseId, RevisionEvents, SessionRecord};
use crate::store::codec::{self, decode, encode, prefixed, u64_key};
use crate::types::{LogId, StoredMembership};

/// A chunk of watch history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRead {
    /// Matching events, in revision order.
    pub events: Vec<RevisionEvents>,
    /// The first revision not covered by this read: read on from here.
    pub next: u64,
    /// The store revision at the time of the read; the history is complete
    /// when `next > revision`.
    pub revision: u64,
}

/// One generation of the state machine, stored in one sled tree.
#[derive(Debug, Clone)]
pub struct SmTree {
    pub tree: sled::Tree,
}

impl SmTree {
    pub fn new(tree: sled::Tree) -> Self {
        SmTree { tree }
    }

    fn get_decoded<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.tree.get(key)?.map(|v| decode(&v)).transpose()
    }

    fn get_u64(&self, key: &[u8]) -> Result<u64> {
        self.tree.get(key)?.map_or(Ok(0), |v| codec::u64_value(&v))
    }

    /// The highest revision whose history was dropped (0: none).
    pub fn compacted(&self) -> Result<u64> {
        self.get_u64(codec::META_COMPACTED)
    }

    pub fn last_applied(&self) -> Result<Option<LogId>> {
        Ok(self.get_decoded(codec::META_APPLIED)?.flatten())
    }

    pub fn membership(&self) -> Result<StoredMembership> {
        Ok(self
            .get_decoded(codec::META_MEMBERSHIP)?
            .unwrap_or_default())
    }

    /// Every lease, in id order.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        self.decode_table(codec::LEASE)
    }

    /// Every record of one table, decoded, in key order.
    pub fn decode_table<T: serde::de::DeserializeOwned>(&self, table: u8) -> Result<Vec<T>> {
        self.tree
            .range(codec::table_bounds(table))
            .map(|item| decode(&item?.1))
            .collect()
    }

    /// The history of at most `max_revisions` revisions from `from` on,
    /// restricted to `selector` (revisions without a matching event are left
    /// out). Fails with `Compacted` when `from` is at or below the compaction
    /// point.
    pub fn history(
        &self,
        selector: &KeySelector,
        from: u64,
        max_revisions: usize,
    ) -> Result<HistoryRead> {
        let from = from.max(1);
        let compacted = self.compacted()?;
        if from <= compacted {
            return Err(GcsStoreError::Compacted {
                requested: from,
                compacted_at: compacted,
            });
        }
        let revision = self.revision()?;
        // The record holding `from` starts at or before it.
        let holding = self
            .tree
            .range(u64_key(codec::HISTORY, 0)..=u64_key(codec::HISTORY, from))
            .next_back()
            .transpose()?;
        let start = holding.map_or_else(|| u64_key(codec::HISTORY, from), |(k, _)| k.to_vec());
        let end = vec![codec::HISTORY + 1];
        let mut events = Vec::new();
        let mut next = revision.max(from - 1) + 1;
        let mut scanned = 0;
        'records: for item in self.tree.range(start..end) {
            let record: Vec<RevisionEvents> = decode(&item?.1)?;
            for revision_events in record {
                if revision_events.revision < from {
                    continue;
                }
                if scanned == max_revisions {
                    next = revision_events.revision;
                    break 'records;
                }
                scanned += 1;
                events.extend(revision_events.filtered(selector));
            }
        }
        Ok(HistoryRead {
            events,
            next,
            revision,
        })
    }

    /// Write the net effect of one applied batch into `batch`: state writes,
    /// new history, compaction down to `retention` revisions, and the new
    /// last-applied log id and membership.
    pub fn write_batch(
        &self,
        batch: &mut sled::Batch,
        pending: &PendingWrites,
        history: &[RevisionEvents],
        retention: u64,
        applied: Option<LogId>,
        membership: Option<&StoredMembership>,
    ) -> Result<()> {
        for (key, kv) in &pending.kvs {
            let k = prefixed(codec::KV, key);
            match kv {
                Some(kv) => batch.insert(k, encode(kv)?),
                None => batch.remove(k),
            }
        }
        for (id, lease) in &pending.leases {
            let k = u64_key(codec::LEASE, id.0);
            match lease {
                Some(lease) => batch.insert(k, encode(lease)?),
                None => batch.remove(k),
            }
        }
        for (client_id, session) in &pending.sessions {
            let (record_key, used_key) = (
                u64_key(codec::SESSION, *client_id),
                u64_key(codec::SESSION_USED, *client_id),
            );
            match session {
                Some((record, used)) => {
                    batch.insert(record_key, encode(record)?);
                    batch.insert(used_key, &used.to_be_bytes());
                }
                None => {
                    batch.remove(record_key);
                    batch.remove(used_key);
                }
            }
        }
        if let Some(clock) = pending.session_clock {
            batch.insert(codec::META_SESSION_CLOCK, &clock.to_be_bytes());
        }
        if let Some(revision) = pending.revision {
            batch.insert(codec::META_REVISION, &revision.to_be_bytes());
            let compacted = self.compacted()?;
            let keep_after = revision.saturating_sub(retention);
            if keep_after > compacted {
                // A record ends where the next one starts: every record
                // followed by one starting at or before `keep_after + 1`
                // holds only compacted revisions. The last one seen may
                // still hold later ones and stays (reads skip what is
                // below their start).
                let end = u64_key(codec::HISTORY, keep_after.saturating_add(1));
                let mut previous: Option<sled::IVec> = None;
                for item in self.tree.range(u64_key(codec::HISTORY, 0)..=end) {
                    let (key, _) = item?;
                    if let Some(done) = previous.replace(key) {
                        batch.remove(done);
                    }
                }
                batch.insert(codec::META_COMPACTED, &keep_after.to_be_bytes());
            }
            // One record for the revisions of this apply.
            let kept: Vec<&RevisionEvents> =
                history.iter().filter(|e| e.revision > keep_after).collect();
            if let Some(first) = kept.first() {
                batch.insert(u64_key(codec::HISTORY, first.revision), encode(&kept)?);
            }
        }
        if applied.is_some() {
            batch.insert(codec::META_APPLIED, encode(&applied)?);
        }
        if let Some(membership) = membership {
            batch.insert(codec::META_MEMBERSHIP, encode(membership)?);
        }
        Ok(())
    }
}

impl KvView for SmTree {
    type Error = GcsStoreError;

    fn revision(&self) -> Result<u64> {
        self.get_u64(codec::META_REVISION)
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.get_decoded(&prefixed(codec::KV, key))
    }

    fn scan(&self, selector: &KeySelector, limit: Option<usize>) -> Result<Vec<KeyValue>> {
        self.tree
            .range(codec::kv_bounds(selector))
            .take(limit.unwrap_or(usize::MAX))
            .map(|item| decode(&item?.1))
            .collect()
    }

    fn lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        self.get_decoded(&u64_key(codec::LEASE, id.0))
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>> {
        self.get_decoded(&u64_key(codec::SESSION, client_id))
    }

    fn session_clock(&self) -> Result<u64> {
        self.get_u64(codec::META_SESSION_CLOCK)
    }

    fn session_stamps(&self) -> Result<Vec<(u64, u64)>> {
        let mut stamps = Vec::new();
        for item in self.tree.range(codec::table_bounds(codec::SESSION)) {
            let client_id = codec::u64_of_key(&item?.0)?;
            let used = self.get_u64(&u64_key(codec::SESSION_USED, client_id))?;
            stamps.push((client_id, used));
        }
        Ok(stamps)
    }
}
