//! The serve controller's autoscaler: each round it turns the routers'
//! reports ([`crate::reporter`]) into a sample per autoscaled deployment,
//! asks the pure [`decide`] for the target, and hands the round the specs
//! with those targets as their replica counts.
//!
//! A target and the state [`decide`] carries are stored in the GCS, at
//! `/troupe/serve/autoscale/<app>` ([`AutoscaleRecord`]), whenever a
//! decision changes them, fenced with the round's other writes: a
//! controller that takes over starts from the last decision, not from the
//! deployment's initial count, and with an empty metrics window, which
//! [`decide`] never scales down on (no downscale burst after a failover).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use troupe_worker::schema::{self, Record};
use troupe_worker::ClusterState;

use crate::autoscale::{decide, Decision, DeploymentKey, MetricsStore, Replicas, ScaleState};
use crate::spec::{AppSpec, AppStatus, ReplicaState};

/// Prefix of the autoscaling records.
pub const AUTOSCALE_PREFIX: &str = "/troupe/serve/autoscale/";

/// An application's autoscaled deployments: their targets and the state
/// their decisions carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoscaleRecord {
    pub app: String,
    /// By deployment name.
    pub deployments: BTreeMap<String, DeploymentScale>,
}

impl Record for AutoscaleRecord {
    const KIND: &'static str = "serve autoscaling record";
}

/// One autoscaled deployment's target, state and last decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentScale {
    pub target: u32,
    pub state: ScaleState,
    /// The last change of target, with its reason (for status).
    pub last: Option<Decision>,
}

/// The autoscaling records in `state`, by application.
pub fn records(state: &ClusterState) -> BTreeMap<String, AutoscaleRecord> {
    state
        .extra
        .range(AUTOSCALE_PREFIX.as_bytes().to_vec()..)
        .take_while(|(k, _)| k.starts_with(AUTOSCALE_PREFIX.as_bytes()))
        .filter_map(|(_, v)| schema::decode::<AutoscaleRecord>(v).ok())
        .map(|r| (r.app.clone(), r))
        .collect()
}

/// What one round of the autoscaler gives the controller.
#[derive(Debug, Default)]
pub struct Scaled {
    /// The specs with each autoscaled deployment's target as its count.
    pub specs: BTreeMap<String, AppSpec>,
    /// Records to write (a decision changed them).
    pub write: Vec<AutoscaleRecord>,
    /// Applications whose record to delete (deleted, or no longer
    /// autoscaled).
    pub delete: Vec<String>,
    /// The requests each replica of an autoscaled deployment ran at its
    /// last report: a downscale takes the least loaded.
    pub replica_loads: BTreeMap<troupe_core::id::ReplicaId, f64>,
}

/// How long a replica's reported load counts for a downscale's choice.
const REPLICA_LOAD_FRESH_MS: u64 = 5_000;

/// The controller's autoscaler, for one leadership term.
pub struct Autoscaler {
    store: Arc<Mutex<MetricsStore>>,
    /// The records as this controller last read or wrote them.
    records: BTreeMap<String, AutoscaleRecord>,
}

impl Autoscaler {
    /// Starts from the stored records (the last controller's decisions).
    pub fn new(store: Arc<Mutex<MetricsStore>>, stored: BTreeMap<String, AutoscaleRecord>) -> Self {
        Autoscaler {
            store,
            records: stored,
        }
    }

