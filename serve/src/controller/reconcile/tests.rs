//! The serve controller's rounds on states built in memory.

use troupe_core::id::NodeId;
use troupe_worker::schema::{ActorName, ActorOptions, Owner};

use super::*;
use crate::spec::{replica_name, DeploymentSpec, REPLICA_NAMESPACE};

fn spec(replicas: u32, version: u64) -> AppSpec {
    AppSpec {
        name: "app".into(),
        route_prefix: Some("/".into()),
        ingress: "front".into(),
        streaming: false,
        version,
        deployments: vec![DeploymentSpec::for_tests(
            "front", "Front", version, replicas,
        )],
    }
}

fn replica(id: u64, version: u64, state: ActorState) -> ActorRecord {
    let mut record = ActorRecord::new(
        ActorId::new(id),
        "Front",
        Owner::Node(NodeId::new(1)),
        ActorOptions::default(),
    );
    let name = replica_name("app", "front", version, ReplicaId::new(id));
    record.name = Some(ActorName::new(REPLICA_NAMESPACE, name).unwrap());
    record.node = match state {
        ActorState::Dead { .. } => None,
        _ => Some(NodeId::new(1)),
    };
    record.state = state;
    record
}

fn run(specs: &[AppSpec], statuses: &[AppStatus], actors: &[ActorRecord]) -> Vec<Action> {
    let specs = specs.iter().map(|s| (s.name.clone(), s.clone())).collect();
    let statuses = statuses
        .iter()
        .map(|s| (s.name.clone(), s.clone()))
        .collect();
    let actors = actors.iter().map(|a| (a.id, a.clone())).collect();
    run_with_loads(specs, statuses, actors, &BTreeMap::new())
}

fn run_with_loads(
    specs: BTreeMap<String, AppSpec>,
    statuses: BTreeMap<String, AppStatus>,
    actors: BTreeMap<ActorId, ActorRecord>,
    loads: &BTreeMap<ReplicaId, f64>,
) -> Vec<Action> {
    let mut next = 100;
    reconcile(&specs, &statuses, &actors, loads, &mut || {
        next += 1;
        ReplicaId::new(next)
    })
}

fn starts(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Start { .. }))
        .count()
}

fn stops(actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop { actor } => Some(actor.get()),
            _ => None,
        })
        .collect()
}

fn status(actions: &[Action]) -> &AppStatus {
    actions
        .iter()
        .find_map(|a| match a {
            Action::WriteStatus(s) => Some(s),
            _ => None,
        })
        .expect("a status")
}

#[test]
fn a_new_application_starts_its_replicas_and_runs_once_they_are_alive() {
    let actions = run(&[spec(2, 1)], &[], &[]);
    assert_eq!(starts(&actions), 2);
    assert_eq!(status(&actions).state, AppState::Deploying);

    let alive = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Alive),
    ];
    let actions = run(&[spec(2, 1)], &[], &alive);
    assert_eq!(starts(&actions), 0);
    let running = status(&actions).clone();
    assert_eq!(running.state, AppState::Running);
    // Nothing changed: nothing to write.
    assert!(run(&[spec(2, 1)], &[running], &alive).is_empty());
}

#[test]
fn scaling_down_stops_starting_replicas_first() {
    let actors = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Pending),
        replica(3, 1, ActorState::Alive),
    ];
    let actions = run(&[spec(2, 1)], &[], &actors);
    assert_eq!(stops(&actions), [2]);
}

#[test]
fn a_dead_replica_is_replaced() {
    let killed = troupe_worker::lifecycle::DeathReason::KilledByUser;
    let actors = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Dead { reason: killed }),
    ];
    let actions = run(&[spec(2, 1)], &[], &actors);
    assert_eq!(starts(&actions), 1);
}

#[test]
fn an_update_keeps_old_replicas_until_the_new_ones_run() {
    let old = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Alive),
    ];
    let actions = run(&[spec(2, 2)], &[], &old);
    assert_eq!(starts(&actions), 2);
    assert!(stops(&actions).is_empty(), "old replicas keep serving");

    let mixed = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Alive),
        replica(3, 2, ActorState::Alive),
        replica(4, 2, ActorState::Pending),
    ];
    assert!(stops(&run(&[spec(2, 2)], &[], &mixed)).is_empty());

    let ready = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Alive),
        replica(3, 2, ActorState::Alive),
        replica(4, 2, ActorState::Alive),
    ];
    let actions = run(&[spec(2, 2)], &[], &ready);
    assert_eq!(stops(&actions), [1, 2]);
    assert_eq!(status(&actions).state, AppState::Deploying);
}

#[test]
fn three_constructor_failures_fail_the_deployment_with_the_error() {
    let failed = |id| {
        replica(
            id,
            1,
            ActorState::Dead {
                reason: troupe_worker::lifecycle::DeathReason::ConstructorFailed {
                    message: "model file missing".into(),
                },
            },
        )
    };
    let actions = run(&[spec(1, 1)], &[], &[failed(1), failed(2)]);
    assert_eq!(starts(&actions), 1, "two failures: try again");
    let actions = run(&[spec(1, 1)], &[], &[failed(1), failed(2), failed(3)]);
    assert_eq!(starts(&actions), 0);
    // Once the failed replicas' records are collected, the status keeps
    // it failed at this version: nothing is started again.
    let last = status(&actions).clone();
    let later = run(&[spec(1, 1)], std::slice::from_ref(&last), &[]);
    assert_eq!(starts(&later), 0);
    assert!(later.iter().all(|a| !matches!(a, Action::WriteStatus(_))));
    // A new version starts again.
    assert_eq!(starts(&run(&[spec(1, 2)], &[last], &[])), 1);
    let s = status(&actions);
    assert_eq!(s.state, AppState::DeployFailed);
    assert!(s.message.contains("model file missing"), "{}", s.message);
}

