//! Where a handle's actor is: [`ActorHandle::locate`] waits, until the
//! call's deadline, for the view to give the actor a node and a recent
//! enough incarnation (or to say it is dead or unknown); and the
//! in-process side of that: whether the actor runs here and its local
//! instance.

use std::time::Duration;

use tokio::time::Instant;

use super::{ActorHandle, Location};
use crate::actor::{Actor, ActorError};
use crate::hosting::arbiter_index;
use crate::lifecycle::ActorState;
use crate::view::Lookup;

impl<A: Actor> ActorHandle<A> {
    /// Whether `location` is this process's node.
    pub(super) fn is_local(&self, location: &Location) -> bool {
        self.cluster.inner.local.is_some() && location.node == self.cluster.inner.me
    }

    /// Waits (briefly) for this node's instance table or the view to change.
    pub(super) async fn wait_for_local(&self, deadline: Instant) {
        let Some(hosting) = &self.cluster.inner.local else {
            return;
        };
        let mut table = hosting.subscribe();
        let mut view = self.cluster.inner.view.subscribe();
        let until = deadline.min(Instant::now() + Duration::from_millis(200));
        tokio::select! {
            _ = table.changed() => {}
            _ = view.changed() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }

    /// The in-process instance, when it runs here in the expected
    /// incarnation (or a newer one).
    pub(super) fn local_instance(
        &self,
        location: &Location,
    ) -> Option<actix::Addr<crate::hosting::Host<A>>> {
        let hosting = self.cluster.inner.local.as_ref()?;
        if location.node != self.cluster.inner.me {
            return None;
        }
        hosting.typed::<A>(self.id, location.incarnation)
    }

    /// Waits (until `deadline`) for the actor to have a node and an
    /// incarnation of at least `min_incarnation`.
    pub(super) async fn locate(
        &self,
        min_incarnation: u64,
        deadline: Instant,
    ) -> Result<Location, ActorError> {
        let inner = &self.cluster.inner;
        let mut rx = inner.view.subscribe();
        loop {
            let waiting = {
                let state = rx.borrow_and_update();
                // Notes the use (a narrow view looks the actor up once, and
                // keeps it fresh while it is used); never waits.
                inner.view.want_actor(self.id);
                let record = match state.lookup(self.id, self.known_at) {
                    Lookup::NotYet => None,
                    Lookup::NotFound => {
                        return Err(ActorError::NotFound {
                            what: format!("with id {}", self.id),
                        })
                    }
                    Lookup::Found(record) => Some(record),
                };
                if let Some(record) = record {
                    if let ActorState::Dead { reason } = &record.state {
                        return Err(ActorError::Died {
                            actor: self.id.to_string(),
                            reason: reason.to_string(),
                        });
                    }
                    match record
                        .node
                        .and_then(|n| state.nodes.get(&n).map(|r| (n, r)))
                    {
                        Some((node, node_record)) if record.incarnation >= min_incarnation => {
                            let addrs = &node_record.data_addrs;
                            let addr = match addrs.len() {
                                0 => &node_record.addr,
                                n => &addrs[arbiter_index(self.id, n)],
                            };
                            return Ok(Location {
                                node,
                                addr: addr.clone(),
                                node_addr: node_record.addr.clone(),
                                incarnation: record.incarnation,
                                retries: record.options.max_task_retries,
                            });
                        }
                        _ => match (&record.state, &record.pending_reason) {
                            (ActorState::Pending, Some(reason)) => reason.clone(),
                            (ActorState::Pending, None) => "waiting to be placed".into(),
                            _ => "restarting after its instance was lost".into(),
                        },
                    }
                } else if state.full {
                    "the cluster state has not caught up yet".to_string()
                } else {
                    "looking the actor up in the GCS".to_string()
                }
            };
            let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Err(match waiting.starts_with("restarting") {
                    true => self.unavailable(&waiting),
                    false => ActorError::Pending {
                        actor: self.id.to_string(),
                        reason: waiting,
                    },
                });
            }
        }
    }

    pub(super) async fn wait_for_change(&self, deadline: Instant) {
        let mut rx = self.cluster.inner.view.subscribe();
        let until = deadline.min(Instant::now() + Duration::from_millis(200));
        let _ = tokio::time::timeout_at(until, rx.changed()).await;
    }
}
