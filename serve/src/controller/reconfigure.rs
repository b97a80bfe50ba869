//! Lightweight `user_config` updates, in place: the serve controller hands
//! a deployment's new `user_config` to `reconfigure` on each of its running
//! replicas (the `serve.reconfigure` message) instead of replacing them.
//!
//! The controller remembers, per replica actor, the text that replica last
//! applied at its word ([`Sends`], in memory only): a new controller starts
//! empty and sends once more, which a replica holding that text answers
//! without calling `reconfigure`. A failed or unanswered send is retried
//! with a growing delay; the replica keeps running with the config it had,
//! and the failure is logged (again only when its error changes).
//! Replicas started after a change get the new text in their constructor
//! arguments.
//!
//! Which replicas to send to, and what a reply changes, are pure
//! ([`to_send`], [`Sends::finished`]); [`Reconfigures::round`] sends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use troupe_core::id::{ActorId, ReplicaId};
use troupe_worker::{codec, Cluster};

use crate::replica::Reconfigure;
use crate::spec::{AppSpec, AppStatus, ReplicaState};

/// How long a replica's `reconfigure` may take before the send counts as
/// failed (and is retried).
pub const RECONFIGURE_TIMEOUT: Duration = Duration::from_secs(60);
/// The delay before the first retry of a failed send; it doubles with each
/// failure of the same text, up to [`MAX_RETRY_DELAY`].
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between retries.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// One `serve.reconfigure` to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub app: String,
    pub deployment: String,
    pub replica: ReplicaId,
    pub actor: ActorId,
    pub user_config: String,
}

/// A replica whose last send failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The text that failed.
    pub text: String,
    /// Consecutive failures of that text.
    pub count: u32,
    /// Not sent again before then (unless the text changes).
    pub retry_at: Instant,
    /// The error last logged as a warning.
    pub logged: String,
}

/// What the controller knows of its sends, per replica actor.
#[derive(Debug, Default)]
pub struct Sends {
    /// The text each replica applied (or held already) at its word.
    pub applied: HashMap<ActorId, String>,
    /// Sends waiting for their answer.
    pub running: HashSet<ActorId>,
    pub failed: HashMap<ActorId, Failure>,
}

/// What to log about a finished send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Nothing (a success, or the error already logged).
    Quiet,
    /// A warning with this error.
    Warn(String),
}

impl Sends {
    /// Notes `send`'s answer at `now`: a success records its text; a
    /// failure delays the next try and says whether to warn. Pure.
    pub fn finished(&mut self, send: &Send, answer: Result<(), String>, now: Instant) -> Report {
        self.running.remove(&send.actor);
        match answer {
            Ok(()) => {
                self.failed.remove(&send.actor);
                self.applied.insert(send.actor, send.user_config.clone());
                Report::Quiet
            }
            Err(error) => {
                let last = self
                    .failed
                    .get(&send.actor)
                    .filter(|f| f.text == send.user_config);
                let count = last.map_or(1, |f| f.count + 1);
                let delay = FIRST_RETRY_DELAY
                    .saturating_mul(1 << (count - 1).min(16))
                    .min(MAX_RETRY_DELAY);
                let report = match last.is_some_and(|f| f.logged == error) {
                    true => Report::Quiet,
                    false => Report::Warn(error.clone()),
                };
                self.failed.insert(
                    send.actor,
                    Failure {
                        text: send.user_config.clone(),
                        count,
                        retry_at: now + delay,
                        logged: error,
                    },
                );
                report
            }
        }
    }

    /// Forgets the actors not in `live` (gone replicas).
    pub fn retain(&mut self, live: &HashSet<ActorId>) {
        self.applied.retain(|a, _| live.contains(a));
        self.failed.retain(|a, _| live.contains(a));
    }
}

/// The sends a round makes at `now`: every RUNNING replica of a
/// deployment's current version whose `user_config` differs from what it
/// last applied at the controller's word, unless a send to it is waiting
/// for its answer or that text failed on it and its retry is not due.
/// A deployment without `user_config` is left alone (its replicas keep the
/// last they applied, as in Ray Serve). Pure.
pub fn to_send(
    specs: &BTreeMap<String, AppSpec>,
    statuses: &BTreeMap<String, AppStatus>,
    sends: &Sends,
    now: Instant,
) -> Vec<Send> {
    let mut out = Vec::new();
    for (app, status) in statuses {
        let Some(spec) = specs.get(app) else { continue };
        for d in &spec.deployments {
            let (Some(text), Some(deployment)) = (&d.user_config, status.deployments.get(&d.name))
            else {
                continue;
            };
            for r in &deployment.replicas {
                let due = r.state == ReplicaState::Running
                    && r.version == d.version
                    && sends.applied.get(&r.actor) != Some(text)
                    && !sends.running.contains(&r.actor)
                    && !sends
                        .failed
                        .get(&r.actor)
                        .is_some_and(|f| &f.text == text && now < f.retry_at);
                if due {
                    out.push(Send {
                        app: app.clone(),
                        deployment: d.name.clone(),
                        replica: r.id,
                        actor: r.actor,
                        user_config: text.clone(),
                    });
                }
            }
        }
    }
    out
}

