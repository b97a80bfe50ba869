//! Spawn, call, look up and kill, on one node and across three.

use std::collections::BTreeSet;
use std::time::Duration;

use troupe::core::rpc::diag::{ByteBuf, Echo};
use troupe::core::rpc::{ClusterToken, RpcClient, RpcConfig};
use troupe::prelude::*;
use troupe_examples::actors::{
    Add, AddTo, Counter, Get, Hog, ParameterServer, Pull, ServerConfig, Shard, Train, Trainer,
    WhereAreYou,
};

use crate::support::{wait_until, TestCluster, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_call_lookup_and_kill_on_one_node() {
    let cluster = TestCluster::head(&["--num-cpus", "2"]);
    let driver = cluster.driver().await;
    let counter = driver
        .spawn::<Counter>(40)
        .name("answer")
        .num_cpus(0.5)
        .await
        .unwrap();
    assert_eq!(counter.call(Add(2)).await.unwrap(), 42);

    // Another process finds it by name and sees the same state.
    let other = cluster.driver().await;
    let found = other.get_actor::<Counter>("answer").await.unwrap();
    assert_eq!(found.id(), counter.id());
    assert_eq!(found.call(Get).await.unwrap(), 42);
    let taken = driver.spawn::<Counter>(0).name("answer").await.unwrap_err();
    assert!(matches!(taken, ActorError::NameTaken { .. }), "{taken}");

    let actors = driver.actors().await.unwrap();
    assert_eq!(actors.len(), 1);
    assert_eq!(actors[0].state.name(), "ALIVE");

    driver.kill(counter.id()).await.unwrap();
    let died = found.call(Get).await.unwrap_err();
    assert!(
        matches!(&died, ActorError::Died { reason, .. } if reason.contains("killed by a user")),
        "{died}"
    );
    let gone = other.get_actor::<Counter>("answer").await.unwrap_err();
    assert!(matches!(gone, ActorError::NotFound { .. }), "{gone}");
    // The name is free again.
    let again = driver.spawn::<Counter>(1).name("answer").await.unwrap();
    assert_eq!(again.call(Get).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_actors_on_every_node_of_three() {
    let mut cluster = TestCluster::head(&["--num-cpus", "1"]);
    cluster.join(&["--num-cpus", "1"]);
    cluster.join(&["--num-cpus", "1"]);
    let driver = cluster.driver().await;

    // One CPU each: three counters land on three nodes.
    let mut counters = Vec::new();
    for i in 0..3 {
        counters.push(driver.spawn::<Counter>(i).num_cpus(1.0).await.unwrap());
    }
    let mut nodes = BTreeSet::new();
    for (i, counter) in counters.iter().enumerate() {
        assert_eq!(counter.call(Add(10)).await.unwrap(), i as i64 + 10);
        nodes.insert(counter.call(WhereAreYou).await.unwrap());
    }
    assert_eq!(nodes.len(), 3, "spread over the three nodes: {nodes:?}");

    // An actor calls an actor on another node.
    let relayed = counters[0]
        .call(AddTo {
            counter: counters[1].id(),
            amount: 5,
        })
        .await
        .unwrap();
    assert_eq!(relayed, Ok(16));
    assert_eq!(counters[1].call(Get).await.unwrap(), 16);

    // Actors calling actors on other nodes: trainers pull from and push to
    // a named parameter server.
    let server = driver
        .spawn::<ParameterServer>(ServerConfig {
            dimensions: 2,
            learning_rate: 0.1,
        })
        .name("params")
        .await
        .unwrap();
    let samples: Vec<(Vec<f64>, f64)> = (0..16)
        .map(|i| {
            let x = vec![(i % 4) as f64 - 1.5, (i / 4) as f64 - 1.5];
            let y = 2.0 * x[0] - x[1];
            (x, y)
        })
        .collect();
    let trainer = driver.spawn::<Trainer>(Shard { samples }).await.unwrap();
    let loss = trainer
        .call(Train {
            server: "params".into(),
            steps: 100,
        })
        .await
        .unwrap()
        .unwrap();
    assert!(loss < 1e-3, "the toy model fits: loss {loss}");
    let weights = server.call(Pull).await.unwrap();
    assert!(
        (weights[0] - 2.0).abs() < 0.05 && (weights[1] + 1.0).abs() < 0.05,
        "{weights:?}"
    );

    // A driver connected through another node sees the same actors, and
    // kills one hosted elsewhere.
    let via_third = cluster.driver_via(2, 3).await;
    let handle = via_third.handle::<Counter>(counters[0].id());
    assert_eq!(handle.call(Get).await.unwrap(), 10);
    via_third.kill(counters[2].id()).await.unwrap();
    let died = counters[2].call(Get).await.unwrap_err();
    assert!(matches!(died, ActorError::Died { .. }), "{died}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fractional_gpus_fit_three_and_the_fourth_waits_for_a_gpu_node() {
    let mut cluster = TestCluster::head(&["--num-cpus", "1", "--num-gpus", "1"]);
    let driver = cluster.driver().await;
    let mut gpu_actors = Vec::new();
    for i in 0..4 {
        gpu_actors.push(driver.spawn::<Counter>(i).num_gpus(0.3).await.unwrap());
    }
    for actor in &gpu_actors[..3] {
        actor.call(Get).await.unwrap();
    }
    let fourth = gpu_actors[3].id();
    let state = driver.state().await.unwrap();
    let record = &state.actors[&fourth];
    assert_eq!(record.state.name(), "PENDING");
    let reason = record.pending_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("GPU"),
        "the reason names the resource: {reason}"
    );
    let status = troupe::status_text(&state);
    assert!(status.contains("GPU 0.9/1"), "{status}");
    let pending = gpu_actors[3]
        .call_timeout(Get, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(pending, ActorError::Pending { .. }), "{pending}");

    cluster.join(&["--num-cpus", "1", "--num-gpus", "1"]);
    assert_eq!(gpu_actors[3].call(Get).await.unwrap(), 3);
    wait_until("the fourth is ALIVE", Duration::from_secs(10), || {
        let driver = driver.clone();
        async move {
            driver
                .state()
                .await
                .is_ok_and(|s| s.actors[&fourth].state.name() == "ALIVE")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_hogging_its_thread_does_not_stall_the_node() {
    let cluster = TestCluster::head(&["--num-cpus", "1"]);
    let driver = cluster.driver().await;
    let hog = driver.spawn::<Counter>(0).await.unwrap();
    hog.call(Get).await.unwrap();
    let busy = tokio::spawn({
        let hog = hog.clone();
        async move { hog.call(Hog(3000)).await }
    });
    // Wait until the hog's handler runs (its arbiter is then blocked): a
    // call sent after it gets no answer in time (unavailable: timed out),
    // as it waits behind it. Before the hog's message arrives, such a call
    // answers at once.
    wait_until(
        "the hog's handler blocks its actor",
        Duration::from_secs(10),
        || {
            let hog = hog.clone();
            async move {
                matches!(
                    hog.call_timeout(Get, Duration::from_millis(250)).await,
                    Err(ActorError::Unavailable { .. })
                )
            }
        },
    )
    .await;
    let rpc = RpcClient::new(RpcConfig::new(ClusterToken::new(TOKEN).unwrap()));
    let ping = ByteBuf::from(b"still there?".to_vec());
    let channel = rpc.channel(&cluster.nodes[0].addr);
    for _ in 0..5 {
        assert_eq!(channel.call::<Echo>(&ping).await.unwrap(), ping);
        // The control store on the same node answers too, and spawns work.
        driver.state().await.unwrap();
    }
    let other = driver.spawn::<Counter>(1).await.unwrap();
    assert!(
        !busy.is_finished(),
        "the node answered only after the hog finished"
    );
    busy.await.unwrap().unwrap();
    assert_eq!(other.call(Get).await.unwrap(), 1);
}
