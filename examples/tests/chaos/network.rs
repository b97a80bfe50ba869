//! A partition is a real cut between two nodes' namespaces, and the heal
//! restores it.

use std::process::Command;
use std::time::Duration;

use troupe::chaos::cluster::{Cluster, StartRole};
use troupe::chaos::scenario::{ClusterSpec, NetworkMode};

use crate::{healthy, ip_object_exists, namespaces_or_skip, SERVE_BIN};

const TOKEN: &str = "chaos-network-test";

/// `troupe-chain ping ADDR` from inside node `from`'s namespace.
fn ping(cluster: &Cluster, from: usize, to: usize) -> bool {
    let ns = cluster.network().unwrap();
    Command::new("ip")
        .args(["netns", "exec", &ns.slot(from).netns, SERVE_BIN, "ping"])
        .arg(&cluster.addrs(to).rpc)
        .args(["--token", TOKEN, "--count", "1", "--timeout", "1"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_blocks_traffic_between_namespaces_and_the_heal_restores_it() {
    if !namespaces_or_skip("partition") {
        return;
    }
    let spec = ClusterSpec {
        binary: Some(SERVE_BIN.into()),
        nodes: 2,
        gcs_members: 1,
        network: NetworkMode::Namespaces,
        ..ClusterSpec::default()
    };
    let logs = tempfile::tempdir().unwrap();
    let mut unavailable = Vec::new();
    let cluster = Cluster::prepare(
        &spec,
        TOKEN,
        logs.path(),
        tokio::time::Instant::now(),
        &mut unavailable,
    )
    .unwrap();
    cluster.start(0, StartRole::Head).await.unwrap();
    let head = cluster.addrs(0).rpc.clone();
    cluster
        .start(
            1,
            StartRole::Join {
                addr: head,
                gcs: false,
            },
        )
        .await
        .unwrap();
    let ns = cluster.network().unwrap();
    assert!(
        ping(&cluster, 0, 1) && ping(&cluster, 1, 0),
        "linked before the cut"
    );

    ns.cut(0, 1).unwrap();
    ns.cut(1, 0).unwrap();
    assert!(!ping(&cluster, 0, 1), "0 still reaches 1 through the cut");
    assert!(!ping(&cluster, 1, 0), "1 still reaches 0 through the cut");
    // The harness's own side is untouched by a split between nodes.
    assert!(
        healthy(&cluster.addrs(1).http, Duration::from_secs(2)).await,
        "the harness reaches node 1's proxy"
    );

    ns.restore(0, 1).unwrap();
    ns.restore(1, 0).unwrap();
    assert!(
        ping(&cluster, 0, 1) && ping(&cluster, 1, 0),
        "linked after the heal"
    );

    // Cutting the harness off a node: its proxy stops answering.
    ns.cut(troupe::chaos::cluster::network::CLIENTS, 1).unwrap();
    assert!(
        !healthy(&cluster.addrs(1).http, Duration::from_secs(1)).await,
        "the harness still reaches a node it was cut off from"
    );
    ns.restore(troupe::chaos::cluster::network::CLIENTS, 1)
        .unwrap();
    assert!(
        healthy(&cluster.addrs(1).http, Duration::from_secs(2)).await,
        "the harness reaches the node after the heal"
    );
    let bridge = ns.bridge().to_owned();
    let netns = ns.slot(0).netns.clone();
    drop(ns);
    cluster.teardown();
    assert!(!ip_object_exists(&bridge), "the bridge {bridge} is left");
    assert!(!ip_object_exists(&netns), "the namespace {netns} is left");
}
