//! [`Replica<D>`]: the shared actor that hosts one replica of deployment
//! `D`, and the messages the serve layer sends it.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use troupe_core::id::ReplicaId;
use troupe_worker::{codec, Actor, ActorContext, Message, SharedHandler};

use crate::deployment::{Deployment, HttpIngress, ReplicaContext, Serves};
use crate::http::{ServeError, ServeRequest, ServeResponse};

/// One replica of `D`, hosted as a shared actor (its handlers run
/// concurrently).
pub struct Replica<D: Deployment> {
    inner: std::rc::Rc<D>,
    /// Requests (and open streams) running now; a drain waits for zero.
    /// Handlers of one replica share its thread.
    in_flight: std::rc::Rc<std::cell::Cell<usize>>,
    /// Its metric labels: application, deployment, replica.
    labels: std::rc::Rc<[String; 3]>,
    /// The `user_config` it applied last; held while `reconfigure` runs,
    /// so reconfigurations run one at a time, in the order they came.
    config: std::rc::Rc<tokio::sync::Mutex<Applied>>,
}

/// The `user_config` a replica applied, and the order of the
/// [`Reconfigure`] that brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    text: Option<String>,
    /// `(0, 0)` for the one it was constructed with.
    order: (u64, u64),
}

/// Counts a request or a stream while it runs (and in the metrics: when
/// it ends, Ray's request counter and latency histogram, labelled with
/// the route it came by).
struct Running {
    counter: std::rc::Rc<std::cell::Cell<usize>>,
    labels: std::rc::Rc<[String; 3]>,
    /// The application's route prefix for HTTP requests; empty for calls
    /// through a handle (Troupe does not carry the ingress route along,
    /// Ray's value for a call made outside an HTTP request).
    route: String,
    started: std::time::Instant,
}

impl Running {
    fn new<D: Deployment>(replica: &Replica<D>, route: String) -> Self {
        let counter = replica.in_flight.clone();
        counter.set(counter.get() + 1);
        let labels = replica.labels.clone();
        let [a, d, r] = &*labels;
        crate::metrics::metrics()
            .replica_processing
            .with_label_values(&[a.as_str(), d.as_str(), r.as_str()])
            .inc();
        Running {
            counter,
            labels,
            route,
            started: std::time::Instant::now(),
        }
    }

    /// Counts the request's error, by its kind.
    fn failed(&self, error: &ServeError) {
        let [a, d, r] = &*self.labels;
        crate::metrics::metrics()
            .deployment_errors
            .with_label_values(&[
                a.as_str(),
                d.as_str(),
                r.as_str(),
                self.route.as_str(),
                error.kind(),
            ])
            .inc();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.counter.set(self.counter.get() - 1);
        let [a, d, r] = &*self.labels;
        let m = crate::metrics::metrics();
        m.replica_processing
            .with_label_values(&[a.as_str(), d.as_str(), r.as_str()])
            .dec();
        let labels = [a.as_str(), d.as_str(), r.as_str(), self.route.as_str()];
        m.deployment_requests.with_label_values(&labels).inc();
        m.deployment_latency_ms
            .with_label_values(&labels)
            .observe(self.started.elapsed().as_secs_f64() * 1e3);
    }
}

/// The route prefix of application `app` in the process's view (empty if
/// it has none or the view does not hold it).
fn route_of(cluster: &troupe_worker::Cluster, app: &str) -> String {
    crate::records::follow(cluster);
    crate::records::current(cluster)
        .apps
        .get(app)
        .and_then(|spec| spec.route_prefix.clone())
        .unwrap_or_default()
}

/// The replica actor's constructor argument.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaArgs {
    pub app: String,
    pub deployment: String,
    pub replica: ReplicaId,
    /// `D::Args`, encoded.
    pub args: ByteBuf,
    /// The deployment's `user_config`, as JSON text.
    pub user_config: Option<String>,
}

impl<D: Deployment> Actor for Replica<D> {
    const TYPE_NAME: &'static str = D::NAME;
    type Args = ReplicaArgs;

