//! [`ActorHandle`]: a cloneable, location-transparent reference to one
//! actor. A call goes in-process (no serialisation) when the actor runs in
//! this process, else as one RPC to its node.
//!
//! # Layout
//!
//! - this file — the handle, its calls, and `drive`, the one retry driver
//!   of every unary call (what a failed attempt means: look again, retry
//!   on the next incarnation, or give up).
//! - `locate.rs` — where the actor is (waiting on the view) and whether it
//!   runs in this process.
//! - `remote.rs` — one RPC attempt, the health reports, and what a
//!   transport error means for the call.
//! - `payload.rs` — `Payload`: how the typed, untyped and raw calls try a
//!   local instance, encode the message, and decode the reply.

mod locate;
mod payload;
mod remote;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::time::Instant;
use troupe_core::id::{ActorId, NodeId};

use super::Cluster;
use crate::actor::{Actor, ActorError, Handler, Message, SharedHandler};
use crate::codec;
use crate::hosting::{SharedTyped, Typed};
use crate::protocol::CallRequest;
use crate::schema::RetryLimit;
use payload::{DynCall, Owned, Payload, RawCall, SendLocal, TypedCall};

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
}
