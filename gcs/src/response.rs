//! What applying a command returns. Responses are replicated data too: they
//! are stored in the client session table for exactly-once retries.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::{KeyValue, LeaseId};

/// The result of one applied log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The store revision after this entry was applied.
    pub revision: u64,
    pub outcome: Result<Outcome, CommandError>,
}

/// What applying one log entry returns: one [`Response`] per command of its
/// [`Proposal`](crate::Proposal), in order (none for Raft's own blank and
/// membership entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalResponse {
    pub responses: Vec<Response>,
}

/// What a successful command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Put(PutOutcome),
    Delete(DeleteOutcome),
    Txn(TxnOutcome),
    Range(RangeOutcome),
    LeaseGranted {
        id: LeaseId,
        ttl_ms: u64,
    },
    LeaseRevoked {
        id: LeaseId,
        deleted: u64,
    },
    /// [`Operation::ExpireSessions`](crate::Operation): how many sessions
    /// were removed, and the session clock after it.
    SessionsExpired {
        expired: u64,
        clock_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOutcome {
    /// The previous key-value, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOutcome {
    pub deleted: u64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOutcome {
    pub kvs: Vec<KeyValue>,
    /// True when the limit cut the result short.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Whether the compares held (and `success` ran).
    pub succeeded: bool,
    /// One result per operation of the branch that ran.
    pub results: Vec<OpOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutcome {
    Put(PutOutcome),
    Delete(DeleteOutcome),
    Range(RangeOutcome),
}

/// A command the state machine rejected. The rejection is itself the
/// replicated result: it changed nothing and retrying it unchanged gives the
/// same answer.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum CommandError {
    #[error("{id} not found")]
    LeaseNotFound { id: LeaseId },
    #[error("{id} already exists")]
    LeaseExists { id: LeaseId },
    #[error("lease TTL must be positive")]
    InvalidTtl,
    #[error("client {client_id}: sequence {seq} is older than the last applied {last_seq}")]
    StaleSequence {
        client_id: u64,
        seq: u64,
        last_seq: u64,
    },
    /// Over a size limit of [`crate::kv::limits`]. Answered by the leader
    /// before the log (never replicated): the write changed nothing.
    #[error("{what} is {bytes} bytes, over the control store's limit of {limit} bytes; store less (a large `user_config` belongs in a file or a model store the replicas read)")]
    TooLarge {
        what: String,
        bytes: u64,
        limit: u64,
    },
    /// The client's session is not in the table although `seq` is not the
    /// session's first: it was unused for longer than the GCS's session
    /// retention and removed. Nothing was applied. A client that sent this
    /// write for the first time may send it again under a new session; one
    /// that was retrying it cannot know whether an earlier attempt applied.
    #[error("client {client_id}: the exactly-once session expired (unused for longer than the control store's --session-retention) before sequence {seq}; nothing was applied. Open a new session; if this was a retry, read the state to see whether the earlier attempt applied")]
    SessionExpired { client_id: u64, seq: u64 },
}
