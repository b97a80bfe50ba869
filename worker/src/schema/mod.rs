//! The node layer's tables in the GCS: key layout ([`keys`]) and versioned
//! records ([`NodeRecord`], [`ActorRecord`], ...).
//!
//! # Value format
//!
//! A value is the schema version as a little-endian `u16`, then the record
//! in bincode 1 (fixed-width integers, externally tagged enums: the format
//! of `bincode::serialize`). [`decode`] refuses a version it does not know
//! with [`SchemaError::NewerVersion`], and anything that does not decode
//! exactly (an enum variant it has never heard of, truncated or trailing
//! bytes, a length beyond [`MAX_RECORD_BYTES`]) with
//! [`SchemaError::Corrupt`]: never a panic.
//!
//! bincode is not self-describing, so *any* change to a record's layout
//! (a field, a variant) must bump [`SCHEMA_VERSION`]; a later version that
//! still reads older values does so by decoding them into the old types and
//! converting.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

mod actor;
pub mod keys;
mod node;

pub use actor::{
    ActorName, ActorNameRecord, ActorOptions, ActorRecord, AssignmentRecord, ControllerTermRecord,
    Lifetime, Owner, ReportOutcome, ReportRecord, RetryLimit, DEFAULT_NAMESPACE,
};
pub use keys::Key;
pub use node::NodeRecord;

/// The version of the record layouts this binary writes and reads.
///
/// 4: actor options carry a spread group, actor records their death time.
/// Version 3 values are still read (only actor records changed layout).
pub const SCHEMA_VERSION: u16 = 4;

/// The oldest version whose values this binary reads.
pub const OLDEST_READABLE_VERSION: u16 = 3;

/// The largest record [`decode`] accepts, so a corrupt length prefix
/// cannot make it allocate without bound.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// A value stored under one of the node layer's keys.
pub trait Record: Serialize + DeserializeOwned {
    /// What the record is, for errors: `"actor"`, `"node"`.
    const KIND: &'static str;

    /// Decodes a value written at an older `version` (at least
    /// [`OLDEST_READABLE_VERSION`]), converting it: `None` when the
    /// record's layout did not change since then (it decodes as the
    /// current one), an error text when the value does not decode.
    fn decode_older(version: u16, body: &[u8]) -> Option<Result<Self, String>> {
        let _ = (version, body);
        None
    }
}

/// Everything that can be wrong with a key, a name or a stored value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// A key that is not one of the layouts in [`keys`].
    #[error("malformed GCS key {key:?}: {problem}")]
    MalformedKey { key: String, problem: String },
    /// An actor name or namespace that cannot be a key segment.
    #[error("invalid {what} {value:?}: {problem}")]
    InvalidName {
        what: &'static str,
        value: String,
        problem: &'static str,
    },
    /// An option value outside its range, e.g. `max_restarts = -2`.
    #[error("invalid {option} {value}: expected {expected}")]
    InvalidOption {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A value written by a Troupe that knows a later schema.
    #[error(
        "{kind} record has schema version {found} but this binary reads only version \
         {supported}; it was written by a newer Troupe: run the same version on every node"
    )]
    NewerVersion {
        kind: &'static str,
        found: u16,
        supported: u16,
    },
    /// A value that does not decode as the record it should be.
    #[error("{kind} record does not decode: {detail}")]
    Corrupt { kind: &'static str, detail: String },
}

/// The bincode options of the value format: those of `bincode::serialize`,
/// plus a size limit and no trailing bytes when decoding.
fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_RECORD_BYTES)
        .reject_trailing_bytes()
}

/// The stored form of `record`.
pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    let mut bytes = SCHEMA_VERSION.to_le_bytes().to_vec();
    bincode::serialize_into(&mut bytes, record)
        .expect("records hold only types whose bincode form cannot fail");
    bytes
}

/// Decodes a stored value as `R`.
pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, SchemaError> {
    let corrupt = |detail: String| SchemaError::Corrupt {
        kind: R::KIND,
        detail,
    };
    let (Some(version), Some(body)) = (bytes.get(..2), bytes.get(2..)) else {
        return Err(corrupt(format!(
            "{} bytes is shorter than the 2-byte version header",
            bytes.len()
        )));
    };
    let version = u16::from_le_bytes([version[0], version[1]]);
    if version > SCHEMA_VERSION {
        return Err(SchemaError::NewerVersion {
            kind: R::KIND,
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < OLDEST_READABLE_VERSION {
        return Err(corrupt(format!("unknown schema version {version}")));
    }
    if version < SCHEMA_VERSION {
        if let Some(older) = R::decode_older(version, body) {
            return older.map_err(corrupt);
        }
    }
    deserialize(body).map_err(corrupt)
}

/// `body` in the value format's bincode, with the record size limit and no
/// trailing bytes.
pub fn deserialize<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    options().deserialize(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
