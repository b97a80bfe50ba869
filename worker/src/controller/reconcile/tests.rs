//! The controller's rounds, run on states built in memory; each round's
//! writes are applied to the state as the GCS watch would.

use serde_bytes::ByteBuf;
use troupe_core::id::{ActorId, NodeId};
use troupe_core::resources::Resources;

use super::*;
use crate::schema::{ActorOptions, NodeRecord, RetryLimit};

const TERM: u64 = 7;

/// The rounds' time: nothing dies long enough before it to be collected.
const CLOCK: Clock = Clock {
    now_ms: 1_000_000,
    retention_ms: 600_000,
};

fn node(state: &mut ClusterState, id: u64, resources: Resources) -> NodeId {
    let id = NodeId::new(id);
    let record = NodeRecord {
        id,
        addr: format!("127.0.0.1:{id}", id = 1000 + id.get()),
        data_addrs: Vec::new(),
        resources,
        labels: Default::default(),
        started_at_ms: 0,
        gcs_member: false,
        draining: false,
        node_ttl_ms: 3_000,
    };
    state.apply(&Key::Node(id).to_bytes(), Some(&schema::encode(&record)));
    state.apply(&Key::Owner(id).to_bytes(), Some(&[]));
    id
}

fn gpus(n: f64) -> Resources {
    Resources::new().with_gpus(n).unwrap()
}

fn spawn_request(id: u64, owner: NodeId, resources: Resources) -> SpawnRequest {
    SpawnRequest {
        id: ActorId::new(id),
        type_name: "Counter".into(),
        name: None,
        owner: Owner::Node(owner),
        options: ActorOptions {
            resources,
            ..ActorOptions::default()
        },
        args: ByteBuf::from(vec![1, 2, 3]),
        min_revision: 0,
    }
}

/// Runs a round and applies its writes, as committing and watching would.
fn round(state: &mut ClusterState, spawns: &[SpawnRequest], kills: &[ActorId]) -> RoundPlan {
    let plan = reconcile(state, TERM, CLOCK, spawns, kills, PlacementPolicy::Spread);
    for (key, value) in &plan.writes {
        state.apply(key, value.as_deref());
    }
    state.revision += 1;
    plan
}

fn report(state: &mut ClusterState, node: NodeId, actor: ActorId, outcome: ReportOutcome) {
    let incarnation = state.actors[&actor].incarnation;
    let record = crate::schema::ReportRecord {
        actor,
        incarnation,
        outcome,
    };
    state.apply(
        &Key::Report { node, actor }.to_bytes(),
        Some(&schema::encode(&record)),
    );
}

#[test]
fn a_spawn_is_placed_and_assigned_in_one_round() {
    let mut state = ClusterState::default();
    let n = node(&mut state, 1, Resources::new().with_cpus(2.0).unwrap());
    let mut request = spawn_request(10, n, Resources::new().with_cpus(0.5).unwrap());
    request.name = Some(ActorName::in_default("c").unwrap());
    let plan = round(&mut state, &[request], &[]);
    let record = plan.spawned[0].as_ref().unwrap();
    assert_eq!(record.node, Some(n));
    assert_eq!(record.incarnation, 1);
    assert_eq!(record.term, TERM);
    let assignment = &state.assignments[&(n, ActorId::new(10))];
    assert_eq!(
        (assignment.incarnation, assignment.args.as_slice()),
        (1, &[1u8, 2, 3][..])
    );
    assert_eq!(
        state.names[&ActorName::in_default("c").unwrap()],
        ActorId::new(10)
    );

    // Retried with the same id: the same actor, nothing new written.
    let again = spawn_request(10, n, Resources::new().with_cpus(0.5).unwrap());
    let plan = round(&mut state, &[again], &[]);
    assert_eq!(plan.spawned[0].as_ref().unwrap().id, ActorId::new(10));
    assert!(plan.writes.is_empty(), "{:?}", plan.writes.keys());
}

