//! Deploying a whole [`ServeConfig`] declaratively: the config is the
//! desired state of every application, so applications missing from it are
//! deleted. One GCS transaction writes it all, fenced on what it read, so
//! concurrent deploys (two `PUT /api/serve/applications/`, two `serve
//! deploy`s) never interleave: the last one wins whole.
//!
//! The config as deployed is kept at [`CONFIG_KEY`] (JSON) for `troupe
//! serve config` and the REST API's GET.

use std::collections::BTreeMap;

use troupe_core::config::ConfigError;
use troupe_gcs::{
    Compare, CompareOp, CompareTarget, DeleteRequest, KeySelector, Operation, PutRequest,
    RangeRequest, TxnOp, TxnRequest,
};
use troupe_worker::{schema, Cluster};

use crate::app::successor;
use crate::catalog::Catalog;
use crate::config::{build_specs, parse_value, ServeConfig};
use crate::spec::{
    AppSpec, AppState, AppStatus, DeploymentState, ReplicaState, APPS_PREFIX, DEPLOYED_AT_PREFIX,
    STATUS_PREFIX,
};

/// Where the last deployed config is kept.
pub const CONFIG_KEY: &str = "/troupe/serve/config";

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The config is invalid for this binary: nothing was changed.
    #[error("{0}")]
    Invalid(#[from] ConfigError),
    /// The control store could not be reached: retry.
    #[error("the control store is unavailable: {0}; retry, or check that a majority of GCS members runs")]
    Unavailable(String),
    /// What the config would store is over the control store's size
    /// limits (`troupe_gcs::kv::limits`): nothing was changed.
    #[error("{0}")]
    TooLarge(String),
}

/// What a deploy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployed {
    /// Every application of the config, with its version.
    pub versions: BTreeMap<String, u64>,
    /// Applications whose spec changed.
    pub changed: Vec<String>,
    /// Applications deleted because the config no longer has them.
    pub deleted: Vec<String>,
    /// Every application of the config as deployed: what
    /// [`wait_deployed`] waits for.
    pub targets: BTreeMap<String, AppTarget>,
    /// The applications of the config that were deployed before, as they
    /// were.
    pub before: BTreeMap<String, AppTarget>,
    /// By application, its deployments that kept their replicas and got a
    /// new `user_config`: the serve controller hands it to `reconfigure`
    /// on each running replica, in place.
    pub reconfigured: BTreeMap<String, Vec<String>>,
}

/// What one application was deployed as: its version and each
/// deployment's replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppTarget {
    pub version: u64,
    /// By deployment name; `None` when only the version is known (then
    /// any replica count the controller reports at that version will do).
    pub deployments: Option<BTreeMap<String, DeploymentTarget>>,
}

/// One deployment's replicas as deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentTarget {
    /// Its replicas' version (older ones are being replaced).
    pub version: u64,
    /// Its replica count; for an autoscaled deployment, the count it
    /// starts with.
    pub num_replicas: u32,
    /// Whether the autoscaler sets its count (then any target the
    /// controller reports will do).
    pub autoscaled: bool,
}

impl AppTarget {
    /// The target `spec` sets.
    pub fn of(spec: &AppSpec) -> AppTarget {
        AppTarget {
            version: spec.version,
            deployments: Some(
                spec.deployments
                    .iter()
                    .map(|d| {
                        let target = DeploymentTarget {
                            version: d.version,
                            num_replicas: d.num_replicas,
                            autoscaled: d.autoscaling.is_some(),
                        };
                        (d.name.clone(), target)
                    })
                    .collect(),
            ),
        }
    }

    /// A target of which only the version is known.
    pub fn version_only(version: u64) -> AppTarget {
        AppTarget {
            version,
            deployments: None,
        }
    }

    /// `count 3, pipeline 1` (replicas per deployment).
    fn replicas_text(&self) -> String {
        let Some(deployments) = &self.deployments else {
            return String::new();
        };
        let parts: Vec<String> = deployments
            .iter()
            .map(|(d, t)| format!("{d} {}", t.num_replicas))
            .collect();
        format!("replicas: {}", parts.join(", "))
    }
}

