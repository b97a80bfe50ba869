//! The client's pure rules and its refresher.

use super::*;

/// `NotLeader` from member 1, with the leader it names, if any.
fn not_leader(leader: Option<&str>) -> Attempt {
    Attempt::Store(GcsError::NotLeader {
        member: 1,
        leader: leader.map(|addr| (2, addr.into())),
    })
}

/// A connection to member `a` refused.
fn refused() -> Attempt {
    Attempt::Rpc(RpcError::Connect {
        addr: "a".into(),
        reason: "refused".into(),
    })
}

/// A connection to member `a` lost mid-call.
fn lost() -> Attempt {
    Attempt::Rpc(RpcError::ConnectionLost {
        addr: "a".into(),
        reason: "eof".into(),
    })
}

#[test]
fn a_client_used_from_a_second_runtime_refreshes_its_members_there() {
    let token = troupe_core::rpc::ClusterToken::new("refresher-test-token").unwrap();
    let rpc = RpcClient::new(troupe_core::rpc::RpcConfig::new(token));
    // No member listens there: every request fails fast.
    let mut config = ClientConfig::new(vec!["127.0.0.1:1".into()]);
    config.request_timeout = Duration::from_millis(300);
    config.no_leader_grace = Duration::from_millis(100);
    let client = GcsClient::new(rpc, config).unwrap();
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    first.block_on(async {
        assert!(client.get("k").await.is_err());
        assert!(client.refresher_running());
    });
    drop(first);
    assert!(
        !client.refresher_running(),
        "the first runtime took its refresher with it"
    );
    runtime().block_on(async {
        assert!(client.get("k").await.is_err());
        assert!(
            client.refresher_running(),
            "a request on the second runtime starts it again"
        );
    });
}

#[test]
fn no_known_leader_for_the_grace_with_every_member_asked_gives_up() {
    let (t0, grace) = (Instant::now(), Duration::from_secs(2));
    let no_leader = not_leader(None);
    let down = refused();
    let hint = not_leader(Some("b:1"));
    let mut l = Leaderless::default();
    assert!(!l.gave_up(&no_leader, t0, 3, grace));
    assert!(
        !l.gave_up(&down, t0 + grace, 3, grace),
        "one member not asked"
    );
    assert!(l.gave_up(&down, t0 + grace, 3, grace));
    // A member that knows a leader starts the clock again (an election
    // finished).
    let mut l = Leaderless::default();
    for _ in 0..5 {
        assert!(!l.gave_up(&no_leader, t0, 3, grace));
    }
    assert!(!l.gave_up(&hint, t0 + grace, 3, grace));
    assert!(!l.gave_up(&down, t0 + grace, 3, grace));
    assert!(!l.gave_up(&down, t0 + grace * 2 - Duration::from_millis(1), 3, grace));
    assert!(l.gave_up(&down, t0 + grace * 2, 3, grace));
}

#[test]
fn a_paged_read_continues_after_its_last_key_until_done_or_its_limit() {
    let kv = |key: &str| KeyValue {
        key: key.as_bytes().to_vec(),
        value: Vec::new(),
        create_revision: 1,
        mod_revision: 1,
        version: 1,
        lease: None,
    };
    let page = |keys: &[&str], more| RangeRead {
        revision: 7,
        kvs: keys.iter().map(|k| kv(k)).collect(),
        more,
    };
    let all = RangeRequest::prefix("p/", None);
    assert_eq!(next_page(&all, &page(&["p/a", "p/b"], false)), None);
    let next = next_page(&all, &page(&["p/a", "p/b"], true)).expect("more to read");
    assert!(!next.selector.matches(b"p/b") && next.selector.matches(b"p/c"));
    assert_eq!(next.limit, None);
    let limited = RangeRequest::prefix("p/", Some(2));
    assert_eq!(
        next_page(&limited, &page(&["p/a", "p/b"], true)),
        None,
        "limit reached"
    );
    let rest = next_page(&RangeRequest::prefix("p/", Some(5)), &page(&["p/a"], true));
    assert_eq!(rest.map(|r| r.limit), Some(Some(4)));
}

#[test]
fn only_a_refused_connection_or_not_the_leader_prove_a_write_was_not_applied() {
    let not_leader = not_leader(None);
    let refused = refused();
    assert!(!may_have_applied(&not_leader) && !may_have_applied(&refused));
    let lost = lost();
    let busy = Attempt::Store(GcsError::Unavailable("taking over".into()));
    assert!(may_have_applied(&lost) && may_have_applied(&busy));
}

#[test]
fn leader_hints_redirect_and_other_errors_rotate_or_fail() {
    let hint = not_leader(Some("b:1"));
    assert_eq!(after_error(&hint), Next::Redirect("b:1".into()));
    let no_hint = not_leader(None);
    assert_eq!(after_error(&no_hint), Next::TryAnother);
    let down = refused();
    assert_eq!(after_error(&down), Next::TryAnother);
    let lost = lost();
    assert_eq!(after_error(&lost), Next::TryAnother);
    let auth = Attempt::Rpc(RpcError::Unauthenticated { addr: "a".into() });
    assert!(matches!(
        after_error(&auth),
        Next::Fail(GcsClientError::Transport(_))
    ));
    let compacted = Attempt::Store(GcsError::Compacted {
        requested: 1,
        compacted_at: 5,
    });
    assert!(matches!(
        after_error(&compacted),
        Next::Fail(GcsClientError::Rejected(_))
    ));
}
