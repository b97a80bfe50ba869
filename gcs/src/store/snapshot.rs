//! The snapshot format and the snapshot builder.
//!
//! A snapshot is the whole state machine as one bincode [`SnapshotPayload`]:
//! typed records, independent of the sled key layout.

use std::io::Cursor;
use std::sync::Arc;

use openraft::{RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::error::{any, GcsStoreError, Result};
use crate::kv::KvView;
use crate::model::{KeyValue, Lease, RevisionEvents, SessionRecord};
use crate::store::codec::{self, decode, encode};
use crate::store::sm_tree::SmTree;
use crate::store::state_machine::SmShared;
use crate::types::{LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// Bumped when the payload layout changes incompatibly.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// The whole state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPayload {
    pub format: u32,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub revision: u64,
    pub compacted: u64,
    pub kvs: Vec<KeyValue>,
    pub leases: Vec<Lease>,
    pub sessions: Vec<(u64, SessionRecord)>,
    pub history: Vec<RevisionEvents>,
}

/// The state as read while applying is paused: the records as stored
/// (reference-counted sled buffers, no decoding), decoded into a
/// [`SnapshotPayload`] later, off the apply path.
pub(crate) struct RawCapture {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    revision: u64,
    compacted: u64,
    kvs: Vec<sled::IVec>,
    leases: Vec<sled::IVec>,
    sessions: Vec<(sled::IVec, sled::IVec)>,
    history: Vec<sled::IVec>,
}

impl RawCapture {
    /// Read the whole state of one tree. The caller makes sure no apply runs
    /// concurrently, so this is a consistent cut.
    pub(crate) fn take(sm: &SmTree) -> Result<Self> {
        let values = |table: u8| -> Result<Vec<sled::IVec>> {
            sm.tree
                .range(codec::table_bounds(table))
                .map(|item| Ok(item?.1))
                .collect()
        };
        Ok(RawCapture {
            last_applied: sm.last_applied()?,
            membership: sm.membership()?,
            revision: sm.revision()?,
            compacted: sm.compacted()?,
            kvs: values(codec::KV)?,
            leases: values(codec::LEASE)?,
            sessions: sm
                .tree
                .range(codec::table_bounds(codec::SESSION))
                .collect::<std::result::Result<_, _>>()?,
            history: values(codec::HISTORY)?,
        })
    }

    pub(crate) fn decode(self) -> Result<SnapshotPayload> {
        let records: Vec<Vec<RevisionEvents>> = self
            .history
            .iter()
            .map(|v| decode(v))
            .collect::<Result<_>>()?;
        Ok(SnapshotPayload {
            format: SNAPSHOT_FORMAT,
            last_applied: self.last_applied,
            membership: self.membership,
            revision: self.revision,
            compacted: self.compacted,
            kvs: self.kvs.iter().map(|v| decode(v)).collect::<Result<_>>()?,
            leases: self
                .leases
                .iter()
                .map(|v| decode(v))
                .collect::<Result<_>>()?,
            sessions: self
                .sessions
                .iter()
                .map(|(k, v)| Ok((codec::u64_of_key(k)?, decode(v)?)))
                .collect::<Result<_>>()?,
            history: records.into_iter().flatten().collect(),
        })
    }
}

impl SnapshotPayload {
    /// The bytes a snapshot (and a backup file's body) holds.
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let payload: SnapshotPayload = decode(bytes)?;
        if payload.format != SNAPSHOT_FORMAT {
            return Err(GcsStoreError::Corrupt(format!(
                "snapshot format {} (this build reads {SNAPSHOT_FORMAT})",
                payload.format
            )));
        }
        Ok(payload)
    }

    /// Write the payload into an empty tree, as one batch.
    pub fn restore_into(&self, tree: &sled::Tree) -> Result<()> {
        let mut batch = sled::Batch::default();
        for kv in &self.kvs {
            batch.insert(codec::prefixed(codec::KV, &kv.key), encode(kv)?);
        }
        for lease in &self.leases {
            batch.insert(codec::u64_key(codec::LEASE, lease.id.0), encode(lease)?);
        }
        for (client_id, record) in &self.sessions {
            batch.insert(codec::u64_key(codec::SESSION, *client_id), encode(record)?);
        }
        for events in &self.history {
            batch.insert(
                codec::u64_key(codec::HISTORY, events.revision),
                encode(&vec![events])?,
            );
        }
        batch.insert(codec::META_REVISION, self.revision.to_be_bytes().to_vec());
        batch.insert(codec::META_COMPACTED, self.compacted.to_be_bytes().to_vec());
        batch.insert(codec::META_APPLIED, encode(&self.last_applied)?);
        batch.insert(codec::META_MEMBERSHIP, encode(&self.membership)?);
        tree.apply_batch(batch)?;
        Ok(())
    }
}

/// A snapshot as persisted in the control tree: what `get_current_snapshot`
/// serves after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    pub meta: SnapshotMeta,
    /// As one byte string (bincode's form of a byte sequence either way;
    /// serde's default walks it a byte at a time).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl StoredSnapshot {
    pub fn into_snapshot(self) -> Snapshot {
        Snapshot {
            meta: self.meta,
            snapshot: Box::new(Cursor::new(self.data)),
        }
    }
}

/// Builds a snapshot from a state captured when openraft asked for the
/// builder (so applies may continue meanwhile).
pub struct SnapshotBuilder {
    pub(crate) shared: Arc<SmShared>,
    pub(crate) captured: Result<RawCapture>,
}

impl SnapshotBuilder {
    async fn build(&mut self) -> Result<Snapshot> {
        let captured = std::mem::replace(
            &mut self.captured,
            Err(GcsStoreError::Corrupt("snapshot already built".into())),
        )?;
        // Decoding and encoding a large state takes seconds of CPU: off the
        // runtime's threads, which answer RPCs (keepalives included).
        let (payload, data) = tokio::task::spawn_blocking(move || {
            let payload = captured.decode()?;
            let data = encode(&payload)?;
            Ok::<_, GcsStoreError>((payload, data))
        })
        .await
        .map_err(|e| {
            GcsStoreError::Io(std::io::Error::other(format!(
                "the snapshot task failed: {e}"
            )))
        })??;
        // Everything applied up to the snapshot must be durable before
        // openraft purges the log behind it.
        self.shared.db.flush_async().await?;
        let seq = self.shared.next_snapshot_seq()?;
        let meta = SnapshotMeta {
            last_log_id: payload.last_applied,
            last_membership: payload.membership,
            snapshot_id: snapshot_id(payload.last_applied, seq),
        };
        let stored = StoredSnapshot { meta, data };
        self.shared.persist_snapshot(&stored).await?;
        Ok(stored.into_snapshot())
    }
}

fn snapshot_id(last: Option<LogId>, seq: u64) -> String {
    match last {
        Some(id) => format!(
            "{}-{}-{}-{seq}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("none-{seq}"),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        self.build()
            .await
            .map_err(|e| StorageIOError::write_snapshot(None, any(e)).into())
    }
}
