//! The serve controller: a singleton on the node whose GCS member leads,
//! its status writes fenced by the Raft term (a transaction comparing
//! `/troupe/serve/controller-term` with its own claim).
//!
//! Each round reads the desired applications and the replica actors from
//! the process's cluster view, decides with [`reconcile`], starts and stops
//! replica actors through the actor API, writes the statuses, and hands a
//! changed `user_config` to the running replicas in place
//! ([`reconfigure`]). Replicas
//! are found by their actor names, so a new controller (after a failover)
//! adopts the running ones instead of restarting them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use troupe_core::id::{NodeId, ReplicaId};
use troupe_gcs::member::GcsMember;
use troupe_gcs::{PutRequest, TxnOp};
use troupe_worker::fencing::{claim_term, commit_fenced, TermClaim};
use troupe_worker::lifecycle::ActorState;
use troupe_worker::schema::{self, ActorName, ActorOptions, Lifetime, RetryLimit};
use troupe_worker::{codec, Cluster};

pub mod autoscaler;
pub mod reconcile;
pub mod reconfigure;

use crate::autoscale::MetricsStore;
use crate::replica::{HealthCheck, ReplicaArgs};
use crate::spec::{
    replica_name, spread_group, AppSpec, AppStatus, ReplicaState, REPLICA_NAMESPACE, STATUS_PREFIX,
    TERM_KEY,
};
use autoscaler::Autoscaler;
use reconcile::Action;

/// A round runs at least this often.
const TICK: Duration = Duration::from_millis(250);

