//! [`ClusterState`]: the node layer's tables as last seen from the GCS, and
//! [`ClusterView`], the task that keeps one up to date by listing
//! `/troupe/` once and then watching it.
//!
//! Every process of the cluster (nodes and drivers) has one. Calls route by
//! it, so they never wait on Raft; while the GCS is unavailable it keeps the
//! last known state and calls to existing actors go on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use troupe_core::id::{ActorId, NodeId};
use troupe_gcs::api::GcsError;
use troupe_gcs::client::{GcsClient, GcsClientError};
use troupe_gcs::{EventKind, KeySelector, KeyValue, RangeRequest};

use crate::schema::{
    self, keys, ActorName, ActorRecord, AssignmentRecord, ControllerTermRecord, Key, NodeRecord,
    ReportRecord,
};

/// The node layer's tables at one revision.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// The GCS revision this state reflects (0 before the first listing).
    pub revision: u64,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    pub actors: BTreeMap<ActorId, ActorRecord>,
    pub names: BTreeMap<ActorName, ActorId>,
    /// By node, then actor.
    pub assignments: BTreeMap<(NodeId, ActorId), AssignmentRecord>,
    pub reports: BTreeMap<(NodeId, ActorId), ReportRecord>,
    /// Processes (nodes and drivers) that own actors, alive.
    pub owners: BTreeMap<NodeId, ()>,
    pub controller: Option<ControllerTermRecord>,
    /// Keys under `/troupe/` outside the node layer's tables (the serve
    /// layer's), raw: their owners decode them.
    pub extra: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl ClusterState {
    /// Applies one stored key-value (`None`: the key was deleted). Keys or
    /// values this binary cannot read are logged and skipped.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let parsed = match Key::parse(key) {
            Ok(key) => key,
            Err(_) => {
                match value {
                    Some(value) => self.extra.insert(key.to_vec(), value.to_vec()),
                    None => self.extra.remove(key),
                };
                return;
            }
        };
        if let Err(e) = self.apply_parsed(parsed, value) {
            tracing::warn!(key = %String::from_utf8_lossy(key), error = %e, "skipping a record");
        }
    }

    fn apply_parsed(&mut self, key: Key, value: Option<&[u8]>) -> Result<(), schema::SchemaError> {
        match (key, value) {
            (Key::Node(id), Some(v)) => {
                self.nodes.insert(id, schema::decode(v)?);
            }
            (Key::Node(id), None) => {
                self.nodes.remove(&id);
            }
            (Key::Actor(id), Some(v)) => {
                self.actors.insert(id, schema::decode(v)?);
            }
            (Key::Actor(id), None) => {
                self.actors.remove(&id);
            }
            (Key::ActorName(name), Some(v)) => {
                let record: schema::ActorNameRecord = schema::decode(v)?;
                self.names.insert(name, record.actor);
            }
            (Key::ActorName(name), None) => {
                self.names.remove(&name);
            }
            (Key::Assignment { node, actor }, Some(v)) => {
                self.assignments.insert((node, actor), schema::decode(v)?);
            }
            (Key::Assignment { node, actor }, None) => {
                self.assignments.remove(&(node, actor));
            }
            (Key::Report { node, actor }, Some(v)) => {
                self.reports.insert((node, actor), schema::decode(v)?);
            }
            (Key::Report { node, actor }, None) => {
                self.reports.remove(&(node, actor));
            }
            (Key::Owner(id), Some(_)) => {
                self.owners.insert(id, ());
            }
            (Key::Owner(id), None) => {
                self.owners.remove(&id);
            }
            (Key::ControllerTerm, Some(v)) => self.controller = Some(schema::decode(v)?),
            (Key::ControllerTerm, None) => self.controller = None,
        }
        Ok(())
    }

    /// The state listed from `kvs` at `revision`.
    pub fn from_listing(revision: u64, kvs: &[KeyValue]) -> Self {
        let mut state = ClusterState {
            revision,
            ..Self::default()
        };
        for kv in kvs {
            state.apply(&kv.key, Some(&kv.value));
        }
        state
    }

    /// The RPC address of the node running the controller.
    pub fn controller_addr(&self) -> Option<&str> {
        let controller = self.controller?;
        self.nodes.get(&controller.node).map(|n| n.addr.as_str())
    }
}

