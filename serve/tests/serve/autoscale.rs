//! Autoscaling end to end on the embedded node: routers report their load
//! to the serve controller, which scales a deployment up under a burst,
//! down to zero when idle, and back from zero for a request that waits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe_serve::config::AutoscalingConfig;
use troupe_serve::spec::ReplicaState;
use troupe_serve::{Application, Bind};

use crate::apps::{Chain, ChainArgs, Hello, Upper};
use crate::support::{app_status, deploy, get, post, serve, wait_until};

/// `(target, running)` of `app`/`deployment` in its status.
fn counts(app: &str, deployment: &str) -> Option<(u32, usize)> {
    let status = app_status(app)?;
    let d = status.deployments.get(deployment)?;
    let running = d
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Running)
        .count();
    Some((d.target_replicas, running))
}

#[test]
fn a_burst_scales_up_idle_scales_to_zero_and_a_request_at_zero_is_answered() {
    let config = AutoscalingConfig {
        min_replicas: 0,
        max_replicas: 3,
        initial_replicas: Some(1),
        target_ongoing_requests: 1.0,
        upscale_delay_s: 0.5,
        downscale_delay_s: 1.0,
        downscale_to_zero_delay_s: Some(1.0),
        look_back_period_s: 1.0,
        metrics_interval_s: 0.1,
        ..AutoscalingConfig::default()
    };
    deploy(
        Application::new("autoscaled")
            .route_prefix(Some("/autoscaled"))
            .ingress(Bind::<Hello>::new("hello", ()).autoscaling_config(config)),
    );
    assert_eq!(counts("autoscaled", "hello"), Some((1, 1)));

    // A burst: six callers, each with a 1 s request always in flight.
    // Caller 0 stops last: it keeps traffic flowing through the downscale.
    let stop_most = Arc::new(AtomicBool::new(false));
    let stop_last = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let callers: Vec<_> = (0..6)
        .map(|i| {
            let stop = if i == 0 { &stop_last } else { &stop_most };
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let r = post("/autoscaled/slow", "");
                    let counter = if r.status == 200 { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    wait_until(
        "three replicas run under the burst",
        Duration::from_secs(40),
        || counts("autoscaled", "hello") == Some((3, 3)),
    );
    // The new replicas take traffic.
    let mut seen = std::collections::BTreeSet::new();
    wait_until(
        "requests reach every replica",
        Duration::from_secs(20),
        || {
            let r = get("/autoscaled/who");
            assert_eq!(r.status, 200, "{}", r.body);
            seen.insert(r.body);
            seen.len() == 3
        },
    );
    // Down to one caller: the replicas taken away leave the routers first
    // and drain, so the caller's requests never fail.
    stop_most.store(true, Ordering::SeqCst);
    // (One request in flight at target 1 keeps two replicas: the
    // downscale deadband wants at most 0.8 of the target per replica.)
    wait_until(
        "replicas are taken away under traffic",
        Duration::from_secs(40),
        || {
            counts("autoscaled", "hello")
                .is_some_and(|(target, running)| target < 3 && running == target as usize)
        },
    );
    let after_downscale = ok.load(Ordering::SeqCst);
    wait_until(
        "the last caller is still answered",
        Duration::from_secs(10),
        || ok.load(Ordering::SeqCst) > after_downscale,
    );
    stop_last.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.join().unwrap();
    }

    // Idle: down to zero.
    wait_until(
        "the idle deployment is scaled to zero",
        Duration::from_secs(40),
        || counts("autoscaled", "hello") == Some((0, 0)),
    );
    // The decision is on record with its reason, for status.
    let records = serve()
        .cluster
        .read_state(troupe_serve::controller::autoscaler::records);
    let last = records["autoscaled"].deployments["hello"].last.clone();
    let last = last.expect("a decision on record");
    assert_eq!((last.from, last.to), (1, 0), "{last:?}");
    assert!(!last.reason.is_empty());
    // A request at zero waits for a replica and is answered by it.
    let r = get("/autoscaled/x");
    assert_eq!((r.status, r.body.as_str()), (200, "hello /x"));
    assert!(counts("autoscaled", "hello").is_some_and(|(target, _)| target >= 1));

    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    assert_eq!(failed, 0, "{failed} requests failed ({ok} succeeded)");
    assert!(ok >= 6, "only {ok} requests in the burst");
}

#[test]
fn a_handle_inside_a_graph_waits_for_a_deployment_scaled_to_zero_and_is_answered() {
    // `upper` starts at zero replicas; the chain's ingress calls it
    // through a handle, whose router holds the call and wakes the
    // reporter, and the controller starts a replica for it.
    let config = AutoscalingConfig {
        min_replicas: 0,
        max_replicas: 2,
        target_ongoing_requests: 1.0,
        downscale_delay_s: 600.0,
        metrics_interval_s: 0.1,
        ..AutoscalingConfig::default()
    };
    let mut app = Application::new("chain0").route_prefix(Some("/chain0"));
    let upper = app.add(Bind::<Upper>::new("upper", ()).autoscaling_config(config));
    deploy(app.ingress(Bind::<Chain>::new("chain", ChainArgs { upper })));
    assert_eq!(counts("chain0", "upper"), Some((0, 0)));
    let r = post("/chain0", "quiet");
    assert_eq!((r.status, r.body.as_str()), (200, "QUIET!"));
    assert!(counts("chain0", "upper").is_some_and(|(target, _)| target >= 1));
    // The cheap stage stayed as it was.
    assert_eq!(counts("chain0", "chain"), Some((1, 1)));
}
