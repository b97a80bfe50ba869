//! Autoscaling across node processes: routers on another node report the
//! load, the serve controller on the GCS leader's node scales up, and
//! after that node is killed the new controller keeps the decided count
//! instead of going back to the initial one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe::prelude::*;
use troupe::serve::config::AutoscalingConfig;
use troupe::serve::controller::autoscaler;
use troupe::serve::spec::ReplicaState;
use troupe::serve::AppState;
use troupe_examples::patterns::{Noop, Sleepy};

use crate::serve::{post, status_of};
use crate::support::{wait_until, TestCluster};

/// `(target, running)` of the app's one deployment, once it is RUNNING.
async fn counts(driver: &Cluster, app: &str) -> Option<(u32, usize)> {
    let status = status_of(driver, app).await?;
    if status.state != AppState::Running {
        return None;
    }
    let d = status.deployments.values().next()?;
    let running = d
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Running)
        .count();
    Some((d.target_replicas, running))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_scales_up_across_nodes_and_a_controller_failover_keeps_the_count() {
    // Three GCS members; the replicas stay off the leader's node (the
    // controllers' node), so its loss kills no replica, only the
    // controller and what it knew.
    let (mut cluster, leader, term) = TestCluster::serve_gcs_trio().await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (via, proxy) = (others[0], others[1]);
    let driver = cluster.driver_via(via, 3).await;
    let away = format!("away_from_{leader}");
    let config = AutoscalingConfig {
        min_replicas: 1,
        max_replicas: 4,
        target_ongoing_requests: 1.0,
        upscale_delay_s: 0.5,
        // Long enough that no downscale can happen during the test.
        downscale_delay_s: 600.0,
        look_back_period_s: 2.0,
        metrics_interval_s: 0.1,
        ..AutoscalingConfig::default()
    };
    let app = Application::new("sleepy")
        .route_prefix(Some("/sleepy"))
        .ingress(
            Bind::<Sleepy>::new("sleepy", ())
                .num_cpus(0.25)
                .resource(&away, 0.25)
                .autoscaling_config(config),
        );
    troupe::serve::deploy(&driver, app).await.unwrap();
    wait_until(
        "sleepy runs its initial replica",
        Duration::from_secs(30),
        || {
            let driver = driver.clone();
            async move { counts(&driver, "sleepy").await == Some((1, 1)) }
        },
    )
    .await;

    // Eight callers through another node's proxy, each with a 50 ms
    // request always in flight: about eight ongoing requests at target 1.
    let http = cluster.nodes[proxy].http.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failures) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (http, stop, ok, failures) =
                (http.clone(), stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match post(&http, "/sleepy", "") {
                        Ok((200, _)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures.lock().unwrap().push(format!("{other:?}")),
                    }
                }
            })
        })
        .collect();
    wait_until(
        "four replicas run under the load",
        Duration::from_secs(60),
        || {
            let driver = driver.clone();
            async move { counts(&driver, "sleepy").await == Some((4, 4)) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    let ok = ok.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} failed ({ok} ok): {failures:?}",
        failures.len()
    );
    assert!(ok >= 40, "only {ok} requests in the burst");
    let decided = driver.state().await.unwrap();
    let decided = autoscaler::records(&decided)["sleepy"].deployments["sleepy"].clone();
    assert_eq!(decided.target, 4);

    // The controllers' node dies with the load gone. The new controller
    // starts from the stored target (4), not the initial count (1), and
    // with no metrics of its own it scales nothing down.
    let term_now = cluster.kill_leader(leader, term, "the replicas").await;
    cluster.assert_new_leader(leader, term_now).await;
    // Proof that the new controller has run rounds: it deploys a new
    // application.
    let noop = Application::new("noop")
        .route_prefix(Some("/noop"))
        .ingress(
            Bind::<Noop>::new("noop", ())
                .num_cpus(0.25)
                .resource(&away, 0.25),
        );
    troupe::serve::deploy(&driver, noop).await.unwrap();
    wait_until(
        "the new controller runs noop",
        Duration::from_secs(60),
        || {
            let driver = driver.clone();
            async move { counts(&driver, "noop").await == Some((1, 1)) }
        },
    )
    .await;
    assert_eq!(counts(&driver, "sleepy").await, Some((4, 4)));
    let after = driver.state().await.unwrap();
    let after = &autoscaler::records(&after)["sleepy"].deployments["sleepy"];
    assert_eq!(after.target, 4);
    assert_eq!(after.last, decided.last, "a decision after the failover");
}
