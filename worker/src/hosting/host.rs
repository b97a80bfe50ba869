//! [`Host<A>`]: the actix actor that owns one instance of a user actor and
//! runs its handlers one at a time.
//!
//! A handler's future owns the instance while it runs (the host holds
//! `None`), inside an [`AtomicResponse`], so the mailbox waits until it
//! finishes: a Ray actor's one-call-at-a-time semantics with async
//! handlers. A panic is caught there: the instance is gone, the host tells
//! the node agent and stops; queued calls fail as "unavailable".

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;

use actix::prelude::*;
use actix::{Actor as _, ActorContext as _};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use tokio::sync::mpsc;
use troupe_core::id::ActorId;

use crate::actor::registry::{dispatch, dispatch_shared, panic_message, HandlerTable};
use crate::actor::{
    Actor, ActorContext, ActorError, AnyCall, AnyPayload, Handler, Message, RawCall, RawStream,
    SharedHandler,
};

/// Calls that may queue for one instance before callers wait.
const MAILBOX_CAPACITY: usize = 65_536;

/// What hosts tell the node agent.
#[derive(Debug)]
pub(crate) enum HostEvent {
    /// A handler of `incarnation` panicked; the instance is gone.
    Panicked {
        actor: ActorId,
        incarnation: u64,
        message: String,
    },
}

/// Where hosts send [`HostEvent`]s.
pub(crate) type HostEvents = mpsc::UnboundedSender<HostEvent>;

/// Addresses of one running instance: typed (in-process calls, no
/// serialisation) and raw (remote calls), plus a way to stop it.
#[derive(Clone)]
pub(crate) struct LocalAddr {
    /// An `Addr<Host<A>>`.
    typed: Arc<dyn Any + Send + Sync>,
    pub raw: Recipient<RawCall>,
    pub any: Recipient<AnyCall>,
    pub stream: Recipient<RawStream>,
    stop: Recipient<Stop>,
}

impl LocalAddr {
    /// The typed address, if the instance is an `A`.
    pub(crate) fn typed<A: Actor>(&self) -> Option<&Addr<Host<A>>> {
        self.typed.downcast_ref::<Addr<Host<A>>>()
    }

    /// Asks the instance to stop after the call it is running.
    pub(crate) fn stop(&self) {
        self.stop.do_send(Stop);
    }
}

/// A typed in-process call.
pub(crate) struct Typed<M>(pub M);

impl<M: Message> actix::Message for Typed<M> {
    type Result = Result<M::Reply, ActorError>;
}

/// A typed in-process call to a shared actor.
pub(crate) struct SharedTyped<M>(pub M);

impl<M: Message> actix::Message for SharedTyped<M> {
    type Result = Result<M::Reply, ActorError>;
}

/// The instance, owned (exclusive actors: moved into the running handler)
/// or reference-counted (shared actors: every running handler holds it).
enum Instance<A> {
    Exclusive(Option<A>),
    Shared(Rc<A>),
}

/// An answer that runs either alone (exclusive: the mailbox waits) or next
/// to others (shared).
pub(crate) enum Reply<A: actix::Actor, R> {
    Atomic(AtomicResponse<A, R>),
    /// Runs next to the others; dropped (cancelled) as soon as the caller
    /// stops waiting for the answer.
    Concurrent(LocalBoxFuture<'static, R>),
}

impl<A, M> actix::dev::MessageResponse<A, M> for Reply<A, M::Result>
where
    A: actix::Actor<Context = Context<A>>,
    M: actix::Message,
{
    fn handle(self, ctx: &mut Context<A>, tx: Option<actix::dev::OneshotSender<M::Result>>) {
        match self {
            Reply::Atomic(r) => actix::dev::MessageResponse::<A, M>::handle(r, ctx, tx),
            Reply::Concurrent(work) => {
                let run = async move {
                    match tx {
                        Some(mut tx) => tokio::select! {
                            answer = work => { let _ = tx.send(answer); }
                            // The caller went away (a dropped call, a client
                            // that disconnected): stop the work.
                            () = tx.closed() => {}
                        },
                        None => {
                            work.await;
                        }
                    }
                };
                ctx.spawn(actix::fut::wrap_future(run));
            }
        }
    }
}

/// Stops the host.
pub(crate) struct Stop;

impl actix::Message for Stop {
    type Result = ();
}

/// The actix actor around one instance.
pub(crate) struct Host<A: Actor> {
    instance: Instance<A>,
    cx: ActorContext,
    handlers: HandlerTable<A>,
    events: HostEvents,
}

impl<A: Actor> Host<A> {
    /// Starts a host for `instance` on the current arbiter.
    pub(crate) fn start_with(
        instance: A,
        cx: ActorContext,
        handlers: HandlerTable<A>,
        events: HostEvents,
    ) -> LocalAddr {
        let instance = match handlers.is_shared {
            true => Instance::Shared(Rc::new(instance)),
            false => Instance::Exclusive(Some(instance)),
        };
        let addr = Host {
            instance,
            cx,
            handlers,
            events,
        }
        .start();
        LocalAddr {
            typed: Arc::new(addr.clone()),
            raw: addr.clone().recipient(),
            any: addr.clone().recipient(),
            stream: addr.clone().recipient(),
            stop: addr.recipient(),
        }
    }

