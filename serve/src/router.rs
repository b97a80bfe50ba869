//! Routing requests to replicas: the pure choice ([`choose`]) and the
//! per-deployment [`Router`] every caller (proxy, handle) keeps.
//!
//! A router learns the replica set from the process's cluster view (alive
//! replica actors of the deployment), so it never waits on the GCS and
//! keeps the last known set while the GCS is unavailable. It leaves out
//! replicas on nodes the process's health table has ejected (a refused,
//! lost or silent connection: see `troupe_worker::health`), unless every
//! replica is on one, when it tries them anyway: guesswork never removes a
//! deployment's last replicas. It counts the requests it has in flight per
//! replica, never sends a replica more than `max_ongoing_requests`, queues
//! up to `max_queued_requests` callers when every replica is full (then
//! answers "overloaded").
//!
//! Every request, typed, HTTP or streaming, goes through one retry driver
//! ([`Router::drive`]) whose decisions are the pure [`after_failure`]: a
//! request its replica never took (the node refused it, the replica was
//! gone) is tried on another replica; one lost in flight (the node died,
//! froze or was cut off mid-call) too when the deployment's
//! `retry_lost_requests` allows it; a streaming response is retried only
//! before its head, so no byte the client saw is sent twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use troupe_core::id::{ActorId, NodeId};
use troupe_worker::lifecycle::ActorState;
use troupe_worker::{ActorError, Cluster, ClusterState, Message, SharedHandler};

use crate::autoscale::Flow;
use crate::deployment::Deployment;
use crate::http::{ServeError, ServeRequest, ServeResponse, StreamPart};
use crate::records::ServeRecords;
use crate::replica::{HttpCall, Replica};
use crate::spec::parse_replica_name;

/// How long a request may take, queueing and retries included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Replicas a request is tried on before giving up.
const MAX_ATTEMPTS: usize = 3;

/// What a deployment allows when an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retry requests that were lost in flight (they may have run).
    pub retry_lost: bool,
    /// Replicas one request is tried on at most.
    pub max_attempts: usize,
}

/// After a failed attempt: another replica, or this answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    TryAnother,
    Fail(ServeError),
}

/// The retry policy: what to do after attempt number `attempts` (1-based)
/// failed with `error`. `timeout` is the request's (for the error when the
/// deadline has passed).
pub fn after_failure(
    error: &ActorError,
    policy: RetryPolicy,
    attempts: usize,
    deadline_passed: bool,
    timeout: Duration,
) -> Next {
    let timed_out = || ServeError::Timeout {
        seconds: timeout.as_secs_f64(),
    };
    let may_retry = attempts < policy.max_attempts && !deadline_passed;
    match error {
        ActorError::HandlerPanicked { message, .. } => Next::Fail(ServeError::Application {
            message: format!("a handler panicked: {message}"),
        }),
        // Never taken: the node refused it, or the replica was gone.
        ActorError::NotDelivered { .. }
        | ActorError::Died { .. }
        | ActorError::NotFound { .. }
        | ActorError::Pending { .. }
            if may_retry =>
        {
            Next::TryAnother
        }
        // Lost in flight: it may have run.
        ActorError::Unavailable { .. } if may_retry && policy.retry_lost => Next::TryAnother,
        _ if deadline_passed => Next::Fail(timed_out()),
        other => Next::Fail(ServeError::Unavailable(other.to_string())),
    }
}

/// Power of two choices: of the replicas below `max_ongoing`, the less
/// loaded of the two at `picks` (indices into the eligible ones, taken
/// modulo their count); `None` if every replica is full.
pub fn choose(
    replicas: &[(ActorId, u32)],
    max_ongoing: u32,
    picks: (usize, usize),
) -> Option<ActorId> {
    let eligible: Vec<&(ActorId, u32)> =
        replicas.iter().filter(|(_, n)| *n < max_ongoing).collect();
    match eligible.len() {
        0 => None,
        1 => Some(eligible[0].0),
        n => {
            let a = eligible[picks.0 % n];
            let mut b = eligible[picks.1 % n];
            if a.0 == b.0 {
                b = eligible[(picks.1 + 1) % n];
            }
            Some(if b.1 < a.1 { b.0 } else { a.0 })
        }
    }
}

