//! Unit tests of the pure engine against the in-memory view.

use super::mem::MemKv;
use super::view::{KvView, Mutation, Overlay};
use crate::command::*;
use crate::model::{EventKind, LeaseId};
use crate::response::*;

fn put(key: &str, value: &str) -> Operation {
    Operation::Put(put_req(key, value, None))
}

fn put_req(key: &str, value: &str, lease: Option<u64>) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease: lease.map(LeaseId),
        prev_kv: true,
    }
}

fn run(kv: &mut MemKv, op: Operation) -> Response {
    kv.apply(&Command::new(op)).response
}

fn keys(kv: &MemKv) -> Vec<String> {
    kv.kvs
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}

#[test]
fn puts_bump_revision_and_track_versions() {
    let mut kv = MemKv::default();
    assert_eq!(run(&mut kv, put("a", "1")).revision, 1);
    assert_eq!(run(&mut kv, put("b", "1")).revision, 2);
    let r = run(&mut kv, put("a", "2"));
    assert_eq!(r.revision, 3);
    let Ok(Outcome::Put(out)) = r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(out.prev_kv.map(|p| p.value), Some(b"1".to_vec()));
    let a = &kv.kvs[&b"a".to_vec()];
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 3, 2));
    assert_eq!(
        kv.history.iter().map(|h| h.revision).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

#[test]
fn delete_of_nothing_keeps_revision_and_emits_no_events() {
    let mut kv = MemKv::default();
    run(&mut kv, put("a", "1"));
    let r = run(
        &mut kv,
        Operation::Delete(DeleteRequest {
            selector: KeySelector::Key("zz".into()),
            prev_kv: false,
        }),
    );
    assert_eq!(r.revision, 1);
    assert_eq!(kv.history.len(), 1);
}

#[test]
fn prefix_delete_is_one_revision_and_spares_other_keys() {
    let mut kv = MemKv::default();
    for k in ["app/1", "app/2", "apq", "ap"] {
        run(&mut kv, put(k, "v"));
    }
    let r = run(
        &mut kv,
        Operation::Delete(DeleteRequest {
            selector: KeySelector::Prefix("app/".into()),
            prev_kv: true,
        }),
    );
    assert_eq!(r.revision, 5);
    let Ok(Outcome::Delete(out)) = r.outcome else {
        panic!("{r:?}")
    };
    assert_eq!(out.deleted, 2);
    assert_eq!(out.prev_kvs.len(), 2);
    assert_eq!(keys(&kv), ["ap", "apq"]);
    let last = kv.history.last().expect("events");
    assert_eq!(last.revision, 5);
    assert!(last
        .events
        .iter()
        .all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == 5));
    // Recreating a deleted key restarts its version and create revision.
    run(&mut kv, put("app/1", "again"));
    let k = &kv.kvs[&b"app/1".to_vec()];
    assert_eq!((k.create_revision, k.version), (6, 1));
}

