//! Tests of the lost-write and double-placement checks.

use super::*;
use crate::linearizability::{KvHistory, KvInput, KvOutput, Operation};
use crate::record::{InstanceEvent, ProcessLife};

/// An operation called at `call`, returned at `ret`, told `output`.
fn op(
    call: u64,
    ret: Option<u64>,
    input: KvInput,
    output: Option<KvOutput>,
) -> Operation<KvInput, KvOutput> {
    Operation {
        client: 0,
        call,
        ret,
        input,
        output,
    }
}

/// An acknowledged put of `value` to `key` over `[call, ret]`.
fn put(key: &str, value: &str, call: u64, ret: u64) -> Operation<KvInput, KvOutput> {
    op(
        call,
        Some(ret),
        KvInput::put(key, value),
        Some(KvOutput::Ok),
    )
}

/// A read of `key` over `[call, ret]` that found `value`.
fn get(key: &str, value: Option<&str>, call: u64, ret: u64) -> Operation<KvInput, KvOutput> {
    let output = KvOutput::Value(value.map(|v| v.as_bytes().to_vec()));
    op(call, Some(ret), KvInput::get(key), Some(output))
}

/// A history of `ops`.
fn history(ops: Vec<Operation<KvInput, KvOutput>>) -> KvHistory {
    KvHistory::from(ops)
}

#[test]
fn clean_history_has_no_verdict() {
    let h = history(vec![
        put("k", "a", 0, 10),
        put("k", "b", 20, 30),
        get("k", Some("b"), 40, 50),
        put("j", "x", 0, 10),
        op(
            5,
            Some(15),
            KvInput::cas("j", Some(b"x"), "y"),
            Some(KvOutput::Swapped(true)),
        ),
        op(
            16,
            Some(18),
            KvInput::cas("j", Some(b"x"), "z"),
            Some(KvOutput::Swapped(false)),
        ),
        get("j", Some("y"), 20, 21),
    ]);
    assert_eq!(lost_writes(&h), Vec::<String>::new());
}

#[test]
fn concurrent_writes_may_end_either_way() {
    let h = history(vec![
        put("k", "a", 0, 30),
        put("k", "b", 10, 20),
        get("k", Some("a"), 40, 50),
    ]);
    assert!(lost_writes(&h).is_empty());
}

#[test]
fn acknowledged_write_after_the_final_value_is_lost() {
    let h = history(vec![
        put("k", "w", 0, 10),
        put("k", "a", 20, 30),
        put("k", "a2", 31, 35),
        get("k", Some("w"), 40, 50),
    ]);
    let found = lost_writes(&h);
    assert_eq!(found.len(), 1, "{found:?}");
    let text = &found[0];
    assert!(text.contains("key \"k\""), "{text}");
    assert!(text.contains("found \"w\""), "{text}");
    assert!(text.contains("put #0 of \"w\""), "{text}");
    assert!(
        text.contains("put #2 of \"a2\" (call 31, ret 35, acknowledged)"),
        "{text}"
    );
    assert!(text.contains("and 1 more"), "{text}");
}

#[test]
fn absent_final_value_after_acknowledged_put() {
    let h = history(vec![put("k", "a", 0, 10), get("k", None, 20, 30)]);
    let found = lost_writes(&h);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("found absent"), "{}", found[0]);
    assert!(found[0].contains("put #0 of \"a\""), "{}", found[0]);
}

#[test]
fn deletes_explain_absence_unless_overtaken() {
    let delete = |call, ret, output| op(call, ret, KvInput::delete("k"), output);
    // Put, then an acknowledged delete: absent is right.
    let ok = history(vec![
        put("k", "a", 0, 10),
        delete(20, Some(30), Some(KvOutput::Ok)),
        get("k", None, 40, 50),
    ]);
    assert!(lost_writes(&ok).is_empty());
    // A delete of unknown outcome concurrent with the put may explain it.
    let unknown = history(vec![
        put("k", "a", 0, 10),
        delete(5, None, None),
        get("k", None, 40, 50),
    ]);
    assert!(lost_writes(&unknown).is_empty());
    // An acknowledged delete, then an acknowledged put: the put was lost.
    let lost = history(vec![
        delete(0, Some(10), Some(KvOutput::Ok)),
        put("k", "a", 20, 30),
        get("k", None, 40, 50),
    ]);
    let found = lost_writes(&lost);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("written by delete #0"), "{}", found[0]);
    assert!(found[0].contains("put #1 of \"a\""), "{}", found[0]);
    // A value read after an acknowledged delete: the delete was lost.
    let undeleted = history(vec![
        put("k", "a", 0, 10),
        delete(20, Some(30), Some(KvOutput::Ok)),
        get("k", Some("a"), 40, 50),
    ]);
    let found = lost_writes(&undeleted);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("delete #1 of absent"), "{}", found[0]);
}