    /// One round at `now_ms`.
    pub fn round(
        &mut self,
        specs: &BTreeMap<String, AppSpec>,
        statuses: &BTreeMap<String, AppStatus>,
        now_ms: u64,
    ) -> Scaled {
        let mut scaled = Scaled {
            specs: specs.clone(),
            ..Scaled::default()
        };
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        for spec in scaled.specs.values_mut() {
            let mut record =
                self.records
                    .get(&spec.name)
                    .cloned()
                    .unwrap_or_else(|| AutoscaleRecord {
                        app: spec.name.clone(),
                        deployments: BTreeMap::new(),
                    });
            let before = record.clone();
            record.deployments.retain(|name, _| {
                spec.deployments
                    .iter()
                    .any(|d| &d.name == name && d.autoscaling.is_some())
            });
            for d in &mut spec.deployments {
                let Some(policy) = d.autoscaling else {
                    continue;
                };
                let key = DeploymentKey::new(spec.name.clone(), d.name.clone());
                let scale =
                    record
                        .deployments
                        .entry(d.name.clone())
                        .or_insert_with(|| DeploymentScale {
                            target: d.num_replicas,
                            ..DeploymentScale::default()
                        });
                scale.target = scale.target.clamp(policy.min_replicas, policy.max_replicas);
                if let Some(load) =
                    store.tick(&key, now_ms, policy.stale_after_ms(), policy.look_back_ms)
                {
                    crate::metrics::metrics()
                        .autoscaling_load
                        .with_label_values(&[spec.name.as_str(), d.name.as_str()])
                        .set(load);
                }
                let window = store.window(&key, now_ms, policy.look_back_ms);
                let running = running(statuses, &spec.name, &d.name, d.version);
                let current = Replicas {
                    target: scale.target,
                    running,
                };
                let (target, state, decision) =
                    decide(&policy, &window, current, now_ms, &scale.state);
                if let Some(decision) = decision {
                    tracing::info!(
                        app = %spec.name,
                        deployment = %d.name,
                        from = decision.from,
                        to = decision.to,
                        reason = %decision.reason,
                        "autoscaling decision"
                    );
                    crate::metrics::metrics()
                        .autoscaling_decisions
                        .with_label_values(&[spec.name.as_str(), d.name.as_str()])
                        .inc();
                    scale.target = target;
                    scale.state = state;
                    scale.last = Some(decision);
                } else {
                    // Timers and the like: kept in memory, written with the
                    // next decision.
                    scale.state = state;
                }
                crate::metrics::metrics()
                    .autoscaling_target
                    .with_label_values(&[spec.name.as_str(), d.name.as_str()])
                    .set(i64::from(scale.target));
                d.num_replicas = scale.target;
            }
            let changed = |a: &AutoscaleRecord, b: &AutoscaleRecord| {
                a.deployments.len() != b.deployments.len()
                    || a.deployments.iter().any(|(name, s)| {
                        b.deployments
                            .get(name)
                            .is_none_or(|o| o.target != s.target || o.last != s.last)
                    })
            };
            if record.deployments.is_empty() {
                if self.records.remove(&spec.name).is_some() {
                    scaled.delete.push(spec.name.clone());
                }
                continue;
            }
            if changed(&record, &before) {
                scaled.write.push(record.clone());
            }
            self.records.insert(spec.name.clone(), record);
        }
        scaled.replica_loads = store
            .replica_loads(now_ms, REPLICA_LOAD_FRESH_MS)
            .into_iter()
            .filter_map(|(id, load)| Some((id.parse().ok()?, load)))
            .collect();
        let gone: Vec<String> = self
            .records
            .keys()
            .filter(|app| !specs.contains_key(*app))
            .cloned()
            .collect();
        for app in gone {
            self.records.remove(&app);
            scaled.delete.push(app);
        }
        scaled
    }
}

/// Running replicas of `app`/`deployment` at `version`, from the last
/// status the controller wrote.
fn running(
    statuses: &BTreeMap<String, AppStatus>,
    app: &str,
    deployment: &str,
    version: u64,
) -> u32 {
    statuses
        .get(app)
        .and_then(|s| s.deployments.get(deployment))
        .map_or(0, |d| {
            d.replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Running && r.version == version)
                .count() as u32
        })
}

#[cfg(test)]
mod tests;

/// What status shows of `app`/`deployment`'s autoscaling (admin API and
/// `serve status --json`): its bounds, target and last decision; `None`
/// when it is not autoscaled.
pub fn status_json(
    spec: &AppSpec,
    deployment: &str,
    record: Option<&AutoscaleRecord>,
) -> Option<serde_json::Value> {
    let d = spec.deployments.iter().find(|d| d.name == deployment)?;
    let policy = d.autoscaling?;
    let scale = record.and_then(|r| r.deployments.get(deployment));
    let last = scale.and_then(|s| s.last.as_ref()).map(|l| {
        serde_json::json!({
            "direction": match l.direction {
                crate::autoscale::Direction::Up => "UP",
                crate::autoscale::Direction::Down => "DOWN",
            },
            "from": l.from,
            "to": l.to,
            "at_ms": l.at_ms,
            "reason": l.reason,
        })
    });
    Some(serde_json::json!({
        "min_replicas": policy.min_replicas,
        "max_replicas": policy.max_replicas,
        "target_replicas": scale.map_or(d.num_replicas, |s| s.target),
        "last_decision": last,
    }))
}

/// The line `serve status` prints under an autoscaled deployment:
/// `autoscaled 0..8; last: up 1 -> 4 (at least 8 ongoing requests ...)`.
pub fn status_line(
    spec: &AppSpec,
    deployment: &str,
    record: Option<&AutoscaleRecord>,
) -> Option<String> {
    let d = spec.deployments.iter().find(|d| d.name == deployment)?;
    let policy = d.autoscaling?;
    let last = record
        .and_then(|r| r.deployments.get(deployment))
        .and_then(|s| s.last.as_ref())
        .map_or_else(
            || "no scaling decision yet".to_owned(),
            |l| {
                let way = match l.direction {
                    crate::autoscale::Direction::Up => "up",
                    crate::autoscale::Direction::Down => "down",
                };
                format!("last: {way} {} -> {} ({})", l.from, l.to, l.reason)
            },
        );
    Some(format!(
        "autoscaled {}..{}; {last}",
        policy.min_replicas, policy.max_replicas
    ))
}
