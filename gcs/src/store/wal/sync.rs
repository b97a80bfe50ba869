//! Group commit: a thread that fdatasyncs every segment written since its
//! last sync (and the log directory if a segment was created), then
//! completes every append callback queued before the sync began, in order.
//! One sync per batch of appends.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;

use super::record::sync_dir;
use crate::types::TypeConfig;

/// What the next sync must cover. Appenders add to it before queueing
/// their callback, so a batch's sync covers every write of that batch.
#[derive(Default)]
pub(crate) struct Dirty {
    pub files: Vec<Arc<File>>,
    pub dir: bool,
}

impl Dirty {
    pub(crate) fn add(&mut self, file: &Arc<File>) {
        if !self.files.iter().any(|f| Arc::ptr_eq(f, file)) {
            self.files.push(file.clone());
        }
    }

    /// Sync now (truncate, purge): take everything dirty.
    pub(crate) fn take(&mut self) -> Dirty {
        std::mem::take(self)
    }

    pub(crate) fn sync(&self, dir: &std::path::Path) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        if self.dir {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

pub(crate) struct Syncer {
    tx: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub(crate) fn start(dir: PathBuf, dirty: Arc<Mutex<Dirty>>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let thread = std::thread::Builder::new()
            .name("gcs-wal-sync".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let pending = dirty.lock().unwrap_or_else(PoisonError::into_inner).take();
                    let result = pending.sync(&dir).map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        // Put the files back: a later sync must retry them.
                        let mut d = dirty.lock().unwrap_or_else(PoisonError::into_inner);
                        for f in &pending.files {
                            d.add(f);
                        }
                        d.dir |= pending.dir;
                        tracing::error!("gcs wal sync failed: {e}");
                    }
                    for callback in waiting {
                        callback.log_io_completed(result.clone().map_err(io::Error::other));
                    }
                }
            })?;
        Ok(Syncer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Call `callback` once everything written so far is on disk.
    pub(crate) fn after_sync(&self, callback: LogFlushed<TypeConfig>) {
        if let Some(tx) = &self.tx {
            if let Err(mpsc::SendError(callback)) = tx.send(callback) {
                callback.log_io_completed(Err(io::Error::other("wal syncer stopped")));
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("gcs wal sync thread panicked");
            }
        }
    }
}
