//! The openraft type configuration of the GCS and aliases of openraft's
//! generic types instantiated with it.

use std::io::Cursor;

use crate::command::Proposal;
use crate::response::ProposalResponse;

/// A member's id. Never reused after the member is removed.
pub type NodeId = u64;

/// A member as stored in the membership config: its RPC address.
pub type Node = openraft::BasicNode;

openraft::declare_raft_types!(
    /// The GCS's openraft type config: a [`Proposal`] (a batch of commands)
    /// in, a [`ProposalResponse`] (one response per command) out,
    /// snapshots as in-memory byte buffers (bincode of the whole state).
    pub TypeConfig:
        D = Proposal,
        R = ProposalResponse,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
