use std::path::{Path, PathBuf};

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, RaftLogReader};

use super::record::{parse_segment_name, segment_path};
use super::*;
use crate::store::LogStore;

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Blank,
    }
}

fn indexes(wal: &Wal) -> Vec<u64> {
    wal.entries(..)
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

fn segments(dir: &Path) -> Vec<u64> {
    let mut firsts: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| parse_segment_name(e.unwrap().file_name().to_str()?))
        .collect();
    firsts.sort_unstable();
    firsts
}

/// A log of entries `1..=n` in segments of about 200 bytes.
fn filled(dir: &Path, n: u64) -> Wal {
    let wal = Wal::open(dir, 200).unwrap();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(3) {
        wal.write(chunk.iter().map(|i| blank(*i))).unwrap();
    }
    wal
}

#[test]
fn rolls_over_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 60);
    let segs = segments(dir.path());
    assert!(segs.len() > 3, "tiny segments roll over: {segs:?}");
    assert_eq!(segs[0], 1);
    assert_eq!(indexes(&wal), (1..=60).collect::<Vec<_>>());
    assert_eq!(wal.entries(10..13).unwrap()[2].log_id, log_id(12));
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=60).collect::<Vec<_>>());
    assert_eq!(wal.last_log_id(), Some(log_id(60)));
    wal.write([blank(61)]).unwrap();
    assert_eq!(wal.last_log_id(), Some(log_id(61)));
}

#[test]
fn torn_tail_of_last_segment_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 20);
    drop(wal);
    let last = *segments(dir.path()).last().unwrap();
    let path = segment_path(dir.path(), last);
    let len = std::fs::metadata(&path).unwrap().len();
    // Half a record: a header promising more bytes than follow.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    std::fs::write(&path, bytes).unwrap();

    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=20).collect::<Vec<_>>());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "tail cut");
    wal.write([blank(21)]).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=21).collect::<Vec<_>>());
}

#[test]
fn corrupt_record_in_an_earlier_segment_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled(dir.path(), 30));
    let first = segment_path(dir.path(), segments(dir.path())[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    let msg = corrupt(dir.path(), 200);
    assert!(msg.contains(&first.display().to_string()), "{msg}");
    assert!(msg.contains("later segments exist"), "{msg}");
}

#[test]
fn truncate_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 60);
    wal.truncate(10).unwrap();
    assert_eq!(indexes(&wal), (1..=9).collect::<Vec<_>>());
    assert!(segments(dir.path()).iter().all(|f| *f <= 9));
    // Appending again after the cut, then rolling over.
    wal.write((10..=40).map(blank)).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=40).collect::<Vec<_>>());
    // Truncating at a segment's first index removes that whole segment.
    let seg = segments(dir.path())[2];
    wal.truncate(seg).unwrap();
    assert_eq!(
        *segments(dir.path()).last().unwrap(),
        segments(dir.path())[1]
    );
    assert_eq!(wal.last_log_id(), Some(log_id(seg - 1)));
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..seg).collect::<Vec<_>>());
    // Truncating everything.
    wal.truncate(0).unwrap();
    assert_eq!(indexes(&wal), Vec::<u64>::new());
    assert_eq!(wal.last_log_id(), None);
}

#[test]
fn purge_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 60);
    wal.purge(log_id(30)).unwrap();
    assert_eq!(indexes(&wal), (31..=60).collect::<Vec<_>>());
    let segs = segments(dir.path());
    assert!(
        segs[0] <= 31 && segs.get(1).is_none_or(|s| *s > 31),
        "{segs:?}"
    );
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(wal.purged(), Some(log_id(30)));
    assert_eq!(indexes(&wal), (31..=60).collect::<Vec<_>>());
    // Purging past the end of the log empties it; appends continue after.
    wal.purge(log_id(70)).unwrap();
    assert!(segments(dir.path()).is_empty());
    assert_eq!(wal.last_log_id(), Some(log_id(70)));
    wal.write([blank(71), blank(72)]).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(wal.purged(), Some(log_id(70)));
    assert_eq!(indexes(&wal), vec![71, 72]);
}