    /// The error of a call that found the instance gone.
    fn lost(&self, detail: &str) -> ActorError {
        ActorError::Unavailable {
            actor: self.cx.id.to_string(),
            detail: detail.to_owned(),
        }
    }

    /// Runs `work` (which owns the instance) to completion before the next
    /// message, putting the instance back or, on a panic, stopping.
    fn run<R: 'static>(
        &mut self,
        work: LocalBoxFuture<'static, (A, R)>,
    ) -> Reply<Self, Result<R, ActorError>> {
        let guarded = AssertUnwindSafe(work).catch_unwind();
        Reply::Atomic(AtomicResponse::new(Box::pin(guarded.into_actor(self).map(
            |outcome, host, ctx| match outcome {
                Ok((instance, reply)) => {
                    host.instance = Instance::Exclusive(Some(instance));
                    Ok(reply)
                }
                Err(panic) => {
                    let message = panic_message(&*panic);
                    tracing::warn!(actor = %host.cx.id, incarnation = host.cx.incarnation,
                        %message, "a handler panicked; the instance is gone");
                    let _ = host.events.send(HostEvent::Panicked {
                        actor: host.cx.id,
                        incarnation: host.cx.incarnation,
                        message: message.clone(),
                    });
                    ctx.stop();
                    Err(host.lost(&format!(
                        "a handler panicked ({message}); the actor restarts if max_restarts \
                         allows"
                    )))
                }
            },
        ))))
    }

    /// Runs `work` of a shared instance next to the others; a panic fails
    /// this call only.
    fn run_shared<R: 'static>(
        &self,
        work: LocalBoxFuture<'static, R>,
    ) -> Reply<Self, Result<R, ActorError>> {
        let actor = self.cx.id;
        let guarded = AssertUnwindSafe(work).catch_unwind().map(move |outcome| {
            outcome.map_err(|panic| {
                let message = panic_message(&*panic);
                tracing::warn!(%actor, %message, "a shared handler panicked");
                ActorError::HandlerPanicked {
                    actor: actor.to_string(),
                    message,
                }
            })
        });
        Reply::Concurrent(guarded.boxed_local())
    }

    fn refuse<R: 'static>(&self, error: ActorError) -> Reply<Self, Result<R, ActorError>> {
        Reply::Concurrent(std::future::ready(Err(error)).boxed_local())
    }

    fn wrong_kind(&self, message: &str) -> ActorError {
        ActorError::UnknownMessage {
            type_name: A::TYPE_NAME.to_owned(),
            message: message.to_owned(),
        }
    }
}

impl<A: Actor> actix::Actor for Host<A> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Callers wait (backpressure) once this many calls queue; actix's
        // default of 16 would make 64 concurrent callers wait on each other.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl<A: Handler<M>, M: Message> actix::Handler<Typed<M>> for Host<A> {
    type Result = Reply<Self, Result<M::Reply, ActorError>>;

    fn handle(&mut self, Typed(message): Typed<M>, _: &mut Context<Self>) -> Self::Result {
        let mut instance = match &mut self.instance {
            Instance::Exclusive(slot) => match slot.take() {
                Some(instance) => instance,
                None => return self.refuse(self.lost("its instance is gone")),
            },
            Instance::Shared(_) => return self.refuse(self.wrong_kind(M::NAME)),
        };
        let cx = self.cx.clone();
        self.run(
            async move {
                let reply = instance.handle(message, &cx).await;
                (instance, reply)
            }
            .boxed_local(),
        )
    }
}

