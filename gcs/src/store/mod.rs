//! Storage: the Raft log in our own segment files ([`wal`], under
//! `<dir>/log/`), the state machine in sled (`<dir>`).
//!
//! sled trees: `sm_control` (current state machine generation, current
//! snapshot), `sm.<generation>` (the state machine). sled recovers a prefix
//! of its writes, in order. The state machine is not flushed per apply:
//! after a crash openraft re-applies committed entries from the log on top
//! of its last durable state. It is flushed before a snapshot is handed to
//! openraft, so the log is never purged past durably applied state.

mod codec;
mod durable;
mod log_store;
mod reader;
mod sm_tree;
mod snapshot;
mod state_machine;
mod wal;

use std::path::Path;

pub use log_store::LogStore;
pub use reader::{GcsReader, RangeRead};
pub use sm_tree::HistoryRead;
pub use snapshot::SnapshotBuilder;
pub use state_machine::StateMachineStore;

use crate::error::{GcsStoreError, Result};

/// Defaults for [`StoreConfig`].
pub const DEFAULT_HISTORY_RETENTION: u64 = 10_000;
pub const DEFAULT_LIVE_CAPACITY: usize = 1024;
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 8 << 20;

/// Storage settings. Snapshot frequency is openraft's
/// `Config::snapshot_policy` (`SnapshotPolicy::LogsSinceLast(n)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Keep the events of the last this many revisions for watches.
    pub history_retention: u64,
    /// How many applied revisions the live channel buffers per watcher
    /// before a slow watcher falls back to reading history.
    pub live_capacity: usize,
    /// Start a new log segment file once the current one reaches this size.
    /// The log is purged a whole segment at a time, so this also bounds how
    /// much purged log stays on disk (8 MiB by default: tens of thousands
    /// of entries per file, so rollovers are rare).
    pub wal_segment_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_retention: DEFAULT_HISTORY_RETENTION,
            live_capacity: DEFAULT_LIVE_CAPACITY,
            wal_segment_bytes: DEFAULT_WAL_SEGMENT_BYTES,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<()> {
        if self.history_retention == 0 {
            return Err(GcsStoreError::Config(
                "history_retention must be at least 1".into(),
            ));
        }
        if self.live_capacity == 0 {
            return Err(GcsStoreError::Config(
                "live_capacity must be at least 1".into(),
            ));
        }
        if self.wal_segment_bytes == 0 {
            return Err(GcsStoreError::Config(
                "wal_segment_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Open (or create) a member's storage in `dir`.
///
/// Only one process (and one pair of stores) may have a directory open at a
/// time: sled locks it (the log is opened only once the lock is held, so
/// the lock covers the log directory too). To reopen in the same process, drop both stores and
/// every [`GcsReader`] (openraft drops the stores some time after
/// `Raft::shutdown`), and retry while the error says the lock is held: sled's
/// IO threads may keep the database open for a moment after the last handle.
pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<(LogStore, StateMachineStore)> {
    config.validate()?;
    let db = durable::DurableDb::open(dir.as_ref())?;
    let log = LogStore::open(&dir.as_ref().join("log"), config.wal_segment_bytes)?;
    let sm = StateMachineStore::open(&db, config)?;
    Ok((log, sm))
}