/// What a router knows about its deployment.
#[derive(Debug, Default)]
struct RouterState {
    /// The view generation `replicas` and the limits were read at.
    revision: u64,
    /// Replicas and the nodes they run on.
    replicas: Vec<(ActorId, NodeId)>,
    max_ongoing: u32,
    max_queued: Option<u32>,
    retry_lost: bool,
    /// Why there are no replicas, for the error.
    missing: String,
    in_flight: HashMap<ActorId, u32>,
    queued: usize,
    /// Running totals for the autoscaler: arrivals, and requests that
    /// left a replica with the time they spent there.
    flow: Flow,
}

/// A deployment as its router sees it.
pub(crate) struct DeploymentView {
    pub(crate) replicas: Vec<(ActorId, NodeId)>,
    max_ongoing: u32,
    max_queued: Option<u32>,
    retry_lost: bool,
    /// Why there are no replicas.
    missing: String,
}

impl DeploymentView {
    fn missing(why: String) -> Self {
        DeploymentView {
            replicas: Vec::new(),
            max_ongoing: 1,
            max_queued: Some(0),
            retry_lost: false,
            missing: why,
        }
    }
}

/// The replicas of `app`/`deployment` in `state` that take requests, and
/// the deployment's limits; `records` are `state`'s serve records.
pub(crate) fn read_deployment(
    records: &ServeRecords,
    state: &ClusterState,
    app: &str,
    deployment: &str,
) -> DeploymentView {
    if !records.apps.contains_key(app) {
        return DeploymentView::missing(format!("application {app:?} is not deployed"));
    }
    let Some(d) = records.deployment(app, deployment) else {
        return DeploymentView::missing(format!(
            "application {app:?} has no deployment {deployment:?}"
        ));
    };
    // Replicas the controller is stopping take no new requests.
    let stopping = records.stopping(app, deployment);
    let replicas: Vec<(ActorId, NodeId)> = state
        .actors
        .values()
        .filter(|a| a.state == ActorState::Alive)
        .filter(|a| !stopping.contains(&a.id))
        .filter(|a| {
            a.name
                .as_ref()
                .and_then(parse_replica_name)
                .is_some_and(|(ap, dep, _, _)| ap == app && dep == deployment)
        })
        .filter_map(|a| Some((a.id, a.node?)))
        .collect();
    let missing = if replicas.is_empty() {
        "its replicas are starting (or failed: see the application's status)".to_owned()
    } else {
        String::new()
    };
    DeploymentView {
        replicas,
        max_ongoing: d.max_ongoing_requests,
        max_queued: d.max_queued_requests,
        retry_lost: d.retry_lost_requests,
        missing,
    }
}

/// The replicas a request may go to, with their load: those not tried
/// yet, less the ones on ejected nodes unless that would leave none.
fn candidates(
    replicas: &[(ActorId, NodeId)],
    exclude: &[ActorId],
    ejected: impl Fn(NodeId) -> bool,
    load: impl Fn(ActorId) -> u32,
) -> Vec<(ActorId, u32)> {
    let untried = |(a, _): &&(ActorId, NodeId)| !exclude.contains(a);
    let mut out: Vec<(ActorId, u32)> = replicas
        .iter()
        .filter(untried)
        .filter(|(_, n)| !ejected(*n))
        .map(|(a, _)| (*a, load(*a)))
        .collect();
    if out.is_empty() {
        out.extend(replicas.iter().filter(untried).map(|(a, _)| (*a, load(*a))));
    }
    out
}

/// Routes one deployment's requests.
pub struct Router {
    app: String,
    deployment: String,
    cluster: Cluster,
    state: Mutex<RouterState>,
    freed: Notify,
}

/// A replica's request slot; freed when dropped.
struct Slot<'a> {
    router: &'a Router,
    actor: ActorId,
    /// When it was taken: the time on the replica, for the service time.
    since: Instant,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.router.free(self.actor, self.since);
    }
}

/// A streamed body's items.
pub(crate) type StreamBody =
    futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// A request slot that outlives the call that took it (a streamed body).
struct OwnedSlot {
    router: Arc<Router>,
    actor: ActorId,
    since: Instant,
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        self.router.free(self.actor, self.since);
    }
}

