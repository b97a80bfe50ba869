//! Socket-level tests of [`FaultProxy`] and [`LinkTable`] on loopback.
//!
//! No sleeps as synchronisation: every wait polls a condition with a
//! deadline, and "nothing arrived" is proven by the proxy's counters (bytes
//! it has already dropped can never arrive), not by waiting and hoping.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant};

use super::{FaultProxy, LinkTable, Mode, PartitionError};

/// Upper bound on every wait; only reached when a test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// Poll `condition` until it holds; panic after [`DEADLINE`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// An upstream that echoes every byte and echoes a FIN with a FIN.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let (accepted_in, received_in) = (Arc::clone(&accepted), Arc::clone(&received));
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted_in.fetch_add(1, Ordering::SeqCst);
                let received = Arc::clone(&received_in);
                connections.spawn(async move {
                    let mut buf = vec![0; 64 * 1024];
                    while let Ok(read @ 1..) = stream.read(&mut buf).await {
                        received.fetch_add(read as u64, Ordering::SeqCst);
                        if stream.write_all(&buf[..read]).await.is_err() {
                            return;
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            accepted,
            received,
            task,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect failed")
}

/// Write `message` and read it back (through an echo upstream).
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0; message.len()];
    timeout(DEADLINE, stream.read_exact(&mut back))
        .await
        .expect("echo timed out")
        .expect("echo failed");
    assert_eq!(back, message);
}

/// Read `expected.len()` bytes and compare.
async fn expect_bytes(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    timeout(DEADLINE, stream.read_exact(&mut got))
        .await
        .expect("read timed out")
        .expect("read failed");
    assert_eq!(got, expected);
}

/// The next read must fail with a reset.
async fn expect_reset(stream: &mut TcpStream) {
    let mut buf = [0; 64];
    let read = timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("no reset before the deadline");
    match read {
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
}

/// A client connected through `proxy` and the upstream's side of it.
async fn pair(proxy: &FaultProxy, upstream: &TcpListener) -> (TcpStream, TcpStream) {
    let mut client = connect(proxy.addr()).await;
    let (mut server, _) = timeout(DEADLINE, upstream.accept())
        .await
        .expect("proxy never dialled")
        .unwrap();
    client.write_all(b"up").await.unwrap();
    expect_bytes(&mut server, b"up").await;
    server.write_all(b"down").await.unwrap();
    expect_bytes(&mut client, b"down").await;
    (client, server)
}

async fn raw_upstream() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

#[tokio::test]
async fn pass_forwards_both_ways_and_counts() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    assert_eq!(proxy.mode(), Mode::Pass);
    assert_eq!(proxy.upstream(), echo.addr);
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"hello").await;
    round_trip(&mut client, b"world!").await;
    wait_until("11 bytes counted each way", || {
        let stats = proxy.stats();
        stats.bytes_to_upstream == 11 && stats.bytes_to_client == 11
    })
    .await;
    let stats = proxy.stats();
    assert_eq!(stats.accepted_connections, 1);
    assert_eq!(stats.open_connections, 1);
    assert_eq!(stats.bytes_dropped, 0);
    assert_eq!(echo.received(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_moves_megabytes_intact_and_closes_cleanly_on_half_close() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    let sent = pattern(4 * 1024 * 1024 + 123);
    let (mut reader, mut writer) = connect(proxy.addr()).await.into_split();
    let to_send = sent.clone();
    let writing = tokio::spawn(async move {
        writer.write_all(&to_send).await.unwrap();
        writer.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(sent.len());
    timeout(DEADLINE, reader.read_to_end(&mut got))
        .await
        .expect("transfer timed out")
        .unwrap();
    writing.await.unwrap();
    assert!(
        got == sent,
        "got {} bytes, not the {} sent",
        got.len(),
        sent.len()
    );
    let len = sent.len() as u64;
    wait_until("the connection closed", || {
        let stats = proxy.stats();
        stats.open_connections == 0 && stats.bytes_to_client == len
    })
    .await;
    let stats = proxy.stats();
    assert_eq!(stats.bytes_to_upstream, len);
    assert_eq!(stats.reset_connections, 0, "a clean close is not a reset");
}

#[tokio::test]
async fn half_close_propagates_each_way() {
    let (upstream, upstream_addr) = raw_upstream().await;
    let proxy = FaultProxy::start("127.0.0.1:0", upstream_addr)
        .await
        .unwrap();
    let (mut client, mut server) = pair(&proxy, &upstream).await;
    client.shutdown().await.unwrap();
    let mut buf = [0; 8];
    let read = timeout(DEADLINE, server.read(&mut buf)).await.unwrap();
    assert_eq!(read.unwrap(), 0, "the client's FIN reaches the upstream");
    server.write_all(b"still open").await.unwrap();
    expect_bytes(&mut client, b"still open").await;
    server.shutdown().await.unwrap();
    let read = timeout(DEADLINE, client.read(&mut buf)).await.unwrap();
    assert_eq!(read.unwrap(), 0, "the upstream's FIN reaches the client");
    wait_until("the connection closed", || {
        proxy.stats().open_connections == 0
    })
    .await;
}

#[tokio::test]
async fn refuse_resets_existing_connections_and_new_ones() {
    let (upstream, upstream_addr) = raw_upstream().await;
    let proxy = FaultProxy::start("127.0.0.1:0", upstream_addr)
        .await
        .unwrap();
    let (mut client, mut server) = pair(&proxy, &upstream).await;
    proxy.set_mode(Mode::Refuse);
    assert_eq!(proxy.mode(), Mode::Refuse);
    expect_reset(&mut client).await;
    expect_reset(&mut server).await;
    let mut refused = connect(proxy.addr()).await;
    expect_reset(&mut refused).await;
    let stats = proxy.stats();
    assert_eq!(stats.accepted_connections, 2);
    assert_eq!(stats.refused_connections, 1);
    wait_until("no connection open", || proxy.stats().open_connections == 0).await;

    proxy.set_mode(Mode::Pass);
    let (mut client, _server) = pair(&proxy, &upstream).await;
    client.write_all(b"again").await.unwrap();
}

#[tokio::test]
async fn blackhole_drops_both_ways_then_pass_resets_and_serves_new_connections() {
    let (upstream, upstream_addr) = raw_upstream().await;
    let proxy = FaultProxy::start("127.0.0.1:0", upstream_addr)
        .await
        .unwrap();
    let (mut client, mut server) = pair(&proxy, &upstream).await;
    let before = proxy.stats();
    proxy.set_mode(Mode::Blackhole);

    client.write_all(b"lost up").await.unwrap();
    wait_until("7 bytes dropped", || proxy.stats().bytes_dropped == 7).await;
    server.write_all(b"lost down").await.unwrap();
    wait_until("16 bytes dropped", || proxy.stats().bytes_dropped == 16).await;
    let during = proxy.stats();
    assert_eq!(during.bytes_to_upstream, before.bytes_to_upstream);
    assert_eq!(during.bytes_to_client, before.bytes_to_client);
    let mut buf = [0; 16];
    // Both sockets are still open (no FIN, no RST) and have nothing to read.
    assert_eq!(
        client.try_read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(
        server.try_read(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    assert_eq!(during.open_connections, 1);

    proxy.set_mode(Mode::Pass);
    expect_reset(&mut client).await;
    expect_reset(&mut server).await;
    let (mut client, _server) = pair(&proxy, &upstream).await;
    client.write_all(b"fresh").await.unwrap();
}

#[tokio::test]
async fn blackhole_new_connections_never_reach_the_upstream() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    proxy.set_mode(Mode::Blackhole);
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"syn lost").await.unwrap();
    wait_until("8 bytes dropped", || proxy.stats().bytes_dropped == 8).await;
    assert_eq!(echo.accepted(), 0, "the upstream was dialled");
    assert_eq!(proxy.stats().open_connections, 1);

    proxy.set_mode(Mode::Pass);
    expect_reset(&mut client).await;
    let mut fresh = connect(proxy.addr()).await;
    round_trip(&mut fresh, b"works").await;
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn a_blackhole_too_short_to_observe_still_resets() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"before").await;
    proxy.set_mode(Mode::Blackhole);
    proxy.set_mode(Mode::Pass);
    expect_reset(&mut client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_keeps_bytes_and_order_across_mode_changes() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    proxy.set_mode(Mode::Delay(Duration::from_millis(3)));
    let sent = pattern(256 * 1024);
    let (mut reader, mut writer) = connect(proxy.addr()).await.into_split();
    let to_send = sent.clone();
    let writing = tokio::spawn(async move {
        for piece in to_send.chunks(997) {
            writer.write_all(piece).await.unwrap();
        }
        writer.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(sent.len());
    let mut buf = vec![0; 8 * 1024];
    let mut flips = 0;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let read = tokio::time::timeout_at(deadline, reader.read(&mut buf))
            .await
            .expect("transfer timed out")
            .unwrap();
        if read == 0 {
            break;
        }
        got.extend_from_slice(&buf[..read]);
        flips += 1;
        proxy.set_mode(if flips % 2 == 0 {
            Mode::Delay(Duration::from_millis(1 + flips % 4))
        } else {
            Mode::Pass
        });
    }
    writing.await.unwrap();
    assert!(flips > 1, "the mode never changed mid-transfer");
    assert!(
        got == sent,
        "got {} bytes, not the {} sent",
        got.len(),
        sent.len()
    );
    assert_eq!(proxy.stats().reset_connections, 0);
}

#[tokio::test]
async fn blackhole_drops_bytes_already_queued_under_delay() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"dialled").await;
    let before = proxy.stats();
    // Long enough never to come due while the test runs.
    proxy.set_mode(Mode::Delay(Duration::from_secs(3600)));
    client.write_all(b"queued").await.unwrap();
    wait_until("6 bytes queued", || proxy.stats().bytes_in_flight == 6).await;
    proxy.set_mode(Mode::Blackhole);
    wait_until("the queue dropped", || {
        let stats = proxy.stats();
        stats.bytes_in_flight == 0 && stats.bytes_dropped == 6
    })
    .await;
    assert_eq!(proxy.stats().bytes_to_upstream, before.bytes_to_upstream);
    assert_eq!(echo.received(), 7);
    proxy.set_mode(Mode::Pass);
    expect_reset(&mut client).await;
}

#[tokio::test]
async fn refuse_drops_bytes_queued_under_delay() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    proxy.set_mode(Mode::Delay(Duration::from_secs(3600)));
    let mut client = connect(proxy.addr()).await;
    client.write_all(b"queued").await.unwrap();
    wait_until("6 bytes queued", || proxy.stats().bytes_in_flight == 6).await;
    proxy.set_mode(Mode::Refuse);
    expect_reset(&mut client).await;
    wait_until("the queue dropped", || {
        let stats = proxy.stats();
        stats.open_connections == 0 && stats.bytes_in_flight == 0 && stats.bytes_dropped == 6
    })
    .await;
    assert_eq!(echo.received(), 0);
}

#[tokio::test]
async fn upstream_connect_failure_resets_the_client() {
    let (closed, closed_addr) = raw_upstream().await;
    drop(closed);
    let proxy = FaultProxy::start("127.0.0.1:0", closed_addr).await.unwrap();
    let mut client = connect(proxy.addr()).await;
    expect_reset(&mut client).await;
    wait_until("the failure is counted", || {
        let stats = proxy.stats();
        stats.upstream_connect_failures == 1 && stats.open_connections == 0
    })
    .await;
}

#[tokio::test]
async fn shutdown_resets_connections_and_stops_accepting() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    let addr = proxy.addr();
    let mut client = connect(addr).await;
    round_trip(&mut client, b"hi").await;
    let stats = timeout(DEADLINE, proxy.shutdown())
        .await
        .expect("shutdown timed out");
    assert_eq!(stats.open_connections, 0);
    assert_eq!(stats.reset_connections, 1);
    expect_reset(&mut client).await;
    let refused = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn drop_resets_connections_and_stops_accepting() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap();
    let addr = proxy.addr();
    let mut client = connect(addr).await;
    round_trip(&mut client, b"hi").await;
    drop(proxy);
    expect_reset(&mut client).await;
    let deadline = Instant::now() + DEADLINE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_changes_from_another_thread_reach_existing_connections() {
    let echo = Echo::start().await;
    let proxy = Arc::new(FaultProxy::start("127.0.0.1:0", echo.addr).await.unwrap());
    let mut client = connect(proxy.addr()).await;
    round_trip(&mut client, b"hi").await;
    let remote = Arc::clone(&proxy);
    std::thread::spawn(move || remote.set_mode(Mode::Refuse))
        .join()
        .unwrap();
    expect_reset(&mut client).await;
}

/// What a probe through one link saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Echoed,
    Dropped,
    Reset,
}

/// Send one byte over link `from → to` and see what happens to it.
async fn probe(table: &LinkTable, from: usize, to: usize) -> Reach {
    let link = table.link(from, to);
    let dropped_before = link.stats().bytes_dropped;
    let mut stream = connect(table.addr(from, to)).await;
    if stream.write_all(b"?").await.is_err() {
        return Reach::Reset;
    }
    let mut buf = [0; 1];
    tokio::select! {
        read = stream.read(&mut buf) => match read {
            Ok(1) if buf == *b"?" => Reach::Echoed,
            Err(error) if error.kind() == ErrorKind::ConnectionReset => Reach::Reset,
            other => panic!("unexpected probe result {other:?}"),
        },
        () = wait_until("the probe is dropped", || link.stats().bytes_dropped > dropped_before) => {
            Reach::Dropped
        }
    }
}

async fn assert_reach(table: &LinkTable, expected: impl Fn(usize, usize) -> Reach) {
    for from in 0..table.members() {
        for to in (0..table.members()).filter(|&to| to != from) {
            assert_eq!(
                probe(table, from, to).await,
                expected(from, to),
                "{from} -> {to}"
            );
        }
    }
}

async fn members(n: usize) -> (Vec<Echo>, LinkTable) {
    let mut echoes = Vec::new();
    for _ in 0..n {
        echoes.push(Echo::start().await);
    }
    let addrs: Vec<_> = echoes.iter().map(|echo| echo.addr).collect();
    let table = LinkTable::start(&addrs).await.unwrap();
    (echoes, table)
}

#[tokio::test]
async fn link_table_routes_each_link_through_its_own_proxy() {
    let (echoes, table) = members(3).await;
    assert_eq!(table.links().count(), 6);
    let mut addrs: Vec<_> = table.links().map(|(_, _, proxy)| proxy.addr()).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 6, "links share a proxy");
    for (from, to, proxy) in table.links() {
        assert_eq!(proxy.upstream(), echoes[to].addr);
        let accepted_before = echoes[to].accepted();
        let mut stream = connect(table.addr(from, to)).await;
        round_trip(&mut stream, format!("{from}->{to}").as_bytes()).await;
        assert_eq!(echoes[to].accepted(), accepted_before + 1);
        assert_eq!(table.link(from, to).stats().accepted_connections, 1);
    }
    for echo in &echoes {
        assert_eq!(echo.accepted(), 2, "each member is dialled by the 2 others");
    }
}

#[tokio::test]
async fn link_table_isolate_partition_and_heal() {
    let (_echoes, table) = members(3).await;
    assert_reach(&table, |_, _| Reach::Echoed).await;

    table.isolate(2);
    assert_reach(&table, |from, to| {
        if from == 2 || to == 2 {
            Reach::Dropped
        } else {
            Reach::Echoed
        }
    })
    .await;

    table.heal();
    assert_reach(&table, |_, _| Reach::Echoed).await;

    table
        .partition_with(&[&[0], &[1, 2]], Mode::Refuse)
        .unwrap();
    assert_reach(&table, |from, to| {
        if (from == 0) != (to == 0) {
            Reach::Reset
        } else {
            Reach::Echoed
        }
    })
    .await;

    table.partition(&[&[0, 2], &[1]]).unwrap();
    assert_reach(&table, |from, to| {
        if (from == 1) != (to == 1) {
            Reach::Dropped
        } else {
            Reach::Echoed
        }
    })
    .await;

    assert_eq!(
        table.partition(&[&[0, 1]]),
        Err(PartitionError::Missing { member: 2 })
    );
    assert_eq!(
        table.link(0, 1).mode(),
        Mode::Blackhole,
        "a rejected partition changes nothing"
    );

    table.heal();
    assert_reach(&table, |_, _| Reach::Echoed).await;
    timeout(DEADLINE, table.shutdown())
        .await
        .expect("shutdown timed out");
}

#[tokio::test]
async fn link_table_isolate_with_refuse() {
    let (_echoes, table) = members(3).await;
    table.isolate_with(0, Mode::Refuse);
    assert_reach(&table, |from, to| {
        if from == 0 || to == 0 {
            Reach::Reset
        } else {
            Reach::Echoed
        }
    })
    .await;
    table.set_link(1, 2, Mode::Blackhole);
    assert_eq!(probe(&table, 1, 2).await, Reach::Dropped);
    assert_eq!(probe(&table, 2, 1).await, Reach::Echoed);
}
