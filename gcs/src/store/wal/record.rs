//! Segment files and their records: `[len u32 LE][crc32 u32 LE][payload]`,
//! the payload a bincode [`Entry`], the CRC over the payload.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{GcsStoreError, Result};
use crate::store::codec::{decode, encode};
use crate::types::Entry;

pub(crate) const HEADER: usize = 8;
/// No record is larger than this; a larger length is a torn or corrupt header.
const MAX_RECORD: u32 = 1 << 30;
const SUFFIX: &str = ".wal";

pub(crate) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}{SUFFIX}")
}

/// The first index a segment file name stands for, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(segment_name(first_index))
}

/// Append the record of `entry` to `buf`; returns the record's length.
pub(crate) fn encode_record(entry: &Entry, buf: &mut Vec<u8>) -> Result<u32> {
    let payload = encode(entry)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| GcsStoreError::Corrupt(format!("entry too large: {}", payload.len())))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(HEADER as u32 + len)
}

/// Read and decode the record at `offset` (`len` bytes including the header).
pub(crate) fn read_record(file: &File, offset: u64, len: u32) -> Result<Entry> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    match check(&buf) {
        Some(payload) if payload.len() + HEADER == buf.len() => decode(payload),
        _ => Err(GcsStoreError::Corrupt(format!(
            "the record of {} bytes fails its checksum when read",
            buf.len().saturating_sub(HEADER)
        ))),
    }
}

/// The payload of a whole record in `buf` (header first), if its CRC matches.
fn check(buf: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    let payload = buf.get(HEADER..HEADER + len)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// One valid record found by [`scan`].
pub(crate) struct Scanned {
    pub entry: Entry,
    pub offset: u64,
    pub len: u32,
}

/// The valid records of a segment, in order, where the valid prefix ends,
/// and what follows it.
pub(crate) struct Scan {
    pub records: Vec<Scanned>,
    pub valid_len: u64,
    pub tail: Tail,
}

/// What follows the valid records of a segment (see the module docs of
/// `wal` for the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Nothing: the file ends after its last valid record.
    Clean,
    /// An append interrupted by a crash (never acknowledged): cut the file
    /// at the end of the valid records.
    Torn(TornShape),
    /// Damage: the sentence says what is wrong at the end of the valid
    /// records. The member must not start.
    Corrupt(String),
}

/// How a torn tail looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TornShape {
    /// The file ends inside the record (its header or its payload).
    Short,
    /// Everything from this offset (the record's start or a 512-byte
    /// boundary inside it) to the end of the file is zero: sectors that
    /// never reached the disk.
    Zeros { from: u64 },
}

/// Sector size the zero-tail rule works in: the smallest unit a disk
/// writes whole.
pub(crate) const SECTOR: usize = 512;

/// The entry a whole record at `pos` of `bytes` holds: a positive length
/// of at most [`MAX_RECORD`] within `bytes`, a matching CRC, and a payload
/// that decodes. Its length including the header comes with it.
fn valid_at(bytes: &[u8], pos: usize) -> Option<(Entry, usize)> {
    let rest = bytes.get(pos..)?;
    let len = header_len(rest)?;
    if len == 0 || len > MAX_RECORD as usize {
        return None;
    }
    let payload = rest.get(HEADER..HEADER + len)?;
    // Decoding first: it rejects most garbage within a few bytes, where a
    // CRC would read the whole length (the search after a bad record).
    let entry = decode::<Entry>(payload).ok()?;
    check(rest)?;
    Some((entry, HEADER + len))
}

fn header_len(rest: &[u8]) -> Option<usize> {
    Some(u32::from_le_bytes(rest.get(0..4)?.try_into().ok()?) as usize)
}

/// The valid records at the start of `bytes` and where they end. Pure.
pub(crate) fn valid_prefix(bytes: &[u8]) -> (Vec<Scanned>, usize) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while let Some((entry, len)) = valid_at(bytes, pos) {
        records.push(Scanned {
            entry,
            offset: pos as u64,
            len: len as u32,
        });
        pos += len;
    }
    (records, pos)
}

