//! What the bench does to the cluster through a driver and times:
//! spawning actors (throughput and latency percentiles), deploying an
//! application, and the watch events each node's cluster view received
//! meanwhile. The config, the percentiles and the watch summary are pure,
//! tested below.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use troupe_core::id::NodeId;
use troupe_serve::config;
use troupe_serve::{declarative, Catalog};
use troupe_worker::{Cluster, WatchCounts};

pub(super) struct Spawns {
    pub(super) per_s: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
}

/// Spawns `m` Tally actors, `concurrency` at a time, timing each.
pub(super) async fn spawn_actors(
    driver: &Cluster,
    m: usize,
    concurrency: usize,
) -> anyhow::Result<Spawns> {
    use troupe_chaos::workload::actor::Tally;
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..m {
        let permit = permits.clone().acquire_owned().await?;
        let driver = driver.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let r = driver.spawn::<Tally>(0).num_cpus(0.01).await.map(|_| ());
            drop(permit);
            r.map(|()| t.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(m);
    while let Some(r) = tasks.join_next().await {
        latencies.push(r?.context("spawning an actor")?);
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(Spawns {
        per_s: m as f64 / wall.max(1e-9),
        p50_ms: percentile_ms(&mut latencies, 0.50),
        p99_ms: percentile_ms(&mut latencies, 0.99),
    })
}

/// Deploys `app` with `replicas` replicas of `deployment` (0.01 CPU each)
/// and returns the seconds until it is RUNNING with all of them.
pub(super) async fn deploy(
    driver: &Cluster,
    catalog: &Catalog,
    app: &str,
    deployment: &str,
    replicas: u32,
) -> anyhow::Result<f64> {
    let yaml = deploy_yaml(app, deployment, replicas);
    let (config, _) = config::check_yaml(&yaml, catalog)
        .map_err(|e| anyhow::anyhow!("the bench's config is not valid:\n{e}"))?;
    let t = Instant::now();
    let done = declarative::apply(driver, catalog, &config).await?;
    declarative::wait_deployed(driver, &done, Duration::from_secs(900), |_| {}).await?;
    Ok(t.elapsed().as_secs_f64())
}

fn deploy_yaml(app: &str, deployment: &str, replicas: u32) -> String {
    format!(
        "applications:\n  - name: {app}\n    route_prefix: /{app}\n    app: {app}\n    deployments:\n      \
         - name: {deployment}\n        num_replicas: {replicas}\n        actor_options: {{ num_cpus: 0.01 }}\n"
    )
}

/// Every registered node's watch counts (`worker.watch_stats`), asked
/// concurrently; a node that does not answer within 5 s is left out.
pub(super) async fn watch_counts(driver: &Cluster) -> BTreeMap<NodeId, WatchCounts> {
    let nodes: Vec<NodeId> = driver.read_state(|s| s.nodes.keys().copied().collect());
    let mut asks = tokio::task::JoinSet::new();
    for node in nodes {
        let driver = driver.clone();
        asks.spawn(async move {
            let counts = driver.watch_counts_of(node, Duration::from_secs(5)).await;
            (node, counts)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(Ok((node, counts))) = asks.join_next().await {
        match counts {
            Ok(counts) => {
                out.insert(node, counts);
            }
            Err(e) => eprintln!("bench: no watch counts from {node}: {e}"),
        }
    }
    out
}

/// The watch events each node received between `before` and `after`:
/// nodes with a full view (GCS members') and the others apart. Nodes
/// missing from either are left out.
pub(super) fn watch_summary(
    before: &BTreeMap<NodeId, WatchCounts>,
    after: &BTreeMap<NodeId, WatchCounts>,
) -> serde_json::Value {
    let mut full = Vec::new();
    let mut narrow = Vec::new();
    let mut follows = Vec::new();
    for (node, a) in after {
        let Some(b) = before.get(node) else { continue };
        let events = a.events.saturating_sub(b.events);
        if a.full {
            full.push(events);
        } else {
            narrow.push(events);
            follows.push(a.follows);
        }
    }
    let mean = |v: &[u64]| match v.len() {
        0 => None,
        n => Some(v.iter().sum::<u64>() as f64 / n as f64),
    };
    serde_json::json!({
        "full_views": full.len(),
        "full_mean_events": mean(&full),
        "narrow_views": narrow.len(),
        "narrow_mean_events": mean(&narrow),
        "narrow_max_events": narrow.iter().max(),
        "narrow_mean_watches": mean(&follows),
    })
}

/// The value at quantile `q` (nearest rank), in milliseconds.
fn percentile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        samples.reverse();
        assert_eq!(percentile_ms(&mut samples, 0.99), 99.0);
        assert_eq!(percentile_ms(&mut samples, 0.50), 50.0);
        assert_eq!(percentile_ms(&mut [], 0.99), 0.0);
    }

    #[test]
    fn watch_events_are_summed_per_kind_of_view() {
        let counts = |events, follows, full| WatchCounts {
            events,
            batches: events,
            follows,
            full,
        };
        let (a, b, c, gone) = (
            NodeId::new(1),
            NodeId::new(2),
            NodeId::new(3),
            NodeId::new(4),
        );
        let before = BTreeMap::from([
            (a, counts(100, 1, true)),
            (b, counts(10, 4, false)),
            (c, counts(10, 4, false)),
            (gone, counts(5, 4, false)),
        ]);
        let after = BTreeMap::from([
            (a, counts(3_100, 1, true)),
            (b, counts(40, 4, false)),
            (c, counts(20, 6, false)),
        ]);
        let s = watch_summary(&before, &after);
        assert_eq!(s["full_views"], 1);
        assert_eq!(s["full_mean_events"], 3000.0);
        assert_eq!(s["narrow_views"], 2);
        assert_eq!(s["narrow_mean_events"], 20.0);
        assert_eq!(s["narrow_max_events"], 30);
        assert_eq!(s["narrow_mean_watches"], 5.0);
        let none = watch_summary(&before, &BTreeMap::new());
        assert!(none["full_mean_events"].is_null());
    }

    #[test]
    fn the_deploy_config_sets_the_replica_count() {
        let yaml = deploy_yaml("noop", "noop", 1000);
        assert!(yaml.contains("num_replicas: 1000"));
        assert!(yaml.contains("app: noop"));
    }
}
