//! GCS membership across real node processes: concurrent `--join --gcs`
//! nodes both become voters, and a member restarted on an empty data
//! directory at its old address takes its old id's place instead of
//! leaving a ghost voter behind.

use std::collections::BTreeSet;
use std::time::Duration;

use troupe::core::rpc::{ClusterToken, RpcClient, RpcConfig};
use troupe::gcs::api::{AdminRequest, Membership};
use troupe::gcs::client::{ClientConfig, GcsClient};

use crate::support::{wait_until, NodeProcess, TestCluster, SERVE_BIN, TOKEN};

fn client(addrs: &[&str]) -> GcsClient {
    let rpc = RpcClient::new(RpcConfig::new(ClusterToken::new(TOKEN).unwrap()));
    let mut config = ClientConfig::new(addrs.iter().map(|a| a.to_string()).collect());
    config.request_timeout = Duration::from_secs(10);
    GcsClient::new(rpc, config).unwrap()
}

async fn membership(client: &GcsClient) -> Option<Membership> {
    match client.admin(AdminRequest::Status).await {
        Ok(troupe::gcs::api::AdminReply::Status(s)) => Some(s.membership),
        _ => None,
    }
}

fn addrs_of(list: &[(u64, String)]) -> BTreeSet<String> {
    list.iter().map(|(_, a)| a.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_succeed_and_a_wiped_member_replaces_its_old_id() {
    let mut cluster = TestCluster::head_of(SERVE_BIN, &["--num-cpus", "1"]);
    let head = cluster.nodes[0].addr.clone();

    // Two GCS nodes started at the same moment (as the README's sequence
    // does): both must join.
    let starts: Vec<_> = (1..=2)
        .map(|i| {
            let dir = cluster.tmp.path().join(format!("n{i}"));
            let head = head.clone();
            std::thread::spawn(move || {
                NodeProcess::start_bin(SERVE_BIN, &dir, &["--join", &head, "--gcs"])
            })
        })
        .collect();
    for start in starts {
        cluster
            .nodes
            .push(start.join().expect("a joining node started"));
    }
    let gcs = client(&[&head]);
    let expected: BTreeSet<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    wait_until("3 voters, one per node", Duration::from_secs(30), || {
        let gcs = gcs.clone();
        let expected = expected.clone();
        async move {
            membership(&gcs)
                .await
                .is_some_and(|m| m.voters.len() == 3 && addrs_of(&m.voters) == expected)
        }
    })
    .await;
    let before = membership(&gcs).await.unwrap();
    let wiped_addr = cluster.nodes[2].addr.clone();
    let old_id = before
        .voters
        .iter()
        .find(|(_, a)| *a == wiped_addr)
        .map(|(id, _)| *id)
        .unwrap();

    // Node 2 loses its disk and comes back at the same address.
    cluster.nodes[2].kill();
    let dir = cluster.tmp.path().join("n2");
    std::fs::remove_dir_all(&dir).unwrap();
    cluster.nodes[2] =
        NodeProcess::start_bin_at(SERVE_BIN, &dir, &wiped_addr, &["--join", &head, "--gcs"]);
    wait_until(
        "the wiped member is replaced in place: 3 voters, the old id gone",
        Duration::from_secs(30),
        || {
            let gcs = gcs.clone();
            let expected = expected.clone();
            async move {
                membership(&gcs).await.is_some_and(|m| {
                    m.voters.len() == 3
                        && addrs_of(&m.voters) == expected
                        && m.voters.iter().all(|(id, _)| *id != old_id)
                        && m.learners.is_empty()
                })
            }
        },
    )
    .await;

    // With the ghost gone, the two original members are a majority: losing
    // the replaced one again leaves a store that commits.
    cluster.nodes[2].kill();
    let survivors = client(&[&head, &cluster.nodes[1].addr]);
    survivors
        .put("after-the-replacement", "x")
        .await
        .expect("two of three voters commit");
    assert!(survivors
        .get("after-the-replacement")
        .await
        .unwrap()
        .is_some());
}