    async fn start(args: ReplicaArgs, cx: &ActorContext) -> Result<Self, String> {
        let deployment_args: D::Args =
            crate::deployment::decode_in_app(&args.app, || codec::decode(&args.args)).map_err(
                |e| {
                    format!(
                        "the arguments of deployment {:?} do not decode: {e}",
                        args.deployment
                    )
                },
            )?;
        let rcx = ReplicaContext {
            app: args.app,
            deployment: args.deployment,
            replica: args.replica,
            cluster: cx.cluster.clone(),
        };
        let inner = D::new(deployment_args, &rcx).await?;
        let labels = std::rc::Rc::new([
            rcx.app.clone(),
            rcx.deployment.clone(),
            rcx.replica.to_string(),
        ]);
        if let Some(config) = &args.user_config {
            let value: serde_json::Value = serde_json::from_str(config)
                .map_err(|e| format!("user_config is not JSON: {e}"))?;
            inner.reconfigure(&value).await?;
        }
        Ok(Replica {
            inner: std::rc::Rc::new(inner),
            in_flight: Default::default(),
            labels,
            config: std::rc::Rc::new(tokio::sync::Mutex::new(Applied {
                text: args.user_config,
                order: (0, 0),
            })),
        })
    }
}

/// A typed request for a deployment, as a handle sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Request<M>(pub M);

impl<M: Message> Message for Request<M> {
    type Reply = M::Reply;
    const NAME: &'static str = M::NAME;
}

impl<D: Serves<M>, M: Message> SharedHandler<Request<M>> for Replica<D> {
    async fn handle(&self, Request(request): Request<M>, _: &ActorContext) -> M::Reply {
        let _running = Running::new(self, String::new());
        self.inner.call(request).await
    }
}

/// An HTTP request for an ingress replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpCall(pub ServeRequest);

impl Message for HttpCall {
    type Reply = Result<ServeResponse, ServeError>;
    const NAME: &'static str = "serve.http";
}

impl<D: HttpIngress> SharedHandler<HttpCall> for Replica<D> {
    async fn handle(
        &self,
        HttpCall(request): HttpCall,
        cx: &ActorContext,
    ) -> Result<ServeResponse, ServeError> {
        let running = Running::new(self, route_of(&cx.cluster, &self.labels[0]));
        let answer = self.inner.http(request).await;
        if let Err(e) = &answer {
            running.failed(e);
        }
        answer
    }
}

/// The controller's health probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthCheck;

impl Message for HealthCheck {
    type Reply = Result<(), String>;
    const NAME: &'static str = "serve.health";
}

impl<D: Deployment> SharedHandler<HealthCheck> for Replica<D> {
    async fn handle(&self, _: HealthCheck, _: &ActorContext) -> Result<(), String> {
        self.inner.check_health().await
    }
}

/// What a replica does with a [`Reconfigure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Older than the config applied: nothing.
    Ignore,
    /// The text applied already: only note the newer order.
    Keep,
    /// Call `reconfigure`, and on success record it.
    Apply,
}

impl Applied {
    /// What to do with `update`. Pure.
    fn step(&self, update: &Reconfigure) -> Step {
        if update.order < self.order {
            Step::Ignore
        } else if self.text.as_ref() == Some(&update.user_config) {
            Step::Keep
        } else {
            Step::Apply
        }
    }
}

/// The serve controller's lightweight update: a new `user_config` (JSON
/// text) for a running replica, applied in place by the deployment's
/// `reconfigure`. `order` is the controller's (term, sequence number) of
/// the send: a reconfiguration older than the one applied last (delayed
/// past a newer one, or from a deposed controller) is ignored, so the
/// latest text wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconfigure {
    pub user_config: String,
    pub order: (u64, u64),
}

impl Message for Reconfigure {
    /// `Err` with `reconfigure`'s error (the replica keeps running, with
    /// the config it had).
    type Reply = Result<(), String>;
    const NAME: &'static str = "serve.reconfigure";
}

impl<D: Deployment> SharedHandler<Reconfigure> for Replica<D> {
    async fn handle(&self, update: Reconfigure, _: &ActorContext) -> Result<(), String> {
        // Held across `reconfigure`: one at a time, in arrival order.
        let mut applied = self.config.lock().await;
        match applied.step(&update) {
            Step::Ignore => return Ok(()),
            Step::Keep => {
                applied.order = update.order;
                return Ok(());
            }
            Step::Apply => {}
        }
        let value: serde_json::Value = serde_json::from_str(&update.user_config)
            .map_err(|e| format!("user_config is not JSON: {e}"))?;
        self.inner.reconfigure(&value).await?;
        *applied = Applied {
            text: Some(update.user_config),
            order: update.order,
        };
        Ok(())
    }
}

