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
            "log record at offset {offset} fails its checksum"
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

/// The valid records of a segment, in order, and where the valid prefix
/// ends. `clean` is false if bytes after that point do not form a record (a
/// torn or corrupt tail).
pub(crate) struct Scan {
    pub records: Vec<Scanned>,
    pub valid_len: u64,
    pub clean: bool,
}

pub(crate) fn scan(path: &Path) -> Result<Scan> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let payload = match check(rest) {
            Some(p) => p,
            None => break,
        };
        let entry = match decode::<Entry>(payload) {
            Ok(e) => e,
            Err(_) => break,
        };
        let len = (HEADER + payload.len()) as u32;
        records.push(Scanned {
            entry,
            offset: pos as u64,
            len,
        });
        pos += len as usize;
    }
    Ok(Scan {
        records,
        valid_len: pos as u64,
        clean: pos == bytes.len(),
    })
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
