//! GCS membership across real node processes: concurrent `--join --gcs`
//! nodes both become voters, and a member restarted on an empty data
//! directory at its old address takes its old id's place instead of
//! leaving a ghost voter behind; nodes started before members were added
//! reach the cluster through the new members once the old ones are gone.

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

/// The GCS member addresses node `addr` tells joiners and drivers: its
/// GCS client's current list for a node without a member.
async fn members_known_by(addr: &str) -> Vec<String> {
    let rpc = RpcClient::new(RpcConfig::new(ClusterToken::new(TOKEN).unwrap()));
    let reply: troupe::NodeInfoReply = rpc
        .channel(addr)
        .call_with::<troupe::NodeInfoProtocol>(
            &(),
            troupe::core::rpc::CallOptions::timeout(Duration::from_secs(5)),
        )
        .await
        .expect("the node answers");
    reply.gcs_members
}

/// The GCS node among `among` that leads, with its term, once exactly one
/// of them says it leads.
async fn leader_among(cluster: &TestCluster, among: &[usize]) -> (usize, u64) {
    let mut found = None;
    wait_until("one of the members leads", Duration::from_secs(30), || {
        let leaders: Vec<(usize, u64)> = among
            .iter()
            .filter_map(|&i| match cluster.nodes[i].gcs_role() {
                Some((true, term)) => Some((i, term)),
                _ => None,
            })
            .collect();
        found = match leaders[..] {
            [one] => Some(one),
            _ => None,
        };
        async move { leaders.len() == 1 }
    })
    .await;
    found.unwrap()
}

/// Each plain node's registration: (key, lease, create revision).
async fn registrations(gcs: &GcsClient, nodes: &[&str]) -> Vec<(String, Option<u64>, u64)> {
    let read = gcs
        .range(
            troupe::gcs::RangeRequest::prefix(b"/troupe/nodes/".to_vec(), None),
            true,
        )
        .await
        .expect("read the node table");
    read.kvs
        .into_iter()
        .filter(|kv| nodes.iter().any(|n| kv.key.ends_with(n.as_bytes())))
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.lease.map(|l| l.0),
                kv.create_revision,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reach_gcs_members_added_after_they_started_once_the_old_ones_are_gone() {
    use troupe_examples::actors::{Add, Counter, Get, WhereAreYou};

    // GCS members A (head), B, C; two plain nodes that host the actors.
    let mut cluster = TestCluster::head_of(crate::support::ACTORS_BIN, &["--num-cpus", "1"]);
    for _ in 1..3 {
        cluster.join(&["--gcs", "--num-cpus", "1"]);
    }
    let plain_resources = r#"{"plain": 100}"#;
    let plain: Vec<usize> = (0..2)
        .map(|_| cluster.join(&["--num-cpus", "2", "--resources", plain_resources]))
        .collect();
    let driver = cluster.driver_via(plain[0], 5).await;
    let mut counters = Vec::new();
    for start in [10, 20] {
        let c = driver
            .spawn::<Counter>(start)
            .num_cpus(0.5)
            .resource("plain", 1.0)
            .await
            .unwrap();
        c.call(Add(1)).await.unwrap();
        counters.push(c);
    }
    let mut hosts = Vec::new();
    for c in &counters {
        hosts.push(c.call(WhereAreYou).await.unwrap());
    }

    // D and E join as GCS members after every node started.
    let d = cluster.join(&["--gcs", "--num-cpus", "1"]);
    let e = cluster.join(&["--gcs", "--num-cpus", "1"]);
    let (d_addr, e_addr) = (cluster.nodes[d].addr.clone(), cluster.nodes[e].addr.clone());
    let admin = client(&[&cluster.nodes[0].addr]);
    wait_until("5 voters", Duration::from_secs(30), || {
        let admin = admin.clone();
        async move {
            membership(&admin)
                .await
                .is_some_and(|m| m.voters.len() == 5)
        }
    })
    .await;
    // The plain nodes and the driver learn them without a restart.
    for &i in &plain {
        let addr = cluster.nodes[i].addr.clone();
        let want = [d_addr.clone(), e_addr.clone()];
        wait_until(
            &format!("node {i} knows D and E"),
            Duration::from_secs(30),
            || {
                let (addr, want) = (addr.clone(), want.clone());
                async move {
                    let known = members_known_by(&addr).await;
                    want.iter().all(|a| known.contains(a))
                }
            },
        )
        .await;
    }
    wait_until("the driver knows D and E", Duration::from_secs(30), || {
        let known = driver.gcs().members();
        let ok = known.contains(&d_addr) && known.contains(&e_addr);
        async move { ok }
    })
    .await;

    // Remove the old followers B and C and kill their nodes; then kill the
    // old leader's node: only D and E are left to reach.
    let old = [0, 1, 2];
    let (old_leader, term) = leader_among(&cluster, &old).await;
    let voters = membership(&admin).await.unwrap().voters;
    for i in old.into_iter().filter(|&i| i != old_leader) {
        let id = voters
            .iter()
            .find(|(_, a)| *a == cluster.nodes[i].addr)
            .map(|(id, _)| *id)
            .unwrap();
        admin
            .admin(AdminRequest::Remove { id })
            .await
            .expect("remove an old member");
        cluster.nodes[i].kill();
    }
    let plain_addrs: Vec<String> = plain
        .iter()
        .map(|&i| cluster.nodes[i].addr.clone())
        .collect();
    let state = driver.state().await.unwrap();
    let plain_ids: Vec<String> = state
        .nodes
        .values()
        .filter(|n| plain_addrs.contains(&n.addr))
        .map(|n| n.id.to_string())
        .collect();
    assert!(
        hosts.iter().all(|h| plain_ids.contains(&h.to_string())),
        "the actors run on the plain nodes"
    );
    let plain_ids: Vec<&str> = plain_ids.iter().map(String::as_str).collect();
    let before = registrations(driver.gcs(), &plain_ids).await;
    assert_eq!(
        before.len(),
        2,
        "both plain nodes are registered: {before:?}"
    );
    cluster.nodes[old_leader].kill();

    let (new_leader, new_term) = leader_among(&cluster, &[d, e]).await;
    assert!(
        new_term > term,
        "node {new_leader} leads in term {new_term}"
    );
    eprintln!("killed node {old_leader} (term {term}); node {new_leader} leads in term {new_term}");
    // A spawn needs the new controller and the GCS through D or E.
    let fresh = driver
        .spawn::<Counter>(1000)
        .num_cpus(0.5)
        .resource("plain", 1.0)
        .await
        .expect("a spawn after the old members are gone");
    assert_eq!(fresh.call(Get).await.unwrap(), 1000);
    // The actors were never restarted (their nodes kept their leases):
    // each still counts from where it was.
    for (c, start) in counters.iter().zip([10, 20]) {
        assert_eq!(c.call(Add(1)).await.unwrap(), start + 2);
    }
    let after = registrations(driver.gcs(), &plain_ids).await;
    assert_eq!(
        after, before,
        "the plain nodes kept their registrations and leases"
    );
}
