//! The failures `bench cluster` inflicts at the end of a run, and what it
//! times after each: SIGKILL of the GCS leader's node (the first
//! successful spawn, and HTTP through a surviving proxy), and SIGKILL of a
//! non-GCS node hosting replicas (until the node table drops it, and until
//! the deployment has all its replicas RUNNING elsewhere). Choosing the
//! victim and counting replicas are pure functions, tested below.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use troupe_core::id::NodeId;
use troupe_serve::spec::{self, AppStatus, ReplicaState};
use troupe_worker::Cluster;

use super::http_probe::{self, Probe};
use super::Launched;

/// How long after a kill the cluster has to recover before the bench
/// gives up.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// The route the probe requests: the deployed app's prefix.
pub fn route(app: &str) -> String {
    format!("/{app}")
}

/// SIGKILLs the node of the GCS leader (as the driver's client last saw
/// it) and returns the seconds until a spawn succeeds again and the
/// failed attempts before it (bounded: each attempt has the driver's own
/// timeout, 60 s in all); with `route`, also what HTTP requests through a
/// surviving node's proxy saw (sent every 20 ms from just before the kill
/// until a spawn and a request succeeded after it).
pub async fn leader_recovery(
    driver: &Cluster,
    cluster: &mut Launched,
    gcs_members: usize,
    route: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    use troupe_chaos::workload::actor::Tally;
    driver.state().await?;
    let leader = driver
        .gcs()
        .leader_hint()
        .context("the driver's GCS client knows no leader")?;
    let Some(k) = cluster.nodes[..gcs_members]
        .iter()
        .position(|n| n.addr == leader)
    else {
        bail!("the GCS leader {leader} is none of the launched members");
    };
    let mut probe = match route {
        Some(route) => Some(start_probe(cluster, k, route).await?),
        None => None,
    };
    eprintln!("bench: SIGKILL node {k} (GCS leader {leader})");
    let t = Instant::now();
    cluster.kill(k)?;
    let mut failures = Vec::new();
    let first_spawn_s = loop {
        let attempt = Instant::now();
        match driver.spawn::<Tally>(0).num_cpus(0.01).await {
            Ok(_) => break t.elapsed().as_secs_f64(),
            Err(e) if t.elapsed() > RECOVERY_LIMIT => {
                bail!("no spawn succeeded within 60 s of killing the GCS leader: {e}")
            }
            Err(e) => {
                failures.push(format!(
                    "after {:.2} s: {e}",
                    attempt.elapsed().as_secs_f64()
                ));
                tokio::time::sleep(Duration::from_millis(20)).await
            }
        }
    };
    let http = match probe.take() {
        Some((probe, proxy)) => Some(finish_probe(probe, proxy, t).await),
        None => None,
    };
    Ok(serde_json::json!({
        "node": k,
        "first_spawn_s": first_spawn_s,
        "failed_attempts": failures,
        "http": http,
    }))
}

/// SIGKILLs the non-GCS node holding the most RUNNING replicas of
/// `app`/`deployment` (a node without a proxy if there is one) and returns
/// how many it held, the seconds until the driver's node table no longer
/// has it, and the seconds until `replicas` replicas are RUNNING on other
/// nodes; with `route`, also what HTTP requests through another node's
/// proxy saw meanwhile.
pub async fn node_replacement(
    driver: &Cluster,
    cluster: &mut Launched,
    gcs_members: usize,
    (app, deployment, replicas): (&str, &str, u32),
    route: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let (ids, status) = driver.read_state(|s| {
        let ids: BTreeMap<String, NodeId> =
            s.nodes.values().map(|n| (n.addr.clone(), n.id)).collect();
        let status = s
            .extra
            .get(format!("{}{app}", spec::STATUS_PREFIX).as_bytes())
            .and_then(|v| spec::decode_status(v));
        (ids, status)
    });
    let status = status.with_context(|| format!("the driver's view has no status of {app}"))?;
    let held = running_by_node(&status, deployment);
    let candidates: Vec<Candidate> = cluster
        .nodes
        .iter()
        .enumerate()
        .skip(gcs_members)
        .filter(|(_, n)| !n.killed)
        .filter_map(|(k, n)| {
            let id = *ids.get(&n.addr)?;
            Some(Candidate {
                index: k,
                node: id,
                proxy: n.http.is_some(),
                replicas: held.get(&id).copied().unwrap_or(0),
            })
        })
        .collect();
    let Some(victim) = pick_victim(&candidates) else {
        bail!(
            "--kill-node: no node outside the {gcs_members} GCS members holds a RUNNING replica \
             of {app}/{deployment}; raise --nodes or --replicas"
        );
    };
    let mut probe = match route {
        Some(route) => Some(start_probe(cluster, victim.index, route).await?),
        None => None,
    };
    eprintln!(
        "bench: SIGKILL node {} ({}, {} replicas)",
        victim.index, victim.node, victim.replicas
    );
    let mut changes = driver.state_changes();
    let t = Instant::now();
    cluster.kill(victim.index)?;
    let deadline = t + RECOVERY_LIMIT;
    let (mut dead_s, mut running_s) = (None, None);
    loop {
        let (gone, running) = driver.read_state(|s| {
            let status = s
                .extra
                .get(format!("{}{app}", spec::STATUS_PREFIX).as_bytes())
                .and_then(|v| spec::decode_status(v));
            (
                !s.nodes.contains_key(&victim.node),
                status.map_or(0, |st| running_elsewhere(&st, deployment, victim.node)),
            )
        });
        let now = t.elapsed().as_secs_f64();
        if gone && dead_s.is_none() {
            dead_s = Some(now);
        }
        if running >= replicas as usize && running_s.is_none() {
            running_s = Some(now);
        }
        if dead_s.is_some() && running_s.is_some() {
            break;
        }
        match tokio::time::timeout_at(deadline.into(), changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => bail!("the driver's cluster view stopped"),
            Err(_) => bail!(
                "60 s after SIGKILL of node {}: node table dropped it: {}, {running} of \
                 {replicas} replicas RUNNING elsewhere",
                victim.index,
                dead_s.map_or("no".to_string(), |s| format!("after {s:.2} s")),
            ),
        }
    }
    let http = match probe.take() {
        Some((probe, proxy)) => Some(finish_probe(probe, proxy, t).await),
        None => None,
    };
    Ok(serde_json::json!({
        "node": victim.index,
        "replicas_held": victim.replicas,
        "dead_s": dead_s,
        "replicas_running_s": running_s,
        "http": http,
    }))
}