/// One line per application saying what the deploy did (created, updated
/// to a new version, rescaled at the same version, unchanged, deleted) and
/// the replicas it now asks for. Pure.
pub fn deployed_lines(done: &Deployed) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, target) in &done.targets {
        let v = target.version;
        let replicas = target.replicas_text();
        let what = match done.before.get(name) {
            None => format!("created at version {v} ({replicas})"),
            Some(before) if before.version != v => format!(
                "updated to version {v} (from version {}; new replicas replace the old ones) ({replicas})",
                before.version
            ),
            Some(before) if before != target || done.changed.contains(name) => {
                let counts = rescaled(before, target);
                let reconfiguring = done
                    .reconfigured
                    .get(name)
                    .map(|d| reconfiguring(d, target))
                    .unwrap_or_default();
                match (counts.is_empty(), reconfiguring.is_empty()) {
                    (true, true) => {
                        format!("options changed at version {v}, replicas kept ({replicas})")
                    }
                    (false, true) => format!(
                        "rescaled at version {v}: {}, replicas kept",
                        counts.join(", ")
                    ),
                    (true, false) => format!(
                        "user_config changed at version {v}: {reconfiguring}, replicas kept ({replicas})"
                    ),
                    (false, false) => format!(
                        "rescaled at version {v}: {}, replicas kept; user_config changed: {reconfiguring}",
                        counts.join(", ")
                    ),
                }
            }
            Some(_) => format!("unchanged at version {v} ({replicas})"),
        };
        lines.push(format!("application {name}: {what}"));
    }
    for name in &done.deleted {
        lines.push(format!("application {name}: deleted (not in the config)"));
    }
    lines
}

/// `reconfiguring x's 3 replicas and y's 1 replica in place`: the
/// deployments whose new `user_config` is applied by `reconfigure`, with
/// the replicas they are to have.
fn reconfiguring(deployments: &[String], target: &AppTarget) -> String {
    if deployments.is_empty() {
        return String::new();
    }
    let each: Vec<String> = deployments
        .iter()
        .map(|d| {
            let n = target
                .deployments
                .as_ref()
                .and_then(|t| t.get(d))
                .map_or(0, |t| t.num_replicas);
            let noun = if n == 1 { "replica" } else { "replicas" };
            format!("{d}'s {n} {noun}")
        })
        .collect();
    format!("reconfiguring {} in place", each.join(" and "))
}

/// `count 1 -> 3` for each deployment whose replica count changed.
fn rescaled(before: &AppTarget, after: &AppTarget) -> Vec<String> {
    let (Some(old), Some(new)) = (&before.deployments, &after.deployments) else {
        return Vec::new();
    };
    new.iter()
        .filter_map(|(d, t)| {
            let was = old.get(d).map_or(0, |o| o.num_replicas);
            (was != t.num_replicas).then(|| format!("{d} {was} -> {} replicas", t.num_replicas))
        })
        .collect()
}

/// The changes that take `current` (stored specs by name) to `desired`:
/// the new specs (versioned as successors of the stored ones), which
/// changed, and which to delete. Pure.
pub fn plan(
    current: &BTreeMap<String, AppSpec>,
    desired: Vec<AppSpec>,
) -> (Vec<AppSpec>, Deployed) {
    let mut outcome = Deployed::default();
    let mut specs = Vec::new();
    for spec in desired {
        let old = current.get(&spec.name);
        let spec = successor(old, spec);
        outcome.versions.insert(spec.name.clone(), spec.version);
        outcome
            .targets
            .insert(spec.name.clone(), AppTarget::of(&spec));
        if let Some(old) = old {
            outcome.before.insert(spec.name.clone(), AppTarget::of(old));
        }
        if old != Some(&spec) {
            outcome.changed.push(spec.name.clone());
        }
        let reconfigured = old
            .map(|o| reconfigured_in_place(o, &spec))
            .unwrap_or_default();
        if !reconfigured.is_empty() {
            outcome.reconfigured.insert(spec.name.clone(), reconfigured);
        }
        specs.push(spec);
    }
    outcome.deleted = current
        .keys()
        .filter(|name| !outcome.versions.contains_key(*name))
        .cloned()
        .collect();
    (specs, outcome)
}