impl<A: SharedHandler<M>, M: Message> actix::Handler<SharedTyped<M>> for Host<A> {
    type Result = Reply<Self, Result<M::Reply, ActorError>>;

    fn handle(
        &mut self,
        SharedTyped(message): SharedTyped<M>,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let Instance::Shared(instance) = &self.instance else {
            return self.refuse(self.wrong_kind(M::NAME));
        };
        let (instance, cx) = (instance.clone(), self.cx.clone());
        self.run_shared(async move { instance.handle(message, &cx).await }.boxed_local())
    }
}

impl<A: Actor> actix::Handler<RawCall> for Host<A> {
    type Result = Reply<Self, Result<Vec<u8>, ActorError>>;

    fn handle(&mut self, call: RawCall, _: &mut Context<Self>) -> Self::Result {
        match &mut self.instance {
            Instance::Shared(instance) => {
                let instance = instance.clone();
                match dispatch_shared(&self.handlers, instance, self.cx.clone(), &call) {
                    Ok(work) => self.run_shared(work),
                    Err(error) => self.refuse(error),
                }
            }
            Instance::Exclusive(slot) => {
                let Some(instance) = slot.take() else {
                    return self.refuse(self.lost("its instance is gone"));
                };
                match dispatch(&self.handlers.exclusive, instance, self.cx.clone(), &call) {
                    Ok(work) => self.run(work),
                    Err((instance, error)) => {
                        self.instance = Instance::Exclusive(Some(instance));
                        self.refuse(error)
                    }
                }
            }
        }
    }
}

impl<A: Actor> actix::Handler<AnyCall> for Host<A> {
    type Result = Reply<Self, Result<AnyPayload, ActorError>>;

    fn handle(&mut self, call: AnyCall, _: &mut Context<Self>) -> Self::Result {
        let Instance::Shared(instance) = &self.instance else {
            return self.refuse(self.wrong_kind(call.message));
        };
        let Some(handler) = self.handlers.shared_any.get(call.message) else {
            return self.refuse(self.wrong_kind(call.message));
        };
        match handler(instance.clone(), self.cx.clone(), call.payload) {
            Ok(work) => self.run_shared(work),
            Err(error) => self.refuse(error),
        }
    }
}

/// Items a stream runs ahead of its reader.
const STREAM_BUFFER: usize = 16;

impl<A: Actor> actix::Handler<RawStream> for Host<A> {
    type Result = Reply<Self, Result<tokio::sync::mpsc::Receiver<Vec<u8>>, ActorError>>;

    fn handle(&mut self, call: RawStream, ctx: &mut Context<Self>) -> Self::Result {
        let Instance::Shared(instance) = &self.instance else {
            return self.refuse(self.wrong_kind(&call.message));
        };
        let Some(handler) = self.handlers.streams.get(call.message.as_str()) else {
            return self.refuse(self.wrong_kind(&call.message));
        };
        let items = match handler(instance.clone(), self.cx.clone(), &call.payload) {
            Ok(items) => items,
            Err(error) => return self.refuse(error),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let actor = self.cx.id;
        // Runs with the actor; ends when the items end, the reader goes away
        // (send fails) or an item panics (the stream just ends).
        let pump = async move {
            let mut items = items;
            loop {
                let next = AssertUnwindSafe(futures::StreamExt::next(&mut items))
                    .catch_unwind()
                    .await;
                match next {
                    Ok(Some(item)) => {
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(panic) => {
                        tracing::warn!(%actor, message = %panic_message(&*panic), "a stream panicked");
                        break;
                    }
                }
            }
        };
        ctx.spawn(actix::fut::wrap_future(pump));
        Reply::Concurrent(std::future::ready(Ok(rx)).boxed_local())
    }
}

impl<A: Actor> actix::Handler<Stop> for Host<A> {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
