//! One round of the cluster controller as a pure function: the cluster
//! state and the queued requests in, the writes and the answers out.
//!
//! A round, in order: create spawned actors, apply kills, notice dead nodes
//! and dead owners, apply the nodes' reports, place everything that waits
//! for a node, then collect what has been dead for the retention
//! ([`super::gc`]). Each change goes through [`lifecycle::step`], and its
//! actions become key writes; the controller commits all of a round's
//! writes in one transaction fenced by its term.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use troupe_core::id::ActorId;

use super::gc::{self, Clock};
use crate::actor::ActorError;
use crate::lifecycle::{self, Action, ActorState, Event, Transition};
use crate::placement::{plan, Decision, NodeView, PlacementPolicy, PlacementRequest};
use crate::protocol::SpawnRequest;
use crate::schema::{
    self, ActorName, ActorNameRecord, ActorRecord, AssignmentRecord, Key, Lifetime, Owner,
    ReportOutcome,
};
use crate::view::ClusterState;

/// What one round decided.
#[derive(Debug, Default)]
pub(crate) struct RoundPlan {
    /// Key → new value, or `None` to delete; applied as one transaction.
    pub writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// One answer per spawn, in order.
    pub spawned: Vec<Result<ActorRecord, ActorError>>,
    /// One answer per kill, in order.
    pub killed: Vec<Result<ActorRecord, ActorError>>,
}

/// The working state of one round.
struct Round<'a> {
    state: &'a ClusterState,
    term: u64,
    clock: Clock,
    actors: BTreeMap<ActorId, ActorRecord>,
    names: BTreeMap<ActorName, ActorId>,
    changed: BTreeSet<ActorId>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// What the round may write, about (see [`ROUND_BYTES`]).
    budget: usize,
}

/// What one round may write: the control store's write limit less a
/// margin for the transaction's fence and framing. Changes past it wait
/// for the next round: an actor's record and its assignment both carry its
/// arguments, which may be a large `user_config`, so a round that started,
/// noticed or placed many such actors at once would be refused.
pub(crate) const ROUND_BYTES: usize = troupe_gcs::MAX_WRITE_BYTES - (256 << 10);

/// Decides one round at `term` on `state`, at `clock` (death times,
/// collection).
pub(crate) fn reconcile(
    state: &ClusterState,
    term: u64,
    clock: Clock,
    spawns: &[SpawnRequest],
    kills: &[ActorId],
    policy: PlacementPolicy,
) -> RoundPlan {
    reconcile_within(state, term, clock, spawns, kills, policy, ROUND_BYTES)
}

/// [`reconcile`] making the changes that can wait (deaths, reports,
/// placements: the state still shows them next round) only while the
/// round's writes stay within `budget` bytes (one even over it when the
/// round writes nothing else).
pub(crate) fn reconcile_within(
    state: &ClusterState,
    term: u64,
    clock: Clock,
    spawns: &[SpawnRequest],
    kills: &[ActorId],
    policy: PlacementPolicy,
    budget: usize,
) -> RoundPlan {
    let mut round = Round {
        state,
        term,
        clock,
        actors: state.actors.clone(),
        names: state.names.clone(),
        changed: BTreeSet::new(),
        writes: BTreeMap::new(),
        budget,
    };
    let spawned: Vec<_> = spawns.iter().map(|s| round.spawn(s)).collect();
    let killed_ids: Vec<_> = kills
        .iter()
        .map(|id| round.event(*id, Event::Killed).map(|()| *id))
        .collect();
    round.notice_deaths();
    round.apply_reports();
    round.place(policy);
    round.collect();
    round.stamp();
    let finished =
        |r: Result<ActorId, ActorError>, round: &Round| r.map(|id| round.actors[&id].clone());
    let spawned = spawned.into_iter().map(|r| finished(r, &round)).collect();
    let killed = killed_ids
        .into_iter()
        .map(|r| finished(r, &round))
        .collect();
    let writes = round.finish();
    RoundPlan {
        writes,
        spawned,
        killed,
    }
}

