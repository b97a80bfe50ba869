//! Leases: expiry deletes attached keys, keep-alives prevent it, and a
//! leader failover does not expire a lease that is being kept alive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use troupe_gcs::client::GcsClient;
use troupe_gcs::{LeaseId, Operation, PutRequest};

use crate::support::{wait_until, Cluster};

async fn put_with_lease(client: &GcsClient, key: &str, lease: LeaseId) {
    let response = client
        .write(Operation::Put(PutRequest::new(key, "x").with_lease(lease)))
        .await
        .unwrap();
    assert!(response.outcome.is_ok(), "{response:?}");
}

/// Keeps `lease` alive every `every` until `stop` is set.
fn keep_alive(
    client: GcsClient,
    lease: LeaseId,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            // Errors during a failover are expected; the next try finds the
            // new leader.
            let _ = client.keep_alive(lease).await;
            tokio::time::sleep(every).await;
        }
    })
}

async fn exists(client: &GcsClient, key: &str) -> bool {
    client.get(key).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_expire_unless_kept_alive_even_across_a_failover() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    // Keep-alives every 200 ms: a wide margin even on a loaded machine.
    let ttl = Duration::from_secs(3);

    let kept = client.grant_lease(ttl).await.unwrap();
    put_with_lease(&client, "kept", kept).await;
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = keep_alive(
        client.clone(),
        kept,
        Duration::from_millis(200),
        stop.clone(),
    );

    // A lease nobody keeps alive expires, and its key goes with it.
    let dropped = client.grant_lease(ttl).await.unwrap();
    put_with_lease(&client, "dropped", dropped).await;
    wait_until(
        "the unattended lease's key is deleted",
        Duration::from_secs(20),
        || {
            let c = client.clone();
            async move { !exists(&c, "dropped").await }
        },
    )
    .await;
    assert!(
        exists(&client, "kept").await,
        "a kept-alive lease must not expire"
    );

    // Fail over: the new leader starts every lease with a full TTL.
    let leader = cluster.wait_for_leader().await;
    cluster.kill(leader).await;
    cluster.wait_for_leader().await;
    // Prove the new leader's expiry runs: an unattended lease granted now
    // expires while the kept one survives.
    let probe = client.grant_lease(ttl).await.unwrap();
    put_with_lease(&client, "probe", probe).await;
    wait_until(
        "the new leader expires an unattended lease",
        Duration::from_secs(20),
        || {
            let c = client.clone();
            async move { !exists(&c, "probe").await }
        },
    )
    .await;
    assert!(
        exists(&client, "kept").await,
        "the failover expired a kept-alive lease"
    );

    // Once nobody keeps it alive, it expires too.
    stop.store(true, Ordering::SeqCst);
    keeper.await.unwrap();
    wait_until(
        "the formerly kept lease expires",
        Duration::from_secs(20),
        || {
            let c = client.clone();
            async move { !exists(&c, "kept").await }
        },
    )
    .await;
    let err = client.keep_alive(kept).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}
