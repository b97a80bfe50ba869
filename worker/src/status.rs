//! `troupe status` as a pure rendering of a [`ClusterState`] (the
//! control store's members follow, from `troupe_gcs::health`).

use std::collections::BTreeMap;
use std::fmt::Write;

use troupe_core::id::NodeId;
use troupe_core::resources::Resources;

use crate::lifecycle::ActorState;
use crate::view::ClusterState;

/// What each live node has in use: the resources of the actors assigned to
/// it that are not DEAD.
pub fn used_resources(state: &ClusterState) -> BTreeMap<NodeId, Resources> {
    let mut used: BTreeMap<NodeId, Resources> = BTreeMap::new();
    for actor in state.actors.values() {
        if matches!(actor.state, ActorState::Dead { .. }) {
            continue;
        }
        if let Some(node) = actor.node {
            let entry = used.entry(node).or_default();
            if let Ok(sum) = entry.checked_add(&actor.options.resources) {
                *entry = sum;
            }
        }
    }
    used
}

/// `used/total` for each resource a node has.
fn usage(used: &Resources, total: &Resources) -> String {
    let mut parts = vec![
        format!("CPU {}/{}", used.cpus(), total.cpus()),
        format!("GPU {}/{}", used.gpus(), total.gpus()),
    ];
    for (name, amount) in total.custom_resources() {
        parts.push(format!("{name} {}/{amount}", used.custom(name)));
    }
    parts.join(", ")
}

/// The text `troupe status` prints.
pub fn render(state: &ClusterState) -> String {
    let used = used_resources(state);
    let mut out = String::new();
    let _ = writeln!(out, "nodes ({}):", state.nodes.len());
    for node in state.nodes.values() {
        let zero = Resources::new();
        let roles = if node.gcs_member { "  [gcs]" } else { "" };
        let controller = match state.controller {
            Some(c) if c.node == node.id => "  [controller]",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  {}  {}  {}  ttl {}s{roles}{controller}",
            node.id,
            node.addr,
            usage(used.get(&node.id).unwrap_or(&zero), &node.resources),
            node.node_ttl_ms as f64 / 1000.0
        );
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for actor in state.actors.values() {
        *counts.entry(actor.state.name()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let _ = writeln!(
        out,
        "actors ({}{}{}):",
        state.actors.len(),
        if summary.is_empty() { "" } else { ": " },
        summary.join(", ")
    );
    for actor in state.actors.values() {
        let name = actor
            .name
            .as_ref()
            .map_or(String::new(), |n| format!(" name={n}"));
        let detail = match &actor.state {
            ActorState::Dead { reason } => format!("  ({reason})"),
            _ => match (&actor.node, &actor.pending_reason) {
                (Some(node), _) => format!("  on {node}"),
                (None, Some(reason)) => format!("  ({reason})"),
                (None, None) => String::new(),
            },
        };
        let _ = writeln!(
            out,
            "  {}  {}{name}  {}  restarts {}/{}{detail}",
            actor.id,
            actor.type_name,
            actor.state.name(),
            actor.restarts,
            actor.options.max_restarts
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use troupe_core::id::ActorId;

    use super::*;
    use crate::schema::{ActorOptions, ActorRecord, NodeRecord, Owner};

    #[test]
    fn shows_usage_and_why_an_actor_waits() {
        let node = NodeId::new(1);
        let mut state = ClusterState::default();
        state.nodes.insert(
            node,
            NodeRecord {
                id: node,
                addr: "127.0.0.1:1".into(),
                data_addrs: Vec::new(),
                resources: Resources::new().with_gpus(1.0).unwrap(),
                labels: Default::default(),
                started_at_ms: 0,
                gcs_member: true,
                draining: false,
                node_ttl_ms: 3_000,
            },
        );
        let options = ActorOptions {
            resources: Resources::new().with_gpus(0.3).unwrap(),
            ..ActorOptions::default()
        };
        for i in 1..=4u64 {
            let mut a =
                ActorRecord::new(ActorId::new(i), "Gpu", Owner::Node(node), options.clone());
            if i < 4 {
                a.node = Some(node);
                a.state = ActorState::Alive;
            } else {
                a.pending_reason = Some("no node has 0.3 GPU free".into());
            }
            state.actors.insert(a.id, a);
        }
        let text = render(&state);
        assert!(text.contains("GPU 0.9/1"), "{text}");
        assert!(text.contains("  ttl 3s  [gcs]"), "{text}");
        assert!(text.contains("3 ALIVE, 1 PENDING"), "{text}");
        assert!(
            text.contains("PENDING  restarts 0/0  (no node has 0.3 GPU free)"),
            "{text}"
        );
    }
}
