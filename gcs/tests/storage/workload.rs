//! The random workload of the model test: operations on a few keys and
//! leases, client sessions, batch boundaries, restarts and snapshot swaps.

use proptest::prelude::*;
use troupe_gcs::*;

use crate::reference::{Expected, Model};

pub const KEYS: &[&str] = &["a", "ab", "b", "b/1", "b/2"];

#[derive(Debug, Clone)]
pub enum ModelOp {
    Put {
        key: usize,
        value: u8,
        lease: Option<u64>,
    },
    Delete {
        key: usize,
        prefix: bool,
    },
    CasValue {
        key: usize,
        expected: u8,
        new: u8,
    },
    CasVersion {
        key: usize,
        version: u64,
        new: u8,
    },
    Grant {
        id: u64,
        ttl_ms: u64,
    },
    Revoke {
        id: u64,
    },
}

#[derive(Debug, Clone)]
pub enum Step {
    /// A command, with a session of this client if given.
    Op(ModelOp, Option<u64>),
    /// Resend the client's last command with the same sequence number.
    Retry(u64),
    /// Resend the client's last command with an older sequence number.
    Stale(u64),
    /// Apply the commands queued so far as one `apply` call.
    EndBatch,
    /// Close and reopen the primary store.
    Restart,
    /// Snapshot the primary, install it on the other store, swap roles.
    SnapshotSwap,
}

pub fn op() -> impl Strategy<Value = ModelOp> {
    let key = 0..KEYS.len();
    prop_oneof![
        4 => (key.clone(), 0u8..4, proptest::option::weighted(0.3, 1u64..4))
            .prop_map(|(key, value, lease)| ModelOp::Put { key, value, lease }),
        2 => (key.clone(), any::<bool>()).prop_map(|(key, prefix)| ModelOp::Delete { key, prefix }),
        2 => (key.clone(), 0u8..4, 0u8..4).prop_map(|(key, expected, new)| ModelOp::CasValue { key, expected, new }),
        1 => (key, 0u64..3, 0u8..4).prop_map(|(key, version, new)| ModelOp::CasVersion { key, version, new }),
        2 => (1u64..4, 0u64..3).prop_map(|(id, ttl_ms)| ModelOp::Grant { id, ttl_ms }),
        1 => (1u64..4).prop_map(|id| ModelOp::Revoke { id }),
    ]
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (op(), proptest::option::weighted(0.4, 1u64..3)).prop_map(|(op, client)| Step::Op(op, client)),
        2 => (1u64..3).prop_map(Step::Retry),
        1 => (1u64..3).prop_map(Step::Stale),
        4 => Just(Step::EndBatch),
        1 => Just(Step::Restart),
        1 => Just(Step::SnapshotSwap),
    ]
}

pub fn command_of(op: &ModelOp) -> Operation {
    let key = |i: &usize| KEYS[*i].as_bytes().to_vec();
    let put = |k: &usize, v: u8, lease: Option<u64>| PutRequest {
        key: key(k),
        value: vec![v],
        lease: lease.map(LeaseId),
        prev_kv: false,
    };
    let cas = |k: &usize, target: CompareTarget, new: u8| {
        Operation::Txn(TxnRequest {
            compares: vec![Compare {
                key: key(k),
                op: CompareOp::Equal,
                target,
            }],
            success: vec![TxnOp::Put(put(k, new, None))],
            failure: vec![TxnOp::Range(RangeRequest {
                selector: KeySelector::Key(key(k)),
                limit: None,
            })],
        })
    };
    match op {
        ModelOp::Put {
            key: k,
            value,
            lease,
        } => Operation::Put(put(k, *value, *lease)),
        ModelOp::Delete { key: k, prefix } => Operation::Delete(DeleteRequest {
            selector: if *prefix {
                KeySelector::Prefix(key(k))
            } else {
                KeySelector::Key(key(k))
            },
            prev_kv: true,
        }),
        ModelOp::CasValue {
            key: k,
            expected,
            new,
        } => cas(k, CompareTarget::Value(vec![*expected]), *new),
        ModelOp::CasVersion {
            key: k,
            version,
            new,
        } => cas(k, CompareTarget::Version(*version), *new),
        ModelOp::Grant { id, ttl_ms } => Operation::LeaseGrant {
            id: LeaseId(*id),
            ttl_ms: *ttl_ms,
        },
        ModelOp::Revoke { id } => Operation::LeaseRevoke { id: LeaseId(*id) },
    }
}

pub fn apply_model(model: &mut Model, op: &ModelOp) -> Expected {
    let key = |i: &usize| KEYS[*i].as_bytes();
    match op {
        ModelOp::Put {
            key: k,
            value,
            lease,
        } => model.put(key(k), &[*value], *lease),
        ModelOp::Delete { key: k, prefix } => model.delete(key(k), *prefix),
        ModelOp::CasValue {
            key: k,
            expected,
            new,
        } => model.cas_value(key(k), &[*expected], &[*new]),
        ModelOp::CasVersion {
            key: k,
            version,
            new,
        } => model.cas_version(key(k), *version, &[*new]),
        ModelOp::Grant { id, ttl_ms } => model.grant(*id, *ttl_ms),
        ModelOp::Revoke { id } => model.revoke(*id),
    }
}
