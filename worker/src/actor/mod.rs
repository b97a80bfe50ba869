//! The actor API's vocabulary: what a user implements.
//!
//! An actor type implements [`Actor`] (its registered name, its constructor
//! argument and its constructor) and [`Handler<M>`] for every [`Message`]
//! it answers. Types are made known to a node through the [`Registry`]
//! that the program hands to `troupe::cli::run`; every node of a cluster
//! runs the same binary, so a name means the same type everywhere.
//!
//! An instance handles one message at a time, to completion (its handler
//! may await: the next message waits, as in a Ray actor). Handlers run on
//! an actix arbiter, never on the threads that serve the node's RPC: CPU
//! heavy work there stalls only the actors sharing that arbiter; move it to
//! [`tokio::task::spawn_blocking`] to stall none.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;
use troupe_core::id::{ActorId, NodeId};

mod error;
pub(crate) mod registry;

pub use error::ActorError;
pub use registry::{ActorType, Registry};
pub(crate) use registry::{AnyCall, AnyPayload, DynActorType, RawCall, RawStream};

use crate::cluster::Cluster;

/// A request an actor answers, with its reply type.
///
/// `NAME` identifies the message on the wire; it must be unique among the
/// messages of one actor type and the same in every binary of the cluster
/// (by convention `"<actor type>.<message>"`).
pub trait Message: Serialize + DeserializeOwned + Send + 'static {
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    const NAME: &'static str;
}

/// An actor type.
pub trait Actor: Sized + Unpin + 'static {
    /// The name it is registered under, e.g. `"Counter"`; the same in every
    /// binary of the cluster.
    const TYPE_NAME: &'static str;
    /// The constructor's argument, stored in the GCS so the actor can be
    /// constructed again on another node after a failure.
    type Args: Serialize + DeserializeOwned + Send + 'static;

    /// Builds an instance. An `Err` (or a panic) marks the actor DEAD with
    /// the message: constructors are not retried.
    fn start(args: Self::Args, cx: &ActorContext) -> impl Future<Output = Result<Self, String>>;
}

/// How an actor answers `M`.
pub trait Handler<M: Message>: Actor {
    /// Answers one message. A panic here loses the instance: the actor is
    /// restarted within its `max_restarts` budget (from its constructor
    /// argument), the node and its other actors go on.
    fn handle(&mut self, message: M, cx: &ActorContext) -> impl Future<Output = M::Reply>;
}

/// How a *shared* actor answers `M`: handlers take `&self` and run
/// concurrently (up to the caller's own limits), like the async methods of a
/// Ray Serve replica. Register the type with [`ActorType::shared`]; keep
/// mutable state behind a `RefCell` or a lock. A panic fails that call
/// ([`ActorError::HandlerPanicked`]) and leaves the instance running.
pub trait SharedHandler<M: Message>: Actor {
    fn handle(&self, message: M, cx: &ActorContext) -> impl Future<Output = M::Reply>;
}

/// How a *shared* actor answers `M` with a stream of replies (each item an
/// `M::Reply`), e.g. the chunks of a streaming HTTP response. Items flow as
/// they are produced; a caller that drops the stream stops it.
pub trait StreamHandler<M: Message>: Actor {
    fn stream(
        &self,
        message: M,
        cx: &ActorContext,
    ) -> impl futures::Stream<Item = M::Reply> + 'static;
}

/// What an instance knows about itself and how it reaches the cluster.
#[derive(Clone)]
pub struct ActorContext {
    /// Its cluster-wide id.
    pub id: ActorId,
    /// Counts its instances; bumped by every (re)start.
    pub incarnation: u64,
    /// The node that hosts it.
    pub node: NodeId,
    /// The cluster, to spawn, look up and call other actors.
    pub cluster: Cluster,
}
