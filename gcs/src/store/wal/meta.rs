//! The log's small marker files: the vote and the last purged log id are
//! replaced atomically and durably (temp file, fsync, rename, fsync dir);
//! the committed log id is overwritten in place without a sync (openraft
//! allows losing it), with a CRC so a torn write reads as absent.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::record::sync_dir;
use crate::error::{GcsStoreError, Result};
use crate::store::codec::{decode, encode};

pub(crate) const VOTE: &str = "vote";
pub(crate) const PURGED: &str = "purged";
pub(crate) const COMMITTED: &str = "committed";

fn frame<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let payload = encode(value)?;
    let mut buf = Vec::with_capacity(payload.len() + 8);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(buf)
}

fn unframe<T: DeserializeOwned>(bytes: &[u8]) -> Option<Result<T>> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(8..8 + len)?;
    (crc32fast::hash(payload) == crc).then(|| decode(payload))
}

/// Replace `dir/name` with `value`, durably.
pub(crate) fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&frame(value)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)?;
    Ok(())
}

/// Read a file written by [`write_atomic`]; a bad file is corruption.
pub(crate) fn read_atomic<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>> {
    let bytes = match std::fs::read(dir.join(name)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match unframe(&bytes) {
        Some(value) => value.map(Some),
        None => Err(GcsStoreError::Corrupt(format!(
            "bad log marker file {name}"
        ))),
    }
}

/// The committed marker: one file overwritten in place, never synced.
pub(crate) struct CommittedFile {
    file: File,
}

impl CommittedFile {
    pub(crate) fn open(dir: &Path) -> Result<(Self, PathBuf)> {
        let path = dir.join(COMMITTED);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        Ok((CommittedFile { file }, path))
    }

    pub(crate) fn write<T: Serialize>(&self, value: &T) -> Result<()> {
        self.file.write_all_at(&frame(value)?, 0)?;
        Ok(())
    }

    /// The last value written, or `None` if absent or torn.
    pub(crate) fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
        let bytes = std::fs::read(path)?;
        unframe(&bytes).transpose().or(Ok(None))
    }
}