/// A shared, self-updating [`ClusterState`].
#[derive(Clone)]
pub struct ClusterView {
    state: Arc<watch::Sender<ClusterState>>,
}

impl ClusterView {
    /// Starts the task that lists and watches `/troupe/` through `gcs`; it
    /// ends when the last clone of the view is dropped.
    pub fn start(gcs: GcsClient) -> ClusterView {
        let (tx, _) = watch::channel(ClusterState::default());
        let view = ClusterView {
            state: Arc::new(tx),
        };
        let weak = Arc::downgrade(&view.state);
        tokio::spawn(async move { follow(gcs, weak).await });
        view
    }

    /// A receiver for reading the state and waiting for changes.
    pub fn subscribe(&self) -> watch::Receiver<ClusterState> {
        self.state.subscribe()
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.state.borrow())
    }

    /// Waits until the state reflects at least `revision`, or `timeout`.
    /// Returns whether it does.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.revision >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Lists, then watches, forever; re-lists when the watch falls behind
/// compaction, keeps the last state while the GCS is unavailable.
async fn follow(gcs: GcsClient, state: std::sync::Weak<watch::Sender<ClusterState>>) {
    let prefix = keys::ROOT.as_bytes().to_vec();
    let mut backoff = Duration::from_millis(50);
    // When a listing failure was last logged at warn level: at most one
    // line per `WARN_EVERY` while it lasts.
    const WARN_EVERY: Duration = Duration::from_secs(30);
    let mut warned: Option<tokio::time::Instant> = None;
    'relist: loop {
        let listing = match gcs
            .range(RangeRequest::prefix(prefix.clone(), None), true)
            .await
        {
            Ok(listing) => listing,
            Err(e) => {
                // No quorum yet is normal at start; anything else will not
                // mend by itself and leaves this node without a view (no
                // routes, no serve controller): say why.
                if !matches!(e, GcsClientError::Unavailable { .. })
                    && warned.is_none_or(|at| at.elapsed() >= WARN_EVERY)
                {
                    tracing::warn!(error = %e, "cannot list the cluster state; this node has no view of the cluster until it can");
                    warned = Some(tokio::time::Instant::now());
                } else {
                    tracing::debug!(error = %e, "cannot list the cluster state yet");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                if state.strong_count() == 0 {
                    return;
                }
                continue;
            }
        };
        let Some(tx) = state.upgrade() else { return };
        let fresh = ClusterState::from_listing(listing.revision, &listing.kvs);
        tx.send_replace(fresh);
        drop(tx);
        let Ok(mut watch) = gcs
            .watch(KeySelector::Prefix(prefix.clone()), listing.revision + 1)
            .await
        else {
            continue;
        };
        loop {
            let next = tokio::select! {
                next = watch.next() => next,
                () = closed(&state) => return,
            };
            match next {
                Ok(batch) => {
                    let Some(tx) = state.upgrade() else { return };
                    tx.send_modify(|s| {
                        for event in &batch.events {
                            let value = match event.kind {
                                EventKind::Put => Some(event.kv.value.as_slice()),
                                EventKind::Delete => None,
                            };
                            s.apply(&event.kv.key, value);
                        }
                        s.revision = batch.revision;
                    });
                    backoff = Duration::from_millis(50);
                }
                Err(GcsClientError::Rejected(GcsError::Compacted { .. })) => continue 'relist,
                // The watch cannot go on from where it is (a message it
                // cannot take, members down for the client's whole
                // deadline): list afresh and watch from there.
                Err(e @ (GcsClientError::Transport(_) | GcsClientError::Unavailable { .. })) => {
                    tracing::warn!(error = %e, "cluster watch failed; listing the cluster state again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue 'relist;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cluster watch interrupted; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    if state.strong_count() == 0 {
                        return;
                    }
                }
            }
        }
    }
}

/// Resolves once nobody holds the view any more.
async fn closed(state: &std::sync::Weak<watch::Sender<ClusterState>>) {
    while state.strong_count() > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