impl Round<'_> {
    fn spawn(&mut self, request: &SpawnRequest) -> Result<ActorId, ActorError> {
        if self.actors.contains_key(&request.id) {
            // A retried spawn: answer with what exists.
            return Ok(request.id);
        }
        if let Some(name) = &request.name {
            if let Some(holder) = self.names.get(name) {
                let alive = self
                    .actors
                    .get(holder)
                    .is_some_and(|a| !matches!(a.state, ActorState::Dead { .. }));
                if alive {
                    return Err(ActorError::NameTaken {
                        name: name.to_string(),
                        holder: holder.to_string(),
                    });
                }
            }
        }
        let mut record = ActorRecord::new(
            request.id,
            request.type_name.clone(),
            request.owner,
            request.options.clone(),
        );
        record.name = request.name.clone();
        record.args = request.args.to_vec();
        if let Some(name) = &request.name {
            self.names.insert(name.clone(), request.id);
            let value = schema::encode(&ActorNameRecord { actor: request.id });
            self.writes
                .insert(Key::ActorName(name.clone()).to_bytes(), Some(value));
        }
        self.actors.insert(request.id, record);
        self.changed.insert(request.id);
        Ok(request.id)
    }

    /// Applies `event` to actor `id` and carries out the actions.
    fn event(&mut self, id: ActorId, event: Event) -> Result<(), ActorError> {
        let record = self.actors.get(&id).ok_or_else(|| ActorError::NotFound {
            what: format!("with id {id}"),
        })?;
        let Transition { record, actions } = lifecycle::step(record, event);
        if record != self.actors[&id] {
            self.changed.insert(id);
        }
        for action in actions {
            self.act(&record, action);
        }
        self.actors.insert(id, record);
        Ok(())
    }

    fn act(&mut self, record: &ActorRecord, action: Action) {
        match action {
            Action::StartOn { node, incarnation } => {
                let assignment = AssignmentRecord {
                    actor: record.id,
                    incarnation,
                    type_name: record.type_name.clone(),
                    args: record.args.clone(),
                    resources: record.options.resources.clone(),
                    term: self.term,
                };
                let key = Key::Assignment {
                    node,
                    actor: record.id,
                };
                self.writes
                    .insert(key.to_bytes(), Some(schema::encode(&assignment)));
            }
            Action::StopOn { node } => {
                let key = Key::Assignment {
                    node,
                    actor: record.id,
                };
                self.writes.insert(key.to_bytes(), None);
            }
            Action::ReleaseName { name } => {
                if self.names.get(&name) == Some(&record.id) {
                    self.names.remove(&name);
                    self.writes.insert(Key::ActorName(name).to_bytes(), None);
                }
            }
            // Placement runs after every event of the round; callers learn
            // of deaths and starts from the actor record itself.
            Action::Place | Action::FailPendingCalls { .. } | Action::NotifyWaiters => {}
        }
    }

    /// Actors on nodes whose lease expired, and owned actors whose owner is
    /// gone.
    fn notice_deaths(&mut self) {
        let mut events = Vec::new();
        for (id, record) in &self.actors {
            if matches!(record.state, ActorState::Dead { .. }) {
                continue;
            }
            if let Some(node) = record.node {
                if !self.state.nodes.contains_key(&node) {
                    events.push((*id, Event::NodeDied { node }));
                }
            }
            if record.options.lifetime == Lifetime::Owned {
                if let Owner::Node(owner) = record.owner {
                    if !self.state.owners.contains_key(&owner) {
                        events.push((*id, Event::OwnerDied));
                    }
                }
            }
        }
        for (id, event) in events {
            if self.admits(id) {
                let _ = self.event(id, event);
            }
        }
    }

    fn apply_reports(&mut self) {
        let mut events = Vec::new();
        for ((node, actor), report) in &self.state.reports {
            let Some(record) = self.actors.get(actor) else {
                continue;
            };
            if record.node != Some(*node) || record.incarnation != report.incarnation {
                continue;
            }
            let incarnation = report.incarnation;
            let event = match &report.outcome {
                ReportOutcome::Started => Event::Started {
                    node: *node,
                    incarnation,
                },
                ReportOutcome::ConstructorFailed { message } => Event::ConstructorFailed {
                    incarnation,
                    message: message.clone(),
                },
                ReportOutcome::HandlerPanicked { message } => Event::HandlerPanicked {
                    incarnation,
                    message: message.clone(),
                },
            };
            events.push((*actor, event));
        }
        for (id, event) in events {
            if self.admits(id) {
                let _ = self.event(id, event);
            }
        }
    }

    /// Whether a change to actor `id` that can wait (its record rewritten,
    /// maybe an assignment written) fits in the round. In a round that
    /// writes nothing yet it always does, so rounds without requests
    /// always progress.
    fn admits(&self, id: ActorId) -> bool {
        let used = self.bytes();
        used == 0 || used.saturating_add(2 * self.record_bytes(id)) <= self.budget
    }

    /// What the round writes so far, about: its key writes and the
    /// records of the actors it changed.
    fn bytes(&self) -> usize {
        let writes: usize = self
            .writes
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum();
        let records: usize = self.changed.iter().map(|id| self.record_bytes(*id)).sum();
        writes + records
    }

    /// About what actor `id`'s record (or its assignment) weighs.
    fn record_bytes(&self, id: ActorId) -> usize {
        const FIELDS: usize = 512;
        self.actors.get(&id).map_or(0, |a| a.args.len() + FIELDS)
    }

    /// Places the actors that wait for a node, as many as the round's
    /// budget admits; the others wait for the next round.
    fn place(&mut self, policy: PlacementPolicy) {
        let waiting: VecDeque<PlacementRequest> = self
            .actors
            .values()
            .filter(|a| {
                matches!(a.state, ActorState::Pending | ActorState::Restarting) && a.node.is_none()
            })
            .map(|a| PlacementRequest {
                actor: a.id,
                resources: a.options.resources.clone(),
                name: a.name.as_ref().map(ToString::to_string),
                spread_group: a.options.spread_group.clone(),
            })
            .collect();
        if waiting.is_empty() {
            return;
        }
        let mut assigned: BTreeMap<_, Vec<&ActorRecord>> = BTreeMap::new();
        for actor in self.actors.values() {
            if let (Some(node), false) =
                (actor.node, matches!(actor.state, ActorState::Dead { .. }))
            {
                assigned.entry(node).or_default().push(actor);
            }
        }
        let nodes: Vec<NodeView> = self
            .state
            .nodes
            .values()
            .map(|n| {
                let held = assigned.get(&n.id).map_or(&[][..], Vec::as_slice);
                NodeView::from_record(n, true, held.iter().map(|a| &a.options.resources))
                    .with_groups(
                        held.iter()
                            .filter_map(|a| a.options.spread_group.as_deref()),
                    )
            })
            .collect();
        let requests: Vec<_> = waiting.into_iter().collect();
        let decisions = plan(&nodes, &requests, policy).decisions;
        for decision in decisions {
            match decision {
                Decision::Place { actor, node } => {
                    if self.admits(actor) {
                        let _ = self.event(actor, Event::Placed { node });
                    }
                }
                Decision::Pending { actor, reason } => {
                    let reason = reason.message().to_owned();
                    let _ = self.event(actor, Event::Unschedulable { reason });
                }
            }
        }
    }

    /// Deletes what [`gc::garbage`] finds, as far as the round's budget
    /// and [`gc::MAX_DELETES`] admit, never a key the round writes
    /// otherwise nor anything of an actor it changed; dead records without
    /// a death time join the changed ones (to be stamped).
    fn collect(&mut self) {
        let garbage = gc::garbage(self.state, self.clock);
        for id in garbage.unstamped {
            if !self.changed.contains(&id) && self.admits(id) {
                self.changed.insert(id);
            }
        }
        let mut used = self.bytes();
        let mut deleted = 0;
        for key in garbage.keys {
            // A delete's cost in the transaction: its key and framing.
            let cost = key.len() + 64;
            if deleted == gc::MAX_DELETES || used + cost > self.budget {
                break;
            }
            let touched = match Key::parse(&key) {
                Ok(Key::Actor(id) | Key::Report { actor: id, .. })
                | Ok(Key::Assignment { actor: id, .. }) => self.changed.contains(&id),
                _ => false,
            };
            if touched || self.writes.contains_key(&key) {
                continue;
            }
            self.writes.insert(key, None);
            used += cost;
            deleted += 1;
        }
    }

    /// Stamps every changed actor record with the round's term, and those
    /// DEAD without a death time with the round's time.
    fn stamp(&mut self) {
        for id in &self.changed {
            if let Some(record) = self.actors.get_mut(id) {
                record.term = self.term;
                if matches!(record.state, ActorState::Dead { .. }) && record.died_at_ms.is_none() {
                    record.died_at_ms = Some(self.clock.now_ms);
                }
            }
        }
    }

    /// The round's writes: the events' key writes and every changed actor
    /// record.
    fn finish(mut self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        for id in &self.changed {
            let record = &self.actors[id];
            self.writes
                .insert(Key::Actor(*id).to_bytes(), Some(schema::encode(record)));
        }
        self.writes
    }
}

#[cfg(test)]
mod tests;
