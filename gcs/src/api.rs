//! The GCS on the wire: the protocols members serve over the RPC transport.
//!
//! Three audiences, as in openraft's examples: Raft's own traffic between
//! members ([`RaftAppend`], [`RaftVote`], [`RaftPreVote`], [`RaftSnapshot`], each
//! [`Addressed`] to one member id), clients ([`Kv`], [`Watch`]) and
//! operators ([`Admin`], [`Backup`]). Client-facing answers
//! carry a typed [`GcsError`] that separates "ask another member / retry"
//! from "rejected"; a command the state machine refused (a compare that did
//! not hold, an unknown lease) is not an error here but the command's
//! replicated [`Response`].

use std::collections::BTreeSet;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use troupe_core::rpc::Protocol;

use crate::command::{Command, KeySelector, RangeRequest};
pub use crate::member::election::{PreVote, PreVoteReply};
use crate::model::{LeaseId, RevisionEvents};
use crate::response::Response;
use crate::store::RangeRead;
use crate::types::{NodeId, TypeConfig};

/// A Raft message and the member it is for. A member refuses messages for
/// another id: a process that took over a lost member's address (restarted
/// on an empty data directory, under a new id) must never answer for the
/// old one, or the old id would count towards quorums it cannot hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Addressed<T> {
    pub to: NodeId,
    pub rpc: T,
}

/// Raft log replication and heartbeats.
pub struct RaftAppend;
impl Protocol for RaftAppend {
    const NAME: &'static str = "gcs.raft.append.2";
    type Request = Addressed<AppendEntriesRequest<TypeConfig>>;
    type Response = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
}

/// Raft elections.
pub struct RaftVote;
impl Protocol for RaftVote {
    const NAME: &'static str = "gcs.raft.vote.2";
    type Request = Addressed<VoteRequest<NodeId>>;
    type Response = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
}

/// PreVote: "would you vote for me?", asked before an election (see
/// `member::election`).
pub struct RaftPreVote;
impl Protocol for RaftPreVote {
    const NAME: &'static str = "gcs.raft.prevote";
    type Request = Addressed<PreVote>;
    type Response = PreVoteReply;
}

/// Raft snapshot transfer, one chunk per call.
pub struct RaftSnapshot;
impl Protocol for RaftSnapshot {
    const NAME: &'static str = "gcs.raft.snapshot.2";
    type Request = Addressed<InstallSnapshotRequest<TypeConfig>>;
    type Response =
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;
}

/// Reads and writes of the key-value store.
pub struct Kv;
impl Protocol for Kv {
    const NAME: &'static str = "gcs.kv";
    type Request = KvRequest;
    type Response = Result<KvReply, GcsError>;
}

/// What a client asks of the KV.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KvRequest {
    /// Replicate a command through Raft (leader only).
    Write(Command),
    /// Read keys. Linearizable reads are served by the leader after it
    /// confirms its leadership (read-index); serializable reads by any
    /// member from its local state, which may lag.
    Range {
        request: RangeRequest,
        linearizable: bool,
    },
    /// Keep a lease alive for another TTL (leader only).
    KeepAlive(LeaseId),
}

/// The answer to a [`KvRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KvReply {
    Written(Response),
    Range(RangeRead),
    KeptAlive { ttl_ms: u64 },
}

/// Events of keys under a selector, from a revision on (a server stream).
pub struct Watch;
impl Protocol for Watch {
    const NAME: &'static str = "gcs.watch";
    type Request = WatchRequest;
    /// One item per revision that touched the selected keys. An error item
    /// (e.g. [`GcsError::Compacted`]) ends the stream.
    type Response = Result<RevisionEvents, GcsError>;
}

/// Where a watch starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchRequest {
    pub selector: KeySelector,
    /// The first revision to deliver; 0 means "changes after now".
    pub from_revision: u64,
}

