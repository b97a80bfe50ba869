//! Making sled's flushes durable against power loss, not only crashes.
//!
//! sled 0.34 ends a flush with `sync_file_range` on Linux: the data reaches
//! the device queue but neither the drive's write cache nor the file's
//! metadata is flushed, and values large enough to be stored as separate
//! blob files are never synced at all. So after every sled flush this
//! store depends on (snapshots: building, persisting, installing),
//! [`DurableDb`] also `fdatasync`s sled's data file and fsyncs every blob
//! file not synced before, and their directory. (The Raft log is not in
//! sled: see `store::wal`.)

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Result;

/// A sled database whose `flush` and `flush_async` return only once the
/// flushed data would survive a power loss.
#[derive(Clone)]
pub(crate) struct DurableDb {
    db: sled::Db,
    files: Arc<SyncFiles>,
}

struct SyncFiles {
    dir: PathBuf,
    /// sled's single data file (`<dir>/db`).
    data: File,
    /// Blob files already synced (names in `<dir>/blobs`).
    synced_blobs: Mutex<HashSet<OsString>>,
}

impl SyncFiles {
    fn sync(&self) -> io::Result<()> {
        self.data.sync_data()?;
        let blobs_dir = self.dir.join("blobs");
        let entries = match std::fs::read_dir(&blobs_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut present = HashSet::new();
        let mut created = false;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(f) => f.sync_all()?,
                    // sled may delete an obsolete blob while we list.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                created = true;
            }
            present.insert(name);
        }
        if created {
            sync_dir(&blobs_dir)?;
        }
        *synced = present;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DurableDb {
    /// Opens (or creates) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<DurableDb> {
        let db = sled::Config::new().path(dir).open()?;
        let data = File::open(dir.join("db"))?;
        // The data file's directory entry must be durable too.
        sync_dir(dir)?;
        Ok(DurableDb {
            db,
            files: Arc::new(SyncFiles {
                dir: dir.to_path_buf(),
                data,
                synced_blobs: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Flushes and syncs without blocking the async runtime.
    pub(crate) async fn flush_async(&self) -> Result<()> {
        self.db.flush_async().await?;
        let files = self.files.clone();
        tokio::task::spawn_blocking(move || files.sync())
            .await
            .map_err(|e| io::Error::other(format!("sync task failed: {e}")))??;
        Ok(())
    }
}

impl Deref for DurableDb {
    type Target = sled::Db;

    fn deref(&self) -> &sled::Db {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flushes_sync_new_blob_files_once_and_forget_deleted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = DurableDb::open(dir.path()).unwrap();
        // Large enough for sled to store it as a blob file.
        db.insert(b"big", vec![7u8; 1 << 20]).unwrap();
        db.flush_async().await.unwrap();
        let blobs: HashSet<OsString> = std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!blobs.is_empty(), "the test needs sled to write a blob");
        let synced = db.files.synced_blobs.lock().unwrap().clone();
        assert_eq!(synced, blobs, "every blob file is synced");

        db.remove(b"big").unwrap();
        db.flush_async().await.unwrap();
        let synced = db.files.synced_blobs.lock().unwrap().clone();
        assert!(synced
            .iter()
            .all(|n| dir.path().join("blobs").join(n).exists()));
    }
}
