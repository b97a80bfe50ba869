//! The sled-backed state machine: openraft's [`RaftStateMachine`].
//!
//! Durability: each `apply` call lands as one sled batch (state writes, new
//! history, compaction, last-applied log id, membership), so after a crash
//! the state is that of some applied prefix of the log, never half an entry.
//! `apply` does not flush: the state becomes durable with sled's background
//! flush or the flush before every snapshot. The log lives in the WAL, so a
//! crash may lose applied state whose entries are durable in the log; openraft
//! re-applies committed entries after the durable last-applied on restart.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, StorageIOError};
use tokio::sync::broadcast;

use crate::error::{any, read_err, Result};
use crate::kv::{self, KvView, Overlay};
use crate::response::ProposalResponse;
use crate::store::codec::{self, decode, encode};
use crate::store::durable::DurableDb;
use crate::store::reader::GcsReader;
use crate::store::sm_tree::SmTree;
use crate::store::snapshot::{RawCapture, SnapshotBuilder, SnapshotPayload, StoredSnapshot};
use crate::store::StoreConfig;
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::watch::{LiveEvent, WatchHub};

const CONTROL_TREE: &str = "sm_control";
const CONTROL_GENERATION: &[u8] = b"generation";
const CONTROL_SNAPSHOT: &[u8] = b"snapshot";
const CONTROL_SNAPSHOT_SEQ: &[u8] = b"snapshot_seq";
const SM_TREE_PREFIX: &str = "sm.";

fn sm_tree_name(generation: u64) -> String {
    format!("{SM_TREE_PREFIX}{generation}")
}

/// State shared by the state machine, its snapshot builders and readers.
pub(crate) struct SmShared {
    pub(crate) db: DurableDb,
    control: sled::Tree,
    /// The current generation. Write-locked only while a batch or a snapshot
    /// install becomes visible, so readers see whole batches.
    pub(crate) current: RwLock<SmTree>,
    pub(crate) live: broadcast::Sender<LiveEvent>,
    /// Routes each applied revision to the watchers it matches.
    pub(crate) hub: Arc<WatchHub>,
    pub(crate) config: StoreConfig,
    /// Serialises replacing the persisted snapshot.
    snapshot_lock: Mutex<()>,
}

impl SmShared {
    pub(crate) fn read_current(&self) -> std::sync::RwLockReadGuard<'_, SmTree> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn next_snapshot_seq(&self) -> Result<u64> {
        let next = self.control.update_and_fetch(CONTROL_SNAPSHOT_SEQ, |old| {
            let n = old.and_then(|v| codec::u64_value(v).ok()).unwrap_or(0) + 1;
            Some(n.to_be_bytes().to_vec())
        })?;
        next.map_or(Ok(1), |v| codec::u64_value(&v))
    }

    pub(crate) fn current_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        self.control
            .get(CONTROL_SNAPSHOT)?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Persist `snapshot` as the current one unless a newer one is stored.
    pub(crate) async fn persist_snapshot(&self, snapshot: &StoredSnapshot) -> Result<()> {
        {
            let _serial = self
                .snapshot_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(stored) = self.current_snapshot()? {
                if stored.meta.last_log_id > snapshot.meta.last_log_id {
                    return Ok(());
                }
            }
            self.control.insert(CONTROL_SNAPSHOT, encode(snapshot)?)?;
        }
        self.db.flush_async().await?;
        Ok(())
    }
}

/// The GCS state machine over sled. Owned by openraft once the Raft node is
/// built; take a [`GcsReader`] first for local reads and watches.
pub struct StateMachineStore {
    shared: Arc<SmShared>,
}

impl StateMachineStore {
    pub(crate) fn open(db: &DurableDb, config: StoreConfig) -> Result<Self> {
        let control = db.open_tree(CONTROL_TREE)?;
        let generation = control
            .get(CONTROL_GENERATION)?
            .map_or(Ok(0), |v| codec::u64_value(&v))?;
        let current_name = sm_tree_name(generation);
        // A crash during a snapshot install can leave a half-written newer
        // generation; one install can leave the replaced one behind.
        for name in db.tree_names() {
            if name.starts_with(SM_TREE_PREFIX.as_bytes()) && name != current_name.as_bytes() {
                db.drop_tree(&name)?;
            }
        }
        let tree = SmTree::new(db.open_tree(&current_name)?);
        let (live, _) = broadcast::channel(config.live_capacity);
        let hub = Arc::new(WatchHub::new(config.live_capacity, tree.revision()?));
        Ok(StateMachineStore {
            shared: Arc::new(SmShared {
                db: db.clone(),
                control,
                current: RwLock::new(tree),
                live,
                hub,
                config,
                snapshot_lock: Mutex::new(()),
            }),
        })
    }

