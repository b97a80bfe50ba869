//! Storage: the Raft log in our own segment files ([`wal`], under
//! `<dir>/log/`), the state machine in sled (`<dir>`).
//!
//! sled trees: `sm_control` (current state machine generation, current
//! snapshot), `sm.<generation>` (the state machine). sled recovers a prefix
//! of its writes, in order. The state machine is not flushed per apply:
//! after a crash openraft re-applies committed entries from the log on top
//! of its last durable state. It is flushed before a snapshot is handed to
//! openraft, so the log is never purged past durably applied state.

mod codec;
mod durable;
mod log_store;
mod reader;
mod sm_tree;
mod snapshot;
mod state_machine;
mod wal;

use std::path::Path;

pub use log_store::LogStore;
pub use reader::{GcsReader, RangeRead};
pub use sm_tree::HistoryRead;
pub use snapshot::{SnapshotBuilder, SnapshotPayload, SNAPSHOT_FORMAT};
pub use state_machine::StateMachineStore;

use crate::error::{GcsStoreError, Result};

/// Defaults for [`StoreConfig`].
pub const DEFAULT_HISTORY_RETENTION: u64 = 10_000;
pub const DEFAULT_LIVE_CAPACITY: usize = 1024;
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 8 << 20;

/// Storage settings. Snapshot frequency is openraft's
/// `Config::snapshot_policy` (`SnapshotPolicy::LogsSinceLast(n)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Keep the events of the last this many revisions for watches.
    pub history_retention: u64,
    /// How many applied revisions the live channel buffers per subscriber,
    /// and a watcher's queue holds, before a slow one falls back to reading
    /// history.
    pub live_capacity: usize,
    /// Start a new log segment file once the current one reaches this size.
    /// The log is purged a whole segment at a time, so this also bounds how
    /// much purged log stays on disk (8 MiB by default: tens of thousands
    /// of entries per file, so rollovers are rare).
    pub wal_segment_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_retention: DEFAULT_HISTORY_RETENTION,
            live_capacity: DEFAULT_LIVE_CAPACITY,
            wal_segment_bytes: DEFAULT_WAL_SEGMENT_BYTES,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<()> {
        if self.history_retention == 0 {
            return Err(GcsStoreError::Config(
                "history_retention must be at least 1".into(),
            ));
        }
        if self.live_capacity == 0 {
            return Err(GcsStoreError::Config(
                "live_capacity must be at least 1".into(),
            ));
        }
        if self.wal_segment_bytes == 0 {
            return Err(GcsStoreError::Config(
                "wal_segment_bytes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Open (or create) a member's storage in `dir`.
///
/// Only one process (and one pair of stores) may have a directory open at a
/// time: sled locks it (the log is opened only once the lock is held, so
/// the lock covers the log directory too). To reopen in the same process, drop both stores and
/// every [`GcsReader`] (openraft drops the stores some time after
/// `Raft::shutdown`), and retry while the error says the lock is held: sled's
/// IO threads may keep the database open for a moment after the last handle.
/// The on-disk layout this build reads and writes: 2 since log entries are
/// batches of commands and history records hold one apply's revisions; 3
/// since sessions carry their last use (a `u` table, the session clock)
/// and the log may hold [`Operation::ExpireSessions`](crate::Operation)
/// entries, which a format-2 build cannot decode.
pub const STORE_FORMAT: u32 = 3;
/// The older format this build upgrades in place: a format-2 directory is
/// read as it is (its sessions count as used at clock 0) and its `FORMAT`
/// file rewritten, so a format-2 build refuses it afterwards instead of
/// failing on an entry it cannot decode.
const UPGRADES_FROM: u32 = 2;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "troupe-gcs store format ";

/// What to do about a data directory's format, from its `FORMAT` file's
/// text (if any) and whether it holds data: `Ok(true)` to write the file
/// (a new directory, or an upgrade from [`UPGRADES_FROM`]), `Ok(false)` to
/// go on, or the error to report. Pure.
fn format_verdict(
    dir: &Path,
    file: Option<&str>,
    has_data: bool,
) -> std::result::Result<bool, String> {
    let format_file = dir.join(FORMAT_FILE);
    let text = match file {
        None if !has_data => return Ok(true),
        // Every build since the file exists writes it before any data: data
        // without it is from an older build, or the file was lost.
        None => {
            return Err(format!(
                "{} holds GCS data but no {FORMAT_FILE} file, so its store format is unknown \
                 (this build reads format {STORE_FORMAT}; builds before the file existed wrote \
                 format 1). Nothing was changed. If this build wrote the data and only the file \
                 was lost, restore it: printf '{FORMAT_PREFIX}{STORE_FORMAT}\\n' > {}. If other \
                 members of the cluster hold the data, this member can instead start on a new, \
                 empty data directory and catch up from them; on a single-member cluster this \
                 directory is the only copy: keep it",
                dir.display(),
                format_file.display()
            ));
        }
        Some(text) => text,
    };
    let found = text
        .trim()
        .strip_prefix(FORMAT_PREFIX)
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or_else(|| {
            format!(
                "{} is not a Troupe GCS format file (found {:?})",
                format_file.display(),
                text.trim()
            )
        })?;
    if found == STORE_FORMAT {
        return Ok(false);
    }
    if found == UPGRADES_FROM {
        return Ok(true);
    }
    Err(format!(
        "{} holds GCS data in store format {found}; this build reads format {STORE_FORMAT}. \
         Nothing was changed. Run a build that reads format {found}; or, if other members of \
         the cluster hold the data, start this member on a new, empty data directory (it \
         catches up from them). On a single-member cluster this directory is the only copy: \
         keep it",
        dir.display()
    ))
}

fn check_format(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let has_data = dir.join("db").exists() || dir.join("log").exists();
    if format_verdict(dir, text.as_deref(), has_data).map_err(GcsStoreError::Config)? {
        let tmp = dir.join(format!("{FORMAT_FILE}.tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(
            &mut file,
            format!("{FORMAT_PREFIX}{STORE_FORMAT}\n").as_bytes(),
        )?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<(LogStore, StateMachineStore)> {
    config.validate()?;
    check_format(dir.as_ref())?;
    let db = durable::DurableDb::open(dir.as_ref())?;
    let log = LogStore::open(&dir.as_ref().join("log"), config.wal_segment_bytes)?;
    let sm = StateMachineStore::open(&db, config)?;
    Ok((log, sm))
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn new_directories_get_the_format_and_old_ones_a_clear_error() {
        let dir = Path::new("/data");
        assert_eq!(format_verdict(dir, None, false), Ok(true));
        let current = format!("{FORMAT_PREFIX}{STORE_FORMAT}\n");
        assert_eq!(format_verdict(dir, Some(&current), true), Ok(false));
        let missing = format_verdict(dir, None, true).unwrap_err();
        assert!(missing.contains("no FORMAT file"), "{missing}");
        assert!(
            missing.contains("printf 'troupe-gcs store format 3\\n' > /data/FORMAT"),
            "{missing}"
        );
        assert!(missing.contains("single-member cluster"), "{missing}");
        assert!(
            !missing.contains("holds GCS data in store format"),
            "{missing}"
        );
        let newer = format_verdict(dir, Some("troupe-gcs store format 9"), true).unwrap_err();
        assert!(
            newer.contains("format 9") && newer.contains("reads format 3"),
            "{newer}"
        );
        assert!(newer.contains("only copy: keep it"), "{newer}");
        // Format 2 is upgraded in place (the file rewritten); 1 is refused.
        assert_eq!(
            format_verdict(dir, Some("troupe-gcs store format 2\n"), true),
            Ok(true)
        );
        let older = format_verdict(dir, Some("troupe-gcs store format 1"), true).unwrap_err();
        assert!(older.contains("format 1"), "{older}");
        let junk = format_verdict(dir, Some("hello"), true).unwrap_err();
        assert!(junk.contains("not a Troupe GCS format file"), "{junk}");
    }

    #[test]
    fn a_store_reopens_and_refuses_an_older_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("gcs");
        drop(open(&dir, StoreConfig::default()).unwrap());
        let text = std::fs::read_to_string(dir.join(FORMAT_FILE)).unwrap();
        assert_eq!(text, format!("{FORMAT_PREFIX}{STORE_FORMAT}\n"));
        std::fs::remove_file(dir.join(FORMAT_FILE)).unwrap();
        let err = open(&dir, StoreConfig::default()).err().expect("refused");
        assert!(err.to_string().contains("no FORMAT file"), "{err}");
    }
}
