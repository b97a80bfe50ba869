//! Server streams: order, clean ends, errors, cancellation, flow control.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use troupe_core::rpc::diag::{ByteBuf, Count, CountRequest, Echo};
use troupe_core::rpc::{RpcError, StatusCode};

use crate::support::{client, config, diag_server, wait_until};

fn count(from: u64, to: Option<u64>) -> CountRequest {
    CountRequest {
        from,
        to,
        fail_at_end: None,
    }
}

#[tokio::test]
async fn a_stream_delivers_every_item_in_order_and_ends_cleanly() {
    let (server, state) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    // Far more items than one credit window: flow control must keep granting.
    let n = 20_000;
    let mut stream = ch.stream::<Count>(&count(0, Some(n))).await.unwrap();
    let mut expected = 0;
    while let Some(item) = stream.next().await {
        assert_eq!(item.unwrap(), expected);
        expected += 1;
    }
    assert_eq!(expected, n);
    assert!(stream.next().await.is_none(), "an ended stream stays ended");
    wait_until(
        "the server's stream task ended",
        Duration::from_secs(10),
        || {
            state.streams_dropped.load(Ordering::SeqCst) == 1
                && server.stats().in_flight.load(Ordering::SeqCst) == 0
        },
    )
    .await;
}

#[tokio::test]
async fn a_failing_stream_ends_with_the_servers_status() {
    let (server, _) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    let req = CountRequest {
        from: 0,
        to: Some(3),
        fail_at_end: Some("disk on fire".into()),
    };
    let items: Vec<_> = ch.stream::<Count>(&req).await.unwrap().collect().await;
    assert_eq!(items.len(), 4);
    for (i, item) in items[..3].iter().enumerate() {
        assert_eq!(item.as_ref().unwrap(), &(i as u64));
    }
    match &items[3] {
        Err(RpcError::Remote { status, .. }) => {
            assert_eq!(status.code, StatusCode::Internal);
            assert_eq!(status.message, "disk on fire");
        }
        other => panic!("expected the server's error, got {other:?}"),
    }
    let refused: Vec<_> = ch
        .stream::<Count>(&count(5, Some(1)))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(
        matches!(&refused[..], [Err(e)] if e.status().unwrap().code == StatusCode::InvalidRequest)
    );
}

#[tokio::test]
async fn dropping_the_consumer_stops_the_server_task() {
    let (server, state) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    let mut endless = ch.stream::<Count>(&count(0, None)).await.unwrap();
    for expected in 0..5 {
        assert_eq!(endless.next().await.unwrap().unwrap(), expected);
    }
    drop(endless);
    wait_until(
        "the endless stream's server task is gone",
        Duration::from_secs(10),
        || {
            state.streams_dropped.load(Ordering::SeqCst) == 1
                && server.stats().in_flight.load(Ordering::SeqCst) == 0
        },
    )
    .await;
}

#[tokio::test]
async fn a_stalled_consumer_holds_back_only_its_own_stream() {
    let (server, _) = diag_server(config()).await;
    let ch = client().channel(&server.local_addr().to_string());
    let mut stalled = ch.stream::<Count>(&count(0, None)).await.unwrap();
    assert_eq!(stalled.next().await.unwrap().unwrap(), 0);
    // The endless stream has filled its window and waits for credit; calls
    // on the same connection still go through.
    for i in 0..200u8 {
        assert_eq!(
            ch.call::<Echo>(&ByteBuf::from(vec![i]))
                .await
                .unwrap()
                .into_vec(),
            vec![i]
        );
    }
    assert_eq!(
        server.stats().in_flight.load(Ordering::SeqCst),
        1,
        "only the stream runs"
    );
    // Consuming again resumes it, in order.
    for expected in 1..5_000 {
        assert_eq!(stalled.next().await.unwrap().unwrap(), expected);
    }
}