/// Runs the controller for as long as the task lives; `metrics` is where
/// this node keeps the autoscaling reports it receives.
pub async fn run(
    member: GcsMember,
    cluster: Cluster,
    me: NodeId,
    metrics: Arc<Mutex<MetricsStore>>,
) {
    // The last reason logged for not starting: logged again when it changes.
    let mut waiting: Option<String> = None;
    loop {
        if !member.is_leader() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let term = member.status().term;
        let claim = match claim_term(cluster.gcs(), TERM_KEY.as_bytes(), term, me).await {
            Ok(Some(TermClaim {
                value: claim,
                revision,
            })) => {
                // Decide only on a view that has every replica the last
                // controller started (and our claim).
                let mut changes = cluster.state_changes();
                let caught_up = tokio::time::timeout(
                    Duration::from_secs(10),
                    changes.wait_for(|s| s.revision >= revision),
                )
                .await;
                if !matches!(caught_up, Ok(Ok(_))) {
                    let seen = cluster.read_state(|s| s.revision);
                    tracing::warn!(
                        term,
                        needed = revision,
                        seen,
                        "the serve controller cannot start: this node's cluster view is behind its claim (see the cluster view's warnings); retrying"
                    );
                    continue;
                }
                claim
            }
            Ok(None) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                let reason = e.to_string();
                if waiting.as_ref() != Some(&reason) {
                    tracing::warn!(term, error = %reason, "the serve controller cannot start: its claim was not written; retrying");
                    waiting = Some(reason);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        waiting = None;
        tracing::info!(term, node = %me, "running the serve controller");
        lead(&member, &cluster, term, &claim, &metrics).await;
        tracing::info!(term, node = %me, "stopped running the serve controller");
    }
}

async fn lead(
    member: &GcsMember,
    cluster: &Cluster,
    term: u64,
    claim: &[u8],
    metrics: &Arc<Mutex<MetricsStore>>,
) {
    let mut changes = cluster.state_changes();
    let mut autoscaler = Autoscaler::new(metrics.clone(), cluster.read_state(autoscaler::records));
    let mut last_health = tokio::time::Instant::now();
    let mut draining = std::collections::HashSet::new();
    let mut reconfigures = reconfigure::Reconfigures::new(term);
    let loop_metrics = crate::metrics::metrics();
    let me = cluster.id().to_string();
    let mut health_shown = std::collections::BTreeSet::new();
    while member.is_leader() && member.status().term == term {
        let round_started = std::time::Instant::now();
        let (records, actors) =
            cluster.read_state(|s| (crate::records::of(cluster, s), s.actors.clone()));
        let (specs, statuses) = (&records.apps, &records.statuses);
        // The statuses this round writes, over those it read (`None`: deleted).
        let mut written: BTreeMap<String, Option<AppStatus>> = BTreeMap::new();
        let scaled = autoscaler.round(specs, statuses, crate::reporter::now_ms());
        let actions = reconcile::reconcile(
            &scaled.specs,
            statuses,
            &actors,
            &scaled.replica_loads,
            &mut ReplicaId::random,
        );
        let mut writes = autoscale_writes(scaled);
        let mut starts = Vec::new();
        let mut stops = Vec::new();
        for action in actions {
            match action {
                Action::Start {
                    app,
                    deployment,
                    version,
                    replica,
                } => {
                    let spec = specs[&app]
                        .deployments
                        .iter()
                        .find(|d| d.name == deployment)
                        .cloned()
                        .expect("reconcile starts only deployments it read");
                    let cluster = cluster.clone();
                    starts.push(async move {
                        let args = ReplicaArgs {
                            app: app.clone(),
                            deployment: deployment.clone(),
                            replica,
                            args: serde_bytes::ByteBuf::from(spec.args.clone()),
                            user_config: spec.user_config.clone(),
                        };
                        let options = ActorOptions {
                            resources: spec.resources.clone(),
                            max_restarts: RetryLimit::NEVER,
                            max_task_retries: RetryLimit::NEVER,
                            lifetime: Lifetime::Detached,
                            spread_group: Some(spread_group(&app, &deployment)),
                        };
                        let name = ActorName::new(
                            REPLICA_NAMESPACE,
                            replica_name(&app, &deployment, version, replica),
                        )
                        .ok();
                        if let Err(e) = cluster
                            .spawn_untyped(&spec.type_name, codec::encode(&args), options, name)
                            .await
                        {
                            tracing::warn!(%app, %deployment, error = %e, "could not start a replica");
                        }
                    });
                }
                Action::Stop { actor } => stops.push(actor),
                Action::WriteStatus(status) => {
                    writes.push(TxnOp::Put(PutRequest::new(
                        format!("{STATUS_PREFIX}{}", status.name).into_bytes(),
                        schema::encode(&status),
                    )));
                    written.insert(status.name.clone(), Some(status));
                }
                Action::DeleteStatus { app } => {
                    writes.push(TxnOp::Delete(troupe_gcs::DeleteRequest {
                        selector: troupe_gcs::KeySelector::Key(
                            format!("{STATUS_PREFIX}{app}").into_bytes(),
                        ),
                        prev_kv: false,
                    }));
                    written.insert(app, None);
                }
            }
        }
        futures::future::join_all(starts).await;
        if !writes.is_empty() {
            match commit_fenced(cluster.gcs(), TERM_KEY.as_bytes(), claim, writes).await {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "serve status not written");
                    written.clear();
                }
            }
        }
        let mut now_statuses = statuses.clone();
        for (app, status) in written {
            match status {
                Some(status) => now_statuses.insert(app, status),
                None => now_statuses.remove(&app),
            };
        }
        loop_metrics.record_replica_health(&replica_health(&now_statuses), &mut health_shown);
        // Written as STOPPING first (routers stop sending to them), then
        // drained and killed.
        for actor in stops {
            if draining.insert(actor) {
                let timeout = graceful_timeout(specs, statuses, actor);
                tokio::spawn(drain_and_kill(cluster.clone(), actor, timeout));
            }
        }
        draining.retain(|a| {
            cluster.read_state(|s| {
                s.actors
                    .get(a)
                    .is_some_and(|r| !matches!(r.state, ActorState::Dead { .. }))
            })
        });
        if last_health.elapsed() >= health_period(specs) {
            last_health = tokio::time::Instant::now();
            check_health(cluster, specs, statuses);
        }
        reconfigures.round(cluster, specs, statuses);
        loop_metrics.record_control_loop(&me, round_started.elapsed().as_secs_f64());
        changes.borrow_and_update();
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
    // Another node's controller reports the replicas and its rounds now.
    loop_metrics.record_replica_health(&[], &mut health_shown);
    loop_metrics.forget_control_loops();
}

/// `ray_serve_deployment_replica_healthy` as the controller's statuses
/// say: `[application, deployment, replica]` and 1 for each running
/// replica, 0 for one starting or stopping.
fn replica_health(statuses: &BTreeMap<String, AppStatus>) -> Vec<([String; 3], i64)> {
    statuses
        .values()
        .flat_map(|app| {
            app.deployments.iter().flat_map(move |(name, d)| {
                d.replicas.iter().map(move |r| {
                    (
                        [app.name.clone(), name.clone(), r.id.to_string()],
                        i64::from(r.state == ReplicaState::Running),
                    )
                })
            })
        })
        .collect()
}

/// The autoscaler's record writes and deletes, as transaction operations.
fn autoscale_writes(scaled: autoscaler::Scaled) -> Vec<TxnOp> {
    let key = |app: &str| format!("{}{app}", autoscaler::AUTOSCALE_PREFIX).into_bytes();
    let puts = scaled
        .write
        .iter()
        .map(|r| TxnOp::Put(PutRequest::new(key(&r.app), schema::encode(r))));
    let deletes = scaled.delete.iter().map(|app| {
        TxnOp::Delete(troupe_gcs::DeleteRequest {
            selector: troupe_gcs::KeySelector::Key(key(app)),
            prev_kv: false,
        })
    });
    puts.chain(deletes).collect()
}

/// The `graceful_shutdown_timeout` of the deployment `actor` is a replica
/// of (20 s if unknown).
fn graceful_timeout(
    specs: &BTreeMap<String, AppSpec>,
    statuses: &BTreeMap<String, AppStatus>,
    actor: troupe_core::id::ActorId,
) -> Duration {
    statuses
        .iter()
        .find_map(|(app, status)| {
            let (name, _) = status
                .deployments
                .iter()
                .find(|(_, d)| d.replicas.iter().any(|r| r.actor == actor))?;
            let d = specs
                .get(app)?
                .deployments
                .iter()
                .find(|d| &d.name == name)?;
            Some(Duration::from_millis(d.graceful_shutdown_timeout_ms))
        })
        .unwrap_or(Duration::from_secs(20))
}

/// Waits for the replica to finish what it runs (callers stopped routing to
/// it), then kills it.
async fn drain_and_kill(cluster: Cluster, actor: troupe_core::id::ActorId, timeout: Duration) {
    let drain = crate::replica::Drain {
        quiet_ms: 200,
        timeout_ms: timeout.as_millis() as u64,
    };
    let handle = cluster.handle::<crate::replica::Replica<crate::replica::Untyped>>(actor);
    let _ = handle
        .call_raw(
            "serve.drain",
            codec::encode(&drain),
            timeout + Duration::from_secs(5),
        )
        .await;
    let _ = cluster.kill(actor).await;
}

/// The shortest health-check period of any deployment.
fn health_period(specs: &BTreeMap<String, AppSpec>) -> Duration {
    specs
        .values()
        .flat_map(|s| &s.deployments)
        .map(|d| Duration::from_millis(d.health_check_period_ms))
        .min()
        .unwrap_or(Duration::from_secs(10))
}

/// Probes every running replica in the background; one that fails or does
/// not answer within its timeout is stopped (and then replaced).
fn check_health(
    cluster: &Cluster,
    specs: &BTreeMap<String, AppSpec>,
    statuses: &BTreeMap<String, AppStatus>,
) {
    for (app, status) in statuses {
        let Some(spec) = specs.get(app) else { continue };
        for (name, deployment) in &status.deployments {
            let Some(d) = spec.deployments.iter().find(|d| &d.name == name) else {
                continue;
            };
            for replica in deployment
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Running)
            {
                let (cluster, actor) = (cluster.clone(), replica.actor);
                let timeout = Duration::from_millis(d.health_check_timeout_ms);
                let type_name: &'static str = "serve.health";
                tokio::spawn(async move {
                    let handle =
                        cluster.handle::<crate::replica::Replica<crate::replica::Untyped>>(actor);
                    let payload = codec::encode(&HealthCheck);
                    let healthy = match handle.call_raw(type_name, payload, timeout).await {
                        Ok(reply) => {
                            matches!(codec::decode::<Result<(), String>>(&reply), Ok(Ok(())))
                        }
                        Err(troupe_worker::ActorError::Died { .. }) => return,
                        Err(_) => false,
                    };
                    let alive = cluster.read_state(|s| {
                        s.actors
                            .get(&actor)
                            .is_some_and(|a| a.state == ActorState::Alive)
                    });
                    if !healthy && alive {
                        tracing::warn!(%actor, "replica failed its health check; replacing it");
                        let _ = cluster.kill(actor).await;
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AppState, DeploymentState, DeploymentStatus, ReplicaStatus};
    use troupe_core::id::ActorId;

    fn replica(n: u64, state: ReplicaState) -> ReplicaStatus {
        ReplicaStatus {
            id: ReplicaId::new(n),
            actor: ActorId::new(n),
            version: 1,
            state,
            node: None,
        }
    }

    #[test]
    fn running_replicas_are_healthy_and_the_others_are_not() {
        let deployment = DeploymentStatus {
            state: DeploymentState::Updating,
            message: String::new(),
            target_replicas: 3,
            replicas: vec![
                replica(1, ReplicaState::Running),
                replica(2, ReplicaState::Starting),
                replica(3, ReplicaState::Stopping),
            ],
        };
        let app = AppStatus {
            name: "chain".into(),
            state: AppState::Deploying,
            message: String::new(),
            version: 1,
            deployments: BTreeMap::from([("count".to_owned(), deployment)]),
        };
        let health = replica_health(&BTreeMap::from([("chain".to_owned(), app)]));
        let labels = |n: u64| {
            [
                "chain".to_owned(),
                "count".to_owned(),
                ReplicaId::new(n).to_string(),
            ]
        };
        assert_eq!(health, vec![(labels(1), 1), (labels(2), 0), (labels(3), 0)]);
    }
}