#[test]
fn markers_survive_reopen_and_committed_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 5);
    wal.save_vote(&Vote::new(4, 2)).unwrap();
    wal.save_committed(Some(log_id(4))).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(wal.vote(), Some(Vote::new(4, 2)));
    assert_eq!(wal.committed().unwrap(), Some(log_id(4)));
    // A committed id beyond the log (its entries lost) is not reported.
    wal.save_committed(Some(log_id(9))).unwrap();
    assert_eq!(wal.committed().unwrap(), None);
}

#[tokio::test]
async fn appends_are_acknowledged_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), 300).unwrap();
        for i in 1..=20 {
            log.blocking_append([blank(i)]).await.unwrap();
        }
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(20)));
    }
    let mut log = LogStore::open(dir.path(), 300).unwrap();
    let got = log.try_get_log_entries(5..=7).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
}

#[test]
fn bytes_after_counts_the_records_behind_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 10);
    let all = wal.bytes_after(None);
    let one = wal.bytes_after(Some(9));
    assert!(one > 0);
    assert_eq!(all, one * 10, "blank records are the same size");
    assert_eq!(wal.bytes_after(Some(10)), 0);
    assert_eq!(wal.bytes_after(Some(4)), one * 6);
    wal.purge(log_id(4)).unwrap();
    assert_eq!(
        wal.bytes_after(None),
        one * 6,
        "purged entries do not count"
    );
    assert_eq!(wal.bytes_after(Some(2)), one * 6);
}

// ---------------------------------------------------------------------------
// Torn tails and corruption (see the module docs' recovery rule).

use super::record::{classify_tail, valid_prefix, Tail, TornShape, HEADER, SECTOR};
use crate::command::{Command, Operation, Proposal};
use crate::model::LeaseId;

/// The corruption message opening `dir` fails with.
fn corrupt(dir: &Path, segment_bytes: u64) -> String {
    match Wal::open(dir, segment_bytes) {
        Err(GcsStoreError::Corrupt(msg)) => msg,
        Err(e) => panic!("unexpected error {e}"),
        Ok(wal) => panic!("opened, holding {:?}", indexes(&wal)),
    }
}

/// An entry of a size that varies with `index`, whose record ends in
/// non-zero bytes (a lease id of non-zero bytes), so no record looks like a
/// zeroed tail by itself.
fn varied(index: u64) -> Entry {
    let value = vec![7u8; (index as usize * 13) % 50];
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Proposal {
            commands: vec![
                Command::new(Operation::put(format!("k{index}"), value)),
                Command::new(Operation::LeaseRevoke {
                    id: LeaseId(0xa5a5_a5a5_a5a5_a5a5 ^ (index << 8)),
                }),
            ],
        }),
    }
}

/// Record boundaries `(start, end)` of a segment's bytes, parsed from the
/// length fields alone.
fn layout(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, pos + HEADER + len));
        pos += HEADER + len;
    }
    assert_eq!(pos, bytes.len(), "a pristine segment is whole records");
    out
}

const SEG: u64 = 1200;

