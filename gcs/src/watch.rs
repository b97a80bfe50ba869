//! Watches: history from sled, then live events, without gaps or repeats.
//!
//! Every applied revision is (1) written to the history table in the same
//! sled batch as the state it describes and (2) published on a broadcast
//! channel *after* that batch is visible. A watcher:
//!
//! 1. subscribes to the live channel first;
//! 2. reads the history from its start revision up to the current revision
//!    `c` (in consistent chunks), delivers it and sets `next = c + 1`;
//! 3. then takes live revisions: `< next` were already delivered (skip), `==
//!    next` is delivered, `> next` means it missed some (a lag or a snapshot
//!    install), so it goes back to step 2 from `next`.
//!
//! Because the subscription predates the history read, every revision after
//! `c` reaches the channel; because history and state land together, the
//! history read misses nothing up to `c`. If step 2 finds `next` compacted
//! away, the watch fails with `Compacted` and the client re-lists.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::command::KeySelector;
use crate::error::{GcsStoreError, Result};
use crate::model::RevisionEvents;
use crate::store::GcsReader;

/// Revisions read from history per step, so a catching-up watcher never
/// holds back applies for long.
const HISTORY_CHUNK: usize = 256;

/// What the state machine publishes as it applies.
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
    selector: KeySelector,
    /// Every revision below `next` has been delivered or did not match.
    next: u64,
    live: broadcast::Receiver<LiveEvent>,
    ready: VecDeque<RevisionEvents>,
    caught_up: bool,
}

impl Watcher {
    pub(crate) fn new(reader: GcsReader, selector: KeySelector, from: u64) -> Self {
        let live = reader.subscribe();
        Watcher {
            reader,
            selector,
            next: from.max(1),
            live,
            ready: VecDeque::new(),
            caught_up: false,
        }
    }

    /// The first revision not yet delivered: resume a watch from here.
    pub fn next_revision(&self) -> u64 {
        self.ready.front().map_or(self.next, |e| e.revision)
    }

    /// The next revision with events for the selector (only those events).
    ///
    /// Cancel-safe. Fails with [`GcsStoreError::Compacted`] when the watcher
    /// needs history that is gone, and [`GcsStoreError::WatchClosed`] when the
    /// state machine is gone.
    pub async fn next(&mut self) -> Result<RevisionEvents> {
        loop {
            if let Some(events) = self.ready.pop_front() {
                return Ok(events);
            }
            if !self.caught_up {
                self.catch_up()?;
                continue;
            }
            match self.live.recv().await {
                Ok(LiveEvent::Revision(events)) => {
                    if events.revision < self.next {
                        continue;
                    }
                    if events.revision > self.next {
                        self.caught_up = false;
                        continue;
                    }
                    self.next += 1;
                    if let Some(matching) = events.filtered(&self.selector) {
                        return Ok(matching);
                    }
                }
                Ok(LiveEvent::Reset { .. }) | Err(RecvError::Lagged(_)) => self.caught_up = false,
                Err(RecvError::Closed) => return Err(GcsStoreError::WatchClosed),
            }
        }
    }

    /// Read the next chunk of history; caught up once it reaches the
    /// revision current at the time of the read.
    fn catch_up(&mut self) -> Result<()> {
        let read = self
            .reader
            .history(&self.selector, self.next, HISTORY_CHUNK)?;
        self.ready.extend(read.events);
        self.next = self.next.max(read.next);
        self.caught_up = read.next > read.revision;
        Ok(())
    }
}
