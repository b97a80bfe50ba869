//! The node layer's RPC protocols (served by every node on its one RPC
//! port, next to the GCS services when it is a member).

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use troupe_core::id::{ActorId, NodeId};
use troupe_core::rpc::Protocol;

use crate::actor::ActorError;
use crate::schema::{ActorName, ActorOptions, ActorRecord, Owner};

/// A call to an actor hosted by the node.
pub(crate) struct ActorCall;

impl Protocol for ActorCall {
    const NAME: &'static str = "worker.actor_call";
    type Request = CallRequest;
    type Response = Result<ByteBuf, CallRefusal>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CallRequest {
    pub actor: ActorId,
    /// The incarnation the caller expects (a newer one is fine: the call
    /// never reached the old one).
    pub incarnation: u64,
    pub message: std::borrow::Cow<'static, str>,
    pub payload: ByteBuf,
}

/// A streaming call to an actor hosted by the node: the items, encoded.
pub(crate) struct ActorStream;

impl Protocol for ActorStream {
    const NAME: &'static str = "worker.actor_stream";
    type Request = CallRequest;
    type Response = ByteBuf;
}

/// Why a node did not answer a call with a reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum CallRefusal {
    /// The actor does not run here (any more, or not yet): the call did not
    /// run; look it up again.
    NotHere,
    /// The call failed.
    Failed(ActorError),
}

/// Requests for the cluster controller (answered by the node running it).
pub(crate) struct Control;

impl Protocol for Control {
    const NAME: &'static str = "worker.control";
    type Request = ControlRequest;
    type Response = Result<ControlReply, ControlError>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControlRequest {
    Spawn(Box<SpawnRequest>),
    Kill { actor: ActorId },
}

/// An actor to create. Retrying it with the same `id` is harmless.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpawnRequest {
    pub id: ActorId,
    pub type_name: String,
    pub name: Option<ActorName>,
    pub owner: Owner,
    pub options: ActorOptions,
    pub args: ByteBuf,
    /// The owner registered itself at this revision: the controller waits
    /// until it sees it, so it never takes a live owner for a dead one.
    pub min_revision: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ControlReply {
    pub record: ActorRecord,
    /// The GCS revision at which `record` (or a later version) exists.
    pub revision: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum ControlError {
    /// This node does not run the controller (now): ask the one the
    /// cluster state names.
    NotController,
    Actor(ActorError),
}

/// What a node tells a process that joins or connects through it: its id
/// and the GCS member addresses it knows now (its member's membership, or
/// its GCS client's current list).
pub struct NodeInfo;

impl Protocol for NodeInfo {
    const NAME: &'static str = "worker.info";
    type Request = ();
    type Response = NodeInfoReply;
}

/// The answer of [`NodeInfo`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfoReply {
    pub node: NodeId,
    /// Addresses of the GCS members.
    pub gcs_members: Vec<String>,
}

/// Node administration (`troupe stop`).
pub struct NodeAdmin;

impl Protocol for NodeAdmin {
    const NAME: &'static str = "worker.admin";
    type Request = NodeAdminRequest;
    type Response = ();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NodeAdminRequest {
    /// Leave the cluster (its actors are restarted elsewhere) and exit.
    Shutdown,
}
