//! Garbage collection of the node layer's tables, as a pure decision:
//! which keys the controller deletes at `now`, so the GCS holds the live
//! cluster and a recent window of its history, not all of it.
//!
//! What goes, once an actor has been DEAD for the retention (its
//! [`ActorRecord::died_at_ms`] at least `retention_ms` before `now`):
//!
//! - its record, `/troupe/actors/<id>`;
//! - the reports nodes wrote about it, `/troupe/reports/<node>/<id>`;
//! - its assignments and its name record, should any still exist (death
//!   deletes both at once; this only mends what an older binary left).
//!
//! Reports, names and assignments of actors that have no record at all
//! go too (orphans). Never collected: the record of an actor that is not
//! DEAD, a name held by such an actor, anything of an actor the current
//! round changes. Owner records (`/troupe/owners/<id>`) and node records
//! are written under their process's lease and vanish with it, so they
//! need no collection. A DEAD record without a death time (written before
//! the field existed) is stamped with `now` first and collected a
//! retention later.
//!
//! The round admits the deletions oldest death first, at most
//! [`MAX_DELETES`] of them and within its write budget; the rest wait for
//! the next round (see [`super::reconcile`]).

use std::time::Duration;

use troupe_core::id::ActorId;

use crate::lifecycle::ActorState;
use crate::schema::{ActorRecord, Key};
use crate::view::ClusterState;

/// How many keys one round deletes at most: the transaction's watch
/// events stay a modest batch for every process of the cluster.
pub(crate) const MAX_DELETES: usize = 1024;

/// When a round runs and how long the dead are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clock {
    /// Now, in milliseconds since the Unix epoch (the controller's clock).
    pub now_ms: u64,
    /// How long a DEAD actor's record is kept after its death.
    pub retention_ms: u64,
}

impl Clock {
    /// The wall clock now, keeping the dead for `retention`.
    pub(crate) fn now(retention: Duration) -> Clock {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock {
            now_ms,
            retention_ms: retention.as_millis().min(u128::from(u64::MAX)) as u64,
        }
    }

    /// Whether `record` is DEAD and was so for the retention.
    pub(crate) fn expired(&self, record: &ActorRecord) -> bool {
        matches!(record.state, ActorState::Dead { .. })
            && record
                .died_at_ms
                .is_some_and(|at| self.now_ms.saturating_sub(at) >= self.retention_ms)
    }
}

/// What collection decides on one state.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Garbage {
    /// DEAD actors without a death time: to be stamped with `now`.
    pub unstamped: Vec<ActorId>,
    /// Keys to delete, those of the longest dead first, orphans last.
    pub keys: Vec<Vec<u8>>,
}

/// The garbage of `state` at `clock`.
pub(crate) fn garbage(state: &ClusterState, clock: Clock) -> Garbage {
    let mut unstamped = Vec::new();
    let mut expired: Vec<(u64, ActorId)> = Vec::new();
    for (id, record) in &state.actors {
        if !matches!(record.state, ActorState::Dead { .. }) {
            continue;
        }
        match record.died_at_ms {
            None => unstamped.push(*id),
            Some(at) if clock.expired(record) => expired.push((at, *id)),
            Some(_) => {}
        }
    }
    expired.sort_unstable();
    let mut keys = Vec::new();
    for (_, id) in &expired {
        keys.push(Key::Actor(*id).to_bytes());
        let of_id = |(node, actor): &(_, ActorId)| (actor == id).then_some(*node);
        for node in state.reports.keys().filter_map(of_id) {
            keys.push(Key::Report { node, actor: *id }.to_bytes());
        }
        for node in state.assignments.keys().filter_map(of_id) {
            keys.push(Key::Assignment { node, actor: *id }.to_bytes());
        }
    }
    // Orphans: what refers to an actor without a record; and names of
    // the collected (death frees a name, so only an older binary's).
    let orphan = |id: &ActorId| !state.actors.contains_key(id);
    let collected = |id: &ActorId| state.actors.get(id).is_some_and(|r| clock.expired(r));
    for (node, actor) in state.reports.keys().filter(|(_, a)| orphan(a)) {
        keys.push(
            Key::Report {
                node: *node,
                actor: *actor,
            }
            .to_bytes(),
        );
    }
    for (node, actor) in state.assignments.keys().filter(|(_, a)| orphan(a)) {
        keys.push(
            Key::Assignment {
                node: *node,
                actor: *actor,
            }
            .to_bytes(),
        );
    }
    for (name, holder) in &state.names {
        if orphan(holder) || collected(holder) {
            keys.push(Key::ActorName(name.clone()).to_bytes());
        }
    }
    Garbage { unstamped, keys }
}

#[cfg(test)]
mod tests;
