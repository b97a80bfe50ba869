//! The view's IO. One task per followed selection ([`Follow`]) lists it,
//! then watches it from the listed revision, and lists it again after a
//! `Compacted` error or when the watch cannot resume (the GCS client's
//! watch already resumes on another member after a member failure, from
//! the next undelivered revision). The coordinator ([`run`]) starts and
//! stops those tasks as the process's needs change ([`needs::follows`])
//! and applies what they send, each selection's items in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use troupe_core::id::ActorId;
use troupe_gcs::api::GcsError;
use troupe_gcs::client::{GcsClient, GcsClientError};
use troupe_gcs::{KeyValue, RangeRequest, RevisionEvents};

use super::needs::{self, Follow, Scope};
use super::{ClusterState, Shared};
use crate::cluster::AbortOnDrop;

/// Items the selections' tasks may have queued for the coordinator.
const ITEMS_IN_FLIGHT: usize = 256;

/// How often idle actors are looked for.
const EVICT_EVERY: Duration = Duration::from_secs(15);

/// What a selection's task sends the coordinator.
enum Item {
    Listed {
        follow: Follow,
        serial: u64,
        revision: u64,
        kvs: Vec<KeyValue>,
    },
    Events {
        follow: Follow,
        serial: u64,
        batch: RevisionEvents,
    },
}

impl Item {
    fn source(&self) -> (&Follow, u64) {
        match self {
            Item::Listed { follow, serial, .. } | Item::Events { follow, serial, .. } => {
                (follow, *serial)
            }
        }
    }
}

/// Follows what the process needs until the view is dropped.
pub(super) async fn run(
    gcs: GcsClient,
    state: Weak<watch::Sender<ClusterState>>,
    shared: Arc<Shared>,
) {
    // Bounded: a coordinator that falls behind holds back the watches
    // (the GCS streams' credit), instead of buffering without bound.
    let (tx, mut rx) = mpsc::channel::<Item>(ITEMS_IN_FLIGHT);
    // The running tasks by selection, each with its serial number (so
    // items of a stopped task that are still queued are told apart).
    let mut running: BTreeMap<Follow, (u64, AbortOnDrop)> = BTreeMap::new();
    let mut serial = 0u64;
    // Base selections listed at least once since they started.
    let mut listed: BTreeSet<Follow> = BTreeSet::new();
    // The latest revision any selection reached.
    let mut latest = 0u64;
    // Whether every base selection was listed once (then the revision
    // never goes back to 0).
    let mut loaded = false;
    // Whether what to follow may have changed: at start, when the
    // interests grew or idle actors were dropped, and when names under a
    // followed prefix changed.
    let mut dirty = true;
    let mut evict = tokio::time::interval(EVICT_EVERY);
    evict.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(sender) = state.upgrade() else {
            return;
        };
        if dirty {
            dirty = false;
            // The actors named under followed name prefixes (a narrow
            // state holds no other names).
            let named: Vec<ActorId> = match shared.scope {
                Scope::Full => Vec::new(),
                Scope::Narrow { .. } => sender.borrow().names.values().copied().collect(),
            };
            let wanted = {
                let interests = shared.interests.lock().unwrap_or_else(|p| p.into_inner());
                needs::follows(shared.scope, &interests, named)
            };
            let current: BTreeSet<Follow> = running.keys().cloned().collect();
            let (start, stop) = needs::diff(&current, &wanted);
            for follow in stop {
                running.remove(&follow);
                listed.remove(&follow);
                sender.send_modify(|s| s.clear(&follow));
            }
            for follow in start {
                serial += 1;
                let task =
                    tokio::spawn(follow_one(gcs.clone(), follow.clone(), serial, tx.clone()));
                running.insert(follow, (serial, AbortOnDrop(task)));
            }
            shared
                .stats
                .follows
                .store(running.len() as u64, Ordering::Relaxed);
        }
        drop(sender);
        tokio::select! {
            Some(item) = rx.recv() => {
                let (follow, from) = item.source();
                if running.get(follow).is_none_or(|(serial, _)| *serial != from) {
                    continue;
                }
                dirty |= matches!(follow, Follow::Names(_));
                let Some(sender) = state.upgrade() else { return };
                sender.send_modify(|s| {
                    match &item {
                        Item::Listed { follow, revision, kvs, .. } => {
                            s.apply_listing(follow, *revision, kvs);
                            listed.insert(follow.clone());
                            latest = latest.max(*revision);
                        }
                        Item::Events { batch, .. } => {
                            shared.stats.received(batch);
                            s.apply_events(batch);
                            latest = latest.max(batch.revision);
                        }
                    }
                    if shared.scope != Scope::Full {
                        // Loaded once every base selection was listed;
                        // from then on the revision never goes back to 0.
                        loaded = loaded
                            || running.keys().filter(|f| f.is_base()).all(|f| listed.contains(f));
                        s.revision = if loaded { latest } else { 0 };
                    }
                });
            }
            () = shared.wake.notified() => dirty = true,
            _ = evict.tick() => {
                dirty = true;
                let mut interests = shared.interests.lock().unwrap_or_else(|p| p.into_inner());
                let now = tokio::time::Instant::now();
                for actor in needs::idle(&interests.actors, now, needs::IDLE_ACTOR_TTL) {
                    interests.actors.remove(&actor);
                }
            }
            () = closed(&state) => return,
        }
    }
}

