//! [`Registry`]: the actor types a binary can host, by name, with the
//! type-erased constructor and message dispatch that remote calls use.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use futures::FutureExt;

use super::{Actor, ActorContext, ActorError, Handler, Message, SharedHandler};
use crate::codec;
use crate::hosting::{Host, HostEvents, LocalAddr};

/// A remote call as the hosting node sees it: a message name and its
/// encoded body; the reply is the encoded reply.
pub(crate) struct RawCall {
    pub message: String,
    pub payload: bytes::Bytes,
}

impl actix::Message for RawCall {
    type Result = Result<Vec<u8>, ActorError>;
}

/// Runs one decoded message on an instance it owns for the duration, and
/// hands the instance back with the encoded reply.
pub(crate) type RawFuture<A> = LocalBoxFuture<'static, (A, Vec<u8>)>;
type RawHandler<A> = fn(A, ActorContext, &[u8]) -> Result<RawFuture<A>, (A, ActorError)>;
/// A shared handler: runs on a reference-counted instance, concurrently.
pub(crate) type SharedRawHandler<A> =
    fn(Rc<A>, ActorContext, &[u8]) -> Result<LocalBoxFuture<'static, Vec<u8>>, ActorError>;

/// A shared handler for an in-process call whose caller does not know the
/// actor's Rust type: the message and the reply travel as `Box<dyn Any>`.
pub(crate) type SharedAnyHandler<A> =
    fn(Rc<A>, ActorContext, AnyPayload) -> Result<LocalBoxFuture<'static, AnyPayload>, ActorError>;

/// A message or reply of an in-process untyped call.
pub(crate) type AnyPayload = Box<dyn std::any::Any + Send>;

/// An in-process call by message name, for callers that know the message
/// type but not the actor type (the serve proxy): no serialisation.
pub(crate) struct AnyCall {
    pub message: &'static str,
    pub payload: AnyPayload,
}

impl actix::Message for AnyCall {
    type Result = Result<AnyPayload, ActorError>;
}

/// A shared stream handler: decodes the message, returns the encoded items.
pub(crate) type StreamRawHandler<A> =
    fn(
        Rc<A>,
        ActorContext,
        &[u8],
    ) -> Result<futures::stream::LocalBoxStream<'static, Vec<u8>>, ActorError>;

/// A streaming call: the reply is a channel of encoded items.
pub(crate) struct RawStream {
    pub message: String,
    pub payload: bytes::Bytes,
}

impl actix::Message for RawStream {
    type Result = Result<tokio::sync::mpsc::Receiver<Vec<u8>>, ActorError>;
}

/// One actor type's registration: the type and the messages it answers.
pub struct ActorType<A: Actor> {
    handlers: HashMap<&'static str, RawHandler<A>>,
    shared_handlers: HashMap<&'static str, SharedRawHandler<A>>,
    shared_any: HashMap<&'static str, SharedAnyHandler<A>>,
    streams: HashMap<&'static str, StreamRawHandler<A>>,
    shared: bool,
    _type: PhantomData<fn() -> A>,
}

impl<A: Actor> ActorType<A> {
    /// An exclusive type (one message at a time, `&mut self` handlers:
    /// [`Handler`]), answering no message yet.
    pub fn new() -> Self {
        Self {
            handlers: HashMap::new(),
            shared_handlers: HashMap::new(),
            shared_any: HashMap::new(),
            streams: HashMap::new(),
            shared: false,
            _type: PhantomData,
        }
    }

    /// A shared type: `&self` handlers ([`SharedHandler`]) that run
    /// concurrently.
    pub fn shared() -> Self {
        Self {
            shared: true,
            ..Self::new()
        }
    }

    /// Declares that the shared type `A` answers `M` with a stream.
    ///
    /// # Panics
    /// If `A` was not made with [`ActorType::shared`], or `M::NAME` is
    /// taken.
    pub fn streams<M: Message>(mut self) -> Self
    where
        A: super::StreamHandler<M>,
    {
        assert!(
            self.shared,
            "actor type {} streams; make it with ActorType::shared()",
            A::TYPE_NAME
        );
        let previous = self.streams.insert(M::NAME, stream_raw_handler::<A, M>);
        assert!(
            previous.is_none(),
            "actor type {} registers stream {:?} twice",
            A::TYPE_NAME,
            M::NAME
        );
        self
    }

