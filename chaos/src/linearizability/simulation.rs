//! Test support: histories recorded from simulated *sequential* executions
//! of a real map, so they are linearizable by construction, and a fault
//! injector that makes one of them provably illegal.

use std::collections::HashMap;

use proptest::prelude::*;
use rand::Rng;

use super::{KvHistory, KvInput, KvOutput, Operation};

/// Time between consecutive linearization points.
const SPACING: u64 = 1_000;
/// How far past its linearization point a client's last operation may return.
const TAIL: u64 = 5 * SPACING;
/// Interval fractions are in thousandths.
const FRACTION: u64 = 1_000;

/// One operation of a simulated execution, before it runs.
#[derive(Clone, Debug)]
pub(super) struct OpPlan {
    pub(super) client: u64,
    pub(super) key: u8,
    /// 0: get, 1: put, 2: delete, 3: cas.
    pub(super) kind: u8,
    pub(super) value: u8,
    /// For a cas: 0 or 1 expects the current value, 2 expects absence,
    /// 3 or more expects `v{expect - 3}`.
    pub(super) expect: u8,
    /// Where the call lies between the earliest allowed time and the
    /// linearization point, in thousandths.
    pub(super) call_frac: u64,
    /// Where the return lies between the linearization point and the latest
    /// allowed time, in thousandths.
    pub(super) ret_frac: u64,
    /// The client never learns the outcome.
    pub(super) unknown: bool,
    /// For an unknown outcome: whether the operation took effect at all.
    pub(super) applied: bool,
}

/// Plans with up to `clients` clients on up to `keys` keys, one in
/// `unknown_one_in` with an unknown outcome (never if 0).
pub(super) fn plan_strategy(
    clients: u64,
    keys: u8,
    unknown_one_in: u32,
) -> impl Strategy<Value = OpPlan> {
    (
        (0..clients, 0..keys, 0..4u8, 0..4u8, 0..7u8),
        (
            0..=FRACTION,
            0..=FRACTION,
            0..unknown_one_in.max(1),
            any::<bool>(),
        ),
    )
        .prop_map(
            move |((client, key, kind, value, expect), (call_frac, ret_frac, unknown, applied))| {
                OpPlan {
                    client,
                    key,
                    kind,
                    value,
                    expect,
                    call_frac,
                    ret_frac,
                    unknown: unknown_one_in > 0 && unknown == 0,
                    applied,
                }
            },
        )
}

/// `count` random plans, as [`plan_strategy`] draws them.
pub(super) fn random_plans(
    rng: &mut impl Rng,
    count: usize,
    clients: u64,
    keys: u8,
    unknown_one_in: u32,
) -> Vec<OpPlan> {
    (0..count)
        .map(|_| OpPlan {
            client: rng.random_range(0..clients),
            key: rng.random_range(0..keys),
            kind: rng.random_range(0..4),
            value: rng.random_range(0..4),
            expect: rng.random_range(0..7),
            call_frac: rng.random_range(0..=FRACTION),
            ret_frac: rng.random_range(0..=FRACTION),
            unknown: unknown_one_in > 0 && rng.random_range(0..unknown_one_in) == 0,
            applied: rng.random(),
        })
        .collect()
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

fn value(v: u8) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

/// Runs the plans in order on a map (operation `i` takes effect at time
/// `SPACING * (i + 1)`) and records what the clients saw. Each operation's
/// interval contains its linearization point, and a client's operations
/// never overlap one another.
pub(super) fn execute(plans: &[OpPlan]) -> KvHistory {
    let point = |i: usize| SPACING * (i as u64 + 1);
    let mut previous: HashMap<u64, usize> = HashMap::new();
    let mut earliest = vec![0; plans.len()];
    let mut latest: Vec<u64> = (0..plans.len()).map(|i| point(i) + TAIL).collect();
    for (i, plan) in plans.iter().enumerate() {
        if let Some(p) = previous.insert(plan.client, i) {
            let middle = (point(p) + point(i)) / 2;
            latest[p] = middle;
            earliest[i] = middle + 1;
        }
    }
    let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut history = KvHistory::new();
    for (i, plan) in plans.iter().enumerate() {
        let k = key(plan.key);
        let current = map.get(&k).cloned();
        let input = match plan.kind {
            0 => KvInput::Get { key: k.clone() },
            1 => KvInput::put(k.clone(), value(plan.value)),
            2 => KvInput::delete(k.clone()),
            _ => KvInput::Cas {
                key: k.clone(),
                expected: match plan.expect {
                    0 | 1 => current.clone(),
                    2 => None,
                    e => Some(value(e - 3)),
                },
                new: value(plan.value),
            },
        };
        let takes_effect = !plan.unknown || plan.applied;
        let output = match &input {
            KvInput::Get { .. } => KvOutput::Value(current.clone()),
            KvInput::Put { value, .. } => {
                if takes_effect {
                    map.insert(k, value.clone());
                }
                KvOutput::Ok
            }
            KvInput::Delete { .. } => {
                if takes_effect {
                    map.remove(&k);
                }
                KvOutput::Ok
            }
            KvInput::Cas { expected, new, .. } => {
                let swapped = *expected == current;
                if swapped && takes_effect {
                    map.insert(k, new.clone());
                }
                KvOutput::Swapped(swapped)
            }
        };
        let lp = point(i);
        let call = lp - (lp - earliest[i]) * plan.call_frac / FRACTION;
        let ret = lp + (latest[i] - lp) * plan.ret_frac / FRACTION;
        history.push(Operation {
            client: plan.client,
            call,
            ret: (!plan.unknown).then_some(ret),
            input,
            output: (!plan.unknown).then_some(output),
        });
    }
    history
}

/// Rewrites the output of one completed read (the `selector`-th, modulo
/// their number) to a value that no operation called by the read's return
/// could have written, so it was never current in the read's interval and
/// no linearization can explain it. Prefers a value that is written later
/// (a read from the future) over one never written. Returns the index of
/// the read, or `None` if there is no completed read.
pub(super) fn corrupt_read(history: &mut KvHistory, selector: usize) -> Option<usize> {
    let ops = history.operations();
    let reads: Vec<usize> = (0..ops.len())
        .filter(|&i| matches!(ops[i].input, KvInput::Get { .. }) && !ops[i].is_unknown())
        .collect();
    let index = *reads.get(selector % reads.len().max(1))?;
    let read = &ops[index];
    let read_ret = read.ret.expect("completed");
    let written_by = |op: &Operation<KvInput, KvOutput>| match &op.input {
        KvInput::Put { key, value }
        | KvInput::Cas {
            key, new: value, ..
        } if key.as_slice() == read.input.key() => Some(value.clone()),
        _ => None,
    };
    let possible: Vec<Vec<u8>> = ops
        .iter()
        .filter(|op| op.call <= read_ret)
        .filter_map(written_by)
        .collect();
    let future: Option<Vec<u8>> = ops
        .iter()
        .filter_map(written_by)
        .find(|value| !possible.contains(value));
    let impossible = future.unwrap_or_else(|| b"never-written".to_vec());
    history.operations_mut()[index].output = Some(KvOutput::Value(Some(impossible)));
    Some(index)
}
