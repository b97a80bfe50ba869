//! Deploying a whole [`ServeConfig`] declaratively: the config is the
//! desired state of every application, so applications missing from it are
//! deleted. One GCS transaction writes it all, fenced on what it read, so
//! concurrent deploys (two `PUT /api/serve/applications/`, two `serve
//! deploy`s) never interleave: the last one wins whole.
//!
//! The config as deployed is kept at [`CONFIG_KEY`] (JSON) for `troupe
//! serve config` and the REST API's GET.
//!
//! # Layout
//!
//! - this file — deploying: pure [`plan`] and [`stamp_ops`], [`apply`]
//!   (the fenced transaction), [`delete_all`], [`deployed_config`].
//! - `target.rs` — [`AppTarget`] (what a deploy asked of an application)
//!   and [`deployed_lines`] (what it did, one line per application).
//! - `wait.rs` — pure [`progress`] and its lines, and [`wait_deployed`] /
//!   [`wait_running`], which follow the controller's statuses.
//! - `tests.rs` — the pure parts' unit tests.

mod target;
mod wait;

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
use crate::spec::{AppSpec, APPS_PREFIX, DEPLOYED_AT_PREFIX};

pub use target::{deployed_lines, AppTarget, DeploymentTarget};
pub use wait::{
    progress, progress_lines, wait_deployed, wait_running, waiting_line, Progress, WaitError,
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

#[cfg(test)]
mod tests;
