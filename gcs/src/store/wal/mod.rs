//! The Raft log as append-only segment files (a write-ahead log, like
//! etcd's).
//!
//! Layout under `<data_dir>/log/`: segments `<first_index:020>.wal` holding
//! records `[len u32 LE][crc32 u32 LE][bincode(Entry)]` for consecutive
//! indexes, `vote` and `purged` (replaced atomically and durably) and
//! `committed` (overwritten in place, never synced).
//!
//! - `append` writes the records with one `pwrite` (readable at once) and
//!   queues the callback with the group-commit thread ([`sync`]): one
//!   `fdatasync` per batch of appends. A segment rolls over once it reaches
//!   the configured size.
//! - `truncate` cuts the segment holding the first removed index and deletes
//!   later segments, synced before returning.
//! - `purge` durably records the purged log id, then deletes the segments
//!   holding only purged entries; the first live segment may still hold
//!   purged entries, which recovery skips.
//! - Recovery scans every segment, checking CRCs. A bad record at the tail
//!   of the last segment is a torn, unacknowledged append: the segment is cut
//!   there. A bad record anywhere else, or a gap in the indexes, is
//!   corruption and opening fails.
//!
//! In-memory: the location of every live entry, so reads are one `pread`
//! per entry (the page cache holds recent segments).

mod meta;
mod record;
mod sync;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::LogFlushed;

use self::meta::CommittedFile;
use self::record::{encode_record, read_record, scan, segment_path, sync_dir};
use self::sync::{Dirty, Syncer};
use crate::error::{GcsStoreError, Result};
use crate::types::{Entry, LogId, TypeConfig, Vote};

/// Where an entry's record is.
#[derive(Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
    log_id: LogId,
}

struct Segment {
    file: Arc<File>,
    len: u64,
}

struct Inner {
    /// Segments by first index; the last one is the active one.
    segments: BTreeMap<u64, Segment>,
    /// Live entries, consecutive, from `first_index`.
    locs: VecDeque<Loc>,
    first_index: u64,
    purged: Option<LogId>,
    vote: Option<Vote>,
}

impl Inner {
    fn loc_of(&self, index: u64) -> Option<&Loc> {
        let i = index.checked_sub(self.first_index)?;
        self.locs.get(usize::try_from(i).ok()?)
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.locs.back().map(|l| l.log_id).max(self.purged)
    }

    /// The index the next appended entry should have (any, if the live log
    /// is empty).
    fn next_index(&self) -> u64 {
        self.locs
            .back()
            .map_or(self.first_index, |l| l.log_id.index + 1)
    }
}

/// The write-ahead log. One per member; shared by the log store's handles.
pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    dirty: Arc<Mutex<Dirty>>,
    committed: CommittedFile,
    committed_path: PathBuf,
    syncer: Syncer,
}

fn io_corrupt(msg: String) -> GcsStoreError {
    GcsStoreError::Corrupt(msg)
}

