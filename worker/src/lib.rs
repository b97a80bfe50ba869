//! `troupe-worker`: the node layer of Troupe: the node runtime (joining
//! the cluster, registering resources under a lease, hosting actors on
//! actix arbiters), the cluster controller, and the distributed actor API.
//! Its decisions are pure; the runtime modules only execute them.
//!
//! # Layout
//!
//! - [`actor`] — the API a user implements and calls: [`Actor`],
//!   [`Handler`], [`SharedHandler`], [`StreamHandler`], [`Message`],
//!   [`Registry`] (types by name).
//! - [`cluster`] — a driver's view: [`Cluster`] (connect, spawn, lookup,
//!   kill, list), [`Spawn`] options, location-transparent [`ActorHandle`]s.
//! - [`node`] — [`Node::start`]: the RPC server, the GCS member, the
//!   registration lease, the agent and the controller of one process.
//! - `agent` / `hosting` — starting and stopping this node's assigned
//!   instances on arbiters (each start and stop is logged at info on
//!   [`INSTANCE_LOG`]); `controller` — the cluster controller (placement,
//!   restarts, collecting the long dead: `controller::gc`) on the GCS
//!   leader's node.
//! - [`health`] — the data path's view of node health: [`HealthTable`]
//!   ejects a node whose calls fail (refused, lost, silent, timed out) from
//!   every router of the process at once; probes readmit it.
//! - [`placement`] — the cluster scheduler's decision: [`plan`] maps a
//!   snapshot of [`NodeView`]s and a queue of [`PlacementRequest`]s to a
//!   [`PlacementPlan`] of places and pendings with reasons (spread groups
//!   first, then [`PlacementPolicy::Spread`] or [`PlacementPolicy::Pack`]).
//! - [`lifecycle`] — the actor state machine: [`step`] maps an
//!   [`ActorRecord`] and an [`Event`] to a [`Transition`] (the next record
//!   and the [`Action`]s to carry out); [`ActorState`], [`DeathReason`].
//! - [`schema`] — the GCS key layout ([`Key`], prefixes in
//!   [`schema::keys`]) and the versioned records ([`NodeRecord`],
//!   [`ActorRecord`], [`AssignmentRecord`], ...) with [`encode`] and
//!   [`decode`]; [`view`] — [`ClusterState`], the process's cached view
//!   (all of `/troupe/` on GCS members' nodes, else only what the process
//!   uses: [`view::needs`]).
//! - [`fencing`], [`status`], [`codec`] — term fencing for controllers,
//!   the text of `troupe status`, message encoding.
//! - [`error`] — [`WorkerError`] and [`Result`].
#![forbid(unsafe_code)]

pub mod actor;
mod agent;
pub mod cluster;
pub mod codec;
mod controller;
pub mod error;
pub mod extension;
pub mod fencing;
pub mod health;
mod hosting;
pub mod lifecycle;
pub mod node;
pub mod placement;
mod protocol;
pub mod schema;
mod services;
pub mod status;
pub mod view;

pub use actor::{
    Actor, ActorContext, ActorError, ActorType, Handler, Message, Registry, SharedHandler,
    StreamHandler,
};
pub use cluster::{ActorHandle, Cluster, Spawn};
pub use error::{Result, WorkerError};
pub use health::{HealthPolicy, HealthTable};
pub use hosting::INSTANCE_LOG;
pub use lifecycle::{step, Action, ActorState, DeathReason, Event, Transition};
pub use node::{
    gcs_data_dir, write_node_id, GcsTiming, Node, NodeConfig, Role, DEFAULT_DEAD_ACTOR_RETENTION,
};
pub use placement::{
    plan, Decision, NodeView, PendingReason, PlacementPlan, PlacementPolicy, PlacementRequest,
};
pub use protocol::{
    NodeAdmin as NodeAdminProtocol, NodeAdminRequest, NodeInfo as NodeInfoProtocol, NodeInfoReply,
};
pub use schema::{
    decode, encode, ActorName, ActorNameRecord, ActorOptions, ActorRecord, AssignmentRecord,
    ControllerTermRecord, Key, Lifetime, NodeRecord, Owner, Record, ReportOutcome, ReportRecord,
    RetryLimit, SchemaError,
};
pub use view::{ClusterState, Scope, WatchCounts, WatchStats};
