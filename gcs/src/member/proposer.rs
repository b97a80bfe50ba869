//! The leader's write batching: concurrent writes become one Raft entry.
//!
//! openraft 0.9's core task waits for every log append to be synced before
//! it takes its next message, and it replicates an entry only after that
//! sync. One entry per write would therefore cost the leader one
//! `fdatasync` per write, in series, whatever the group commit under it
//! does. The proposer puts the writes that arrive while earlier entries are
//! in flight into one [`Proposal`]: a sync, an AppendEntries round and an
//! apply for the whole batch.
//!
//! Each command keeps its own client session and gets its own revision and
//! [`Response`], so exactly-once retries and the revision rule are the same
//! as with one entry per write. A failed proposal (not the leader any more,
//! Raft stopped) fails every write in it with the same error; the client
//! retries each under its own session.
//!
//! A write over the size limits ([`crate::kv::limits`]) never enters the
//! log: the proposer answers it with [`CommandError::TooLarge`] at once.
//!
//! Latency at low load is unchanged: with a free slot, a lone write is
//! proposed at once. Batches form only while `max_in_flight` proposals are
//! waiting for their commit.

use std::sync::Arc;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{Command, Proposal};
use crate::response::{CommandError, Response};
use crate::store::GcsReader;
use crate::types::{Node, NodeId, Raft};

/// What a write through Raft can fail with (openraft's own error).
pub type WriteError = RaftError<NodeId, ClientWriteError<NodeId, Node>>;

/// How writes are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Proposals submitted to Raft and not yet committed and applied. One
    /// more than one lets the leader sync the next batch while followers
    /// sync the previous one.
    pub max_in_flight: usize,
    /// Commands per proposal.
    pub max_commands: usize,
    /// Approximate payload bytes per proposal (keys and values; see
    /// [`payload_bytes`]). A single larger command is still proposed, alone.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_in_flight: 2,
            max_commands: 1024,
            max_bytes: 1024 * 1024,
        }
    }
}

impl BatchLimits {
    /// Whether a batch of `count` commands and `bytes` bytes may take one
    /// more of `next` bytes. The first command is always admitted. Pure.
    pub fn admits(&self, count: usize, bytes: usize, next: usize) -> bool {
        count == 0 || (count < self.max_commands && bytes.saturating_add(next) <= self.max_bytes)
    }
}

/// The keys and values a command carries: what dominates its encoded size.
pub fn payload_bytes(command: &Command) -> usize {
    const OVERHEAD: usize = 32;
    OVERHEAD + crate::kv::limits::write_bytes(command)
}

struct Pending {
    command: Command,
    bytes: usize,
    reply: oneshot::Sender<Result<Response, WriteError>>,
}

/// Batches the writes of one member. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::UnboundedSender<Pending>,
    /// For the revision of a refusal.
    reader: GcsReader,
}

impl Proposer {
    /// Starts the batching task on the current Tokio runtime. It ends when
    /// the last clone of the proposer is dropped.
    pub fn start(raft: Raft, reader: GcsReader, limits: BatchLimits) -> Proposer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx, limits));
        Proposer { tx, reader }
    }

    /// Commits `command` through Raft (batched with concurrent writes) and
    /// returns its response once applied on this member. A write over the
    /// size limits is refused in band without entering the log.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        if let Err(refusal) = crate::kv::check_write(&command) {
            return Ok(refused(&self.reader, refusal));
        }
        let (reply, answer) = oneshot::channel();
        let bytes = payload_bytes(&command);
        let stopped = || RaftError::Fatal(Fatal::Stopped);
        self.tx
            .send(Pending {
                command,
                bytes,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The answer to a write refused before the log: nothing changed.
fn refused(reader: &GcsReader, error: CommandError) -> Response {
    Response {
        // The revision is informative only; a failed read leaves 0.
        revision: reader.revision().unwrap_or(0),
        outcome: Err(error),
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>, limits: BatchLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let mut carried: Option<Pending> = None;
    loop {
        // Wait for a slot before taking writes: what arrives meanwhile
        // joins the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            if !limits.admits(batch.len(), bytes, next.bytes) {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            propose(&raft, batch).await;
        });
    }
}

async fn propose(raft: &Raft, batch: Vec<Pending>) {
    let (commands, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let count = commands.len();
    match raft.client_write(Proposal { commands }).await {
        Ok(written) if written.data.responses.len() == count => {
            for (reply, response) in replies.into_iter().zip(written.data.responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(written) => {
            // Cannot happen: the state machine answers every command.
            tracing::error!(
                commands = count,
                responses = written.data.responses.len(),
                "a proposal's response does not match its commands"
            );
            for reply in replies {
                let _ = reply.send(Err(RaftError::Fatal(Fatal::Panicked)));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, Operation, PutRequest, TxnOp, TxnRequest};

    #[test]
    fn limits_admit_up_to_count_and_bytes_but_always_the_first() {
        let limits = BatchLimits {
            max_in_flight: 1,
            max_commands: 3,
            max_bytes: 100,
        };
        assert!(limits.admits(0, 0, 1_000));
        assert!(limits.admits(1, 40, 60));
        assert!(!limits.admits(1, 40, 61));
        assert!(limits.admits(2, 10, 10));
        assert!(!limits.admits(3, 10, 10));
        assert!(!limits.admits(1, usize::MAX, 1));
    }

    #[test]
    fn payload_bytes_counts_keys_and_values() {
        let put = Command::new(Operation::put(vec![0; 10], vec![0; 100]));
        assert_eq!(payload_bytes(&put), 32 + 110);
        let txn = Command::new(Operation::Txn(TxnRequest {
            compares: vec![Compare::absent(vec![0; 5])],
            success: vec![TxnOp::Put(PutRequest::new(vec![0; 5], vec![0; 50]))],
            failure: vec![],
        }));
        assert_eq!(payload_bytes(&txn), 32 + 5 + 8 + 55);
        assert_eq!(
            payload_bytes(&Command::new(Operation::delete_prefix("abc"))),
            35
        );
    }
}
