//! The Raft log: openraft's [`RaftLogStorage`] and [`RaftLogReader`] over
//! the segment-file [`Wal`].
//!
//! Durability: `append` writes the entries at once (readable immediately)
//! and reports them flushed to openraft only after an `fdatasync` that
//! started after the write (group commit: one sync per batch of appends).
//! `save_vote`, `truncate` and `purge` are durable when they return.
//! `save_committed` is not synced: losing it in a crash is safe (openraft
//! recomputes the commit index).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};

use crate::error::{read_err, write_err, Result};
use crate::store::wal::Wal;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log, vote and log markers. Cloning gives another handle (used as
/// openraft's log reader).
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
}

impl LogStore {
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<Self> {
        Ok(LogStore {
            wal: Arc::new(Wal::open(dir, segment_bytes)?),
        })
    }

    /// Bytes the log holds after entry `index` (all of it for `None`): what
    /// a snapshot at the current state would let go.
    pub fn bytes_after(&self, index: Option<u64>) -> u64 {
        self.wal.bytes_after(index)
    }

    fn log_state(&self) -> LogState<TypeConfig> {
        LogState {
            last_purged_log_id: self.wal.purged(),
            last_log_id: self.wal.last_log_id(),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.wal
            .entries(range)
            .map_err(|e| StorageIOError::read_logs(crate::error::any(e)).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.log_state())
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let wal = self.wal.clone();
        let vote = *vote;
        blocking(move || wal.save_vote(&vote))
            .await
            .map_err(|e| StorageIOError::write_vote(crate::error::any(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.wal.vote())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.wal.save_committed(committed).map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.wal.committed().map_err(read_err)
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
        self.wal
            .append(entries, callback)
            .map_err(|e| StorageIOError::write_logs(crate::error::any(e)).into())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let wal = self.wal.clone();
        blocking(move || wal.truncate(log_id.index))
            .await
            .map_err(|e| StorageIOError::write_logs(crate::error::any(e)).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let wal = self.wal.clone();
        blocking(move || wal.purge(log_id))
            .await
            .map_err(|e| StorageIOError::write_logs(crate::error::any(e)).into())
    }
}

/// Run a syncing call off the async runtime's worker threads.
async fn blocking(f: impl FnOnce() -> Result<()> + Send + 'static) -> Result<()> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| std::io::Error::other(format!("wal task failed: {e}")))?
}