impl Wal {
    /// Open (or create) the log in `dir`, recovering it (see the module
    /// docs). `segment_bytes`: roll to a new segment at about this size.
    pub(crate) fn open(dir: &Path, segment_bytes: u64) -> Result<Wal> {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        let purged: Option<LogId> = meta::read_atomic(dir, meta::PURGED)?;
        let vote: Option<Vote> = meta::read_atomic(dir, meta::VOTE)?;
        let mut firsts = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let name = item?.file_name();
            if let Some(first) = name.to_str().and_then(record::parse_segment_name) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut inner = Inner {
            segments: BTreeMap::new(),
            locs: VecDeque::new(),
            first_index: purged.map_or(0, |p| p.index + 1),
            purged,
            vote,
        };
        let count = firsts.len();
        for (n, first) in firsts.into_iter().enumerate() {
            let path = segment_path(dir, first);
            let is_last = n + 1 == count;
            let scanned = scan(&path)?;
            if !scanned.clean {
                if !is_last {
                    return Err(io_corrupt(format!(
                        "log segment {} is corrupt at offset {} (not the last segment)",
                        path.display(),
                        scanned.valid_len
                    )));
                }
                tracing::warn!(
                    "gcs wal: cutting torn tail of {} at offset {}",
                    path.display(),
                    scanned.valid_len
                );
                let f = OpenOptions::new().write(true).open(&path)?;
                f.set_len(scanned.valid_len)?;
                f.sync_all()?;
            }
            let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path)?);
            for (k, rec) in scanned.records.into_iter().enumerate() {
                let index = rec.entry.log_id.index;
                if index != first + k as u64 {
                    return Err(io_corrupt(format!(
                        "log segment {} holds index {index} at position {k}",
                        path.display()
                    )));
                }
                if purged.is_some_and(|p| index <= p.index) {
                    continue;
                }
                if index != inner.next_index() && !inner.locs.is_empty() {
                    return Err(io_corrupt(format!(
                        "log gap: expected index {}, found {index} in {}",
                        inner.next_index(),
                        path.display()
                    )));
                }
                if inner.locs.is_empty() {
                    inner.first_index = index;
                }
                inner.locs.push_back(Loc {
                    segment: first,
                    offset: rec.offset,
                    len: rec.len,
                    log_id: rec.entry.log_id,
                });
            }
            inner.segments.insert(
                first,
                Segment {
                    file,
                    len: scanned.valid_len,
                },
            );
        }
        let (committed, committed_path) = CommittedFile::open(dir)?;
        let dirty = Arc::new(Mutex::new(Dirty::default()));
        let syncer = Syncer::start(dir.to_path_buf(), dirty.clone())?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            inner: Mutex::new(inner),
            dirty,
            committed,
            committed_path,
            syncer,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_dirty(&self) -> MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn purged(&self) -> Option<LogId> {
        self.lock().purged
    }

    pub(crate) fn last_log_id(&self) -> Option<LogId> {
        self.lock().last_log_id()
    }

    pub(crate) fn vote(&self) -> Option<Vote> {
        self.lock().vote
    }

    /// Bytes of the live entries after `index` (all of them for `None`).
    pub(crate) fn bytes_after(&self, index: Option<u64>) -> u64 {
        let inner = self.lock();
        let skip = index.map_or(0, |i| (i + 1).saturating_sub(inner.first_index));
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        inner.locs.iter().skip(skip).map(|l| u64::from(l.len)).sum()
    }

    /// Entries with indexes in `range` (those present).
    pub(crate) fn entries(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry>> {
        let inner = self.lock();
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        }
        .max(inner.first_index);
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let mut out = Vec::new();
        let mut index = start;
        while index < end {
            let Some(loc) = inner.loc_of(index) else {
                break;
            };
            let segment = inner
                .segments
                .get(&loc.segment)
                .ok_or_else(|| io_corrupt(format!("no segment for index {index}")))?;
            out.push(read_record(&segment.file, loc.offset, loc.len)?);
            index += 1;
        }
        Ok(out)
    }

    /// Write `entries` (readable at once); `callback` runs once they are
    /// durable.
    pub(crate) fn append(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<()> {
        self.write(entries)?;
        self.syncer.after_sync(callback);
        Ok(())
    }

    fn write(&self, entries: impl IntoIterator<Item = Entry>) -> Result<()> {
        let mut inner = self.lock();
        let mut buf = Vec::new();
        // The segment `buf` goes to and where in it.
        let mut target: Option<(u64, u64)> = None;
        for entry in entries {
            let index = entry.log_id.index;
            if index < inner.next_index() && index >= inner.first_index && !inner.locs.is_empty() {
                // Overwriting entries: openraft truncates first, but the
                // storage contract allows an append to replace a suffix.
                self.flush_buf(&mut inner, target.take(), &mut buf)?;
                self.truncate_locked(&mut inner, index)?;
            }
            if index > inner.next_index() && !inner.locs.is_empty() {
                // A gap: never from openraft (it appends after the last log
                // id), but keep the live log consecutive by starting over.
                tracing::warn!("gcs wal: append of index {index} leaves a gap; dropping the log");
                self.flush_buf(&mut inner, target.take(), &mut buf)?;
                let first = inner.first_index;
                self.truncate_locked(&mut inner, first)?;
            }
            if index != inner.next_index() && !inner.locs.is_empty() {
                return Err(io_corrupt(format!(
                    "append of index {index}, expected {}",
                    inner.next_index()
                )));
            }
            let (seg, base) = match target {
                Some((seg, base)) if base + (buf.len() as u64) < self.segment_bytes => (seg, base),
                _ => {
                    self.flush_buf(&mut inner, target, &mut buf)?;
                    let t = self.target_segment(&mut inner, index)?;
                    target = Some(t);
                    t
                }
            };
            let offset = base + buf.len() as u64;
            let len = encode_record(&entry, &mut buf)?;
            if inner.locs.is_empty() {
                inner.first_index = index;
            }
            inner.locs.push_back(Loc {
                segment: seg,
                offset,
                len,
                log_id: entry.log_id,
            });
        }
        self.flush_buf(&mut inner, target, &mut buf)
    }

    /// The segment to write index `index` to, and its length: the active one
    /// unless it is full or absent.
    fn target_segment(&self, inner: &mut Inner, index: u64) -> Result<(u64, u64)> {
        if let Some((first, seg)) = inner.segments.iter().next_back() {
            if seg.len < self.segment_bytes {
                return Ok((*first, seg.len));
            }
        }
        let path = segment_path(&self.dir, index);
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)?,
        );
        inner.segments.insert(index, Segment { file, len: 0 });
        self.lock_dirty().dir = true;
        Ok((index, 0))
    }

    fn flush_buf(
        &self,
        inner: &mut Inner,
        target: Option<(u64, u64)>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some((first, base)) = target else {
            return Ok(());
        };
        if buf.is_empty() {
            return Ok(());
        }
        let seg = inner
            .segments
            .get_mut(&first)
            .ok_or_else(|| io_corrupt(format!("segment {first} vanished")))?;
        seg.file.write_all_at(buf, base)?;
        seg.len = base + buf.len() as u64;
        self.lock_dirty().add(&seg.file);
        buf.clear();
        Ok(())
    }

    /// Remove entries from `since` on, durably.
    pub(crate) fn truncate(&self, since: u64) -> Result<()> {
        let mut inner = self.lock();
        self.truncate_locked(&mut inner, since)
    }

    fn truncate_locked(&self, inner: &mut Inner, since: u64) -> Result<()> {
        let keep = since.saturating_sub(inner.first_index);
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let cut = inner.locs.get(keep).copied();
        inner.locs.truncate(keep);
        let Some(cut) = cut else {
            return Ok(());
        };
        let later: Vec<u64> = inner
            .segments
            .range(cut.segment..)
            .map(|(f, _)| *f)
            .collect();
        let mut removed = false;
        for first in later {
            if first == cut.segment && cut.offset > 0 {
                let seg = inner.segments.get_mut(&first).expect("listed");
                seg.file.set_len(cut.offset)?;
                seg.file.sync_all()?;
                seg.len = cut.offset;
            } else {
                inner.segments.remove(&first);
                std::fs::remove_file(segment_path(&self.dir, first))?;
                removed = true;
            }
        }
        // Earlier appends must be durable before this returns too. Syncing
        // under the lock keeps the group-commit thread from acknowledging
        // appends (seeing nothing dirty) before this sync is done.
        let mut dirty = self.lock_dirty();
        dirty.sync(&self.dir)?;
        dirty.take();
        drop(dirty);
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Purge entries up to `upto`: record it durably, drop whole segments.
    pub(crate) fn purge(&self, upto: LogId) -> Result<()> {
        let mut inner = self.lock();
        if inner.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        meta::write_atomic(&self.dir, meta::PURGED, &upto)?;
        inner.purged = Some(upto);
        while inner.first_index <= upto.index {
            if inner.locs.pop_front().is_none() {
                break;
            }
            inner.first_index += 1;
        }
        inner.first_index = inner.first_index.max(upto.index + 1);
        // A segment holds only purged entries if the next one starts at or
        // before `upto + 1`, or if no live entry is in it.
        let firsts: Vec<u64> = inner.segments.keys().copied().collect();
        let live_segment = inner.locs.front().map(|l| l.segment);
        let mut removed = false;
        for first in firsts {
            if Some(first) == live_segment {
                break;
            }
            let is_active = inner.segments.keys().next_back() == Some(&first);
            if is_active && live_segment.is_some() {
                break;
            }
            inner.segments.remove(&first);
            std::fs::remove_file(segment_path(&self.dir, first))?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    pub(crate) fn save_vote(&self, vote: &Vote) -> Result<()> {
        let mut inner = self.lock();
        meta::write_atomic(&self.dir, meta::VOTE, vote)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    /// Remember the committed log id, without syncing.
    pub(crate) fn save_committed(&self, committed: Option<LogId>) -> Result<()> {
        self.committed.write(&committed)
    }

    /// The committed log id last saved, if it was not lost, and not beyond
    /// the log (after a power loss it may have outlived its entries).
    pub(crate) fn committed(&self) -> Result<Option<LogId>> {
        let committed: Option<LogId> =
            CommittedFile::read::<Option<LogId>>(&self.committed_path)?.flatten();
        let last = self.last_log_id();
        Ok(committed.filter(|c| last.is_some_and(|l| l.index >= c.index)))
    }
}
