//! Watches: every event in order exactly once across failures; compaction.

use std::time::Duration;

use troupe_gcs::api::GcsError;
use troupe_gcs::client::GcsClientError;
use troupe_gcs::{EventKind, KeySelector};

use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_every_event_once_in_order_across_failovers() {
    let mut cluster = Cluster::start(5).await;
    let client = cluster.client();
    let mut watch = client
        .watch(KeySelector::Prefix(b"w/".to_vec()), 0)
        .await
        .unwrap();
    let total = 120;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0..total {
                client
                    .put(format!("w/{i:04}"), format!("{i}"))
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    let mut last_revision = 0;
    while seen.len() < total {
        if seen.len() == total / 3 {
            // The watch is served by the first member: kill it.
            cluster.kill(0).await;
        }
        if seen.len() == 2 * total / 3 {
            // And then whoever leads now.
            let leader = cluster.wait_for_leader().await;
            cluster.kill(leader).await;
        }
        let events = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .expect("the watch keeps delivering")
            .unwrap();
        assert!(events.revision > last_revision, "revisions go up");
        last_revision = events.revision;
        for e in events.events {
            assert_eq!(e.kind, EventKind::Put);
            seen.push(String::from_utf8(e.kv.key).unwrap());
        }
    }
    writer.await.unwrap();
    let expected: Vec<String> = (0..total).map(|i| format!("w/{i:04}")).collect();
    assert_eq!(seen, expected, "every put once, in order");
}

fn short_history(config: &mut troupe_gcs::member::GcsConfig) {
    config.store.history_retention = 10;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_from_a_compacted_revision_is_a_clear_error() {
    let cluster = Cluster::start_with(1, short_history).await;
    let client = cluster.client();
    for i in 0..50 {
        client.put(format!("c/{i}"), "x").await.unwrap();
    }
    let mut watch = client
        .watch(KeySelector::Prefix(b"c/".to_vec()), 1)
        .await
        .unwrap();
    match watch.next().await {
        Err(GcsClientError::Rejected(GcsError::Compacted {
            requested,
            compacted_at,
        })) => {
            assert_eq!(requested, 1);
            assert!(compacted_at >= 40, "compacted at {compacted_at}");
        }
        other => panic!("expected a Compacted error, got {other:?}"),
    }
}
