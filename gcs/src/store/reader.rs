//! Serializable local reads and watches on the applied state.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::command::{KeySelector, RangeRequest};
use crate::error::Result;
use crate::kv::{self, KvView};
use crate::model::{KeyValue, Lease, LeaseId};
use crate::response::RangeOutcome;
use crate::store::sm_tree::HistoryRead;
use crate::store::state_machine::SmShared;
use crate::types::LogId;
use crate::watch::{LiveEvent, WatchHub, WatchHubStats, Watcher};

/// A cloneable read handle on a member's state machine.
///
/// Reads see whole applied batches (never part of one). They are
/// *serializable*, not linearizable: a follower may lag. For a linearizable
/// read, call `Raft::ensure_linearizable()` first, then read here.
///
/// The handle keeps the sled database open: drop every reader before
/// reopening the same directory.
#[derive(Clone)]
pub struct GcsReader {
    shared: Arc<SmShared>,
}

/// A range read with the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeRead {
    pub revision: u64,
    pub kvs: Vec<KeyValue>,
    pub more: bool,
}

impl GcsReader {
    pub(crate) fn new(shared: Arc<SmShared>) -> Self {
        GcsReader { shared }
    }

    /// The last snapshot openraft had built or installed: the log id it
    /// covers and its bytes (an encoded `SnapshotPayload`).
    pub(crate) fn current_snapshot(&self) -> Result<Option<(Option<LogId>, Vec<u8>)>> {
        Ok(self
            .shared
            .current_snapshot()?
            .map(|s| (s.meta.last_log_id, s.data)))
    }

    /// The current revision.
    pub fn revision(&self) -> Result<u64> {
        self.shared.read_current().revision()
    }

    /// The last log id applied (not necessarily flushed).
    pub fn last_applied(&self) -> Result<Option<LogId>> {
        self.shared.read_current().last_applied()
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        self.shared.read_current().get(key)
    }

    pub fn range(&self, request: &RangeRequest) -> Result<RangeRead> {
        let current = self.shared.read_current();
        let RangeOutcome { kvs, more } = kv::range(&*current, request)?;
        Ok(RangeRead {
            revision: current.revision()?,
            kvs,
            more,
        })
    }

    pub fn lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        self.shared.read_current().lease(id)
    }

    /// Every lease: what a new leader feeds to
    /// [`LeaseTracker::on_become_leader`](crate::LeaseTracker::on_become_leader).
    pub fn leases(&self) -> Result<Vec<Lease>> {
        self.shared.read_current().leases()
    }

    /// Every exactly-once client session as `(client id, last used on the
    /// session clock)`, and the session clock (`crate::kv::sessions`).
    pub fn sessions(&self) -> Result<(Vec<(u64, u64)>, u64)> {
        let current = self.shared.read_current();
        Ok((current.session_stamps()?, current.session_clock()?))
    }

    /// The highest revision whose history was compacted away (0: none).
    pub fn compacted(&self) -> Result<u64> {
        self.shared.read_current().compacted()
    }

    /// Stored events of keys selected by `selector` from revision `from`
    /// (inclusive), scanning at most `max_revisions` revisions (one read
    /// holds back applies, so keep chunks modest). `Compacted` if `from` is at
    /// or below the compaction point.
    pub fn history(
        &self,
        selector: &KeySelector,
        from: u64,
        max_revisions: usize,
    ) -> Result<HistoryRead> {
        self.shared
            .read_current()
            .history(selector, from, max_revisions)
    }

    /// Every revision applied from now on, as it becomes visible. Each
    /// receiver is woken by every revision: to follow some keys, use
    /// [`watch`](Self::watch), which is woken only by theirs.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.shared.live.subscribe()
    }

    /// Events of `selector` from revision `from` on: history first, then live,
    /// without gaps or repeats. See [`Watcher`].
    pub fn watch(&self, selector: KeySelector, from: u64) -> Watcher {
        Watcher::new(self.clone(), selector, from)
    }

    /// The watch hub's counts: watchers registered, revisions routed.
    pub fn watch_stats(&self) -> WatchHubStats {
        self.shared.hub.stats()
    }

    pub(crate) fn hub(&self) -> &Arc<WatchHub> {
        &self.shared.hub
    }
}
