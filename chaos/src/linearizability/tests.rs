//! Hand-written histories with known verdicts.

use super::*;

type KvOp = Operation<KvInput, KvOutput>;

/// An operation that returned `output` at `ret`.
fn done(client: u64, call: u64, ret: u64, input: KvInput, output: KvOutput) -> KvOp {
    Operation {
        client,
        call,
        ret: Some(ret),
        input,
        output: Some(output),
    }
}

/// An operation whose client timed out.
fn timed_out(client: u64, call: u64, input: KvInput) -> KvOp {
    Operation {
        client,
        call,
        ret: None,
        input,
        output: None,
    }
}

fn verdict(ops: Vec<KvOp>) -> CheckResult<Vec<u8>> {
    check::<KvModel>(&KvHistory::from(ops)).expect("valid history")
}

/// Asserts an illegal verdict on `key`, returning the explanation.
fn assert_illegal(ops: Vec<KvOp>, key: &[u8]) -> Explanation {
    match verdict(ops) {
        CheckResult::Illegal {
            key: found,
            explanation,
        } => {
            assert_eq!(found, key, "{explanation}");
            explanation
        }
        other => panic!("expected Illegal on {key:?}, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(verdict(vec![]), CheckResult::Ok);
}

#[test]
fn sequential_history_is_linearizable() {
    let ops = vec![
        done(1, 0, 1, KvInput::get("x"), KvOutput::NOT_FOUND),
        done(1, 2, 3, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 4, 5, KvInput::get("x"), KvOutput::found("1")),
        done(
            2,
            6,
            7,
            KvInput::cas("x", Some(b"1"), "2"),
            KvOutput::Swapped(true),
        ),
        done(
            1,
            8,
            9,
            KvInput::cas("x", Some(b"1"), "3"),
            KvOutput::Swapped(false),
        ),
        done(1, 10, 11, KvInput::get("x"), KvOutput::found("2")),
        done(3, 12, 13, KvInput::delete("x"), KvOutput::Ok),
        done(3, 14, 15, KvInput::get("x"), KvOutput::NOT_FOUND),
        done(
            2,
            16,
            17,
            KvInput::cas("x", None, "4"),
            KvOutput::Swapped(true),
        ),
        done(2, 18, 19, KvInput::get("x"), KvOutput::found("4")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn stale_read_after_completed_write_is_rejected() {
    // Write 0, write 1 completes, then a later read returns the old 0.
    let ops = vec![
        done(1, 0, 10, KvInput::put("x", "0"), KvOutput::Ok),
        done(1, 20, 30, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 40, 50, KvInput::get("x"), KvOutput::found("0")),
    ];
    let explanation = assert_illegal(ops, b"x");
    assert_eq!(explanation.blocking_index, 2, "{explanation}");
    assert_eq!(explanation.prefix, vec![0, 1]);
    assert_eq!(explanation.state, "Some(b\"1\")");
}

#[test]
fn read_of_initial_value_after_completed_write_is_rejected() {
    let ops = vec![
        done(1, 0, 10, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 20, 30, KvInput::get("x"), KvOutput::NOT_FOUND),
    ];
    assert_illegal(ops, b"x");
}

#[test]
fn overlapping_write_may_be_seen_or_not() {
    // Reads during a long write may see it or not, but never un-see it.
    let ops = vec![
        done(1, 0, 100, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 10, 20, KvInput::get("x"), KvOutput::NOT_FOUND),
        done(3, 15, 25, KvInput::get("x"), KvOutput::NOT_FOUND),
        done(2, 30, 40, KvInput::get("x"), KvOutput::found("1")),
        done(2, 110, 120, KvInput::get("x"), KvOutput::found("1")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn new_then_old_read_during_a_write_is_rejected() {
    let ops = vec![
        done(1, 0, 100, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 10, 20, KvInput::get("x"), KvOutput::found("1")),
        done(3, 30, 40, KvInput::get("x"), KvOutput::NOT_FOUND),
    ];
    assert_illegal(ops, b"x");
}

#[test]
fn concurrent_writes_can_be_ordered_either_way() {
    for last in ["a", "b"] {
        let ops = vec![
            done(1, 0, 50, KvInput::put("x", "a"), KvOutput::Ok),
            done(2, 10, 60, KvInput::put("x", "b"), KvOutput::Ok),
            done(3, 70, 80, KvInput::get("x"), KvOutput::found(last)),
        ];
        assert_eq!(verdict(ops), CheckResult::Ok, "last = {last}");
    }
}

#[test]
fn operations_touching_at_one_instant_are_concurrent() {
    // The read's call equals the write's return: either order is allowed.
    let ops = vec![
        done(1, 0, 10, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 10, 20, KvInput::get("x"), KvOutput::NOT_FOUND),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn read_of_a_value_never_written_is_rejected() {
    let ops = vec![
        done(1, 0, 10, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 5, 30, KvInput::get("x"), KvOutput::found("7")),
    ];
    let explanation = assert_illegal(ops, b"x");
    assert_eq!(explanation.blocking_index, 1);
}

#[test]
fn two_concurrent_cas_from_one_value_cannot_both_succeed() {
    let cas = |new: &str| KvInput::cas("x", Some(b"0"), new);
    let setup = done(1, 0, 1, KvInput::put("x", "0"), KvOutput::Ok);
    let both = vec![
        setup.clone(),
        done(2, 10, 20, cas("a"), KvOutput::Swapped(true)),
        done(3, 12, 22, cas("b"), KvOutput::Swapped(true)),
    ];
    assert_illegal(both, b"x");
    let one = vec![
        setup,
        done(2, 10, 20, cas("a"), KvOutput::Swapped(false)),
        done(3, 12, 22, cas("b"), KvOutput::Swapped(true)),
        done(1, 30, 40, KvInput::get("x"), KvOutput::found("b")),
    ];
    assert_eq!(verdict(one), CheckResult::Ok);
}

#[test]
fn cas_must_swap_when_the_value_matches() {
    let ops = vec![
        done(1, 0, 1, KvInput::put("x", "0"), KvOutput::Ok),
        done(
            1,
            2,
            3,
            KvInput::cas("x", Some(b"0"), "1"),
            KvOutput::Swapped(false),
        ),
    ];
    assert_illegal(ops, b"x");
    let absent = vec![done(
        1,
        0,
        1,
        KvInput::cas("x", None, "1"),
        KvOutput::Swapped(false),
    )];
    assert_illegal(absent, b"x");
}

#[test]
fn delete_removes_the_value_for_good() {
    let ops = vec![
        done(1, 0, 1, KvInput::put("x", "1"), KvOutput::Ok),
        done(1, 2, 3, KvInput::delete("x"), KvOutput::Ok),
        done(2, 4, 5, KvInput::get("x"), KvOutput::found("1")),
    ];
    assert_illegal(ops, b"x");
}

#[test]
fn mismatched_output_kind_is_rejected() {
    let ops = vec![done(
        1,
        0,
        1,
        KvInput::put("x", "1"),
        KvOutput::Swapped(true),
    )];
    assert_illegal(ops, b"x");
}

#[test]
fn timed_out_put_whose_value_is_read_later_is_accepted() {
    let ops = vec![
        timed_out(1, 0, KvInput::put("x", "1")),
        done(2, 1000, 1010, KvInput::get("x"), KvOutput::found("1")),
        done(2, 1020, 1030, KvInput::get("x"), KvOutput::found("1")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn timed_out_put_never_observed_is_accepted() {
    let ops = vec![
        done(1, 0, 10, KvInput::put("x", "0"), KvOutput::Ok),
        timed_out(1, 20, KvInput::put("x", "1")),
        done(2, 30, 40, KvInput::get("x"), KvOutput::found("0")),
        done(2, 5000, 5010, KvInput::get("x"), KvOutput::found("0")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn timed_out_put_cannot_explain_a_read_before_its_call() {
    let ops = vec![
        done(2, 0, 10, KvInput::get("x"), KvOutput::found("1")),
        timed_out(1, 20, KvInput::put("x", "1")),
    ];
    let explanation = assert_illegal(ops, b"x");
    assert_eq!(explanation.blocking_index, 0);
}

#[test]
fn timed_out_put_once_seen_stays_applied() {
    let ops = vec![
        timed_out(1, 0, KvInput::put("x", "1")),
        done(2, 10, 20, KvInput::get("x"), KvOutput::found("1")),
        done(3, 30, 40, KvInput::get("x"), KvOutput::NOT_FOUND),
    ];
    assert_illegal(ops, b"x");
}

#[test]
fn timed_out_cas_takes_effect_only_if_it_would_have_swapped() {
    let swapped = vec![
        timed_out(1, 0, KvInput::cas("x", None, "a")),
        done(2, 10, 20, KvInput::get("x"), KvOutput::found("a")),
    ];
    assert_eq!(verdict(swapped), CheckResult::Ok);
    let impossible = vec![
        done(1, 0, 1, KvInput::put("x", "0"), KvOutput::Ok),
        timed_out(1, 2, KvInput::cas("x", None, "a")),
        done(2, 10, 20, KvInput::get("x"), KvOutput::found("a")),
    ];
    assert_illegal(impossible, b"x");
}

#[test]
fn unknown_output_ignores_a_recorded_return_time() {
    // The reply was lost after `ret`; the put may still apply later.
    let mut lost = timed_out(1, 0, KvInput::put("x", "1"));
    lost.ret = Some(10);
    let ops = vec![
        lost,
        done(2, 20, 30, KvInput::get("x"), KvOutput::NOT_FOUND),
        done(2, 40, 50, KvInput::get("x"), KvOutput::found("1")),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn timed_out_reads_are_ignored() {
    let ops = vec![
        timed_out(1, 0, KvInput::get("x")),
        done(1, 10, 20, KvInput::put("x", "1"), KvOutput::Ok),
    ];
    assert_eq!(verdict(ops), CheckResult::Ok);
}

#[test]
fn keys_are_checked_independently() {
    // Each key alone is fine; a write to "a" cannot explain a read of "b".
    let ops = vec![
        done(1, 0, 10, KvInput::put("a", "1"), KvOutput::Ok),
        done(2, 20, 30, KvInput::get("a"), KvOutput::found("1")),
        done(3, 0, 10, KvInput::put("b", "2"), KvOutput::Ok),
        done(3, 40, 50, KvInput::get("b"), KvOutput::found("1")),
        done(4, 5, 45, KvInput::get("c"), KvOutput::NOT_FOUND),
    ];
    let explanation = assert_illegal(ops, b"b");
    assert_eq!(explanation.key, "b\"b\"");
    assert_eq!(explanation.blocking_index, 3);
    assert_eq!(explanation.operations, 2);
}

#[test]
fn first_illegal_key_in_key_order_is_reported() {
    let ops = vec![
        done(1, 0, 10, KvInput::get("z"), KvOutput::found("1")),
        done(1, 20, 30, KvInput::get("m"), KvOutput::found("1")),
    ];
    assert_illegal(ops, b"m");
}

#[test]
fn explanation_names_the_operations_and_times() {
    let ops = vec![
        done(1, 100, 110, KvInput::put("x", "1"), KvOutput::Ok),
        done(2, 105, 150, KvInput::put("x", "2"), KvOutput::Ok),
        done(3, 200, 210, KvInput::get("x"), KvOutput::found("0")),
    ];
    let text = assert_illegal(ops, b"x").to_string();
    assert!(text.contains("key b\"x\""), "{text}");
    assert!(
        text.contains("#2 client 3 [200, 210] Get(b\"x\") -> Value(Some(b\"0\"))"),
        "{text}"
    );
    assert!(text.contains("longest linearizable prefix has 2"), "{text}");
}

#[test]
fn exhausted_budget_gives_unknown() {
    let ops: Vec<KvOp> = (0..50)
        .map(|i| done(i, 0, 100, KvInput::put("x", i.to_string()), KvOutput::Ok))
        .collect();
    let config = CheckConfig {
        max_steps_per_partition: 10,
        time_limit: None,
    };
    let result = check_with::<KvModel>(&KvHistory::from(ops), &config).unwrap();
    assert_eq!(
        result,
        CheckResult::Unknown {
            key: b"x".to_vec(),
            steps: 11
        }
    );
}

#[test]
fn return_before_call_is_an_error() {
    let ops = vec![done(1, 10, 5, KvInput::get("x"), KvOutput::NOT_FOUND)];
    assert_eq!(
        check::<KvModel>(&KvHistory::from(ops)),
        Err(HistoryError::ReturnBeforeCall {
            index: 0,
            call: 10,
            ret: 5
        })
    );
}
