//! The actor lifecycle as a pure state machine: [`step`] turns an
//! [`ActorRecord`] and an [`Event`] into the next record and the
//! [`Action`]s the runtime must carry out.
//!
//! ```text
//!            Placed           Started
//!  PENDING ──────────> (on node) ──────> ALIVE ──┐ node died / handler panicked,
//!     ▲  node died before start │                │ restart budget left
//!     └─────────────────────────┘                ▼
//!                       Started           RESTARTING ──Placed──> (on node)
//!  ALIVE <──────────────────────────────────────┘
//!  any state ── killed / owner died (owned) / constructor failed /
//!               budget spent ──> DEAD(reason)
//! ```
//!
//! Rules the tests pin down:
//! - The restart budget (`max_restarts`) is spent only when an ALIVE
//!   instance is lost. A node dying under an actor that was still being
//!   constructed puts it back in the placement queue for free.
//! - A handler panic restarts the actor on the same node (its resources
//!   stay reserved); a node death restarts it wherever placement finds room.
//!   A panic of the current incarnation counts even before its `Started`
//!   was seen: reports share one key per node and actor, so the panic's
//!   report may replace the start's.
//! - A constructor failure is final: the same constructor with the same
//!   argument would fail again.
//! - Reports carry the incarnation they are about; one from an older
//!   instance, an event for another node, or any event once DEAD leaves the
//!   record unchanged with no actions, so the runtime may feed duplicates.
//! - `node` is `Some` exactly while the actor holds an assignment; every
//!   path that takes it away emits [`Action::StopOn`].

use serde::{Deserialize, Serialize};
use troupe_core::id::NodeId;

mod death;

pub use death::DeathReason;

use crate::schema::{ActorName, ActorRecord, Lifetime, RetryLimit};

/// Where an actor is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActorState {
    /// Spawned, not yet running: waiting for a node or being constructed.
    Pending,
    /// Running and answering calls.
    Alive,
    /// Lost its instance and is being started again; calls wait.
    Restarting,
    /// Gone for good.
    Dead { reason: DeathReason },
}

impl ActorState {
    /// The name `troupe status` shows: `PENDING`, `ALIVE`, `RESTARTING`, `DEAD`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Alive => "ALIVE",
            Self::Restarting => "RESTARTING",
            Self::Dead { .. } => "DEAD",
        }
    }

    /// Whether the actor waits for a node or for its constructor.
    fn is_starting(&self) -> bool {
        matches!(self, Self::Pending | Self::Restarting)
    }
}

/// Something that happened to an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The scheduler chose `node` for it.
    Placed { node: NodeId },
    /// The scheduler could not place it, for `reason`.
    Unschedulable { reason: String },
    /// `node` reports that incarnation `incarnation` finished constructing.
    Started { node: NodeId, incarnation: u64 },
    /// `node`'s lease expired.
    NodeDied { node: NodeId },
    /// A handler of incarnation `incarnation` panicked with `message`.
    HandlerPanicked { incarnation: u64, message: String },
    /// The constructor of incarnation `incarnation` failed with `message`.
    ConstructorFailed { incarnation: u64, message: String },
    /// A user killed it.
    Killed,
    /// Its owner died.
    OwnerDied,
}

/// What the runtime must do after a transition, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Queue the actor for the next placement round.
    Place,
    /// Write the assignment of `incarnation` to `node`, which then
    /// constructs it (replacing an older incarnation it may still hold).
    StartOn { node: NodeId, incarnation: u64 },
    /// Delete the actor's assignment on `node`; a live node stops the
    /// instance and frees its resources.
    StopOn { node: NodeId },
    /// Fail every queued, in-flight and future call with "actor died:
    /// {reason}"; no retries.
    FailPendingCalls { reason: DeathReason },
    /// Wake whoever waits for the actor to leave PENDING or RESTARTING
    /// (callers holding calls, name lookups waiting for it to be ready).
    NotifyWaiters,
    /// Delete the actor's name so it can be taken again.
    ReleaseName { name: ActorName },
}

/// The outcome of one [`step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The record to write (equal to the input when the event is ignored).
    pub record: ActorRecord,
    /// What to do once the record is written.
    pub actions: Vec<Action>,
}

impl Transition {
    fn unchanged(record: &ActorRecord) -> Self {
        Self {
            record: record.clone(),
            actions: Vec::new(),
        }
    }
}

