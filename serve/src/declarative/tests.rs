//! The pure parts of a declarative deploy: plans, deploy-time stamps,
//! progress against the target, and the lines `serve deploy` prints.

use super::*;
use crate::spec::{AppState, AppStatus, DeploymentState, ReplicaState};

fn spec(name: &str, deployments: &[(&str, &str, u32)]) -> AppSpec {
    AppSpec {
        name: name.into(),
        route_prefix: Some(format!("/{name}")),
        ingress: deployments[0].0.into(),
        streaming: false,
        deployments: deployments
            .iter()
            .map(|(d, ty, n)| crate::spec::DeploymentSpec::for_tests(d, ty, 0, *n))
            .collect(),
        version: 0,
    }
}

#[test]
fn deploy_times_are_stamped_on_changed_applications_and_dropped_with_deleted_ones() {
    let current = BTreeMap::from([
        (
            "kept".to_string(),
            successor(None, spec("kept", &[("a", "A", 1)])),
        ),
        (
            "gone".to_string(),
            successor(None, spec("gone", &[("a", "A", 1)])),
        ),
    ]);
    let desired = vec![
        spec("kept", &[("a", "A", 1)]),
        spec("new", &[("a", "A", 2)]),
    ];
    let (_, outcome) = plan(&current, desired);
    let ops = stamp_ops(&outcome, 1_700_000_000.5);
    let put: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            TxnOp::Put(p) => Some((
                String::from_utf8_lossy(&p.key).into_owned(),
                p.value.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        put,
        vec![(format!("{DEPLOYED_AT_PREFIX}new"), b"1700000000.5".to_vec())]
    );
    let deleted: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            TxnOp::Delete(DeleteRequest {
                selector: KeySelector::Key(k),
                ..
            }) => Some(String::from_utf8_lossy(k).into_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec![format!("{DEPLOYED_AT_PREFIX}gone")]);
}

#[test]
fn a_plan_touches_only_what_changed_and_deletes_what_is_gone() {
    let (first, _) = plan(
        &BTreeMap::new(),
        vec![spec("a", &[("x", "T", 1)]), spec("b", &[("y", "T", 1)])],
    );
    let current: BTreeMap<_, _> = first.into_iter().map(|s| (s.name.clone(), s)).collect();
    // a rescales (same version), b is unchanged, c is new, nothing else.
    let (next, outcome) = plan(
        &current,
        vec![
            spec("a", &[("x", "T", 3)]),
            spec("b", &[("y", "T", 1)]),
            spec("c", &[("z", "T", 1)]),
        ],
    );
    assert_eq!(outcome.changed, vec!["a".to_string(), "c".to_string()]);
    assert!(outcome.deleted.is_empty());
    assert_eq!(next[0].version, current["a"].version);
    assert_eq!(next[0].deployments[0].num_replicas, 3);
    // Dropping b deletes it; a new type for a's deployment bumps it.
    let (next, outcome) = plan(&current, vec![spec("a", &[("x", "U", 1)])]);
    assert_eq!(outcome.deleted, vec!["b".to_string()]);
    assert_eq!(next[0].version, current["a"].version + 1);
}

/// A status at `version` whose one deployment `x` asks for `target`
/// replicas and has `running` of them (of replica version `rv`)
/// running.
fn status(state: AppState, version: u64, target: u32, running: &[u64]) -> AppStatus {
    use crate::spec::{DeploymentStatus, ReplicaStatus};
    let replicas = running
        .iter()
        .map(|rv| ReplicaStatus {
            id: troupe_core::id::ReplicaId::random(),
            actor: troupe_core::id::ActorId::new(1),
            version: *rv,
            state: ReplicaState::Running,
            node: None,
        })
        .collect();
    AppStatus {
        name: "a".into(),
        state,
        message: String::new(),
        version,
        deployments: BTreeMap::from([(
            "x".to_string(),
            DeploymentStatus {
                state: DeploymentState::Updating,
                message: String::new(),
                target_replicas: target,
                replicas,
            },
        )]),
    }
}

fn target(version: u64, replicas: u32) -> AppTarget {
    let mut s = spec("a", &[("x", "T", replicas)]);
    s.version = version;
    s.deployments[0].version = version;
    AppTarget::of(&s)
}

#[test]
fn a_rescale_is_done_only_when_the_status_shows_the_new_count_running() {
    let three = target(2, 3);
    // The status before the rescale (1/1 RUNNING, same version) is
    // stale, not done.
    let before = status(AppState::Running, 2, 1, &[2]);
    assert_eq!(progress(&three, Some(&before)), Progress::Waiting);
    assert_eq!(progress(&three, None), Progress::Waiting);
    // Older versions are stale too; a newer one replaced the target.
    let older = status(AppState::Running, 1, 3, &[1, 1, 1]);
    assert_eq!(progress(&three, Some(&older)), Progress::Waiting);
    let newer = status(AppState::Deploying, 3, 3, &[]);
    assert_eq!(progress(&three, Some(&newer)), Progress::Superseded(3));
    // The controller took the new count: moving, then done.
    let scaling = status(AppState::Deploying, 2, 3, &[2]);
    assert_eq!(progress(&three, Some(&scaling)), Progress::Moving);
    let done = status(AppState::Running, 2, 3, &[2, 2, 2]);
    assert_eq!(progress(&three, Some(&done)), Progress::Done);
    let mut failed = status(AppState::DeployFailed, 2, 3, &[2]);
    failed.message = "deployment x failed: boom".into();
    assert_eq!(
        progress(&three, Some(&failed)),
        Progress::Failed("deployment x failed: boom".into())
    );
    // A deployment the target does not have: stale.
    let mut other = done.clone();
    let x = other.deployments.remove("x").unwrap();
    other.deployments.insert("y".into(), x);
    assert_eq!(progress(&three, Some(&other)), Progress::Waiting);
    // Knowing only the version, any count at that version will do.
    let any = AppTarget::version_only(2);
    assert_eq!(progress(&any, Some(&before)), Progress::Done);
}

#[test]
fn progress_counts_the_target_versions_replicas_against_the_target() {
    // Version 3 replaces version 2's replicas: one new one runs, two
    // old ones are still up.
    let t = target(3, 3);
    let s = status(AppState::Deploying, 3, 3, &[3, 2, 2]);
    assert_eq!(
        progress_lines("a", &t, &s),
        [
            "a: DEPLOYING at version 3",
            "  a/x: 1/3 replicas running, 2 of an older version still up"
        ]
    );
    let s = status(AppState::Running, 3, 3, &[3, 3, 3]);
    assert_eq!(
        progress_lines("a", &t, &s),
        ["a: RUNNING at version 3", "  a/x: 3/3 replicas running"]
    );
    assert_eq!(
        waiting_line("a", &t),
        "a: waiting for the serve controller to take version 3 (replicas: x 3)"
    );
}

#[test]
fn the_deploy_report_names_the_new_version_and_the_target_counts() {
    let (first, done) = plan(&BTreeMap::new(), vec![spec("a", &[("x", "T", 1)])]);
    assert_eq!(
        deployed_lines(&done),
        ["application a: created at version 1 (replicas: x 1)"]
    );
    let current: BTreeMap<_, _> = first.into_iter().map(|s| (s.name.clone(), s)).collect();
    // The same config with 3 replicas: a rescale at version 1.
    let (_, done) = plan(&current, vec![spec("a", &[("x", "T", 3)])]);
    assert_eq!(
        deployed_lines(&done),
        ["application a: rescaled at version 1: x 1 -> 3 replicas, replicas kept"]
    );
    assert_eq!(done.targets["a"], target(1, 3));
    // New code: a new version.
    let (_, done) = plan(&current, vec![spec("a", &[("x", "U", 2)])]);
    assert_eq!(
        deployed_lines(&done),
        ["application a: updated to version 2 (from version 1; new replicas replace the old ones) (replicas: x 2)"]
    );
    // Nothing changed; and an application left out is deleted.
    let (_, done) = plan(&current, vec![spec("a", &[("x", "T", 1)])]);
    assert_eq!(
        deployed_lines(&done),
        ["application a: unchanged at version 1 (replicas: x 1)"]
    );
    let (_, done) = plan(&current, vec![]);
    assert_eq!(
        deployed_lines(&done),
        ["application a: deleted (not in the config)"]
    );
}

/// `a` deployed (one deployment `x`, 2 replicas), then `change` made
/// to `x` and deployed again: the new stored spec and the outcome.
fn redeploy(change: impl Fn(&mut crate::spec::DeploymentSpec)) -> (AppSpec, AppSpec, Deployed) {
    let mut first = spec("a", &[("x", "T", 2)]);
    first.deployments[0].user_config = Some(r#"{"k":1}"#.into());
    let (stored, _) = plan(&BTreeMap::new(), vec![first.clone()]);
    let current: BTreeMap<_, _> = stored.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut next = first;
    change(&mut next.deployments[0]);
    let (mut specs, done) = plan(&current, vec![next]);
    (current["a"].clone(), specs.remove(0), done)
}

#[test]
fn lightweight_changes_keep_the_version_and_code_arguments_or_resources_replace_replicas() {
    type Change = fn(&mut crate::spec::DeploymentSpec);
    let lightweight: [(&str, Change); 9] = [
        ("num_replicas", |d| d.num_replicas = 5),
        ("max_ongoing_requests", |d| d.max_ongoing_requests = 100),
        ("max_queued_requests", |d| d.max_queued_requests = Some(10)),
        ("health_check_period", |d| d.health_check_period_ms = 1_000),
        ("health_check_timeout", |d| {
            d.health_check_timeout_ms = 2_000
        }),
        ("graceful_shutdown_timeout", |d| {
            d.graceful_shutdown_timeout_ms = 1
        }),
        ("retry_lost_requests", |d| d.retry_lost_requests = false),
        ("user_config", |d| d.user_config = Some(r#"{"k":2}"#.into())),
        ("user_config removed", |d| d.user_config = None),
    ];
    for (what, change) in lightweight {
        let (old, new, done) = redeploy(change);
        assert_eq!(new.version, old.version, "{what}");
        assert_eq!(
            new.deployments[0].version, old.deployments[0].version,
            "{what}"
        );
        assert_eq!(done.changed, ["a"], "{what}: the new spec is stored");
        let mut expected = old.deployments[0].clone();
        change(&mut expected);
        assert_eq!(new.deployments[0], expected, "{what}: stored as given");
    }
    let replacing: [(&str, Change); 3] = [
        ("code", |d| d.type_name = "U".into()),
        ("arguments", |d| d.args = vec![1]),
        ("resources", |d| {
            d.resources = troupe_core::resources::Resources::new()
                .with_cpus(1.0)
                .unwrap()
        }),
    ];
    for (what, change) in replacing {
        let (old, new, done) = redeploy(change);
        assert_eq!(new.version, old.version + 1, "{what}");
        assert_eq!(new.deployments[0].version, old.version + 1, "{what}");
        assert!(done.reconfigured.is_empty(), "{what}");
    }
}

#[test]
fn a_user_config_change_is_reported_as_reconfiguring_in_place() {
    let (_, _, done) = redeploy(|d| d.user_config = Some(r#"{"k":2}"#.into()));
    assert_eq!(done.reconfigured["a"], ["x"]);
    assert_eq!(
        deployed_lines(&done),
        ["application a: user_config changed at version 1: reconfiguring x's 2 replicas in place, replicas kept (replicas: x 2)"]
    );
    // With a rescale.
    let (_, _, done) = redeploy(|d| {
        d.user_config = Some(r#"{"k":2}"#.into());
        d.num_replicas = 1;
    });
    assert_eq!(
        deployed_lines(&done),
        ["application a: rescaled at version 1: x 2 -> 1 replicas, replicas kept; user_config changed: reconfiguring x's 1 replica in place"]
    );
    // Removed: the replicas keep what they applied; nothing to call.
    let (_, _, done) = redeploy(|d| d.user_config = None);
    assert!(done.reconfigured.is_empty());
    assert_eq!(
        deployed_lines(&done),
        ["application a: options changed at version 1, replicas kept (replicas: x 2)"]
    );
    // Another option only.
    let (_, _, done) = redeploy(|d| d.max_ongoing_requests = 9);
    assert!(done.reconfigured.is_empty());
    assert_eq!(
        deployed_lines(&done),
        ["application a: options changed at version 1, replicas kept (replicas: x 2)"]
    );
    // The same user_config: unchanged.
    let (_, _, done) = redeploy(|_| {});
    assert_eq!(
        deployed_lines(&done),
        ["application a: unchanged at version 1 (replicas: x 2)"]
    );
}
