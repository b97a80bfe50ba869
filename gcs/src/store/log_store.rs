//! The Raft log on sled: openraft's [`RaftLogStorage`] and [`RaftLogReader`].
//!
//! Durability: `append` writes the entries as one sled batch (readable at
//! once) and reports them flushed to openraft only after a sled flush that
//! started after the write. `save_vote` and `truncate` flush before
//! returning. `save_committed` and `purge` do not: losing either in a crash
//! is safe (openraft recomputes the commit index; purged entries reappear
//! together with the older purge marker, in one batch).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};

use crate::error::{read_err, write_err, GcsStoreError, Result};
use crate::store::codec::{self, decode, encode};
use crate::store::durable::DurableDb;
use crate::store::flusher::Flusher;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG_TREE: &str = "raft_log";

struct LogShared {
    db: DurableDb,
    tree: sled::Tree,
    flusher: Flusher,
}

/// The Raft log, vote and log markers in one sled tree. Cloning gives another
/// handle (used as openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<LogShared>,
}

impl LogStore {
    pub(crate) fn open(db: &DurableDb) -> Result<Self> {
        let tree = db.open_tree(LOG_TREE)?;
        let flusher = Flusher::start(db.clone())?;
        Ok(LogStore {
            shared: Arc::new(LogShared {
                db: db.clone(),
                tree,
                flusher,
            }),
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        self.shared.tree.get(key)?.map(|v| decode(&v)).transpose()
    }

    fn entry_key(index: u64) -> Vec<u8> {
        codec::u64_key(codec::LOG_ENTRY, index)
    }

    /// The raw key range of log indexes `range`, within the entry table.
    fn entry_bounds(range: impl RangeBounds<u64>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(Self::entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(Self::entry_key(*i)),
            Bound::Unbounded => Bound::Included(vec![codec::LOG_ENTRY]),
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(Self::entry_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(Self::entry_key(*i)),
            Bound::Unbounded => Bound::Excluded(vec![codec::LOG_ENTRY + 1]),
        };
        (start, end)
    }

    fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        self.shared
            .tree
            .range(Self::entry_bounds(range))
            .map(|item| decode(&item?.1))
            .collect()
    }

    fn last_entry_id(&self) -> Result<Option<LogId>> {
        let last = self
            .shared
            .tree
            .range(codec::table_bounds(codec::LOG_ENTRY))
            .next_back();
        match last {
            Some(item) => Ok(Some(decode::<Entry>(&item?.1)?.log_id)),
            None => Ok(None),
        }
    }

    fn log_state(&self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.meta(codec::LOG_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    fn write_entries(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(Self::entry_key(entry.log_id.index), encode(&entry)?);
        }
        self.shared.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Remove entries in `range` and, if given, set the purge marker, in one
    /// batch.
    fn remove_entries(&self, range: impl RangeBounds<u64>, purged: Option<LogId>) -> Result<()> {
        let mut batch = sled::Batch::default();
        for item in self.shared.tree.range(Self::entry_bounds(range)) {
            batch.remove(item?.0);
        }
        if let Some(purged) = purged {
            batch.insert(codec::LOG_PURGED, encode(&purged)?);
        }
        self.shared.tree.apply_batch(batch)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.entries(range)
            .map_err(|e| StorageIOError::read_logs(crate::error::any(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
            .map_err(|e| StorageIOError::read_logs(crate::error::any(e)).into())
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let write = async {
            self.shared.tree.insert(codec::LOG_VOTE, encode(vote)?)?;
            self.shared.db.flush_async().await?;
            Ok::<_, GcsStoreError>(())
        };
        write
            .await
            .map_err(|e| StorageIOError::write_vote(crate::error::any(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.meta(codec::LOG_VOTE)
            .map_err(|e| StorageIOError::read_vote(crate::error::any(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let write = || -> Result<()> {
            self.shared
                .tree
                .insert(codec::LOG_COMMITTED, encode(&committed)?)?;
            Ok(())
        };
        write().map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .meta::<Option<LogId>>(codec::LOG_COMMITTED)
            .map_err(read_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.write_entries(entries)
            .map_err(|e| StorageIOError::write_logs(crate::error::any(e)))?;
        self.shared.flusher.after_flush(callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let write = async {
            self.remove_entries(log_id.index.., None)?;
            self.shared.db.flush_async().await?;
            Ok::<_, GcsStoreError>(())
        };
        write
            .await
            .map_err(|e| StorageIOError::write_logs(crate::error::any(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.remove_entries(..=log_id.index, Some(log_id))
            .map_err(|e| StorageIOError::write_logs(crate::error::any(e)).into())
    }
}