/// A pristine log on disk: segments (path, bytes, first index), oldest first.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    segments: Vec<(PathBuf, Vec<u8>, u64)>,
    entries: u64,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let wal = Wal::open(&dir, SEG).unwrap();
        // Batches of 4 until there are 3 segments, the last spanning a few
        // sectors.
        let mut entries = 0;
        while segments(&dir).len() < 3 || wal.lock().segments.values().last().unwrap().len < 1100 {
            wal.write((entries + 1..=entries + 4).map(varied)).unwrap();
            entries += 4;
        }
        drop(wal);
        let segments: Vec<_> = segments(&dir)
            .into_iter()
            .map(|first| {
                let path = segment_path(&dir, first);
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes, first)
            })
            .collect();
        assert!(segments.len() >= 3, "a multi-segment log");
        let last = &segments.last().unwrap().1;
        assert!(last.len() > 2 * SECTOR, "the last segment spans sectors");
        Fixture {
            _tmp: tmp,
            dir,
            segments,
            entries,
        }
    }

    /// Put every segment back as it was (recovery may cut or remove one).
    fn restore(&self) {
        for (path, bytes, _) in &self.segments {
            std::fs::write(path, bytes).unwrap();
        }
    }

    /// Open with segment `s` replaced by `bytes`; restores afterwards.
    fn open_with(&self, s: usize, bytes: &[u8]) -> Result<(Vec<u64>, Option<u64>)> {
        std::fs::write(&self.segments[s].0, bytes).unwrap();
        let got = Wal::open(&self.dir, SEG).map(|wal| {
            let len = std::fs::metadata(&self.segments[s].0).ok().map(|m| m.len());
            (indexes(&wal), len)
        });
        self.restore();
        got
    }

    /// Entries before segment `s`, then those of records of `s` that end at
    /// or before `cut`.
    fn expected_after_cut(&self, s: usize, cut: usize) -> (Vec<u64>, Option<u64>) {
        let (_, bytes, first) = &self.segments[s];
        let kept: Vec<_> = layout(bytes).into_iter().filter(|r| r.1 <= cut).collect();
        let len = kept.last().map(|r| r.1 as u64);
        ((1..*first + kept.len() as u64).collect(), len)
    }

    /// Assert that segment `s` replaced by `bytes` is corruption at the
    /// record holding `first_changed`, even were it the last segment; and,
    /// if `open`, that opening the log fails naming the file and offset.
    fn assert_corrupt(&self, s: usize, bytes: &[u8], first_changed: usize, open: bool, case: &str) {
        let (path, pristine, _) = &self.segments[s];
        let record = layout(pristine)
            .into_iter()
            .find(|r| r.0 <= first_changed && first_changed < r.1)
            .unwrap()
            .0;
        let (_, valid) = valid_prefix(bytes);
        assert_eq!(
            valid, record,
            "{case}: the valid records end at the damaged one"
        );
        assert!(
            matches!(classify_tail(bytes, valid, true), Tail::Corrupt(_)),
            "{case}: {:?}",
            classify_tail(bytes, valid, true)
        );
        if !open {
            return;
        }
        match self.open_with(s, bytes) {
            Err(GcsStoreError::Corrupt(msg)) => {
                let want = format!("{} is damaged at offset {record}:", path.display());
                assert!(msg.contains(&want), "{case}: want {want:?} in {msg}");
                assert!(msg.contains("troupe gcs remove --id"), "{case}: {msg}");
            }
            Err(e) => panic!("{case}: unexpected error {e}"),
            Ok((got, _)) => panic!("{case}: opened, holding {got:?}"),
        }
    }

    /// Assert that the last segment replaced by `bytes` is a torn tail cut
    /// at the last record ending by `cut`; and, if `open`, that opening the
    /// log keeps exactly the entries before it and cuts the file there.
    fn assert_cut(&self, bytes: &[u8], cut: usize, open: bool, case: &str) {
        let s = self.segments.len() - 1;
        let (want, len) = self.expected_after_cut(s, cut);
        let (_, valid) = valid_prefix(bytes);
        assert_eq!(valid as u64, len.unwrap_or(0), "{case}");
        let tail = classify_tail(bytes, valid, true);
        assert!(
            matches!(tail, Tail::Torn(_)) || (tail == Tail::Clean && valid == bytes.len()),
            "{case}: {tail:?}"
        );
        if open {
            let got = self
                .open_with(s, bytes)
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(got, (want, len), "{case}");
        }
    }
}

/// Which cases also go through a real open of the log (each costs a few
/// fsyncs); the classification runs for all.
fn sampled(at: usize) -> bool {
    at.is_multiple_of(17)
}

