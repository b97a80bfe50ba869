//! [`Node`]: one node process's roles, started and stopped together.
//!
//! A node always runs the worker runtime (actor hosting, the agent, the
//! cluster view) and registers itself under a lease; a head node, and a
//! joining node with `gcs`, also runs a GCS member and, while that member
//! leads, the cluster controller.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch, Notify};
use troupe_core::id::NodeId;
use troupe_core::resources::Resources;
use troupe_core::rpc::{CallOptions, ClusterToken, RpcClient, RpcConfig, RpcServer, ServerHandle};
use troupe_gcs::api::AdminRequest;
use troupe_gcs::client::{ClientConfig, GcsClient, GcsClientError};
use troupe_gcs::member::{GcsConfig, GcsMember};
use troupe_gcs::{LeaseId, Operation, PutRequest};

use crate::actor::Registry;
use crate::agent::Agent;
use crate::cluster::{AbortOnDrop, Cluster};
use crate::error::WorkerError;
use crate::hosting::Hosting;
use crate::protocol::{NodeInfo, NodeInfoReply};
use crate::schema::{self, Key, NodeRecord};
use crate::services::{
    ActorCallService, ActorStreamService, ControlService, NodeAdminService, NodeInfoService,
};
use crate::view::ClusterView;

/// How a node takes part in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Start a new cluster: a GCS member bootstrapped as the only voter.
    Head,
    /// Join the cluster through a node's RPC address; with `gcs`, also
    /// become a GCS member (a voter).
    Join { addr: String, gcs: bool },
}

/// The GCS member's Raft timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsTiming {
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    pub snapshot_every: u64,
    /// Exactly-once client sessions unused this long are removed
    /// (`--session-retention`).
    pub sessions: troupe_gcs::SessionRetention,
}

impl Default for GcsTiming {
    fn default() -> Self {
        GcsTiming {
            heartbeat: Duration::from_millis(50),
            election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
            snapshot_every: 10_000,
            sessions: troupe_gcs::SessionRetention::default(),
        }
    }
}

/// A node's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub role: Role,
    /// Where the RPC server listens (port 0 picks one).
    pub listen: String,
    pub token: ClusterToken,
    /// Other cluster tokens accepted from peers while the token is rotated
    /// (OPERATIONS.md).
    pub also_accept: Vec<ClusterToken>,
    /// Holds the node's id and, on GCS nodes, the member's data.
    pub data_dir: PathBuf,
    /// What the node offers to actors.
    pub resources: Resources,
    pub labels: BTreeMap<String, String>,
    /// The node's lease: it is declared dead this long after it stops
    /// renewing it (the failure-detection time).
    pub node_ttl: Duration,
    /// Arbiter threads hosting actors.
    pub actor_threads: usize,
    pub gcs: GcsTiming,
    /// How long a DEAD actor's record (and its reports) stays in the GCS
    /// before the controller deletes it (`--dead-actor-retention`); used
    /// by the controller of GCS member nodes.
    pub dead_actor_retention: Duration,
}

impl NodeConfig {
    /// Defaults: listen on `127.0.0.1:0`, a 3-second node lease, one
    /// arbiter per core, the machine's cores as CPUs, no GPUs, dead actors
    /// kept 10 minutes.
    pub fn new(role: Role, token: ClusterToken, data_dir: impl Into<PathBuf>) -> NodeConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        NodeConfig {
            role,
            listen: "127.0.0.1:0".into(),
            token,
            also_accept: Vec::new(),
            data_dir: data_dir.into(),
            resources: Resources::new()
                .with_cpus(cores as f64)
                .expect("a core count is a valid amount"),
            labels: BTreeMap::new(),
            node_ttl: Duration::from_secs(3),
            actor_threads: cores,
            gcs: GcsTiming::default(),
            dead_actor_retention: DEFAULT_DEAD_ACTOR_RETENTION,
        }
    }
}

/// How long DEAD actors are kept by default (`--dead-actor-retention`):
/// long enough to read why something died, short enough that the GCS
/// tracks the live cluster.
pub const DEFAULT_DEAD_ACTOR_RETENTION: Duration = Duration::from_secs(600);

