//! Evaluating a transaction's compares against a key's current state.

use std::cmp::Ordering;

use crate::command::{Compare, CompareOp, CompareTarget};
use crate::model::KeyValue;

/// Whether `compare` holds for the key's current state (`None` = absent).
pub fn holds(compare: &Compare, current: Option<&KeyValue>) -> bool {
    let ordering = match &compare.target {
        CompareTarget::Value(operand) => match current {
            Some(kv) => kv.value.as_slice().cmp(operand.as_slice()),
            // etcd: a value compare against a missing key is always false.
            None => return false,
        },
        CompareTarget::Version(operand) => current.map_or(0, |kv| kv.version).cmp(operand),
        CompareTarget::CreateRevision(operand) => {
            current.map_or(0, |kv| kv.create_revision).cmp(operand)
        }
        CompareTarget::ModRevision(operand) => current.map_or(0, |kv| kv.mod_revision).cmp(operand),
        CompareTarget::Lease(operand) => current.and_then(|kv| kv.lease).cmp(operand),
    };
    match compare.op {
        CompareOp::Equal => ordering == Ordering::Equal,
        CompareOp::NotEqual => ordering != Ordering::Equal,
        CompareOp::Less => ordering == Ordering::Less,
        CompareOp::Greater => ordering == Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LeaseId;

    fn kv(value: &[u8], version: u64) -> KeyValue {
        KeyValue {
            key: b"k".to_vec(),
            value: value.to_vec(),
            create_revision: 3,
            mod_revision: 7,
            version,
            lease: Some(LeaseId(9)),
        }
    }

    fn cmp(op: CompareOp, target: CompareTarget) -> Compare {
        Compare {
            key: b"k".to_vec(),
            op,
            target,
        }
    }

    #[test]
    fn value_compares_bytes_and_is_false_on_absent_keys() {
        let cur = kv(b"b", 1);
        assert!(holds(
            &cmp(CompareOp::Equal, CompareTarget::Value(b"b".to_vec())),
            Some(&cur)
        ));
        assert!(holds(
            &cmp(CompareOp::Greater, CompareTarget::Value(b"a".to_vec())),
            Some(&cur)
        ));
        assert!(holds(
            &cmp(CompareOp::Less, CompareTarget::Value(b"c".to_vec())),
            Some(&cur)
        ));
        assert!(!holds(
            &cmp(CompareOp::NotEqual, CompareTarget::Value(b"b".to_vec())),
            Some(&cur)
        ));
        for op in [
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Less,
            CompareOp::Greater,
        ] {
            assert!(!holds(&cmp(op, CompareTarget::Value(b"b".to_vec())), None));
        }
    }

    #[test]
    fn revisions_and_version_compare_numerically() {
        let cur = kv(b"v", 4);
        assert!(holds(
            &cmp(CompareOp::Equal, CompareTarget::ModRevision(7)),
            Some(&cur)
        ));
        assert!(holds(
            &cmp(CompareOp::Less, CompareTarget::CreateRevision(4)),
            Some(&cur)
        ));
        assert!(holds(
            &cmp(CompareOp::Greater, CompareTarget::Version(3)),
            Some(&cur)
        ));
        assert!(holds(
            &cmp(CompareOp::Equal, CompareTarget::Lease(Some(LeaseId(9)))),
            Some(&cur)
        ));
        assert!(holds(
            &cmp(CompareOp::Equal, CompareTarget::Lease(None)),
            None
        ));
    }

    #[test]
    fn existence_helpers() {
        let cur = kv(b"v", 1);
        assert!(holds(&Compare::exists("k"), Some(&cur)));
        assert!(!holds(&Compare::exists("k"), None));
        assert!(holds(&Compare::absent("k"), None));
        assert!(!holds(&Compare::absent("k"), Some(&cur)));
    }
}
