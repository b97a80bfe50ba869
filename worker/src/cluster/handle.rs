//! [`ActorHandle`]: a cloneable, location-transparent reference to one
//! actor. A call goes in-process (no serialisation) when the actor runs in
//! this process, else as one RPC to its node.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::time::Instant;
use troupe_core::id::{ActorId, NodeId};
use troupe_core::rpc::{CallOptions, RpcError};

use super::Cluster;
use crate::actor::{Actor, ActorError, Handler, Message, SharedHandler};
use crate::codec;
use crate::health::Signal;
use crate::hosting::{arbiter_index, SharedTyped, Typed};

/// An in-process send to a local instance.
type LocalSend<R> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Result<R, ActorError>, actix::MailboxError>> + Send,
    >,
>;
use crate::lifecycle::ActorState;
use crate::protocol::{ActorCall, CallRefusal, CallRequest};
use crate::schema::RetryLimit;
use crate::view::Lookup;

/// How long a node's own address may take to say it lives when one of
/// its arbiter connections went silent.
const LIVENESS_TIMEOUT: Duration = Duration::from_millis(300);

/// A reference to an actor of type `A`.
pub struct ActorHandle<A: Actor> {
    cluster: Cluster,
    id: ActorId,
    /// The actor exists in the GCS at this revision: lookups wait until the
    /// local view has caught up with it.
    known_at: u64,
    /// Calls that cannot be delivered fail at once instead of waiting for
    /// the actor to move (see [`ActorHandle::fail_fast`]).
    fail_fast: bool,
    _type: PhantomData<fn() -> A>,
}

impl<A: Actor> Clone for ActorHandle<A> {
    fn clone(&self) -> Self {
        Self {
            cluster: self.cluster.clone(),
            id: self.id,
            known_at: self.known_at,
            fail_fast: self.fail_fast,
            _type: PhantomData,
        }
    }
}

impl<A: Actor> fmt::Debug for ActorHandle<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorHandle<{}>({})", A::TYPE_NAME, self.id)
    }
}

/// Where a call goes.
#[derive(Debug, Clone)]
struct Location {
    node: NodeId,
    addr: String,
    /// The node's own RPC address (`addr` may be one of its arbiters').
    node_addr: String,
    incarnation: u64,
    retries: RetryLimit,
}

/// How one attempt failed.
enum Failure {
    /// The call did not run: look the actor up again, for free.
    NotHere,
    /// The call did not run because its node could not be reached (or the
    /// local instance is not up yet, and the wait for it is over): look
    /// again at once (or fail at once, for a fail-fast handle).
    Undelivered(String),
    /// The instance was lost, maybe mid-call: retry within
    /// `max_task_retries`.
    Lost(ActorError),
    /// Final.
    Fatal(ActorError),
}

impl<A: Actor> ActorHandle<A> {
    pub(crate) fn new(cluster: Cluster, id: ActorId, known_at: u64) -> Self {
        Self {
            cluster,
            id,
            known_at,
            fail_fast: false,
            _type: PhantomData,
        }
    }