#[test]
fn a_name_is_unique_among_live_actors_and_free_again_after_a_kill() {
    let mut state = ClusterState::default();
    let n = node(&mut state, 1, Resources::new());
    let name = ActorName::in_default("solo").unwrap();
    let mut first = spawn_request(1, n, Resources::new());
    first.name = Some(name.clone());
    let mut second = spawn_request(2, n, Resources::new());
    second.name = Some(name.clone());
    let plan = round(&mut state, &[first, second.clone()], &[]);
    assert!(plan.spawned[0].is_ok());
    assert!(matches!(plan.spawned[1], Err(ActorError::NameTaken { .. })));

    let plan = round(&mut state, &[], &[ActorId::new(1)]);
    assert!(matches!(
        plan.killed[0].as_ref().unwrap().state,
        ActorState::Dead { .. }
    ));
    assert!(!state.names.contains_key(&name));
    assert!(!state.assignments.contains_key(&(n, ActorId::new(1))));
    let plan = round(&mut state, &[second], &[]);
    assert!(plan.spawned[0].is_ok());
    assert_eq!(state.names[&name], ActorId::new(2));
}

#[test]
fn killing_an_unknown_actor_says_so() {
    let mut state = ClusterState::default();
    let plan = round(&mut state, &[], &[ActorId::new(99)]);
    assert!(matches!(plan.killed[0], Err(ActorError::NotFound { .. })));
}

#[test]
fn fractional_gpus_fit_three_then_the_fourth_waits_for_a_new_node() {
    let mut state = ClusterState::default();
    let first = node(&mut state, 1, gpus(1.0));
    let spawns: Vec<_> = (1..=4)
        .map(|i| spawn_request(i, first, gpus(0.3)))
        .collect();
    let plan = round(&mut state, &spawns, &[]);
    for placed in &plan.spawned[..3] {
        assert_eq!(placed.as_ref().unwrap().node, Some(first));
    }
    let waiting = plan.spawned[3].as_ref().unwrap();
    assert_eq!((waiting.node, &waiting.state), (None, &ActorState::Pending));
    let reason = waiting.pending_reason.as_deref().unwrap();
    assert!(reason.contains("GPU"), "{reason}");

    let second = node(&mut state, 2, gpus(1.0));
    round(&mut state, &[], &[]);
    assert_eq!(state.actors[&ActorId::new(4)].node, Some(second));
    assert!(state.assignments.contains_key(&(second, ActorId::new(4))));
}

#[test]
fn a_dead_node_restarts_its_actors_elsewhere_within_their_budget() {
    let mut state = ClusterState::default();
    let doomed = node(&mut state, 1, Resources::new().with_cpus(1.0).unwrap());
    let mut once = spawn_request(1, doomed, Resources::new().with_cpus(0.5).unwrap());
    once.options.max_restarts = RetryLimit::AtMost(1);
    once.options.lifetime = Lifetime::Detached;
    let mut never = spawn_request(2, doomed, Resources::new().with_cpus(0.5).unwrap());
    never.options.lifetime = Lifetime::Detached;
    round(&mut state, &[once, never], &[]);
    for id in [1, 2] {
        report(&mut state, doomed, ActorId::new(id), ReportOutcome::Started);
    }
    round(&mut state, &[], &[]);
    assert_eq!(state.actors[&ActorId::new(1)].state, ActorState::Alive);

    let survivor = node(&mut state, 2, Resources::new().with_cpus(1.0).unwrap());
    state.apply(&Key::Node(doomed).to_bytes(), None);
    state.apply(&Key::Owner(doomed).to_bytes(), None);
    round(&mut state, &[], &[]);
    let restarted = &state.actors[&ActorId::new(1)];
    assert_eq!(restarted.state, ActorState::Restarting);
    assert_eq!(
        (restarted.node, restarted.incarnation, restarted.restarts),
        (Some(survivor), 2, 1)
    );
    assert!(!state.assignments.contains_key(&(doomed, ActorId::new(1))));
    assert_eq!(
        state.assignments[&(survivor, ActorId::new(1))].incarnation,
        2
    );
    let dead = &state.actors[&ActorId::new(2)];
    let reason = dead.death_reason().unwrap().to_string();
    assert!(reason.contains("max_restarts is 0"), "{reason}");
}

