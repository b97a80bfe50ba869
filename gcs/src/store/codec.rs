//! Key layout of the sled trees and value encoding (bincode).
//!
//! State machine tree (`sm.<generation>`), one byte of prefix per table:
//! - `k ++ key`              → [`KeyValue`](crate::KeyValue)
//! - `l ++ lease id (BE)`    → [`Lease`](crate::Lease)
//! - `s ++ client id (BE)`   → [`SessionRecord`](crate::SessionRecord)
//! - `u ++ client id (BE)`   → when that session was last used, on the
//!   session clock (u64 BE; absent for sessions stored by store format 2:
//!   used at 0)
//! - `h ++ revision (BE)`    → `Vec<`[`RevisionEvents`](crate::RevisionEvents)`>`:
//!   the revisions one apply made, from this one on (a record ends where
//!   the next begins)
//! - `m ++ name`             → revision, compaction point, last applied log
//!   id, last membership, session clock.

use std::ops::Bound;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::command::KeySelector;
use crate::error::{GcsStoreError, Result};

pub const KV: u8 = b'k';
pub const LEASE: u8 = b'l';
pub const SESSION: u8 = b's';
pub const HISTORY: u8 = b'h';
pub const SESSION_USED: u8 = b'u';

pub const META_REVISION: &[u8] = b"mrevision";
pub const META_COMPACTED: &[u8] = b"mcompacted";
pub const META_APPLIED: &[u8] = b"mapplied";
pub const META_MEMBERSHIP: &[u8] = b"mmembership";
pub const META_SESSION_CLOCK: &[u8] = b"msessionclock";

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    Ok(bincode::serialize(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(bincode::deserialize(bytes)?)
}

pub fn prefixed(table: u8, suffix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + suffix.len());
    key.push(table);
    key.extend_from_slice(suffix);
    key
}

pub fn u64_key(table: u8, n: u64) -> Vec<u8> {
    prefixed(table, &n.to_be_bytes())
}

/// The `u64` after a one-byte table prefix.
pub fn u64_of_key(key: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = key
        .get(1..)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| GcsStoreError::Corrupt(format!("bad numeric key {key:?}")))?;
    Ok(u64::from_be_bytes(bytes))
}

pub fn u64_value(bytes: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = bytes
        .try_into()
        .map_err(|_| GcsStoreError::Corrupt(format!("bad numeric value {bytes:?}")))?;
    Ok(u64::from_be_bytes(bytes))
}

/// The raw key range of a selector within the KV table.
pub fn kv_bounds(selector: &KeySelector) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let (start, end) = selector.bounds();
    let map = |b: Bound<Vec<u8>>| match b {
        Bound::Included(k) => Bound::Included(prefixed(KV, &k)),
        Bound::Excluded(k) => Bound::Excluded(prefixed(KV, &k)),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match map(end) {
        // The end of the whole KV table.
        Bound::Unbounded => Bound::Excluded(vec![KV + 1]),
        bound => bound,
    };
    (map(start), end)
}

/// Every key of one table.
pub fn table_bounds(table: u8) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    (
        Bound::Included(vec![table]),
        Bound::Excluded(vec![table + 1]),
    )
}