#[test]
fn value_written_by_nobody() {
    let h = history(vec![
        put("k", "a", 0, 10),
        op(
            12,
            Some(14),
            KvInput::cas("k", Some(b"q"), "c"),
            Some(KvOutput::Swapped(false)),
        ),
        get("k", Some("c"), 20, 30),
    ]);
    let found = lost_writes(&h);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].contains("final value written by nobody"),
        "{}",
        found[0]
    );
    // Nothing ever written, yet a value read.
    let ghost = history(vec![get("g", Some("boo"), 0, 1)]);
    assert!(lost_writes(&ghost)[0].contains("written by nobody"));
}

#[test]
fn unknown_write_may_be_final() {
    let h = history(vec![
        op(0, Some(10), KvInput::put("k", "u"), None),
        put("k", "a", 20, 30),
        get("k", Some("u"), 40, 50),
    ]);
    assert!(lost_writes(&h).is_empty());
    // Same with a timed-out CAS and no recorded return.
    let cas = history(vec![
        put("k", "a", 0, 10),
        op(15, None, KvInput::cas("k", Some(b"a"), "c"), None),
        get("k", Some("c"), 40, 50),
    ]);
    assert!(lost_writes(&cas).is_empty());
}

#[test]
fn key_without_final_read_gets_no_verdict() {
    // The only read overlaps a write that returns after it is called.
    let h = history(vec![
        put("k", "a", 0, 10),
        put("k", "b", 20, 60),
        get("k", Some("a"), 40, 50),
    ]);
    assert!(lost_writes(&h).is_empty());
    // No read at all.
    assert!(lost_writes(&history(vec![put("k", "a", 0, 10)])).is_empty());
    // A read whose outcome is unknown is no final read.
    let unknown = history(vec![
        put("k", "a", 0, 10),
        op(20, None, KvInput::get("k"), None),
    ]);
    assert!(lost_writes(&unknown).is_empty());
}

#[test]
fn final_read_is_the_latest() {
    // An earlier read saw "a" before "b" was written; the final one sees
    // "a" although "b" was acknowledged: lost.
    let h = history(vec![
        put("k", "a", 0, 10),
        get("k", Some("a"), 11, 12),
        put("k", "b", 20, 30),
        get("k", Some("a"), 40, 50),
        // Ignored for the ordering: never returned.
        op(45, None, KvInput::put("k", "late"), None),
    ]);
    let found = lost_writes(&h);
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("final read #3 (call 40)"), "{}", found[0]);
}

/// An instance event.
fn ev(node: usize, actor: &str, incarnation: u64, started: bool, at_ms: u64) -> InstanceEvent {
    InstanceEvent {
        node,
        actor: actor.into(),
        incarnation,
        started,
        at_ms,
    }
}

/// A process life.
fn life(node: usize, start_ms: u64, end_ms: Option<u64>) -> ProcessLife {
    ProcessLife {
        node,
        start_ms,
        end_ms,
    }
}

#[test]
fn stopped_then_started_elsewhere_is_fine() {
    let events = vec![
        ev(0, "actor-a", 1, true, 1000),
        ev(0, "actor-a", 1, false, 5000),
        ev(1, "actor-a", 2, true, 5000),
        // Same node twice does not count.
        ev(1, "actor-a", 3, true, 6000),
        // A stop without a start is ignored.
        ev(2, "actor-a", 9, false, 100),
    ];
    let lives = vec![life(0, 0, None), life(1, 0, None), life(2, 0, None)];
    assert!(double_placements(&events, &lives).is_empty());
}

#[test]
fn killed_node_ends_its_instances() {
    let events = vec![
        ev(0, "actor-a", 1, true, 1000),
        ev(2, "actor-a", 2, true, 8000),
    ];
    // Node 0 was killed at 7000 and restarted at 9000: no overlap.
    let lives = vec![
        life(0, 0, Some(7000)),
        life(0, 9000, None),
        life(2, 0, None),
    ];
    assert!(double_placements(&events, &lives).is_empty());
    // Restarted elsewhere before the kill: 7000 - 6000 ms at once.
    let early = vec![
        ev(0, "actor-a", 1, true, 1000),
        ev(2, "actor-a", 2, true, 6000),
    ];
    let found = double_placements(&early, &lives);
    assert_eq!(
        found,
        vec!["actor-a ran on node 0 (incarnation 1) and node 2 (incarnation 2) at once for 1000 ms from 6.0 s"]
    );
}

#[test]
fn partitioned_node_keeps_its_instance() {
    let events = vec![
        ev(0, "actor-b", 1, true, 1000),
        ev(2, "actor-b", 2, true, 12_300),
        ev(0, "actor-b", 1, false, 15_500),
        ev(1, "actor-c", 1, true, 2000),
    ];
    let lives = vec![life(0, 0, None), life(1, 0, None), life(2, 0, None)];
    assert_eq!(
        double_placements(&events, &lives),
        vec!["actor-b ran on node 0 (incarnation 1) and node 2 (incarnation 2) at once for 3200 ms from 12.3 s"]
    );
    // Neither ever stops: they overlap until the end.
    let forever = vec![
        ev(0, "actor-b", 1, true, 1000),
        ev(2, "actor-b", 2, true, 2000),
    ];
    let found = double_placements(&forever, &[]);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].ends_with("at once from 2.0 s until the end of the run"),
        "{}",
        found[0]
    );
}