    /// A cheap, cloneable handle for serializable local reads and watches.
    pub fn reader(&self) -> GcsReader {
        GcsReader::new(self.shared.clone())
    }

    fn tree(&self) -> SmTree {
        self.shared.read_current().clone()
    }

    /// Apply a batch of entries as one atomic sled batch, then publish its
    /// events.
    fn apply_entries(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<ProposalResponse>> {
        let tree = self.tree();
        let mut overlay = Overlay::new(&tree);
        let mut responses = Vec::new();
        let mut history = Vec::new();
        let mut applied: Option<LogId> = None;
        let mut membership: Option<StoredMembership> = None;
        for entry in entries {
            applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(ProposalResponse::default()),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    responses.push(ProposalResponse::default());
                }
                EntryPayload::Normal(proposal) => {
                    let mut answers = Vec::with_capacity(proposal.commands.len());
                    for command in &proposal.commands {
                        let result = kv::apply(&overlay, command)?;
                        for mutation in result.mutations {
                            overlay.record(mutation);
                        }
                        history.extend(result.events);
                        answers.push(result.response);
                    }
                    responses.push(ProposalResponse { responses: answers });
                }
            }
        }
        if applied.is_none() {
            return Ok(responses);
        }
        let pending = overlay.into_pending();
        let mut batch = sled::Batch::default();
        tree.write_batch(
            &mut batch,
            &pending,
            &history,
            self.shared.config.history_retention,
            applied,
            membership.as_ref(),
        )?;
        {
            let _visible = self
                .shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            tree.tree.apply_batch(batch)?;
        }
        let history: Vec<Arc<_>> = history.into_iter().map(Arc::new).collect();
        self.shared.hub.publish(&history);
        for events in history {
            // No receiver is fine: nobody subscribed.
            let _ = self.shared.live.send(LiveEvent::Revision(events));
        }
        Ok(responses)
    }

    /// Replace the whole state with a snapshot: write it into a fresh
    /// generation tree, then switch generations and store the snapshot in
    /// one batch, so a crash leaves either the old or the new state.
    async fn install(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<()> {
        let mut payload = SnapshotPayload::decode(data)?;
        payload.last_applied = meta.last_log_id;
        payload.membership = meta.last_membership.clone();
        let old_generation = self
            .shared
            .control
            .get(CONTROL_GENERATION)?
            .map_or(Ok(0), |v| codec::u64_value(&v))?;
        let generation = old_generation + 1;
        let name = sm_tree_name(generation);
        let db = &self.shared.db;
        db.drop_tree(&name)?;
        let tree = db.open_tree(&name)?;
        payload.restore_into(&tree)?;

        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.to_vec(),
        };
        let mut control = sled::Batch::default();
        control.insert(CONTROL_GENERATION, generation.to_be_bytes().to_vec());
        control.insert(CONTROL_SNAPSHOT, encode(&stored)?);
        {
            let _serial = self
                .shared
                .snapshot_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut current = self
                .shared
                .current
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.control.apply_batch(control)?;
            *current = SmTree::new(tree);
        }
        db.flush_async().await?;
        db.drop_tree(sm_tree_name(old_generation))?;
        self.shared.hub.reset(payload.revision);
        let _ = self.shared.live.send(LiveEvent::Reset {
            revision: payload.revision,
        });
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let tree = self.tree();
        let applied = tree.last_applied().map_err(read_err)?;
        let membership = tree.membership().map_err(read_err)?;
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.apply_entries(entries)
            .map_err(|e| StorageIOError::write_state_machine(any(e)).into())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            captured: RawCapture::take(&self.tree()),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<std::io::Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(std::io::Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<std::io::Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.install(meta, snapshot.get_ref())
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), any(e)).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored = self.shared.current_snapshot().map_err(read_err)?;
        Ok(stored.map(StoredSnapshot::into_snapshot))
    }
}