/// The deployments of `new` (the successor of `old`) that keep their
/// replicas and have a new `user_config` to apply in place (a removed one
/// is not: the replicas keep the last they applied, as in Ray Serve).
/// Pure.
pub fn reconfigured_in_place(old: &AppSpec, new: &AppSpec) -> Vec<String> {
    new.deployments
        .iter()
        .filter(|d| {
            d.user_config.is_some()
                && old.deployments.iter().any(|p| {
                    p.name == d.name && p.version == d.version && p.user_config != d.user_config
                })
        })
        .map(|d| d.name.clone())
        .collect()
}

/// Deploys `config` as the whole desired state: every application it
/// names is built with `catalog` (all problems reported, nothing applied
/// when there is one), and applications it does not name are deleted.
pub async fn apply(
    cluster: &Cluster,
    catalog: &Catalog,
    config: &ServeConfig,
) -> Result<Deployed, DeployError> {
    let desired = build_specs(config, catalog)?;
    let gcs = cluster.gcs();
    let unavailable =
        |e: troupe_gcs::client::GcsClientError| DeployError::Unavailable(e.to_string());
    let config_json = serde_json::to_vec(config).expect("a config always serializes");
    let now_s = unix_now_s();
    loop {
        let read = gcs
            .range(RangeRequest::prefix(APPS_PREFIX, None), true)
            .await
            .map_err(unavailable)?;
        let stored_config = gcs.get(CONFIG_KEY).await.map_err(unavailable)?;
        let mut compares = Vec::new();
        let mut current = BTreeMap::new();
        let mut present = std::collections::BTreeSet::new();
        for kv in &read.kvs {
            compares.push(Compare {
                key: kv.key.clone(),
                op: CompareOp::Equal,
                target: CompareTarget::ModRevision(kv.mod_revision),
            });
            let name = String::from_utf8_lossy(&kv.key[APPS_PREFIX.len()..]).into_owned();
            // A record that no longer decodes is replaced (or deleted).
            if let Ok(spec) = schema::decode::<AppSpec>(&kv.value) {
                current.insert(name.clone(), spec);
            }
            present.insert(name);
        }
        compares.push(match &stored_config {
            Some(kv) => Compare {
                key: kv.key.clone(),
                op: CompareOp::Equal,
                target: CompareTarget::ModRevision(kv.mod_revision),
            },
            None => Compare::absent(CONFIG_KEY),
        });
        let (specs, outcome) = plan(&current, desired.clone());
        let mut success = Vec::new();
        for spec in &specs {
            let key = format!("{APPS_PREFIX}{}", spec.name);
            if current.get(&spec.name) != Some(spec) {
                success.push(TxnOp::Put(PutRequest::new(
                    key.clone(),
                    schema::encode(spec),
                )));
            }
            if !present.contains(&spec.name) {
                compares.push(Compare::absent(key));
            }
        }
        let undecodable = present
            .iter()
            .filter(|n| !current.contains_key(*n) && !outcome.versions.contains_key(*n));
        for name in outcome.deleted.iter().chain(undecodable) {
            success.push(TxnOp::Delete(DeleteRequest {
                selector: KeySelector::Key(format!("{APPS_PREFIX}{name}").into_bytes()),
                prev_kv: false,
            }));
        }
        success.extend(stamp_ops(&outcome, now_s));
        success.push(TxnOp::Put(PutRequest::new(CONFIG_KEY, config_json.clone())));
        let txn = TxnRequest {
            compares,
            success,
            failure: vec![],
        };
        let response = gcs.write(Operation::Txn(txn)).await.map_err(unavailable)?;
        match response.outcome {
            Ok(troupe_gcs::Outcome::Txn(t)) if t.succeeded => return Ok(outcome),
            // A concurrent deploy changed what was read: plan again.
            Ok(_) => {}
            Err(e @ troupe_gcs::CommandError::TooLarge { .. }) => {
                return Err(DeployError::TooLarge(format!("nothing was deployed: {e}")))
            }
            Err(e) => return Err(DeployError::Unavailable(e.to_string())),
        }
    }
}

