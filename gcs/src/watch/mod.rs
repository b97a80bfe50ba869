//! Watches: history from sled, then live events, without gaps or repeats.
//!
//! Every applied revision is (1) written to the history table in the same
//! sled batch as the state it describes and (2) routed by the hub
//! (`watch::hub`) to the watchers it matches *after* that batch is visible
//! (and published on a broadcast channel for [`GcsReader::subscribe`]). A
//! watcher:
//!
//! 1. registers with the hub first;
//! 2. reads the history from its start revision up to the current revision
//!    `c` (in consistent chunks), delivers it and sets `next = c + 1`;
//! 3. then takes its queued revisions in order: `< next` were already
//!    delivered (skip), the others are delivered and move `next` past them.
//!    When its queue overflowed or a snapshot was installed (the hub marks
//!    it lagged), it goes back to step 2 from `next`.
//!
//! Because registration predates the history read, every matching revision
//! published after `c` is queued; because history and state land together,
//! the history read misses nothing up to `c`. The hub queues every matching
//! revision in order or marks the watcher lagged, so a watcher is woken only
//! by writes to its keys and still sees no gap. If step 2 finds `next`
//! compacted away, the watch fails with `Compacted` and the client re-lists.

mod hub;

use std::collections::VecDeque;
use std::sync::Arc;

use futures::future::poll_fn;

pub(crate) use hub::WatchHub;
pub use hub::WatchHubStats;

use crate::command::KeySelector;
use crate::error::Result;
use crate::model::RevisionEvents;
use crate::store::GcsReader;
use hub::{Registration, Take};

/// Revisions read from history per step, so a catching-up watcher never
/// holds back applies for long.
const HISTORY_CHUNK: usize = 256;

/// What the state machine publishes on its live channel
/// ([`GcsReader::subscribe`]) as it applies. Watchers do not use it: the
/// hub routes revisions to them.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// One applied revision.
    Revision(Arc<RevisionEvents>),
    /// The state was replaced by a snapshot at `revision`: watchers must
    /// re-read history (and may find it compacted).
    Reset { revision: u64 },
}

/// A stream of one selector's events from a start revision.
pub struct Watcher {
    reader: GcsReader,
    /// Every revision below `next` has been delivered or did not match.
    next: u64,
    registration: Registration,
    ready: VecDeque<RevisionEvents>,
    caught_up: bool,
}

impl Watcher {
    pub(crate) fn new(reader: GcsReader, selector: KeySelector, from: u64) -> Self {
        let registration = reader.hub().register(selector);
        Watcher {
            reader,
            next: from.max(1),
            registration,
            ready: VecDeque::new(),
            caught_up: false,
        }
    }

    /// The first revision not yet delivered: resume a watch from here.
    ///
    /// Moves past revisions that did not match once the watcher has taken
    /// everything queued for it.
    pub fn next_revision(&self) -> u64 {
        if let Some(events) = self.ready.front() {
            return events.revision;
        }
        match self.registration.taken_through() {
            Some(published) if self.caught_up => self.next.max(published + 1),
            _ => self.next,
        }
    }

    /// The next revision with events for the selector (only those events).
    ///
    /// Cancel-safe. Fails with [`GcsStoreError::Compacted`] when the watcher
    /// needs history that is gone; it never fails because the member shuts
    /// down: the watcher's reader keeps the state machine's shared state
    /// (and its hub) alive, so it waits for revisions instead (a member that
    /// stops closes its connections, which ends its clients' watches).
    ///
    /// [`GcsStoreError::Compacted`]: crate::GcsStoreError::Compacted
    pub async fn next(&mut self) -> Result<RevisionEvents> {
        loop {
            if let Some(events) = self.ready.pop_front() {
                return Ok(events);
            }
            if !self.caught_up {
                self.catch_up()?;
                continue;
            }
            // Takes nothing unless it completes, and nothing below awaits.
            match poll_fn(|cx| self.registration.poll_take(cx)).await {
                Take::Events(events) => {
                    if events.revision < self.next {
                        continue;
                    }
                    self.next = events.revision + 1;
                    return Ok(Arc::unwrap_or_clone(events));
                }
                Take::Lagged => self.caught_up = false,
            }
        }
    }

    /// Read the next chunk of history; caught up once it reaches the
    /// revision current at the time of the read.
    fn catch_up(&mut self) -> Result<()> {
        let read = self
            .reader
            .history(self.registration.selector(), self.next, HISTORY_CHUNK)?;
        self.ready.extend(read.events);
        self.next = self.next.max(read.next);
        self.caught_up = read.next > read.revision;
        Ok(())
    }
}
