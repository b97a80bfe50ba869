//! The cluster scheduler's placement decision: a pure function from a
//! snapshot of nodes and a queue of actors to a [`PlacementPlan`].
//!
//! The runtime (the scheduler singleton on the GCS leader's node) builds the
//! snapshot from the node records, their leases and the current assignments,
//! calls [`plan`], and writes the plan back to the GCS fenced by its term.
//! Nothing here does IO, reads a clock or draws a random number: the same
//! input always gives the same plan.
//!
//! Rules:
//! - only nodes that are alive and not draining ([`NodeView::schedulable`])
//!   receive actors;
//! - requests are decided in the order given (the runtime passes them by
//!   creation order), and each placement shrinks its node's available
//!   resources for the requests after it, so a plan never over-commits;
//! - a request with a spread group goes to a node with room holding the
//!   fewest live actors of that group (counting those placed earlier in the
//!   same plan), and the policy decides only among those: replicas of one
//!   deployment land on different nodes while nodes with room remain;
//! - an actor that cannot be placed is [`Decision::Pending`] with a
//!   [`PendingReason`] a person can act on: [`PendingReason::Infeasible`]
//!   when no schedulable node could hold it even when empty,
//!   [`PendingReason::WaitingForCapacity`] when one could but none has room
//!   now. Both wait: the next plan (after a node joins or an actor leaves)
//!   places them once they fit.

use std::collections::BTreeMap;
use std::fmt;

use troupe_core::id::{ActorId, NodeId};
use troupe_core::resources::{check_feasible, Resources};

use crate::schema::NodeRecord;

mod score;

use score::{free_fraction_after, shortfalls};

/// One node as the scheduler sees it at the moment of planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node; ids in one snapshot must be unique (a repeated id is
    /// ignored after its first view).
    pub id: NodeId,
    /// What the node has in total.
    pub total: Resources,
    /// What is not yet taken by actors assigned to it.
    pub available: Resources,
    /// Whether the node's lease is alive.
    pub alive: bool,
    /// Whether the node is leaving the cluster and takes no new actors.
    pub draining: bool,
    /// How many live actors of each spread group it holds.
    pub groups: BTreeMap<String, u32>,
}

impl NodeView {
    /// The view of a registered node: `available` is its total minus
    /// everything `assigned` to it. If the assignments add up to more than
    /// the total (the node re-registered with less), nothing counts as free.
    pub fn from_record<'a>(
        record: &NodeRecord,
        alive: bool,
        assigned: impl IntoIterator<Item = &'a Resources>,
    ) -> Self {
        let available = assigned
            .into_iter()
            .try_fold(record.resources.clone(), |free, taken| {
                free.checked_sub(taken)
            })
            .unwrap_or_default();
        Self {
            id: record.id,
            total: record.resources.clone(),
            available,
            alive,
            draining: record.draining,
            groups: BTreeMap::new(),
        }
    }

    /// The view with the live actors' spread groups it holds counted.
    pub fn with_groups<'a>(mut self, groups: impl IntoIterator<Item = &'a str>) -> Self {
        for group in groups {
            *self.groups.entry(group.to_owned()).or_default() += 1;
        }
        self
    }

    /// How many live actors of `group` it holds (0 without a group).
    fn holding(&self, group: Option<&str>) -> u32 {
        group.map_or(0, |g| self.groups.get(g).copied().unwrap_or(0))
    }

    /// Whether new actors may be placed here: alive and not draining.
    pub fn schedulable(&self) -> bool {
        self.alive && !self.draining
    }
}

/// An actor waiting for a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRequest {
    /// The actor to place.
    pub actor: ActorId,
    /// What one instance of it needs.
    pub resources: Resources,
    /// Its cluster-wide name, if any; only used in messages.
    pub name: Option<String>,
    /// Its spread group, if any (see the module's rules).
    pub spread_group: Option<String>,
}

impl PlacementRequest {
    /// The actor as people know it: `actor "counter" (actor-…)` or the id.
    fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("actor {name:?} ({})", self.actor),
            None => format!("actor {}", self.actor),
        }
    }
}

/// How to choose among the nodes that have room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlacementPolicy {
    /// Spread load: the node left with the most free capacity after the
    /// placement. Free capacity is the node's scarcest resource, as the
    /// fraction of its total that stays free (so 0.3 of 1 GPU weighs the
    /// same as 2.4 of 8 CPUs).
    #[default]
    Spread,
    /// Pack actors tightly: the node left with the least free capacity, by
    /// the same measure, keeping other nodes empty for large requests.
    Pack,
}

/// What the scheduler decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start the actor on `node`.
    Place { actor: ActorId, node: NodeId },
    /// Keep the actor waiting, for `reason`.
    Pending {
        actor: ActorId,
        reason: PendingReason,
    },
}

impl Decision {
    /// The actor this decision is about.
    pub fn actor(&self) -> ActorId {
        match self {
            Self::Place { actor, .. } | Self::Pending { actor, .. } => *actor,
        }
    }
}

/// Why an actor stays PENDING. The message is what `troupe status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingReason {
    /// No schedulable node could hold the actor even if it were empty:
    /// a person must add a bigger node or lower the request.
    Infeasible { message: String },
    /// Some schedulable node could hold it, but none has room right now.
    WaitingForCapacity { message: String },
}

impl PendingReason {
    /// The human-readable explanation.
    pub fn message(&self) -> &str {
        match self {
            Self::Infeasible { message } | Self::WaitingForCapacity { message } => message,
        }
    }

