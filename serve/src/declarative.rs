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
use crate::spec::{AppSpec, AppState, AppStatus, APPS_PREFIX, STATUS_PREFIX};

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
        if old != Some(&spec) {
            outcome.changed.push(spec.name.clone());
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

/// The lines describing `status` (the application, then each deployment's
/// replicas).
pub fn progress_lines(app: &str, status: &AppStatus) -> Vec<String> {
    let mut lines = vec![format!("{app}: {}", status.state.name())];
    for (d, ds) in &status.deployments {
        lines.push(format!("  {app}/{d}: {}", ds.summary()));
    }
    lines
}

/// Waits until every application in `versions` is RUNNING at (at least)
/// its version, giving `progress` each line of [`progress_lines`] that
/// changed; an error when one is DEPLOY_FAILED or `timeout` passes.
pub async fn wait_running(
    cluster: &Cluster,
    versions: &BTreeMap<String, u64>,
    timeout: std::time::Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), WaitError> {
    let mut changes = cluster.state_changes();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    loop {
        let current: Vec<(String, Option<AppStatus>)> = cluster.read_state(|s| {
            versions
                .iter()
                .map(|(app, version)| {
                    let status = s
                        .extra
                        .get(format!("{STATUS_PREFIX}{app}").as_bytes())
                        .and_then(|v| schema::decode::<AppStatus>(v).ok())
                        .filter(|st| st.version >= *version);
                    (app.clone(), status)
                })
                .collect()
        });
        let mut all_running = true;
        for (app, status) in &current {
            let Some(status) = status else {
                all_running = false;
                continue;
            };
            let lines = progress_lines(app, status);
            if shown.get(app) != Some(&lines) {
                lines.iter().for_each(|l| progress(l));
                shown.insert(app.clone(), lines);
            }
            match status.state {
                AppState::Running => {}
                AppState::DeployFailed => {
                    return Err(WaitError::Failed {
                        app: app.clone(),
                        message: status.message.clone(),
                    })
                }
                _ => all_running = false,
            }
        }
        if all_running {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            let waiting: Vec<&str> = current
                .iter()
                .filter(|(_, s)| s.as_ref().is_none_or(|s| s.state != AppState::Running))
                .map(|(a, _)| a.as_str())
                .collect();
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
}
