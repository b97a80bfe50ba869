//! Extensions: named handlers that a layer above the node (serve) adds
//! after the node started, served on the node's RPC port as
//! `worker.extension`. They carry soft state between processes, such as
//! serve's autoscaling metrics, over the transport instead of the GCS.
//!
//! A call names its handler; a node without a handler of that name (it
//! does not run that layer, or not yet) answers with an error saying so,
//! which callers of soft-state reports simply drop.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use troupe_core::id::NodeId;
use troupe_core::rpc::{CallContext, CallOptions, Protocol, Service, Status};

use crate::Cluster;

/// The protocol of extension calls.
pub struct ExtensionCall;

impl Protocol for ExtensionCall {
    const NAME: &'static str = "worker.extension";
    type Request = ExtensionRequest;
    type Response = Result<ByteBuf, String>;
}

/// One call of a named extension handler.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtensionRequest {
    pub name: String,
    pub body: ByteBuf,
}

/// A handler: the request body in, the answer (or an error text) out.
pub type Handler =
    Arc<dyn Fn(Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, String>> + Send + Sync>;

/// The handlers of one node, shared with its RPC service.
#[derive(Default)]
pub struct Extensions {
    handlers: RwLock<HashMap<String, Handler>>,
}

impl Extensions {
    /// Adds (or replaces) the handler called `name`.
    pub fn register(&self, name: impl Into<String>, handler: Handler) {
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), handler);
    }

    fn get(&self, name: &str) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// `worker.extension` on a node.
pub(crate) struct ExtensionService {
    pub extensions: Arc<Extensions>,
}

impl Service for ExtensionService {
    type Protocol = ExtensionCall;

    async fn call(
        &self,
        request: ExtensionRequest,
        _: CallContext,
    ) -> Result<Result<ByteBuf, String>, Status> {
        let Some(handler) = self.extensions.get(&request.name) else {
            return Ok(Err(format!(
                "this node has no extension {:?} (it does not run the layer that adds it)",
                request.name
            )));
        };
        Ok(handler(request.body.into_vec()).await.map(ByteBuf::from))
    }
}

impl Cluster {
    /// How many watch events `node`'s cluster view received, and what it
    /// follows (through [`crate::view::WATCH_STATS_EXTENSION`]).
    pub async fn watch_counts_of(
        &self,
        node: NodeId,
        timeout: Duration,
    ) -> Result<crate::view::WatchCounts, String> {
        let body = self
            .call_extension(
                node,
                crate::view::WATCH_STATS_EXTENSION,
                Vec::new(),
                timeout,
            )
            .await?;
        bincode::deserialize(&body).map_err(|e| format!("watch counts of {node}: {e}"))
    }

    /// Calls the extension handler `name` on `node`, within `timeout`.
    /// Errors are texts: the node is unknown, unreachable, or has no such
    /// handler, or the handler failed.
    pub async fn call_extension(
        &self,
        node: NodeId,
        name: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let addr = self
            .read_state(|s| s.nodes.get(&node).map(|n| n.addr.clone()))
            .ok_or_else(|| format!("{node} is not a registered node"))?;
        let request = ExtensionRequest {
            name: name.to_owned(),
            body: ByteBuf::from(body),
        };
        let options = CallOptions {
            timeout: Some(timeout),
            fail_fast: true,
        };
        self.inner
            .rpc
            .channel(&addr)
            .call_with::<ExtensionCall>(&request, options)
            .await
            .map_err(|e| format!("{name} on {node} at {addr}: {e}"))?
            .map(ByteBuf::into_vec)
    }
}