    /// The same handle, but a call that cannot be delivered — its node
    /// refuses or does not answer connections, or no longer hosts the
    /// actor — fails at once with [`ActorError::NotDelivered`] (the call
    /// did not run) instead of waiting, until its deadline, for the actor
    /// to be placed elsewhere. For callers that can go elsewhere
    /// themselves, such as a router over interchangeable replicas.
    pub fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.id
    }

    /// Sends `message` and waits for the reply, within the cluster's default
    /// timeout (30 s), waiting for the actor to start or restart.
    pub async fn call<M: Message>(&self, message: M) -> Result<M::Reply, ActorError>
    where
        A: Handler<M>,
    {
        self.call_timeout(message, self.cluster.inner.timeout).await
    }

    /// [`call`](Self::call) with its own timeout.
    pub async fn call_timeout<M: Message>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<M::Reply, ActorError>
    where
        A: Handler<M>,
    {
        let send: SendLocal<A, M> = |addr, m| Box::pin(addr.send(Typed(m)));
        self.drive(TypedCall::new(message, send), timeout).await
    }

    /// Sends `message` to a shared actor ([`SharedHandler`]): it runs next
    /// to the actor's other calls. Same waiting and retries as
    /// [`call`](Self::call).
    pub async fn ask<M: Message>(&self, message: M) -> Result<M::Reply, ActorError>
    where
        A: SharedHandler<M>,
    {
        self.ask_timeout(message, self.cluster.inner.timeout).await
    }

    /// [`ask`](Self::ask) with its own timeout.
    pub async fn ask_timeout<M: Message>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<M::Reply, ActorError>
    where
        A: SharedHandler<M>,
    {
        let send: SendLocal<A, M> = |addr, m| Box::pin(addr.send(SharedTyped(m)));
        self.drive(TypedCall::new(message, send), timeout).await
    }

    /// The one retry driver of every unary call: locate the actor, try
    /// the local instance or one RPC to its node, and decide what a failure
    /// means — look again (the call did not run), retry within
    /// `max_task_retries` on the next incarnation (the instance was lost,
    /// maybe mid-call), or give up. `payload` is what differs between the
    /// typed, untyped and raw calls.
    async fn drive<P: Payload<A>>(
        &self,
        mut payload: P,
        timeout: Duration,
    ) -> Result<P::Reply, ActorError> {
        let deadline = Instant::now() + timeout;
        let mut retries_used = 0u32;
        let mut min_incarnation = 0u64;
        loop {
            let location = self.locate(min_incarnation, deadline).await?;
            let outcome = if self.is_local(&location) {
                match payload.local(self, &location, deadline).await {
                    Ok(reply) => return Ok(reply),
                    Err(failure) => failure,
                }
            } else {
                let bytes = payload.encoded(self)?;
                match self
                    .remote_bytes(&location, payload.name(), bytes, deadline)
                    .await
                {
                    Ok(reply) => return P::decode_reply(reply),
                    Err(failure) => failure,
                }
            };
            match outcome {
                Failure::Fatal(e) => return Err(e),
                Failure::Undelivered(detail) if self.fail_fast => {
                    return Err(self.not_delivered(&location, &detail))
                }
                Failure::NotHere if self.fail_fast => {
                    return Err(self.not_delivered(&location, "its node does not host it"))
                }
                Failure::Undelivered(_) => {}
                Failure::NotHere => self.wait_for_change(deadline).await,
                Failure::Lost(e) => {
                    if !location.retries.allows_another(retries_used) {
                        return Err(e);
                    }
                    retries_used += 1;
                    min_incarnation = location.incarnation + 1;
                }
            }
            if Instant::now() >= deadline {
                return Err(self.unavailable("the call's deadline passed while retrying"));
            }
        }
    }

    fn not_delivered(&self, location: &Location, detail: &str) -> ActorError {
        ActorError::NotDelivered {
            actor: self.id.to_string(),
            detail: format!("node {} at {}: {detail}", location.node, location.addr),
        }
    }

    fn decode_again<M: Message>(&self, encoded: Option<&[u8]>) -> Result<M, ActorError> {
        let bytes = encoded.ok_or_else(|| self.unavailable("the message was consumed"))?;
        codec::decode(bytes).map_err(|detail| ActorError::Codec {
            what: format!("message {:?}", M::NAME),
            detail,
        })
    }

    fn unavailable(&self, detail: &str) -> ActorError {
        ActorError::Unavailable {
            actor: self.id.to_string(),
            detail: detail.to_owned(),
        }
    }

    /// Whether `location` is this process's node.
    fn is_local(&self, location: &Location) -> bool {
        self.cluster.inner.local.is_some() && location.node == self.cluster.inner.me
    }

    /// Waits (briefly) for this node's instance table or the view to change.
    async fn wait_for_local(&self, deadline: Instant) {
        let Some(hosting) = &self.cluster.inner.local else {
            return;
        };
        let mut table = hosting.subscribe();
        let mut view = self.cluster.inner.view.subscribe();
        let until = deadline.min(Instant::now() + Duration::from_millis(200));
        tokio::select! {
            _ = table.changed() => {}
            _ = view.changed() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }

    /// The in-process instance, when it runs here in the expected
    /// incarnation (or a newer one).
    fn local_instance(&self, location: &Location) -> Option<actix::Addr<crate::hosting::Host<A>>> {
        let hosting = self.cluster.inner.local.as_ref()?;
        if location.node != self.cluster.inner.me {
            return None;
        }
        hosting.typed::<A>(self.id, location.incarnation)
    }

    async fn remote_bytes(
        &self,
        location: &Location,
        message: &'static str,
        payload: Vec<u8>,
        deadline: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let request = CallRequest {
            actor: self.id,
            incarnation: location.incarnation,
            message: std::borrow::Cow::Borrowed(message),
            payload: ByteBuf::from(payload),
        };
        let options = CallOptions {
            timeout: Some(deadline.saturating_duration_since(Instant::now())),
            fail_fast: true,
        };
        let channel = self.channel(location);
        let answer = channel.call_with::<ActorCall>(&request, options).await;
        self.report_health(location.node, answer.as_ref().err());
        match answer {
            Ok(Ok(bytes)) => Ok(bytes.into_vec()),
            Ok(Err(CallRefusal::NotHere)) => Err(Failure::NotHere),
            Ok(Err(CallRefusal::Failed(e))) if e.is_instance_lost() => Err(Failure::Lost(e)),
            Ok(Err(CallRefusal::Failed(e))) => Err(Failure::Fatal(e)),
            Err(e) => Err(rpc_failure(self, location, e)),
        }
    }

    /// The channel to the instance's arbiter. Its listener shares a thread
    /// with the node's handlers, so a handler that holds the thread silences
    /// the connection: before the keepalive gives up on it, it asks the
    /// node's own address (served off the arbiters) whether the node lives.
    fn channel(&self, location: &Location) -> troupe_core::rpc::Channel {
        let rpc = &self.cluster.inner.rpc;
        let channel = rpc.channel(&location.addr);
        if location.addr != location.node_addr {
            // Made once per channel, not per call.
            channel.set_liveness(|| {
                let node = rpc.channel(&location.node_addr);
                Arc::new(move || {
                    let node = node.clone();
                    Box::pin(async move {
                        let options = CallOptions {
                            timeout: Some(LIVENESS_TIMEOUT),
                            fail_fast: true,
                        };
                        node.call_with::<troupe_core::rpc::diag::Echo>(&ByteBuf::new(), options)
                            .await
                            .is_ok()
                    })
                })
            });
        }
        channel
    }

    /// Tells the process's health table how `node` answered.
    fn report_health(&self, node: NodeId, error: Option<&RpcError>) {
        let signal = match error {
            None | Some(RpcError::Remote { .. }) => Signal::Answered,
            Some(RpcError::Connect { .. }) => Signal::Unreachable,
            Some(RpcError::ConnectionLost { .. }) => Signal::ConnectionLost,
            Some(RpcError::Timeout { .. }) => Signal::Timeout,
            Some(_) => return,
        };
        self.cluster.inner.health.report(node, signal);
    }

    /// Sends `message` to an actor whose Rust type the caller does not know
    /// (the serve proxy): in-process and unencoded when the actor runs here
    /// (as a boxed value, checked against the type the actor registered
    /// under `M::NAME`), else one RPC. Only shared actors answer it locally.
    /// Same waiting and retries as [`call`](Self::call).
    pub async fn call_dyn<M: Message>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<M::Reply, ActorError> {
        self.drive(DynCall(Owned::new(message)), timeout).await
    }

    /// Opens a stream on a shared actor ([`StreamHandler`]): its items as
    /// they come. Dropping the stream stops the actor's side.
    ///
    /// [`StreamHandler`]: crate::actor::StreamHandler
    pub async fn stream<M: Message>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<futures::stream::BoxStream<'static, Result<M::Reply, ActorError>>, ActorError>
    where
        A: crate::actor::StreamHandler<M>,
    {
        use futures::StreamExt;
        let items = self
            .stream_raw(M::NAME, codec::encode(&message), timeout)
            .await?;
        Ok(items
            .map(|item| {
                item.and_then(|bytes| {
                    codec::decode(&bytes).map_err(|detail| ActorError::Codec {
                        what: format!("an item of {:?}", M::NAME),
                        detail,
                    })
                })
            })
            .boxed())
    }

    /// [`stream`](Self::stream) with an encoded message and encoded items,
    /// for callers that know the actor only by id.
    pub async fn stream_raw(
        &self,
        message: &'static str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<futures::stream::BoxStream<'static, Result<Vec<u8>, ActorError>>, ActorError> {
        use futures::StreamExt;
        let deadline = Instant::now() + timeout;
        loop {
            let location = self.locate(0, deadline).await?;
            if self.is_local(&location) {
                let hosting = self.cluster.inner.local.as_ref().expect("local");
                let call = crate::actor::RawStream {
                    message: message.to_owned(),
                    payload: bytes::Bytes::from(payload.clone()),
                };
                match hosting.send_stream(self.id, location.incarnation, call) {
                    Ok(sent) => match sent.await {
                        Ok(Ok(rx)) => {
                            let items = futures::stream::unfold(rx, |mut rx| async move {
                                rx.recv().await.map(|item| (Ok(item), rx))
                            });
                            return Ok(items.boxed());
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => self.wait_for_change(deadline).await,
                    },
                    Err(_) => self.wait_for_local(deadline).await,
                }
            } else {
                let request = CallRequest {
                    actor: self.id,
                    incarnation: location.incarnation,
                    message: std::borrow::Cow::Borrowed(message),
                    payload: ByteBuf::from(payload.clone()),
                };
                let channel = self.channel(&location);
                let opened = channel
                    .stream::<crate::protocol::ActorStream>(&request)
                    .await;
                self.report_health(location.node, opened.as_ref().err());
                match opened {
                    Ok(items) => {
                        let actor = self.id.to_string();
                        return Ok(items
                            .map(move |item| {
                                item.map(ByteBuf::into_vec)
                                    .map_err(|e| ActorError::Unavailable {
                                        actor: actor.clone(),
                                        detail: format!("its stream broke: {e}"),
                                    })
                            })
                            .boxed());
                    }
                    Err(e) if e.is_retryable() && !e.may_have_executed() && self.fail_fast => {
                        return Err(self.not_delivered(&location, &e.to_string()))
                    }
                    Err(e) if e.is_retryable() => self.wait_for_change(deadline).await,
                    Err(e) => return Err(ActorError::Cluster(e.to_string())),
                }
            }
            if Instant::now() >= deadline {
                return Err(self.unavailable("no stream opened before the deadline"));
            }
        }
    }

    /// Sends an already encoded message named `message` and returns the
    /// encoded reply: for callers that know the actor only by id (the serve
    /// proxy). In-process when the actor runs here (no RPC, but the bytes
    /// are decoded by the instance), else one RPC. Same waiting and
    /// retries as [`call`](Self::call).
    pub async fn call_raw(
        &self,
        message: &'static str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ActorError> {
        self.drive(RawCall { message, payload }, timeout).await
    }

    /// Waits (until `deadline`) for the actor to have a node and an
    /// incarnation of at least `min_incarnation`.
    async fn locate(
        &self,
        min_incarnation: u64,
        deadline: Instant,
    ) -> Result<Location, ActorError> {
        let inner = &self.cluster.inner;
        let mut rx = inner.view.subscribe();
        loop {
            let waiting = {
                let state = rx.borrow_and_update();
                // Notes the use (a narrow view looks the actor up once, and
                // keeps it fresh while it is used); never waits.
                inner.view.want_actor(self.id);
                let record = match state.lookup(self.id, self.known_at) {
                    Lookup::NotYet => None,
                    Lookup::NotFound => {
                        return Err(ActorError::NotFound {
                            what: format!("with id {}", self.id),
                        })
                    }
                    Lookup::Found(record) => Some(record),
                };
                if let Some(record) = record {
                    if let ActorState::Dead { reason } = &record.state {
                        return Err(ActorError::Died {
                            actor: self.id.to_string(),
                            reason: reason.to_string(),
                        });
                    }
                    match record
                        .node
                        .and_then(|n| state.nodes.get(&n).map(|r| (n, r)))
                    {
                        Some((node, node_record)) if record.incarnation >= min_incarnation => {
                            let addrs = &node_record.data_addrs;
                            let addr = match addrs.len() {
                                0 => &node_record.addr,
                                n => &addrs[arbiter_index(self.id, n)],
                            };
                            return Ok(Location {
                                node,
                                addr: addr.clone(),
                                node_addr: node_record.addr.clone(),
                                incarnation: record.incarnation,
                                retries: record.options.max_task_retries,
                            });
                        }
                        _ => match (&record.state, &record.pending_reason) {
                            (ActorState::Pending, Some(reason)) => reason.clone(),
                            (ActorState::Pending, None) => "waiting to be placed".into(),
                            _ => "restarting after its instance was lost".into(),
                        },
                    }
                } else if state.full {
                    "the cluster state has not caught up yet".to_string()
                } else {
                    "looking the actor up in the GCS".to_string()
                }
            };
            let changed = tokio::time::timeout_at(deadline, rx.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                return Err(match waiting.starts_with("restarting") {
                    true => self.unavailable(&waiting),
                    false => ActorError::Pending {
                        actor: self.id.to_string(),
                        reason: waiting,
                    },
                });
            }
        }
    }

    async fn wait_for_change(&self, deadline: Instant) {
        let mut rx = self.cluster.inner.view.subscribe();
        let until = deadline.min(Instant::now() + Duration::from_millis(200));
        let _ = tokio::time::timeout_at(until, rx.changed()).await;
    }
}

/// What a transport error means for the call.
fn rpc_failure<A: Actor>(handle: &ActorHandle<A>, location: &Location, e: RpcError) -> Failure {
    if !e.may_have_executed() && e.is_retryable() {
        // Never sent (the node is down or restarting): the view will move
        // the actor; look again (a fail-fast caller goes elsewhere).
        return Failure::Undelivered(e.to_string());
    }
    if e.is_retryable() || e.may_have_executed() {
        return Failure::Lost(handle.unavailable(&format!(
            "its node {} at {} stopped answering mid-call ({e}); the call may or may not have \
             run",
            location.node, location.addr
        )));
    }
    Failure::Fatal(ActorError::Cluster(e.to_string()))
}

/// A typed local send: the host's address and the message.
type SendLocal<A, M> =
    fn(&actix::Addr<crate::hosting::Host<A>>, M) -> LocalSend<<M as Message>::Reply>;

/// What differs between the typed, untyped and raw calls: how the message
/// is tried on a local instance, how it is encoded for a node, and how the
/// reply is decoded. [`ActorHandle::drive`] does the rest.
trait Payload<A: Actor>: Send {
    type Reply: Send;

    /// The message's name on the wire.
    fn name(&self) -> &'static str;

    /// One attempt on this process's instance (`location` is this node).
    fn local<'a>(
        &'a mut self,
        handle: &'a ActorHandle<A>,
        location: &'a Location,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Self::Reply, Failure>> + Send + 'a;

    /// The encoded message, for a remote attempt (kept for the next).
    fn encoded(&mut self, handle: &ActorHandle<A>) -> Result<Vec<u8>, ActorError>;

    fn decode_reply(bytes: Vec<u8>) -> Result<Self::Reply, ActorError>;
}

/// A message owned by a call: by value until an attempt needs it encoded,
/// then as bytes (decoded again for a later local attempt).
struct Owned<M> {
    message: Option<M>,
    encoded: Option<Vec<u8>>,
}

impl<M: Message> Owned<M> {
    fn new(message: M) -> Self {
        Owned {
            message: Some(message),
            encoded: None,
        }
    }

    /// The message by value (decoded from the kept copy if it was taken).
    fn take<A: Actor>(&mut self, handle: &ActorHandle<A>) -> Result<M, ActorError> {
        match self.message.take() {
            Some(m) => Ok(m),
            None => handle.decode_again::<M>(self.encoded.as_deref()),
        }
    }

    /// Encodes a copy while the message is still here (so a retry after a
    /// local attempt consumed it can send it again).
    fn keep_copy(&mut self) {
        if let (None, Some(m)) = (&self.encoded, &self.message) {
            self.encoded = Some(codec::encode(m));
        }
    }

    fn encoded<A: Actor>(&mut self, handle: &ActorHandle<A>) -> Result<Vec<u8>, ActorError> {
        self.keep_copy();
        self.message = None;
        self.encoded
            .clone()
            .ok_or_else(|| handle.unavailable("the message was consumed"))
    }
}

fn decode_reply<M: Message>(bytes: &[u8]) -> Result<M::Reply, ActorError> {
    codec::decode(bytes).map_err(|detail| ActorError::Codec {
        what: format!("the reply to {:?}", M::NAME),
        detail,
    })
}

/// A typed call (`call`, `ask`): a local attempt goes to the instance's
/// typed address.
struct TypedCall<A: Actor, M: Message> {
    message: Owned<M>,
    send: SendLocal<A, M>,
}

impl<A: Actor, M: Message> TypedCall<A, M> {
    fn new(message: M, send: SendLocal<A, M>) -> Self {
        TypedCall {
            message: Owned::new(message),
            send,
        }
    }
}

impl<A: Actor, M: Message> Payload<A> for TypedCall<A, M> {
    type Reply = M::Reply;

    fn name(&self) -> &'static str {
        M::NAME
    }

    async fn local(
        &mut self,
        handle: &ActorHandle<A>,
        location: &Location,
        deadline: Instant,
    ) -> Result<M::Reply, Failure> {
        let Some(addr) = handle.local_instance(location) else {
            // Assigned here but still being constructed: wait for it
            // rather than calling ourselves over RPC.
            handle.wait_for_local(deadline).await;
            if Instant::now() >= deadline {
                return Err(Failure::Fatal(ActorError::Pending {
                    actor: handle.id.to_string(),
                    reason: "its constructor did not finish before the deadline".into(),
                }));
            }
            return Err(Failure::Undelivered("its instance is starting here".into()));
        };
        if !addr.connected() {
            return Err(Failure::NotHere);
        }
        if location.retries != RetryLimit::NEVER {
            self.message.keep_copy();
        }
        let message = self.message.take(handle).map_err(Failure::Fatal)?;
        match (self.send)(&addr, message).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) if e.is_instance_lost() => Err(Failure::Lost(e)),
            Ok(Err(e)) => Err(Failure::Fatal(e)),
            // Stopped before taking the call: it never ran, and can be
            // sent again if a copy was kept.
            Err(_) if self.message.encoded.is_some() => Err(Failure::NotHere),
            Err(_) => Err(Failure::Lost(handle.unavailable("its instance stopped"))),
        }
    }

    fn encoded(&mut self, handle: &ActorHandle<A>) -> Result<Vec<u8>, ActorError> {
        self.message.encoded(handle)
    }

    fn decode_reply(bytes: Vec<u8>) -> Result<M::Reply, ActorError> {
        decode_reply::<M>(&bytes)
    }
}

