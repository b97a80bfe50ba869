//! A handle's remote attempt: one RPC to the actor's arbiter (with a
//! liveness check through the node's own address when the arbiter's
//! connection goes silent), each answer reported to the process's health
//! table, and what a transport error means for the call ([`Failure`]).

use std::sync::Arc;
use std::time::Duration;

use serde_bytes::ByteBuf;
use tokio::time::Instant;
use troupe_core::id::NodeId;
use troupe_core::rpc::{CallOptions, RpcError};

use super::{ActorHandle, Failure, Location};
use crate::actor::{Actor, ActorError};
use crate::health::Signal;
use crate::protocol::{ActorCall, CallRefusal, CallRequest};

/// How long a node's own address may take to say it lives when one of
/// its arbiter connections went silent.
const LIVENESS_TIMEOUT: Duration = Duration::from_millis(300);

impl<A: Actor> ActorHandle<A> {
    pub(super) async fn remote_bytes(
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
    pub(super) fn channel(&self, location: &Location) -> troupe_core::rpc::Channel {
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
    pub(super) fn report_health(&self, node: NodeId, error: Option<&RpcError>) {
        let signal = match error {
            None | Some(RpcError::Remote { .. }) => Signal::Answered,
            Some(RpcError::Connect { .. }) => Signal::Unreachable,
            Some(RpcError::ConnectionLost { .. }) => Signal::ConnectionLost,
            Some(RpcError::Timeout { .. }) => Signal::Timeout,
            Some(_) => return,
        };
        self.cluster.inner.health.report(node, signal);
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
