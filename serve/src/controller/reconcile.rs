//! One round of the serve controller as a pure function: desired
//! applications, last statuses and the replica actors in; the replicas to
//! start and stop and the statuses to write out.
//!
//! Per deployment: replicas of the current version are started up to
//! `num_replicas` and stopped beyond it (starting ones first, then from
//! the nodes holding the most of them, then the least loaded); replicas of
//! an older version are stopped once the current version has
//! `num_replicas` running, so an update never drops below the target
//! (zero downtime). Three constructor failures of the current version
//! make the deployment DEPLOY_FAILED with the constructor's message. An
//! application that was RUNNING at its version and lost replicas is
//! UNHEALTHY until they are replaced.

use std::collections::{BTreeMap, BTreeSet};

use troupe_core::id::{ActorId, ReplicaId};
use troupe_worker::lifecycle::{ActorState, DeathReason};
use troupe_worker::schema::ActorRecord;

use crate::spec::{
    parse_replica_name, AppSpec, AppState, AppStatus, DeploymentState, DeploymentStatus,
    ReplicaState, ReplicaStatus,
};

/// Constructor failures of one version before the deployment is
/// DEPLOY_FAILED.
pub const MAX_CONSTRUCTOR_FAILURES: usize = 3;

/// What the controller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start {
        app: String,
        deployment: String,
        version: u64,
        replica: ReplicaId,
    },
    Stop {
        actor: ActorId,
    },
    WriteStatus(AppStatus),
    DeleteStatus {
        app: String,
    },
}

/// A replica actor, from the actor table.
#[derive(Debug, Clone)]
struct Seen<'a> {
    deployment: &'a str,
    version: u64,
    replica: ReplicaId,
    record: &'a ActorRecord,
}

impl Seen<'_> {
    fn live(&self) -> bool {
        !matches!(self.record.state, ActorState::Dead { .. })
    }

    fn running(&self) -> bool {
        self.record.state == ActorState::Alive && self.record.node.is_some()
    }

    fn status(&self, stopping: bool) -> ReplicaStatus {
        ReplicaStatus {
            id: self.replica,
            actor: self.record.id,
            version: self.version,
            state: match (stopping, self.running()) {
                (true, _) => ReplicaState::Stopping,
                (false, true) => ReplicaState::Running,
                (false, false) => ReplicaState::Starting,
            },
            node: self.record.node,
        }
    }
}

/// Decides one round. `loads` are the requests replicas ran at their last
/// report (a downscale takes the least loaded); `new_id` names new
/// replicas.
pub fn reconcile(
    specs: &BTreeMap<String, AppSpec>,
    statuses: &BTreeMap<String, AppStatus>,
    actors: &BTreeMap<ActorId, ActorRecord>,
    loads: &BTreeMap<ReplicaId, f64>,
    new_id: &mut dyn FnMut() -> ReplicaId,
) -> Vec<Action> {
    let mut by_app: BTreeMap<&str, Vec<Seen<'_>>> = BTreeMap::new();
    for record in actors.values() {
        let Some((app, deployment, version, replica)) =
            record.name.as_ref().and_then(parse_replica_name)
        else {
            continue;
        };
        by_app.entry(app).or_default().push(Seen {
            deployment,
            version,
            replica,
            record,
        });
    }
    let mut actions = Vec::new();
    for spec in specs.values() {
        let seen = by_app.remove(spec.name.as_str()).unwrap_or_default();
        let status = app_round(
            spec,
            statuses.get(&spec.name),
            &seen,
            loads,
            new_id,
            &mut actions,
        );
        if statuses.get(&spec.name) != Some(&status) {
            actions.push(Action::WriteStatus(status));
        }
    }
    // Applications deleted (or never known): stop their replicas, then
    // forget their status.
    let names: BTreeSet<&str> = statuses
        .keys()
        .map(String::as_str)
        .chain(by_app.keys().copied())
        .filter(|name| !specs.contains_key(*name))
        .collect();
    for name in names {
        let live: Vec<&Seen<'_>> = by_app
            .get(name)
            .map(|s| s.iter().filter(|r| r.live()).collect())
            .unwrap_or_default();
        for replica in &live {
            actions.push(Action::Stop {
                actor: replica.record.id,
            });
        }
        match (live.is_empty(), statuses.get(name)) {
            (true, Some(_)) => actions.push(Action::DeleteStatus {
                app: name.to_owned(),
            }),
            (false, Some(old)) if old.state != AppState::Deleting => {
                let mut deleting = old.clone();
                deleting.state = AppState::Deleting;
                deleting.message = "stopping its replicas".into();
                actions.push(Action::WriteStatus(deleting));
            }
            _ => {}
        }
    }
    actions
}

