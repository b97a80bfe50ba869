//! Bad requests get clear errors and nothing crashes.

use serde::{Deserialize, Serialize};
use troupe::prelude::*;
use troupe_examples::actors::{Add, Counter, Get};

use crate::support::TestCluster;

/// A type no node binary registers.
struct Stranger;

impl Actor for Stranger {
    const TYPE_NAME: &'static str = "Stranger";
    type Args = ();

    async fn start((): (), _: &ActorContext) -> Result<Self, String> {
        Ok(Stranger)
    }
}

/// Poses as the example's `Counter`, with messages it does not have.
struct FakeCounter;

impl Actor for FakeCounter {
    const TYPE_NAME: &'static str = "Counter";
    type Args = i64;

    async fn start(_: i64, _: &ActorContext) -> Result<Self, String> {
        Ok(FakeCounter)
    }
}

/// `Counter.Add` with a text body where the node expects an integer.
#[derive(Serialize, Deserialize)]
struct WrongAdd(String);

impl Message for WrongAdd {
    type Reply = i64;
    const NAME: &'static str = "Counter.Add";
}

/// A message `Counter` does not handle.
#[derive(Serialize, Deserialize)]
struct Reset;

impl Message for Reset {
    type Reply = ();
    const NAME: &'static str = "Counter.Reset";
}

impl Handler<WrongAdd> for FakeCounter {
    async fn handle(&mut self, _: WrongAdd, _: &ActorContext) -> i64 {
        0
    }
}

impl Handler<Reset> for FakeCounter {
    async fn handle(&mut self, _: Reset, _: &ActorContext) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_types_messages_and_resources_get_clear_errors() {
    let cluster = TestCluster::head(&["--num-cpus", "1"]);
    let driver = cluster.driver().await;

    let unknown = driver.spawn::<Stranger>(()).await.unwrap_err();
    assert!(
        matches!(&unknown, ActorError::NotRegistered { type_name } if type_name == "Stranger"),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("register it"), "{unknown}");

    let negative = driver.spawn::<Counter>(0).num_gpus(-1.0).await.unwrap_err();
    assert!(
        matches!(negative, ActorError::InvalidOptions(_)),
        "{negative}"
    );
    let bad_restarts = driver
        .spawn::<Counter>(0)
        .max_restarts(-2)
        .await
        .unwrap_err();
    assert!(
        bad_restarts.to_string().contains("max_restarts"),
        "{bad_restarts}"
    );

    // More GPUs than any node has: it waits, saying why.
    let greedy = driver.spawn::<Counter>(0).num_gpus(64.0).await.unwrap();
    let state = driver.state().await.unwrap();
    let reason = state.actors[&greedy.id()].pending_reason.clone().unwrap();
    assert!(reason.contains("GPU"), "{reason}");

    let counter = driver.spawn::<Counter>(5).await.unwrap();
    assert_eq!(counter.call(Add(1)).await.unwrap(), 6);
    let fake = driver.handle::<FakeCounter>(counter.id());
    let undecodable = fake.call(WrongAdd("one".into())).await.unwrap_err();
    assert!(
        matches!(undecodable, ActorError::Codec { .. }),
        "{undecodable}"
    );
    let unhandled = fake.call(Reset).await.unwrap_err();
    assert!(
        matches!(&unhandled, ActorError::UnknownMessage { message, .. } if message == "Counter.Reset"),
        "{unhandled}"
    );

    // The actor and its node are unharmed.
    assert_eq!(counter.call(Get).await.unwrap(), 6);
}
