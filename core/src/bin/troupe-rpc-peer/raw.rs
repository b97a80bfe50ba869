//! The plain-TCP reference the transport is measured against: the same
//! length-prefixed frames over one connection, with no ids, no
//! multiplexing, no auth and no serialisation. Nothing can be faster over
//! the same socket.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Echoes every frame back, flushing when no more input is buffered.
pub async fn serve_echo(listen: &str) -> anyhow::Result<()> {
    let listener = super::bind_retrying(listen).await?;
    super::say(&format!("listening {}", listener.local_addr()?));
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(async move {
            let (r, w) = socket.into_split();
            let mut r = BufReader::with_capacity(64 * 1024, r);
            let mut w = BufWriter::with_capacity(64 * 1024, w);
            let mut buf = Vec::new();
            loop {
                let Ok(len) = r.read_u32().await else { return };
                buf.resize(len as usize, 0);
                if r.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let ok = w.write_u32(len).await.is_ok() && w.write_all(&buf).await.is_ok();
                if !ok || (r.buffer().is_empty() && w.flush().await.is_err()) {
                    return;
                }
            }
        });
    }
}

/// One frame at a time: write, wait for the echo, repeat. Returns each
/// round trip's latency.
pub async fn ping_pong(
    addr: &str,
    payload: usize,
    run_for: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut socket = TcpStream::connect(addr)
        .await
        .context("connecting to raw-echo")?;
    socket.set_nodelay(true)?;
    let mut frame = (payload as u32).to_be_bytes().to_vec();
    frame.resize(4 + payload, 7);
    let mut back = vec![0u8; 4 + payload];
    let mut latencies = Vec::new();
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        let start = Instant::now();
        socket.write_all(&frame).await?;
        socket.read_exact(&mut back).await?;
        latencies.push(start.elapsed());
    }
    Ok(latencies)
}

/// Keeps `depth` frames outstanding on one connection for `run_for`;
/// returns how many echoes came back.
pub async fn pipelined(
    addr: &str,
    payload: usize,
    depth: usize,
    run_for: Duration,
) -> anyhow::Result<u64> {
    let socket = TcpStream::connect(addr)
        .await
        .context("connecting to raw-echo")?;
    socket.set_nodelay(true)?;
    let (r, w) = socket.into_split();
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut w = BufWriter::with_capacity(64 * 1024, w);
    let mut frame = (payload as u32).to_be_bytes().to_vec();
    frame.resize(4 + payload, 7);
    for _ in 0..depth {
        w.write_all(&frame).await?;
    }
    w.flush().await?;
    let mut back = vec![0u8; 4 + payload];
    let mut done = 0u64;
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        r.read_exact(&mut back).await?;
        done += 1;
        // Refill one slot per echo; flush once the reader has drained what
        // arrived together, as a real pipelining client would.
        w.write_all(&frame).await?;
        if r.buffer().is_empty() {
            w.flush().await?;
        }
    }
    Ok(done)
}
