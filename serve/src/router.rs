//! Routing requests to replicas: the pure choice ([`choose`]) and the
//! per-deployment [`Router`] every caller (proxy, handle) keeps.
//!
//! A router learns the replica set from the process's cluster view (alive
//! replica actors of the deployment), so it never waits on the GCS and
//! keeps the last known set while the GCS is unavailable. It counts the
//! requests it has in flight per replica, never sends a replica more than
//! `max_ongoing_requests`, queues up to `max_queued_requests` callers when
//! every replica is full (then answers "overloaded"), and retries a request
//! on another replica when its replica died before taking it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use troupe_core::id::ActorId;
use troupe_worker::lifecycle::ActorState;
use troupe_worker::{schema, ActorError, Cluster, ClusterState, Message, SharedHandler};

use crate::deployment::Deployment;
use crate::http::{ServeError, ServeRequest, ServeResponse, StreamPart};
use crate::replica::{HttpCall, Replica};
use crate::spec::{
    decode_status, parse_replica_name, AppSpec, ReplicaState, APPS_PREFIX, STATUS_PREFIX,
};

/// How long a request may take, queueing and retries included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Replicas a request is tried on before giving up.
const MAX_ATTEMPTS: usize = 3;

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
    /// The view revision `replicas` and the limits were read at.
    revision: u64,
    replicas: Vec<ActorId>,
    max_ongoing: u32,
    max_queued: Option<u32>,
    /// Why there are no replicas, for the error.
    missing: String,
    in_flight: HashMap<ActorId, u32>,
    queued: usize,
}

/// The replicas of `app`/`deployment` in `state` that take requests, and
/// the deployment's limits.
fn read_deployment(
    state: &ClusterState,
    app: &str,
    deployment: &str,
) -> (Vec<ActorId>, u32, Option<u32>, String) {
    let spec = state
        .extra
        .get(format!("{APPS_PREFIX}{app}").as_bytes())
        .and_then(|v| schema::decode::<AppSpec>(v).ok());
    let Some(spec) = spec else {
        return (
            Vec::new(),
            1,
            Some(0),
            format!("application {app:?} is not deployed"),
        );
    };
    let Some(d) = spec.deployments.iter().find(|d| d.name == deployment) else {
        return (
            Vec::new(),
            1,
            Some(0),
            format!("application {app:?} has no deployment {deployment:?}"),
        );
    };
    // Replicas the controller is stopping take no new requests.
    let stopping: Vec<ActorId> = state
        .extra
        .get(format!("{STATUS_PREFIX}{app}").as_bytes())
        .and_then(|v| decode_status(v))
        .and_then(|s| s.deployments.get(deployment).cloned())
        .map(|d| {
            d.replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Stopping)
                .map(|r| r.actor)
                .collect()
        })
        .unwrap_or_default();
    let replicas: Vec<ActorId> = state
        .actors
        .values()
        .filter(|a| a.state == ActorState::Alive && a.node.is_some())
        .filter(|a| !stopping.contains(&a.id))
        .filter(|a| {
            a.name
                .as_ref()
                .and_then(parse_replica_name)
                .is_some_and(|(ap, dep, _, _)| ap == app && dep == deployment)
        })
        .map(|a| a.id)
        .collect();
    let missing = if replicas.is_empty() {
        "its replicas are starting (or failed: see the application's status)".to_owned()
    } else {
        String::new()
    };
    (
        replicas,
        d.max_ongoing_requests,
        d.max_queued_requests,
        missing,
    )
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
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.router.lock();
        if let Some(n) = state.in_flight.get_mut(&self.actor) {
            *n = n.saturating_sub(1);
        }
        drop(state);
        self.router.freed.notify_one();
    }
}

/// A streamed body's items.
pub(crate) type StreamBody =
    futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// A request slot that outlives the call that took it (a streamed body).
struct OwnedSlot {
    router: Arc<Router>,
    actor: ActorId,
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        let mut state = self.router.lock();
        if let Some(n) = state.in_flight.get_mut(&self.actor) {
            *n = n.saturating_sub(1);
        }
        drop(state);
        self.router.freed.notify_one();
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

    fn report_queue(&self, queued: usize) {
        crate::metrics::metrics()
            .deployment_queued
            .with_label_values(&[self.app.as_str(), self.deployment.as_str()])
            .set(queued as i64);
    }

    fn label(&self) -> String {
        format!("{}/{}", self.app, self.deployment)
    }

    /// Re-reads the replica set if the view moved.
    fn refresh(&self, state: &mut RouterState) {
        let revision = self.cluster.read_state(|s| s.revision);
        if revision == state.revision && revision != 0 {
            return;
        }
        let (replicas, max_ongoing, max_queued, missing) = self
            .cluster
            .read_state(|s| read_deployment(s, &self.app, &self.deployment));
        state
            .in_flight
            .retain(|a, n| *n > 0 || replicas.contains(a));
        state.replicas = replicas;
        state.max_ongoing = max_ongoing.max(1);
        state.max_queued = max_queued;
        state.missing = missing;
        state.revision = revision;
    }

