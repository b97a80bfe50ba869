//! Hostile or broken peers: wrong tokens, no handshake, garbage bytes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use troupe_core::rpc::diag::{ByteBuf, Echo};
use troupe_core::rpc::{ClusterToken, RpcClient, RpcConfig, RpcError};

use crate::support::{client, config, diag_server, wait_until};

#[tokio::test]
async fn a_wrong_token_is_refused_and_nothing_is_dispatched() {
    let (server, _) = diag_server(config()).await;
    let intruder = RpcClient::new(RpcConfig::new(ClusterToken::new("wrong").unwrap()));
    let err = intruder
        .channel(&server.local_addr().to_string())
        .call::<Echo>(&ByteBuf::from(b"hi".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Unauthenticated { .. }), "{err:?}");
    assert!(
        !err.is_retryable(),
        "a wrong token never gets better by retrying"
    );
    // The client gives up as soon as the server's proof fails; the server
    // notices when the client hangs up.
    wait_until(
        "the server counts the refusal",
        Duration::from_secs(10),
        || server.stats().refused.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(server.stats().dispatched.load(Ordering::SeqCst), 0);
}

/// Reads until the server closes the socket; returns what it sent first.
async fn read_until_closed(socket: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .ok();
    got
}

#[tokio::test]
async fn a_request_without_handshake_is_refused_and_not_dispatched() {
    let (server, _) = diag_server(config()).await;
    let mut socket = TcpStream::connect(server.local_addr()).await.unwrap();
    // A well-formed Request frame for diag.echo, but no handshake first.
    let mut frame = Vec::new();
    let name = b"diag.echo";
    let body = [2u8, b'h', b'i'];
    let len = 1 + 8 + 4 + 1 + name.len() + body.len();
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    frame.push(1);
    frame.extend_from_slice(&1u64.to_le_bytes());
    frame.extend_from_slice(&1000u32.to_le_bytes());
    frame.push(name.len() as u8);
    frame.extend_from_slice(name);
    frame.extend_from_slice(&body);
    socket.write_all(&frame).await.unwrap();
    assert!(read_until_closed(&mut socket).await.is_empty());
    wait_until(
        "the connection is counted as refused",
        Duration::from_secs(10),
        || server.stats().refused.load(Ordering::SeqCst) == 1,
    )
    .await;
    assert_eq!(server.stats().dispatched.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn random_bytes_close_that_connection_and_no_other() {
    let (server, _) = diag_server(config()).await;
    let addr = server.local_addr().to_string();
    let good = client().channel(&addr);
    assert_eq!(
        good.call::<Echo>(&ByteBuf::from(vec![1]))
            .await
            .unwrap()
            .into_vec(),
        vec![1]
    );

    let mut garbage = TcpStream::connect(&addr).await.unwrap();
    let noise: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
    // The server may close before reading everything; that is fine.
    let _ = garbage.write_all(&noise).await;
    let _ = read_until_closed(&mut garbage).await;

    // The good client never noticed.
    for i in 0..50u8 {
        assert_eq!(
            good.call::<Echo>(&ByteBuf::from(vec![i]))
                .await
                .unwrap()
                .into_vec(),
            vec![i]
        );
    }
    assert_eq!(server.stats().open_connections.load(Ordering::SeqCst), 1);
}
