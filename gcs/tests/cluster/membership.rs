//! A client follows membership changes without a restart: members added
//! after it started are learned from the leader in the background, and
//! once its start members are removed and the old leader dies it keeps a
//! lease alive, writes and watches through the new members only.

use std::collections::BTreeSet;
use std::time::Duration;

use troupe_gcs::api::AdminRequest;
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::KeySelector;

use crate::support::{wait_until, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reaches_members_added_after_it_started_when_the_old_ones_are_gone() {
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.wait_for_leader().await;
    let start_addrs = cluster.addrs();
    let mut config = ClientConfig::new(start_addrs.clone());
    config.membership_refresh = Duration::from_millis(200);
    let client = GcsClient::new(cluster.rpc.clone(), config).unwrap();
    client.put("before", "1").await.unwrap();
    let lease = client.grant_lease(Duration::from_secs(1)).await.unwrap();
    let mut watch = client
        .watch(KeySelector::Prefix(b"after".to_vec()), 0)
        .await
        .unwrap();

    // D and E join after the client started.
    let d = cluster.add_node(4).await;
    cluster.join(d).await;
    let e = cluster.add_node(5).await;
    cluster.join(e).await;
    let (d_addr, e_addr) = (cluster.nodes[d].addr.clone(), cluster.nodes[e].addr.clone());
    wait_until(
        "the client learned D and E",
        Duration::from_secs(10),
        || {
            let members = client.members();
            let want = [d_addr.clone(), e_addr.clone()];
            async move { want.iter().all(|a| members.contains(a)) }
        },
    )
    .await;
    assert_eq!(&client.members()[..3], &start_addrs[..], "start order kept");

    // The two old followers are removed and stopped; the lease is kept
    // alive throughout.
    let old_followers: Vec<usize> = (0..3).filter(|&i| i != old_leader).collect();
    for &i in &old_followers {
        let id = cluster.nodes[i].id;
        client.admin(AdminRequest::Remove { id }).await.unwrap();
        client.keep_alive(lease).await.unwrap();
    }
    let survivors: BTreeSet<String> = [
        cluster.nodes[old_leader].addr.clone(),
        d_addr.clone(),
        e_addr.clone(),
    ]
    .into();
    wait_until(
        "the client dropped the removed members",
        Duration::from_secs(10),
        || {
            let members: BTreeSet<String> = client.members().into_iter().collect();
            let lease_ok = client.keep_alive(lease);
            let survivors = survivors.clone();
            async move {
                lease_ok.await.expect("the lease is kept alive");
                members == survivors
            }
        },
    )
    .await;
    for &i in &old_followers {
        cluster.kill(i).await;
    }
    // Then the old leader dies: only D and E are left to reach.
    cluster.kill(old_leader).await;
    wait_until(
        "a write went through D and E",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            async move {
                client
                    .keep_alive(lease)
                    .await
                    .expect("the lease survives the failover");
                client.put("after/0", "x").await.is_ok()
            }
        },
    )
    .await;
    for i in 1..6 {
        client.keep_alive(lease).await.unwrap();
        client.put(format!("after/{i}"), "x").await.unwrap();
    }
    let leader = cluster.wait_for_leader().await;
    assert!(leader == d || leader == e, "a new member leads: {leader}");
    // The watch opened on an old member moved to a new one: it sees every
    // write made after the failover, in order.
    let want: BTreeSet<Vec<u8>> = (0..6).map(|i| format!("after/{i}").into_bytes()).collect();
    let mut seen = BTreeSet::new();
    while seen != want {
        let events = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("the watch delivers")
            .expect("the watch follows the new members");
        seen.extend(events.events.into_iter().map(|e| e.kv.key));
    }
}