/// Lists `follow`'s keys, then watches them, forever (until aborted or the
/// coordinator is gone); lists again when the watch falls behind
/// compaction or cannot resume; waits while the GCS is unavailable.
async fn follow_one(gcs: GcsClient, follow: Follow, serial: u64, tx: mpsc::Sender<Item>) {
    let selector = follow.selector();
    let mut backoff = Duration::from_millis(50);
    // When a listing failure was last logged at warn level: at most one
    // line per `WARN_EVERY` while it lasts.
    const WARN_EVERY: Duration = Duration::from_secs(30);
    let mut warned: Option<tokio::time::Instant> = None;
    'relist: loop {
        let request = RangeRequest {
            selector: selector.clone(),
            limit: None,
        };
        let listing = match gcs.range(request, true).await {
            Ok(listing) => listing,
            Err(e) => {
                // No quorum yet is normal at start; anything else will not
                // mend by itself and leaves this process without that part
                // of its view (no routes, no serve controller): say why.
                if !matches!(e, GcsClientError::Unavailable { .. })
                    && warned.is_none_or(|at| at.elapsed() >= WARN_EVERY)
                {
                    tracing::warn!(error = %e, ?follow, "cannot list the cluster state; this process's view lacks it until it can");
                    warned = Some(tokio::time::Instant::now());
                } else {
                    tracing::debug!(error = %e, ?follow, "cannot list the cluster state yet");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                if tx.is_closed() {
                    return;
                }
                continue;
            }
        };
        let revision = listing.revision;
        let listed = Item::Listed {
            follow: follow.clone(),
            serial,
            revision,
            kvs: listing.kvs,
        };
        if tx.send(listed).await.is_err() {
            return;
        }
        let Ok(mut watch) = gcs.watch(selector.clone(), revision + 1).await else {
            continue;
        };
        loop {
            match watch.next().await {
                Ok(batch) => {
                    let item = Item::Events {
                        follow: follow.clone(),
                        serial,
                        batch,
                    };
                    if tx.send(item).await.is_err() {
                        return;
                    }
                    backoff = Duration::from_millis(50);
                }
                Err(GcsClientError::Rejected(GcsError::Compacted { .. })) => continue 'relist,
                // The watch cannot go on from where it is (a message it
                // cannot take, members down for the client's whole
                // deadline): list afresh and watch from there.
                Err(e @ (GcsClientError::Transport(_) | GcsClientError::Unavailable { .. })) => {
                    tracing::warn!(error = %e, ?follow, "cluster watch failed; listing again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue 'relist;
                }
                Err(e) => {
                    tracing::debug!(error = %e, ?follow, "cluster watch interrupted; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    if tx.is_closed() {
                        return;
                    }
                }
            }
        }
    }
}

/// Resolves once nobody holds the view any more.
async fn closed(state: &Weak<watch::Sender<ClusterState>>) {
    while state.strong_count() > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
