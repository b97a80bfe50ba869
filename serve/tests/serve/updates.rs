//! Lightweight updates in place: a `user_config`-only change keeps every
//! replica (same actors, no constructor call) and hands the new config to
//! `reconfigure` on each, with no failed request; a `reconfigure` that
//! fails leaves the replica running with the config it had.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use troupe_core::id::ActorId;
use troupe_serve::{AppState, Application, Bind};

use crate::apps::{Tuned, TUNED_BUILT, TUNED_CALLS};
use crate::support::{app_status, deploy, get, serve, wait_until};

/// Application `name` at `/<name>`: `Tuned` with `replicas` replicas and
/// `config`.
fn tuned(name: &str, replicas: u32, config: serde_json::Value) -> Application {
    Application::new(name)
        .route_prefix(Some(&format!("/{name}")))
        .ingress(
            Bind::<Tuned>::new(name, ())
                .num_replicas(replicas)
                .user_config(config),
        )
}

/// The replicas of `app`'s only deployment (named as the app): replica ids
/// and actors.
fn replicas(app: &str) -> (BTreeSet<String>, BTreeSet<ActorId>) {
    let status = app_status(app).expect("deployed");
    let replicas = &status.deployments[app].replicas;
    (
        replicas.iter().map(|r| r.id.to_string()).collect(),
        replicas.iter().map(|r| r.actor).collect(),
    )
}

/// How many times `reconfigure` applied `what` on `replica` (`refused`:
/// failed).
fn calls(replica: &str, what: &str) -> usize {
    TUNED_CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, w)| r == replica && w == what)
        .count()
}

/// Constructor calls of these replicas.
fn built(ids: &BTreeSet<String>) -> usize {
    TUNED_BUILT
        .lock()
        .unwrap()
        .iter()
        .filter(|r| ids.contains(*r))
        .count()
}

/// `n` answers of `/<app>/x`, each `<replica> <greeting>`, all 200.
fn answers(app: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let r = get(&format!("/{app}/x"));
            assert_eq!(r.status, 200, "{}", r.body);
            let (replica, greeting) = r.body.split_once(' ').expect("<replica> <greeting>");
            (replica.to_owned(), greeting.to_owned())
        })
        .collect()
}

#[test]
fn a_user_config_change_reconfigures_every_replica_in_place_under_load() {
    const APP: &str = "tuned";
    deploy(tuned(APP, 3, json!({"greeting": "hi"})));
    let before = app_status(APP).unwrap();
    let (ids, actors) = replicas(APP);
    assert_eq!((ids.len(), actors.len()), (3, 3));
    assert_eq!(built(&ids), 3);
    assert!(ids.iter().all(|r| calls(r, "hi") == 1));
    // Load until told to stop (bounded, in case the test fails first).
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::spawn({
        let (done, stop) = (done.clone(), stop.clone());
        move || {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) && statuses.len() < 10_000 {
                statuses.push(get(&format!("/{APP}/x")).status);
                done.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        }
    });
    wait_until("the load is flowing", Duration::from_secs(20), || {
        done.load(Ordering::SeqCst) >= 20
    });

    let s = serve();
    let version = s
        .runtime
        .block_on(troupe_serve::deploy(
            &s.cluster,
            tuned(APP, 3, json!({"greeting": "hello"})),
        ))
        .unwrap();
    assert_eq!(
        version, before.version,
        "a user_config change keeps the version"
    );
    let at_change = done.load(Ordering::SeqCst);
    wait_until(
        "every replica applied the new user_config",
        Duration::from_secs(20),
        || ids.iter().all(|r| calls(r, "hello") >= 1),
    );
    // Every replica answers with it now, and they are the same replicas.
    let after: Vec<(String, String)> = answers(APP, 30);
    assert!(
        after.iter().all(|(r, g)| ids.contains(r) && g == "hello"),
        "{after:?}"
    );
    const REQUESTS_AFTER_CHANGE: usize = 100;
    wait_until(
        "requests complete after the change",
        Duration::from_secs(20),
        || done.load(Ordering::SeqCst) >= at_change + REQUESTS_AFTER_CHANGE,
    );
    stop.store(true, Ordering::SeqCst);
    let statuses = load.join().unwrap();
    assert!(statuses.len() >= 20 + REQUESTS_AFTER_CHANGE);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    // The same actors, no constructor ran, one reconfigure each; the
    // status is RUNNING at the same version.
    let status = app_status(APP).unwrap();
    assert_eq!(
        (status.state, status.version),
        (AppState::Running, before.version)
    );
    assert_eq!(replicas(APP), (ids.clone(), actors));
    assert_eq!(built(&ids), 3);
    assert!(
        ids.iter().all(|r| calls(r, "hello") == 1),
        "{:?}",
        TUNED_CALLS.lock().unwrap()
    );
}

#[test]
fn a_failing_reconfigure_keeps_the_replica_with_the_config_it_had() {
    const APP: &str = "tuned-fail";
    deploy(tuned(APP, 2, json!({"greeting": "hi"})));
    let (ids, actors) = replicas(APP);
    assert_eq!(ids.len(), 2);
    let s = serve();
    let deploy_config = |config| {
        s.runtime
            .block_on(troupe_serve::deploy(&s.cluster, tuned(APP, 2, config)))
            .unwrap()
    };
    deploy_config(json!({"greeting": "hi", "fail": true}));
    wait_until(
        "every replica refused the new user_config",
        Duration::from_secs(20),
        || ids.iter().all(|r| calls(r, "refused") >= 1),
    );
    // Still the same replicas, serving with the config they had.
    let kept = answers(APP, 10);
    assert!(
        kept.iter().all(|(r, g)| ids.contains(r) && g == "hi"),
        "{kept:?}"
    );
    assert_eq!(replicas(APP), (ids.clone(), actors.clone()));
    assert_eq!(app_status(APP).unwrap().state, AppState::Running);

    // A config they accept is applied (a new text goes out without
    // waiting for the refused one's retry delay: see the controller's unit
    // tests).
    deploy_config(json!({"greeting": "fixed"}));
    wait_until(
        "every replica applied the fixed user_config",
        Duration::from_secs(20),
        || ids.iter().all(|r| calls(r, "fixed") == 1),
    );
    let fixed = answers(APP, 10);
    assert!(
        fixed.iter().all(|(r, g)| ids.contains(r) && g == "fixed"),
        "{fixed:?}"
    );
    assert_eq!(replicas(APP), (ids.clone(), actors));
    assert_eq!(built(&ids), 2);
}