#[test]
fn txn_compares_pick_the_branch_and_run_in_one_revision() {
    let mut kv = MemKv::default();
    run(&mut kv, put("lock", "free"));
    let cas = |expected: &str, new: &str| {
        Operation::Txn(TxnRequest {
            compares: vec![Compare {
                key: "lock".into(),
                op: CompareOp::Equal,
                target: CompareTarget::Value(expected.into()),
            }],
            success: vec![
                TxnOp::Put(put_req("lock", new, None)),
                TxnOp::Put(put_req("owner", "me", None)),
            ],
            failure: vec![TxnOp::Range(RangeRequest {
                selector: KeySelector::Key("lock".into()),
                limit: None,
            })],
        })
    };
    let r = run(&mut kv, cas("free", "held"));
    assert_eq!(r.revision, 2, "two puts, one revision");
    let Ok(Outcome::Txn(t)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert!(t.succeeded);
    assert_eq!(kv.history.last().map(|h| h.events.len()), Some(2));

    let r = run(&mut kv, cas("free", "stolen"));
    assert_eq!(
        r.revision, 2,
        "a failed compare with a read-only branch changes nothing"
    );
    let Ok(Outcome::Txn(t)) = &r.outcome else {
        panic!("{r:?}")
    };
    assert!(!t.succeeded);
    let [OpOutcome::Range(read)] = t.results.as_slice() else {
        panic!("{t:?}")
    };
    assert_eq!(read.kvs[0].value, b"held");

    // Version / mod revision / existence compares.
    let guarded = |cmp: Compare| {
        Operation::Txn(TxnRequest {
            compares: vec![cmp],
            success: vec![TxnOp::Put(put_req("x", "1", None))],
            failure: vec![],
        })
    };
    let ok = |r: Response| {
        matches!(
            r.outcome,
            Ok(Outcome::Txn(TxnOutcome {
                succeeded: true,
                ..
            }))
        )
    };
    assert!(ok(run(&mut kv, guarded(Compare::absent("x")))));
    assert!(!ok(run(&mut kv, guarded(Compare::absent("x")))));
    assert!(ok(run(
        &mut kv,
        guarded(Compare {
            key: "x".into(),
            op: CompareOp::Equal,
            target: CompareTarget::ModRevision(3)
        })
    )));
    assert!(ok(run(
        &mut kv,
        guarded(Compare {
            key: "x".into(),
            op: CompareOp::Greater,
            target: CompareTarget::Version(1)
        })
    )));
    assert!(ok(run(
        &mut kv,
        guarded(Compare {
            key: "x".into(),
            op: CompareOp::Less,
            target: CompareTarget::CreateRevision(4)
        })
    )));
    assert!(!ok(run(
        &mut kv,
        guarded(Compare {
            key: "x".into(),
            op: CompareOp::NotEqual,
            target: CompareTarget::CreateRevision(3)
        })
    )));
}

#[test]
fn txn_ops_see_earlier_ops_and_a_rejected_op_undoes_the_whole_txn() {
    let mut kv = MemKv::default();
    let r = run(
        &mut kv,
        Operation::Txn(TxnRequest {
            compares: vec![],
            success: vec![
                TxnOp::Put(put_req("k", "1", None)),
                TxnOp::Range(RangeRequest {
                    selector: KeySelector::Prefix("k".into()),
                    limit: None,
                }),
            ],
            failure: vec![],
        }),
    );
    let Ok(Outcome::Txn(t)) = &r.outcome else {
        panic!("{r:?}")
    };
    let OpOutcome::Range(read) = &t.results[1] else {
        panic!("{t:?}")
    };
    assert_eq!(read.kvs.len(), 1);

    let before = kv.clone();
    let r = run(
        &mut kv,
        Operation::Txn(TxnRequest {
            compares: vec![],
            success: vec![
                TxnOp::Put(put_req("k", "2", None)),
                TxnOp::Put(put_req("j", "1", Some(77))),
            ],
            failure: vec![],
        }),
    );
    assert_eq!(
        r.outcome,
        Err(CommandError::LeaseNotFound { id: LeaseId(77) })
    );
    assert_eq!(kv, before, "nothing of a rejected txn is applied");
}

#[test]
fn lease_revoke_deletes_attached_keys_in_one_revision() {
    let mut kv = MemKv::default();
    let grant = run(
        &mut kv,
        Operation::LeaseGrant {
            id: LeaseId(5),
            ttl_ms: 1000,
        },
    );
    assert_eq!(grant.revision, 0, "granting changes no key");
    assert_eq!(
        run(
            &mut kv,
            Operation::LeaseGrant {
                id: LeaseId(5),
                ttl_ms: 1
            }
        )
        .outcome,
        Err(CommandError::LeaseExists { id: LeaseId(5) })
    );
    assert_eq!(
        run(
            &mut kv,
            Operation::LeaseGrant {
                id: LeaseId(6),
                ttl_ms: 0
            }
        )
        .outcome,
        Err(CommandError::InvalidTtl)
    );
    run(&mut kv, Operation::Put(put_req("node/1", "up", Some(5))));
    run(&mut kv, Operation::Put(put_req("node/2", "up", Some(5))));
    run(&mut kv, Operation::Put(put_req("keep", "v", None)));
    // Re-putting without the lease detaches the key: it survives the revoke.
    run(&mut kv, Operation::Put(put_req("node/2", "manual", None)));
    assert_eq!(kv.leases[&LeaseId(5)].keys.len(), 1);

    let r = run(&mut kv, Operation::LeaseRevoke { id: LeaseId(5) });
    assert_eq!(
        r.outcome,
        Ok(Outcome::LeaseRevoked {
            id: LeaseId(5),
            deleted: 1
        })
    );
    assert_eq!(r.revision, 5);
    assert_eq!(keys(&kv), ["keep", "node/2"]);
    assert!(kv.leases.is_empty());
    assert_eq!(
        run(&mut kv, Operation::LeaseRevoke { id: LeaseId(5) }).outcome,
        Err(CommandError::LeaseNotFound { id: LeaseId(5) })
    );
    // Put with an unknown lease is rejected.
    assert_eq!(
        run(&mut kv, Operation::Put(put_req("x", "v", Some(5)))).outcome,
        Err(CommandError::LeaseNotFound { id: LeaseId(5) })
    );
}

#[test]
fn deleting_a_leased_key_detaches_it() {
    let mut kv = MemKv::default();
    run(
        &mut kv,
        Operation::LeaseGrant {
            id: LeaseId(1),
            ttl_ms: 10,
        },
    );
    run(&mut kv, Operation::Put(put_req("a", "v", Some(1))));
    run(
        &mut kv,
        Operation::Delete(DeleteRequest {
            selector: KeySelector::Key("a".into()),
            prev_kv: false,
        }),
    );
    assert!(kv.leases[&LeaseId(1)].keys.is_empty());
    let r = run(&mut kv, Operation::LeaseRevoke { id: LeaseId(1) });
    assert_eq!(
        r.outcome,
        Ok(Outcome::LeaseRevoked {
            id: LeaseId(1),
            deleted: 0
        })
    );
    assert_eq!(r.revision, 2, "revoking an empty lease changes no key");
}

#[test]
fn retried_write_is_applied_once_and_older_sequence_is_stale() {
    let mut kv = MemKv::default();
    let first = kv.apply(&Command::with_session(9, 1, put("a", "1")));
    let first_revision = kv.revision;
    let retry = kv.apply(&Command::with_session(9, 1, put("a", "1")));
    assert_eq!(retry.response, first.response);
    assert!(retry.mutations.is_empty() && retry.events.is_none());
    assert_eq!(kv.revision, first_revision);
    assert_eq!(kv.kvs[&b"a".to_vec()].version, 1);

    kv.apply(&Command::with_session(9, 2, put("a", "2")));
    let stale = kv.apply(&Command::with_session(9, 1, put("a", "3")));
    assert_eq!(
        stale.response.outcome,
        Err(CommandError::StaleSequence {
            client_id: 9,
            seq: 1,
            last_seq: 2
        })
    );
    assert_eq!(kv.kvs[&b"a".to_vec()].value, b"2");
    // Another client is independent; rejected results are remembered too.
    let rejected = kv.apply(&Command::with_session(
        4,
        1,
        Operation::LeaseRevoke { id: LeaseId(3) },
    ));
    assert!(rejected
        .mutations
        .iter()
        .any(|m| matches!(m, Mutation::PutSession { client_id: 4, .. })));
    assert_eq!(
        kv.apply(&Command::with_session(4, 1, put("z", "z")))
            .response,
        rejected.response
    );
    assert!(!kv.kvs.contains_key(b"z".as_slice()));
}

#[test]
fn range_limit_reports_more() {
    let mut kv = MemKv::default();
    for k in ["p/a", "p/b", "p/c", "q"] {
        run(&mut kv, put(k, "v"));
    }
    let read = |limit| {
        super::range(
            &kv,
            &RangeRequest {
                selector: KeySelector::Prefix("p/".into()),
                limit,
            },
        )
        .expect("infallible")
    };
    let two = read(Some(2));
    assert_eq!(
        two.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        [b"p/a".to_vec(), b"p/b".to_vec()]
    );
    assert!(two.more);
    let three = read(Some(3));
    assert!(!three.more);
    assert_eq!(read(None).kvs.len(), 3);
    assert_eq!(read(Some(0)).kvs.len(), 0);
}

#[test]
fn a_read_over_the_page_budget_is_paged_and_its_pages_join_up() {
    let mut kv = MemKv::default();
    let value = "v".repeat(1000);
    for i in 0..10 {
        run(&mut kv, put(&format!("p/{i}"), &value));
    }
    run(&mut kv, put("q", &value));
    // A budget of two and a half key-values: pages of two.
    let budget = 2 * (3 + 1000 + 64) + 500;
    let mut request = RangeRequest::prefix("p/", None);
    let mut pages = Vec::new();
    loop {
        let page = super::engine::range_paged(&kv, &request, budget).expect("infallible");
        let last = page.kvs.last().map(|kv| kv.key.clone());
        pages.push(page.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>());
        if !page.more {
            break;
        }
        request = request
            .after(
                &last.expect("a page with more is not empty"),
                page.kvs.len() as u64,
            )
            .expect("a prefix read continues");
    }
    assert_eq!(pages.len(), 5);
    assert!(pages.iter().all(|p| p.len() == 2));
    let all: Vec<Vec<u8>> = pages.concat();
    let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("p/{i}").into_bytes()).collect();
    assert_eq!(
        all, expected,
        "every key once, in order, and none outside the prefix"
    );
    // A key-value larger than the budget is still read, alone.
    let alone =
        super::engine::range_paged(&kv, &RangeRequest::prefix("p/", None), 10).expect("infallible");
    assert_eq!((alone.kvs.len(), alone.more), (1, true));
    // A limit still applies within the budget.
    let limited = super::engine::range_paged(&kv, &RangeRequest::prefix("p/", Some(1)), budget)
        .expect("infallible");
    assert_eq!((limited.kvs.len(), limited.more), (1, true));
}