/// An untyped call (`call_dyn`): a local attempt hands the message over
/// boxed, unencoded.
struct DynCall<M>(Owned<M>);

impl<A: Actor, M: Message> Payload<A> for DynCall<M> {
    type Reply = M::Reply;

    fn name(&self) -> &'static str {
        M::NAME
    }

    async fn local(
        &mut self,
        handle: &ActorHandle<A>,
        location: &Location,
        deadline: Instant,
    ) -> Result<M::Reply, Failure> {
        let hosting = handle.cluster.inner.local.as_ref().expect("local");
        let call = crate::actor::AnyCall {
            message: M::NAME,
            payload: Box::new(self.0.take(handle).map_err(Failure::Fatal)?),
        };
        match hosting.send_any(handle.id, location.incarnation, call) {
            Ok(sent) => match sent.await {
                Ok(Ok(reply)) => reply.downcast::<M::Reply>().map(|r| *r).map_err(|_| {
                    Failure::Fatal(ActorError::Codec {
                        what: format!("the reply to {:?}", M::NAME),
                        detail: "the actor answered with another type".into(),
                    })
                }),
                Ok(Err(e)) if e.is_instance_lost() => Err(Failure::Lost(e)),
                Ok(Err(e)) => Err(Failure::Fatal(e)),
                Err(_) => Err(Failure::Lost(handle.unavailable("its instance stopped"))),
            },
            Err(unsent) => {
                self.0.message = unsent.payload.downcast::<M>().ok().map(|m| *m);
                handle.wait_for_local(deadline).await;
                Err(Failure::Undelivered(
                    "its instance is not running here yet".into(),
                ))
            }
        }
    }

    fn encoded(&mut self, handle: &ActorHandle<A>) -> Result<Vec<u8>, ActorError> {
        self.0.encoded(handle)
    }

    fn decode_reply(bytes: Vec<u8>) -> Result<M::Reply, ActorError> {
        decode_reply::<M>(&bytes)
    }
}