#[test]
fn a_panic_restarts_on_the_same_node_and_stale_reports_change_nothing() {
    let mut state = ClusterState::default();
    let n = node(&mut state, 1, Resources::new());
    let mut request = spawn_request(1, n, Resources::new());
    request.options.max_restarts = RetryLimit::AtMost(1);
    round(&mut state, &[request], &[]);
    let id = ActorId::new(1);
    report(&mut state, n, id, ReportOutcome::Started);
    round(&mut state, &[], &[]);
    report(
        &mut state,
        n,
        id,
        ReportOutcome::HandlerPanicked {
            message: "boom".into(),
        },
    );
    round(&mut state, &[], &[]);
    let record = &state.actors[&id];
    assert_eq!((record.incarnation, record.restarts), (2, 1));
    assert_eq!(state.assignments[&(n, id)].incarnation, 2);
    // The report about incarnation 1 is still there: nothing changes.
    let plan = round(&mut state, &[], &[]);
    assert!(plan.writes.is_empty());
    report(&mut state, n, id, ReportOutcome::Started);
    round(&mut state, &[], &[]);
    assert_eq!(state.actors[&id].state, ActorState::Alive);
    // A second panic spends nothing it has not got: DEAD.
    report(
        &mut state,
        n,
        id,
        ReportOutcome::HandlerPanicked {
            message: "again".into(),
        },
    );
    round(&mut state, &[], &[]);
    assert!(state.actors[&id].death_reason().is_some());
    assert!(!state.assignments.contains_key(&(n, id)));
}

#[test]
fn an_owned_actor_dies_with_its_owner_and_a_detached_one_lives_on() {
    let mut state = ClusterState::default();
    let n = node(&mut state, 1, Resources::new());
    let driver = NodeId::new(50);
    state.apply(&Key::Owner(driver).to_bytes(), Some(&[]));
    let owned = spawn_request(1, driver, Resources::new());
    let mut detached = spawn_request(2, driver, Resources::new());
    detached.options.lifetime = Lifetime::Detached;
    round(&mut state, &[owned, detached], &[]);
    state.apply(&Key::Owner(driver).to_bytes(), None);
    round(&mut state, &[], &[]);
    assert!(state.actors[&ActorId::new(1)].death_reason().is_some());
    assert!(state.actors[&ActorId::new(2)].death_reason().is_none());
    assert_eq!(state.actors[&ActorId::new(2)].node, Some(n));
}

#[test]
fn a_constructor_failure_is_final() {
    let mut state = ClusterState::default();
    let n = node(&mut state, 1, Resources::new());
    let mut request = spawn_request(1, n, Resources::new());
    request.options.max_restarts = RetryLimit::Unlimited;
    round(&mut state, &[request], &[]);
    let message = "actor type \"Nope\" is not registered".to_string();
    report(
        &mut state,
        n,
        ActorId::new(1),
        ReportOutcome::ConstructorFailed { message },
    );
    round(&mut state, &[], &[]);
    let reason = state.actors[&ActorId::new(1)]
        .death_reason()
        .unwrap()
        .to_string();
    assert!(reason.contains("not registered"), "{reason}");
}

