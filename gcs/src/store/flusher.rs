//! Group commit for log appends: a thread that flushes sled, syncs its
//! files ([`DurableDb`]) and then completes every append callback queued
//! before the flush began, in order.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

use openraft::storage::LogFlushed;

use super::durable::DurableDb;
use crate::types::TypeConfig;

pub(crate) struct Flusher {
    tx: Option<mpsc::Sender<LogFlushed<TypeConfig>>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub(crate) fn start(db: DurableDb) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel::<LogFlushed<TypeConfig>>();
        let thread = std::thread::Builder::new()
            .name("gcs-log-flush".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut waiting = vec![first];
                    waiting.extend(rx.try_iter());
                    let result = db.flush().map(drop).map_err(|e| e.to_string());
                    for callback in waiting {
                        callback.log_io_completed(result.clone().map_err(io::Error::other));
                    }
                }
            })?;
        Ok(Flusher {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Call `callback` once everything written so far is on disk.
    pub(crate) fn after_flush(&self, callback: LogFlushed<TypeConfig>) {
        if let Some(tx) = &self.tx {
            if let Err(mpsc::SendError(callback)) = tx.send(callback) {
                callback.log_io_completed(Err(io::Error::other("log flusher stopped")));
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread after its last flush; joining
        // releases its database handle before a reopen.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("gcs log flusher thread panicked");
            }
        }
    }
}
