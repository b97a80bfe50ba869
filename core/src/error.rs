//! The crate-level error: one variant per module's own error type, so a
//! caller that does not care which part of core failed can use `?` into a
//! single type, and one that does can match.

use crate::config::ConfigError;
use crate::id::ParseIdError;
use crate::resources::ResourceError;
use crate::rpc::RpcError;
use crate::telemetry::TelemetryError;

/// Any error of `troupe-core`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Id(#[from] ParseIdError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
