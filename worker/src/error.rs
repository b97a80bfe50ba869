//! [`WorkerError`]: the crate's error type.

use thiserror::Error;

use crate::schema::SchemaError;

/// Everything that can go wrong in the node layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkerError {
    /// A malformed key, name, option or stored record.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A node setting that cannot work (a busy port, an unwritable data
    /// directory); the message says which.
    #[error("{0}")]
    Config(String),
    /// The control store could not be started or reached.
    #[error("control store: {0}")]
    Gcs(String),
    /// Joining the cluster failed.
    #[error("cannot join the cluster: {0}")]
    Join(String),
}

/// The crate's result type.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
