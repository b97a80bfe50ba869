//! SIGKILL members under load; restart them from their data directories.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use troupe_gcs::RangeRequest;

use crate::support::{wait_until, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_members_lose_no_acknowledged_write_and_catch_up_after_restart() {
    let mut cluster = Cluster::start(3).await;
    let client = cluster.client();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("load/{i:06}");
                // A write that errors may or may not have happened; only
                // acknowledged ones are checked.
                if client
                    .put(key.clone(), i.to_le_bytes().to_vec())
                    .await
                    .is_ok()
                {
                    acked.lock().unwrap().push(key);
                }
                i += 1;
            }
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    let progress = |n: usize| {
        let acked = acked.clone();
        async move { acked.lock().unwrap().len() >= n }
    };

    wait_until("writes flow", Duration::from_secs(20), || progress(50)).await;
    // Kill the leader mid-load, then a follower, restarting each.
    for round in 0..2 {
        let leader = cluster.leader().await;
        let victim = if round == 0 { leader } else { (leader + 1) % 3 };
        cluster.members[victim].kill();
        let before = acked_count();
        wait_until(
            "writes continue without the killed member",
            Duration::from_secs(20),
            || progress(before + 50),
        )
        .await;
        cluster.members[victim].restart();
        let before = acked_count();
        wait_until(
            "writes continue after the restart",
            Duration::from_secs(20),
            || progress(before + 50),
        )
        .await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();

    let acked = acked.lock().unwrap().clone();
    let stored = client
        .range(RangeRequest::prefix(b"load/".to_vec(), None), true)
        .await
        .unwrap();
    let stored: std::collections::HashSet<Vec<u8>> =
        stored.kvs.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|k| !stored.contains(k.as_bytes()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );

    // Every member, restarted ones included, catches up to the same revision.
    let revision = client
        .range(RangeRequest::key(b"none".to_vec()), true)
        .await
        .unwrap()
        .revision;
    for m in &cluster.members {
        let rpc = cluster.rpc.clone();
        wait_until(
            &format!("member {} catches up", m.id),
            Duration::from_secs(20),
            || {
                let rpc = rpc.clone();
                async move { m.status(&rpc).await.is_some_and(|s| s.revision >= revision) }
            },
        )
        .await;
    }
}