/// A byte changed by xoring `mask`, never to zero (a zero could extend a
/// zeroed tail, which is a torn shape).
fn flipped(byte: u8, mask: u8) -> u8 {
    match byte ^ mask {
        0 => byte ^ 0x0f,
        b => b,
    }
}

#[test]
fn a_byte_flipped_anywhere_is_corruption_naming_the_file_and_record() {
    let fx = Fixture::new();
    let mut cases = 0;
    for (s, (_, bytes, _)) in fx.segments.iter().enumerate() {
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = flipped(damaged[at], mask);
                let case = format!("segment {s}, byte {at} ^ {mask:#x}");
                fx.assert_corrupt(s, &damaged, at, mask == 0x01 && sampled(at), &case);
                cases += 1;
            }
        }
    }
    assert!(
        cases > 3 * 3000,
        "every byte of a multi-segment log: {cases}"
    );
    // The pristine log still opens whole.
    assert_eq!(
        fx.open_with(0, &fx.segments[0].1).unwrap().0,
        (1..=fx.entries).collect::<Vec<_>>()
    );
}

#[test]
fn two_flipped_bytes_are_corruption_at_the_first() {
    let fx = Fixture::new();
    let mut cases = 0;
    for (s, (_, bytes, _)) in fx.segments.iter().enumerate() {
        let last_header = layout(bytes).last().unwrap().0;
        for first in (0..bytes.len()).step_by(5) {
            for gap in [1, 3, 8, 61, 400, 700] {
                let second = first + gap;
                // Both in the header of the segment's last record: its length
                // and CRC damaged together read as a short record, which a
                // torn write leaves too (the documented limit).
                if second >= bytes.len() || first >= last_header {
                    continue;
                }
                let mut damaged = bytes.clone();
                damaged[first] = flipped(damaged[first], 0x10);
                damaged[second] = flipped(damaged[second], 0x41);
                let case = format!("segment {s}, bytes {first} and {second}");
                fx.assert_corrupt(s, &damaged, first, gap == 61 && sampled(first), &case);
                cases += 1;
            }
        }
    }
    assert!(cases > 2000, "{cases}");
    // Across segments: the earlier segment is named.
    let mut older = fx.segments[0].1.clone();
    older[100] ^= 0x22;
    std::fs::write(&fx.segments[0].0, &older).unwrap();
    let mut last = fx.segments.last().unwrap().1.clone();
    last[64] ^= 0x22;
    let s = fx.segments.len() - 1;
    std::fs::write(&fx.segments[s].0, &last).unwrap();
    let msg = corrupt(&fx.dir, SEG);
    assert!(
        msg.contains(&fx.segments[0].0.display().to_string()),
        "{msg}"
    );
}

#[test]
fn the_last_segment_cut_short_anywhere_is_cut_at_its_last_whole_record() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let bytes = &fx.segments[s].1;
    for len in 0..=bytes.len() {
        let case = format!("cut at {len}");
        fx.assert_cut(
            &bytes[..len],
            len,
            sampled(len) || len == bytes.len(),
            &case,
        );
    }
    // Recovery leaves a log that appends and reopens.
    std::fs::write(&fx.segments[s].0, &bytes[..bytes.len() - 3]).unwrap();
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert_eq!(wal.last_log_id(), Some(log_id(fx.entries - 1)));
    wal.write([varied(fx.entries)]).unwrap();
    drop(wal);
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert_eq!(indexes(&wal), (1..=fx.entries).collect::<Vec<_>>());
}

