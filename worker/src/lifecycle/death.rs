//! [`DeathReason`]: why an actor is DEAD, worded for the person who reads
//! `troupe status` or the caller who gets an "actor died" error.

use std::fmt;

use serde::{Deserialize, Serialize};
use troupe_core::id::NodeId;

use crate::schema::Owner;

/// Why an actor died. Its [`Display`](fmt::Display) completes "actor died: …".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeathReason {
    /// A user killed it.
    KilledByUser,
    /// Its owner died and its lifetime is owned.
    OwnerDied { owner: Owner },
    /// Its node died with no restart left; `budget` is its `max_restarts`.
    NodeDied { node: NodeId, budget: u32 },
    /// Its constructor returned an error or panicked. Not retried: the same
    /// constructor with the same argument would fail again.
    ConstructorFailed { message: String },
    /// A handler panicked with no restart left; `budget` is its
    /// `max_restarts`.
    HandlerPanicked { message: String, budget: u32 },
}

/// `"max_restarts is 0, so it was not restarted"` or
/// `"its restart budget of 2 was spent"`, and what to do about it.
fn budget_spent(budget: u32) -> String {
    if budget == 0 {
        "max_restarts is 0, so it was not restarted; set max_restarts to restart it".to_owned()
    } else {
        format!(
            "its restart budget of {budget} was spent; raise max_restarts (-1 for unlimited) \
             to restart it more often"
        )
    }
}

impl fmt::Display for DeathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KilledByUser => f.write_str("killed by a user"),
            Self::OwnerDied { owner } => write!(
                f,
                "its owner {owner} died; spawn it with a detached lifetime to let it outlive \
                 its owner"
            ),
            Self::NodeDied { node, budget } => {
                write!(f, "its node {node} died and {}", budget_spent(*budget))
            }
            Self::ConstructorFailed { message } => write!(
                f,
                "its constructor failed: {message}; constructors are not retried, fix the \
                 error and spawn it again"
            ),
            Self::HandlerPanicked { message, budget } => {
                write!(
                    f,
                    "a handler panicked: {message}; {}",
                    budget_spent(*budget)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::id::ActorId;

    #[test]
    fn reasons_say_what_happened_and_what_to_do() {
        let node = NodeId::new(1);
        let cases = [
            (DeathReason::KilledByUser, "killed by a user"),
            (
                DeathReason::OwnerDied {
                    owner: Owner::Actor(ActorId::new(2)),
                },
                "its owner actor-0000000000000002 died; spawn it with a detached lifetime to \
                 let it outlive its owner",
            ),
            (
                DeathReason::NodeDied { node, budget: 0 },
                "its node node-0000000000000001 died and max_restarts is 0, so it was not \
                 restarted; set max_restarts to restart it",
            ),
            (
                DeathReason::NodeDied { node, budget: 1 },
                "its node node-0000000000000001 died and its restart budget of 1 was spent; \
                 raise max_restarts (-1 for unlimited) to restart it more often",
            ),
            (
                DeathReason::ConstructorFailed {
                    message: "no model file".into(),
                },
                "its constructor failed: no model file; constructors are not retried, fix the \
                 error and spawn it again",
            ),
            (
                DeathReason::HandlerPanicked {
                    message: "index out of bounds".into(),
                    budget: 3,
                },
                "a handler panicked: index out of bounds; its restart budget of 3 was spent; \
                 raise max_restarts (-1 for unlimited) to restart it more often",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }
}
