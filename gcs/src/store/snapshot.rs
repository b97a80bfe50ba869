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

/// Bumped when the payload layout changes: 2 added the session clock and
/// the sessions' last use. Format 1 payloads (older snapshots and backup
/// files) are still read: their sessions count as used at clock 0.
pub const SNAPSHOT_FORMAT: u32 = 2;

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
    /// The session clock (`crate::kv::sessions`).
    pub session_clock: u64,
    /// When sessions were last used, on the session clock (a session not
    /// listed: 0).
    pub session_used: Vec<(u64, u64)>,
}

/// Snapshot format 1: format 2 without the session clock and stamps.
#[derive(Deserialize)]
struct SnapshotPayloadV1 {
    _format: u32,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    revision: u64,
    compacted: u64,
    kvs: Vec<KeyValue>,
    leases: Vec<Lease>,
    sessions: Vec<(u64, SessionRecord)>,
    history: Vec<RevisionEvents>,
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
    session_clock: u64,
    session_used: Vec<(sled::IVec, sled::IVec)>,
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
            session_clock: sm.session_clock()?,
            session_used: sm
                .tree
                .range(codec::table_bounds(codec::SESSION_USED))
                .collect::<std::result::Result<_, _>>()?,
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
            session_clock: self.session_clock,
            session_used: self
                .session_used
                .iter()
                .map(|(k, v)| Ok((codec::u64_of_key(k)?, codec::u64_value(v)?)))
                .collect::<Result<_>>()?,
        })
    }
}

impl SnapshotPayload {
    /// The bytes a snapshot (and a backup file's body) holds.
    pub fn encode(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        // The format is the first field: a little-endian u32 (bincode).
        let format = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
        match format {
            Some(SNAPSHOT_FORMAT) => decode(bytes),
            Some(1) => {
                let v1: SnapshotPayloadV1 = decode(bytes)?;
                Ok(SnapshotPayload {
                    format: SNAPSHOT_FORMAT,
                    last_applied: v1.last_applied,
                    membership: v1.membership,
                    revision: v1.revision,
                    compacted: v1.compacted,
                    kvs: v1.kvs,
                    leases: v1.leases,
                    sessions: v1.sessions,
                    history: v1.history,
                    session_clock: 0,
                    session_used: Vec::new(),
                })
            }
            other => Err(GcsStoreError::Corrupt(format!(
                "snapshot format {} (this build reads {SNAPSHOT_FORMAT} and 1): written by a newer \
                 Troupe? Restore or install it with that build",
                other.map_or("(too short)".to_string(), |f| f.to_string())
            ))),
        }
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
        for (client_id, used) in &self.session_used {
            batch.insert(
                codec::u64_key(codec::SESSION_USED, *client_id),
                used.to_be_bytes().to_vec(),
            );
        }
        batch.insert(
            codec::META_SESSION_CLOCK,
            self.session_clock.to_be_bytes().to_vec(),
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct V1<'a> {
        format: u32,
        last_applied: Option<LogId>,
        membership: StoredMembership,
        revision: u64,
        compacted: u64,
        kvs: Vec<KeyValue>,
        leases: Vec<Lease>,
        sessions: &'a [(u64, SessionRecord)],
        history: Vec<RevisionEvents>,
    }

    #[test]
    fn format_1_payloads_still_load_with_their_sessions_used_at_clock_0() {
        let record = SessionRecord {
            seq: 4,
            response: crate::Response {
                revision: 9,
                outcome: Err(crate::CommandError::InvalidTtl),
            },
        };
        let sessions = [(77, record)];
        let old = encode(&V1 {
            format: 1,
            last_applied: None,
            membership: Default::default(),
            revision: 9,
            compacted: 2,
            kvs: Vec::new(),
            leases: Vec::new(),
            sessions: &sessions,
            history: Vec::new(),
        })
        .unwrap();
        let payload = SnapshotPayload::decode(&old).unwrap();
        assert_eq!(payload.format, SNAPSHOT_FORMAT);
        assert_eq!((payload.revision, payload.compacted), (9, 2));
        assert_eq!(payload.sessions, sessions.to_vec());
        assert_eq!((payload.session_clock, payload.session_used.len()), (0, 0));
        // Format 2 round-trips; an unknown format is refused by name.
        let mut current = payload.clone();
        current.session_clock = 5;
        current.session_used = vec![(77, 3)];
        assert_eq!(
            SnapshotPayload::decode(&current.encode().unwrap()).unwrap(),
            current
        );
        let mut newer = current.encode().unwrap();
        newer[..4].copy_from_slice(&7u32.to_le_bytes());
        let e = SnapshotPayload::decode(&newer).unwrap_err().to_string();
        assert!(e.contains("snapshot format 7"), "{e}");
    }
}
