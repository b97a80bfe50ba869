//! A minority cut off from the majority cannot commit; after the network
//! heals it converges. Members run in this process and dial each other
//! through one fault-injecting proxy per directed link.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use troupe_chaos::fault_proxy::LinkTable;
use troupe_core::rpc::{CallOptions, RpcServer, ServerHandle};
use troupe_gcs::api::{AdminRequest, Kv, KvReply, KvRequest};
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::member::{GcsConfig, GcsMember};
use troupe_gcs::{Command, Operation, RangeRequest};

use crate::support::{rpc, wait_until};

struct Proxied {
    members: Vec<GcsMember>,
    addrs: Vec<String>,
    links: LinkTable,
    _servers: Vec<ServerHandle>,
    _tmp: tempfile::TempDir,
}

impl Proxied {
    async fn start(n: usize) -> Proxied {
        let tmp = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let upstreams: Vec<SocketAddr> =
            listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let links = LinkTable::start(&upstreams).await.unwrap();
        let mut members = Vec::new();
        let mut servers = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut config = GcsConfig::new(id, tmp.path().join(format!("m{id}")));
            config.dial_overrides = (0..n)
                .filter(|&j| j != i)
                .map(|j| (j as u64 + 1, links.addr(i, j).to_string()))
                .collect::<HashMap<_, _>>();
            let member = GcsMember::open(config, rpc()).await.unwrap();
            servers.push(
                member
                    .register(RpcServer::new(crate::support::rpc_config()))
                    .serve(listener),
            );
            members.push(member);
        }
        let addrs: Vec<String> = upstreams.iter().map(|a| a.to_string()).collect();
        members[0].bootstrap(&addrs[0]).await.unwrap();
        let cluster = Proxied {
            members,
            addrs,
            links,
            _servers: servers,
            _tmp: tmp,
        };
        let client = cluster.client(&[0]);
        for i in 1..n {
            let id = i as u64 + 1;
            client
                .admin(AdminRequest::AddLearner {
                    id,
                    addr: cluster.addrs[i].clone(),
                })
                .await
                .unwrap();
            client.admin(AdminRequest::Promote { id }).await.unwrap();
        }
        cluster
    }

    fn client(&self, members: &[usize]) -> GcsClient {
        let addrs = members.iter().map(|&i| self.addrs[i].clone()).collect();
        GcsClient::new(rpc(), ClientConfig::new(addrs)).unwrap()
    }

    fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| m.is_leader())
    }
}

/// The store's revision, read through the leader.
async fn linearizable_revision(client: &GcsClient) -> u64 {
    client
        .range(RangeRequest::key(b"none".to_vec()), true)
        .await
        .unwrap()
        .revision
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_minority_cannot_commit_and_converges_after_healing() {
    let cluster = Proxied::start(3).await;
    let everyone = cluster.client(&[0, 1, 2]);
    for i in 0..10 {
        everyone.put(format!("before/{i}"), "x").await.unwrap();
    }
    let old = cluster.leader().expect("a leader after setup");
    cluster.links.isolate(old);
    let majority: Vec<usize> = (0..3).filter(|&i| i != old).collect();

    // The majority elects a leader of its own and keeps committing.
    wait_until(
        "the majority elects a new leader",
        Duration::from_secs(20),
        || {
            let m = &cluster.members;
            let elected = majority.iter().any(|&i| m[i].is_leader());
            async move { elected }
        },
    )
    .await;
    let majority_client = cluster.client(&majority);
    for i in 0..10 {
        majority_client
            .put(format!("during/{i}"), "x")
            .await
            .unwrap();
    }

    // The cut-off member cannot commit, whatever it believes.
    let direct = rpc()
        .channel(&cluster.addrs[old])
        .call_with::<Kv>(
            &KvRequest::Write(Command::new(Operation::put("minority", "lost"))),
            CallOptions::timeout(Duration::from_secs(3)),
        )
        .await;
    assert!(
        !matches!(direct, Ok(Ok(KvReply::Written(_)))),
        "an isolated member acknowledged a write: {direct:?}"
    );

    // Heal: the old leader rejoins, drops what it could not commit, and
    // converges on the majority's log.
    cluster.links.heal();
    let revision = linearizable_revision(&majority_client).await;
    let rejoined = &cluster.members[old];
    wait_until("the old leader converges", Duration::from_secs(30), || {
        let during = rejoined
            .reader()
            .range(&RangeRequest::prefix(b"during/".to_vec(), None))
            .map_or(0, |r| r.kvs.len());
        let caught_up = rejoined.reader().revision().unwrap_or(0) >= revision;
        async move { during == 10 && caught_up }
    })
    .await;
    assert!(
        everyone.get("minority").await.unwrap().is_none(),
        "the write the minority could not commit must not appear"
    );
    assert_eq!(
        everyone
            .range(RangeRequest::prefix(b"before/".to_vec(), None), true)
            .await
            .unwrap()
            .kvs
            .len(),
        10
    );
}

/// PreVote: a follower cut off from the others keeps asking whether it
/// could win an election, never wins, so never raises its term; when the
/// network heals it follows the leader it had, which was never unseated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_follower_neither_raises_its_term_nor_unseats_the_leader() {
    let cluster = Proxied::start(3).await;
    let everyone = cluster.client(&[0, 1, 2]);
    everyone.put("before", "x").await.unwrap();
    let leader = cluster.leader().expect("a leader after setup");
    let follower = (0..3).find(|&i| i != leader).unwrap();
    let term = |i: usize| cluster.members[i].raft().metrics().borrow().current_term;
    let leader_term = term(leader);
    let (asked_before, _) = cluster.members[follower].election_rounds();

    cluster.links.isolate(follower);
    // It asks again and again (each round one election timeout apart) and
    // loses every round.
    wait_until(
        "the cut-off follower asks for pre-votes 10 times",
        Duration::from_secs(30),
        || {
            let (asked, _) = cluster.members[follower].election_rounds();
            async move { asked >= asked_before + 10 }
        },
    )
    .await;
    let (_, won) = cluster.members[follower].election_rounds();
    assert_eq!(won, 0, "a member that reaches nobody won a pre-vote");
    assert_eq!(
        term(follower),
        leader_term,
        "the cut-off follower raised its term"
    );
    // Meanwhile the others keep committing under the same leader.
    let majority: Vec<usize> = (0..3).filter(|&i| i != follower).collect();
    let majority_client = cluster.client(&majority);
    majority_client.put("during", "x").await.unwrap();

    cluster.links.heal();
    let revision = linearizable_revision(&majority_client).await;
    let rejoined = &cluster.members[follower];
    wait_until("the follower catches up", Duration::from_secs(30), || {
        let caught_up = rejoined.reader().revision().unwrap_or(0) >= revision;
        async move { caught_up }
    })
    .await;
    assert_eq!(
        cluster.leader(),
        Some(leader),
        "the leader was unseated by a returning member"
    );
    for i in 0..3 {
        assert_eq!(term(i), leader_term, "member {i} is in another term");
    }
}
