//! Looking at the cluster from outside, as an operator would: each node's
//! `/metrics` (who leads the GCS, its term) and the admin API's
//! applications (replicas per deployment, where they run). Used by the
//! prober (about twice a second, for the report's charts and recovery
//! times) and by the injector (to choose targets by role).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::fault::RoleView;
use crate::record::ProbeSample;
use crate::workload::client;

/// How long one probe request may take: a paused or cut-off node must not
/// hold up the others.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// The value of an unlabelled sample `name` in a Prometheus text page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest = rest.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

/// Running replicas and targets per `app/deployment`, and nodes hosting
/// each deployment: what [`replicas_of`] reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replicas {
    /// Running replicas per `app/deployment`.
    pub running: BTreeMap<String, usize>,
    /// Target replicas per `app/deployment`.
    pub targets: BTreeMap<String, usize>,
    /// Nodes hosting running replicas, by `app/deployment` and by
    /// `deployment`.
    pub hosting: BTreeMap<String, Vec<usize>>,
}

/// Running replicas and targets per `app/deployment`, and the nodes
/// hosting each deployment (by `app/deployment` and by `deployment`), from
/// the admin API's applications document; nodes are matched by the ids
/// they printed.
pub fn replicas_of(apps: &Value, node_ids: &[String]) -> Replicas {
    let (mut running, mut targets, mut hosting) = (
        BTreeMap::new(),
        BTreeMap::new(),
        BTreeMap::<String, Vec<usize>>::new(),
    );
    let Some(apps) = apps.get("applications").and_then(Value::as_object) else {
        return Replicas::default();
    };
    for (app, body) in apps {
        let Some(deployments) = body.get("deployments").and_then(Value::as_object) else {
            continue;
        };
        for (name, d) in deployments {
            let key = format!("{app}/{name}");
            let target = d
                .get("target_num_replicas")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            targets.insert(key.clone(), target as usize);
            let mut count = 0;
            for r in d
                .get("replicas")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if r.get("state").and_then(Value::as_str) != Some("RUNNING") {
                    continue;
                }
                count += 1;
                let node = r.get("node_id").and_then(Value::as_str);
                if let Some(i) = node.and_then(|n| node_ids.iter().position(|id| id == n)) {
                    for k in [key.clone(), name.clone()] {
                        let list = hosting.entry(k).or_default();
                        if !list.contains(&i) {
                            list.push(i);
                        }
                    }
                }
            }
            running.insert(key, count);
        }
    }
    Replicas {
        running,
        targets,
        hosting,
    }
}

/// One look at the cluster: the role view for the injector and a sample
/// for the report, taken at `at_ms`.
pub async fn observe(cluster: &Cluster, at_ms: u64) -> (RoleView, ProbeSample) {
    let states = cluster.states();
    let up: Vec<usize> = (0..states.len())
        .filter(|i| states[*i].pid.is_some() && !states[*i].paused)
        .collect();
    let pages = futures::future::join_all(up.iter().map(|&i| async move {
        let page = client::get(&cluster.addrs(i).admin, "/metrics", PROBE_TIMEOUT).await;
        (
            i,
            page.map(|(_, body)| String::from_utf8_lossy(&body).into_owned()),
        )
    }))
    .await;
    let mut leader = None;
    let mut term = None::<u64>;
    for (i, page) in &pages {
        let Some(page) = page else { continue };
        if metric(page, "troupe_gcs_is_leader") == Some(1.0) {
            leader = Some(*i);
        }
        if let Some(t) = metric(page, "troupe_gcs_term") {
            term = Some(term.map_or(t as u64, |old| old.max(t as u64)));
        }
    }
    // The applications document from the leader's node first: its view is
    // the freshest.
    let mut order: Vec<usize> = leader.into_iter().collect();
    order.extend(up.iter().copied().filter(|i| Some(*i) != leader));
    let mut apps = None;
    for i in order {
        if let Some((200, body)) = client::get(
            &cluster.addrs(i).admin,
            "/api/serve/applications/",
            PROBE_TIMEOUT * 2,
        )
        .await
        {
            apps = serde_json::from_slice::<Value>(&body).ok();
            if apps.is_some() {
                break;
            }
        }
    }
    let node_ids: Vec<String> = states.iter().map(|s| s.node_id.clone()).collect();
    let Replicas {
        running: replicas,
        targets,
        hosting,
    } = apps
        .as_ref()
        .map(|a| replicas_of(a, &node_ids))
        .unwrap_or_default();
    let view = RoleView {
        up: up.clone(),
        leader,
        members: (0..cluster.spec().gcs_members).collect(),
        hosting,
    };
    let sample = ProbeSample {
        at_ms,
        leader,
        term,
        replicas,
        targets,
        up: cluster.up(),
    };
    (view, sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let page = "# HELP troupe_gcs_term x\ntroupe_gcs_term_other 9\ntroupe_gcs_term 7\ntroupe_gcs_is_leader 1\n";
        assert_eq!(metric(page, "troupe_gcs_term"), Some(7.0));
        assert_eq!(metric(page, "troupe_gcs_is_leader"), Some(1.0));
        assert_eq!(metric(page, "troupe_gcs_apply_lag_entries"), None);
    }

    #[test]
    fn replicas_are_counted_running_only_and_mapped_to_nodes() {
        let apps = serde_json::json!({"applications": {"chain": {"deployments": {
            "count": {"target_num_replicas": 3, "replicas": [
                {"state": "RUNNING", "node_id": "node-a"},
                {"state": "STARTING", "node_id": "node-b"},
                {"state": "RUNNING", "node_id": "node-c"}]}}}}});
        let ids = vec!["node-a".to_string(), "node-b".into(), "node-c".into()];
        let Replicas {
            running,
            targets,
            hosting,
        } = replicas_of(&apps, &ids);
        assert_eq!(running["chain/count"], 2);
        assert_eq!(targets["chain/count"], 3);
        assert_eq!(hosting["count"], vec![0, 2]);
        assert_eq!(hosting["chain/count"], vec![0, 2]);
    }
}
