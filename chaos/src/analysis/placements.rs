//! The double-placement check: one actor running on two nodes at once.

use std::collections::{BTreeMap, HashMap};

use crate::record::{InstanceEvent, ProcessLife};

/// One actor instance's run on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Instance<'a> {
    /// The actor's id.
    actor: &'a str,
    /// The node's index.
    node: usize,
    /// Its incarnation.
    incarnation: u64,
    /// When it started, ms.
    start: u64,
    /// When it stopped or its process ended, ms (`None`: never seen to).
    end: Option<u64>,
}

/// Actors that ran on two nodes at once, described.
///
/// An instance runs from its `started` event until its `stopped` event on
/// that node (same actor and incarnation), or until the end of the node's
/// process life containing its start (the latest life that started at or
/// before it), whichever is first; without either it runs forever. Every
/// pair of instances of one actor on different nodes whose runs overlap
/// by more than 0 ms is reported. A `stopped` without a `started` is
/// ignored.
pub fn double_placements(events: &[InstanceEvent], lives: &[ProcessLife]) -> Vec<String> {
    let mut by_actor: BTreeMap<&str, Vec<Instance<'_>>> = BTreeMap::new();
    for instance in instances(events, lives) {
        by_actor.entry(instance.actor).or_default().push(instance);
    }
    let mut found = Vec::new();
    for (actor, mut runs) in by_actor {
        runs.sort_by_key(|r| (r.start, r.node, r.incarnation));
        for (i, first) in runs.iter().enumerate() {
            for second in &runs[i + 1..] {
                if first.node == second.node {
                    continue;
                }
                let from = second.start; // runs are sorted by start
                let until = match (first.end, second.end) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let at = format!("{:.1} s", from as f64 / 1000.0);
                let span = match until {
                    Some(until) if until <= from => continue,
                    Some(until) => format!("for {} ms from {at}", until - from),
                    None => format!("from {at} until the end of the run"),
                };
                found.push(format!(
                    "{actor} ran on node {} (incarnation {}) and node {} (incarnation {}) at once {span}",
                    first.node,
                    first.incarnation,
                    second.node,
                    second.incarnation,
                ));
            }
        }
    }
    found
}

/// The instances the events describe, each bounded by its stop and its
/// process's life.
fn instances<'a>(events: &'a [InstanceEvent], lives: &[ProcessLife]) -> Vec<Instance<'a>> {
    let mut ordered: Vec<&InstanceEvent> = events.iter().collect();
    // Starts before stops at the same instant, so a zero-length run pairs.
    ordered.sort_by_key(|e| (e.at_ms, !e.started));
    let mut out: Vec<Instance<'a>> = Vec::new();
    let mut open: HashMap<(usize, &str, u64), Vec<usize>> = HashMap::new();
    for event in ordered {
        let key = (event.node, event.actor.as_str(), event.incarnation);
        if event.started {
            open.entry(key).or_default().push(out.len());
            out.push(Instance {
                actor: &event.actor,
                node: event.node,
                incarnation: event.incarnation,
                start: event.at_ms,
                end: life_end(lives, event.node, event.at_ms),
            });
        } else if let Some(index) = open.get_mut(&key).and_then(|stack| stack.pop()) {
            let instance = &mut out[index];
            instance.end = Some(instance.end.map_or(event.at_ms, |end| end.min(event.at_ms)));
        }
    }
    out
}

/// When node `node`'s process life containing `at_ms` ended (the latest
/// life started at or before it); `None` if it did not or none is known.
fn life_end(lives: &[ProcessLife], node: usize, at_ms: u64) -> Option<u64> {
    lives
        .iter()
        .filter(|l| l.node == node && l.start_ms <= at_ms)
        .max_by_key(|l| l.start_ms)
        .and_then(|l| l.end_ms)
}