/// A place in the queue; given up when dropped.
struct Queued<'a>(&'a Router);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.queued = state.queued.saturating_sub(1);
        self.0.report_queue(state.queued);
    }
}

impl Router {
    pub(crate) fn new(app: &str, deployment: &str, cluster: Cluster) -> Router {
        // The process's view follows this deployment's replicas (and
        // serve's records) from now on.
        cluster.follow_names(&crate::spec::replica_names_of(app, deployment));
        crate::records::follow(&cluster);
        // The queue gauges exist (at their true value, 0) from the start.
        crate::metrics::metrics().record_queue(app, deployment, 0);
        Router {
            app: app.to_owned(),
            deployment: deployment.to_owned(),
            cluster,
            state: Mutex::new(RouterState::default()),
            freed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Frees `actor`'s slot taken at `since`, counting the request's time
    /// on the replica.
    fn free(&self, actor: ActorId, since: Instant) {
        let mut state = self.lock();
        if let Some(n) = state.in_flight.get_mut(&actor) {
            *n = n.saturating_sub(1);
        }
        state.flow.completed += 1;
        state.flow.served_us += since.elapsed().as_micros() as u64;
        drop(state);
        self.freed.notify_one();
    }

    fn report_queue(&self, queued: usize) {
        crate::metrics::metrics().record_queue(&self.app, &self.deployment, queued);
    }

    fn label(&self) -> String {
        format!("{}/{}", self.app, self.deployment)
    }

    /// Requests queued here plus those in flight on replicas, and the
    /// running totals: what the router reports to the autoscaler.
    fn load(&self) -> (f64, Flow) {
        let state = self.lock();
        let in_flight: u64 = state.in_flight.values().map(|&n| u64::from(n)).sum();
        ((state.queued as u64 + in_flight) as f64, state.flow)
    }

    /// Re-reads the replica set if the view moved.
    fn refresh(&self, state: &mut RouterState) {
        let revision = self.cluster.read_state(|s| s.generation);
        if revision == state.revision && revision != 0 {
            return;
        }
        let view = self.cluster.read_state(|s| {
            let records = crate::records::of(&self.cluster, s);
            read_deployment(&records, s, &self.app, &self.deployment)
        });
        state
            .in_flight
            .retain(|a, n| *n > 0 || view.replicas.iter().any(|(r, _)| r == a));
        state.replicas = view.replicas;
        state.max_ongoing = view.max_ongoing.max(1);
        state.max_queued = view.max_queued;
        state.retry_lost = view.retry_lost;
        state.missing = view.missing;
        state.revision = revision;
    }

    /// Takes a request slot on a replica not in `exclude`, queueing while
    /// every replica is full; also says whether the deployment retries
    /// lost requests.
    async fn acquire(
        &self,
        exclude: &[ActorId],
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(Slot<'_>, bool), ServeError> {
        let health = self.cluster.health();
        let mut queued: Option<Queued<'_>> = None;
        let mut changes = self.cluster.state_changes();
        // A request arrives once: at its first attempt's first look.
        let mut arriving = exclude.is_empty();
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                if std::mem::take(&mut arriving) {
                    state.flow.arrived += 1;
                }
                self.refresh(&mut state);
                let candidates = candidates(
                    &state.replicas,
                    exclude,
                    |n| health.is_ejected(n),
                    |a| state.in_flight.get(&a).copied().unwrap_or(0),
                );
                let picks = (
                    rand::random::<u32>() as usize,
                    rand::random::<u32>() as usize,
                );
                if let Some(actor) = choose(&candidates, state.max_ongoing, picks) {
                    *state.in_flight.entry(actor).or_insert(0) += 1;
                    let retry_lost = state.retry_lost;
                    drop(state);
                    drop(queued);
                    return Ok((
                        Slot {
                            router: self,
                            actor,
                            since: Instant::now(),
                        },
                        retry_lost,
                    ));
                }
                if queued.is_none() {
                    if let Some(max) = state.max_queued {
                        if state.queued >= max as usize && !candidates.is_empty() {
                            return Err(ServeError::Overloaded {
                                deployment: self.label(),
                                queued: state.queued,
                            });
                        }
                    }
                    state.queued += 1;
                    self.report_queue(state.queued);
                    if state.replicas.is_empty() || state.queued == 1 {
                        // Scaled to zero (or starting), or a queue forms
                        // (the replicas are full): the autoscaler hears of
                        // it now, not at the next interval (the reporter
                        // bounds how often that sends).
                        crate::reporter::urgent();
                    }
                    drop(state);
                    queued = Some(Queued(self));
                }
            }
            tokio::select! {
                () = &mut freed => {}
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
                    let state = self.lock();
                    return Err(if state.replicas.is_empty() {
                        ServeError::NoReplicas { deployment: self.label(), reason: state.missing.clone() }
                    } else {
                        ServeError::Timeout { seconds: timeout.as_secs_f64() }
                    });
                }
            }
        }
    }