/// The wall clock in seconds since the Unix epoch (0 before it).
pub fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The deploy-time writes of a deploy that did `outcome` at `now_s`: a
/// stamp for each application whose spec changed (created, updated,
/// rescaled), none for the unchanged ones, and the stamps of the deleted
/// ones removed. Pure.
pub fn stamp_ops(outcome: &Deployed, now_s: f64) -> Vec<TxnOp> {
    let put = outcome.changed.iter().map(|name| {
        TxnOp::Put(PutRequest::new(
            format!("{DEPLOYED_AT_PREFIX}{name}"),
            serde_json::to_vec(&now_s).expect("a number serializes"),
        ))
    });
    let delete = outcome.deleted.iter().map(|name| {
        TxnOp::Delete(DeleteRequest {
            selector: KeySelector::Key(format!("{DEPLOYED_AT_PREFIX}{name}").into_bytes()),
            prev_kv: false,
        })
    });
    put.chain(delete).collect()
}

/// Deletes every application and the stored config.
pub async fn delete_all(cluster: &Cluster) -> Result<(), DeployError> {
    let unavailable =
        |e: troupe_gcs::client::GcsClientError| DeployError::Unavailable(e.to_string());
    let txn = TxnRequest {
        compares: vec![],
        success: vec![
            TxnOp::Delete(DeleteRequest {
                selector: KeySelector::Prefix(APPS_PREFIX.as_bytes().to_vec()),
                prev_kv: false,
            }),
            TxnOp::Delete(DeleteRequest {
                selector: KeySelector::Key(CONFIG_KEY.as_bytes().to_vec()),
                prev_kv: false,
            }),
            TxnOp::Delete(DeleteRequest {
                selector: KeySelector::Prefix(DEPLOYED_AT_PREFIX.as_bytes().to_vec()),
                prev_kv: false,
            }),
        ],
        failure: vec![],
    };
    cluster
        .gcs()
        .write(Operation::Txn(txn))
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// The config last deployed, if any (linearizable read).
pub async fn deployed_config(cluster: &Cluster) -> Result<Option<ServeConfig>, DeployError> {
    let stored = cluster
        .gcs()
        .get(CONFIG_KEY)
        .await
        .map_err(|e| DeployError::Unavailable(e.to_string()))?;
    let Some(kv) = stored else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_slice(&kv.value)
        .map_err(|e| DeployError::Unavailable(format!("the stored config is not JSON: {e}")))?;
    Ok(Some(parse_value(&value)?))
}

/// Why [`wait_running`] gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("application {app} is DEPLOY_FAILED: {message}; fix the config or the code and deploy again")]
    Failed { app: String, message: String },
    #[error(
        "not RUNNING within {seconds:.0} s: {apps}; see `troupe serve status` and the nodes' logs"
    )]
    Timeout { seconds: f64, apps: String },
}

/// Where an application is against what a deploy asked of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The controller has not reported on the deployed target yet (no
    /// status, an older version, or the previous replica counts).
    Waiting,
    /// The controller works on the target.
    Moving,
    /// RUNNING with every deployment at its target count.
    Done,
    /// DEPLOY_FAILED at the target, with why.
    Failed(String),
    /// A later deploy replaced it (this version will never run).
    Superseded(u64),
}

/// How `status` (the controller's last report, if any) stands against
/// `target`. A status is the target's only when it has the target's
/// version and, when the target knows them, its deployments with their
/// replica counts: a rescale keeps the version, so a status still showing
/// the previous counts is stale, not done. Pure.
pub fn progress(target: &AppTarget, status: Option<&AppStatus>) -> Progress {
    let Some(status) = status else {
        return Progress::Waiting;
    };
    if status.version > target.version {
        return Progress::Superseded(status.version);
    }
    if status.version < target.version {
        return Progress::Waiting;
    }
    if let Some(deployments) = &target.deployments {
        let same = deployments.len() == status.deployments.len()
            && deployments.iter().all(|(d, t)| {
                status
                    .deployments
                    .get(d)
                    .is_some_and(|s| t.autoscaled || s.target_replicas == t.num_replicas)
            });
        if !same {
            return Progress::Waiting;
        }
    }
    match status.state {
        AppState::Running => Progress::Done,
        AppState::DeployFailed => Progress::Failed(status.message.clone()),
        _ => Progress::Moving,
    }
}

