use proptest::prelude::*;

use super::*;

fn gpus(amount: f64) -> Resources {
    Resources::new().with_gpus(amount).unwrap()
}

fn cpus(amount: f64) -> Resources {
    Resources::new().with_cpus(amount).unwrap()
}

/// An alive, empty node.
fn node(id: u64, total: Resources) -> NodeView {
    NodeView {
        id: NodeId::new(id),
        available: total.clone(),
        total,
        alive: true,
        draining: false,
        groups: BTreeMap::new(),
    }
}

fn request(actor: u64, resources: Resources) -> PlacementRequest {
    PlacementRequest {
        actor: ActorId::new(actor),
        resources,
        name: None,
        spread_group: None,
    }
}

fn grouped(actor: u64, resources: Resources, group: &str) -> PlacementRequest {
    PlacementRequest {
        spread_group: Some(group.to_owned()),
        ..request(actor, resources)
    }
}

#[test]
fn a_spread_group_goes_to_the_nodes_holding_fewest_of_it_first() {
    // Node 1 has the most room, so the policy alone puts two of three
    // there; the group spreads them, one per node.
    let nodes = [node(1, cpus(8.0)), node(2, cpus(4.0)), node(3, cpus(4.0))];
    let requests: Vec<_> = (1..=3).map(|a| grouped(a, cpus(1.0), "d")).collect();
    assert_eq!(
        spread(&nodes, &requests).decisions,
        [place(1, 1), place(2, 2), place(3, 3)]
    );
    // Without a group the same requests follow free capacity only.
    let ungrouped: Vec<_> = (1..=3).map(|a| request(a, cpus(1.0))).collect();
    assert_eq!(
        spread(&nodes, &ungrouped).decisions,
        [place(1, 1), place(2, 1), place(3, 2)]
    );
    // Pack still spreads a group before packing.
    assert_eq!(
        plan(&nodes, &requests, PlacementPolicy::Pack).decisions,
        [place(1, 2), place(2, 3), place(3, 1)]
    );
}

#[test]
fn a_spread_group_counts_what_nodes_already_hold_and_other_groups_do_not_matter() {
    let nodes = [
        node(1, cpus(8.0)).with_groups(["d", "d", "other"]),
        node(2, cpus(8.0)).with_groups(["d", "other", "other", "other"]),
        node(3, cpus(8.0)).with_groups(["d"]),
    ];
    // Nodes 2 and 3 hold one `d` each against node 1's two: they come
    // first (equal room, so the lower id first), then all hold two and the
    // policy picks the emptiest, node 1.
    let requests: Vec<_> = (1..=3).map(|a| grouped(a, cpus(1.0), "d")).collect();
    assert_eq!(
        spread(&nodes, &requests).decisions,
        [place(1, 2), place(2, 3), place(3, 1)]
    );
}

#[test]
fn a_spread_group_is_a_preference_never_a_reason_to_wait() {
    // Only node 1 has room: the second replica joins the first there.
    let nodes = [
        node(1, cpus(4.0)),
        NodeView {
            available: cpus(0.0),
            ..node(2, cpus(4.0))
        },
        NodeView {
            alive: false,
            ..node(3, cpus(4.0))
        },
    ];
    let requests: Vec<_> = (1..=2).map(|a| grouped(a, cpus(1.0), "d")).collect();
    assert_eq!(
        spread(&nodes, &requests).decisions,
        [place(1, 1), place(2, 1)]
    );
}

fn place(actor: u64, node: u64) -> Decision {
    Decision::Place {
        actor: ActorId::new(actor),
        node: NodeId::new(node),
    }
}

fn spread(nodes: &[NodeView], requests: &[PlacementRequest]) -> PlacementPlan {
    plan(nodes, requests, PlacementPolicy::Spread)
}

#[test]
fn issue_scenario_three_fractional_gpu_actors_fit_and_a_fourth_waits() {
    let requests: Vec<_> = (1..=4).map(|a| request(a, gpus(0.3))).collect();
    let one_node = [node(1, gpus(1.0))];
    let first = spread(&one_node, &requests);
    assert_eq!(
        &first.decisions[..3],
        &[place(1, 1), place(2, 1), place(3, 1)]
    );
    let Decision::Pending { actor, reason } = &first.decisions[3] else {
        panic!("4th actor placed: {first:?}");
    };
    assert_eq!(*actor, ActorId::new(4));
    assert_eq!(
        *reason,
        PendingReason::WaitingForCapacity {
            message: "actor actor-0000000000000004 needs {GPU: 0.3}; no node has that free now \
                      (node-0000000000000001 has 0.1 of 1 GPU free); it will be placed when \
                      running actors release resources or a node with room joins"
                .into()
        }
    );

    // The runtime replans the still-pending actor once a second node joins,
    // counting what the first node's three assignments hold.
    let held = [gpus(0.3), gpus(0.3), gpus(0.3)];
    let busy = NodeView::from_record(&record(1, gpus(1.0)), true, &held);
    assert_eq!(busy.available, gpus(0.1));
    let joined = NodeView::from_record(&record(2, gpus(1.0)), true, []);
    let second = spread(&[busy, joined], &requests[3..]);
    assert_eq!(second.decisions, [place(4, 2)]);
}

