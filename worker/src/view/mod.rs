//! [`ClusterState`]: the node layer's tables as last seen from the GCS, and
//! [`ClusterView`], the tasks that keep one up to date by listing what the
//! process follows once and then watching it.
//!
//! Every process of the cluster (nodes and drivers) has one. Calls route by
//! it, so they never wait on Raft; while the GCS is unavailable it keeps the
//! last known state and calls to existing actors go on.
//!
//! What a view covers is its [`Scope`] ([`needs`], pure): all of `/troupe/`
//! on the nodes that may run the controller (GCS members' nodes), else the
//! node table, the controller's term, the node's own assignments, the
//! prefixes layers above asked for, and the actors this process uses,
//! looked up on demand ([`ClusterView::want_actor`]) and then watched until
//! idle ([`needs::IDLE_ACTOR_TTL`]). [`follow`] runs one listing and one
//! watch per followed selection.

mod follow;
pub mod needs;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use troupe_core::id::{ActorId, NodeId};
use troupe_gcs::client::GcsClient;
use troupe_gcs::{EventKind, KeyValue, RevisionEvents};

pub use needs::{Follow, Scope};

use crate::schema::{
    self, ActorName, ActorRecord, AssignmentRecord, ControllerTermRecord, Key, NodeRecord,
    ReportRecord,
};

/// The node layer's tables at one revision.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    /// The GCS revision this state reflects (0 before the first listing).
    /// A narrow view (see [`Scope`]) follows several selections, each at
    /// its own pace: its revision is the latest any of them reached, and
    /// stays 0 until each of the tables every process reads was listed.
    pub revision: u64,
    /// Counts every change applied to this state (listings and events):
    /// what caches of derived data compare.
    pub generation: u64,
    /// Whether this state holds all of `/troupe/` ([`Scope::Full`]), or
    /// only what its process follows.
    pub full: bool,
    /// In a narrow view: the actors it follows whose record was listed,
    /// with the revision of that listing (absent from `actors`: no such
    /// actor at that revision).
    pub looked_up: BTreeMap<ActorId, u64>,
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
            generation: 1,
            full: true,
            ..Self::default()
        };
        for kv in kvs {
            state.apply(&kv.key, Some(&kv.value));
        }
        state
    }

    /// What the state says of actor `id` for a handle that knows the actor
    /// existed at revision `known_at` (0: no such knowledge).
    pub fn lookup(&self, id: ActorId, known_at: u64) -> Lookup<'_> {
        if self.full {
            if self.revision == 0 || self.revision < known_at {
                return Lookup::NotYet;
            }
            return self.actors.get(&id).map_or(Lookup::NotFound, Lookup::Found);
        }
        if let Some(record) = self.actors.get(&id) {
            return Lookup::Found(record);
        }
        match self.looked_up.get(&id) {
            Some(&at) if at >= known_at && self.revision != 0 => Lookup::NotFound,
            _ => Lookup::NotYet,
        }
    }

    /// Forgets every key `follow` selects (before its listing replaces
    /// them, or when it is no longer followed).
    pub fn clear(&mut self, follow: &Follow) {
        match follow {
            Follow::All => {
                *self = ClusterState {
                    full: self.full,
                    generation: self.generation,
                    ..ClusterState::default()
                };
            }
            Follow::Nodes => self.nodes.clear(),
            Follow::ControllerTerm => self.controller = None,
            Follow::Assignments(node) => self.assignments.retain(|(n, _), _| n != node),
            Follow::Prefix(prefix) => self.extra.retain(|k, _| !k.starts_with(prefix.as_bytes())),
            Follow::Names(prefix) => self.names.retain(|name, _| {
                !crate::schema::Key::ActorName(name.clone())
                    .to_string()
                    .starts_with(prefix.as_str())
            }),
            Follow::Actor(actor) => {
                self.actors.remove(actor);
                self.looked_up.remove(actor);
            }
        }
        self.generation += 1;
    }

    /// Replaces what `follow` selects with its listing `kvs` at `revision`.
    pub fn apply_listing(&mut self, follow: &Follow, revision: u64, kvs: &[KeyValue]) {
        self.clear(follow);
        for kv in kvs {
            self.apply(&kv.key, Some(&kv.value));
        }
        if let Follow::Actor(actor) = follow {
            self.looked_up.insert(*actor, revision);
        }
        if matches!(follow, Follow::All) {
            self.revision = revision;
        }
    }

    /// Applies one revision's watched events.
    pub fn apply_events(&mut self, batch: &RevisionEvents) {
        for event in &batch.events {
            let value = match event.kind {
                EventKind::Put => Some(event.kv.value.as_slice()),
                EventKind::Delete => None,
            };
            self.apply(&event.kv.key, value);
        }
        self.revision = self.revision.max(batch.revision);
        self.generation += 1;
    }

    /// The RPC address of the node running the controller.
    pub fn controller_addr(&self) -> Option<&str> {
        let controller = self.controller?;
        self.nodes.get(&controller.node).map(|n| n.addr.as_str())
    }
}