/// Sent before a replica is stopped: answers once no request has run for
/// `quiet_ms` (callers have stopped routing to it), or after `timeout_ms`
/// (`graceful_shutdown_timeout_s`), whichever comes first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Drain {
    pub quiet_ms: u64,
    pub timeout_ms: u64,
}

impl Message for Drain {
    type Reply = ();
    const NAME: &'static str = "serve.drain";
}

impl<D: Deployment> SharedHandler<Drain> for Replica<D> {
    async fn handle(&self, drain: Drain, _: &ActorContext) {
        let step = std::time::Duration::from_millis(10);
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(drain.timeout_ms);
        let mut quiet = std::time::Duration::ZERO;
        while quiet < std::time::Duration::from_millis(drain.quiet_ms)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(step).await;
            quiet = if self.in_flight.get() == 0 {
                quiet + step
            } else {
                std::time::Duration::ZERO
            };
        }
    }
}

/// An HTTP request for a streaming ingress replica; the reply items are
/// the head, then the chunks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpStream(pub ServeRequest);

impl Message for HttpStream {
    type Reply = crate::http::StreamPart;
    const NAME: &'static str = "serve.http_stream";
}

impl<D: crate::deployment::StreamingIngress> troupe_worker::StreamHandler<HttpStream>
    for Replica<D>
{
    fn stream(
        &self,
        HttpStream(request): HttpStream,
        cx: &ActorContext,
    ) -> impl futures::Stream<Item = crate::http::StreamPart> + 'static {
        use crate::http::StreamPart;
        use futures::StreamExt;
        let inner = self.inner.clone();
        let running = Running::new(self, route_of(&cx.cluster, &self.labels[0]));
        let head = async move { inner.http_stream(request).await };
        futures::stream::once(head).flat_map(move |answer| {
            if let Err(e) = &answer {
                running.failed(e);
            }
            match answer {
                Ok(stream) => futures::stream::once(futures::future::ready(StreamPart::Head {
                    status: stream.status,
                    headers: stream.headers,
                }))
                .chain(
                    stream
                        .body
                        .map(|chunk| StreamPart::Chunk(ByteBuf::from(chunk))),
                )
                .boxed_local(),
                Err(e) => futures::stream::once(futures::future::ready(StreamPart::Error(e)))
                    .boxed_local(),
            }
        })
    }
}

/// A stand-in deployment type for calls that do not know the replica's
/// type (the proxy's HTTP calls, health probes): only messages every
/// replica answers are sent through it.
pub(crate) struct Untyped;

impl Deployment for Untyped {
    const NAME: &'static str = "serve.untyped";
    type Args = ();

    async fn new((): (), _: &ReplicaContext) -> Result<Self, String> {
        Ok(Untyped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(text: &str, order: (u64, u64)) -> Reconfigure {
        Reconfigure {
            user_config: text.into(),
            order,
        }
    }

    #[test]
    fn a_reconfiguration_applies_a_new_text_once_and_never_an_older_one() {
        let built = Applied {
            text: Some("a".into()),
            order: (0, 0),
        };
        // The text it was built with: nothing to call (a new controller
        // re-sends once).
        assert_eq!(built.step(&update("a", (1, 1))), Step::Keep);
        assert_eq!(built.step(&update("b", (1, 1))), Step::Apply);
        let none = Applied {
            text: None,
            order: (0, 0),
        };
        assert_eq!(none.step(&update("a", (1, 1))), Step::Apply);
        // b applied at (2, 5): a send from before it (a deposed term, or
        // delayed in this term) is ignored; a later one applies.
        let applied = Applied {
            text: Some("b".into()),
            order: (2, 5),
        };
        assert_eq!(applied.step(&update("a", (1, 9))), Step::Ignore);
        assert_eq!(applied.step(&update("a", (2, 4))), Step::Ignore);
        assert_eq!(applied.step(&update("b", (2, 6))), Step::Keep);
        assert_eq!(applied.step(&update("c", (2, 6))), Step::Apply);
        assert_eq!(applied.step(&update("c", (3, 0))), Step::Apply);
    }
}