/// The lines describing `status` against `target`: the application with
/// its state and version, then each deployment's replicas of the target's
/// version running out of its target count (older replicas still there
/// are counted apart). Pure.
pub fn progress_lines(app: &str, target: &AppTarget, status: &AppStatus) -> Vec<String> {
    let mut lines = vec![format!(
        "{app}: {} at version {}",
        status.state.name(),
        status.version
    )];
    for (d, ds) in &status.deployments {
        let wanted = target.deployments.as_ref().and_then(|t| t.get(d));
        let Some(wanted) = wanted else {
            lines.push(format!("  {app}/{d}: {}", ds.summary()));
            continue;
        };
        let running = ds
            .replicas
            .iter()
            .filter(|r| r.version == wanted.version && r.state == ReplicaState::Running)
            .count();
        let older = ds
            .replicas
            .iter()
            .filter(|r| r.version != wanted.version)
            .count();
        let (count, autoscaled) = match wanted.autoscaled {
            true => (ds.target_replicas, " (autoscaled)"),
            false => (wanted.num_replicas, ""),
        };
        let mut line = format!("  {app}/{d}: {running}/{count} replicas running{autoscaled}");
        if older > 0 {
            line.push_str(&format!(", {older} of an older version still up"));
        }
        if ds.state == DeploymentState::DeployFailed {
            line.push_str(&format!("  ({})", ds.message));
        }
        lines.push(line);
    }
    lines
}

/// The line shown while the controller has not taken `target` yet.
pub fn waiting_line(app: &str, target: &AppTarget) -> String {
    let replicas = target.replicas_text();
    let replicas = match replicas.is_empty() {
        true => String::new(),
        false => format!(" ({replicas})"),
    };
    format!(
        "{app}: waiting for the serve controller to take version {}{replicas}",
        target.version
    )
}

/// Waits until every application in `versions` is RUNNING at (at least)
/// its version, whatever its replica counts; prefer [`wait_deployed`]
/// after a deploy, which also waits for a rescale.
pub async fn wait_running(
    cluster: &Cluster,
    versions: &BTreeMap<String, u64>,
    timeout: std::time::Duration,
    progress: impl FnMut(&str),
) -> Result<(), WaitError> {
    let targets = versions
        .iter()
        .map(|(app, v)| (app.clone(), AppTarget::version_only(*v)))
        .collect();
    wait_for(cluster, &targets, timeout, progress).await
}

/// Waits until every application `done` deployed is RUNNING at its
/// target: the deployed version with each deployment at its replica
/// count (a rescale at the same version included), giving `progress`
/// each line of [`progress_lines`] that changed; an error when one is
/// DEPLOY_FAILED or `timeout` passes. An application a later deploy
/// replaced counts as done.
pub async fn wait_deployed(
    cluster: &Cluster,
    done: &Deployed,
    timeout: std::time::Duration,
    progress: impl FnMut(&str),
) -> Result<(), WaitError> {
    wait_for(cluster, &done.targets, timeout, progress).await
}