/// What a [`ClusterState`] says of one actor.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Its record.
    Found(&'a ActorRecord),
    /// No such actor (at a revision the caller's knowledge allows).
    NotFound,
    /// Not known yet: the view is loading, or looking it up.
    NotYet,
}

/// A process's [`WatchStats`] at one moment, as another process asks for
/// them ([`WATCH_STATS_EXTENSION`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatchCounts {
    /// Key events received through watches.
    pub events: u64,
    /// Watch items (revisions) received.
    pub batches: u64,
    /// Selections followed now.
    pub follows: u64,
    /// Whether the view holds all of `/troupe/`.
    pub full: bool,
}

/// The node extension (`worker.extension`) answering a node's
/// [`WatchCounts`], bincode-encoded: what `troupe bench cluster` reads.
pub const WATCH_STATS_EXTENSION: &str = "worker.watch_stats";

/// What a view received from the GCS, for `/metrics`.
#[derive(Debug, Default)]
pub struct WatchStats {
    events: AtomicU64,
    batches: AtomicU64,
    follows: AtomicU64,
}

impl WatchStats {
    /// Key events (puts and deletes) received through watches.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Watch items (one per revision with events) received.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Selections followed now (one watch each).
    pub fn follows(&self) -> u64 {
        self.follows.load(Ordering::Relaxed)
    }

    /// The counts now; `full` says what the view covers.
    pub fn counts(&self, full: bool) -> WatchCounts {
        WatchCounts {
            events: self.events(),
            batches: self.batches(),
            follows: self.follows(),
            full,
        }
    }

    fn received(&self, batch: &RevisionEvents) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
    }
}

/// What the view's tasks and its users share.
struct Shared {
    scope: Scope,
    interests: Mutex<needs::Interests>,
    /// Wakes the view's task when the interests grew.
    wake: Notify,
    stats: WatchStats,
}

/// A shared, self-updating [`ClusterState`].
#[derive(Clone)]
pub struct ClusterView {
    state: Arc<watch::Sender<ClusterState>>,
    shared: Arc<Shared>,
}

impl ClusterView {
    /// Starts the task that lists and watches what `scope` covers through
    /// `gcs`; it ends when the last clone of the view is dropped.
    pub fn start(gcs: GcsClient, scope: Scope) -> ClusterView {
        let (tx, _) = watch::channel(ClusterState {
            full: scope == Scope::Full,
            ..ClusterState::default()
        });
        let view = ClusterView {
            state: Arc::new(tx),
            shared: Arc::new(Shared {
                scope,
                interests: Mutex::default(),
                wake: Notify::new(),
                stats: WatchStats::default(),
            }),
        };
        let weak = Arc::downgrade(&view.state);
        let shared = view.shared.clone();
        tokio::spawn(async move { follow::run(gcs, weak, shared).await });
        view
    }

    /// What this view covers.
    pub fn scope(&self) -> Scope {
        self.shared.scope
    }

    /// What it received so far.
    pub fn stats(&self) -> &WatchStats {
        &self.shared.stats
    }

    fn interests(&self) -> std::sync::MutexGuard<'_, needs::Interests> {
        self.shared
            .interests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that a call uses `actor`: a narrow view looks it up (once)
    /// and follows it until it was unused for [`needs::IDLE_ACTOR_TTL`].
    /// Never waits on the GCS.
    pub fn want_actor(&self, actor: ActorId) {
        if self.shared.scope == Scope::Full {
            return;
        }
        let new = self
            .interests()
            .use_actor(actor, tokio::time::Instant::now());
        if new {
            self.shared.wake.notify_one();
        }
    }

    /// Follows the actor names under the key prefix `prefix` (for as long
    /// as the process lives), and the actors they name.
    pub fn want_names(&self, prefix: &str) {
        if self.shared.scope == Scope::Full {
            return;
        }
        if self.interests().names.insert(prefix.to_owned()) {
            self.shared.wake.notify_one();
        }
    }

    /// Follows every key under `prefix` (a layer's own records under
    /// `/troupe/`), for as long as the process lives.
    pub fn want_prefix(&self, prefix: &str) {
        if self.shared.scope == Scope::Full {
            return;
        }
        if self.interests().prefixes.insert(prefix.to_owned()) {
            self.shared.wake.notify_one();
        }
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
    /// Returns whether it does. Meant for full views (the controller's):
    /// a narrow view's revision says only that one of its selections got
    /// that far.
    pub async fn wait_for_revision(&self, revision: u64, timeout: Duration) -> bool {
        let mut rx = self.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.revision >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests;
