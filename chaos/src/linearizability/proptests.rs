//! Property tests: simulated executions are always accepted, a provably
//! impossible read is always rejected, and the checker agrees with a
//! brute-force search over all orders on small random histories.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::simulation::{corrupt_read, execute, plan_strategy};
use super::*;

type KvOp = Operation<KvInput, KvOutput>;

proptest! {
    #[test]
    fn simulated_executions_are_linearizable(
        plans in prop::collection::vec(plan_strategy(5, 3, 8), 0..120),
    ) {
        let history = execute(&plans);
        let result = check::<KvModel>(&history).unwrap();
        prop_assert_eq!(result, CheckResult::Ok, "{:#?}", history);
    }

    #[test]
    fn a_read_of_a_value_never_current_is_illegal(
        plans in prop::collection::vec(plan_strategy(5, 3, 8), 1..120),
        selector in any::<usize>(),
    ) {
        let mut history = execute(&plans);
        let corrupted = corrupt_read(&mut history, selector);
        prop_assume!(corrupted.is_some());
        let key = history.operations()[corrupted.unwrap()].input.key().to_vec();
        match check::<KvModel>(&history).unwrap() {
            CheckResult::Illegal { key: found, .. } => prop_assert_eq!(found, key),
            other => prop_assert!(false, "expected Illegal, got {:?}\n{:#?}", other, history),
        }
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories(
        ops in prop::collection::vec(arbitrary_operation(), 0..8),
    ) {
        let history = KvHistory::from(ops);
        let expected = brute_force(history.operations());
        let result = check::<KvModel>(&history).unwrap();
        prop_assert_eq!(result.is_ok(), expected, "{:?}\n{:#?}", result, history);
    }
}

/// Any operation on two keys and two values: mostly nonsense outputs, so
/// both verdicts are common.
fn arbitrary_operation() -> impl Strategy<Value = KvOp> {
    let key = prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec())];
    let value = prop_oneof![Just(b"1".to_vec()), Just(b"2".to_vec())];
    let maybe_value = prop::option::of(value.clone());
    let input = prop_oneof![
        key.clone().prop_map(|key| KvInput::Get { key }),
        (key.clone(), value.clone()).prop_map(|(key, value)| KvInput::Put { key, value }),
        key.clone().prop_map(|key| KvInput::Delete { key }),
        (key, maybe_value.clone(), value).prop_map(|(key, expected, new)| KvInput::Cas {
            key,
            expected,
            new
        }),
    ];
    (
        input,
        maybe_value,
        any::<bool>(),
        0..20u64,
        0..12u64,
        0..5u8,
    )
        .prop_map(|(input, read, swapped, call, length, unknown)| {
            let output = match input {
                KvInput::Get { .. } => KvOutput::Value(read),
                KvInput::Put { .. } | KvInput::Delete { .. } => KvOutput::Ok,
                KvInput::Cas { .. } => KvOutput::Swapped(swapped),
            };
            let known = unknown != 0;
            Operation {
                client: 0,
                call,
                ret: known.then_some(call + length),
                input,
                output: known.then_some(output),
            }
        })
}

/// Linearizability by definition: some order of all operations that
/// respects real time (an operation may go next unless another remaining one
/// returned strictly before its call) makes a whole map produce every known
/// output. Written without `Model`, on the whole map, without partitions.
fn brute_force(ops: &[KvOp]) -> bool {
    fn apply(map: &mut BTreeMap<Vec<u8>, Vec<u8>>, input: &KvInput) -> KvOutput {
        match input {
            KvInput::Get { key } => KvOutput::Value(map.get(key).cloned()),
            KvInput::Put { key, value } => {
                map.insert(key.clone(), value.clone());
                KvOutput::Ok
            }
            KvInput::Delete { key } => {
                map.remove(key);
                KvOutput::Ok
            }
            KvInput::Cas { key, expected, new } => {
                let swapped = map.get(key) == expected.as_ref();
                if swapped {
                    map.insert(key.clone(), new.clone());
                }
                KvOutput::Swapped(swapped)
            }
        }
    }
    fn search(ops: &[KvOp], remaining: &mut Vec<usize>, map: &BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
        if remaining.is_empty() {
            return true;
        }
        for position in 0..remaining.len() {
            let op = &ops[remaining[position]];
            let blocked = remaining
                .iter()
                .any(|&other| ops[other].effective_ret().is_some_and(|ret| ret < op.call));
            if blocked {
                continue;
            }
            let mut next = map.clone();
            let output = apply(&mut next, &op.input);
            if op.output.as_ref().is_some_and(|seen| *seen != output) {
                continue;
            }
            let chosen = remaining.remove(position);
            let found = search(ops, remaining, &next);
            remaining.insert(position, chosen);
            if found {
                return true;
            }
        }
        false
    }
    search(ops, &mut (0..ops.len()).collect(), &BTreeMap::new())
}