async fn wait_for(
    cluster: &Cluster,
    targets: &BTreeMap<String, AppTarget>,
    timeout: std::time::Duration,
    mut show: impl FnMut(&str),
) -> Result<(), WaitError> {
    crate::records::follow(cluster);
    let mut changes = cluster.state_changes();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        let current: Vec<(&String, &AppTarget, Option<AppStatus>)> = cluster.read_state(|s| {
            targets
                .iter()
                .map(|(app, target)| {
                    let status = s
                        .extra
                        .get(format!("{STATUS_PREFIX}{app}").as_bytes())
                        .and_then(|v| schema::decode::<AppStatus>(v).ok());
                    (app, target, status)
                })
                .collect()
        });
        let mut waiting = Vec::new();
        for (app, target, status) in &current {
            let state = progress(target, status.as_ref());
            let lines = match (&state, status) {
                (Progress::Moving | Progress::Done | Progress::Failed(_), Some(status)) => {
                    progress_lines(app, target, status)
                }
                (Progress::Superseded(v), _) => {
                    vec![format!("{app}: replaced by version {v} (a later deploy)")]
                }
                _ => vec![waiting_line(app, target)],
            };
            if shown.get(*app) != Some(&lines) {
                lines.iter().for_each(|l| show(l));
                shown.insert((*app).clone(), lines);
            }
            match state {
                Progress::Done | Progress::Superseded(_) => {}
                Progress::Failed(message) => {
                    return Err(WaitError::Failed {
                        app: (*app).clone(),
                        message,
                    })
                }
                Progress::Waiting | Progress::Moving => waiting.push(app.as_str()),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Err(WaitError::Timeout {
                seconds: timeout.as_secs_f64(),
                apps: waiting.join(", "),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, deployments: &[(&str, &str, u32)]) -> AppSpec {
        AppSpec {
            name: name.into(),
            route_prefix: Some(format!("/{name}")),
            ingress: deployments[0].0.into(),
            streaming: false,
            deployments: deployments
                .iter()
                .map(|(d, ty, n)| crate::spec::DeploymentSpec::for_tests(d, ty, 0, *n))
                .collect(),
            version: 0,
        }
    }

    #[test]
    fn deploy_times_are_stamped_on_changed_applications_and_dropped_with_deleted_ones() {
        let current = BTreeMap::from([
            (
                "kept".to_string(),
                successor(None, spec("kept", &[("a", "A", 1)])),
            ),
            (
                "gone".to_string(),
                successor(None, spec("gone", &[("a", "A", 1)])),
            ),
        ]);
        let desired = vec![
            spec("kept", &[("a", "A", 1)]),
            spec("new", &[("a", "A", 2)]),
        ];
        let (_, outcome) = plan(&current, desired);
        let ops = stamp_ops(&outcome, 1_700_000_000.5);
        let put: Vec<_> = ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Put(p) => Some((
                    String::from_utf8_lossy(&p.key).into_owned(),
                    p.value.clone(),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            put,
            vec![(format!("{DEPLOYED_AT_PREFIX}new"), b"1700000000.5".to_vec())]
        );
        let deleted: Vec<_> = ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Delete(DeleteRequest {
                    selector: KeySelector::Key(k),
                    ..
                }) => Some(String::from_utf8_lossy(k).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec![format!("{DEPLOYED_AT_PREFIX}gone")]);
    }

    #[test]
    fn a_plan_touches_only_what_changed_and_deletes_what_is_gone() {
        let (first, _) = plan(
            &BTreeMap::new(),
            vec![spec("a", &[("x", "T", 1)]), spec("b", &[("y", "T", 1)])],
        );
        let current: BTreeMap<_, _> = first.into_iter().map(|s| (s.name.clone(), s)).collect();
        // a rescales (same version), b is unchanged, c is new, nothing else.
        let (next, outcome) = plan(
            &current,
            vec![
                spec("a", &[("x", "T", 3)]),
                spec("b", &[("y", "T", 1)]),
                spec("c", &[("z", "T", 1)]),
            ],
        );
        assert_eq!(outcome.changed, vec!["a".to_string(), "c".to_string()]);
        assert!(outcome.deleted.is_empty());
        assert_eq!(next[0].version, current["a"].version);
        assert_eq!(next[0].deployments[0].num_replicas, 3);
        // Dropping b deletes it; a new type for a's deployment bumps it.
        let (next, outcome) = plan(&current, vec![spec("a", &[("x", "U", 1)])]);
        assert_eq!(outcome.deleted, vec!["b".to_string()]);
        assert_eq!(next[0].version, current["a"].version + 1);
    }

    /// A status at `version` whose one deployment `x` asks for `target`
    /// replicas and has `running` of them (of replica version `rv`)
    /// running.
    fn status(state: AppState, version: u64, target: u32, running: &[u64]) -> AppStatus {
        use crate::spec::{DeploymentStatus, ReplicaStatus};
        let replicas = running
            .iter()
            .map(|rv| ReplicaStatus {
                id: troupe_core::id::ReplicaId::random(),
                actor: troupe_core::id::ActorId::new(1),
                version: *rv,
                state: ReplicaState::Running,
                node: None,
            })
            .collect();
        AppStatus {
            name: "a".into(),
            state,
            message: String::new(),
            version,
            deployments: BTreeMap::from([(
                "x".to_string(),
                DeploymentStatus {
                    state: DeploymentState::Updating,
                    message: String::new(),
                    target_replicas: target,
                    replicas,
                },
            )]),
        }
    }

    fn target(version: u64, replicas: u32) -> AppTarget {
        let mut s = spec("a", &[("x", "T", replicas)]);
        s.version = version;
        s.deployments[0].version = version;
        AppTarget::of(&s)
    }

    #[test]
    fn a_rescale_is_done_only_when_the_status_shows_the_new_count_running() {
        let three = target(2, 3);
        // The status before the rescale (1/1 RUNNING, same version) is
        // stale, not done.
        let before = status(AppState::Running, 2, 1, &[2]);
        assert_eq!(progress(&three, Some(&before)), Progress::Waiting);
        assert_eq!(progress(&three, None), Progress::Waiting);
        // Older versions are stale too; a newer one replaced the target.
        let older = status(AppState::Running, 1, 3, &[1, 1, 1]);
        assert_eq!(progress(&three, Some(&older)), Progress::Waiting);
        let newer = status(AppState::Deploying, 3, 3, &[]);
        assert_eq!(progress(&three, Some(&newer)), Progress::Superseded(3));
        // The controller took the new count: moving, then done.
        let scaling = status(AppState::Deploying, 2, 3, &[2]);
        assert_eq!(progress(&three, Some(&scaling)), Progress::Moving);
        let done = status(AppState::Running, 2, 3, &[2, 2, 2]);
        assert_eq!(progress(&three, Some(&done)), Progress::Done);
        let mut failed = status(AppState::DeployFailed, 2, 3, &[2]);
        failed.message = "deployment x failed: boom".into();
        assert_eq!(
            progress(&three, Some(&failed)),
            Progress::Failed("deployment x failed: boom".into())
        );
        // A deployment the target does not have: stale.
        let mut other = done.clone();
        let x = other.deployments.remove("x").unwrap();
        other.deployments.insert("y".into(), x);
        assert_eq!(progress(&three, Some(&other)), Progress::Waiting);
        // Knowing only the version, any count at that version will do.
        let any = AppTarget::version_only(2);
        assert_eq!(progress(&any, Some(&before)), Progress::Done);
    }

    #[test]
    fn progress_counts_the_target_versions_replicas_against_the_target() {
        // Version 3 replaces version 2's replicas: one new one runs, two
        // old ones are still up.
        let t = target(3, 3);
        let s = status(AppState::Deploying, 3, 3, &[3, 2, 2]);
        assert_eq!(
            progress_lines("a", &t, &s),
            [
                "a: DEPLOYING at version 3",
                "  a/x: 1/3 replicas running, 2 of an older version still up"
            ]
        );
        let s = status(AppState::Running, 3, 3, &[3, 3, 3]);
        assert_eq!(
            progress_lines("a", &t, &s),
            ["a: RUNNING at version 3", "  a/x: 3/3 replicas running"]
        );
        assert_eq!(
            waiting_line("a", &t),
            "a: waiting for the serve controller to take version 3 (replicas: x 3)"
        );
    }

    #[test]
    fn the_deploy_report_names_the_new_version_and_the_target_counts() {
        let (first, done) = plan(&BTreeMap::new(), vec![spec("a", &[("x", "T", 1)])]);
        assert_eq!(
            deployed_lines(&done),
            ["application a: created at version 1 (replicas: x 1)"]
        );
        let current: BTreeMap<_, _> = first.into_iter().map(|s| (s.name.clone(), s)).collect();
        // The same config with 3 replicas: a rescale at version 1.
        let (_, done) = plan(&current, vec![spec("a", &[("x", "T", 3)])]);
        assert_eq!(
            deployed_lines(&done),
            ["application a: rescaled at version 1: x 1 -> 3 replicas, replicas kept"]
        );
        assert_eq!(done.targets["a"], target(1, 3));
        // New code: a new version.
        let (_, done) = plan(&current, vec![spec("a", &[("x", "U", 2)])]);
        assert_eq!(
            deployed_lines(&done),
            ["application a: updated to version 2 (from version 1; new replicas replace the old ones) (replicas: x 2)"]
        );
        // Nothing changed; and an application left out is deleted.
        let (_, done) = plan(&current, vec![spec("a", &[("x", "T", 1)])]);
        assert_eq!(
            deployed_lines(&done),
            ["application a: unchanged at version 1 (replicas: x 1)"]
        );
        let (_, done) = plan(&current, vec![]);
        assert_eq!(
            deployed_lines(&done),
            ["application a: deleted (not in the config)"]
        );
    }

    /// `a` deployed (one deployment `x`, 2 replicas), then `change` made
    /// to `x` and deployed again: the new stored spec and the outcome.
    fn redeploy(change: impl Fn(&mut crate::spec::DeploymentSpec)) -> (AppSpec, AppSpec, Deployed) {
        let mut first = spec("a", &[("x", "T", 2)]);
        first.deployments[0].user_config = Some(r#"{"k":1}"#.into());
        let (stored, _) = plan(&BTreeMap::new(), vec![first.clone()]);
        let current: BTreeMap<_, _> = stored.into_iter().map(|s| (s.name.clone(), s)).collect();
        let mut next = first;
        change(&mut next.deployments[0]);
        let (mut specs, done) = plan(&current, vec![next]);
        (current["a"].clone(), specs.remove(0), done)
    }

    #[test]
    fn lightweight_changes_keep_the_version_and_code_arguments_or_resources_replace_replicas() {
        type Change = fn(&mut crate::spec::DeploymentSpec);
        let lightweight: [(&str, Change); 9] = [
            ("num_replicas", |d| d.num_replicas = 5),
            ("max_ongoing_requests", |d| d.max_ongoing_requests = 100),
            ("max_queued_requests", |d| d.max_queued_requests = Some(10)),
            ("health_check_period", |d| d.health_check_period_ms = 1_000),
            ("health_check_timeout", |d| {
                d.health_check_timeout_ms = 2_000
            }),
            ("graceful_shutdown_timeout", |d| {
                d.graceful_shutdown_timeout_ms = 1
            }),
            ("retry_lost_requests", |d| d.retry_lost_requests = false),
            ("user_config", |d| d.user_config = Some(r#"{"k":2}"#.into())),
            ("user_config removed", |d| d.user_config = None),
        ];
        for (what, change) in lightweight {
            let (old, new, done) = redeploy(change);
            assert_eq!(new.version, old.version, "{what}");
            assert_eq!(
                new.deployments[0].version, old.deployments[0].version,
                "{what}"
            );
            assert_eq!(done.changed, ["a"], "{what}: the new spec is stored");
            let mut expected = old.deployments[0].clone();
            change(&mut expected);
            assert_eq!(new.deployments[0], expected, "{what}: stored as given");
        }
        let replacing: [(&str, Change); 3] = [
            ("code", |d| d.type_name = "U".into()),
            ("arguments", |d| d.args = vec![1]),
            ("resources", |d| {
                d.resources = troupe_core::resources::Resources::new()
                    .with_cpus(1.0)
                    .unwrap()
            }),
        ];
        for (what, change) in replacing {
            let (old, new, done) = redeploy(change);
            assert_eq!(new.version, old.version + 1, "{what}");
            assert_eq!(new.deployments[0].version, old.version + 1, "{what}");
            assert!(done.reconfigured.is_empty(), "{what}");
        }
    }

    #[test]
    fn a_user_config_change_is_reported_as_reconfiguring_in_place() {
        let (_, _, done) = redeploy(|d| d.user_config = Some(r#"{"k":2}"#.into()));
        assert_eq!(done.reconfigured["a"], ["x"]);
        assert_eq!(
            deployed_lines(&done),
            ["application a: user_config changed at version 1: reconfiguring x's 2 replicas in place, replicas kept (replicas: x 2)"]
        );
        // With a rescale.
        let (_, _, done) = redeploy(|d| {
            d.user_config = Some(r#"{"k":2}"#.into());
            d.num_replicas = 1;
        });
        assert_eq!(
            deployed_lines(&done),
            ["application a: rescaled at version 1: x 2 -> 1 replicas, replicas kept; user_config changed: reconfiguring x's 1 replica in place"]
        );
        // Removed: the replicas keep what they applied; nothing to call.
        let (_, _, done) = redeploy(|d| d.user_config = None);
        assert!(done.reconfigured.is_empty());
        assert_eq!(
            deployed_lines(&done),
            ["application a: options changed at version 1, replicas kept (replicas: x 2)"]
        );
        // Another option only.
        let (_, _, done) = redeploy(|d| d.max_ongoing_requests = 9);
        assert!(done.reconfigured.is_empty());
        assert_eq!(
            deployed_lines(&done),
            ["application a: options changed at version 1, replicas kept (replicas: x 2)"]
        );
        // The same user_config: unchanged.
        let (_, _, done) = redeploy(|_| {});
        assert_eq!(
            deployed_lines(&done),
            ["application a: unchanged at version 1 (replicas: x 2)"]
        );
    }
}
