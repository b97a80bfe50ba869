//! A driver's cluster view follows only what it uses (issue #17): the
//! node table and the controller's term, and each actor its calls looked
//! up, kept fresh by a watch of that actor alone; an embedded head node
//! (a GCS member's node) keeps the full view.

use std::time::Duration;

use troupe_core::id::ActorId;
use troupe_core::rpc::ClusterToken;
use troupe_worker::{
    Actor, ActorContext, ActorError, ActorType, Cluster, Handler, Message, Node, NodeConfig,
    Registry, Role,
};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Double(u64);

impl Message for Double {
    type Reply = u64;
    const NAME: &'static str = "Doubler.Double";
}

struct Doubler;

impl Actor for Doubler {
    const TYPE_NAME: &'static str = "Doubler";
    type Args = ();

    async fn start((): (), _: &ActorContext) -> Result<Self, String> {
        Ok(Doubler)
    }
}

impl Handler<Double> for Doubler {
    async fn handle(&mut self, Double(n): Double, _: &ActorContext) -> u64 {
        n * 2
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_follows_only_the_actors_it_calls() {
    let dir = tempfile::tempdir().unwrap();
    let token = ClusterToken::new("views-test").unwrap();
    let mut config = NodeConfig::new(Role::Head, token.clone(), dir.path());
    config.actor_threads = 1;
    let registry = Registry::new().register(ActorType::<Doubler>::new().handles::<Double>());
    let node = Node::start(config, registry).await.unwrap();
    let head = node.cluster();
    let mut actors = Vec::new();
    for _ in 0..3 {
        actors.push(head.spawn::<Doubler>(()).await.unwrap());
    }
    assert!(
        head.read_state(|s| s.full),
        "a GCS member's node keeps the full view"
    );
    assert_eq!(head.watch_stats().follows(), 1);

    let driver = Cluster::connect(&node.addr().to_string(), token)
        .await
        .unwrap();
    let used = driver.handle::<Doubler>(actors[0].id());
    // A cold lookup: the first call waits for one GCS read.
    assert_eq!(used.call(Double(21)).await.unwrap(), 42);
    let (full, held) =
        driver.read_state(|s| (s.full, s.actors.keys().copied().collect::<Vec<_>>()));
    assert!(!full);
    assert_eq!(
        held,
        vec![actors[0].id()],
        "the driver holds only the actor it called"
    );
    // The node table, the controller's term and that actor.
    assert_eq!(driver.watch_stats().follows(), 3);

    // Kept fresh by its watch: the actor's death reaches the driver
    // without another call.
    let events = driver.watch_stats().events();
    head.kill(actors[0].id()).await.unwrap();
    let id = actors[0].id();
    let mut changes = driver.state_changes();
    // `is_ok` drops the view's read guard at once.
    let dead = tokio::time::timeout(Duration::from_secs(10), async {
        changes
            .wait_for(|s| s.actors.get(&id).is_some_and(|a| a.state.name() == "DEAD"))
            .await
            .is_ok()
    })
    .await;
    assert!(
        matches!(dead, Ok(true)),
        "the driver's view did not see the death"
    );
    assert!(driver.watch_stats().events() > events);
    let died = used.call(Double(1)).await.unwrap_err();
    assert!(matches!(died, ActorError::Died { .. }), "{died}");
    // Spawns and deaths of the actors it does not use never reached it.
    head.kill(actors[1].id()).await.unwrap();
    let other = head.spawn::<Doubler>(()).await.unwrap();
    assert_eq!(
        head.handle::<Doubler>(other.id())
            .call(Double(2))
            .await
            .unwrap(),
        4
    );
    let held = driver.read_state(|s| s.actors.keys().copied().collect::<Vec<_>>());
    assert_eq!(held, vec![actors[0].id()]);

    // An actor that does not exist: the cold lookup finds no record.
    let missing = driver
        .handle::<Doubler>(ActorId::new(0x5eed))
        .call(Double(1))
        .await
        .unwrap_err();
    assert!(matches!(missing, ActorError::NotFound { .. }), "{missing}");
    assert_eq!(driver.watch_stats().follows(), 4);
}