/// An encoded call (`call_raw`): bytes in, bytes out.
struct RawCall {
    message: &'static str,
    payload: Vec<u8>,
}

impl<A: Actor> Payload<A> for RawCall {
    type Reply = Vec<u8>;

    fn name(&self) -> &'static str {
        self.message
    }

    async fn local(
        &mut self,
        handle: &ActorHandle<A>,
        location: &Location,
        deadline: Instant,
    ) -> Result<Vec<u8>, Failure> {
        let hosting = handle.cluster.inner.local.as_ref().expect("local");
        let call = crate::actor::RawCall {
            message: self.message.to_owned(),
            payload: bytes::Bytes::from(self.payload.clone()),
        };
        match hosting.send_raw(handle.id, location.incarnation, call) {
            Ok(sent) => match sent.await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(e)) if e.is_instance_lost() => Err(Failure::Lost(e)),
                Ok(Err(e)) => Err(Failure::Fatal(e)),
                Err(_) => Err(Failure::NotHere),
            },
            Err(_) => {
                handle.wait_for_local(deadline).await;
                Err(Failure::Undelivered(
                    "its instance is not running here yet".into(),
                ))
            }
        }
    }

    fn encoded(&mut self, _: &ActorHandle<A>) -> Result<Vec<u8>, ActorError> {
        Ok(self.payload.clone())
    }

    fn decode_reply(bytes: Vec<u8>) -> Result<Vec<u8>, ActorError> {
        Ok(bytes)
    }
}
