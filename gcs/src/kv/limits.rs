//! The store's size limits, stated once (ARCHITECTURE.md repeats them):
//! what a write may carry and how much one read answers. They keep every
//! message the store sends — a Raft entry, an AppendEntries, a read's
//! answer — well under the RPC message limit (16 MiB,
//! `troupe_core::rpc::DEFAULT_MAX_MESSAGE_BYTES`), so whatever the store
//! accepted can be replicated and read back.
//!
//! The write limits are checked by the leader before a write enters the
//! log ([`check_write`], called by the proposer), never while applying:
//! entries accepted by an older binary replay as they were.

use crate::command::{Command, KeySelector, Operation, PutRequest, TxnOp};
use crate::model::KeyValue;
use crate::response::CommandError;

/// One stored key-value (key and value bytes) at most: 2 MiB. A serve
/// config is at most 1.5 MiB (etcd's request limit; `troupe_serve::limits`)
/// and its `user_config`s are copied into records of their own (an
/// application's spec, each replica's actor record) with a few fields
/// more: the margin holds them.
pub const MAX_VALUE_BYTES: usize = 2 << 20;

/// One write (a put, a delete or a whole transaction: every key and value
/// it carries) at most: 4 MiB. Larger than [`MAX_VALUE_BYTES`] so one
/// transaction can write several values near the limit (a serve deploy
/// writes the config and its applications' specs together); small enough
/// that a Raft entry holding it stays far below the message limit.
pub const MAX_WRITE_BYTES: usize = 4 << 20;

/// One range answer at most: 8 MiB of keys, values and per-key overhead
/// ([`page_cost`]); a larger read is answered in pages (`more` set) that
/// the client follows ([`crate::client::GcsClient::range`]). A page always
/// holds at least one key-value, so every stored value can be read.
pub const RANGE_PAGE_BYTES: usize = 8 << 20;

// Checked when compiling: a page (which may end with one value over its
// budget) and a write (with its session and framing, in one Raft entry)
// stay far below the RPC message limit.
const _: () = {
    const MESSAGE: usize = troupe_core::rpc::DEFAULT_MAX_MESSAGE_BYTES;
    assert!(MAX_VALUE_BYTES <= MAX_WRITE_BYTES);
    assert!(RANGE_PAGE_BYTES + MAX_VALUE_BYTES < MESSAGE - (1 << 20));
    assert!(MAX_WRITE_BYTES * 2 < MESSAGE);
};

/// What one key-value costs in a range answer: its key, its value and the
/// encoded revisions, version, lease and lengths around them.
pub fn page_cost(kv: &KeyValue) -> usize {
    const OVERHEAD: usize = 64;
    kv.key.len() + kv.value.len() + OVERHEAD
}

/// How many key-values of `kvs`, in order, one page holds: as many as fit
/// in [`RANGE_PAGE_BYTES`], and at least one. Pure.
pub fn page_len(kvs: &[KeyValue], budget: usize) -> usize {
    let mut used = 0usize;
    for (i, kv) in kvs.iter().enumerate() {
        used = used.saturating_add(page_cost(kv));
        if i > 0 && used > budget {
            return i;
        }
    }
    kvs.len()
}

