//! The node's RPC services: actor calls, the controller's requests, node
//! info and administration.

use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::sync::Notify;
use tokio::time::Instant;
use troupe_core::id::{ActorId, NodeId};
use troupe_core::rpc::{CallContext, Service, Status};
use troupe_gcs::member::GcsMember;

use crate::actor::{ActorError, RawCall, Registry};
use crate::controller::ControllerHandle;
use crate::hosting::Hosting;
use crate::lifecycle::ActorState;
use crate::protocol::{
    ActorCall, CallRefusal, CallRequest, Control, ControlError, ControlReply, ControlRequest,
    NodeAdmin, NodeAdminRequest, NodeInfo, NodeInfoReply,
};
use crate::view::{ClusterView, Lookup};

/// How long a call waits for an instance this node is about to construct.
const WAIT_FOR_INSTANCE: Duration = Duration::from_secs(5);

pub(crate) struct ActorCallService {
    pub me: NodeId,
    pub hosting: Arc<Hosting>,
    pub view: ClusterView,
}

impl ActorCallService {
    /// Whether an instance for `request` may still appear here.
    fn may_come(&self, actor: ActorId, incarnation: u64) -> bool {
        self.view.read(|s| match s.lookup(actor, 0) {
            Lookup::NotFound => true,
            Lookup::NotYet => {
                // A narrow view looks it up; the wait below ends when it
                // has.
                self.view.want_actor(actor);
                true
            }
            Lookup::Found(r) if r.incarnation < incarnation => true,
            Lookup::Found(r) => {
                r.node == Some(self.me) && !matches!(r.state, ActorState::Dead { .. })
            }
        })
    }
}

impl Service for ActorCallService {
    type Protocol = ActorCall;

    async fn call(
        &self,
        request: CallRequest,
        cx: CallContext,
    ) -> Result<Result<ByteBuf, CallRefusal>, Status> {
        let mut call = RawCall {
            message: request.message.into_owned(),
            payload: bytes::Bytes::from(request.payload.into_vec()),
        };
        let (actor, incarnation) = (request.actor, request.incarnation);
        let mut waits = None;
        loop {
            match self.hosting.send_raw(actor, incarnation, call) {
                Ok(sent) => {
                    return Ok(match sent.await {
                        Ok(Ok(reply)) => Ok(ByteBuf::from(reply)),
                        Ok(Err(e)) => Err(CallRefusal::Failed(e)),
                        // The instance stopped before taking the call (it
                        // never ran): the caller looks the actor up again.
                        Err(_) => Err(CallRefusal::NotHere),
                    });
                }
                Err(unsent) => call = unsent,
            }
            if !self.may_come(actor, incarnation) {
                return Ok(Err(CallRefusal::NotHere));
            }
            // Not here yet: wait for the instance table or the view to move.
            let (changes, view, give_up) = waits.get_or_insert_with(|| {
                let give_up = Instant::now() + WAIT_FOR_INSTANCE;
                (
                    self.hosting.subscribe(),
                    self.view.subscribe(),
                    cx.deadline.map_or(give_up, |d| d.min(give_up)),
                )
            });
            tokio::select! {
                _ = changes.changed() => {}
                _ = view.changed() => {}
                () = tokio::time::sleep_until(*give_up) => return Ok(Err(CallRefusal::NotHere)),
            }
        }
    }
}

pub(crate) struct ControlService {
    pub controller: Option<ControllerHandle>,
    pub registry: Registry,
}

impl Service for ControlService {
    type Protocol = Control;

    async fn call(
        &self,
        request: ControlRequest,
        _: CallContext,
    ) -> Result<Result<ControlReply, ControlError>, Status> {
        let Some(controller) = &self.controller else {
            return Ok(Err(ControlError::NotController));
        };
        if let ControlRequest::Spawn(spawn) = &request {
            if !self.registry.contains(&spawn.type_name) {
                return Ok(Err(ControlError::Actor(ActorError::NotRegistered {
                    type_name: spawn.type_name.clone(),
                })));
            }
        }
        Ok(controller.submit(request).await)
    }
}

pub(crate) struct NodeInfoService {
    pub me: NodeId,
    pub member: Option<GcsMember>,
    /// This node's GCS client: on a node without a member, its current
    /// member list is what joiners and drivers are told.
    pub gcs: troupe_gcs::client::GcsClient,
}

impl Service for NodeInfoService {
    type Protocol = NodeInfo;

    async fn call(&self, (): (), _: CallContext) -> Result<NodeInfoReply, Status> {
        let gcs_members = match &self.member {
            Some(member) => {
                let m = member.status().membership;
                m.voters
                    .into_iter()
                    .chain(m.learners)
                    .map(|(_, addr)| addr)
                    .collect()
            }
            None => self.gcs.members(),
        };
        Ok(NodeInfoReply {
            node: self.me,
            gcs_members,
        })
    }
}

pub(crate) struct NodeAdminService {
    pub shutdown: Arc<Notify>,
}

impl Service for NodeAdminService {
    type Protocol = NodeAdmin;

    async fn call(&self, request: NodeAdminRequest, _: CallContext) -> Result<(), Status> {
        match request {
            NodeAdminRequest::Shutdown => self.shutdown.notify_one(),
        }
        Ok(())
    }
}

/// Streaming calls (`worker.actor_stream`).
pub(crate) struct ActorStreamService {
    pub inner: Arc<ActorCallService>,
}

impl Service for ActorStreamService {
    type Protocol = crate::protocol::ActorStream;

    async fn call(&self, _: CallRequest, _: CallContext) -> Result<ByteBuf, Status> {
        Err(Status::unimplemented(
            "worker.actor_stream only opens streams",
        ))
    }

    async fn stream(
        &self,
        request: CallRequest,
        _: CallContext,
    ) -> Result<troupe_core::rpc::ResponseStream<ByteBuf>, Status> {
        let (actor, incarnation) = (request.actor, request.incarnation);
        let mut call = crate::actor::RawStream {
            message: request.message.into_owned(),
            payload: bytes::Bytes::from(request.payload.into_vec()),
        };
        let give_up = Instant::now() + WAIT_FOR_INSTANCE;
        let mut changes = self.inner.hosting.subscribe();
        loop {
            match self.inner.hosting.send_stream(actor, incarnation, call) {
                Ok(sent) => {
                    let rx = match sent.await {
                        Ok(Ok(rx)) => rx,
                        Ok(Err(e)) => return Err(Status::rejected(e.to_string())),
                        Err(_) => return Err(Status::unavailable(NOT_HERE)),
                    };
                    let items = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|item| (Ok(ByteBuf::from(item)), rx))
                    });
                    return Ok(Box::pin(items));
                }
                Err(unsent) => call = unsent,
            }
            if !self.inner.may_come(actor, incarnation) {
                return Err(Status::unavailable(NOT_HERE));
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(give_up) => return Err(Status::unavailable(NOT_HERE)),
            }
        }
    }
}

/// The status message of a stream whose actor is not on this node.
pub(crate) const NOT_HERE: &str = "the actor is not hosted on this node";