#[test]
fn an_older_segment_cut_short_is_corruption() {
    let fx = Fixture::new();
    let mut opened = 0;
    for s in 0..fx.segments.len() - 1 {
        let (path, bytes, _) = &fx.segments[s];
        let ends: Vec<usize> = layout(bytes).iter().map(|r| r.1).collect();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let (_, valid) = valid_prefix(cut);
            let boundary = len == 0 || ends.contains(&len);
            let tail = classify_tail(cut, valid, false);
            if boundary {
                assert_eq!(tail, Tail::Clean, "segment {s} cut at {len}");
            } else {
                assert!(
                    matches!(tail, Tail::Corrupt(_)),
                    "segment {s} cut at {len}: {tail:?}"
                );
            }
            if !(boundary || sampled(len)) {
                continue;
            }
            // At a record boundary the missing entries show as a gap at the
            // start of the next segment (or as an empty segment).
            let (named, at) = if boundary && len > 0 {
                (&fx.segments[s + 1].0, 0)
            } else {
                (path, valid)
            };
            let want = format!("{} is damaged at offset {at}:", named.display());
            match fx.open_with(s, cut) {
                Err(GcsStoreError::Corrupt(msg)) => {
                    assert!(msg.contains(&want), "segment {s} cut at {len}: {msg}");
                    opened += 1;
                }
                Err(e) => panic!("segment {s} cut at {len}: unexpected error {e}"),
                Ok((got, _)) => panic!("segment {s} cut at {len}: opened, holding {got:?}"),
            }
        }
    }
    assert!(opened > 50, "{opened}");
}

#[test]
fn a_zeroed_tail_of_the_last_segment_is_cut_at_its_last_whole_record() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let bytes = &fx.segments[s].1;
    // From every sector boundary and every record start.
    let mut starts: Vec<usize> = (0..bytes.len()).step_by(SECTOR).collect();
    starts.extend(layout(bytes).iter().map(|r| r.0));
    assert!(starts.len() > 10, "{starts:?}");
    for from in starts {
        for end in [bytes.len(), from + (bytes.len() - from) / 2 + 1] {
            let mut damaged = bytes[..end].to_vec();
            damaged[from..].fill(0);
            let case = format!("zeros from {from} to {end}");
            fx.assert_cut(&damaged, from, true, &case);
        }
    }
}

#[test]
fn zeros_that_do_not_look_like_unwritten_sectors_are_corruption() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let bytes = &fx.segments[s].1;
    let records = layout(bytes);
    // A zeroed sector with written data after it (a lost write, or sectors
    // persisted out of order): corruption.
    let mut hole = bytes.clone();
    hole[SECTOR..2 * SECTOR].fill(0);
    let changed = (SECTOR..).find(|i| bytes[*i] != 0).unwrap();
    fx.assert_corrupt(
        s,
        &hole,
        changed,
        true,
        "a zeroed sector with data after it",
    );
    // The end of the last record zeroed, but not from a sector boundary or
    // the record's start: a bad record not explained by unwritten sectors.
    let (start, end) = *records.last().unwrap();
    assert!(
        start.div_ceil(SECTOR) * SECTOR >= end || start.is_multiple_of(SECTOR),
        "the fixture's last record crosses no sector boundary: {start}..{end}"
    );
    let mut tail = bytes.clone();
    tail[end - 3..].fill(0);
    fx.assert_corrupt(
        s,
        &tail,
        end - 3,
        true,
        "the last record's last bytes zeroed",
    );
    // An older segment's zeroed tail: corruption too.
    let mut older = fx.segments[0].1.clone();
    let from = layout(&older).last().unwrap().0;
    older[from..].fill(0);
    let case = "an older segment's zeroed tail";
    let msg = match fx.open_with(0, &older) {
        Err(GcsStoreError::Corrupt(msg)) => msg,
        other => panic!("{case}: {:?}", other.map(|r| r.0)),
    };
    assert!(msg.contains("later segments exist"), "{case}: {msg}");
}

#[test]
fn rolling_over_syncs_the_full_segment_first() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), SEG).unwrap();
    let mut rolled = 0;
    for i in 1..=60 {
        let before = segments(dir.path()).len();
        wal.write([varied(i)]).unwrap();
        let dirty = wal.lock_dirty();
        let inner = wal.lock();
        let active = &inner.segments.values().next_back().unwrap().file;
        // Only the active segment can be waiting for its sync.
        assert!(
            dirty.files.iter().all(|f| Arc::ptr_eq(f, active)),
            "entry {i}: an older segment is unsynced"
        );
        rolled += usize::from(segments(dir.path()).len() > before && before > 0);
    }
    assert!(rolled >= 2, "{rolled}");
}