#[test]
fn overlay_scan_merges_pending_writes_under_a_limit() {
    let mut kv = MemKv::default();
    for k in ["a", "b", "c", "d"] {
        run(&mut kv, put(k, "base"));
    }
    let mut overlay = Overlay::new(&kv);
    overlay.record(Mutation::DeleteKv(b"a".to_vec()));
    overlay.record(Mutation::DeleteKv(b"b".to_vec()));
    overlay.record(Mutation::PutKv(crate::model::KeyValue {
        key: b"bb".to_vec(),
        value: b"new".to_vec(),
        create_revision: 9,
        mod_revision: 9,
        version: 1,
        lease: None,
    }));
    let got = overlay
        .scan(&KeySelector::Prefix(Vec::new()), Some(2))
        .expect("infallible");
    assert_eq!(
        got.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        [b"bb".to_vec(), b"c".to_vec()]
    );
    assert_eq!(overlay.get(b"a").expect("infallible"), None);
    assert_eq!(overlay.revision().expect("infallible"), 4);
}

fn expire(kv: &mut MemKv, elapsed_ms: u64, idle_ms: u64) -> (u64, u64) {
    match run(
        kv,
        Operation::ExpireSessions {
            elapsed_ms,
            idle_ms,
        },
    )
    .outcome
    {
        Ok(Outcome::SessionsExpired { expired, clock_ms }) => (expired, clock_ms),
        other => panic!("expected an expiry, got {other:?}"),
    }
}

