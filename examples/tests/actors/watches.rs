//! Watches that scale (issue #17): a change to one actor wakes only the
//! processes that use it. Twenty node processes, three of them GCS
//! members; actors on one node are restarted many times; the nodes that
//! neither host nor call them receive no watch events for it, while the
//! owning node, the GCS members' nodes (full views, for the controllers)
//! and the calling node do, and calls from another node go on. Then the
//! GCS leader's node is killed: the calling node's watches of the actors
//! resume on another member, and the next restarts still reach it.

use std::time::Duration;

use troupe::prelude::*;
use troupe_examples::actors::{Add, AddTo, Counter, Crash, Get, WhereAreYou};

use crate::support::{sample, wait_until, TestCluster};

/// Node processes in the cluster (three GCS members, the owner, the
/// caller and bystanders).
const NODES: usize = 20;
/// The GCS members' nodes: 0 (the head), 1 and 2.
const GCS: [usize; 3] = [0, 1, 2];
/// Actors on the owning node.
const ACTORS: usize = 4;
/// Restarts of each.
const ROUNDS: usize = 8;

/// `troupe_gcs_watch_events_total` and `troupe_gcs_watches` of every node
/// (and only the GCS members' nodes export the member's gauges).
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
            assert_eq!(
                sample(&page, "troupe_gcs_term").is_some(),
                GCS.contains(&i),
                "node {i} exports a GCS member's gauges only if it runs a member:\n{page}"
            );
            (events as u64, watches as u64)
        })
        .collect()
}

/// `troupe_gcs_watch_events_total` of node `i`.
fn watch_counts_of(cluster: &TestCluster, i: usize) -> u64 {
    let page = cluster.nodes[i]
        .metrics()
        .unwrap_or_else(|| panic!("node {i}'s /metrics does not answer"));
    sample(&page, "troupe_gcs_watch_events_total").unwrap_or(0.0) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_an_actor_wakes_only_the_processes_that_use_it() {
    // Nodes 0-2: GCS members (controllers where the leader is; full
    // views). Node 3 hosts the actors (resource `home`), node 4 calls them
    // (resource `caller`); the others are bystanders.
    let mut cluster = TestCluster::head(&["--num-cpus", "0"]);
    for _ in 1..GCS.len() {
        cluster.join(&["--gcs", "--num-cpus", "0"]);
    }
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
    // The GCS members' nodes (full views) and the owning node (its
    // assignments) heard of every restart; so did the calling node (it
    // follows the actors it calls).
    for g in GCS {
        assert!(grown[g] >= 2 * restarts, "GCS node {g}: {grown:?}");
        assert_eq!(
            watches[g], 1,
            "a GCS member's node follows all of /troupe/ with one watch"
        );
    }
    assert!(grown[owner] >= restarts, "owner: {grown:?}");
    assert!(grown[caller_node] >= restarts, "caller: {grown:?}");
    // The bystanders follow only the node table, the controllers' terms,
    // their own assignments and serve's records: the restarts reached none
    // of them (a node re-registering after a lapsed lease on a loaded
    // machine would reach all, hence a bound far below one event per
    // restart rather than zero).
    for i in (0..NODES).filter(|i| !GCS.contains(i) && ![owner, caller_node].contains(i)) {
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

    // SIGKILL the GCS leader's node: the others elect a new leader, the
    // controllers move, and every watch resumes on a surviving member.
    let leader_of = |cluster: &TestCluster| {
        GCS.into_iter()
            .filter(|&g| cluster.nodes[g].is_running())
            .find(|&g| cluster.nodes[g].gcs_role().is_some_and(|(leads, _)| leads))
    };
    let mut leader = None;
    wait_until("a GCS member leads", Duration::from_secs(30), || {
        leader = leader_of(&cluster);
        std::future::ready(leader.is_some())
    })
    .await;
    let leader = leader.unwrap();
    cluster.nodes[leader].kill();
    wait_until("another GCS member leads", Duration::from_secs(30), || {
        std::future::ready(leader_of(&cluster).is_some_and(|g| g != leader))
    })
    .await;
    // Its node record goes with its lease (an event every view gets);
    // measure from then on.
    let killed = cluster.nodes[leader].addr.clone();
    wait_until(
        "the killed node leaves the node table",
        Duration::from_secs(30),
        || {
            let (driver, killed) = (driver.clone(), killed.clone());
            async move {
                driver
                    .state()
                    .await
                    .is_ok_and(|s| s.nodes.values().all(|n| n.addr != killed))
            }
        },
    )
    .await;
    let before = watch_counts_of(&cluster, caller_node);
    for _ in 0..2 {
        for target in &targets {
            let crashed = target.call(Crash).await.unwrap_err();
            assert!(
                matches!(&crashed, ActorError::Unavailable { detail, .. } if detail.contains("panicked")),
                "{crashed}"
            );
        }
    }
    for (i, target) in targets.iter().enumerate() {
        let added = caller
            .call(AddTo {
                counter: target.id(),
                amount: 7,
            })
            .await
            .unwrap();
        assert_eq!(added, Ok(i as i64 * 1000 + 7));
    }
    let after = watch_counts_of(&cluster, caller_node);
    eprintln!(
        "after the failover, the calling node received {} watch events",
        after - before
    );
    assert!(
        after - before >= 2 * ACTORS as u64,
        "the calling node missed some of the {} restarts after the failover: {before} → {after} \
         watch events",
        2 * ACTORS
    );
    for node in &mut cluster.nodes {
        node.kill();
    }
}
