//! The storage error type.

use thiserror::Error;

use crate::types::StorageError;

pub type Result<T, E = GcsStoreError> = std::result::Result<T, E>;

/// What can go wrong in the GCS storage layer.
///
/// `Compacted` is an expected condition a server maps to a client answer
/// (re-list); the others are storage faults, which openraft treats as fatal
/// for the member.
#[derive(Debug, Error)]
pub enum GcsStoreError {
    /// A watcher asked for history that compaction already removed: re-list
    /// (read the current state) and watch from `revision + 1`.
    #[error("revision {requested} is compacted (history starts after {compacted_at})")]
    Compacted { requested: u64, compacted_at: u64 },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding: {0}")]
    Codec(#[from] bincode::Error),
    /// A stored value or key does not have the layout this version writes.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl GcsStoreError {
    /// Whether the caller should re-list instead of retrying.
    pub fn is_compacted(&self) -> bool {
        matches!(self, GcsStoreError::Compacted { .. })
    }
}

/// Wrap a storage fault as openraft's storage error for a given subject.
pub(crate) fn read_err(e: impl Into<GcsStoreError>) -> StorageError {
    openraft::StorageIOError::read(any(e)).into()
}

pub(crate) fn write_err(e: impl Into<GcsStoreError>) -> StorageError {
    openraft::StorageIOError::write(any(e)).into()
}

pub(crate) fn any(e: impl Into<GcsStoreError>) -> openraft::AnyError {
    openraft::AnyError::new(&e.into())
}