/// What the bytes from `at` (the end of the valid records) to the end of
/// the segment are. `last`: whether this is the last segment, the only one
/// an interrupted append can leave torn. Pure.
pub(crate) fn classify_tail(bytes: &[u8], at: usize, last: bool) -> Tail {
    let n = bytes.len();
    if at >= n {
        return Tail::Clean;
    }
    let rest = &bytes[at..];
    let Some(len) = header_len(rest).filter(|_| rest.len() >= HEADER) else {
        let what = format!(
            "the file ends inside a record header ({} of {HEADER} bytes)",
            rest.len()
        );
        return torn_unless(bytes, at, last, TornShape::Short, what);
    };
    if len > MAX_RECORD as usize {
        // A torn write leaves bytes as written or zero, which never makes a
        // length larger.
        return Tail::Corrupt(format!(
            "a record header claims {len} bytes, more than any record ({MAX_RECORD})"
        ));
    }
    let end = at + HEADER + len;
    if end > n {
        let what = format!(
            "a record of {len} bytes runs past the end of the file ({} bytes follow its header)",
            rest.len() - HEADER
        );
        return torn_unless(bytes, at, last, TornShape::Short, what);
    }
    let what = match check(rest) {
        _ if len == 0 => "a record header says 0 bytes (no entry is empty)".to_string(),
        // The CRC matches: the bytes are as written, so not torn.
        Some(_) => {
            return Tail::Corrupt(format!(
                "the record of {len} bytes matches its checksum but is not a log entry"
            ))
        }
        None => format!("the record of {len} bytes fails its checksum"),
    };
    match zero_tail_from(bytes, at, end) {
        Some(from) => torn_unless(
            bytes,
            at,
            last,
            TornShape::Zeros { from: from as u64 },
            what,
        ),
        None => Tail::Corrupt(what),
    }
}

/// Where the trailing zeros that explain a bad record at `at` (ending at
/// `end`) start: the record's start, or a sector boundary before `end`,
/// with only zeros from there to the end of the file.
fn zero_tail_from(bytes: &[u8], at: usize, end: usize) -> Option<usize> {
    let zeros = bytes.iter().rev().take_while(|b| **b == 0).count();
    let run = bytes.len() - zeros;
    let from = if run <= at {
        at
    } else {
        run.div_ceil(SECTOR) * SECTOR
    };
    (from < bytes.len() && from < end).then_some(from)
}

/// `shape` if nothing contradicts a torn append at `at`: it is in the last
/// segment, no valid record follows, and the record's bytes do not form a
/// whole record under another length (a damaged length field).
fn torn_unless(bytes: &[u8], at: usize, last: bool, shape: TornShape, what: String) -> Tail {
    if !last {
        return Tail::Corrupt(format!("{what}, and later segments exist"));
    }
    if let Some(p) = (at + 1..bytes.len()).find(|p| valid_at(bytes, *p).is_some()) {
        return Tail::Corrupt(format!("{what}, yet a valid record follows at offset {p}"));
    }
    if let Some(len) = whole_under_other_length(bytes, at) {
        return Tail::Corrupt(format!(
            "{what}, yet its checksum matches its first {len} bytes (a damaged length field)"
        ));
    }
    Tail::Torn(shape)
}

/// The payload length, other than the header's, under which the bytes at
/// `at` form a valid record, if any: the length of the entry that decodes
/// there, if the header's CRC matches it.
fn whole_under_other_length(bytes: &[u8], at: usize) -> Option<usize> {
    let rest = &bytes[at..];
    let stated = header_len(rest)?;
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    let payload = rest.get(HEADER..)?;
    let mut reader = payload;
    bincode::deserialize_from::<_, Entry>(&mut reader).ok()?;
    let len = payload.len() - reader.len();
    (len != stated && crc32fast::hash(&payload[..len]) == crc).then_some(len)
}

/// Read a segment and classify it (see [`classify_tail`]).
pub(crate) fn scan(path: &Path, last: bool) -> Result<Scan> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let (records, valid_len) = valid_prefix(&bytes);
    let tail = classify_tail(&bytes, valid_len, last);
    Ok(Scan {
        records,
        valid_len: valid_len as u64,
        tail,
    })
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