/// The controller's side of in-place reconfiguration, for one term.
pub struct Reconfigures {
    term: u64,
    /// Sends made in this term: with the term, the order of each send.
    sequence: u64,
    sends: Arc<Mutex<Sends>>,
}

impl Reconfigures {
    /// Nothing sent yet, by the controller of `term`.
    pub fn new(term: u64) -> Self {
        Reconfigures {
            term,
            sequence: 0,
            sends: Default::default(),
        }
    }

    /// One round: forgets replicas that are gone, then sends each due
    /// reconfiguration in the background (answers are noted as they come).
    pub fn round(
        &mut self,
        cluster: &Cluster,
        specs: &BTreeMap<String, AppSpec>,
        statuses: &BTreeMap<String, AppStatus>,
    ) {
        let now = Instant::now();
        let due = {
            let mut sends = self.sends.lock().expect("not poisoned");
            let live: HashSet<ActorId> = statuses
                .values()
                .flat_map(|s| s.deployments.values())
                .flat_map(|d| d.replicas.iter().map(|r| r.actor))
                .collect();
            sends.retain(&live);
            let due = to_send(specs, statuses, &sends, now);
            sends.running.extend(due.iter().map(|s| s.actor));
            due
        };
        for send in due {
            self.sequence += 1;
            let message = Reconfigure {
                user_config: send.user_config.clone(),
                order: (self.term, self.sequence),
            };
            tokio::spawn(deliver(cluster.clone(), self.sends.clone(), send, message));
        }
    }
}

