//! [`ResourceError`]: everything that can go wrong with resources.

use thiserror::Error;

use super::amount::AmountProblem;

/// Everything that can go wrong building, combining or placing [`Resources`].
///
/// `resource` fields hold the resource's name (`"GPU"`, `"accel"`); amounts
/// in `requested`, `available` and `largest` are rendered with their unit
/// (`"0.5 GPU"`, `"1024 bytes of memory"`); `option` is what a user sets to
/// request the resource (`num_gpus`, `resources["accel"]`).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ResourceError {
    /// A number that is not a valid amount; `resource` is `"resource"` when
    /// the amount was not yet tied to a named resource.
    #[error("invalid {resource} amount {value}: {problem}")]
    InvalidAmount {
        resource: String,
        value: f64,
        problem: AmountProblem,
    },
    /// A custom resource name that is empty or means a built-in resource.
    #[error("invalid custom resource name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    /// A subtraction that would leave less than nothing.
    #[error(
        "not enough {resource}: requested {requested} but only {available} is available; \
         wait for running work to release some or request less"
    )]
    Insufficient {
        resource: String,
        requested: String,
        available: String,
    },
    /// A sum too large to represent.
    #[error("{resource} total overflowed; no real cluster has that much, so this is a bug")]
    Overflow { resource: String },
    /// More of one resource than any node has in total (`largest` is zero
    /// when no node has the resource at all).
    #[error(
        "requested {requested} but the largest node has {largest} in total; \
         add a node with at least {requested} or lower {option}"
    )]
    Infeasible {
        resource: String,
        requested: String,
        largest: String,
        option: String,
    },
    /// Every resource exists somewhere, but no single node has all of them.
    #[error(
        "requested {requested} but no single node has all of it in total, although each \
         resource exists on some node; add a node with at least {requested} or request less"
    )]
    NoSingleNodeFits { requested: String },
    /// There are no nodes to place anything on.
    #[error("cannot place {requested}: the cluster has no nodes; start a node first")]
    NoNodes { requested: String },
}