#[test]
fn a_deleted_application_stops_its_replicas_then_forgets_its_status() {
    let alive = [replica(1, 1, ActorState::Alive)];
    let running = status(&run(&[spec(1, 1)], &[], &alive)).clone();
    let actions = run(&[], std::slice::from_ref(&running), &alive);
    assert_eq!(stops(&actions), [1]);
    assert_eq!(status(&actions).state, AppState::Deleting);
    let gone = [replica(
        1,
        1,
        ActorState::Dead {
            reason: troupe_worker::lifecycle::DeathReason::KilledByUser,
        },
    )];
    let actions = run(&[], &[running], &gone);
    assert_eq!(actions, [Action::DeleteStatus { app: "app".into() }]);
}

#[test]
fn a_running_application_that_loses_a_replica_is_unhealthy_until_replaced() {
    let alive = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Alive),
    ];
    let running = status(&run(&[spec(2, 1)], &[], &alive)).clone();
    assert_eq!(running.state, AppState::Running);
    let killed = troupe_worker::lifecycle::DeathReason::KilledByUser;
    let lost = [
        replica(1, 1, ActorState::Alive),
        replica(2, 1, ActorState::Dead { reason: killed }),
    ];
    let actions = run(&[spec(2, 1)], std::slice::from_ref(&running), &lost);
    assert_eq!(starts(&actions), 1);
    let unhealthy = status(&actions);
    assert_eq!(unhealthy.state, AppState::Unhealthy);
    assert!(
        unhealthy.message.contains("1 of 2"),
        "{}",
        unhealthy.message
    );
    // A new version deploying is DEPLOYING, not UNHEALTHY.
    let actions = run(&[spec(2, 2)], std::slice::from_ref(&running), &alive);
    assert_eq!(status(&actions).state, AppState::Deploying);
}

#[test]
fn a_rescale_at_the_same_version_is_deploying_not_unhealthy() {
    let alive = [replica(1, 1, ActorState::Alive)];
    let running = status(&run(&[spec(1, 1)], &[], &alive)).clone();
    assert_eq!(running.state, AppState::Running);
    // num_replicas 1 -> 3 keeps the version: two replicas start, and the
    // status says so with the new target.
    let actions = run(&[spec(3, 1)], std::slice::from_ref(&running), &alive);
    assert_eq!(starts(&actions), 2);
    let scaling = status(&actions).clone();
    assert_eq!(scaling.state, AppState::Deploying);
    assert_eq!(scaling.deployments["front"].target_replicas, 3);
    // Still DEPLOYING while they start, RUNNING once all three are alive.
    let two = [
        replica(1, 1, ActorState::Alive),
        replica(101, 1, ActorState::Alive),
    ];
    let actions = run(&[spec(3, 1)], std::slice::from_ref(&scaling), &two);
    assert_eq!(status(&actions).state, AppState::Deploying);
    let three = [
        replica(1, 1, ActorState::Alive),
        replica(101, 1, ActorState::Alive),
        replica(102, 1, ActorState::Alive),
    ];
    let actions = run(&[spec(3, 1)], std::slice::from_ref(&scaling), &three);
    assert_eq!(status(&actions).state, AppState::Running);
}

#[test]
fn scaling_down_takes_replicas_from_the_most_crowded_node_first() {
    // Five running: three on node 1, two on node 2; down to three.
    let on = |id: u64, node: u64| {
        let mut r = replica(id, 1, ActorState::Alive);
        r.node = Some(NodeId::new(node));
        r
    };
    let actors = [on(1, 1), on(2, 1), on(3, 1), on(4, 2), on(5, 2)];
    let mut stopped = stops(&run(&[spec(3, 1)], &[], &actors));
    stopped.sort();
    // Node 1 holds the most, so both come from there (the counts are
    // taken before the round's stops).
    assert_eq!(stopped.len(), 2);
    assert!(stopped.iter().all(|id| *id <= 3), "{stopped:?}");
}

#[test]
fn replicas_waiting_for_a_node_say_why_in_the_deployment_status() {
    let mut waiting = replica(2, 1, ActorState::Pending);
    waiting.node = None;
    waiting.pending_reason = Some("no node has 0.5 CPU free now".into());
    let actors = [replica(1, 1, ActorState::Alive), waiting];
    let actions = run(&[spec(2, 1)], &[], &actors);
    let d = &status(&actions).deployments["front"];
    assert_eq!(
        d.message,
        "1 of 2 replicas running; 1 PENDING: no node has 0.5 CPU free now"
    );
    // Nothing more is started for it: it is one of the two.
    assert_eq!(starts(&actions), 0);
}

#[test]
fn scaling_down_takes_the_least_loaded_replicas_among_equally_spread_ones() {
    let on = |id: u64, node: u64| {
        let mut r = replica(id, 1, ActorState::Alive);
        r.node = Some(NodeId::new(node));
        r
    };
    let actors = [on(1, 1), on(2, 2), on(3, 3)];
    let loads = BTreeMap::from([
        (ReplicaId::new(1), 4.0),
        (ReplicaId::new(2), 0.0),
        (ReplicaId::new(3), 1.0),
    ]);
    let specs = BTreeMap::from([("app".to_owned(), spec(1, 1))]);
    let actors = actors.iter().map(|a| (a.id, a.clone())).collect();
    let actions = run_with_loads(specs, BTreeMap::new(), actors, &loads);
    let mut stopped = stops(&actions);
    stopped.sort();
    assert_eq!(stopped, [2, 3]);
}
