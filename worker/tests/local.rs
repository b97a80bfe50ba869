//! A node embedded in the test process: calls to its own actors stay
//! in-process, without serialisation; a driver's calls go over RPC.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use troupe_core::rpc::ClusterToken;
use troupe_worker::{
    Actor, ActorContext, ActorType, Cluster, Handler, Message, Node, NodeConfig, Registry, Role,
    SharedHandler,
};

/// How often a [`Counted`] was serialised, in this process.
static SERIALISED: AtomicUsize = AtomicUsize::new(0);

/// A message that counts its serialisations.
#[derive(Debug)]
struct Counted(u64);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SERIALISED.fetch_add(1, Ordering::SeqCst);
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Counted)
    }
}

impl Message for Counted {
    type Reply = u64;
    const NAME: &'static str = "Doubler.Counted";
}

struct Doubler;

impl Actor for Doubler {
    const TYPE_NAME: &'static str = "Doubler";
    type Args = ();

    async fn start((): (), _: &ActorContext) -> Result<Self, String> {
        Ok(Doubler)
    }
}

impl Handler<Counted> for Doubler {
    async fn handle(&mut self, Counted(n): Counted, _: &ActorContext) -> u64 {
        n * 2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_calls_skip_serialisation_and_remote_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let token = ClusterToken::new("local-test").unwrap();
    let mut config = NodeConfig::new(Role::Head, token.clone(), dir.path());
    config.actor_threads = 1;
    let registry = Registry::new().register(ActorType::<Doubler>::new().handles::<Counted>());
    let node = Node::start(config, registry).await.unwrap();
    let cluster = node.cluster();
    let doubler = cluster.spawn::<Doubler>(()).await.unwrap();

    assert_eq!(doubler.call(Counted(21)).await.unwrap(), 42);
    assert_eq!(
        SERIALISED.load(Ordering::SeqCst),
        0,
        "a local call serialised"
    );

    let driver = Cluster::connect(&node.addr().to_string(), token)
        .await
        .unwrap();
    let remote = driver.handle::<Doubler>(doubler.id());
    assert_eq!(remote.call(Counted(4)).await.unwrap(), 8);
    assert_eq!(
        SERIALISED.load(Ordering::SeqCst),
        1,
        "a remote call is sent once"
    );
    node.shutdown().await;
}

/// A shared actor: its handlers run concurrently.
struct Gate {
    barrier: tokio::sync::Barrier,
}

impl Actor for Gate {
    const TYPE_NAME: &'static str = "Gate";
    type Args = usize;

    async fn start(parties: usize, _: &ActorContext) -> Result<Self, String> {
        Ok(Gate {
            barrier: tokio::sync::Barrier::new(parties),
        })
    }
}

/// Waits at the gate until every party arrived; `true` panics instead.
#[derive(Debug, Serialize, Deserialize)]
struct Arrive(bool);

impl Message for Arrive {
    type Reply = ();
    const NAME: &'static str = "Gate.Arrive";
}

impl SharedHandler<Arrive> for Gate {
    async fn handle(&self, Arrive(panic): Arrive, _: &ActorContext) {
        assert!(!panic, "asked to panic");
        self.barrier.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_actors_run_calls_concurrently_and_survive_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let token = ClusterToken::new("shared-test").unwrap();
    let mut config = NodeConfig::new(Role::Head, token.clone(), dir.path());
    config.actor_threads = 1;
    let registry = Registry::new().register(ActorType::<Gate>::shared().handles_shared::<Arrive>());
    let node = Node::start(config, registry).await.unwrap();
    let gate = node.cluster().spawn::<Gate>(3).await.unwrap();
    let driver = Cluster::connect(&node.addr().to_string(), token)
        .await
        .unwrap();
    let remote = driver.handle::<Gate>(gate.id());
    // Three parties must be inside the handler at once for any to leave:
    // two in-process calls and one over RPC.
    let timeout = std::time::Duration::from_secs(20);
    let (a, b, c) = tokio::join!(
        gate.ask_timeout(Arrive(false), timeout),
        gate.ask_timeout(Arrive(false), timeout),
        remote.ask_timeout(Arrive(false), timeout),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();

    let panicked = gate.ask(Arrive(true)).await.unwrap_err();
    assert!(
        matches!(panicked, troupe_worker::ActorError::HandlerPanicked { .. }),
        "{panicked}"
    );
    let (a, b, c) = tokio::join!(
        gate.ask_timeout(Arrive(false), timeout),
        remote.ask_timeout(Arrive(false), timeout),
        remote.ask_timeout(Arrive(false), timeout),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    node.shutdown().await;
}

/// How often a [`Probe`] was serialised.
static PROBES_SERIALISED: AtomicUsize = AtomicUsize::new(0);

/// A message that counts its serialisations, for the untyped call.
#[derive(Debug)]
struct Probe(u64);

impl Serialize for Probe {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PROBES_SERIALISED.fetch_add(1, Ordering::SeqCst);
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Probe)
    }
}

impl Message for Probe {
    type Reply = u64;
    const NAME: &'static str = "Gate.Probe";
}

impl SharedHandler<Probe> for Gate {
    async fn handle(&self, Probe(n): Probe, _: &ActorContext) -> u64 {
        n + 1
    }
}

/// Stands in for a caller that does not know the actor's type.
struct Unknown;

impl Actor for Unknown {
    const TYPE_NAME: &'static str = "Unknown";
    type Args = ();

