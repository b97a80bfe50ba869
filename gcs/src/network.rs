//! Raft's network over the internal RPC transport: openraft's
//! `RaftNetworkFactory` / `RaftNetwork`, one RPC channel per peer.
//!
//! Transport failures are mapped so openraft reacts correctly: a peer that
//! cannot be reached (refused, reset, dead, frozen) is `Unreachable`, which
//! makes openraft back off instead of hammering it; anything else that
//! lost the answer is a `NetworkError`; an error the peer's Raft returned
//! is a `RemoteError`.

use std::collections::HashMap;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use troupe_core::rpc::{CallOptions, Channel, Protocol, RpcClient, RpcError, StatusCode};

use crate::api::{Addressed, RaftAppend, RaftSnapshot, RaftVote};
use crate::types::{Node, NodeId, TypeConfig};

/// Makes one [`PeerNetwork`] per peer.
#[derive(Clone)]
pub struct Network {
    rpc: RpcClient,
    /// Addresses to dial instead of the one in the membership, per peer
    /// (tests put a fault-injecting proxy on each link this way).
    dial_overrides: Arc<HashMap<NodeId, String>>,
}

impl Network {
    pub fn new(rpc: RpcClient, dial_overrides: HashMap<NodeId, String>) -> Network {
        Network {
            rpc,
            dial_overrides: Arc::new(dial_overrides),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerNetwork {
        let addr = self.dial_overrides.get(&target).unwrap_or(&node.addr);
        PeerNetwork {
            target,
            channel: self.rpc.channel(addr),
        }
    }
}

/// The connection to one peer.
pub struct PeerNetwork {
    target: NodeId,
    channel: Channel,
}

type Rpc<E> = RPCError<NodeId, Node, E>;

impl PeerNetwork {
    /// `rpc`, for this peer's id only (see [`Addressed`]).
    fn addressed<T>(&self, rpc: T) -> Addressed<T> {
        Addressed {
            to: self.target,
            rpc,
        }
    }

    async fn call<P, T, E>(&self, request: &P::Request, option: &RPCOption) -> Result<T, Rpc<E>>
    where
        P: Protocol<Response = Result<T, E>>,
        E: std::error::Error,
    {
        self.call_with::<P, T, E>(request, option, transport_error)
            .await
    }

    /// [`Self::call`], mapping transport errors with `on_error`.
    async fn call_with<P, T, E>(
        &self,
        request: &P::Request,
        option: &RPCOption,
        on_error: impl FnOnce(RpcError) -> Rpc<E>,
    ) -> Result<T, Rpc<E>>
    where
        P: Protocol<Response = Result<T, E>>,
        E: std::error::Error,
    {
        let options = CallOptions {
            timeout: Some(option.hard_ttl()),
            fail_fast: true,
        };
        match self.channel.call_with::<P>(request, options).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(on_error(e)),
        }
    }
}

fn transport_error<E: std::error::Error>(e: RpcError) -> Rpc<E> {
    match &e {
        RpcError::Connect { .. }
        | RpcError::ConnectionLost { .. }
        | RpcError::Unauthenticated { .. } => RPCError::Unreachable(Unreachable::new(&e)),
        // Another member answers at this one's address (it lost its data
        // and came back under a new id): back off as from a dead peer
        // instead of retrying at once, until the join replaces it.
        RpcError::Remote { status, .. } if status.code == StatusCode::Rejected => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let rpc = self.addressed(rpc);
        self.call_with::<RaftAppend, _, _>(&rpc, &option, |e| match e {
            // Too many (batched) entries for one message: openraft retries
            // at once with fewer.
            RpcError::MessageTooLarge { .. } if entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2))
            }
            e => transport_error(e),
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<RaftError<NodeId, InstallSnapshotError>>> {
        self.call::<RaftSnapshot, _, _>(&self.addressed(rpc), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<RaftError<NodeId>>> {
        self.call::<RaftVote, _, _>(&self.addressed(rpc), &option)
            .await
    }
}