fn record(id: u64, resources: Resources) -> NodeRecord {
    NodeRecord {
        id: NodeId::new(id),
        addr: "127.0.0.1:1".into(),
        data_addrs: Vec::new(),
        resources,
        labels: Default::default(),
        started_at_ms: 0,
        gcs_member: false,
        draining: false,
        node_ttl_ms: 3_000,
    }
}

#[test]
fn node_views_from_records_subtract_assignments_and_never_go_negative() {
    let mut r = record(1, cpus(4.0));
    r.draining = true;
    let view = NodeView::from_record(&r, false, &[cpus(1.5), cpus(0.5)]);
    assert_eq!(view.available, cpus(2.0));
    assert!(view.draining && !view.alive && !view.schedulable());
    let over = NodeView::from_record(&r, true, &[cpus(3.0), cpus(3.0)]);
    assert_eq!(over.available, Resources::new());
}

#[test]
fn fractional_sums_are_exact() {
    // 0.1 + 0.2 + 0.3 + 0.4 fills one GPU exactly; a float sum would not.
    let requests: Vec<_> = [0.1, 0.2, 0.3, 0.4, 0.0001]
        .iter()
        .zip(1..)
        .map(|(&g, a)| request(a, gpus(g)))
        .collect();
    let p = spread(&[node(1, gpus(1.0))], &requests);
    assert_eq!(p.placed().count(), 4);
    assert_eq!(p.pending().next().unwrap().0, ActorId::new(5));
}

#[test]
fn spread_alternates_and_pack_fills_one_node_first() {
    let nodes = [node(1, gpus(1.0)), node(2, gpus(1.0))];
    let requests: Vec<_> = (1..=4).map(|a| request(a, gpus(0.25))).collect();
    let spread_plan = spread(&nodes, &requests);
    assert_eq!(
        spread_plan.decisions,
        [place(1, 1), place(2, 2), place(3, 1), place(4, 2)]
    );
    let pack_plan = plan(&nodes, &requests, PlacementPolicy::Pack);
    assert_eq!(
        pack_plan.decisions,
        [place(1, 1), place(2, 1), place(3, 1), place(4, 1)]
    );
}

#[test]
fn spread_weighs_fractions_of_each_node_not_absolute_amounts() {
    // Node 1 has more CPUs free in absolute terms (4 of 16) but node 2 is
    // emptier as a share (3 of 4).
    let mut big = node(1, cpus(16.0));
    big.available = cpus(4.0);
    let mut small = node(2, cpus(4.0));
    small.available = cpus(3.0);
    assert_eq!(
        spread(&[big.clone(), small.clone()], &[request(1, cpus(1.0))]).decisions,
        [place(1, 2)]
    );
    let pack = plan(
        &[big, small],
        &[request(1, cpus(1.0))],
        PlacementPolicy::Pack,
    );
    assert_eq!(pack.decisions, [place(1, 1)]);
}

#[test]
fn ties_go_to_the_lowest_node_id_whatever_the_input_order() {
    let nodes = [node(9, gpus(1.0)), node(3, gpus(1.0)), node(5, gpus(1.0))];
    let p = spread(&nodes, &[request(1, gpus(0.5))]);
    assert_eq!(p.decisions, [place(1, 3)]);
    let reversed: Vec<_> = nodes.iter().rev().cloned().collect();
    assert_eq!(spread(&reversed, &[request(1, gpus(0.5))]), p);
}

#[test]
fn dead_and_draining_nodes_are_never_chosen() {
    let mut dead = node(1, gpus(8.0));
    dead.alive = false;
    let mut draining = node(2, gpus(8.0));
    draining.draining = true;
    let small = node(3, gpus(1.0));
    let requests = [request(1, gpus(1.0)), request(2, gpus(1.0))];
    let p = spread(&[dead.clone(), draining.clone(), small], &requests);
    assert_eq!(p.decisions[0], place(1, 3));
    let reason = p.pending().next().unwrap().1;
    assert!(!reason.is_infeasible(), "{reason}");
    assert!(
        reason.message().contains(
            "(not counting node-0000000000000001, dead; node-0000000000000002, draining)"
        ),
        "{reason}"
    );

    let nothing = spread(&[dead, draining], &[request(1, gpus(1.0))]);
    let reason = nothing.pending().next().unwrap().1;
    assert!(reason.is_infeasible());
    assert!(reason.message().contains("no node can take new actors"));
    assert!(reason.message().contains("start a node"));
}