    /// Whether the request can never fit on the current nodes.
    pub fn is_infeasible(&self) -> bool {
        matches!(self, Self::Infeasible { .. })
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The decisions for one round of placement, one per request, in request
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementPlan {
    pub decisions: Vec<Decision>,
}

impl PlacementPlan {
    /// The `(actor, node)` pairs to start, in request order.
    pub fn placed(&self) -> impl Iterator<Item = (ActorId, NodeId)> + '_ {
        self.decisions.iter().filter_map(|d| match d {
            Decision::Place { actor, node } => Some((*actor, *node)),
            Decision::Pending { .. } => None,
        })
    }

    /// The actors left waiting with their reasons, in request order.
    pub fn pending(&self) -> impl Iterator<Item = (ActorId, &PendingReason)> + '_ {
        self.decisions.iter().filter_map(|d| match d {
            Decision::Pending { actor, reason } => Some((*actor, reason)),
            Decision::Place { .. } => None,
        })
    }
}

/// Decides where each of `requests` goes, in order, on `nodes`.
pub fn plan(
    nodes: &[NodeView],
    requests: &[PlacementRequest],
    policy: PlacementPolicy,
) -> PlacementPlan {
    let mut by_id: BTreeMap<NodeId, NodeView> = BTreeMap::new();
    for node in nodes {
        by_id.entry(node.id).or_insert_with(|| node.clone());
    }
    let decisions = requests
        .iter()
        .map(|request| decide(&mut by_id, request, policy))
        .collect();
    PlacementPlan { decisions }
}

/// Decides one request and takes its resources from the chosen node.
fn decide(
    nodes: &mut BTreeMap<NodeId, NodeView>,
    request: &PlacementRequest,
    policy: PlacementPolicy,
) -> Decision {
    let actor = request.actor;
    let group = request.spread_group.as_deref();
    let Some(node) = choose(nodes, &request.resources, group, policy) else {
        let reason = pending_reason(nodes, request);
        return Decision::Pending { actor, reason };
    };
    let view = nodes.get_mut(&node).expect("chosen from the map");
    view.available = view
        .available
        .checked_sub(&request.resources)
        .expect("chosen only if the request fits");
    if let Some(group) = group {
        *view.groups.entry(group.to_owned()).or_default() += 1;
    }
    Decision::Place { actor, node }
}

/// The schedulable node with room holding the fewest actors of `group`,
/// and among those the one `policy` prefers; ties go to the lowest id (the
/// map iterates in id order, and only a strictly better choice replaces the
/// current one).
fn choose(
    nodes: &BTreeMap<NodeId, NodeView>,
    request: &Resources,
    group: Option<&str>,
    policy: PlacementPolicy,
) -> Option<NodeId> {
    let mut best = None;
    for node in nodes.values() {
        if !node.schedulable() || !request.fits_in(&node.available) {
            continue;
        }
        let held = node.holding(group);
        let score = free_fraction_after(node, request);
        let better = match &best {
            None => true,
            Some((_, best_held, _)) if held != *best_held => held < *best_held,
            Some((_, _, current)) => match policy {
                PlacementPolicy::Spread => score > *current,
                PlacementPolicy::Pack => score < *current,
            },
        };
        if better {
            best = Some((node.id, held, score));
        }
    }
    best.map(|(id, _, _)| id)
}

/// Why `request` fits on no schedulable node now.
fn pending_reason(nodes: &BTreeMap<NodeId, NodeView>, request: &PlacementRequest) -> PendingReason {
    let schedulable: Vec<&NodeView> = nodes.values().filter(|n| n.schedulable()).collect();
    let label = request.label();
    let wanted = &request.resources;
    let unschedulable = unschedulable_note(nodes);
    if schedulable.is_empty() {
        return PendingReason::Infeasible {
            message: format!(
                "{label} needs {wanted}; no node can take new actors{unschedulable}; \
                 start a node (troupe start --join ADDR) and it will be placed there"
            ),
        };
    }
    let totals: Vec<Resources> = schedulable.iter().map(|n| n.total.clone()).collect();
    if let Err(error) = check_feasible(wanted, &totals) {
        return PendingReason::Infeasible {
            message: format!("{label} cannot be placed on any node: {error}{unschedulable}"),
        };
    }
    const SHOWN: usize = 3;
    let mut lacking: Vec<String> = schedulable
        .iter()
        .take(SHOWN)
        .map(|n| format!("{} has {}", n.id, shortfalls(wanted, n).join(" and ")))
        .collect();
    if schedulable.len() > SHOWN {
        lacking.push(format!("{} more", schedulable.len() - SHOWN));
    }
    PendingReason::WaitingForCapacity {
        message: format!(
            "{label} needs {wanted}; no node has that free now ({}){unschedulable}; \
             it will be placed when running actors release resources or a node with room joins",
            lacking.join("; ")
        ),
    }
}

/// `" (not counting node-a, dead; node-b, draining)"`, or nothing.
fn unschedulable_note(nodes: &BTreeMap<NodeId, NodeView>) -> String {
    let skipped: Vec<String> = nodes
        .values()
        .filter(|n| !n.schedulable())
        .map(|n| {
            let why = if n.alive { "draining" } else { "dead" };
            format!("{}, {why}", n.id)
        })
        .collect();
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" (not counting {})", skipped.join("; "))
    }
}

#[cfg(test)]
mod tests;
