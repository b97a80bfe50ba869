//! The data the KV stores: key-values, leases, watch events and client
//! sessions. All types are plain serde structs and externally tagged enums,
//! so they round-trip through bincode.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::response::Response;

/// The identifier of a lease, chosen by whoever grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeaseId(pub u64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease-{}", self.0)
    }
}

/// One key with its value and its etcd-style metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    // As bytes: the same bincode form as a sequence of u8, copied at once
    // instead of byte by byte (values reach megabytes).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The revision of the put that created the key (since its last delete).
    pub create_revision: u64,
    /// The revision of the last put to the key.
    pub mod_revision: u64,
    /// Number of puts since the key was created; 1 after the first put.
    pub version: u64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A replicated lease: its time to live and the keys attached to it.
///
/// Deadlines are not replicated: they live in the leader's
/// [`LeaseTracker`](crate::LeaseTracker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl_ms: u64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
///
/// For a delete, `kv` holds the key, an empty value, `mod_revision` set to the
/// deleting revision and zero `create_revision`/`version`, like etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// All events of one revision, in the order the command produced them.
///
/// Every revision has exactly one `RevisionEvents` with at least one event:
/// the revision only moves when the keyspace changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionEvents {
    pub revision: u64,
    pub events: Vec<Event>,
}

impl RevisionEvents {
    /// The same revision restricted to keys selected by `selector`, or `None`
    /// when no event of this revision matches.
    pub fn filtered(&self, selector: &crate::KeySelector) -> Option<RevisionEvents> {
        let events: Vec<Event> = self
            .events
            .iter()
            .filter(|e| selector.matches(&e.kv.key))
            .cloned()
            .collect();
        (!events.is_empty()).then_some(RevisionEvents {
            revision: self.revision,
            events,
        })
    }
}

/// The last write of one client, kept for exactly-once retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub seq: u64,
    pub response: Response,
}