#[test]
fn sessions_idle_for_the_retention_expire_and_used_ones_stay() {
    let mut kv = MemKv::default();
    kv.apply(&Command::with_session(1, 1, put("a", "1")));
    kv.apply(&Command::with_session(2, 1, put("b", "1")));
    let revision = kv.revision;
    assert_eq!(
        expire(&mut kv, 600, 1_000),
        (0, 600),
        "nothing idle long enough"
    );
    // Client 2 writes at clock 600; client 1 stays idle since 0.
    kv.apply(&Command::with_session(2, 2, put("b", "2")));
    assert_eq!(kv.sessions[&2].1, 600, "stamped with the clock of its use");
    assert_eq!(expire(&mut kv, 400, 1_000), (1, 1_000));
    assert_eq!(kv.sessions.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(kv.session_clock, 1_000);
    assert_eq!(kv.revision, revision + 1, "an expiry changes no key");
    // The live client goes on; its retry is still answered from the table.
    let third = kv.apply(&Command::with_session(2, 3, put("b", "3")));
    let retry = kv.apply(&Command::with_session(2, 3, put("b", "3")));
    assert_eq!(retry.response, third.response);
    assert!(retry.mutations.is_empty());
    assert_eq!(kv.kvs[&b"b".to_vec()].version, 3, "applied once");
}

#[test]
fn an_expired_session_s_next_or_retried_write_is_refused_and_changes_nothing() {
    let mut kv = MemKv::default();
    kv.apply(&Command::with_session(5, 1, put("k", "1")));
    kv.apply(&Command::with_session(5, 2, put("k", "2")));
    assert_eq!(expire(&mut kv, 10, 10), (1, 10));
    let before = kv.clone();
    for seq in [2, 3] {
        // 2: a retry of the last write; 3: the next one of an idle client.
        let refused = kv.apply(&Command::with_session(5, seq, put("k", "again")));
        assert_eq!(
            refused.response.outcome,
            Err(CommandError::SessionExpired { client_id: 5, seq })
        );
        assert!(refused.mutations.is_empty() && refused.events.is_none());
        assert_eq!(kv, before, "nothing applied, no session opened");
    }
    let message = CommandError::SessionExpired {
        client_id: 5,
        seq: 3,
    }
    .to_string();
    assert!(message.contains("--session-retention") && message.contains("new session"));
    // A new session (sequence 1) opens as always, even under an old id.
    let reopened = kv.apply(&Command::with_session(5, 1, put("k", "3")));
    assert!(reopened.response.outcome.is_ok());
    assert_eq!(kv.sessions[&5].0.seq, 1);
}

#[test]
fn expiry_is_deterministic_and_sees_sessions_written_earlier_in_the_same_entry() {
    // Two replicas applying the same commands end in the same state; an
    // overlay (several commands of one entry) sees a session put before
    // the expiry and stamps it with the clock before the expiry.
    let commands = vec![
        Command::with_session(1, 1, put("a", "1")),
        Command::new(Operation::ExpireSessions {
            elapsed_ms: 50,
            idle_ms: 50,
        }),
        Command::with_session(2, 1, put("b", "1")),
        Command::new(Operation::ExpireSessions {
            elapsed_ms: 30,
            idle_ms: 50,
        }),
    ];
    let (mut one, mut two) = (MemKv::default(), MemKv::default());
    for c in &commands {
        one.apply(c);
        two.apply(c);
    }
    assert_eq!(one, two);
    assert_eq!(one.sessions.keys().copied().collect::<Vec<_>>(), vec![2]);
    assert_eq!(one.sessions[&2].1, 50);
    let base = MemKv::default();
    let mut overlay = Overlay::new(&base);
    for c in &commands[..2] {
        for m in super::engine::apply(&overlay, c).unwrap().mutations {
            overlay.record(m);
        }
    }
    assert_eq!(overlay.session_stamps().unwrap(), vec![]);
    assert_eq!(overlay.session_clock().unwrap(), 50);
    assert!(overlay
        .pending()
        .sessions
        .get(&1)
        .is_some_and(|s| s.is_none()));
}
