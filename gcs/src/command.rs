//! The replicated command (the Raft log's application payload) and the
//! request types it is built from.

use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::model::LeaseId;

/// One entry of the replicated log's application payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Set by clients that want exactly-once semantics under retries.
    pub session: Option<ClientSession>,
    pub op: Operation,
}

impl Command {
    /// A command without a client session (at-least-once under retries).
    pub fn new(op: Operation) -> Self {
        Command { session: None, op }
    }

    /// A command deduplicated on `(client_id, seq)`.
    pub fn with_session(client_id: u64, seq: u64, op: Operation) -> Self {
        Command {
            session: Some(ClientSession { client_id, seq }),
            op,
        }
    }
}

/// One Raft log entry's application payload: the writes the leader batched
/// into it (see `member::proposer`). They are applied in order, each exactly
/// as if it had its own entry: its own revision, its own session check, its
/// own [`Response`](crate::Response). Batching costs the log one entry and one
/// sync for many concurrent writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub commands: Vec<Command>,
}

impl From<Command> for Proposal {
    fn from(command: Command) -> Self {
        Proposal {
            commands: vec![command],
        }
    }
}

/// A client's identity and the sequence number of this write.
///
/// A client numbers its writes 1, 2, 3, ... and retries a write with the same
/// number. The state machine keeps the last `(seq, response)` per client: the
/// same `seq` again returns the stored response without applying anything; a
/// lower `seq` returns [`CommandError::StaleSequence`](crate::CommandError).
/// Sequence 1 opens a session; a higher one for a client the table does not
/// hold (its session expired, see [`Operation::ExpireSessions`]) returns
/// [`CommandError::SessionExpired`](crate::CommandError) and applies
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSession {
    pub client_id: u64,
    pub seq: u64,
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    Put(PutRequest),
    Delete(DeleteRequest),
    Txn(TxnRequest),
    /// A read through the log (rarely needed: prefer a read-index read).
    Range(RangeRequest),
    LeaseGrant {
        id: LeaseId,
        ttl_ms: u64,
    },
    /// Deletes the lease and every key attached to it, in one revision.
    LeaseRevoke {
        id: LeaseId,
    },
    /// Advances the state machine's session clock by `elapsed_ms` (time the
    /// proposing leader measured on its own monotonic clock since its
    /// previous one) and removes every client session unused for `idle_ms`
    /// of that clock. Proposed by the leader only (`member::sessions`);
    /// apply never reads a clock, so every replica removes the same ones.
    ExpireSessions {
        elapsed_ms: u64,
        idle_ms: u64,
    },
}

impl Operation {
    /// Put `value` at `key`, without a lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Operation::Put(PutRequest::new(key, value))
    }

    /// Delete one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Operation::Delete(DeleteRequest {
            selector: KeySelector::Key(key.into()),
            prev_kv: false,
        })
    }

    /// Delete every key under `prefix`.
    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        Operation::Delete(DeleteRequest {
            selector: KeySelector::Prefix(prefix.into()),
            prev_kv: false,
        })
    }
}

/// Which keys an operation addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySelector {
    /// Exactly this key.
    Key(Vec<u8>),
    /// Every key starting with these bytes (the empty prefix selects all).
    Prefix(Vec<u8>),
    /// Every key from `start` (included) to `end` (excluded; `None`: no
    /// end). What a paged read continues with (see [`RangeRequest::after`]).
    Interval {
        start: Vec<u8>,
        end: Option<Vec<u8>>,
    },
}

impl KeySelector {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            KeySelector::Key(k) => k.as_slice() == key,
            KeySelector::Prefix(p) => key.starts_with(p),
            KeySelector::Interval { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }

    /// The selected keys as a half-open interval of byte strings.
    pub fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        match self {
            KeySelector::Key(k) => (Bound::Included(k.clone()), Bound::Included(k.clone())),
            KeySelector::Prefix(p) => (
                Bound::Included(p.clone()),
                match prefix_successor(p) {
                    Some(end) => Bound::Excluded(end),
                    None => Bound::Unbounded,
                },
            ),
            KeySelector::Interval { start, end } => (
                Bound::Included(start.clone()),
                end.clone().map_or(Bound::Unbounded, Bound::Excluded),
            ),
        }
    }

    /// The keys of this selector after `key` (which it selected): where
    /// the next page of a paged read starts. `None` when there are none.
    pub fn after(&self, key: &[u8]) -> Option<KeySelector> {
        let mut start = key.to_vec();
        start.push(0);
        let end = match self {
            KeySelector::Key(_) => return None,
            KeySelector::Prefix(p) => prefix_successor(p),
            KeySelector::Interval { end, .. } => end.clone(),
        };
        Some(KeySelector::Interval { start, end })
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` when there is none (empty or all-`0xff` prefix).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutRequest {
    // As bytes: see `KeyValue`.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Attach the key to this lease (which must exist); `None` detaches it.
    pub lease: Option<LeaseId>,
    /// Return the previous key-value in the response.
    pub prev_kv: bool,
}

impl PutRequest {
    /// A put without a lease that does not return the previous value.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        PutRequest {
            key: key.into(),
            value: value.into(),
            lease: None,
            prev_kv: false,
        }
    }

    pub fn with_lease(mut self, lease: LeaseId) -> Self {
        self.lease = Some(lease);
        self
    }

    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub selector: KeySelector,
    /// Return the deleted key-values in the response.
    pub prev_kv: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeRequest {
    pub selector: KeySelector,
    /// At most this many key-values (in key order); `None` for all.
    pub limit: Option<u64>,
}

impl RangeRequest {
    /// One key.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            selector: KeySelector::Key(key.into()),
            limit: None,
        }
    }

    /// Every key under `prefix`, at most `limit` of them.
    pub fn prefix(prefix: impl Into<Vec<u8>>, limit: Option<u64>) -> Self {
        RangeRequest {
            selector: KeySelector::Prefix(prefix.into()),
            limit,
        }
    }

    /// The next page of this read, after a page that ended at `last` and
    /// returned `got` keys; `None` when the read is complete.
    pub fn after(&self, last: &[u8], got: u64) -> Option<RangeRequest> {
        let limit = match self.limit {
            Some(l) if got >= l => return None,
            Some(l) => Some(l - got),
            None => None,
        };
        Some(RangeRequest {
            selector: self.selector.after(last)?,
            limit,
        })
    }
}

/// If every compare holds, run `success`, else run `failure`; all in one
/// revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compares: Vec<Compare>,
    pub success: Vec<TxnOp>,
    pub failure: Vec<TxnOp>,
}

/// A condition on one key, evaluated on the state before the transaction.
///
/// An absent key has version, create and mod revision 0 and no lease; a
/// `Value` compare on an absent key is always false (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

impl Compare {
    /// Holds when the key exists.
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Greater,
            target: CompareTarget::Version(0),
        }
    }

    /// Holds when the key does not exist.
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op: CompareOp::Equal,
            target: CompareTarget::Version(0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

/// The attribute compared, with the operand (the key's attribute is on the
/// left: `attribute <op> operand`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Version(u64),
    CreateRevision(u64),
    ModRevision(u64),
    Lease(Option<LeaseId>),
}

/// One operation inside a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Put(PutRequest),
    Delete(DeleteRequest),
    Range(RangeRequest),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn constructors_fill_the_documented_defaults() {
        let Operation::Put(put) = Operation::put("k", "v") else {
            panic!("not a put")
        };
        assert_eq!((put.lease, put.prev_kv), (None, false));
        let put = put.with_lease(LeaseId(3)).with_prev_kv();
        assert_eq!((put.lease, put.prev_kv), (Some(LeaseId(3)), true));
        assert_eq!(
            Operation::delete_prefix("p/"),
            Operation::Delete(DeleteRequest {
                selector: KeySelector::Prefix(b"p/".to_vec()),
                prev_kv: false
            })
        );
        assert_eq!(RangeRequest::prefix("p/", Some(2)).limit, Some(2));
    }

    #[test]
    fn values_as_bytes_keep_the_bincode_form_of_a_byte_sequence() {
        #[derive(Serialize)]
        struct Plain {
            key: Vec<u8>,
            value: Vec<u8>,
            lease: Option<LeaseId>,
            prev_kv: bool,
        }
        let put = PutRequest::new(vec![1, 2], vec![0, 255, 7]);
        let plain = Plain {
            key: put.key.clone(),
            value: put.value.clone(),
            lease: None,
            prev_kv: false,
        };
        assert_eq!(
            bincode::serialize(&put).unwrap(),
            bincode::serialize(&plain).unwrap()
        );
        use bincode::Options;
        let varint = bincode::DefaultOptions::new();
        assert_eq!(
            varint.serialize(&put).unwrap(),
            varint.serialize(&plain).unwrap()
        );
    }

    #[test]
    fn command_round_trips_through_bincode() {
        let command = Command::with_session(
            1,
            2,
            Operation::Txn(TxnRequest {
                compares: vec![Compare::absent("k")],
                success: vec![TxnOp::Put(PutRequest::new("k", "v").with_lease(LeaseId(1)))],
                failure: vec![TxnOp::Range(RangeRequest::key("k"))],
            }),
        );
        let bytes = bincode::serialize(&command).expect("encode");
        assert_eq!(
            bincode::deserialize::<Command>(&bytes).expect("decode"),
            command
        );
    }

    #[test]
    fn selector_matches_its_bounds() {
        let sel = KeySelector::Prefix(vec![b'a', 0xff]);
        assert!(sel.matches(&[b'a', 0xff, 0]));
        assert!(!sel.matches(b"b"));
        assert_eq!(sel.bounds().1, Bound::Excluded(b"b".to_vec()));
    }

    #[test]
    fn the_next_page_starts_right_after_the_last_key_and_keeps_the_end() {
        let read = RangeRequest::prefix("a/", None);
        let next = read.after(b"a/k", 3).expect("a prefix read continues");
        let KeySelector::Interval { start, end } = &next.selector else {
            panic!("not an interval: {next:?}")
        };
        assert_eq!(
            (start.as_slice(), end.as_deref()),
            (&b"a/k\0"[..], Some(&b"a0"[..]))
        );
        assert!(!next.selector.matches(b"a/k"));
        assert!(next.selector.matches(b"a/k\0"));
        assert!(next.selector.matches(b"a/z"));
        assert!(!next.selector.matches(b"a0"));
        assert_eq!(next.limit, None);
        // Its own next page keeps the end; a limit shrinks by what was read.
        let again = next.after(b"a/m", 1).unwrap();
        assert!(
            matches!(&again.selector, KeySelector::Interval { end: Some(e), .. } if e == b"a0")
        );
        let limited = RangeRequest::prefix("a/", Some(5));
        assert_eq!(limited.after(b"a/b", 2).unwrap().limit, Some(3));
        assert_eq!(limited.after(b"a/b", 5), None);
        assert_eq!(RangeRequest::key("k").after(b"k", 1), None);
        // The empty prefix has no end.
        let all = RangeRequest::prefix("", None).after(b"x", 1).unwrap();
        assert!(all.selector.matches(&[0xff, 0xff]));
    }
}
