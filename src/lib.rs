//! Troupe: an actor framework and model-serving system for clusters, with a
//! Raft-replicated control store.
//!
//! This facade crate is what programs depend on. It re-exports the parts
//! of the workspace crates that users touch and holds the `troupe` CLI, so
//! that a user's program is `fn main() { troupe::cli::run(registry) }` plus its own
//! registered types, and every node of a cluster runs that same binary.
//!
//! # Layout
//!
//! - [`cli`]: the `troupe` command line.
//! - [`prelude`]: the handful of names most programs need.
//! - [`core`]: re-export of `troupe-core` (ids, resources, RPC transport).
//! - [`serve`]: re-export of `troupe-serve` (deployments, applications,
//!   handles, the proxy).
//! - [`chaos`]: re-export of `troupe-chaos` (the chaos harness behind
//!   `troupe chaos run`).
//! - [`gcs`]: re-export of `troupe-gcs` (the control store: its client,
//!   admin requests and backups, behind `troupe gcs`).
//! - the actor API from `troupe-worker`: [`Actor`], [`Handler`], [`Message`],
//!   [`Registry`], [`Cluster`], [`ActorHandle`], and [`Node`] for embedding a
//!   node in a program.
#![forbid(unsafe_code)]

pub mod cli;

pub use troupe_core as core;
pub use troupe_worker::{
    Actor, ActorContext, ActorError, ActorHandle, ActorType, Cluster, Handler, Message, Node,
    NodeConfig, NodeInfoProtocol, NodeInfoReply, Registry, Role, Spawn,
};

/// The text `troupe status` prints for `state`.
pub fn status_text(state: &troupe_worker::ClusterState) -> String {
    troupe_worker::status::render(state)
}

pub use troupe_chaos as chaos;
pub use troupe_gcs as gcs;
pub use troupe_serve as serve;

/// The names most programs need, for `use troupe::prelude::*`.
pub mod prelude {
    pub use troupe_core::id::{ActorId, DeploymentId, NodeId, ReplicaId, RequestId};
    pub use troupe_core::resources::Resources;
    pub use troupe_serve::{
        Application, Bind, Catalog, Deployment, DeploymentHandle, DeploymentType, HttpIngress,
        ReplicaContext, ServeError, ServeRequest, ServeResponse, Serves,
    };
    pub use troupe_worker::{
        Actor, ActorContext, ActorError, ActorHandle, ActorType, Cluster, Handler, Message,
        Registry,
    };
}