#[test]
fn an_empty_last_segment_is_removed_and_appends_continue() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let first = fx.segments[s].2;
    // A segment created just before a crash, its data never written.
    let got = fx.open_with(s, &[0; 300]).unwrap();
    assert_eq!(got, ((1..first).collect(), None));
    std::fs::write(&fx.segments[s].0, []).unwrap();
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert!(!fx.segments[s].0.exists(), "the empty segment is removed");
    wal.write([varied(first)]).unwrap();
    drop(wal);
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert_eq!(indexes(&wal), (1..=first).collect::<Vec<_>>());
}

// The classification itself, on hand-made segments.

fn record_bytes(entries: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in entries {
        super::record::encode_record(&varied(i), &mut buf).unwrap();
    }
    buf
}

fn tail_of(bytes: &[u8], last: bool) -> Tail {
    let (_, at) = valid_prefix(bytes);
    classify_tail(bytes, at, last)
}

fn assert_corrupt_tail(tail: Tail, says: &str) {
    match tail {
        Tail::Corrupt(what) => assert!(what.contains(says), "{what:?} lacks {says:?}"),
        other => panic!("{other:?}, want corruption saying {says:?}"),
    }
}

#[test]
fn classify_torn_shapes() {
    let whole = record_bytes(1..=3);
    let last_start = layout(&whole)[2].0;
    assert_eq!(tail_of(&whole, true), Tail::Clean);
    assert_eq!(
        tail_of(&whole[..last_start + 5], true),
        Tail::Torn(TornShape::Short)
    );
    assert_eq!(
        tail_of(&whole[..whole.len() - 1], true),
        Tail::Torn(TornShape::Short)
    );
    let mut zeros = whole.clone();
    zeros[last_start..].fill(0);
    assert_eq!(
        tail_of(&zeros, true),
        Tail::Torn(TornShape::Zeros {
            from: last_start as u64
        })
    );
    // Zeros from a sector boundary inside the record (padding the segment
    // so the boundary falls there).
    let mut padded = record_bytes(1..=12);
    let (start, end) = *layout(&padded)
        .iter()
        .find(|(s, e)| s / SECTOR != (e - 1) / SECTOR)
        .unwrap();
    let boundary = end / SECTOR * SECTOR;
    padded.truncate(end);
    padded[boundary..].fill(0);
    assert!(boundary > start);
    assert_eq!(
        tail_of(&padded, true),
        Tail::Torn(TornShape::Zeros {
            from: boundary as u64
        })
    );
    // Zero bytes past the end of the file's records, added by a crash that
    // extended the file: also torn (nothing but zeros from the record start).
    let mut extended = whole.clone();
    extended.extend_from_slice(&[0; 700]);
    assert_eq!(
        tail_of(&extended, true),
        Tail::Torn(TornShape::Zeros {
            from: whole.len() as u64
        })
    );
}

