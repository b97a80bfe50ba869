//! [`Cluster`]: the actor API's entry point. Spawn actors, look them up by
//! name, kill and list them; [`ActorHandle`]s make the calls.
//!
//! A node hands every actor a `Cluster` in its [`ActorContext`]; a program
//! outside the cluster (a driver) gets one with [`Cluster::connect`].
//!
//! [`ActorContext`]: crate::ActorContext

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use troupe_core::id::{ActorId, NodeId};
use troupe_core::rpc::{CallOptions, ClusterToken, RpcClient, RpcConfig, RpcError};
use troupe_gcs::client::{ClientConfig, GcsClient};
use troupe_gcs::{PutRequest, RangeRequest};

mod handle;
mod spawn;

pub use handle::ActorHandle;
pub use spawn::Spawn;

use crate::actor::{Actor, ActorError};
use crate::health::{HealthPolicy, HealthTable};
use crate::hosting::Hosting;
use crate::protocol::{ControlError, ControlReply, ControlRequest, NodeInfo, NodeInfoReply};
use crate::schema::{self, keys, ActorName, ActorNameRecord, ActorRecord, Key};
use crate::view::{ClusterState, ClusterView};

/// How long a spawn, lookup or call waits by default, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A control operation (spawn, kill) fails early once no controller has
/// answered for this long: the controller runs with the GCS leader, which
/// a failover replaces well within it (an election takes 150–300 ms), so
/// this long without one means the GCS has lost its quorum, and waiting
/// out the operation's timeout would only hang the caller.
pub const NO_CONTROLLER_GRACE: Duration = Duration::from_secs(3);

/// A connection to a Troupe cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub rpc: RpcClient,
    pub gcs: GcsClient,
    pub view: ClusterView,
    /// This process's id: the owner of the actors it spawns.
    pub me: NodeId,
    /// The GCS revision at which this process registered as an owner.
    pub registered_at: u64,
    /// This node's instances, when the process is a node.
    pub local: Option<Arc<Hosting>>,
    pub timeout: Duration,
    /// How this process's calls find each node (shared by every handle and
    /// router here).
    pub health: Arc<HealthTable>,
    /// Ends the owner lease keep-alive when the last clone goes.
    _keep_alive: Option<AbortOnDrop>,
    /// Ends the health table's prober when the last clone goes.
    _prober: AbortOnDrop,
}

/// How often the prober looks for ejected nodes whose probe is due.
const PROBE_TICK: Duration = Duration::from_millis(100);