/// Sends one reconfiguration and notes its answer.
async fn deliver(cluster: Cluster, sends: Arc<Mutex<Sends>>, send: Send, message: Reconfigure) {
    let handle = cluster.handle::<crate::replica::Replica<crate::replica::Untyped>>(send.actor);
    let answer = handle
        .call_raw(
            "serve.reconfigure",
            codec::encode(&message),
            RECONFIGURE_TIMEOUT,
        )
        .await;
    let answer = match answer {
        Ok(reply) => match codec::decode::<Result<(), String>>(&reply) {
            Ok(result) => result,
            Err(e) => Err(format!("its answer does not decode: {e}")),
        },
        Err(e) => Err(e.to_string()),
    };
    let report = sends
        .lock()
        .expect("not poisoned")
        .finished(&send, answer, Instant::now());
    match report {
        Report::Quiet => tracing::debug!(
            app = %send.app,
            deployment = %send.deployment,
            replica = %send.replica,
            "replica reconfiguration answered"
        ),
        Report::Warn(error) => tracing::warn!(
            app = %send.app,
            deployment = %send.deployment,
            replica = %send.replica,
            actor = %send.actor,
            %error,
            "a replica could not apply the new user_config (it keeps running with the one it had); retrying with backoff. Fix the deployment's reconfigure or deploy a config it accepts"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{AppState, DeploymentSpec, DeploymentState, DeploymentStatus, ReplicaStatus};

    fn replica(n: u64, version: u64, state: ReplicaState) -> ReplicaStatus {
        ReplicaStatus {
            id: ReplicaId::new(n),
            actor: ActorId::new(n),
            version,
            state,
            node: None,
        }
    }

    /// App `a`, deployment `x` at version 1 with `config`, and its
    /// replicas.
    fn world(
        config: Option<&str>,
        replicas: Vec<ReplicaStatus>,
    ) -> (BTreeMap<String, AppSpec>, BTreeMap<String, AppStatus>) {
        let mut d = DeploymentSpec::for_tests("x", "T", 1, 3);
        d.user_config = config.map(str::to_owned);
        let spec = AppSpec {
            name: "a".into(),
            route_prefix: None,
            ingress: "x".into(),
            streaming: false,
            deployments: vec![d],
            version: 1,
        };
        let status = AppStatus {
            name: "a".into(),
            state: AppState::Running,
            message: String::new(),
            version: 1,
            deployments: BTreeMap::from([(
                "x".to_string(),
                DeploymentStatus {
                    state: DeploymentState::Healthy,
                    message: String::new(),
                    target_replicas: 3,
                    replicas,
                },
            )]),
        };
        (
            BTreeMap::from([("a".to_string(), spec)]),
            BTreeMap::from([("a".to_string(), status)]),
        )
    }

    fn actors(sends: &[Send]) -> Vec<u64> {
        sends.iter().map(|s| s.actor.get()).collect()
    }

    #[test]
    fn only_running_replicas_of_the_current_version_that_lack_the_text_are_sent_it() {
        let now = Instant::now();
        let (specs, statuses) = world(
            Some("{\"k\":2}"),
            vec![
                replica(1, 1, ReplicaState::Running),
                replica(2, 1, ReplicaState::Running),
                replica(3, 1, ReplicaState::Starting),
                replica(4, 1, ReplicaState::Stopping),
                replica(5, 0, ReplicaState::Running),
                replica(6, 1, ReplicaState::Running),
            ],
        );
        let mut sends = Sends::default();
        sends.applied.insert(ActorId::new(2), "{\"k\":2}".into());
        sends.applied.insert(ActorId::new(6), "{\"k\":1}".into());
        let due = to_send(&specs, &statuses, &sends, now);
        // 1: never sent (a new controller); 6: holds an older text. Not
        // 2 (has it), 3 (starting: its constructor gets the text), 4
        // (stopping), 5 (an older version, being replaced).
        assert_eq!(actors(&due), [1, 6]);
        assert_eq!(due[0].user_config, "{\"k\":2}");
        assert_eq!(
            (due[0].app.as_str(), due[0].deployment.as_str()),
            ("a", "x")
        );
        // A send waiting for its answer is not sent again.
        sends.running.insert(ActorId::new(1));
        assert_eq!(actors(&to_send(&specs, &statuses, &sends, now)), [6]);
        // Without user_config, nothing is sent.
        let (specs, statuses) = world(None, vec![replica(1, 1, ReplicaState::Running)]);
        assert!(to_send(&specs, &statuses, &Sends::default(), now).is_empty());
    }

    #[test]
    fn a_failed_text_is_retried_with_a_growing_delay_and_warned_once_per_error() {
        let t0 = Instant::now();
        let (specs, statuses) = world(Some("bad"), vec![replica(1, 1, ReplicaState::Running)]);
        let mut sends = Sends::default();
        let send = to_send(&specs, &statuses, &sends, t0).remove(0);
        sends.running.insert(send.actor);
        let report = sends.finished(&send, Err("no such model".into()), t0);
        assert_eq!(report, Report::Warn("no such model".into()));
        assert!(sends.running.is_empty());
        // Not again before its delay, then again.
        assert!(to_send(&specs, &statuses, &sends, t0).is_empty());
        let t1 = t0 + FIRST_RETRY_DELAY;
        assert_eq!(actors(&to_send(&specs, &statuses, &sends, t1)), [1]);
        // The same error again: quiet, and the delay doubles.
        assert_eq!(
            sends.finished(&send, Err("no such model".into()), t1),
            Report::Quiet
        );
        assert!(to_send(&specs, &statuses, &sends, t1 + FIRST_RETRY_DELAY).is_empty());
        let t2 = t1 + FIRST_RETRY_DELAY * 2;
        assert_eq!(actors(&to_send(&specs, &statuses, &sends, t2)), [1]);
        // A different error is warned.
        assert_eq!(
            sends.finished(&send, Err("timed out".into()), t2),
            Report::Warn("timed out".into())
        );
        // The delay never passes the maximum.
        for _ in 0..20 {
            sends.finished(&send, Err("timed out".into()), t2);
        }
        assert_eq!(sends.failed[&send.actor].retry_at, t2 + MAX_RETRY_DELAY);
        // A new text is sent at once, whatever the old one's delay.
        let (specs, statuses) = world(Some("good"), vec![replica(1, 1, ReplicaState::Running)]);
        let good = to_send(&specs, &statuses, &sends, t2).remove(0);
        assert_eq!(good.user_config, "good");
        assert_eq!(sends.finished(&good, Ok(()), t2), Report::Quiet);
        assert!(sends.failed.is_empty());
        assert!(to_send(&specs, &statuses, &sends, t2).is_empty());
    }

    #[test]
    fn gone_replicas_are_forgotten() {
        let mut sends = Sends::default();
        sends.applied.insert(ActorId::new(1), "a".into());
        sends.applied.insert(ActorId::new(2), "a".into());
        sends.failed.insert(
            ActorId::new(2),
            Failure {
                text: "b".into(),
                count: 1,
                retry_at: Instant::now(),
                logged: "e".into(),
            },
        );
        sends.retain(&HashSet::from([ActorId::new(1)]));
        assert_eq!(sends.applied.len(), 1);
        assert!(sends.failed.is_empty());
    }
}