    /// Declares that the shared type `A` answers `M`.
    ///
    /// # Panics
    /// If `A` was not made with [`ActorType::shared`], or another message
    /// of `A` already uses `M::NAME`.
    pub fn handles_shared<M: Message>(mut self) -> Self
    where
        A: SharedHandler<M>,
    {
        assert!(
            self.shared,
            "actor type {} registers a shared handler; make it with ActorType::shared()",
            A::TYPE_NAME
        );
        let previous = self
            .shared_handlers
            .insert(M::NAME, shared_raw_handler::<A, M>);
        self.shared_any.insert(M::NAME, shared_any_handler::<A, M>);
        assert!(
            previous.is_none(),
            "actor type {} registers message name {:?} twice",
            A::TYPE_NAME,
            M::NAME
        );
        self
    }

    /// Declares that `A` answers `M` (so remote callers can send it).
    ///
    /// # Panics
    /// If another message of `A` already uses `M::NAME`: a programming
    /// error found when the binary starts.
    pub fn handles<M: Message>(mut self) -> Self
    where
        A: Handler<M>,
    {
        assert!(
            !self.shared,
            "actor type {} is shared; register its messages with handles_shared",
            A::TYPE_NAME
        );
        let previous = self.handlers.insert(M::NAME, raw_handler::<A, M>);
        assert!(
            previous.is_none(),
            "actor type {} registers message name {:?} twice",
            A::TYPE_NAME,
            M::NAME
        );
        self
    }
}

impl<A: Actor> Default for ActorType<A> {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes `M`, then runs the handler on `actor`.
fn raw_handler<A: Handler<M>, M: Message>(
    mut actor: A,
    cx: ActorContext,
    payload: &[u8],
) -> Result<RawFuture<A>, (A, ActorError)> {
    let message: M = match codec::decode(payload) {
        Ok(message) => message,
        Err(detail) => {
            let what = format!("message {:?} for actor type {:?}", M::NAME, A::TYPE_NAME);
            return Err((actor, ActorError::Codec { what, detail }));
        }
    };
    Ok(async move {
        let reply = actor.handle(message, &cx).await;
        (actor, codec::encode(&reply))
    }
    .boxed_local())
}

/// Decodes `M`, then runs the shared handler on `actor`.
fn shared_raw_handler<A: SharedHandler<M>, M: Message>(
    actor: Rc<A>,
    cx: ActorContext,
    payload: &[u8],
) -> Result<LocalBoxFuture<'static, Vec<u8>>, ActorError> {
    let message: M = codec::decode(payload).map_err(|detail| ActorError::Codec {
        what: format!("message {:?} for actor type {:?}", M::NAME, A::TYPE_NAME),
        detail,
    })?;
    Ok(async move {
        let reply = actor.handle(message, &cx).await;
        codec::encode(&reply)
    }
    .boxed_local())
}

/// Decodes `M`, then opens the stream on `actor`, encoding each item.
fn stream_raw_handler<A: super::StreamHandler<M>, M: Message>(
    actor: Rc<A>,
    cx: ActorContext,
    payload: &[u8],
) -> Result<futures::stream::LocalBoxStream<'static, Vec<u8>>, ActorError> {
    use futures::StreamExt;
    let message: M = codec::decode(payload).map_err(|detail| ActorError::Codec {
        what: format!("message {:?} for actor type {:?}", M::NAME, A::TYPE_NAME),
        detail,
    })?;
    Ok(actor
        .stream(message, &cx)
        .map(|item| codec::encode(&item))
        .boxed_local())
}

/// Takes `M` out of the box, then runs the shared handler on `actor`.
fn shared_any_handler<A: SharedHandler<M>, M: Message>(
    actor: Rc<A>,
    cx: ActorContext,
    payload: AnyPayload,
) -> Result<LocalBoxFuture<'static, AnyPayload>, ActorError> {
    let message = payload.downcast::<M>().map_err(|_| ActorError::Codec {
        what: format!("message {:?} for actor type {:?}", M::NAME, A::TYPE_NAME),
        detail: "the caller's message type is not the one the actor registered under this name"
            .into(),
    })?;
    Ok(async move {
        let reply = actor.handle(*message, &cx).await;
        Box::new(reply) as AnyPayload
    }
    .boxed_local())
}

/// An instance started on an arbiter.
pub(crate) struct StartedActor {
    pub addr: LocalAddr,
}