#[test]
fn infeasible_requests_are_not_reported_as_waiting() {
    let nodes = [node(1, gpus(1.0)), node(2, gpus(2.0))];
    let mut named = request(1, gpus(3.0));
    named.name = Some("trainer".into());
    let accel = request(2, Resources::new().with_custom("accel", 1.0).unwrap());
    let p = spread(&nodes, &[named, accel]);
    let reasons: Vec<_> = p.pending().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        reasons,
        [
            PendingReason::Infeasible {
                message: "actor \"trainer\" (actor-0000000000000001) cannot be placed on any \
                          node: requested 3 GPU but the largest node has 2 GPU in total; add a \
                          node with at least 3 GPU or lower num_gpus"
                    .into()
            },
            PendingReason::Infeasible {
                message: "actor actor-0000000000000002 cannot be placed on any node: requested \
                          1 accel but the largest node has 0 accel in total; add a node with \
                          at least 1 accel or lower resources[\"accel\"]"
                    .into()
            },
        ]
    );
}

#[test]
fn an_empty_cluster_makes_every_request_infeasible() {
    let p = spread(&[], &[request(1, Resources::new())]);
    let reason = p.pending().next().unwrap().1;
    assert!(reason.is_infeasible());
}

#[test]
fn zero_requests_fit_anywhere_and_repeated_node_ids_keep_the_first_view() {
    let mut gone = node(1, gpus(1.0));
    gone.alive = false;
    let p = spread(&[node(1, gpus(1.0)), gone], &[request(1, Resources::new())]);
    assert_eq!(p.decisions, [place(1, 1)]);
}

#[test]
fn waiting_reasons_list_at_most_three_nodes() {
    let nodes: Vec<_> = (1..=5).map(|id| node(id, cpus(1.0))).collect();
    let requests: Vec<_> = (1..=6).map(|a| request(a, cpus(1.0))).collect();
    let p = spread(&nodes, &requests);
    let reason = p.pending().next().unwrap().1.message().to_owned();
    assert!(reason.contains("node-0000000000000003 has 0 of 1 CPU free; 2 more)"));
    assert!(!reason.contains("node-0000000000000004"), "{reason}");
}

fn any_resources() -> impl Strategy<Value = Resources> {
    (0..40_000_u64, 0..30_000_u64, 0..3_u64).prop_map(|(c, g, accel)| {
        let r = Resources::new()
            .with_cpus(c as f64 / 10_000.0)
            .unwrap()
            .with_gpus(g as f64 / 10_000.0)
            .unwrap();
        if accel == 0 {
            r
        } else {
            r.with_custom("accel", accel as f64).unwrap()
        }
    })
}

fn any_node(id: u64) -> impl Strategy<Value = NodeView> {
    (
        any_resources(),
        any_resources(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(total, used, alive, draining)| NodeView {
            id: NodeId::new(id),
            available: total.checked_sub(&used).unwrap_or_else(|_| total.clone()),
            total,
            alive,
            draining,
            groups: BTreeMap::new(),
        })
}

fn any_input() -> impl Strategy<Value = (Vec<NodeView>, Vec<PlacementRequest>, bool)> {
    let nodes = (0..5_u64)
        .prop_flat_map(|n| (0..n).map(any_node).collect::<Vec<_>>())
        .boxed();
    let requests = prop::collection::vec(any_resources(), 0..20).prop_map(|rs| {
        rs.into_iter()
            .zip(1..)
            .map(|(r, a)| request(a, r))
            .collect::<Vec<_>>()
    });
    (nodes, requests, any::<bool>())
}

proptest! {
    #[test]
    fn plans_never_over_commit_and_are_deterministic((nodes, requests, pack) in any_input()) {
        let policy = if pack { PlacementPolicy::Pack } else { PlacementPolicy::Spread };
        let p = plan(&nodes, &requests, policy);
        prop_assert_eq!(&plan(&nodes, &requests, policy), &p);
        prop_assert_eq!(p.decisions.len(), requests.len());
        for (decision, request) in p.decisions.iter().zip(&requests) {
            prop_assert_eq!(decision.actor(), request.actor);
        }
        for node in &nodes {
            let mut taken = Resources::new();
            for (actor, on) in p.placed() {
                if on == node.id {
                    prop_assert!(node.schedulable());
                    let r = &requests[actor.get() as usize - 1].resources;
                    taken = taken.checked_add(r).unwrap();
                }
            }
            prop_assert!(taken.fits_in(&node.available), "{:?} over-committed", node.id);
        }
        // A request left pending because of capacity fits some node's total.
        for (actor, reason) in p.pending() {
            let r = &requests[actor.get() as usize - 1].resources;
            let fits_some_total = nodes.iter().any(|n| n.schedulable() && r.fits_in(&n.total));
            prop_assert_eq!(reason.is_infeasible(), !fits_some_total, "{}", reason);
        }
    }
}
