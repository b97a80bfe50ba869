//! [`ActorError`]: why a spawn, a lookup or a call did not succeed.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why an actor operation failed. Each message says what to do next.
///
/// It travels between nodes (a remote call's failure is the remote node's
/// `ActorError`), so it holds only text and ids.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ActorError {
    /// The actor is DEAD; `reason` completes "actor died: …".
    #[error("actor {actor} died: {reason}")]
    Died { actor: String, reason: String },
    /// The actor did not answer: its instance was lost (node died, handler
    /// panicked) and `max_task_retries` did not allow (another) retry, or
    /// it was still restarting when the call's deadline passed.
    #[error("actor {actor} is unavailable: {detail}")]
    Unavailable { actor: String, detail: String },
    /// A handler of a shared actor panicked; the call failed, the instance
    /// goes on.
    #[error("a handler of actor {actor} panicked: {message}")]
    HandlerPanicked { actor: String, message: String },
    /// The actor has not started before the deadline.
    #[error("actor {actor} is still pending: {reason}")]
    Pending { actor: String, reason: String },
    /// No actor has this id or name.
    #[error("no actor {what}; check the name and namespace, or list actors with `troupe status`")]
    NotFound { what: String },
    /// The name is held by a live actor.
    #[error(
        "the actor name {name} is taken by {holder}; pick another name or kill that actor first"
    )]
    NameTaken { name: String, holder: String },
    /// The node asked to host the actor does not know its type.
    #[error("actor type {type_name:?} is not registered in this binary; register it in the Registry passed to troupe::cli::run, and run the same binary on every node")]
    NotRegistered { type_name: String },
    /// The actor type does not answer this message.
    #[error("actor type {type_name:?} has no handler for message {message:?}; add `.handles::<{message}>()` to its ActorType registration")]
    UnknownMessage { type_name: String, message: String },
    /// A message, reply or argument did not decode: the two sides run
    /// different versions of the types.
    #[error("could not decode {what}: {detail}; run the same binary on every node")]
    Codec { what: String, detail: String },
    /// Spawn options that no node can honour or that are malformed.
    #[error("invalid spawn options: {0}")]
    InvalidOptions(String),
    /// The control store or a node could not be reached in time.
    #[error("the cluster did not answer: {0}")]
    Cluster(String),
    /// A fail-fast call could not be delivered (its node refused or did
    /// not answer the connection, or no longer hosts the actor); the call
    /// did not run, so sending it elsewhere is safe.
    #[error("actor {actor} could not be reached ({detail}); the call did not run")]
    NotDelivered { actor: String, detail: String },
}

impl ActorError {
    /// Whether the call may be retried after the actor restarts.
    pub(crate) fn is_instance_lost(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