/// The type-erased face of an [`ActorType`].
pub(crate) trait DynActorType: Send + Sync {
    /// Decodes the argument and constructs an instance, on the current
    /// arbiter; the instance's actix actor is started there.
    fn start(
        &self,
        args: Vec<u8>,
        cx: ActorContext,
        events: HostEvents,
    ) -> LocalBoxFuture<'static, Result<StartedActor, String>>;
}

impl<A: Actor> DynActorType for TypeEntry<A> {
    fn start(
        &self,
        args: Vec<u8>,
        cx: ActorContext,
        events: HostEvents,
    ) -> LocalBoxFuture<'static, Result<StartedActor, String>> {
        let tables = self.tables.clone();
        async move {
            let args: A::Args = codec::decode(&args).map_err(|detail| {
                format!(
                    "the constructor argument of actor type {:?} does not decode: {detail}",
                    A::TYPE_NAME
                )
            })?;
            let constructed = std::panic::AssertUnwindSafe(A::start(args, &cx))
                .catch_unwind()
                .await;
            let actor = match constructed {
                Ok(result) => result?,
                Err(panic) => return Err(format!("panicked: {}", panic_message(&*panic))),
            };
            Ok(StartedActor {
                addr: Host::start_with(actor, cx, tables, events),
            })
        }
        .boxed_local()
    }
}

/// A registered type's data, shared by its instances.
struct TypeEntry<A: Actor> {
    tables: HandlerTable<A>,
}

/// A type's handler tables.
pub(crate) struct HandlerTables<A: Actor> {
    pub exclusive: HashMap<&'static str, RawHandler<A>>,
    pub shared: HashMap<&'static str, SharedRawHandler<A>>,
    pub shared_any: HashMap<&'static str, SharedAnyHandler<A>>,
    pub streams: HashMap<&'static str, StreamRawHandler<A>>,
    /// Whether instances are shared (`&self` handlers, concurrent).
    pub is_shared: bool,
}

/// Dispatches a raw call on a shared `actor`.
pub(crate) fn dispatch_shared<A: Actor>(
    tables: &HandlerTables<A>,
    actor: Rc<A>,
    cx: ActorContext,
    call: &RawCall,
) -> Result<LocalBoxFuture<'static, Vec<u8>>, ActorError> {
    match tables.shared.get(call.message.as_str()) {
        Some(handler) => handler(actor, cx, &call.payload),
        None => Err(ActorError::UnknownMessage {
            type_name: A::TYPE_NAME.to_owned(),
            message: call.message.clone(),
        }),
    }
}

/// Dispatches a raw call on `actor` through the type's handler table.
pub(crate) fn dispatch<A: Actor>(
    handlers: &HashMap<&'static str, RawHandler<A>>,
    actor: A,
    cx: ActorContext,
    call: &RawCall,
) -> Result<RawFuture<A>, (A, ActorError)> {
    match handlers.get(call.message.as_str()) {
        Some(handler) => handler(actor, cx, &call.payload),
        None => Err((
            actor,
            ActorError::UnknownMessage {
                type_name: A::TYPE_NAME.to_owned(),
                message: call.message.clone(),
            },
        )),
    }
}

pub(crate) type HandlerTable<A> = Arc<HandlerTables<A>>;

/// The actor types one binary can host, by name.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<&'static str, Arc<dyn DynActorType>>,
}

impl Registry {
    /// An empty registry: such a node hosts no actors but serves every
    /// other role.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an actor type.
    ///
    /// # Panics
    /// If another type is registered under `A::TYPE_NAME`.
    pub fn register<A: Actor>(mut self, actor_type: ActorType<A>) -> Self {
        let entry = TypeEntry::<A> {
            tables: Arc::new(HandlerTables {
                exclusive: actor_type.handlers,
                shared: actor_type.shared_handlers,
                shared_any: actor_type.shared_any,
                streams: actor_type.streams,
                is_shared: actor_type.shared,
            }),
        };
        let previous = self.types.insert(A::TYPE_NAME, Arc::new(entry));
        assert!(
            previous.is_none(),
            "actor type name {:?} is registered twice",
            A::TYPE_NAME
        );
        self
    }

    /// The names of the registered types, sorted.
    pub fn type_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().copied()
    }

    /// Whether `type_name` is registered.
    pub fn contains(&self, type_name: &str) -> bool {
        self.types.contains_key(type_name)
    }

    pub(crate) fn get(&self, type_name: &str) -> Option<Arc<dyn DynActorType>> {
        self.types.get(type_name).cloned()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.types.keys()).finish()
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-text panic payload".to_owned()
    }
}