/// Probes ejected nodes when their ejection has run its length (one
/// `NodeInfo` RPC each, concurrently), and forgets nodes the GCS no longer
/// lists.
async fn probe_ejected_nodes(
    health: Arc<HealthTable>,
    rpc: RpcClient,
    view: tokio::sync::watch::Receiver<ClusterState>,
) {
    let mut ticks = tokio::time::interval(PROBE_TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probing = tokio::task::JoinSet::new();
    let mut in_flight = std::collections::HashSet::new();
    for tick in 0u64.. {
        tokio::select! {
            _ = ticks.tick() => {}
            Some(Ok(node)) = probing.join_next(), if !probing.is_empty() => {
                in_flight.remove(&node);
                continue;
            }
        }
        let due = health.due_probes();
        if due.is_empty() && tick % 10 != 0 {
            continue;
        }
        let targets: Vec<(NodeId, String)> = {
            let state = view.borrow();
            if state.revision != 0 {
                health.retain(|node| state.nodes.contains_key(node));
            }
            due.iter()
                .filter_map(|n| state.nodes.get(n).map(|r| (*n, r.addr.clone())))
                .collect()
        };
        for (node, addr) in targets {
            if !in_flight.insert(node) {
                continue;
            }
            let channel = rpc.channel(&addr);
            let options = CallOptions {
                timeout: Some(health.policy().probe_timeout),
                fail_fast: true,
            };
            let health = health.clone();
            probing.spawn(async move {
                let answered = channel.call_with::<NodeInfo>(&(), options).await.is_ok();
                health.probed(node, answered);
                node
            });
        }
    }
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Cluster {
    /// Connects a driver to the cluster through any node's RPC address.
    /// The driver registers itself as an owner under a lease: actors it
    /// spawns without [`Spawn::detached`] die when it exits.
    pub async fn connect(addr: &str, token: ClusterToken) -> Result<Cluster, ActorError> {
        Self::connect_with(addr, RpcConfig::new(token)).await
    }

    /// [`Cluster::connect`] with these RPC settings (e.g. tokens also
    /// accepted while the cluster token is rotated).
    pub async fn connect_with(addr: &str, rpc: RpcConfig) -> Result<Cluster, ActorError> {
        let rpc = RpcClient::new(rpc);
        let info: NodeInfoReply = rpc
            .channel(addr)
            .call_with::<NodeInfo>(&(), CallOptions::timeout(DEFAULT_TIMEOUT))
            .await
            .map_err(|e| ActorError::Cluster(format!("cannot reach the node at {addr}: {e}")))?;
        let gcs = GcsClient::new(rpc.clone(), ClientConfig::new(info.gcs_members))
            .map_err(|e| ActorError::Cluster(e.to_string()))?;
        let me = NodeId::random();
        let (registered_at, keep_alive) = register_owner(&gcs, me, Duration::from_secs(10)).await?;
        let view = ClusterView::start(gcs.clone(), crate::view::Scope::Narrow { node: None });
        Ok(Cluster::assemble(
            rpc,
            gcs,
            view,
            me,
            registered_at,
            None,
            Some(keep_alive),
        ))
    }

    pub(crate) fn assemble(
        rpc: RpcClient,
        gcs: GcsClient,
        view: ClusterView,
        me: NodeId,
        registered_at: u64,
        local: Option<Arc<Hosting>>,
        keep_alive: Option<AbortOnDrop>,
    ) -> Cluster {
        let health = Arc::new(HealthTable::new(HealthPolicy::default()));
        let prober = AbortOnDrop(tokio::spawn(probe_ejected_nodes(
            health.clone(),
            rpc.clone(),
            view.subscribe(),
        )));
        Cluster {
            inner: Arc::new(Inner {
                rpc,
                gcs,
                view,
                me,
                registered_at,
                local,
                timeout: DEFAULT_TIMEOUT,
                health,
                _keep_alive: keep_alive,
                _prober: prober,
            }),
        }
    }

    /// How this process's calls find each node: the data path's health
    /// table (see [`crate::health`]).
    pub fn health(&self) -> &HealthTable {
        &self.inner.health
    }

    /// This process's id (a node's id, or a driver's).
    pub fn id(&self) -> NodeId {
        self.inner.me
    }

    /// Starts spawning an actor of type `A` constructed from `args`; set
    /// options on the returned [`Spawn`], then `.await` it.
    pub fn spawn<A: Actor>(&self, args: A::Args) -> Spawn<A> {
        Spawn::new(self.clone(), args)
    }

    /// The actor named `name` in the default namespace.
    pub async fn get_actor<A: Actor>(&self, name: &str) -> Result<ActorHandle<A>, ActorError> {
        self.get_actor_in::<A>(schema::DEFAULT_NAMESPACE, name)
            .await
    }

    /// The actor named `name` in `namespace`: a linearizable lookup, so an
    /// actor whose spawn returned anywhere is found.
    pub async fn get_actor_in<A: Actor>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<ActorHandle<A>, ActorError> {
        let name = ActorName::new(namespace, name)
            .map_err(|e| ActorError::InvalidOptions(e.to_string()))?;
        let not_found = || ActorError::NotFound {
            what: format!("named {name}"),
        };
        let kv = self
            .inner
            .gcs
            .get(Key::ActorName(name.clone()).to_bytes())
            .await
            .map_err(|e| ActorError::Cluster(e.to_string()))?
            .ok_or_else(not_found)?;
        let record: ActorNameRecord =
            schema::decode(&kv.value).map_err(|e| ActorError::Cluster(e.to_string()))?;
        let actor = self.read_actor(record.actor).await?.ok_or_else(not_found)?;
        if actor.type_name != A::TYPE_NAME {
            return Err(ActorError::InvalidOptions(format!(
                "actor {name} is a {:?}, not a {:?}",
                actor.type_name,
                A::TYPE_NAME
            )));
        }
        Ok(ActorHandle::new(
            self.clone(),
            record.actor,
            kv.mod_revision,
        ))
    }

    /// A handle to the actor with `id`, which must be an `A`.
    pub fn handle<A: Actor>(&self, id: ActorId) -> ActorHandle<A> {
        ActorHandle::new(self.clone(), id, 0)
    }

    /// Spawns an actor by type name with already encoded arguments (for
    /// layers that choose types at run time, like the serve controller).
    /// The type must be registered on the nodes.
    pub async fn spawn_untyped(
        &self,
        type_name: &str,
        args: Vec<u8>,
        options: crate::schema::ActorOptions,
        name: Option<ActorName>,
    ) -> Result<ActorId, ActorError> {
        let request = crate::protocol::SpawnRequest {
            id: ActorId::random(),
            type_name: type_name.to_owned(),
            name,
            owner: crate::schema::Owner::Node(self.inner.me),
            options,
            args: serde_bytes::ByteBuf::from(args),
            min_revision: self.inner.registered_at,
        };
        let reply = self
            .control(ControlRequest::Spawn(Box::new(request)))
            .await?;
        Ok(reply.record.id)
    }

    /// Kills an actor: it becomes DEAD ("killed by a user"), its node stops
    /// it, its name is released; calls fail with [`ActorError::Died`].
    pub async fn kill(&self, actor: ActorId) -> Result<(), ActorError> {
        self.control(ControlRequest::Kill { actor })
            .await
            .map(|_| ())
    }

    /// Every actor's record, linearizably read.
    pub async fn actors(&self) -> Result<Vec<ActorRecord>, ActorError> {
        Ok(self.state().await?.actors.into_values().collect())
    }

    /// The node layer's tables, linearizably read (for `troupe status`).
    pub async fn state(&self) -> Result<ClusterState, ActorError> {
        let listing = self
            .inner
            .gcs
            .range(RangeRequest::prefix(keys::ROOT, None), true)
            .await
            .map_err(|e| ActorError::Cluster(e.to_string()))?;
        Ok(ClusterState::from_listing(listing.revision, &listing.kvs))
    }

    /// The cluster state as this process last saw it (no GCS round trip).
    pub fn cached_state(&self) -> ClusterState {
        self.inner.view.read(Clone::clone)
    }

    /// Runs `f` on the cached cluster state, without copying it.
    pub fn read_state<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        self.inner.view.read(f)
    }

    /// A receiver of the cached cluster state, to wait for changes.
    pub fn state_changes(&self) -> tokio::sync::watch::Receiver<ClusterState> {
        self.inner.view.subscribe()
    }

    /// Asks this process's cluster view to follow every key under
    /// `prefix`, a layer's own records under `/troupe/` (serve's): a view
    /// that does not hold all of `/troupe/` follows only the prefixes
    /// asked for. Idempotent; never waits on the GCS.
    pub fn follow_prefix(&self, prefix: &str) {
        self.inner.view.want_prefix(prefix);
    }

    /// Asks this process's cluster view to follow the actor names under
    /// the key prefix `prefix` (`/troupe/actor-names/<namespace>/<start>`)
    /// and the actors they name: what a router over a deployment's
    /// replicas reads. Idempotent; never waits on the GCS.
    pub fn follow_names(&self, prefix: &str) {
        self.inner.view.want_names(prefix);
    }

    /// What this process's cluster view received from the GCS's watches.
    pub fn watch_stats(&self) -> &crate::view::WatchStats {
        self.inner.view.stats()
    }

    /// The GCS client this process uses (for layers that keep their own
    /// tables under `/troupe/`).
    pub fn gcs(&self) -> &GcsClient {
        &self.inner.gcs
    }

    async fn read_actor(&self, id: ActorId) -> Result<Option<ActorRecord>, ActorError> {
        let kv = self
            .inner
            .gcs
            .get(Key::Actor(id).to_bytes())
            .await
            .map_err(|e| ActorError::Cluster(e.to_string()))?;
        kv.map(|kv| schema::decode(&kv.value).map_err(|e| ActorError::Cluster(e.to_string())))
            .transpose()
    }

    /// Sends `request` to the controller, finding it (again) through the
    /// cluster state until it answers or the timeout passes.
    pub(crate) async fn control(
        &self,
        request: ControlRequest,
    ) -> Result<ControlReply, ActorError> {
        let started = Instant::now();
        let deadline = started + self.inner.timeout;
        let mut rx = self.inner.view.subscribe();
        let mut last = "no controller is known yet".to_string();
        loop {
            let addr = rx.borrow_and_update().controller_addr().map(str::to_owned);
            if let Some(addr) = addr {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let options = CallOptions {
                    timeout: Some(remaining.min(Duration::from_secs(5))),
                    fail_fast: true,
                };
                match self
                    .inner
                    .rpc
                    .channel(&addr)
                    .call_with::<crate::protocol::Control>(&request, options)
                    .await
                {
                    Ok(Ok(reply)) => return Ok(reply),
                    Ok(Err(ControlError::Actor(e))) => return Err(e),
                    Ok(Err(ControlError::NotController)) => {
                        last = format!("{addr} no longer runs the controller");
                    }
                    Err(e) if retryable(&e) => last = format!("controller at {addr}: {e}"),
                    Err(e) => return Err(ActorError::Cluster(e.to_string())),
                }
            }
            // Wait for the cluster state to name another controller, or
            // retry the same one shortly (it may be taking over).
            let pause = Instant::now() + Duration::from_millis(50);
            let until = pause.min(deadline);
            let _ = tokio::time::timeout_at(until, rx.changed()).await;
            if Instant::now() >= started + NO_CONTROLLER_GRACE
                && self.inner.timeout > NO_CONTROLLER_GRACE
            {
                return Err(ActorError::Cluster(format!(
                    "no controller answered for {NO_CONTROLLER_GRACE:?} ({last}): the GCS has no \
                     leader, most likely because a majority of its members is down or cut off; \
                     retry once they are back (a retried spawn never makes a second actor; calls \
                     to running actors go on)"
                )));
            }
            if Instant::now() >= deadline {
                return Err(ActorError::Cluster(format!(
                    "no controller answered within {:?} ({last}); check that a majority of GCS \
                     members is running",
                    self.inner.timeout
                )));
            }
        }
    }
}

/// Whether an RPC error may go away by asking again (elsewhere).
fn retryable(e: &RpcError) -> bool {
    e.is_retryable()
}

/// Registers `me` as a live owner under a lease with `ttl` and keeps the
/// lease alive; returns the revision of the registration.
pub(crate) async fn register_owner(
    gcs: &GcsClient,
    me: NodeId,
    ttl: Duration,
) -> Result<(u64, AbortOnDrop), ActorError> {
    let cluster = |e: troupe_gcs::client::GcsClientError| ActorError::Cluster(e.to_string());
    let lease = gcs.grant_lease(ttl).await.map_err(cluster)?;
    let put = PutRequest::new(Key::Owner(me).to_bytes(), Vec::new()).with_lease(lease);
    let response = gcs
        .write(troupe_gcs::Operation::Put(put))
        .await
        .map_err(cluster)?;
    let gcs = gcs.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            if let Err(e) = gcs.keep_alive(lease).await {
                tracing::warn!(error = %e, "could not keep the owner lease alive");
            }
        }
    });
    Ok((response.revision, AbortOnDrop(task)))
}