/// Applies `event` to `record`.
pub fn step(record: &ActorRecord, event: Event) -> Transition {
    if matches!(record.state, ActorState::Dead { .. }) {
        return Transition::unchanged(record);
    }
    let on_node = |node: NodeId| record.node == Some(node);
    let current = |incarnation: u64| incarnation == record.incarnation;
    match event {
        Event::Placed { node } if record.state.is_starting() && record.node.is_none() => {
            start_on(record, node, record.state.clone())
        }
        Event::Unschedulable { reason }
            if record.state.is_starting()
                && record.node.is_none()
                && record.pending_reason.as_deref() != Some(&reason) =>
        {
            let mut next = record.clone();
            next.pending_reason = Some(reason);
            Transition {
                record: next,
                actions: Vec::new(),
            }
        }
        Event::Started { node, incarnation }
            if record.state.is_starting() && on_node(node) && current(incarnation) =>
        {
            let mut next = record.clone();
            next.state = ActorState::Alive;
            Transition {
                record: next,
                actions: vec![Action::NotifyWaiters],
            }
        }
        Event::NodeDied { node } if on_node(node) => node_died(record, node),
        Event::HandlerPanicked {
            incarnation,
            message,
        } if record.node.is_some() && current(incarnation) => {
            // A panic proves the instance started, even if its start report
            // was overwritten by this one before the scheduler read it.
            let budget = record.options.max_restarts;
            match (record.node, budget.allows_another(record.restarts)) {
                (Some(node), true) => {
                    let mut restarting = start_on(record, node, ActorState::Restarting);
                    restarting.record.restarts += 1;
                    restarting
                }
                _ => die(
                    record,
                    DeathReason::HandlerPanicked {
                        message,
                        budget: limit(record),
                    },
                ),
            }
        }
        Event::ConstructorFailed {
            incarnation,
            message,
        } if record.state.is_starting() && record.node.is_some() && current(incarnation) => {
            die(record, DeathReason::ConstructorFailed { message })
        }
        Event::Killed => die(record, DeathReason::KilledByUser),
        Event::OwnerDied if record.options.lifetime == Lifetime::Owned => die(
            record,
            DeathReason::OwnerDied {
                owner: record.owner,
            },
        ),
        _ => Transition::unchanged(record),
    }
}

/// `record` assigned to `node` as a new incarnation, in `state`.
fn start_on(record: &ActorRecord, node: NodeId, state: ActorState) -> Transition {
    let mut next = record.clone();
    next.state = state;
    next.node = Some(node);
    next.incarnation += 1;
    next.pending_reason = None;
    let incarnation = next.incarnation;
    Transition {
        record: next,
        actions: vec![Action::StartOn { node, incarnation }],
    }
}

/// `record`'s node died under it.
fn node_died(record: &ActorRecord, node: NodeId) -> Transition {
    let requeue = |state: ActorState, restarts: u32| {
        let mut next = record.clone();
        next.state = state;
        next.node = None;
        next.restarts = restarts;
        Transition {
            record: next,
            actions: vec![Action::StopOn { node }, Action::Place],
        }
    };
    if record.state.is_starting() {
        // Never came up: no restart spent.
        return requeue(record.state.clone(), record.restarts);
    }
    if record.options.max_restarts.allows_another(record.restarts) {
        requeue(ActorState::Restarting, record.restarts + 1)
    } else {
        die(
            record,
            DeathReason::NodeDied {
                node,
                budget: limit(record),
            },
        )
    }
}

/// The `max_restarts` to report in a death reason; only ever called with a
/// limited budget, since an unlimited one always allows another restart.
fn limit(record: &ActorRecord) -> u32 {
    match record.options.max_restarts {
        RetryLimit::AtMost(n) => n,
        RetryLimit::Unlimited => record.restarts,
    }
}

/// `record` DEAD for `reason`, with the clean-up actions.
fn die(record: &ActorRecord, reason: DeathReason) -> Transition {
    let mut actions = Vec::new();
    if let Some(node) = record.node {
        actions.push(Action::StopOn { node });
    }
    actions.push(Action::FailPendingCalls {
        reason: reason.clone(),
    });
    actions.push(Action::NotifyWaiters);
    if let Some(name) = &record.name {
        actions.push(Action::ReleaseName { name: name.clone() });
    }
    let mut next = record.clone();
    next.state = ActorState::Dead { reason };
    next.node = None;
    next.pending_reason = None;
    Transition {
        record: next,
        actions,
    }
}

#[cfg(test)]
mod tests;
