//! `troupe-core`: the foundation every other Troupe crate stands on.
//!
//! It knows nothing about clusters, Raft or HTTP: only the vocabulary
//! (ids, resources, errors, config validation), the one tracing setup that
//! binaries call, and the internal RPC transport the GCS, the nodes and the
//! serve layer talk over.
//!
//! # Layout
//!
//! - [`id`]: typed identifiers (`NodeId`, `ActorId`, `DeploymentId`,
//!   `ReplicaId`, `RequestId`, ...).
//! - [`resources`]: `Resources` with exact fixed-point fractional amounts
//!   and the feasibility checks placement relies on.
//! - [`config`]: the `Validate` trait, path-carrying config errors and the
//!   `ENV_*` / `DEFAULT_*` helpers.
//! - [`telemetry`]: the tracing-subscriber setup (env filter, text or JSON).
//! - [`rpc`]: framed, authenticated, multiplexed RPC over TCP with deadlines,
//!   one-way messages and flow-controlled server streams.
//! - [`error`]: the crate-level [`Error`] that wraps each module's error.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod id;
pub mod resources;
pub mod rpc;
pub mod telemetry;

pub use error::{Error, Result};