/// Picks a proxy on a live node other than `victim`, checks it answers
/// `route`, and starts probing it; the probe and the proxy's address.
async fn start_probe(
    cluster: &Launched,
    victim: usize,
    route: &str,
) -> anyhow::Result<(Probe, String)> {
    let Some(proxy) = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(k, n)| *k != victim && !n.killed)
        .find_map(|(_, n)| n.http.clone())
    else {
        bail!(
            "no node but node {victim} runs an HTTP proxy to measure HTTP through; \
             raise --http-nodes (or pass --http-nodes 0 to measure no HTTP)"
        );
    };
    http_probe::await_ok(&proxy, route, Instant::now() + RECOVERY_LIMIT)
        .await
        .map_err(|e| anyhow::anyhow!("the proxy at {proxy} never answered GET {route}: {e}"))?;
    let probe = Probe::start(proxy.clone(), route.to_owned());
    // One success before the kill: the baseline the gap is measured from.
    let mut probe = probe;
    if !probe
        .success_after(Duration::ZERO, Instant::now() + RECOVERY_LIMIT)
        .await
    {
        bail!("the probe of {proxy} had no success before the kill");
    }
    Ok((probe, proxy))
}

/// Waits (bounded) for a successful request after the kill at `t`, stops
/// the probe and summarises it.
async fn finish_probe(mut probe: Probe, proxy: String, t: Instant) -> serde_json::Value {
    let kill = probe.offset(t);
    probe.success_after(kill, t + RECOVERY_LIMIT).await;
    let (samples, end) = probe.stop().await;
    let mut s = http_probe::summary(&samples, kill, end);
    s["proxy"] = serde_json::json!(proxy);
    s
}

/// A node that may be killed by `--kill-node`.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its index among the launched nodes.
    pub index: usize,
    pub node: NodeId,
    /// Whether it runs an HTTP proxy.
    pub proxy: bool,
    /// RUNNING replicas it holds.
    pub replicas: usize,
}

/// The node to kill: one holding replicas, preferably without a proxy
/// (so the probe has a proxy elsewhere), then the most replicas, then the
/// first launched. Pure.
pub fn pick_victim(candidates: &[Candidate]) -> Option<Candidate> {
    candidates
        .iter()
        .filter(|c| c.replicas > 0)
        .min_by_key(|c| (c.proxy, std::cmp::Reverse(c.replicas), c.index))
        .cloned()
}

/// RUNNING replicas of `deployment` per node. Pure.
pub fn running_by_node(status: &AppStatus, deployment: &str) -> BTreeMap<NodeId, usize> {
    let mut out = BTreeMap::new();
    for r in status
        .deployments
        .get(deployment)
        .into_iter()
        .flat_map(|d| &d.replicas)
    {
        if let (ReplicaState::Running, Some(node)) = (r.state, r.node) {
            *out.entry(node).or_default() += 1;
        }
    }
    out
}

/// RUNNING replicas of `deployment` on nodes other than `dead`. Pure.
pub fn running_elsewhere(status: &AppStatus, deployment: &str, dead: NodeId) -> usize {
    running_by_node(status, deployment)
        .iter()
        .filter(|(node, _)| **node != dead)
        .map(|(_, n)| n)
        .sum()
}