    async fn start((): (), _: &ActorContext) -> Result<Self, String> {
        Ok(Unknown)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untyped_calls_stay_in_process_when_local() {
    let dir = tempfile::tempdir().unwrap();
    let token = ClusterToken::new("dyn-test").unwrap();
    let mut config = NodeConfig::new(Role::Head, token.clone(), dir.path());
    config.actor_threads = 1;
    let registry = Registry::new().register(
        ActorType::<Gate>::shared()
            .handles_shared::<Arrive>()
            .handles_shared::<Probe>(),
    );
    let node = Node::start(config, registry).await.unwrap();
    let gate = node.cluster().spawn::<Gate>(1).await.unwrap();
    let timeout = std::time::Duration::from_secs(20);
    let untyped = node.cluster().handle::<Unknown>(gate.id());
    assert_eq!(untyped.call_dyn(Probe(41), timeout).await.unwrap(), 42);
    assert_eq!(
        PROBES_SERIALISED.load(Ordering::SeqCst),
        0,
        "a local call serialised"
    );

    let driver = Cluster::connect(&node.addr().to_string(), token)
        .await
        .unwrap();
    let remote = driver.handle::<Unknown>(gate.id());
    assert_eq!(remote.call_dyn(Probe(1), timeout).await.unwrap(), 2);
    assert_eq!(PROBES_SERIALISED.load(Ordering::SeqCst), 1);
    node.shutdown().await;
}

/// Counts down from its argument, one item at a time.
#[derive(Debug, Serialize, Deserialize)]
struct Countdown(u32);

impl Message for Countdown {
    type Reply = u32;
    const NAME: &'static str = "Gate.Countdown";
}

impl troupe_worker::StreamHandler<Countdown> for Gate {
    fn stream(
        &self,
        Countdown(n): Countdown,
        _: &ActorContext,
    ) -> impl futures::Stream<Item = u32> + 'static {
        futures::stream::iter((0..n).rev())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_deliver_every_item_in_order_locally_and_remotely() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let token = ClusterToken::new("stream-test").unwrap();
    let mut config = NodeConfig::new(Role::Head, token.clone(), dir.path());
    config.actor_threads = 1;
    let registry = Registry::new().register(
        ActorType::<Gate>::shared()
            .handles_shared::<Arrive>()
            .streams::<Countdown>(),
    );
    let node = Node::start(config, registry).await.unwrap();
    let gate = node.cluster().spawn::<Gate>(1).await.unwrap();
    let timeout = std::time::Duration::from_secs(20);
    let local: Vec<u32> = gate
        .stream(Countdown(1000), timeout)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(local, (0..1000).rev().collect::<Vec<_>>());

    let driver = Cluster::connect(&node.addr().to_string(), token)
        .await
        .unwrap();
    let remote = driver.handle::<Gate>(gate.id());
    let items: Vec<u32> = remote
        .stream(Countdown(1000), timeout)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, (0..1000).rev().collect::<Vec<_>>());
    // A reader that stops early does not stall the actor.
    let mut partial = remote.stream(Countdown(100_000), timeout).await.unwrap();
    assert_eq!(partial.next().await.unwrap().unwrap(), 99_999);
    drop(partial);
    gate.ask(Arrive(false)).await.unwrap();
    node.shutdown().await;
}