/// Membership and status, for operators and for nodes joining.
pub struct Admin;
impl Protocol for Admin {
    const NAME: &'static str = "gcs.admin";
    type Request = AdminRequest;
    type Response = Result<AdminReply, GcsError>;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// This member's view of the cluster.
    Status,
    /// Add a non-voting member that replicates the log (or a snapshot);
    /// answers once it has caught up. Leader only.
    AddLearner { id: NodeId, addr: String },
    /// Make a learner a voter. Leader only.
    Promote { id: NodeId },
    /// Remove a voter or learner for good; its id is never accepted again.
    /// Leader only.
    Remove { id: NodeId },
    /// Make the member `id` at `addr` a voter: idempotent (a voter already
    /// is one; safe to retry), serialised with every other membership
    /// change, so concurrent joins both succeed. It joins as a learner,
    /// catches up, then becomes a voter. If other members are recorded at
    /// `addr` and `addr` now answers as `id` (a member restarted on an
    /// empty data directory under a new id), `id` takes their place in one
    /// membership change and their ids are retired. Leader only.
    Join { id: NodeId, addr: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminReply {
    Status(MemberStatus),
    /// The membership after a change.
    Membership(Membership),
}

/// The members of the cluster and their addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub voters: Vec<(NodeId, String)>,
    pub learners: Vec<(NodeId, String)>,
}

impl Membership {
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.voters.iter().map(|(id, _)| *id).collect()
    }

    /// Every member's address, voters first.
    pub fn addrs(&self) -> Vec<String> {
        self.voters
            .iter()
            .chain(self.learners.iter())
            .map(|(_, a)| a.clone())
            .collect()
    }
}

/// One member's view, as `troupe gcs members` and the admin API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    /// Leader, Follower, Candidate or Learner.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// The KV revision this member has applied.
    pub revision: u64,
    pub membership: Membership,
    /// On the leader: the last log index each other member is known to
    /// hold (`None`: nothing matched yet); empty on other members.
    pub matched: Vec<(NodeId, Option<u64>)>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

/// A consistent copy of the whole state machine, for `troupe gcs snapshot
/// save`: the leader's Raft snapshot covering a linearizable read point
/// (built afresh if needed), as a stream of chunks (each well under the RPC
/// message limit).
pub struct Backup;
impl Protocol for Backup {
    const NAME: &'static str = "gcs.backup";
    type Request = BackupRequest;
    /// A [`BackupChunk::Start`], then `Data` chunks in order. An error item
    /// (e.g. [`GcsError::NotLeader`]) ends the stream.
    type Response = Result<BackupChunk, GcsError>;
}

/// Ask for a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRequest {
    /// The largest data chunk to send, in bytes (the member caps it at
    /// [`BACKUP_MAX_CHUNK`]).
    pub chunk_bytes: u32,
    /// This member's own applied state, leader or not, without a read
    /// point: for recovering from a lost quorum (it lacks whatever was
    /// committed but not yet applied here).
    #[serde(default)]
    pub local: bool,
}

/// The largest chunk a member sends: 1 MiB, far under the RPC message
/// limit, so a chunk never holds a connection's reader for long.
pub const BACKUP_MAX_CHUNK: u32 = 1 << 20;

/// One item of a backup stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupChunk {
    /// What follows: `total_bytes` of an encoded snapshot of the state
    /// up to log index `last_log_index`, from member `member`.
    Start {
        member: NodeId,
        last_log_index: Option<u64>,
        total_bytes: u64,
    },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Why a GCS request did not get an answer from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum GcsError {
    /// Ask the leader instead (its id and address when known).
    #[error("member {member} is not the leader{}", match .leader { Some((id, addr)) => format!("; the leader is {id} at {addr}"), None => "; no leader is known yet".into() })]
    NotLeader {
        member: NodeId,
        leader: Option<(NodeId, String)>,
    },
    /// The cluster cannot answer now (no quorum, shutting down); retry.
    #[error("the control store is unavailable: {0}; retry shortly")]
    Unavailable(String),
    /// The watch asked for history that was compacted away: re-list with a
    /// range read and watch from its revision + 1.
    #[error("revision {requested} is compacted (history starts after {compacted_at}); re-list and watch from the listed revision")]
    Compacted { requested: u64, compacted_at: u64 },
    /// The lease is unknown or already expired.
    #[error("{0} not found or expired; grant a new lease")]
    LeaseNotFound(LeaseId),
    /// The request can never succeed as sent.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A member's storage failed.
    #[error("storage failure on a GCS member: {0}")]
    Storage(String),
}

impl GcsError {
    /// Whether the same request may succeed later or on another member.
    pub fn is_retryable(&self) -> bool {
        matches!(self, GcsError::NotLeader { .. } | GcsError::Unavailable(_))
    }
}