/// The printed lines for the two kills' results in the order they run
/// (null: not run).
pub fn table_lines(leader: &serde_json::Value, node: &serde_json::Value) -> String {
    let mut out = String::new();
    if !node.is_null() {
        let secs = |v: &serde_json::Value| match v.as_f64() {
            Some(s) => format!("{s:.2} s"),
            None => "never".into(),
        };
        out.push_str(&format!(
            "non-GCS node {} SIGKILLed holding {} replica(s): gone from the node table after {}, \
             all replicas RUNNING elsewhere after {}\n",
            node["node"],
            node["replicas_held"],
            secs(&node["dead_s"]),
            secs(&node["replicas_running_s"]),
        ));
        if !node["http"].is_null() {
            out.push_str(&http_probe::line(&node["http"]));
        }
    }
    if let Some(s) = leader["first_spawn_s"].as_f64() {
        let failed = leader["failed_attempts"].as_array().map_or(0, Vec::len);
        out.push_str(&format!(
            "GCS leader's node SIGKILLed: first spawn after {s:.2} s ({failed} failed attempts before it)\n"
        ));
        if !leader["http"].is_null() {
            out.push_str(&http_probe::line(&leader["http"]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_core::id::{ActorId, ReplicaId};
    use troupe_serve::spec::{AppState, DeploymentState, DeploymentStatus, ReplicaStatus};

    fn candidate(index: usize, proxy: bool, replicas: usize) -> Candidate {
        Candidate {
            index,
            node: NodeId::new(index as u64 + 1),
            proxy,
            replicas,
        }
    }

    #[test]
    fn the_victim_holds_replicas_and_preferably_no_proxy() {
        let picked = |c: &[Candidate]| pick_victim(c).map(|c| c.index);
        assert_eq!(
            picked(&[
                candidate(3, true, 5),
                candidate(4, false, 1),
                candidate(5, false, 2)
            ]),
            Some(5)
        );
        assert_eq!(
            picked(&[candidate(3, true, 1), candidate(4, false, 0)]),
            Some(3)
        );
        assert_eq!(
            picked(&[candidate(3, false, 2), candidate(4, false, 2)]),
            Some(3)
        );
        assert_eq!(picked(&[candidate(3, false, 0)]), None);
        assert_eq!(picked(&[]), None);
    }

    fn status(replicas: &[(u64, ReplicaState)]) -> AppStatus {
        let replicas = replicas
            .iter()
            .enumerate()
            .map(|(i, (node, state))| ReplicaStatus {
                id: ReplicaId::new(i as u64),
                actor: ActorId::new(i as u64),
                version: 1,
                state: *state,
                node: Some(NodeId::new(*node)),
            })
            .collect();
        AppStatus {
            name: "noop".into(),
            state: AppState::Running,
            message: String::new(),
            version: 1,
            deployments: BTreeMap::from([(
                "noop".to_string(),
                DeploymentStatus {
                    state: DeploymentState::Healthy,
                    message: String::new(),
                    target_replicas: 4,
                    replicas,
                },
            )]),
        }
    }

    #[test]
    fn running_replicas_are_counted_per_node_and_outside_the_dead_one() {
        use ReplicaState::*;
        let st = status(&[(1, Running), (1, Running), (2, Running), (3, Starting)]);
        let by_node = running_by_node(&st, "noop");
        assert_eq!(
            by_node,
            BTreeMap::from([(NodeId::new(1), 2), (NodeId::new(2), 1)])
        );
        assert_eq!(running_elsewhere(&st, "noop", NodeId::new(1)), 1);
        assert_eq!(running_elsewhere(&st, "noop", NodeId::new(9)), 3);
        assert_eq!(running_elsewhere(&st, "other", NodeId::new(9)), 0);
    }

    #[test]
    fn the_table_shows_both_kills() {
        let leader = serde_json::json!({
            "first_spawn_s": 0.7105, "failed_attempts": [{"s": 3.0}],
            "http": {"proxy": "127.0.0.1:9", "first_success_s": 0.02, "longest_gap_s": 0.04,
                     "failed_after_kill": 0, "requests_after_kill": 40},
        });
        let node = serde_json::json!({
            "node": 4, "replicas_held": 2, "dead_s": 3.21, "replicas_running_s": null, "http": null,
        });
        let text = table_lines(&leader, &node);
        assert!(
            text.contains("first spawn after 0.71 s (1 failed attempts before it)"),
            "{text}"
        );
        assert!(
            text.contains("HTTP via 127.0.0.1:9: first success after 0.02 s"),
            "{text}"
        );
        assert!(
            text.contains("node 4 SIGKILLed holding 2 replica(s): gone from the node table after 3.21 s, all replicas RUNNING elsewhere after never"),
            "{text}"
        );
        assert!(table_lines(&serde_json::Value::Null, &serde_json::Value::Null).is_empty());
    }
}