/// A running node.
pub struct Node {
    id: NodeId,
    addr: SocketAddr,
    cluster: Cluster,
    hosting: Arc<Hosting>,
    server: Option<ServerHandle>,
    member: Option<GcsMember>,
    gcs: GcsClient,
    lease: watch::Receiver<LeaseId>,
    shutdown_requested: Arc<Notify>,
    extensions: Arc<crate::extension::Extensions>,
    _tasks: Vec<AbortOnDrop>,
}

impl Node {
    /// Starts every role of the node and registers it in the cluster.
    pub async fn start(config: NodeConfig, registry: Registry) -> Result<Node, WorkerError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            WorkerError::Config(format!("cannot create {}: {e}", config.data_dir.display()))
        })?;
        let id = node_id(&config.data_dir)?;
        let mut rpc_config = RpcConfig::new(config.token.clone());
        rpc_config.also_accept = config.also_accept.clone();
        let rpc = RpcClient::new(rpc_config.clone());
        let runs_gcs = matches!(config.role, Role::Head | Role::Join { gcs: true, .. });
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|e| {
                WorkerError::Config(format!(
                    "cannot listen on {}: {e}; is another process using it?",
                    config.listen
                ))
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| WorkerError::Config(e.to_string()))?;
        let member = if runs_gcs {
            let mut gcs_config = GcsConfig::new(id.get(), gcs_data_dir(&config.data_dir));
            gcs_config.heartbeat = config.gcs.heartbeat;
            gcs_config.election_timeout = config.gcs.election_timeout;
            gcs_config.snapshot_every = config.gcs.snapshot_every;
            gcs_config.sessions = config.gcs.sessions;
            Some(
                GcsMember::open(gcs_config, rpc.clone())
                    .await
                    .map_err(|e| WorkerError::Gcs(e.to_string()))?,
            )
        } else {
            None
        };
        let gcs_members = match &config.role {
            Role::Head => vec![addr.to_string()],
            Role::Join { addr: through, gcs } => {
                let info: NodeInfoReply = rpc
                    .channel(through)
                    .call_with::<NodeInfo>(&(), CallOptions::timeout(Duration::from_secs(30)))
                    .await
                    .map_err(|e| {
                        WorkerError::Join(format!("cannot reach the node at {through}: {e}"))
                    })?;
                let mut members = info.gcs_members;
                if members.is_empty() {
                    members.push(through.clone());
                }
                if *gcs {
                    members.push(addr.to_string());
                }
                members
            }
        };
        let gcs = GcsClient::new(rpc.clone(), ClientConfig::new(gcs_members))
            .map_err(|e| WorkerError::Gcs(e.to_string()))?;
        // A GCS member's node may run the controller, which reads all of
        // `/troupe/`; any other node follows only what it uses.
        let scope = match &member {
            Some(_) => crate::view::Scope::Full,
            None => crate::view::Scope::Narrow { node: Some(id) },
        };
        let view = ClusterView::start(gcs.clone(), scope);
        let hosting = Arc::new(
            Hosting::new(config.actor_threads)
                .map_err(|e| WorkerError::Config(format!("cannot start actor threads: {e}")))?,
        );
        let (controller, controller_task) = match &member {
            Some(member) => {
                let (handle, task) = crate::controller::start(
                    member.clone(),
                    gcs.clone(),
                    view.clone(),
                    id,
                    config.dead_actor_retention,
                );
                (Some(handle), Some(AbortOnDrop(task)))
            }
            None => (None, None),
        };
        let data_addrs = hosting
            .serve_on_arbiters(addr.ip(), || {
                let calls = Arc::new(ActorCallService {
                    me: id,
                    hosting: hosting.clone(),
                    view: view.clone(),
                });
                RpcServer::new(rpc_config.clone())
                    .with_service(ActorStreamService {
                        inner: calls.clone(),
                    })
                    .with_service(ActorCallService {
                        me: id,
                        hosting: hosting.clone(),
                        view: view.clone(),
                    })
                    .with_service(troupe_core::rpc::diag::EchoHandler)
            })
            .await
            .map_err(|e| WorkerError::Config(format!("cannot start the data plane: {e}")))?;
        let shutdown_requested = Arc::new(Notify::new());
        let extensions = Arc::new(crate::extension::Extensions::default());
        let stats_view = view.clone();
        extensions.register(
            crate::view::WATCH_STATS_EXTENSION,
            Arc::new(move |_: Vec<u8>| {
                let counts = stats_view
                    .stats()
                    .counts(stats_view.scope() == crate::view::Scope::Full);
                let answer = bincode::serialize(&counts).map_err(|e| e.to_string());
                Box::pin(std::future::ready(answer))
            }),
        );
        let mut server = RpcServer::new(rpc_config)
            .with_service(ActorCallService {
                me: id,
                hosting: hosting.clone(),
                view: view.clone(),
            })
            .with_service(ControlService {
                controller,
                registry: registry.clone(),
            })
            .with_service(NodeInfoService {
                me: id,
                member: member.clone(),
                gcs: gcs.clone(),
            })
            .with_service(NodeAdminService {
                shutdown: shutdown_requested.clone(),
            })
            .with_service(crate::extension::ExtensionService {
                extensions: extensions.clone(),
            })
            .with_service(troupe_core::rpc::diag::EchoHandler);
        if let Some(member) = &member {
            server = member.register(server);
        }
        let server = server.serve(listener);
        match (&config.role, &member) {
            (Role::Head, Some(member)) => member
                .bootstrap(&addr.to_string())
                .await
                .map_err(|e| WorkerError::Gcs(e.to_string()))?,
            (Role::Join { gcs: true, .. }, Some(_)) => join_gcs(&gcs, id, addr).await?,
            _ => {}
        }

        // Register under a lease, and keep it alive.
        let record = NodeRecord {
            id,
            addr: addr.to_string(),
            data_addrs,
            resources: config.resources.clone(),
            labels: config.labels.clone(),
            started_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            gcs_member: member.is_some(),
            draining: false,
            node_ttl_ms: config.node_ttl.as_millis() as u64,
        };
        let (lease, registered_at) = register(&gcs, &record, config.node_ttl).await?;
        let (lease_tx, lease_rx) = watch::channel(lease);
        let keep_alive = tokio::spawn(keep_registered(
            gcs.clone(),
            record,
            config.node_ttl,
            lease_tx,
        ));
        let cluster = Cluster::assemble(
            rpc,
            gcs.clone(),
            view.clone(),
            id,
            registered_at,
            Some(hosting.clone()),
            None,
        );
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let agent = Agent {
            me: id,
            view,
            hosting: hosting.clone(),
            registry,
            cluster: cluster.clone(),
            gcs: gcs.clone(),
            lease: lease_rx.clone(),
        };
        let agent = tokio::spawn(agent.run(events_tx, events_rx));
        let mut tasks = vec![AbortOnDrop(keep_alive), AbortOnDrop(agent)];
        tasks.extend(controller_task);
        tracing::info!(node = %id, %addr, gcs = member.is_some(), "node started");
        Ok(Node {
            id,
            addr,
            cluster,
            hosting,
            server: Some(server),
            member,
            gcs,
            lease: lease_rx,
            shutdown_requested,
            extensions,
            _tasks: tasks,
        })
    }

    /// The node's extension handlers (`worker.extension`), to which layers
    /// above the node add theirs.
    pub fn extensions(&self) -> &Arc<crate::extension::Extensions> {
        &self.extensions
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The RPC address (GCS services included on GCS nodes).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The actor API, as seen from this node (local calls in-process).
    pub fn cluster(&self) -> Cluster {
        self.cluster.clone()
    }

    /// This node's GCS member, if it runs one (controllers of layers above
    /// run while it leads).
    pub fn gcs_member(&self) -> Option<&GcsMember> {
        self.member.as_ref()
    }

    /// Resolves when `troupe stop` asks this node to leave.
    pub async fn shutdown_requested(&self) {
        self.shutdown_requested.notified().await;
    }

    /// Leaves the cluster: revokes the lease (its actors are restarted
    /// elsewhere within their budgets), stops the actors, the RPC server
    /// and the GCS member.
    pub async fn shutdown(mut self) {
        let lease = *self.lease.borrow();
        let revoke = self.gcs.revoke_lease(lease);
        if let Err(e) = tokio::time::timeout(Duration::from_secs(5), revoke).await {
            tracing::warn!(error = %e, "could not revoke the node lease; it will expire");
        }
        self._tasks.clear();
        self.hosting.shutdown();
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        if let Some(member) = &self.member {
            if let Err(e) = member.shutdown().await {
                tracing::warn!(error = %e, "GCS member did not shut down cleanly");
            }
        }
    }
}

