//! The leader batches concurrent writes into one log entry: each write still
//! gets its own revision and answer, and entries of batched writes reach a
//! lagging follower even when a window of them exceeds one RPC message.

use std::time::Duration;

use troupe_core::rpc::RpcConfig;
use troupe_gcs::member::GcsConfig;
use troupe_gcs::{Outcome, RangeRequest};

use crate::support::{rpc_config, wait_until, Cluster};

fn last_log_index(cluster: &Cluster, i: usize) -> u64 {
    cluster
        .status(i)
        .and_then(|s| s.last_log_index)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries_and_keep_their_own_revisions() {
    let cluster = Cluster::start(3).await;
    let client = cluster.client();
    let leader = cluster.wait_for_leader().await;
    let base_revision = client
        .range(RangeRequest::prefix(b"b/".to_vec(), None), true)
        .await
        .unwrap()
        .revision;
    let entries_before = last_log_index(&cluster, leader);

    const WRITES: usize = 200;
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i, client.put(format!("b/{i}"), vec![7; 100]).await) })
        })
        .collect();
    let mut revisions = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        let response = result.unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        assert!(
            matches!(response.outcome, Ok(Outcome::Put(_))),
            "{response:?}"
        );
        // The revision a write reports is the one its key carries.
        let kv = client
            .get(format!("b/{i}"))
            .await
            .unwrap()
            .expect("written");
        assert_eq!(kv.mod_revision, response.revision, "write {i}");
        revisions.push(response.revision);
    }
    revisions.sort_unstable();
    let expected: Vec<u64> = (base_revision + 1..=base_revision + WRITES as u64).collect();
    assert_eq!(revisions, expected, "one revision per write, none shared");
    let entries = last_log_index(&cluster, leader) - entries_before;
    assert!(
        entries < WRITES as u64,
        "{WRITES} concurrent writes took {entries} log entries: none were batched"
    );
}

fn small_batches(config: &mut GcsConfig) {
    config.batch.max_bytes = 16 * 1024;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_catches_up_when_its_entries_exceed_one_message() {
    // Members accept messages of at most 64 KiB; each entry holds up to
    // 16 KiB of writes, so the default window of 64 entries does not fit.
    let rpc = RpcConfig {
        max_message_bytes: 64 * 1024,
        ..rpc_config()
    };
    let mut cluster = Cluster::start_with_rpc(3, small_batches, rpc).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    cluster.kill(follower).await;

    let client = cluster.client();
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..20 {
                    client
                        .put(format!("lag/{t}/{i}"), vec![1; 1024])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let leader = cluster.wait_for_leader().await;
    let target = last_log_index(&cluster, leader);

    cluster.restart(follower).await;
    wait_until(
        "the restarted follower applies everything the leader has",
        Duration::from_secs(30),
        || {
            let applied = cluster
                .status(follower)
                .and_then(|s| s.last_applied_index)
                .unwrap_or(0);
            async move { applied >= target }
        },
    )
    .await;
    let reader = cluster.nodes[follower].member.as_ref().unwrap().reader();
    let read = reader
        .range(&RangeRequest::prefix(b"lag/".to_vec(), None))
        .unwrap();
    assert_eq!(read.kvs.len(), 32 * 20, "the follower holds every write");
}

fn snapshot_by_size_only(config: &mut GcsConfig) {
    config.snapshot_every = 1_000_000;
    config.snapshot_log_bytes = 64 * 1024;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_snapshotted_once_it_holds_enough_bytes() {
    let cluster = Cluster::start_with(1, snapshot_by_size_only).await;
    let client = cluster.client();
    // About 100 KiB of log in far fewer entries than `snapshot_every`.
    for i in 0..100 {
        client.put(format!("s/{i}"), vec![3; 1024]).await.unwrap();
    }
    let raft = cluster.nodes[0].member.as_ref().unwrap().raft().clone();
    wait_until(
        "a snapshot is taken because of the log's size",
        Duration::from_secs(20),
        || {
            let snapshot = raft.metrics().borrow().snapshot;
            async move { snapshot.is_some_and(|s| s.index > 0) }
        },
    )
    .await;
}
