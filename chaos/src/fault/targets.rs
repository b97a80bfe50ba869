//! Choosing a fault's targets by role: pure, from a snapshot of who leads,
//! who is a member and who hosts what.

use std::collections::BTreeMap;

use crate::cluster::network::CLIENTS;
use crate::scenario::{PartitionMode, TargetRole};

/// What the injector knows of the cluster when a fault comes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleView {
    /// Nodes with a running, unpaused process.
    pub up: Vec<usize>,
    /// The node whose GCS member leads, if one said so.
    pub leader: Option<usize>,
    /// Nodes that run GCS members (by configuration).
    pub members: Vec<usize>,
    /// Nodes hosting replicas, by `app/deployment` and by `deployment`.
    pub hosting: BTreeMap<String, Vec<usize>>,
}

fn rotate(mut nodes: Vec<usize>, pick: u64) -> Vec<usize> {
    nodes.sort_unstable();
    nodes.dedup();
    if !nodes.is_empty() {
        let k = (pick % nodes.len() as u64) as usize;
        nodes.rotate_left(k);
    }
    nodes
}

/// The targets of a fault with `role` and `count`, `pick` choosing among
/// equal candidates; empty when there is none (the fault is skipped).
pub fn choose(role: &TargetRole, count: usize, view: &RoleView, pick: u64) -> Vec<usize> {
    let up_member = |n: &usize| view.up.contains(n) && view.members.contains(n);
    let candidates: Vec<usize> = match role {
        TargetRole::GcsLeader => {
            let Some(leader) = view.leader.filter(|l| view.up.contains(l)) else {
                return Vec::new();
            };
            let others = rotate(
                view.members
                    .iter()
                    .copied()
                    .filter(|n| *n != leader && up_member(n))
                    .collect(),
                pick,
            );
            std::iter::once(leader).chain(others).collect()
        }
        TargetRole::GcsFollower => rotate(
            view.members
                .iter()
                .copied()
                .filter(|n| Some(*n) != view.leader && up_member(n))
                .collect(),
            pick,
        ),
        TargetRole::GcsMember => rotate(
            view.members.iter().copied().filter(up_member).collect(),
            pick,
        ),
        TargetRole::GcsMajority => {
            let need = view.members.len() / 2 + 1;
            let chosen = rotate(
                view.members.iter().copied().filter(up_member).collect(),
                pick,
            );
            if chosen.len() < need {
                return Vec::new();
            }
            return chosen.into_iter().take(need).collect();
        }
        TargetRole::Hosting(name) => rotate(
            view.hosting
                .get(name)
                .map(|nodes| {
                    nodes
                        .iter()
                        .copied()
                        .filter(|n| view.up.contains(n))
                        .collect()
                })
                .unwrap_or_default(),
            pick,
        ),
        TargetRole::Node(i) => view.up.iter().copied().filter(|n| n == i).collect(),
        TargetRole::Any => rotate(view.up.clone(), pick),
        TargetRole::None => Vec::new(),
    };
    candidates.into_iter().take(count.max(1)).collect()
}

/// The directed links a partition cuts among `nodes` nodes (with
/// [`CLIENTS`] for the harness's side).
pub fn partition_cuts(mode: PartitionMode, targets: &[usize], nodes: usize) -> Vec<(usize, usize)> {
    let others: Vec<usize> = (0..nodes).filter(|n| !targets.contains(n)).collect();
    let mut cuts = Vec::new();
    for &t in targets {
        match mode {
            PartitionMode::Isolate => {
                for o in (0..nodes).filter(|o| *o != t) {
                    cuts.push((t, o));
                    cuts.push((o, t));
                }
                cuts.push((t, CLIENTS));
                cuts.push((CLIENTS, t));
            }
            PartitionMode::Split => {
                for &o in &others {
                    cuts.push((t, o));
                    cuts.push((o, t));
                }
            }
            PartitionMode::OneWay => {
                for &o in &others {
                    cuts.push((t, o));
                }
            }
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> RoleView {
        RoleView {
            up: vec![0, 1, 2, 3],
            leader: Some(1),
            members: vec![0, 1, 2],
            hosting: BTreeMap::from([("chain/count".into(), vec![2, 3])]),
        }
    }

    #[test]
    fn roles_pick_the_right_nodes() {
        let v = view();
        assert_eq!(choose(&TargetRole::GcsLeader, 1, &v, 5), vec![1]);
        assert_eq!(choose(&TargetRole::GcsLeader, 2, &v, 0), vec![1, 0]);
        assert_eq!(choose(&TargetRole::GcsFollower, 1, &v, 0), vec![0]);
        assert_eq!(choose(&TargetRole::GcsFollower, 1, &v, 1), vec![2]);
        assert_eq!(choose(&TargetRole::GcsMajority, 1, &v, 0).len(), 2);
        assert_eq!(
            choose(&TargetRole::Hosting("chain/count".into()), 2, &v, 0),
            vec![2, 3]
        );
        assert_eq!(choose(&TargetRole::Node(3), 1, &v, 0), vec![3]);
        assert!(choose(&TargetRole::Node(7), 1, &v, 0).is_empty());
        assert!(choose(&TargetRole::None, 1, &v, 0).is_empty());
        let no_leader = RoleView {
            leader: None,
            ..view()
        };
        assert!(choose(&TargetRole::GcsLeader, 1, &no_leader, 0).is_empty());
        let down = RoleView {
            up: vec![1],
            ..view()
        };
        assert!(
            choose(&TargetRole::GcsMajority, 1, &down, 0).is_empty(),
            "no majority is up"
        );
    }

    #[test]
    fn partitions_cut_the_right_links() {
        assert_eq!(
            partition_cuts(PartitionMode::OneWay, &[0], 3),
            vec![(0, 1), (0, 2)]
        );
        assert_eq!(
            partition_cuts(PartitionMode::Split, &[0], 3),
            vec![(0, 1), (0, 2), (1, 0), (2, 0)]
        );
        let isolate = partition_cuts(PartitionMode::Isolate, &[2], 3);
        assert!(isolate.contains(&(2, CLIENTS)) && isolate.contains(&(CLIENTS, 2)));
        assert_eq!(isolate.len(), 6);
    }
}
