//! Watches that scale (issue #17): a change to one actor wakes only the
//! processes that use it. Twenty node processes; actors on one node are
//! restarted many times; the nodes that neither host nor call them
//! receive no more watch events for it, while the owning node, the
//! controller's node and the calling node do, and calls from another
//! node go on.

use troupe::prelude::*;
use troupe_examples::actors::{Add, AddTo, Counter, Crash, Get, WhereAreYou};

use crate::support::{sample, TestCluster};

/// Node processes in the cluster (the head, the owner, the caller and
/// bystanders).
const NODES: usize = 20;
/// Actors on the owning node.
const ACTORS: usize = 4;
/// Restarts of each.
const ROUNDS: usize = 8;

/// `troupe_gcs_watch_events_total` and `troupe_gcs_watches` of every node.
fn watch_counts(cluster: &TestCluster) -> Vec<(u64, u64)> {
    cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let page = node
                .metrics()
                .unwrap_or_else(|| panic!("node {i}'s /metrics does not answer"));
            let events = sample(&page, "troupe_gcs_watch_events_total")
                .unwrap_or_else(|| panic!("node {i}'s /metrics has no watch event count"));
            let watches = sample(&page, "troupe_gcs_watches").unwrap_or(0.0);
            (events as u64, watches as u64)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_an_actor_wakes_only_the_processes_that_use_it() {
    // Node 0: the head (GCS, controllers, the full view). Node 1 hosts the
    // actors (resource `home`), node 2 calls them (resource `caller`);
    // the others are bystanders.
    let mut cluster = TestCluster::head(&["--num-cpus", "0"]);
    let owner = cluster.join(&["--num-cpus", "0", "--resources", r#"{"home": 100}"#]);
    let caller_node = cluster.join(&["--num-cpus", "0", "--resources", r#"{"caller": 100}"#]);
    while cluster.nodes.len() < NODES {
        cluster.join(&["--num-cpus", "1"]);
    }
    let driver = cluster.driver().await;
    let state = driver.state().await.unwrap();
    let node_id = |i: usize| {
        state
            .nodes
            .values()
            .find(|n| n.addr == cluster.nodes[i].addr)
            .map(|n| n.id)
            .unwrap_or_else(|| panic!("node {i} is not registered"))
    };
    let (owner_id, caller_id) = (node_id(owner), node_id(caller_node));

    let mut targets = Vec::new();
    for i in 0..ACTORS {
        let target = driver
            .spawn::<Counter>(i as i64 * 1000)
            .resource("home", 1.0)
            .max_restarts(ROUNDS as i64 + 5)
            .await
            .unwrap();
        assert_eq!(target.call(WhereAreYou).await.unwrap(), owner_id);
        targets.push(target);
    }
    let caller = driver
        .spawn::<Counter>(0)
        .resource("caller", 1.0)
        .await
        .unwrap();
    assert_eq!(caller.call(WhereAreYou).await.unwrap(), caller_id);
    // The caller's node looks each target up once and follows it from
    // then on.
    for (i, target) in targets.iter().enumerate() {
        let added = caller
            .call(AddTo {
                counter: target.id(),
                amount: 1,
            })
            .await
            .unwrap();
        assert_eq!(added, Ok(i as i64 * 1000 + 1));
    }
    let before = watch_counts(&cluster);

    // Every target panics ROUNDS times: each restart rewrites its record,
    // its assignment and its node's report.
    for _ in 0..ROUNDS {
        for target in &targets {
            let crashed = target.call(Crash).await.unwrap_err();
            assert!(
                matches!(&crashed, ActorError::Unavailable { detail, .. } if detail.contains("panicked")),
                "{crashed}"
            );
        }
    }
    let restarts = (ACTORS * ROUNDS) as u64;
    // Restarted from their constructor arguments, on their node; and the
    // calling node's calls reach the new instances.
    for (i, target) in targets.iter().enumerate() {
        assert_eq!(target.call(Get).await.unwrap(), i as i64 * 1000);
        assert_eq!(target.call(WhereAreYou).await.unwrap(), owner_id);
        let added = caller
            .call(AddTo {
                counter: target.id(),
                amount: 5,
            })
            .await
            .unwrap();
        assert_eq!(added, Ok(i as i64 * 1000 + 5));
        assert_eq!(target.call(Add(0)).await.unwrap(), i as i64 * 1000 + 5);
    }
    let records = driver.state().await.unwrap();
    for target in &targets {
        let record = &records.actors[&target.id()];
        assert_eq!(record.restarts as usize, ROUNDS, "{record:?}");
    }
    let after = watch_counts(&cluster);

    let grown: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|((b, _), (a, _))| a - b)
        .collect();
    let watches: Vec<u64> = after.iter().map(|(_, w)| *w).collect();
    eprintln!(
        "{restarts} restarts; watch events received per node during them: {grown:?}; watches per node: {watches:?}"
    );
    // The controller's node (full view) and the owning node (its
    // assignments) heard of every restart; so did the calling node (it
    // follows the actors it calls).
    assert!(grown[0] >= 2 * restarts, "head: {grown:?}");
    assert!(grown[owner] >= restarts, "owner: {grown:?}");
    assert!(grown[caller_node] >= restarts, "caller: {grown:?}");
    // The bystanders follow only the node table, the controllers' terms,
    // their own assignments and serve's records: the restarts reached none
    // of them (a node re-registering after a lapsed lease on a loaded
    // machine would reach all, hence a bound far below one event per
    // restart rather than zero).
    for i in (0..NODES).filter(|i| ![0, owner, caller_node].contains(i)) {
        assert!(
            grown[i] < restarts / 4,
            "bystander node {i} received {} watch events during {restarts} restarts of actors it \
             neither hosts nor calls: {grown:?}",
            grown[i]
        );
        assert!(
            watches[i] <= 4,
            "bystander node {i} follows {} selections: {watches:?}",
            watches[i]
        );
    }
    assert_eq!(
        watches[0], 1,
        "the head follows all of /troupe/ with one watch"
    );
    for node in &mut cluster.nodes {
        node.kill();
    }
}
