//! What differs between a handle's typed, untyped and raw calls
//! ([`Payload`]): how the message is tried on a local instance, how it is
//! encoded for a node (kept for a retry), and how the reply is decoded.
//! [`ActorHandle::drive`] does the rest.

use tokio::time::Instant;

use super::{ActorHandle, Failure, Location};
use crate::actor::{Actor, ActorError, Message};
use crate::codec;
use crate::schema::RetryLimit;

/// An in-process send to a local instance.
type LocalSend<R> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<Result<R, ActorError>, actix::MailboxError>> + Send,
    >,
>;

/// A typed local send: the host's address and the message.
pub(super) type SendLocal<A, M> =
    fn(&actix::Addr<crate::hosting::Host<A>>, M) -> LocalSend<<M as Message>::Reply>;

/// What differs between the typed, untyped and raw calls: how the message
/// is tried on a local instance, how it is encoded for a node, and how the
/// reply is decoded. [`ActorHandle::drive`] does the rest.
pub(super) trait Payload<A: Actor>: Send {
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
pub(super) struct Owned<M> {
    message: Option<M>,
    encoded: Option<Vec<u8>>,
}

impl<M: Message> Owned<M> {
    pub(super) fn new(message: M) -> Self {
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
pub(super) struct TypedCall<A: Actor, M: Message> {
    message: Owned<M>,
    send: SendLocal<A, M>,
}

impl<A: Actor, M: Message> TypedCall<A, M> {
    pub(super) fn new(message: M, send: SendLocal<A, M>) -> Self {
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
pub(super) struct DynCall<M>(pub(super) Owned<M>);

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
pub(super) struct RawCall {
    pub(super) message: &'static str,
    pub(super) payload: Vec<u8>,
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
