//! [`WorkerError`]: the crate's error type.

use thiserror::Error;

use crate::schema::SchemaError;

/// Everything that can go wrong in the node layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WorkerError {
    /// A malformed key, name, option or stored record.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// The crate's result type.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;