    /// Takes a request slot on a replica not in `exclude`, queueing while
    /// every replica is full.
    async fn acquire(
        &self,
        exclude: &[ActorId],
        deadline: Instant,
    ) -> Result<Slot<'_>, ServeError> {
        let mut queued: Option<Queued<'_>> = None;
        let mut changes = self.cluster.state_changes();
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                self.refresh(&mut state);
                let candidates: Vec<(ActorId, u32)> = state
                    .replicas
                    .iter()
                    .filter(|a| !exclude.contains(a))
                    .map(|a| (*a, state.in_flight.get(a).copied().unwrap_or(0)))
                    .collect();
                let picks = (
                    rand::random::<u32>() as usize,
                    rand::random::<u32>() as usize,
                );
                if let Some(actor) = choose(&candidates, state.max_ongoing, picks) {
                    *state.in_flight.entry(actor).or_insert(0) += 1;
                    drop(state);
                    drop(queued);
                    return Ok(Slot {
                        router: self,
                        actor,
                    });
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
                        ServeError::Timeout { seconds: REQUEST_TIMEOUT.as_secs_f64() }
                    });
                }
            }
        }
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
        let deadline = Instant::now() + timeout;
        let mut tried = Vec::new();
        loop {
            let slot = self.acquire(&tried, deadline).await?;
            let handle = self.cluster.handle::<Replica<D>>(slot.actor);
            let remaining = deadline.saturating_duration_since(Instant::now());
            match handle.ask_timeout(message.clone(), remaining).await {
                Ok(reply) => return Ok(reply),
                // The replica was gone before it took the request: another.
                Err(
                    ActorError::Died { .. }
                    | ActorError::NotFound { .. }
                    | ActorError::Pending { .. },
                ) if tried.len() + 1 < MAX_ATTEMPTS => {
                    tracing::debug!(replica = %slot.actor, "replica gone; trying another");
                    tried.push(slot.actor);
                }
                Err(ActorError::HandlerPanicked { message, .. }) => {
                    return Err(ServeError::Application {
                        message: format!("a handler panicked: {message}"),
                    })
                }
                Err(e) => return Err(ServeError::Unavailable(e.to_string())),
            }
        }
    }

    /// An HTTP request for an ingress replica, by message name (the proxy
    /// does not know the deployment's type). In-process when the replica
    /// runs here.
    pub(crate) async fn send_http(
        &self,
        request: ServeRequest,
        timeout: Duration,
    ) -> Result<ServeResponse, ServeError> {
        let deadline = Instant::now() + timeout;
        let mut tried = Vec::new();
        loop {
            let slot = self.acquire(&tried, deadline).await?;
            tracing::Span::current().record("replica", tracing::field::display(slot.actor));
            let handle = self
                .cluster
                .handle::<Replica<crate::replica::Untyped>>(slot.actor);
            let remaining = deadline.saturating_duration_since(Instant::now());
            // The body is shared (`Bytes`): a clone per attempt copies no
            // bytes; a local replica gets the request unencoded.
            match handle.call_dyn(HttpCall(request.clone()), remaining).await {
                Ok(reply) => return reply,
                Err(
                    ActorError::Died { .. }
                    | ActorError::NotFound { .. }
                    | ActorError::Pending { .. },
                ) if tried.len() + 1 < MAX_ATTEMPTS => {
                    tried.push(slot.actor);
                }
                Err(ActorError::HandlerPanicked { message, .. }) => {
                    return Err(ServeError::Application {
                        message: format!("a handler panicked: {message}"),
                    })
                }
                Err(e) if Instant::now() >= deadline => {
                    tracing::debug!(error = %e, "request timed out");
                    return Err(ServeError::Timeout {
                        seconds: timeout.as_secs_f64(),
                    });
                }
                Err(e) => return Err(ServeError::Unavailable(e.to_string())),
            }
        }
    }

    /// A streaming HTTP request: the head, then the body as a stream that
    /// holds the replica's slot until it ends.
    pub(crate) async fn send_stream(
        self: &Arc<Self>,
        request: ServeRequest,
        timeout: Duration,
    ) -> Result<(u16, Vec<(String, String)>, StreamBody), ServeError> {
        use futures::StreamExt;
        let deadline = Instant::now() + timeout;
        let slot = self.acquire(&[], deadline).await?;
        let actor = slot.actor;
        // The slot lives as long as the body stream.
        std::mem::forget(slot);
        let guard = OwnedSlot {
            router: self.clone(),
            actor,
        };
        tracing::Span::current().record("replica", tracing::field::display(actor));
        let handle = self
            .cluster
            .handle::<Replica<crate::replica::Untyped>>(actor);
        let payload = troupe_worker::codec::encode(&crate::replica::HttpStream(request));
        let remaining = deadline.saturating_duration_since(Instant::now());
        let mut items = handle
            .stream_raw(crate::replica::HttpStream::NAME, payload, remaining)
            .await
            .map_err(|e| ServeError::Unavailable(e.to_string()))?
            .map(|item| {
                item.map_err(|e| e.to_string()).and_then(|bytes| {
                    troupe_worker::codec::decode::<StreamPart>(&bytes)
                        .map_err(|e| format!("a stream item did not decode: {e}"))
                })
            });
        let head = items
            .next()
            .await
            .ok_or_else(|| {
                ServeError::Unavailable("the replica's stream ended before its head".into())
            })?
            .map_err(ServeError::Unavailable)?;
        let (status, headers) = match head {
            StreamPart::Head { status, headers } => (status, headers),
            StreamPart::Error(e) => return Err(e),
            StreamPart::Chunk(_) => {
                return Err(ServeError::Unavailable(
                    "the replica's stream began without a head".into(),
                ))
            }
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
}
