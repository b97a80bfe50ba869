//! A cluster of in-process members on 127.0.0.1:0 in a temp dir.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;
use troupe_core::rpc::{ClusterToken, RpcClient, RpcConfig, RpcServer, ServerHandle};
use troupe_gcs::api::{AdminRequest, MemberStatus};
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::member::{GcsConfig, GcsMember};

pub fn rpc_config() -> RpcConfig {
    RpcConfig::new(ClusterToken::new("gcs-test").unwrap())
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub member: Option<GcsMember>,
    server: Option<ServerHandle>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub rpc: RpcClient,
    tweak: fn(&mut GcsConfig),
    rpc_config: RpcConfig,
    dial_overrides: HashMap<u64, HashMap<u64, String>>,
    _tmp: TempDir,
}

fn default_tweak(_: &mut GcsConfig) {}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, default_tweak).await
    }

    /// Starts `n` members (ids 1..=n): the first bootstraps, the others join
    /// as learners and are promoted to voters.
    pub async fn start_with(n: usize, tweak: fn(&mut GcsConfig)) -> Cluster {
        Cluster::start_with_rpc(n, tweak, rpc_config()).await
    }

    /// [`Cluster::start_with`], members and clients using `rpc` (message
    /// limits and the like).
    pub async fn start_with_rpc(n: usize, tweak: fn(&mut GcsConfig), rpc: RpcConfig) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            rpc: RpcClient::new(rpc.clone()),
            tweak,
            rpc_config: rpc,
            dial_overrides: HashMap::new(),
            _tmp: tmp,
        };
        for i in 0..n {
            cluster.add_node(i as u64 + 1).await;
        }
        let first = cluster.nodes[0].member.clone().unwrap();
        first.bootstrap(&cluster.nodes[0].addr).await.unwrap();
        cluster.wait_for_leader().await;
        for i in 1..n {
            cluster.join(i).await;
        }
        cluster
    }

    /// Creates and serves a member that is not yet part of the cluster.
    pub async fn add_node(&mut self, id: u64) -> usize {
        let dir = self._tmp.path().join(format!("member-{id}"));
        self.nodes.push(Node {
            id,
            addr: "127.0.0.1:0".into(),
            dir,
            member: None,
            server: None,
        });
        let i = self.nodes.len() - 1;
        self.restart(i).await;
        i
    }

    /// Adds node `i` as a learner, then promotes it.
    pub async fn join(&self, i: usize) {
        let client = self.client();
        let (id, addr) = (self.nodes[i].id, self.nodes[i].addr.clone());
        client
            .admin(AdminRequest::AddLearner { id, addr })
            .await
            .unwrap();
        client.admin(AdminRequest::Promote { id }).await.unwrap();
    }

    fn config(&self, i: usize) -> GcsConfig {
        let node = &self.nodes[i];
        let mut config = GcsConfig::new(node.id, &node.dir);
        (self.tweak)(&mut config);
        if let Some(o) = self.dial_overrides.get(&node.id) {
            config.dial_overrides = o.clone();
        }
        config
    }

    /// (Re)starts node `i` on its data directory and address.
    pub async fn restart(&mut self, i: usize) {
        let config = self.config(i);
        // sled may hold its file lock a moment after a member stops.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let member = loop {
            match GcsMember::open(config.clone(), self.rpc.clone()).await {
                Ok(m) => break m,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("member {} did not reopen: {e}", self.nodes[i].id),
            }
        };
        let server = member.register(RpcServer::new(self.rpc_config.clone()));
        let addr = self.nodes[i].addr.clone();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let server = loop {
            let listener = tokio::net::TcpListener::bind(&addr).await;
            match listener {
                Ok(l) => break server.serve(l),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot bind {addr}: {e}"),
            }
        };
        let node = &mut self.nodes[i];
        node.addr = server.local_addr().to_string();
        node.member = Some(member);
        node.server = Some(server);
    }

    /// Stops node `i`: its Raft node stops and its connections close.
    pub async fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(server) = node.server.take() {
            server.shutdown().await;
        }
        if let Some(member) = node.member.take() {
            let _ = member.shutdown().await;
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn client(&self) -> GcsClient {
        GcsClient::new(self.rpc.clone(), ClientConfig::new(self.addrs())).unwrap()
    }

    pub fn status(&self, i: usize) -> Option<MemberStatus> {
        self.nodes[i].member.as_ref().map(|m| m.status())
    }

    /// The index of the leader that every live member agrees on.
    pub async fn wait_for_leader(&self) -> usize {
        let mut found = None;
        wait_until(
            "the live members agree on a leader",
            Duration::from_secs(20),
            || {
                let live: Vec<MemberStatus> = (0..self.nodes.len())
                    .filter_map(|i| self.status(i))
                    .collect();
                let leaders: Vec<_> = live
                    .iter()
                    .filter(|s| s.role == "Leader")
                    .map(|s| s.id)
                    .collect();
                found = None;
                if let [leader] = leaders[..] {
                    let voters = live
                        .iter()
                        .filter(|s| s.membership.voter_ids().contains(&s.id))
                        .count();
                    let agree = live.iter().filter(|s| s.leader == Some(leader)).count();
                    if agree >= voters.div_ceil(2) {
                        found = self.nodes.iter().position(|n| n.id == leader);
                    }
                }
                let ok = found.is_some();
                async move { ok }
            },
        )
        .await;
        found.unwrap()
    }
}
