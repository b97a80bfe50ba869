//! What a deploy asked of each application ([`AppTarget`]: its version
//! and each deployment's replicas) and the lines saying what the deploy
//! did ([`deployed_lines`]). Pure.

use std::collections::BTreeMap;

use super::Deployed;
use crate::spec::AppSpec;

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
    pub(super) fn replicas_text(&self) -> String {
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