#[test]
fn classify_corrupt_shapes() {
    let whole = record_bytes(1..=3);
    let [_, (second, _), (third, _)] = layout(&whole)[..] else {
        panic!()
    };
    // Any of these in an older segment.
    assert_corrupt_tail(tail_of(&whole[..third + 3], false), "later segments exist");
    // A checksum failure with nothing zero.
    let mut crc = whole.clone();
    crc[third + 5] ^= 1;
    assert_corrupt_tail(tail_of(&crc, true), "fails its checksum");
    // A length field in the middle made to run past the end: valid
    // records follow.
    let mut middle = whole.clone();
    middle[second + 2] ^= 1;
    assert_corrupt_tail(
        tail_of(&middle, true),
        &format!("a valid record follows at offset {third}"),
    );
    // A length field made larger looks short, but the checksum matches the
    // real length.
    let mut length = whole.clone();
    length[third + 1] ^= 1;
    assert_corrupt_tail(tail_of(&length, true), "damaged length field");
    // A length no record has.
    let mut huge = whole.clone();
    huge[third + 3] = 0x7f;
    assert_corrupt_tail(tail_of(&huge, true), "more than any record");
    // A record whose checksum matches but is not an entry.
    let mut junk = whole[..third].to_vec();
    junk.extend_from_slice(&3u32.to_le_bytes());
    junk.extend_from_slice(&crc32fast::hash(&[9, 9, 9]).to_le_bytes());
    junk.extend_from_slice(&[9, 9, 9]);
    assert_corrupt_tail(tail_of(&junk, true), "not a log entry");
    // Zeros from a sector boundary after the bad record's stated end.
    let mut late = record_bytes(1..=12);
    let (start, end) = *layout(&late)
        .iter()
        .find(|(s, e)| e / SECTOR > s / SECTOR && e % SECTOR > 8)
        .unwrap();
    late[start + 9] ^= 1;
    let boundary = end.div_ceil(SECTOR) * SECTOR;
    late.resize(boundary + 100, 0);
    late[end..].fill(0);
    late[end..boundary].fill(1);
    assert_corrupt_tail(tail_of(&late, true), "fails its checksum");
}

#[test]
fn indistinguishable_from_a_torn_write_is_cut() {
    // The documented limit: a damaged last record whose own bytes end in
    // zeros across a sector boundary looks like a torn write of it.
    let mut buf = record_bytes(1..=2);
    let filler = Entry {
        log_id: log_id(3),
        payload: EntryPayload::Normal(Proposal {
            commands: vec![Command::new(Operation::put("z", vec![0u8; 600]))],
        }),
    };
    let start = buf.len();
    super::record::encode_record(&filler, &mut buf).unwrap();
    buf[start + 5] ^= 1;
    assert!(matches!(
        tail_of(&buf, true),
        Tail::Torn(TornShape::Zeros { .. })
    ));
    // So does a last record whose length was made larger and whose CRC is
    // damaged too: it reads as a short record.
    let mut buf = record_bytes(1..=3);
    let last = layout(&buf)[2].0;
    buf[last + 2] ^= 1;
    buf[last + 5] ^= 1;
    assert_eq!(tail_of(&buf, true), Tail::Torn(TornShape::Short));
}

#[test]
fn the_corruption_message_says_where_what_and_what_to_do() {
    let GcsStoreError::Corrupt(msg) = corruption(
        Path::new("/data/log/00000000000000000001.wal"),
        64,
        "the record of 37 bytes fails its checksum",
    ) else {
        panic!()
    };
    for says in [
        "log segment /data/log/00000000000000000001.wal is damaged at offset 64",
        "fails its checksum",
        "must not start",
        "troupe gcs remove --id <ID>",
        "troupe gcs serve --id <NEW_ID> --data-dir <EMPTY_DIR>",
        "troupe gcs add --id <NEW_ID>",
        "troupe start --join <NODE_ADDR> --gcs --data-dir <EMPTY_DIR>",
        "catches up from the others",
        "If this is the only member, restore from a backup instead",
    ] {
        assert!(msg.contains(says), "{says:?} missing from:\n{msg}");
    }
    assert!(msg.lines().count() <= 10, "one screen:\n{msg}");
}

// Random logs, random damage.

use proptest::prelude::*;

/// Like [`varied`], with a value of `size` non-zero bytes (records from a
/// few bytes to several sectors).
fn sized(index: u64, size: usize) -> Entry {
    let mut entry = varied(index);
    if let EntryPayload::Normal(p) = &mut entry.payload {
        p.commands[0] = Command::new(Operation::put(format!("k{index}"), vec![7u8; size]));
    }
    entry
}