fn app_round(
    spec: &AppSpec,
    last: Option<&AppStatus>,
    seen: &[Seen<'_>],
    loads: &BTreeMap<ReplicaId, f64>,
    new_id: &mut dyn FnMut() -> ReplicaId,
    actions: &mut Vec<Action>,
) -> AppStatus {
    let mut deployments = BTreeMap::new();
    for d in &spec.deployments {
        let mine: Vec<&Seen<'_>> = seen.iter().filter(|r| r.deployment == d.name).collect();
        let current: Vec<&Seen<'_>> = mine
            .iter()
            .filter(|r| r.live() && r.version == d.version)
            .copied()
            .collect();
        let old: Vec<&Seen<'_>> = mine
            .iter()
            .filter(|r| r.live() && r.version != d.version)
            .copied()
            .collect();
        let failures: Vec<String> = mine
            .iter()
            .filter(|r| r.version == d.version)
            .filter_map(|r| match &r.record.state {
                ActorState::Dead {
                    reason: DeathReason::ConstructorFailed { message },
                } => Some(message.clone()),
                _ => None,
            })
            .collect();
        let target = d.num_replicas as usize;
        // A deployment that failed at this version stays failed until a
        // new deploy, also once the records of its failed replicas are
        // collected (the cluster forgets dead actors after a retention).
        let failed_before = last
            .filter(|l| l.version == spec.version)
            .and_then(|l| l.deployments.get(&d.name))
            .filter(|l| l.state == DeploymentState::DeployFailed);
        let failed = failures.len() >= MAX_CONSTRUCTOR_FAILURES || failed_before.is_some();
        let mut stopping: BTreeSet<ActorId> = BTreeSet::new();
        if !failed && current.len() < target {
            for _ in current.len()..target {
                actions.push(Action::Start {
                    app: spec.name.clone(),
                    deployment: d.name.clone(),
                    version: d.version,
                    replica: new_id(),
                });
            }
        }
        if current.len() > target {
            // Starting replicas go first, then those on the nodes holding
            // the most of the deployment (what is left stays spread), then
            // the least loaded (the shortest drain), then the newest.
            let mut on_node: BTreeMap<Option<troupe_core::id::NodeId>, usize> = BTreeMap::new();
            for r in &current {
                *on_node.entry(r.record.node).or_default() += 1;
            }
            let load = |r: &Seen<'_>| loads.get(&r.replica).copied().unwrap_or(0.0);
            let mut extra = current.clone();
            extra.sort_by(|a, b| {
                let crowd = |r: &Seen<'_>| on_node.get(&r.record.node).copied().unwrap_or(0);
                a.running()
                    .cmp(&b.running())
                    .then(crowd(b).cmp(&crowd(a)))
                    .then(load(a).total_cmp(&load(b)))
                    .then(b.replica.cmp(&a.replica))
            });
            for r in extra.into_iter().take(current.len() - target) {
                stopping.insert(r.record.id);
            }
        }
        let running_current = current
            .iter()
            .filter(|r| r.running() && !stopping.contains(&r.record.id))
            .count();
        if running_current >= target || failed && old.is_empty() {
            for r in &old {
                stopping.insert(r.record.id);
            }
        }
        for actor in &stopping {
            actions.push(Action::Stop { actor: *actor });
        }
        let mut replicas: Vec<ReplicaStatus> = current
            .iter()
            .chain(old.iter())
            .map(|r| r.status(stopping.contains(&r.record.id)))
            .collect();
        replicas.sort_by_key(|r| r.id);
        let (state, message) = if let (true, Some(before)) =
            (failures.len() < MAX_CONSTRUCTOR_FAILURES, failed_before)
        {
            (DeploymentState::DeployFailed, before.message.clone())
        } else if failed {
            (
                DeploymentState::DeployFailed,
                format!(
                    "{} replicas failed to start; the last error: {}",
                    failures.len(),
                    failures.last().cloned().unwrap_or_default()
                ),
            )
        } else if running_current == target && old.is_empty() && stopping.is_empty() {
            (DeploymentState::Healthy, String::new())
        } else {
            let mut message = format!("{running_current} of {target} replicas running");
            let waiting: Vec<&str> = current
                .iter()
                .filter(|r| r.record.state == ActorState::Pending)
                .filter_map(|r| r.record.pending_reason.as_deref())
                .collect();
            if let Some(reason) = waiting.first() {
                // The scheduler's reason (no room, or no node could ever
                // hold one): what a person must act on.
                message.push_str(&format!("; {} PENDING: {reason}", waiting.len()));
            }
            (DeploymentState::Updating, message)
        };
        deployments.insert(
            d.name.clone(),
            DeploymentStatus {
                state,
                message,
                target_replicas: d.num_replicas,
                replicas,
            },
        );
    }
    let (state, message) = if let Some((name, d)) = deployments
        .iter()
        .find(|(_, d)| d.state == DeploymentState::DeployFailed)
    {
        (
            AppState::DeployFailed,
            format!("deployment {name} failed: {}", d.message),
        )
    } else if deployments
        .values()
        .all(|d| d.state == DeploymentState::Healthy)
    {
        (AppState::Running, String::new())
    } else if last.is_some_and(|l| {
        l.version == spec.version
            && matches!(l.state, AppState::Running | AppState::Unhealthy)
            && same_targets(l, &deployments)
    }) {
        // It ran at this version and these counts and lost replicas: being
        // repaired. (New counts at the same version are a rescale: DEPLOYING.)
        let lacking: Vec<String> = deployments
            .iter()
            .filter(|(_, d)| d.state != DeploymentState::Healthy)
            .map(|(name, d)| format!("{name}: {}", d.message))
            .collect();
        (AppState::Unhealthy, lacking.join("; "))
    } else {
        (AppState::Deploying, "replicas are starting".into())
    };
    AppStatus {
        name: spec.name.clone(),
        state,
        message,
        version: spec.version,
        deployments,
    }
}

/// Whether `last` asked for the replica counts of `now`.
fn same_targets(last: &AppStatus, now: &BTreeMap<String, DeploymentStatus>) -> bool {
    last.deployments.len() == now.len()
        && now.iter().all(|(name, d)| {
            last.deployments
                .get(name)
                .is_some_and(|l| l.target_replicas == d.target_replicas)
        })
}

#[cfg(test)]
mod tests;
