//! Writes, reads, failover, exactly-once retries, learners and snapshots.

use std::time::Duration;

use troupe_core::rpc::CallOptions;
use troupe_gcs::api::{AdminRequest, Kv, KvReply, KvRequest};
use troupe_gcs::{Command, CommandError, Operation, RangeRequest};

use crate::support::{wait_until, Cluster};

async fn write_read_and_survive_leader_loss(n: usize) {
    let mut cluster = Cluster::start(n).await;
    let client = cluster.client();
    for i in 0..20 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    for i in 0..20 {
        let kv = client.get(format!("k{i}")).await.unwrap().expect("written");
        assert_eq!(kv.value, format!("v{i}").into_bytes());
    }
    if n == 1 {
        return; // One member has no one to fail over to.
    }
    let leader = cluster.wait_for_leader().await;
    cluster.kill(leader).await;
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    // The same client finds the new leader by itself.
    for i in 20..40 {
        client.put(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let all = client
        .range(RangeRequest::prefix(b"k".to_vec(), None), true)
        .await
        .unwrap();
    assert_eq!(
        all.kvs.len(),
        40,
        "every acknowledged write survives the failover"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_writes_and_reads() {
    write_read_and_survive_leader_loss(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_losing_the_leader() {
    write_read_and_survive_leader_loss(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_survive_losing_the_leader() {
    write_read_and_survive_leader_loss(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_is_applied_once() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_for_leader().await;
    let ch = cluster.rpc.channel(&cluster.nodes[leader].addr);
    let send = |command: Command| {
        let ch = ch.clone();
        async move {
            match ch
                .call_with::<Kv>(
                    &KvRequest::Write(command),
                    CallOptions::timeout(Duration::from_secs(10)),
                )
                .await
                .unwrap()
                .unwrap()
            {
                KvReply::Written(r) => r,
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    let first = send(Command::with_session(77, 1, Operation::put("k", "v1"))).await;
    // The same write again (as after a lost answer) gets the same answer
    // and changes nothing.
    let again = send(Command::with_session(77, 1, Operation::put("k", "v1"))).await;
    assert_eq!(first, again);
    // Even a different operation under a used sequence number is not
    // applied: the session answers for it.
    let reused = send(Command::with_session(77, 1, Operation::put("k", "other"))).await;
    assert_eq!(reused, first);
    let client = cluster.client();
    let kv = client.get("k").await.unwrap().unwrap();
    assert_eq!((kv.value.as_slice(), kv.version), (&b"v1"[..], 1));
    // Sequence numbers move forward only.
    let next = send(Command::with_session(77, 2, Operation::put("k", "v2"))).await;
    assert!(next.outcome.is_ok() && next.revision == first.revision + 1);
    let stale = send(Command::with_session(77, 1, Operation::put("k", "v0"))).await;
    assert!(matches!(
        stale.outcome,
        Err(CommandError::StaleSequence { .. })
    ));
}

fn snapshot_often(config: &mut troupe_gcs::member::GcsConfig) {
    config.snapshot_every = 20;
    config.keep_logs_after_snapshot = 0;
    config.purge_batch = 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_added_after_the_log_is_purged_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(1, snapshot_often).await;
    let client = cluster.client();
    for i in 0..100 {
        client.put(format!("k{i:03}"), vec![i as u8]).await.unwrap();
    }
    let first = cluster.nodes[0].member.clone().unwrap();
    wait_until("the leader purged its log", Duration::from_secs(20), || {
        let purged = first
            .raft()
            .metrics()
            .borrow()
            .purged
            .map_or(0, |p| p.index);
        async move { purged > 50 }
    })
    .await;

    let i = cluster.add_node(2).await;
    let (id, addr) = (cluster.nodes[i].id, cluster.nodes[i].addr.clone());
    client
        .admin(AdminRequest::AddLearner { id, addr })
        .await
        .unwrap();
    let learner = cluster.nodes[i].member.clone().unwrap();
    wait_until("the learner has every key", Duration::from_secs(20), || {
        let n = learner
            .reader()
            .range(&RangeRequest::prefix(b"k".to_vec(), None))
            .map_or(0, |r| r.kvs.len());
        async move { n == 100 }
    })
    .await;
    assert!(
        learner.raft().metrics().borrow().snapshot.is_some(),
        "the learner got its state from a snapshot (the log it needed was purged)"
    );

    // Promoted, it serves as a voter; a removed id is never accepted again.
    client.admin(AdminRequest::Promote { id }).await.unwrap();
    client.admin(AdminRequest::Remove { id }).await.unwrap();
    let err = client
        .admin(AdminRequest::AddLearner {
            id,
            addr: cluster.nodes[i].addr.clone(),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("never reused"), "{err}");
    cluster.kill(i).await;
}