#[derive(Debug, Clone)]
enum Damage {
    /// Xor a byte with a mask, never making it zero: the byte at
    /// (seed % len), or in the header of record (seed % records).
    Flip { seed: usize, mask: u8, header: bool },
    /// Cut the file at (seed % (len + 1)).
    Cut { seed: usize },
    /// Zero from a sector boundary or a record start (picked by seed) to
    /// the end, then maybe cut the file shorter.
    Zeros {
        seed: usize,
        at_record: bool,
        shorten: bool,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8.., any::<bool>()).prop_map(|(seed, mask, header)| Damage::Flip {
            seed,
            mask,
            header
        }),
        any::<usize>().prop_map(|seed| Damage::Cut { seed }),
        (any::<usize>(), any::<bool>(), any::<bool>()).prop_map(|(seed, at_record, shorten)| {
            Damage::Zeros {
                seed,
                at_record,
                shorten,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn damage_is_corruption_and_only_torn_shapes_are_cut(
        sizes in proptest::collection::vec(0usize..1500, 1..12),
        damage in damage(),
    ) {
        let mut bytes = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            super::record::encode_record(&sized(i as u64 + 1, *size), &mut bytes).unwrap();
        }
        let records = layout(&bytes);
        let n = bytes.len();
        let end_by = |cut: usize| records.iter().map(|r| r.1).filter(|e| *e <= cut).max().unwrap_or(0);
        match damage {
            Damage::Flip { seed, mask, header } => {
                let at = if header {
                    records[seed % records.len()].0 + seed / 7 % HEADER
                } else {
                    seed % n
                };
                bytes[at] = flipped(bytes[at], mask);
                let start = records.iter().find(|r| r.0 <= at && at < r.1).unwrap().0;
                let (_, valid) = valid_prefix(&bytes);
                prop_assert_eq!(valid, start);
                let tail = classify_tail(&bytes, valid, true);
                prop_assert!(matches!(tail, Tail::Corrupt(_)), "{:?}", tail);
            }
            Damage::Cut { seed } => {
                let len = seed % (n + 1);
                let cut = &bytes[..len];
                let (_, valid) = valid_prefix(cut);
                prop_assert_eq!(valid, end_by(len));
                let tail = classify_tail(cut, valid, true);
                let want_clean = valid == len;
                prop_assert!(
                    if want_clean { tail == Tail::Clean } else { tail == Tail::Torn(TornShape::Short) },
                    "{:?}", tail
                );
            }
            Damage::Zeros { seed, at_record, shorten } => {
                let from = if at_record {
                    records[seed % records.len()].0
                } else {
                    (seed % n.div_ceil(SECTOR)) * SECTOR
                };
                let end = if shorten { from + 1 + seed % (n - from) } else { n };
                let mut damaged = bytes[..end].to_vec();
                damaged[from..].fill(0);
                let (_, valid) = valid_prefix(&damaged);
                prop_assert_eq!(valid, end_by(from));
                let tail = classify_tail(&damaged, valid, true);
                prop_assert!(matches!(tail, Tail::Torn(_)), "{:?}", tail);
                // The same in an older segment is corruption.
                let older = classify_tail(&damaged, valid, false);
                prop_assert!(matches!(older, Tail::Corrupt(_)), "{:?}", older);
            }
        }
    }
}

#[test]
fn a_record_damaged_after_the_open_fails_its_read_naming_file_and_offset() {
    let fx = Fixture::new();
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    let (path, bytes, first) = &fx.segments[1];
    let (start, end) = layout(bytes)[2];
    let mut damaged = bytes.clone();
    damaged[end - 1] ^= 0x10;
    std::fs::write(path, &damaged).unwrap();
    let index = first + 2;
    match wal.entries(index..=index) {
        Err(GcsStoreError::Corrupt(msg)) => {
            let want = format!("{} is damaged at offset {start}:", path.display());
            assert!(msg.contains(&want), "{msg}");
            assert!(msg.contains("fails its checksum when read"), "{msg}");
        }
        other => panic!("{:?}", other.map(|e| e.len())),
    }
    assert_eq!(wal.entries(..index).unwrap().len() as u64, index - 1);
}