/// Where a GCS node keeps its member's data, under its data directory
/// (`<data dir>/gcs`; the node's id is in `<data dir>/node-id`, and its
/// member has the same id).
pub fn gcs_data_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("gcs")
}

/// Gives a new node directory its id (a restored control store's member
/// must start as the id it was restored for).
pub fn write_node_id(data_dir: &std::path::Path, id: NodeId) -> Result<(), WorkerError> {
    let path = data_dir.join("node-id");
    std::fs::create_dir_all(data_dir)
        .and_then(|()| std::fs::write(&path, format!("{id}\n")))
        .map_err(|e| WorkerError::Config(format!("cannot write {}: {e}", path.display())))
}

/// The node's id, kept in the data directory so a restart keeps it.
fn node_id(data_dir: &std::path::Path) -> Result<NodeId, WorkerError> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            WorkerError::Config(format!(
                "{} is corrupt ({e}); delete it to start as a new node",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeId::random();
            std::fs::write(&path, format!("{id}\n")).map_err(|e| {
                WorkerError::Config(format!("cannot write {}: {e}", path.display()))
            })?;
            Ok(id)
        }
        Err(e) => Err(WorkerError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Adds this node's GCS member to the control store as a voter. Joining is
/// idempotent on the leader (and serialised with other membership
/// changes), so it is retried while the store is unavailable or busy; a
/// member that came back at a known address on an empty data directory
/// takes its old id's place (see `troupe_gcs::member::join`).
async fn join_gcs(gcs: &GcsClient, id: NodeId, addr: SocketAddr) -> Result<(), WorkerError> {
    let request = AdminRequest::Join {
        id: id.get(),
        addr: addr.to_string(),
    };
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=JOIN_ATTEMPTS {
        match gcs.admin(request.clone()).await {
            Ok(_) => return Ok(()),
            Err(GcsClientError::Rejected(e)) if !e.is_retryable() => {
                return Err(WorkerError::Join(e.to_string()))
            }
            Err(e) if attempt == JOIN_ATTEMPTS => return Err(WorkerError::Join(e.to_string())),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "joining the control store failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// How many times a node tries to join the control store.
const JOIN_ATTEMPTS: u32 = 8;

/// Grants a lease and writes the node and owner keys under it; returns the
/// lease and the revision of the registration.
async fn register(
    gcs: &GcsClient,
    record: &NodeRecord,
    ttl: Duration,
) -> Result<(LeaseId, u64), WorkerError> {
    let gcs_error = |e: GcsClientError| WorkerError::Gcs(e.to_string());
    let lease = gcs.grant_lease(ttl).await.map_err(gcs_error)?;
    let node =
        PutRequest::new(Key::Node(record.id).to_bytes(), schema::encode(record)).with_lease(lease);
    let owner = PutRequest::new(Key::Owner(record.id).to_bytes(), Vec::new()).with_lease(lease);
    let txn = troupe_gcs::TxnRequest {
        compares: vec![],
        success: vec![troupe_gcs::TxnOp::Put(node), troupe_gcs::TxnOp::Put(owner)],
        failure: vec![],
    };
    let response = gcs.write(Operation::Txn(txn)).await.map_err(gcs_error)?;
    if let Err(e) = response.outcome {
        return Err(WorkerError::Gcs(e.to_string()));
    }
    Ok((lease, response.revision))
}

/// Keeps the node's lease alive; if it expired anyway (the node was cut
/// off for longer than its TTL), registers again under a new one.
async fn keep_registered(
    gcs: GcsClient,
    record: NodeRecord,
    ttl: Duration,
    lease: watch::Sender<LeaseId>,
) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        let current = *lease.borrow();
        match gcs.keep_alive(current).await {
            Ok(_) => {}
            Err(GcsClientError::Rejected(e)) => {
                tracing::warn!(error = %e, "node lease lost; registering again");
                match register(&gcs, &record, ttl).await {
                    Ok((new, _)) => {
                        let _ = lease.send(new);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not register again"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not renew the node lease"),
        }
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Node>();
}
