//! Garbage collection across node processes (issue #17): the records,
//! reports and names of actors killed on several nodes disappear from the
//! GCS once `--dead-actor-retention` has passed, and a live actor keeps
//! all of its keys.

use std::time::Duration;

use troupe::gcs::RangeRequest;
use troupe::prelude::*;
use troupe_examples::actors::{Counter, Get, WhereAreYou};

use crate::support::{wait_until, TestCluster};

/// The node layer's key prefixes (ARCHITECTURE.md, the GCS key layout).
mod keys {
    pub const ACTORS_PREFIX: &str = "/troupe/actors/";
    pub const REPORTS_PREFIX: &str = "/troupe/reports/";
    pub const ACTOR_NAMES_PREFIX: &str = "/troupe/actor-names/";
    pub const ASSIGNMENTS_PREFIX: &str = "/troupe/assignments/";
}

/// Node processes (the head runs the GCS and the controller).
const NODES: usize = 4;
/// Actors killed.
const KILLED: usize = 24;

/// The keys the GCS holds under `prefix`.
async fn keys_under(driver: &Cluster, prefix: &str) -> Vec<String> {
    driver
        .gcs()
        .range(RangeRequest::prefix(prefix.as_bytes().to_vec(), None), true)
        .await
        .expect("a GCS range read")
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_actors_of_every_node_leave_the_gcs_after_the_retention() {
    let args = ["--num-cpus", "4", "--dead-actor-retention", "2"];
    let mut cluster = TestCluster::head(&args);
    for _ in 1..NODES {
        cluster.join(&args);
    }
    let driver = cluster.driver_via(0, NODES).await;
    let keeper = driver.spawn::<Counter>(7).name("keeper").await.unwrap();
    let mut doomed = Vec::new();
    let mut hosts = std::collections::BTreeSet::new();
    for i in 0..KILLED {
        let spawn = driver.spawn::<Counter>(i as i64).spread_group("doomed");
        // Some named: the name goes at death, the record a retention later.
        let spawn = if i % 6 == 0 {
            spawn.name(format!("doomed-{i}"))
        } else {
            spawn
        };
        let actor = spawn.await.unwrap();
        hosts.insert(actor.call(WhereAreYou).await.unwrap());
        doomed.push(actor.id());
    }
    assert_eq!(hosts.len(), NODES, "spread over {} nodes only", hosts.len());
    for id in &doomed {
        driver.kill(*id).await.unwrap();
    }
    // Every record is written DEAD first (none is collected at once): the
    // collection below is of records that existed.
    let records = keys_under(&driver, keys::ACTORS_PREFIX).await;
    let dead_seen = doomed
        .iter()
        .filter(|id| records.iter().any(|k| k.ends_with(&id.to_string())))
        .count();
    assert!(dead_seen >= 1, "no killed actor's record was ever seen");

    wait_until(
        "the killed actors' keys leave the GCS",
        Duration::from_secs(60),
        || {
            let driver = driver.clone();
            let doomed = doomed.clone();
            async move {
                let mut left = 0;
                for prefix in [
                    keys::ACTORS_PREFIX,
                    keys::REPORTS_PREFIX,
                    keys::ASSIGNMENTS_PREFIX,
                ] {
                    let keys = keys_under(&driver, prefix).await;
                    left += doomed
                        .iter()
                        .filter(|id| keys.iter().any(|k| k.ends_with(&id.to_string())))
                        .count();
                }
                let names = keys_under(&driver, keys::ACTOR_NAMES_PREFIX).await;
                left += names.iter().filter(|k| k.contains("/doomed-")).count();
                left == 0
            }
        },
    )
    .await;

    // The live actor keeps its record, its name and its report, and
    // answers.
    let keeper_id = keeper.id().to_string();
    for prefix in [keys::ACTORS_PREFIX, keys::REPORTS_PREFIX] {
        let keys = keys_under(&driver, prefix).await;
        assert!(
            keys.iter().any(|k| k.contains(&keeper_id)),
            "the live actor lost its key under {prefix}: {keys:?}"
        );
    }
    let names = keys_under(&driver, keys::ACTOR_NAMES_PREFIX).await;
    assert!(names.iter().any(|k| k.ends_with("keeper")), "{names:?}");
    assert_eq!(keeper.call(Get).await.unwrap(), 7);
}
