//! The controller's autoscaling round on hand-made specs, statuses and
//! reports, with time as a number.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use troupe_core::id::{ActorId, ReplicaId};

use super::*;
use crate::autoscale::{AutoscalingPolicy, Direction};
use crate::spec::{AppState, DeploymentSpec, DeploymentState, DeploymentStatus, ReplicaStatus};

const T0: u64 = 1_800_000_000_000;

fn policy() -> AutoscalingPolicy {
    AutoscalingPolicy {
        min_replicas: 0,
        max_replicas: 5,
        initial_replicas: 1,
        target_ongoing_requests: 2.0,
        upscale_delay_ms: 1_000,
        downscale_delay_ms: 2_000,
        downscale_to_zero_delay_ms: 2_000,
        look_back_ms: 2_000,
        metrics_interval_ms: 100,
        upscaling_factor: 1.0,
        downscaling_factor: 1.0,
    }
}

/// App `a` with the autoscaled deployment `m` and the fixed one `f`.
fn specs() -> BTreeMap<String, AppSpec> {
    let mut m = DeploymentSpec::for_tests("m", "M", 1, 1);
    m.autoscaling = Some(policy());
    let f = DeploymentSpec::for_tests("f", "F", 1, 2);
    let app = AppSpec {
        name: "a".into(),
        route_prefix: None,
        ingress: "m".into(),
        streaming: false,
        deployments: vec![m, f],
        version: 1,
    };
    BTreeMap::from([("a".to_owned(), app)])
}

/// A status with `running` replicas of `m` running at version 1.
fn statuses(running: u64) -> BTreeMap<String, AppStatus> {
    let replicas = (0..running)
        .map(|i| ReplicaStatus {
            id: ReplicaId::new(i + 1),
            actor: ActorId::new(i + 1),
            version: 1,
            state: ReplicaState::Running,
            node: None,
        })
        .collect();
    let m = DeploymentStatus {
        state: DeploymentState::Healthy,
        message: String::new(),
        target_replicas: running as u32,
        replicas,
    };
    let status = AppStatus {
        name: "a".into(),
        state: AppState::Running,
        message: String::new(),
        version: 1,
        deployments: BTreeMap::from([("m".to_owned(), m)]),
    };
    BTreeMap::from([("a".to_owned(), status)])
}

/// Reports `load` for `m` every 100 ms from `from` to `to` and runs a
/// round at each; returns the last round.
fn drive(
    autoscaler: &mut Autoscaler,
    store: &Mutex<MetricsStore>,
    load: f64,
    running: u64,
    (from, to): (u64, u64),
) -> (Scaled, Vec<Scaled>) {
    let key = DeploymentKey::new("a", "m");
    let mut rounds = Vec::new();
    let mut at = from;
    loop {
        store
            .lock()
            .unwrap()
            .report("node-1/routers", &key, at, load);
        rounds.push(autoscaler.round(&specs(), &statuses(running), at));
        if at >= to {
            break;
        }
        at += 100;
    }
    let last = rounds.pop().unwrap();
    (last, rounds)
}

fn target(scaled: &Scaled) -> (u32, u32) {
    let d = &scaled.specs["a"].deployments;
    (d[0].num_replicas, d[1].num_replicas)
}

#[test]
fn the_first_target_and_each_decision_are_written_once_with_the_reason() {
    let store = Arc::new(Mutex::new(MetricsStore::new()));
    let mut autoscaler = Autoscaler::new(store.clone(), BTreeMap::new());
    // Before any report: the initial count; the fixed deployment untouched.
    let first = autoscaler.round(&specs(), &statuses(1), T0);
    assert_eq!(target(&first), (1, 2));
    // 8 ongoing requests at target 2 for longer than the upscale delay.
    let (last, rounds) = drive(&mut autoscaler, &store, 8.0, 1, (T0, T0 + 3_000));
    assert_eq!(target(&last), (4, 2));
    let written: Vec<&AutoscaleRecord> = [&first]
        .into_iter()
        .chain(&rounds)
        .chain([&last])
        .flat_map(|s| &s.write)
        .collect();
    assert_eq!(written.len(), 2, "{written:?}");
    // The initial target, then the decision.
    assert_eq!(written[0].deployments["m"].target, 1);
    assert_eq!(written[0].deployments["m"].last, None);
    let scale = &written[1].deployments["m"];
    assert_eq!(scale.target, 4);
    let decision = scale.last.as_ref().unwrap();
    assert_eq!(
        (decision.direction, decision.from, decision.to),
        (Direction::Up, 1, 4)
    );
    assert!(!decision.reason.is_empty());
    assert!(!written[1].deployments.contains_key("f"));
}

#[test]
fn a_new_controller_starts_from_the_stored_target_and_does_not_scale_down_at_once() {
    let stored = AutoscaleRecord {
        app: "a".into(),
        deployments: BTreeMap::from([(
            "m".to_owned(),
            DeploymentScale {
                target: 4,
                ..DeploymentScale::default()
            },
        )]),
    };
    let store = Arc::new(Mutex::new(MetricsStore::new()));
    let mut autoscaler = Autoscaler::new(store.clone(), BTreeMap::from([("a".to_owned(), stored)]));
    // Idle load for less than a look-back window of its own samples.
    let (last, rounds) = drive(&mut autoscaler, &store, 0.0, 4, (T0, T0 + 1_500));
    assert!(rounds.iter().chain([&last]).all(|s| target(s).0 == 4));
    assert!(rounds.iter().chain([&last]).all(|s| s.write.is_empty()));
}

#[test]
fn a_target_outside_new_bounds_is_clamped_and_records_of_deleted_apps_go() {
    let stored = AutoscaleRecord {
        app: "a".into(),
        deployments: BTreeMap::from([(
            "m".to_owned(),
            DeploymentScale {
                target: 9,
                ..DeploymentScale::default()
            },
        )]),
    };
    let gone = AutoscaleRecord {
        app: "gone".into(),
        deployments: BTreeMap::new(),
    };
    let store = Arc::new(Mutex::new(MetricsStore::new()));
    let mut autoscaler = Autoscaler::new(
        store,
        BTreeMap::from([("a".to_owned(), stored), ("gone".to_owned(), gone)]),
    );
    let scaled = autoscaler.round(&specs(), &statuses(5), T0);
    assert_eq!(target(&scaled).0, 5);
    assert_eq!(scaled.delete, ["gone"]);
    // No longer autoscaled: its record goes too.
    let mut fixed = specs();
    fixed.get_mut("a").unwrap().deployments[0].autoscaling = None;
    let scaled = autoscaler.round(&fixed, &statuses(5), T0 + 100);
    assert_eq!(target(&scaled), (1, 2));
    assert_eq!(scaled.delete, ["a"]);
}