/// Refuses a write over the limits, naming the limit and what to do. Pure.
pub fn check_write(command: &Command) -> Result<(), CommandError> {
    let puts: Vec<&PutRequest> = match &command.op {
        Operation::Put(p) => vec![p],
        Operation::Txn(t) => t
            .success
            .iter()
            .chain(&t.failure)
            .filter_map(|op| match op {
                TxnOp::Put(p) => Some(p),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for put in puts {
        let bytes = put.key.len() + put.value.len();
        if bytes > MAX_VALUE_BYTES {
            return Err(CommandError::TooLarge {
                what: format!("the value of key {}", printable(&put.key)),
                bytes: bytes as u64,
                limit: MAX_VALUE_BYTES as u64,
            });
        }
    }
    let bytes = write_bytes(command);
    if bytes > MAX_WRITE_BYTES {
        return Err(CommandError::TooLarge {
            what: "the write".into(),
            bytes: bytes as u64,
            limit: MAX_WRITE_BYTES as u64,
        });
    }
    Ok(())
}

/// The keys and values a write carries (what the proposer batches by).
pub(crate) fn write_bytes(command: &Command) -> usize {
    fn selector(s: &KeySelector) -> usize {
        match s {
            KeySelector::Key(k) | KeySelector::Prefix(k) => k.len(),
            KeySelector::Interval { start, end } => start.len() + end.as_ref().map_or(0, Vec::len),
        }
    }
    fn txn_op(op: &TxnOp) -> usize {
        match op {
            TxnOp::Put(p) => p.key.len() + p.value.len(),
            TxnOp::Delete(d) => selector(&d.selector),
            TxnOp::Range(r) => selector(&r.selector),
        }
    }
    match &command.op {
        Operation::Put(p) => p.key.len() + p.value.len(),
        Operation::Delete(d) => selector(&d.selector),
        Operation::Range(r) => selector(&r.selector),
        Operation::Txn(t) => {
            t.compares
                .iter()
                .map(|c| {
                    c.key.len()
                        + match &c.target {
                            crate::command::CompareTarget::Value(v) => v.len(),
                            _ => 8,
                        }
                })
                .sum::<usize>()
                + t.success.iter().map(txn_op).sum::<usize>()
                + t.failure.iter().map(txn_op).sum::<usize>()
        }
        Operation::LeaseGrant { .. }
        | Operation::LeaseRevoke { .. }
        | Operation::ExpireSessions { .. } => 16,
    }
}

/// A key for a message: as text when it is, else its first bytes in hex.
fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if text.chars().count() <= 100 => format!("`{text}`"),
        Ok(text) => format!("`{}…`", text.chars().take(100).collect::<String>()),
        Err(_) => {
            let hex: String = key.iter().take(32).map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}…")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, TxnRequest};

    fn kv(key: &str, value_len: usize) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: vec![0; value_len],
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn a_put_or_txn_over_the_value_limit_is_refused_naming_the_key() {
        let at_limit = Command::new(Operation::put("k", vec![0; MAX_VALUE_BYTES - 1]));
        assert_eq!(check_write(&at_limit), Ok(()));
        let over = Command::new(Operation::put("k", vec![0; MAX_VALUE_BYTES]));
        let Err(CommandError::TooLarge { what, bytes, limit }) = check_write(&over) else {
            panic!("not refused")
        };
        assert_eq!(
            (bytes, limit),
            (MAX_VALUE_BYTES as u64 + 1, MAX_VALUE_BYTES as u64)
        );
        assert!(what.contains("`k`"), "{what}");
        let txn = |values: usize, each: usize| {
            Command::new(Operation::Txn(TxnRequest {
                compares: vec![Compare::absent("c")],
                success: (0..values)
                    .map(|i| TxnOp::Put(PutRequest::new(format!("k{i}"), vec![0; each])))
                    .collect(),
                failure: vec![],
            }))
        };
        assert_eq!(check_write(&txn(2, MAX_VALUE_BYTES - 8)), Ok(()));
        assert!(matches!(
            check_write(&txn(1, MAX_VALUE_BYTES)),
            Err(CommandError::TooLarge { .. })
        ));
        // Each value fits; together they are over the write limit.
        let Err(CommandError::TooLarge { what, limit, .. }) =
            check_write(&txn(3, MAX_VALUE_BYTES - 8))
        else {
            panic!("not refused")
        };
        assert_eq!(
            (what.as_str(), limit),
            ("the write", MAX_WRITE_BYTES as u64)
        );
        // Reads, deletes and leases carry no values.
        assert_eq!(
            check_write(&Command::new(Operation::delete_prefix("p"))),
            Ok(())
        );
    }

    #[test]
    fn a_page_holds_what_fits_in_the_budget_and_at_least_one() {
        let kvs = vec![kv("a", 100), kv("b", 100), kv("c", 100)];
        let one = page_cost(&kvs[0]);
        assert_eq!(page_len(&kvs, one * 3), 3);
        assert_eq!(page_len(&kvs, one * 3 - 1), 2);
        assert_eq!(page_len(&kvs, one), 1);
        assert_eq!(
            page_len(&kvs, 0),
            1,
            "a value over the budget is still read"
        );
        assert_eq!(page_len(&[], 0), 0);
    }

    #[test]
    fn keys_in_messages_are_text_or_hex() {
        assert_eq!(printable(b"/a/b"), "`/a/b`");
        assert_eq!(printable(&[0xff, 0x01]), "0xff01…");
        assert!(printable("é".repeat(150).as_bytes()).ends_with("…`"));
    }
}
