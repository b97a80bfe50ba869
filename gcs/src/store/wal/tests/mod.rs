//! The WAL's unit tests, by topic, with the helpers and the multi-segment
//! [`Fixture`] they share:
//!
//! - `segments` — writing, rolling over, reopening, truncate, purge, markers.
//! - `damage` — torn tails and corruption on a real log.
//! - `classify` — the tail classification on hand-made segments.
//! - `random` — random logs with random damage (proptest).

mod classify;
mod damage;
mod random;
mod segments;

use std::path::{Path, PathBuf};

use openraft::{CommittedLeaderId, EntryPayload};

use super::record::{self, parse_segment_name, segment_path};
use super::record::{classify_tail, valid_prefix, Tail, TornShape, HEADER, SECTOR};
use super::*;
use crate::command::{Command, Operation, Proposal};
use crate::model::LeaseId;
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

/// A byte changed by xoring `mask`, never to zero (a zero could extend a
/// zeroed tail, which is a torn shape).
fn flipped(byte: u8, mask: u8) -> u8 {
    match byte ^ mask {
        0 => byte ^ 0x0f,
        b => b,
    }
}
