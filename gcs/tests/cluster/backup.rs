//! Backups: a snapshot taken from a running cluster (larger than one RPC
//! message) restored as a new cluster, which serves every key and passes
//! the state on to a member that joins it.

use std::time::Duration;

use troupe_core::rpc::{RpcConfig, RpcServer};
use troupe_gcs::api::AdminRequest;
use troupe_gcs::backup;
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::member::{GcsConfig, GcsMember};

use crate::support::{rpc_config, wait_until, Cluster};

/// 40 values of 64 KiB: with their history, a snapshot over 5 MiB, read
/// through a connection whose message limit is 2 MiB.
const BIG: usize = 40;
const BIG_VALUE: usize = 64 << 10;

fn small_messages() -> RpcConfig {
    let mut config = rpc_config();
    config.max_message_bytes = MESSAGE_LIMIT;
    config
}

const MESSAGE_LIMIT: usize = 2 << 20;

fn patient(config: &mut GcsConfig) {
    config.heartbeat = Duration::from_millis(200);
    config.election_timeout = (Duration::from_millis(2000), Duration::from_millis(4000));
}

// Building a large snapshot keeps a runtime thread busy for a while: these
// members share one process, so give them more than two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_restores_as_a_new_cluster_that_others_join() {
    // 1 MiB entries on a loaded machine: slower heartbeats and elections
    // keep the leader in place.
    let cluster = Cluster::start_with(3, patient).await;
    let client = cluster.client();
    // The backup is read through connections whose message limit is
    // smaller than the snapshot.
    let small_client = GcsClient::new(
        troupe_core::rpc::RpcClient::new(small_messages()),
        ClientConfig::new(cluster.addrs()),
    )
    .unwrap();
    // The snapshot is larger than one RPC message.
    for i in 0..BIG {
        client
            .put(format!("big/{i:03}"), vec![i as u8; BIG_VALUE])
            .await
            .unwrap();
    }
    for i in 0..50 {
        client
            .put(format!("small/{i:02}"), format!("v{i}"))
            .await
            .unwrap();
    }
    let fetched = backup::fetch(&small_client, Duration::from_secs(120))
        .await
        .unwrap();
    assert!(
        fetched.body.len() > 2 * MESSAGE_LIMIT,
        "{} bytes",
        fetched.body.len()
    );
    let leader = cluster.wait_for_leader().await;
    assert_eq!(
        fetched.member, cluster.nodes[leader].id,
        "served by the leader"
    );

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("gcs.backup");
    backup::save(&file, &fetched.body).unwrap();
    let payload = backup::load(&file).unwrap();
    let dir = tmp.path().join("restored");
    let restored = backup::restore(payload, &dir, 7, "127.0.0.1:1")
        .await
        .unwrap();
    assert_eq!(restored.revision, fetched.revision);
    assert!(restored.keys >= BIG + 50, "{restored:?}");

    // A new member on the restored directory leads a one-member cluster at
    // its real address, with every key.
    let rpc = troupe_core::rpc::RpcClient::new(rpc_config());
    let start = |id: u64, dir: std::path::PathBuf| {
        let rpc = rpc.clone();
        async move {
            let member = GcsMember::open(
                {
                    let mut c = GcsConfig::new(id, dir);
                    patient(&mut c);
                    c
                },
                rpc,
            )
            .await
            .unwrap();
            let server = member
                .register(RpcServer::new(rpc_config()))
                .bind("127.0.0.1:0")
                .await
                .unwrap();
            (member, server)
        }
    };
    let (first, first_server) = start(7, dir).await;
    let addr = first_server.local_addr().to_string();
    first.bootstrap(&addr).await.unwrap();
    let status = first.status();
    assert_eq!(status.membership.voters, vec![(7, addr.clone())]);
    assert!(
        status.term > restored.term && restored.term >= 1,
        "terms go on from the old cluster's: {} after {}",
        status.term,
        restored.term
    );
    assert!(status.membership.learners.is_empty());
    let restored_client =
        GcsClient::new(rpc.clone(), ClientConfig::new(vec![addr.clone()])).unwrap();
    // Key by key: a range of everything would exceed the message limit.
    for i in 0..BIG {
        let kv = restored_client.get(format!("big/{i:03}")).await.unwrap();
        assert_eq!(kv.expect("restored").value, vec![i as u8; BIG_VALUE]);
    }
    let small = restored_client.get("small/07").await.unwrap().unwrap();
    assert_eq!(small.value, b"v7");
    restored_client.put("after", "restore").await.unwrap();

    // A second member joins and receives the state as a snapshot.
    let joiner_dir = tmp.path().join("joiner");
    let (joiner, joiner_server) = start(8, joiner_dir).await;
    let joiner_addr = joiner_server.local_addr().to_string();
    restored_client
        .admin(AdminRequest::AddLearner {
            id: 8,
            addr: joiner_addr,
        })
        .await
        .unwrap();
    // The learner's membership entry may still be committing: retry.
    wait_until("the joiner is a voter", Duration::from_secs(30), || {
        let client = restored_client.clone();
        async move {
            let r = client.admin(AdminRequest::Promote { id: 8 }).await;
            r.is_ok()
        }
    })
    .await;
    wait_until(
        "the joiner holds every key",
        Duration::from_secs(30),
        || {
            let found = joiner.reader().get(b"after").ok().flatten().is_some()
                && joiner.reader().get(b"big/039").ok().flatten().is_some();
            async move { found }
        },
    )
    .await;
    assert_eq!(
        joiner.reader().get(b"big/003").unwrap().unwrap().value,
        vec![3u8; BIG_VALUE]
    );
    for (member, server) in [(joiner, joiner_server), (first, first_server)] {
        server.shutdown().await;
        member.shutdown().await.unwrap();
    }
}