    /// The one retry driver: takes a slot on a replica, runs `attempt`
    /// there (with the time left), and after a failure asks
    /// [`after_failure`] whether to try another replica. Returns the
    /// answer and the slot it holds.
    async fn drive<R, F, Fut>(
        &self,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<(R, Slot<'_>), ServeError>
    where
        F: FnMut(ActorId, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<R, ActorError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut tried = Vec::new();
        loop {
            let (slot, retry_lost) = self.acquire(&tried, deadline, timeout).await?;
            tracing::Span::current().record("replica", tracing::field::display(slot.actor));
            let remaining = deadline.saturating_duration_since(Instant::now());
            // The deadline bounds every wait of the attempt, a call to a
            // replica in this process included (dropping it cancels the
            // handler).
            let error =
                match tokio::time::timeout_at(deadline, attempt(slot.actor, remaining)).await {
                    Ok(Ok(answer)) => return Ok((answer, slot)),
                    Ok(Err(error)) => error,
                    Err(_) => {
                        return Err(ServeError::Timeout {
                            seconds: timeout.as_secs_f64(),
                        })
                    }
                };
            let policy = RetryPolicy {
                retry_lost,
                max_attempts: MAX_ATTEMPTS,
            };
            let passed = Instant::now() >= deadline;
            match after_failure(&error, policy, tried.len() + 1, passed, timeout) {
                Next::TryAnother => {
                    tracing::debug!(replica = %slot.actor, %error, "trying another replica");
                    crate::metrics::metrics()
                        .request_retries
                        .with_label_values(&[self.app.as_str(), self.deployment.as_str()])
                        .inc();
                    tried.push(slot.actor);
                }
                Next::Fail(failure) => return Err(failure),
            }
        }
    }

    /// A replica's handle for the driver: calls that cannot be delivered
    /// come back at once, so the driver can go elsewhere.
    fn replica<D: Deployment>(&self, actor: ActorId) -> troupe_worker::ActorHandle<Replica<D>> {
        self.cluster.handle::<Replica<D>>(actor).fail_fast()
    }

    /// Sends `message` to a replica of `D` and returns its reply.
    pub(crate) async fn send<D: Deployment, M: Message + Clone>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<M::Reply, ServeError>
    where
        Replica<D>: SharedHandler<M>,
    {
        let (reply, _slot) = self
            .drive(timeout, |actor, remaining| {
                let handle = self.replica::<D>(actor);
                let message = message.clone();
                async move { handle.ask_timeout(message, remaining).await }
            })
            .await?;
        Ok(reply)
    }

    /// An HTTP request for an ingress replica, by message name (the proxy
    /// does not know the deployment's type). In-process when the replica
    /// runs here.
    pub(crate) async fn send_http(
        &self,
        request: ServeRequest,
        timeout: Duration,
    ) -> Result<ServeResponse, ServeError> {
        let (reply, _slot) = self
            .drive(timeout, |actor, remaining| {
                let handle = self.replica::<crate::replica::Untyped>(actor);
                // The body is shared (`Bytes`): a clone per attempt copies
                // no bytes; a local replica gets the request unencoded.
                let request = HttpCall(request.clone());
                async move { handle.call_dyn(request, remaining).await }
            })
            .await?;
        reply
    }

    /// A streaming HTTP request: the head, then the body as a stream that
    /// holds the replica's slot until it ends. Retried (by the driver) only
    /// until the head arrives: nothing has reached the client before it.
    pub(crate) async fn send_stream(
        self: &Arc<Self>,
        request: ServeRequest,
        timeout: Duration,
    ) -> Result<(u16, Vec<(String, String)>, StreamBody), ServeError> {
        use futures::StreamExt;
        let (opened, slot) = self
            .drive(timeout, |actor, remaining| {
                let handle = self.replica::<crate::replica::Untyped>(actor);
                let payload =
                    troupe_worker::codec::encode(&crate::replica::HttpStream(request.clone()));
                async move {
                    let lost = |detail: String| ActorError::Unavailable {
                        actor: actor.to_string(),
                        detail,
                    };
                    let mut items = handle
                        .stream_raw(crate::replica::HttpStream::NAME, payload, remaining)
                        .await?
                        .map(|item| {
                            item.map_err(|e| e.to_string()).and_then(|bytes| {
                                troupe_worker::codec::decode::<StreamPart>(&bytes)
                                    .map_err(|e| format!("a stream item did not decode: {e}"))
                            })
                        })
                        .boxed();
                    let head = items
                        .next()
                        .await
                        .ok_or_else(|| lost("the replica's stream ended before its head".into()))?
                        .map_err(lost)?;
                    Ok(match head {
                        StreamPart::Head { status, headers } => Ok((status, headers, items)),
                        StreamPart::Error(e) => Err(e),
                        StreamPart::Chunk(_) => Err(ServeError::Unavailable(
                            "the replica's stream began without a head".into(),
                        )),
                    })
                }
            })
            .await?;
        let (status, headers, items) = opened?;
        // The slot lives as long as the body stream.
        let (actor, since) = (slot.actor, slot.since);
        std::mem::forget(slot);
        let guard = OwnedSlot {
            router: self.clone(),
            actor,
            since,
        };
        let body = items
            .map(move |item| {
                let _held = &guard;
                match item {
                    Ok(StreamPart::Chunk(chunk)) => Ok(bytes::Bytes::from(chunk.into_vec())),
                    Ok(_) => Err(std::io::Error::other("unexpected item in a streamed body")),
                    Err(e) => Err(std::io::Error::other(e)),
                }
            })
            .boxed();
        Ok((status, headers, body))
    }

    /// A typed request through a handle.
    pub(crate) async fn call<D, M: Message + Clone>(
        &self,
        request: M,
    ) -> Result<M::Reply, ServeError>
    where
        D: crate::deployment::Serves<M>,
    {
        self.send::<D, _>(crate::replica::Request(request), REQUEST_TIMEOUT)
            .await
    }
}

/// The router of every deployment this process calls.
#[derive(Default)]
pub(crate) struct Routers {
    routers: Mutex<HashMap<(String, String), Arc<Router>>>,
}

impl Routers {
    /// Every router of the process with its load (the requests it has
    /// queued plus those in flight on replicas) and its running totals:
    /// what it reports to the autoscaler.
    pub(crate) fn loads(&self) -> Vec<((String, String), f64, Flow)> {
        let routers = self.routers.lock().unwrap_or_else(|p| p.into_inner());
        routers
            .iter()
            .map(|(key, router)| {
                let (load, flow) = router.load();
                (key.clone(), load, flow)
            })
            .collect()
    }

    pub(crate) fn get(&self, cluster: &Cluster, app: &str, deployment: &str) -> Arc<Router> {
        let mut routers = self.routers.lock().unwrap_or_else(|p| p.into_inner());
        routers
            .entry((app.to_owned(), deployment.to_owned()))
            .or_insert_with(|| Arc::new(Router::new(app, deployment, cluster.clone())))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u64) -> Vec<ActorId> {
        (1..=n).map(ActorId::new).collect()
    }

    #[test]
    fn the_less_loaded_of_two_wins_and_full_replicas_are_skipped() {
        let a = ids(3);
        let load = [(a[0], 4), (a[1], 1), (a[2], 5)];
        // Picks 0 and 1 of the eligible [a0 (4), a1 (1)]: a1 is less loaded.
        assert_eq!(choose(&load, 5, (0, 1)), Some(a[1]));
        assert_eq!(choose(&load, 5, (1, 0)), Some(a[1]));
        // The full one (5 of 5) is never chosen.
        for i in 0..10 {
            for j in 0..10 {
                assert_ne!(choose(&load, 5, (i, j)), Some(a[2]));
            }
        }
        // Same picks: the next one is compared instead of itself.
        assert_eq!(choose(&load, 5, (0, 0)), Some(a[1]));
    }

    #[test]
    fn nothing_eligible_means_queue_and_one_means_it() {
        let a = ids(2);
        assert_eq!(choose(&[(a[0], 1), (a[1], 1)], 1, (0, 1)), None);
        assert_eq!(choose(&[], 5, (0, 1)), None);
        assert_eq!(choose(&[(a[0], 1), (a[1], 0)], 1, (0, 0)), Some(a[1]));
    }

    #[test]
    fn ties_go_to_the_first_pick() {
        let a = ids(2);
        assert_eq!(choose(&[(a[0], 2), (a[1], 2)], 5, (1, 0)), Some(a[1]));
    }

    fn node(n: u64) -> NodeId {
        NodeId::new(n)
    }

    #[test]
    fn ejected_nodes_are_left_out_unless_every_replica_is_on_one() {
        let a = ids(3);
        let replicas = [(a[0], node(1)), (a[1], node(2)), (a[2], node(3))];
        let ejected = |n: NodeId| n == node(1) || n == node(2);
        let load = |a: ActorId| a.get() as u32;
        let ids_of = |c: Vec<(ActorId, u32)>| c.into_iter().map(|(a, _)| a).collect::<Vec<_>>();
        assert_eq!(candidates(&replicas, &[], ejected, load), vec![(a[2], 3)]);
        // The healthy one was tried: the ejected ones are all that is left,
        // and guesswork never removes the last replicas.
        assert_eq!(
            ids_of(candidates(&replicas, &[a[2]], ejected, load)),
            vec![a[0], a[1]]
        );
        assert_eq!(ids_of(candidates(&replicas, &[], |_| false, load)), a);
        assert!(candidates(&replicas, &a, |_| false, load).is_empty());
    }

    fn err(kind: &str) -> ActorError {
        let (actor, detail) = ("a1".to_string(), "10.0.0.1:7000".to_string());
        match kind {
            "not delivered" => ActorError::NotDelivered { actor, detail },
            "died" => ActorError::Died {
                actor,
                reason: detail,
            },
            "lost" => ActorError::Unavailable { actor, detail },
            "panicked" => ActorError::HandlerPanicked {
                actor,
                message: "boom".into(),
            },
            _ => ActorError::Codec {
                what: "x".into(),
                detail,
            },
        }
    }

    #[test]
    fn requests_never_taken_are_retried_and_lost_ones_only_when_allowed() {
        let timeout = Duration::from_secs(7);
        let on = RetryPolicy {
            retry_lost: true,
            max_attempts: 3,
        };
        let off = RetryPolicy {
            retry_lost: false,
            ..on
        };
        for policy in [on, off] {
            for kind in ["not delivered", "died"] {
                assert_eq!(
                    after_failure(&err(kind), policy, 1, false, timeout),
                    Next::TryAnother,
                    "{kind}"
                );
            }
        }
        assert_eq!(
            after_failure(&err("lost"), on, 1, false, timeout),
            Next::TryAnother
        );
        assert!(matches!(
            after_failure(&err("lost"), off, 1, false, timeout),
            Next::Fail(ServeError::Unavailable(_))
        ));
        // Out of attempts.
        assert!(matches!(
            after_failure(&err("not delivered"), on, 3, false, timeout),
            Next::Fail(ServeError::Unavailable(_))
        ));
    }

    #[test]
    fn a_passed_deadline_is_a_timeout_with_the_requests_own_length() {
        let policy = RetryPolicy {
            retry_lost: true,
            max_attempts: 3,
        };
        for kind in ["not delivered", "lost", "codec"] {
            assert_eq!(
                after_failure(&err(kind), policy, 1, true, Duration::from_secs(7)),
                Next::Fail(ServeError::Timeout { seconds: 7.0 }),
                "{kind}"
            );
        }
        // A panic is the application's failure, never retried.
        assert!(matches!(
            after_failure(&err("panicked"), policy, 1, false, Duration::from_secs(7)),
            Next::Fail(ServeError::Application { .. })
        ));
        assert!(matches!(
            after_failure(&err("codec"), policy, 1, false, Duration::from_secs(7)),
            Next::Fail(ServeError::Unavailable(_))
        ));
    }
}
