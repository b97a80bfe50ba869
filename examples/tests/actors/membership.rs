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

/// The node's join information as `worker.info` answers it (the worker
/// keeps its protocol crate-private; this mirrors its wire form).
struct NodeInfo;

impl troupe::core::rpc::Protocol for NodeInfo {
    const NAME: &'static str = "worker.info";
    type Request = ();
    type Response = NodeInfoReply;
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NodeInfoReply {
    node: troupe::core::id::NodeId,
    gcs_members: Vec<String>,
}

/// The GCS member addresses node `addr` currently uses (on a node without
/// a member: its client's list).
async fn members_known_by(addr: &str) -> Option<BTreeSet<String>> {
    let rpc = RpcClient::new(RpcConfig::new(ClusterToken::new(TOKEN).unwrap()));
    let options = troupe::core::rpc::CallOptions::timeout(Duration::from_secs(2));
    let reply = rpc
        .channel(addr)
        .call_with::<NodeInfo>(&(), options)
        .await
        .ok()?;
    Some(reply.gcs_members.into_iter().collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_clients_follow_gcs_members_added_and_removed_without_restarting() {
    // A (head), B, C run the GCS; N runs none and learns A, B, C when it
    // joins; so does a plain client started with their addresses.
    let mut cluster = TestCluster::head(&["--num-cpus", "1"]);
    for _ in 0..2 {
        cluster.join(&["--gcs", "--num-cpus", "1"]);
    }
    let n = cluster.join(&["--num-cpus", "2", "--resources", "{\"only_n\": 10}"]);
    let old: Vec<String> = (0..3).map(|i| cluster.nodes[i].addr.clone()).collect();
    let old_set: BTreeSet<String> = old.iter().cloned().collect();
    let admin = client(&[&old[0]]);
    wait_until("A, B and C are voters", Duration::from_secs(30), || {
        let admin = admin.clone();
        let old_set = old_set.clone();
        async move {
            membership(&admin)
                .await
                .is_some_and(|m| addrs_of(&m.voters) == old_set)
        }
    })
    .await;
    assert_eq!(
        members_known_by(&cluster.nodes[n].addr).await,
        Some(old_set.clone())
    );
    let plain = client(&[&old[0], &old[1], &old[2]]);
    plain
        .put("before", "1")
        .await
        .expect("a write through A, B, C");

    // D and E join the GCS; then A, B and C leave it one at a time (a
    // quorum of the voters left at every step), and only then die.
    let d = cluster.join(&["--gcs", "--num-cpus", "1"]);
    let e = cluster.join(&["--gcs", "--num-cpus", "1"]);
    let new_set: BTreeSet<String> = [d, e]
        .iter()
        .map(|&i| cluster.nodes[i].addr.clone())
        .collect();
    let all: BTreeSet<String> = old_set.union(&new_set).cloned().collect();
    wait_until("five voters", Duration::from_secs(30), || {
        let admin = admin.clone();
        let all = all.clone();
        async move {
            membership(&admin)
                .await
                .is_some_and(|m| addrs_of(&m.voters) == all && m.learners.is_empty())
        }
    })
    .await;
    let ids = membership(&admin).await.unwrap().voters;
    let admin = client(&[&cluster.nodes[d].addr, &cluster.nodes[e].addr]);
    for addr in &old {
        let id = ids.iter().find(|(_, a)| a == addr).unwrap().0;
        wait_until(
            &format!("{addr} is removed"),
            Duration::from_secs(30),
            || {
                let admin = admin.clone();
                async move {
                    // A removal that lost its answer to a leader change is
                    // asked again; a repeated one may be refused.
                    let _ = admin.admin(AdminRequest::Remove { id }).await;
                    membership(&admin)
                        .await
                        .is_some_and(|m| m.voters.iter().chain(&m.learners).all(|(v, _)| *v != id))
                }
            },
        )
        .await;
    }
    // The node and the plain client learn it without a restart.
    let n_addr = cluster.nodes[n].addr.clone();
    wait_until("N lists exactly D and E", Duration::from_secs(30), || {
        let n_addr = n_addr.clone();
        let new_set = new_set.clone();
        async move { members_known_by(&n_addr).await == Some(new_set) }
    })
    .await;
    wait_until(
        "the plain client lists exactly D and E",
        Duration::from_secs(30),
        || {
            let known: BTreeSet<String> = plain.members().into_iter().collect();
            let expected = new_set.clone();
            async move { known == expected }
        },
    )
    .await;
    for i in 0..3 {
        cluster.nodes[i].kill();
    }

    // The plain client writes and reads through D and E.
    plain
        .put("after", "2")
        .await
        .expect("a write through D or E");
    let read = plain.get("after").await.expect("a read through D or E");
    assert_eq!(read.map(|kv| kv.value), Some(b"2".to_vec()));
    assert!(plain.get("before").await.unwrap().is_some());

    // N keeps its lease and follows its assignments through D and E: an
    // actor only N can host is placed there, started and called.
    let token = ClusterToken::new(TOKEN).unwrap();
    let driver = troupe::Cluster::connect(&cluster.nodes[d].addr, token)
        .await
        .expect("connect a driver through D");
    let counter = driver
        .spawn::<troupe_examples::actors::Counter>(40)
        .resource("only_n", 1.0)
        .await
        .expect("an actor placed on N after A, B and C are gone");
    assert_eq!(
        counter.call(troupe_examples::actors::Add(2)).await.unwrap(),
        42
    );
}
