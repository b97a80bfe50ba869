//! A real peer process that dies, freezes and comes back.

use std::time::Duration;

use troupe_core::rpc::diag::{ByteBuf, Echo, Sleep};
use troupe_core::rpc::{CallOptions, RpcClient, RpcError};

use crate::support::{client, config, Peer};

#[tokio::test]
async fn a_peer_killed_mid_call_fails_the_call_and_a_restarted_peer_is_reconnected() {
    let mut peer = Peer::start("127.0.0.1:0").await;
    let client = client();
    let ch = client.channel(&peer.addr);
    assert_eq!(
        ch.call::<Echo>(&ByteBuf::from(vec![1]))
            .await
            .unwrap()
            .into_vec(),
        vec![1]
    );

    // A call that is running on the peer when the peer dies.
    let pending = {
        let ch = ch.clone();
        tokio::spawn(async move {
            ch.call_with::<Sleep>(&600_000, CallOptions::timeout(Duration::from_secs(120)))
                .await
        })
    };
    peer.wait_line("sleep 600000", Duration::from_secs(30))
        .await;
    peer.kill();
    let err = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .expect("the call must not hang until its deadline")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, RpcError::ConnectionLost { .. }), "{err:?}");
    assert!(err.may_have_executed());

    // While the peer is down, calls fail (fast, with fail_fast).
    let down = ch
        .call_with::<Echo>(
            &ByteBuf::from(vec![2]),
            CallOptions {
                timeout: Some(Duration::from_secs(10)),
                fail_fast: true,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(down, RpcError::Connect { .. }), "{down:?}");
    assert!(!down.may_have_executed());

    // The peer comes back on the same address: the same channel reconnects.
    let restarted = Peer::start(&peer.addr).await;
    assert_eq!(restarted.addr, peer.addr);
    let answer = ch
        .call_with::<Echo>(
            &ByteBuf::from(vec![3]),
            CallOptions::timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(answer, vec![3]);
}

#[tokio::test]
async fn a_frozen_peer_is_detected_by_keepalive_before_the_deadline() {
    let peer = Peer::start("127.0.0.1:0").await;
    let mut cfg = config();
    cfg.keepalive_interval = Duration::from_millis(100);
    cfg.keepalive_timeout = Duration::from_secs(1);
    let ch = RpcClient::new(cfg).channel(&peer.addr);
    assert_eq!(
        ch.call::<Echo>(&ByteBuf::from(vec![1]))
            .await
            .unwrap()
            .into_vec(),
        vec![1]
    );

    // SIGSTOP: the socket stays open but nothing answers (a gray failure).
    peer.freeze().await;
    let err = ch
        .call_with::<Echo>(
            &ByteBuf::from(vec![2]),
            CallOptions::timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap_err();
    match &err {
        RpcError::ConnectionLost { reason, .. } => {
            assert!(reason.contains("heard nothing"), "{reason}")
        }
        other => panic!("expected ConnectionLost from the keepalive, got {other:?}"),
    }
    peer.signal("CONT");
    // Once it thaws, a new connection works again.
    let answer = ch
        .call_with::<Echo>(
            &ByteBuf::from(vec![3]),
            CallOptions::timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    assert_eq!(answer, vec![3]);
}
