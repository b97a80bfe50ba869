//! Unary calls and one-way messages over one connection.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};
use troupe_core::rpc::diag::{ByteBuf, Echo, Sleep, Tally};
use troupe_core::rpc::{
    encoded_len, CallContext, CallOptions, Protocol, RpcClient, RpcError, RpcServer, Service,
    Status, StatusCode,
};

use crate::support::{client, config, diag_server, wait_until};

/// Answers with the id it was sent, after a delay it was told to take, so
/// answers come back in a different order than the calls went out.
struct Delayed;
#[derive(Serialize, Deserialize)]
struct DelayedRequest {
    id: u64,
    delay_ms: u64,
}
impl Protocol for Delayed {
    const NAME: &'static str = "test.delayed";
    type Request = DelayedRequest;
    type Response = u64;
}
struct DelayedService;
impl Service for DelayedService {
    type Protocol = Delayed;
    async fn call(&self, req: DelayedRequest, _cx: CallContext) -> Result<u64, Status> {
        tokio::time::sleep(Duration::from_millis(req.delay_ms)).await;
        Ok(req.id)
    }
}

#[tokio::test]
async fn concurrent_calls_on_one_connection_each_get_their_own_answer() {
    let server = RpcServer::new(config())
        .with_service(DelayedService)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let ch = client().channel(&server.local_addr().to_string());
    let calls = (0..500u64).map(|id| {
        let ch = ch.clone();
        async move {
            // Later calls finish first: replies arrive out of order.
            let req = DelayedRequest {
                id,
                delay_ms: (500 - id) % 40,
            };
            (id, ch.call::<Delayed>(&req).await)
        }
    });
    for (id, answer) in join_all(calls).await {
        assert_eq!(answer.unwrap(), id, "call {id} got another call's answer");
    }
    assert_eq!(
        server.stats().open_connections.load(Ordering::SeqCst),
        1,
        "all calls shared one connection"
    );
}

#[tokio::test]
async fn a_message_at_the_limit_passes_and_one_byte_over_is_refused() {
    let mut cfg = config();
    cfg.max_message_bytes = 64 * 1024;
    let (server, _) = diag_server(cfg.clone()).await;
    let ch = RpcClient::new(cfg.clone()).channel(&server.local_addr().to_string());

    // Find the payload whose encoding is exactly the limit.
    let mut len = cfg.max_message_bytes;
    while encoded_len(&ByteBuf::from(vec![0u8; len])).unwrap() > cfg.max_message_bytes {
        len -= 1;
    }
    let at_limit = ByteBuf::from(vec![0xabu8; len]);
    assert_eq!(encoded_len(&at_limit).unwrap(), cfg.max_message_bytes);
    assert_eq!(ch.call::<Echo>(&at_limit).await.unwrap(), at_limit);

    let over = ByteBuf::from(vec![0xabu8; len + 1]);
    match ch.call::<Echo>(&over).await {
        Err(RpcError::MessageTooLarge {
            what: "request",
            size,
            max,
        }) => {
            assert_eq!(
                (size, max),
                (cfg.max_message_bytes + 1, cfg.max_message_bytes)
            );
        }
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    // Refusing it cost nothing: the same connection still serves.
    assert_eq!(
        ch.call::<Echo>(&ByteBuf::from(b"ok".to_vec()))
            .await
            .unwrap()
            .into_vec(),
        b"ok"
    );
    assert_eq!(server.stats().open_connections.load(Ordering::SeqCst), 1);
}

/// Answers with as many bytes as it is asked for.
struct Fill;
impl Protocol for Fill {
    const NAME: &'static str = "test.fill";
    type Request = usize;
    type Response = Vec<u8>;
}
struct FillService;
impl Service for FillService {
    type Protocol = Fill;
    async fn call(&self, n: usize, _cx: CallContext) -> Result<Vec<u8>, Status> {
        Ok(vec![0x5a; n])
    }
}

#[tokio::test]
async fn a_response_over_the_limit_is_an_error_not_a_broken_connection() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    let server = RpcServer::new(cfg.clone())
        .with_service(FillService)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let ch = RpcClient::new(cfg).channel(&server.local_addr().to_string());
    let err = ch.call::<Fill>(&2000).await.unwrap_err();
    let status = err.status().expect("a status from the server");
    assert_eq!(status.code, StatusCode::Internal);
    assert!(status.message.contains("max_message_bytes"), "{status}");
    assert_eq!(ch.call::<Fill>(&10).await.unwrap(), vec![0x5a; 10]);
    assert_eq!(server.stats().open_connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn one_way_messages_are_delivered() {
    let (server, state) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    for _ in 0..100 {
        ch.notify::<Tally>(&1).await.unwrap();
    }
    wait_until(
        "100 one-way messages arrived",
        Duration::from_secs(10),
        || state.tally.load(Ordering::SeqCst) == 100,
    )
    .await;
    // A call on the same connection sees them all.
    assert_eq!(ch.call::<Tally>(&0).await.unwrap(), 100);
}

#[tokio::test]
async fn a_slow_handler_times_out_and_is_cancelled_on_the_server() {
    let (server, state) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    let err = ch
        .call_with::<Sleep>(&60_000, CallOptions::timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Timeout { .. }), "{err:?}");
    assert!(err.may_have_executed() && err.is_retryable());
    assert_eq!(state.sleeps_started.load(Ordering::SeqCst), 1);
    wait_until(
        "the abandoned handler is gone",
        Duration::from_secs(10),
        || server.stats().in_flight.load(Ordering::SeqCst) == 0,
    )
    .await;
}

/// Claims to be `diag.sleep` but sends a different request type.
struct NotSleep;
impl Protocol for NotSleep {
    const NAME: &'static str = "diag.sleep";
    type Request = String;
    type Response = ();
}

/// A service the server does not have.
struct Missing;
impl Protocol for Missing {
    const NAME: &'static str = "test.missing";
    type Request = ();
    type Response = ();
}

#[tokio::test]
async fn unknown_services_and_undecodable_requests_get_clear_statuses() {
    let (server, _) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    let err = ch.call::<Missing>(&()).await.unwrap_err();
    assert_eq!(err.status().unwrap().code, StatusCode::UnknownService);
    assert!(!err.is_retryable());

    let err = ch
        .call::<NotSleep>(&"not a number".to_string())
        .await
        .unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(status.code, StatusCode::InvalidRequest);
    assert!(status.message.contains("diag.sleep"), "{status}");
    // Neither broke the connection.
    assert_eq!(
        ch.call::<Echo>(&ByteBuf::from(vec![9]))
            .await
            .unwrap()
            .into_vec(),
        vec![9]
    );
}
