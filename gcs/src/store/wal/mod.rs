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
//!   the configured size; everything written is synced before the next
//!   segment is created, so only the last segment can hold unsynced bytes.
//! - `truncate` cuts the segment holding the first removed index and deletes
//!   later segments, synced before returning.
//! - `purge` durably records the purged log id, then deletes the segments
//!   holding only purged entries; the first live segment may still hold
//!   purged entries, which recovery skips.
//!
//! # Recovery: a torn tail or corruption
//!
//! A crash before an append's `fdatasync` can leave the last segment short
//! (the file ends inside a record) or with sectors that never reached the
//! disk (they read as zeros); nothing in that unsynced part was
//! acknowledged. Anything else that makes a record bad is damage, and
//! cutting there would silently drop entries the member acknowledged (on a
//! cluster, a Raft safety violation). So recovery reads each segment's
//! valid records (a positive length of at most 1 GiB, a matching CRC, a
//! payload that decodes) and then classifies the first bad record at offset
//! `X` ([`record::classify_tail`]). It is a **torn tail**, cut at `X`, only if
//! all of these hold:
//!
//! 1. the segment is the last one;
//! 2. the record is short (the file ends inside its header or inside the
//!    length its header states), or everything from `X`, or from a
//!    512-byte boundary inside the record (before its stated end), through
//!    the end of the file is zero;
//! 3. no valid record starts anywhere after `X` (a torn append would have
//!    to have reached the disk out of order; damage in the middle leaves
//!    valid records behind it);
//! 4. its bytes do not form a valid record under another length (a damaged
//!    length field, which would otherwise look short);
//! 5. its stated length is at most 1 GiB and, if its CRC matches, it
//!    decodes (a torn write leaves bytes as written or zero: it never
//!    makes a length larger, and a matching CRC means intact bytes).
//!
//! Everything else is **corruption** and opening fails with an error
//! naming the file, the offset, what is wrong, and how to replace the
//! member: a complete record whose CRC fails with data after it, a bad
//! record in an older segment, a record holding the wrong index, a gap
//! between segments, an empty segment before the last. An empty last
//! segment (created just before a crash) is removed.
//!
//! This is stricter than etcd's rule (a bad last record with any all-zero
//! sector is torn): a zero sector followed by written data is reported as
//! corruption, though a power loss that persisted sectors out of order could
//! leave it; refusing to start is the safe side. What the rule cannot tell
//! apart: a flipped bit in the very last record of the last segment when
//! that record's own bytes end in zeros across a 512-byte boundary looks
//! exactly like a torn write of it, and that one record is cut; so does
//! that record with both its length (made larger) and its CRC damaged (the
//! CRC covers the payload only, so the header's length is unchecked), and
//! so do sectors at the very end of the last segment that the disk lost or
//! zeroed after they were synced.
//!
//! Cost: the search for a valid record after `X` tries to decode at every
//! offset whose header length fits in the file (most garbage fails within
//! a few bytes); a torn tail inside a large value crafted to decode can
//! make it slow, never wrong. A record found bad when read after the open
//! fails the read with the same error.
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
use self::record::{encode_record, read_record, scan, segment_path, sync_dir, Tail};
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

/// The error for damage found at `offset` of the segment `path`: where,
/// what is wrong, and what the operator does about it. Pure.
fn corruption(path: &Path, offset: u64, what: &str) -> GcsStoreError {
    GcsStoreError::Corrupt(format!(
        "log segment {} is damaged at offset {offset}: {what}.
This is damage, not an interrupted write: this member may have lost entries it \
acknowledged, so it must not start. Replace it; the new member catches up from the others:
  1. Keep it stopped. From a healthy member: `troupe gcs members --gcs <HEALTHY_ADDR>` \
lists the ids; `troupe gcs remove --id <ID> --gcs <HEALTHY_ADDR>` removes this one.
  2. Start a member with a new id on an empty data directory: \
`troupe gcs serve --id <NEW_ID> --data-dir <EMPTY_DIR> ...`, then \
`troupe gcs add --id <NEW_ID> --addr <ITS_ADDR> --gcs <HEALTHY_ADDR>` \
(on a node: `troupe start --join <NODE_ADDR> --gcs --data-dir <EMPTY_DIR> ...`).
If this is the only member, restore from a backup instead. Keep this directory until the \
replacement has caught up.",
        path.display()
    ))
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
            let scanned = scan(&path, is_last)?;
            match &scanned.tail {
                Tail::Clean => {}
                Tail::Corrupt(what) => return Err(corruption(&path, scanned.valid_len, what)),
                Tail::Torn(shape) => {
                    tracing::warn!(
                        "gcs wal: cutting the torn tail ({shape:?}) of {} at offset {}: an \
                         append interrupted by a crash, never acknowledged",
                        path.display(),
                        scanned.valid_len
                    );
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(scanned.valid_len)?;
                    f.sync_all()?;
                }
            }
            if !is_last && scanned.records.is_empty() {
                let what = "the segment holds no record, and later segments exist";
                return Err(corruption(&path, 0, what));
            }
            if is_last && scanned.records.is_empty() {
                // Nothing in it (a segment created just before a crash): the
                // next append starts a segment named after its own index.
                std::fs::remove_file(&path)?;
                sync_dir(dir)?;
                continue;
            }
            let file = Arc::new(OpenOptions::new().read(true).write(true).open(&path)?);
            for (k, rec) in scanned.records.into_iter().enumerate() {
                let index = rec.entry.log_id.index;
                if index != first + k as u64 {
                    let what = format!(
                        "the record holds index {index}, but record {k} of this segment must hold {}",
                        first + k as u64
                    );
                    return Err(corruption(&path, rec.offset, &what));
                }
                if purged.is_some_and(|p| index <= p.index) {
                    continue;
                }
                if index != inner.next_index() && !inner.locs.is_empty() {
                    let what = format!(
                        "the log jumps from index {} (the end of the previous segment) to {index}",
                        inner.next_index() - 1
                    );
                    return Err(corruption(&path, rec.offset, &what));
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
            let entry = read_record(&segment.file, loc.offset, loc.len).map_err(|e| match e {
                // Damaged since the log was opened.
                GcsStoreError::Corrupt(what) => {
                    corruption(&segment_path(&self.dir, loc.segment), loc.offset, &what)
                }
                e => e,
            })?;
            out.push(entry);
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
        // Everything written so far becomes durable before a segment
        // follows it: only the last segment can then hold an unsynced
        // (possibly torn) tail, which recovery relies on.
        self.sync_now()?;
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

    /// Sync every file written since the last sync, now. Syncing under the
    /// dirty lock keeps the group-commit thread from acknowledging appends
    /// (seeing nothing dirty) before this sync is done.
    fn sync_now(&self) -> Result<()> {
        let mut dirty = self.lock_dirty();
        dirty.sync(&self.dir)?;
        dirty.take();
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
        // Earlier appends must be durable before this returns too.
        self.sync_now()?;
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
