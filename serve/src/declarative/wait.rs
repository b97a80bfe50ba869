//! Waiting for what a deploy asked: pure [`progress`] (is this status the
//! deployed target: version and each deployment's replica count),
//! [`progress_lines`] and [`waiting_line`] (what `serve deploy` prints),
//! and [`wait_deployed`] / [`wait_running`], which follow the
//! controller's statuses until done, failed or timed out.

use std::collections::BTreeMap;

use troupe_worker::{schema, Cluster};

use super::{AppTarget, Deployed};
use crate::spec::{AppState, AppStatus, DeploymentState, ReplicaState, STATUS_PREFIX};

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
