//! Panics, node deaths and the loss of the GCS leader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe::prelude::*;
use troupe_examples::actors::{Add, Counter, Crash, Get, WhereAreYou};

use crate::support::{away_from_others, wait_until, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_restarts_the_actor_and_leaves_the_node_serving() {
    let cluster = TestCluster::head(&["--num-cpus", "2"]);
    let driver = cluster.driver().await;
    let fragile = driver.spawn::<Counter>(100).max_restarts(1).await.unwrap();
    let bystander = driver.spawn::<Counter>(0).await.unwrap();
    fragile.call(Add(5)).await.unwrap();
    bystander.call(Add(7)).await.unwrap();

    let crashed = fragile.call(Crash).await.unwrap_err();
    assert!(
        matches!(&crashed, ActorError::Unavailable { detail, .. } if detail.contains("panicked")),
        "{crashed}"
    );
    // Restarted from its constructor argument: the state is fresh.
    assert_eq!(fragile.call(Get).await.unwrap(), 100);
    assert_eq!(bystander.call(Get).await.unwrap(), 7);

    // The budget is spent now: a second panic kills it for good. The call
    // that panicked says so; the controller then records the death, which
    // this driver's view shows (a signal, waited for within a bound), and
    // from then on a call answers Died at once.
    let crashed = fragile.call(Crash).await.unwrap_err();
    assert!(
        matches!(&crashed, ActorError::Unavailable { detail, .. } if detail.contains("panicked")),
        "{crashed}"
    );
    let id = fragile.id();
    let mut view = driver.state_changes();
    let dead = view.wait_for(|s| s.actors.get(&id).is_some_and(|a| a.state.name() == "DEAD"));
    // `is_ok` drops the view's read guard before the view is read again.
    let recorded =
        tokio::time::timeout(Duration::from_secs(30), async { dead.await.is_ok() }).await;
    let record = driver.read_state(|s| s.actors.get(&id).cloned());
    assert!(
        matches!(recorded, Ok(true)),
        "the actor's second panic was not recorded as its death; its record: {record:?}"
    );
    let record = record.expect("the actor's record");
    assert_eq!(record.restarts, 1, "{record:?}");
    let died = fragile.call(Get).await.unwrap_err();
    assert!(
        matches!(&died, ActorError::Died { reason, .. } if reason.contains("panicked")),
        "{died}"
    );
    assert_eq!(bystander.call(Add(1)).await.unwrap(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_actors_restart_elsewhere_within_their_budget() {
    // The head offers no CPU, so both actors land on the first worker.
    let mut cluster = TestCluster::head(&["--num-cpus", "0"]);
    let doomed = cluster.join(&["--num-cpus", "2"]);
    let driver = cluster.driver().await;
    let resilient = driver
        .spawn::<Counter>(1)
        .num_cpus(1.0)
        .max_restarts(1)
        .max_task_retries(1)
        .await
        .unwrap();
    let fragile = driver.spawn::<Counter>(2).num_cpus(1.0).await.unwrap();
    let first_home = resilient.call(WhereAreYou).await.unwrap();
    assert_eq!(fragile.call(WhereAreYou).await.unwrap(), first_home);
    resilient.call(Add(10)).await.unwrap();

    cluster.join(&["--num-cpus", "2"]);
    cluster.nodes[doomed].kill();

    // Within the lease TTL (1 s) plus a round, it answers from the new node
    // with its state rebuilt from the constructor argument. A call that was
    // on the dead node's connection is retried (max_task_retries = 1).
    assert_eq!(resilient.call(Get).await.unwrap(), 1);
    assert_ne!(resilient.call(WhereAreYou).await.unwrap(), first_home);
    // Without retries, a call caught on the dying connection fails as
    // "unavailable" (it may have run); the next one says the actor died.
    let mut died = fragile.call(Get).await.unwrap_err();
    if matches!(died, ActorError::Unavailable { .. }) {
        died = fragile.call(Get).await.unwrap_err();
    }
    assert!(
        matches!(&died, ActorError::Died { reason, .. }
            if reason.contains("died") && reason.contains("max_restarts is 0")),
        "{died}"
    );
    let id = resilient.id();
    wait_until(
        "the restarted actor is ALIVE",
        Duration::from_secs(10),
        || {
            let driver = driver.clone();
            async move {
                driver.state().await.is_ok_and(|s| {
                    let record = &s.actors[&id];
                    (record.state.name(), record.restarts) == ("ALIVE", 1)
                })
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_gcs_leader_s_node_does_not_fail_calls_and_spawns_resume() {
    // Three GCS members; the node whose member leads hosts nothing. Which
    // node leads is read from the nodes, not assumed: the actors then ask
    // for a resource that every node but the leader's has.
    let mut cluster =
        TestCluster::head(&["--num-cpus", "2", "--resources", &away_from_others(0, 3)]);
    for i in 1..3 {
        let resources = away_from_others(i, 3);
        cluster.join(&["--gcs", "--num-cpus", "2", "--resources", &resources]);
    }
    let (leader, term) = cluster.gcs_leader(Duration::from_secs(30)).await;
    let via = (0..3).find(|&i| i != leader).unwrap();
    let driver = cluster.driver_via(via, 3).await;
    let away = format!("away_from_{leader}");
    let mut counters = Vec::new();
    for i in 0..4 {
        counters.push(
            driver
                .spawn::<Counter>(i)
                .num_cpus(0.5)
                .resource(&away, 1.0)
                .await
                .unwrap(),
        );
    }
    for c in &counters {
        c.call(Get).await.unwrap();
    }

    // Callers hammer the actors while the leader's node is SIGKILLed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for c in counters.clone() {
        let (stop, calls) = (stop.clone(), calls.clone());
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                c.call(Add(1)).await?;
                calls.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, ActorError>(())
        }));
    }
    wait_until("the callers are under way", Duration::from_secs(10), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::Relaxed) >= 100 }
    })
    .await;
    // The node killed is the one that leads at that moment.
    let term_now = cluster.kill_leader(leader, term, "the actors").await;
    let before = calls.load(Ordering::Relaxed);
    // A new controller takes over: a spawn works again.
    let fresh = driver
        .spawn::<Counter>(1000)
        .num_cpus(0.5)
        .resource(&away, 1.0)
        .await
        .unwrap();
    assert_eq!(fresh.call(Get).await.unwrap(), 1000);
    // The survivors lead in a later term.
    cluster.assert_new_leader(leader, term_now).await;
    wait_until(
        "calls went on after the kill",
        Duration::from_secs(10),
        || {
            let calls = calls.clone();
            async move { calls.load(Ordering::Relaxed) > before + 100 }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller
            .await
            .unwrap()
            .expect("no call failed during the failover");
    }
    wait_until(
        "the killed leader's lease expired",
        Duration::from_secs(15),
        || {
            let driver = driver.clone();
            async move { driver.state().await.is_ok_and(|s| s.nodes.len() == 2) }
        },
    )
    .await;
}
