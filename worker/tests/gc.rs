//! Garbage collection on an embedded node: actors killed long enough ago
//! leave no keys behind, a live one keeps its record and its name.

use std::time::Duration;

use troupe_core::rpc::ClusterToken;
use troupe_gcs::RangeRequest;
use troupe_worker::schema::keys;
use troupe_worker::{Actor, ActorContext, ActorState, ActorType, Node, NodeConfig, Registry, Role};

struct Idle;

impl Actor for Idle {
    const TYPE_NAME: &'static str = "Idle";
    type Args = ();

    async fn start((): (), _: &ActorContext) -> Result<Self, String> {
        Ok(Idle)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_actors_are_collected_after_the_retention_and_live_ones_stay() {
    const KILLED: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let token = ClusterToken::new("gc-test").unwrap();
    let mut config = NodeConfig::new(Role::Head, token, dir.path());
    config.actor_threads = 1;
    config.dead_actor_retention = Duration::from_secs(1);
    let registry = Registry::new().register(ActorType::<Idle>::new());
    let node = Node::start(config, registry).await.unwrap();
    let cluster = node.cluster();

    let keeper = cluster.spawn::<Idle>(()).name("keeper").await.unwrap();
    let mut killed = Vec::new();
    for i in 0..KILLED {
        let spawn = cluster.spawn::<Idle>(());
        // Some named: their names are freed at death, their records later.
        let spawn = if i % 10 == 0 {
            spawn.name(format!("doomed-{i}"))
        } else {
            spawn
        };
        killed.push(spawn.await.unwrap().id());
    }
    for id in &killed {
        cluster.kill(*id).await.unwrap();
    }
    let mut changes = cluster.state_changes();
    let collected = tokio::time::timeout(
        Duration::from_secs(60),
        changes.wait_for(|s| {
            killed.iter().all(|id| !s.actors.contains_key(id))
                && s.actors.get(&keeper.id()).map(|a| &a.state) == Some(&ActorState::Alive)
        }),
    )
    .await;
    assert!(
        collected.is_ok(),
        "dead actors still recorded after 60 s: {:?}",
        cluster.read_state(|s| s
            .actors
            .values()
            .map(|a| (a.id, a.state.clone(), a.died_at_ms))
            .collect::<Vec<_>>())
    );
    drop(collected);

    // Counted in the GCS itself: one actor record, one name, its report.
    let count = |prefix: &str| {
        let gcs = cluster.gcs().clone();
        let prefix = prefix.as_bytes().to_vec();
        async move {
            gcs.range(RangeRequest::prefix(prefix, None), true)
                .await
                .unwrap()
                .kvs
                .len()
        }
    };
    assert_eq!(count(keys::ACTORS_PREFIX).await, 1);
    assert_eq!(count(keys::ACTOR_NAMES_PREFIX).await, 1);
    assert_eq!(count(keys::REPORTS_PREFIX).await, 1);
    let state = cluster.state().await.unwrap();
    assert_eq!(state.actors[&keeper.id()].state, ActorState::Alive);
    node.shutdown().await;
}