#[test]
fn placements_past_the_round_budget_wait_for_the_next_round() {
    let mut state = ClusterState::default();
    let n = node(&mut state, 1, Resources::new().with_cpus(8.0).unwrap());
    let cpu = || Resources::new().with_cpus(1.0).unwrap();
    let big = |id| {
        let mut request = spawn_request(id, n, cpu());
        request.args = ByteBuf::from(vec![7; 1000]);
        request
    };
    let spawns = [big(1), big(2), big(3)];
    // Room for the three records and one placement, not two.
    let budget = 5 * (1000 + 512) + 100;
    let plan = reconcile_within(
        &state,
        TERM,
        CLOCK,
        &spawns,
        &[],
        PlacementPolicy::Spread,
        budget,
    );
    let placed: Vec<bool> = plan
        .spawned
        .iter()
        .map(|r| r.as_ref().unwrap().node.is_some())
        .collect();
    assert_eq!(placed, [true, false, false]);
    let weight: usize = plan.writes.values().flatten().map(Vec::len).sum();
    assert!(weight <= budget, "{weight} bytes written");
    for (key, value) in &plan.writes {
        state.apply(key, value.as_deref());
    }
    // The next rounds place the rest, one by one under this budget.
    let mut rounds = 0;
    while state.actors.values().any(|a| a.node.is_none()) {
        let plan = reconcile_within(
            &state,
            TERM,
            CLOCK,
            &[],
            &[],
            PlacementPolicy::Spread,
            budget,
        );
        assert!(!plan.writes.is_empty(), "a round placed nothing");
        for (key, value) in &plan.writes {
            state.apply(key, value.as_deref());
        }
        let weight: usize = plan.writes.values().flatten().map(Vec::len).sum();
        assert!(weight <= budget, "{weight} bytes written");
        rounds += 1;
        assert!(rounds <= 2, "more rounds than actors left");
    }
    assert_eq!(rounds, 1);
    // A round that writes nothing else places one actor even over budget.
    let mut state = ClusterState::default();
    node(&mut state, 1, Resources::new().with_cpus(8.0).unwrap());
    let plan = reconcile_within(
        &state,
        TERM,
        CLOCK,
        &spawns,
        &[],
        PlacementPolicy::Spread,
        0,
    );
    for (key, value) in &plan.writes {
        state.apply(key, value.as_deref());
    }
    assert!(state.actors.values().all(|a| a.node.is_none()));
    let plan = reconcile_within(&state, TERM, CLOCK, &[], &[], PlacementPolicy::Spread, 0);
    for (key, value) in &plan.writes {
        state.apply(key, value.as_deref());
    }
    let placed = state.actors.values().filter(|a| a.node.is_some()).count();
    assert_eq!(placed, 1, "an empty round places one");
    // The default budget takes them all at once.
    let mut state = ClusterState::default();
    node(&mut state, 1, Resources::new().with_cpus(8.0).unwrap());
    let plan = reconcile(&state, TERM, CLOCK, &spawns, &[], PlacementPolicy::Spread);
    assert!(plan
        .spawned
        .iter()
        .all(|r| r.as_ref().unwrap().node.is_some()));
}

#[test]
fn a_spread_group_spreads_over_rounds_counting_what_each_node_already_holds() {
    let mut state = ClusterState::default();
    let cpus = |n: f64| Resources::new().with_cpus(n).unwrap();
    // Node 1 is the biggest: without a group everything would go there.
    let big = node(&mut state, 1, cpus(16.0));
    let n2 = node(&mut state, 2, cpus(4.0));
    let n3 = node(&mut state, 3, cpus(4.0));
    let grouped = |id: u64, group: &str| {
        let mut r = spawn_request(id, big, cpus(1.0));
        r.options.spread_group = Some(group.into());
        r
    };
    // One replica per round, as a serve controller starting them one by
    // one would: each round counts the earlier rounds' assignments.
    let mut nodes = Vec::new();
    for id in 1..=3 {
        let plan = round(&mut state, &[grouped(id, "d")], &[]);
        nodes.push(plan.spawned[0].as_ref().unwrap().node.unwrap());
    }
    nodes.sort();
    assert_eq!(nodes, [big, n2, n3]);
    // Another group starts from its own counts; an ungrouped actor
    // follows free capacity alone.
    let plan = round(
        &mut state,
        &[grouped(4, "e"), spawn_request(5, big, cpus(1.0))],
        &[],
    );
    let placed: Vec<_> = plan
        .spawned
        .iter()
        .map(|r| r.as_ref().unwrap().node)
        .collect();
    assert_eq!(placed, [Some(big), Some(big)]);
    // A dead replica no longer counts: its node is the group's emptiest.
    let on_n2 = *state
        .actors
        .iter()
        .find(|(_, a)| a.node == Some(n2))
        .unwrap()
        .0;
    round(&mut state, &[], &[on_n2]);
    let plan = round(&mut state, &[grouped(6, "d")], &[]);
    assert_eq!(plan.spawned[0].as_ref().unwrap().node, Some(n2));
}
