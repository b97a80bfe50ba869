//! One proxied connection: dial the upstream, pump bytes both ways, obey
//! the link's mode, and reset both sockets when the policy says so.
//!
//! Each direction is a reader and a writer joined by a bounded channel of
//! timestamped segments, so `Mode::Delay` adds latency without limiting
//! throughput to one chunk per delay. All four pumps and a supervisor that
//! watches the mode run as futures inside one task; when the task ends (or
//! is aborted) the sockets are dropped with it.

use std::future::pending;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::policy::{verdict, Birth, LinkState, Verdict};
use super::Counters;

/// Largest chunk read from a socket at once.
const CHUNK_BYTES: usize = 16 * 1024;
/// Segments in flight per direction (bounds memory under `Mode::Delay`).
const SEGMENTS_IN_FLIGHT: usize = 64;

/// An accepted client connection, not yet connected upstream.
pub(super) struct Connection {
    pub(super) client: TcpStream,
    pub(super) upstream: SocketAddr,
    pub(super) birth: Birth,
    pub(super) state: watch::Receiver<LinkState>,
    pub(super) counters: Arc<Counters>,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Both directions finished with a propagated FIN: close normally.
    Clean,
    /// Reset both sockets.
    Reset,
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy)]
enum Direction {
    ToUpstream,
    ToClient,
}

/// What the pumps share.
struct Pumps<'a> {
    birth: Birth,
    state: &'a watch::Receiver<LinkState>,
    counters: &'a Counters,
    /// This connection's share of [`Counters::bytes_in_flight`].
    in_flight: AtomicU64,
}

impl Pumps<'_> {
    /// Wait until this connection may no longer forward.
    async fn until_stopped(&self) {
        let mut state = self.state.clone();
        loop {
            let now = verdict(self.birth, &state.borrow_and_update());
            if now != Verdict::Forward || state.changed().await.is_err() {
                return;
            }
        }
    }

    fn queued(&self, bytes: usize) {
        self.in_flight.fetch_add(bytes as u64, Ordering::Relaxed);
        self.counters
            .bytes_in_flight
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn dequeued(&self, bytes: usize) {
        self.in_flight.fetch_sub(bytes as u64, Ordering::Relaxed);
        self.counters
            .bytes_in_flight
            .fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    fn verdict(&self) -> Verdict {
        verdict(self.birth, &self.state.borrow())
    }

    fn delay(&self) -> Duration {
        self.state.borrow().delay()
    }

    fn forwarded(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::ToUpstream => &self.counters.bytes_to_upstream,
            Direction::ToClient => &self.counters.bytes_to_client,
        }
    }

    fn dropped(&self, bytes: usize) {
        self.counters
            .bytes_dropped
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for Pumps<'_> {
    /// Bytes still queued when the connection ends are lost.
    fn drop(&mut self) {
        let lost = *self.in_flight.get_mut();
        self.counters
            .bytes_in_flight
            .fetch_sub(lost, Ordering::Relaxed);
        self.counters
            .bytes_dropped
            .fetch_add(lost, Ordering::Relaxed);
    }
}

/// A chunk of the stream (or its end), due for delivery at `due`.
struct Segment {
    due: Instant,
    /// Empty means FIN.
    bytes: Vec<u8>,
}

impl Connection {
    /// Serve the connection until it ends or the policy resets it.
    pub(super) async fn serve(self) {
        let Self {
            mut client,
            upstream,
            birth,
            state,
            counters,
        } = self;
        let mut supervisor_state = state.clone();
        let mut upstream_stream = None;
        let pumps = Pumps {
            birth,
            state: &state,
            counters: &counters,
            in_flight: AtomicU64::new(0),
        };
        let end = tokio::select! {
            () = wait_for_reset(&mut supervisor_state, birth) => End::Reset,
            end = forward(&mut client, &mut upstream_stream, upstream, &pumps) => end,
        };
        if end == End::Reset {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            reset(client);
            if let Some(stream) = upstream_stream {
                reset(stream);
            }
        }
    }
}

/// Close `stream` with an RST instead of a FIN.
pub(super) fn reset(stream: TcpStream) {
    // `set_linger` is deprecated because a non-zero linger blocks on drop; a
    // zero linger never blocks. (`set_zero_linger` needs tokio >= 1.50.)
    #[allow(deprecated)]
    if let Err(error) = stream.set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "fault proxy: could not set zero linger");
    }
    drop(stream);
}

/// Return once the policy says this connection must be reset, or the proxy
/// is gone.
async fn wait_for_reset(state: &mut watch::Receiver<LinkState>, birth: Birth) {
    loop {
        let now = verdict(birth, &state.borrow_and_update());
        if now == Verdict::Reset || state.changed().await.is_err() {
            return;
        }
    }
}

/// Dial the upstream and pump both directions until both FINs have been
/// propagated (`End::Clean`) or a socket fails (`End::Reset`).
async fn forward(
    client: &mut TcpStream,
    upstream_slot: &mut Option<TcpStream>,
    upstream: SocketAddr,
    pumps: &Pumps<'_>,
) -> End {
    if pumps.verdict() != Verdict::Forward {
        // Born in a blackhole: the SYN never reached the upstream.
        let (from_client, _) = client.split();
        return discard(from_client, pumps).await;
    }
    let stream = match TcpStream::connect(upstream).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::debug!(%upstream, %error, "fault proxy: upstream connect failed");
            pumps
                .counters
                .upstream_connect_failures
                .fetch_add(1, Ordering::Relaxed);
            return End::Reset;
        }
    };
    for socket in [&*client, &stream] {
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, "fault proxy: could not set TCP_NODELAY");
        }
    }
    let stream = upstream_slot.insert(stream);
    let (from_client, to_client) = client.split();
    let (from_upstream, to_upstream) = stream.split();
    let (up_tx, up_rx) = mpsc::channel(SEGMENTS_IN_FLIGHT);
    let (down_tx, down_rx) = mpsc::channel(SEGMENTS_IN_FLIGHT);
    let pumped = tokio::try_join!(
        read_side(from_client, up_tx, pumps),
        write_side(up_rx, to_upstream, Direction::ToUpstream, pumps),
        read_side(from_upstream, down_tx, pumps),
        write_side(down_rx, to_client, Direction::ToClient, pumps),
    );
    match pumped {
        Ok(_) => End::Clean,
        Err(error) => {
            tracing::debug!(%error, "fault proxy: connection failed");
            End::Reset
        }
    }
}

/// Read and drop everything; never finish on its own.
async fn discard(mut source: ReadHalf<'_>, pumps: &Pumps<'_>) -> End {
    let mut buf = vec![0; CHUNK_BYTES];
    while let Ok(read @ 1..) = source.read(&mut buf).await {
        pumps.dropped(read);
    }
    pending().await
}

/// Read chunks from `source` and queue them (or drop them, per policy).
/// A FIN is queued like data; under a fault it is swallowed and the reader
/// parks, leaving the supervisor to end the connection.
async fn read_side(
    mut source: ReadHalf<'_>,
    segments: mpsc::Sender<Segment>,
    pumps: &Pumps<'_>,
) -> io::Result<()> {
    let mut buf = vec![0; CHUNK_BYTES];
    loop {
        let read = source.read(&mut buf).await?;
        if pumps.verdict() != Verdict::Forward {
            if read == 0 {
                return pending().await;
            }
            pumps.dropped(read);
            continue;
        }
        let segment = Segment {
            due: Instant::now() + pumps.delay(),
            bytes: buf[..read].to_vec(),
        };
        pumps.queued(read);
        if segments.send(segment).await.is_err() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if read == 0 {
            return Ok(());
        }
    }
}

/// Deliver queued segments in order, each no earlier than its due time.
async fn write_side(
    mut segments: mpsc::Receiver<Segment>,
    mut sink: WriteHalf<'_>,
    direction: Direction,
    pumps: &Pumps<'_>,
) -> io::Result<()> {
    while let Some(segment) = segments.recv().await {
        if segment.due > Instant::now() {
            // A fault stops the wait: the segment is then dropped below.
            tokio::select! {
                () = tokio::time::sleep_until(segment.due) => {}
                () = pumps.until_stopped() => {}
            }
        }
        if segment.bytes.is_empty() {
            if pumps.verdict() != Verdict::Forward {
                return pending().await;
            }
            return sink.shutdown().await;
        }
        write_checked(&sink, &segment.bytes, direction, pumps).await?;
    }
    // The reader failed; its error ends the connection.
    Ok(())
}

/// Write `bytes`, checking the policy before every write system call, so no
/// write starts after a fault has been set.
async fn write_checked(
    sink: &WriteHalf<'_>,
    bytes: &[u8],
    direction: Direction,
    pumps: &Pumps<'_>,
) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        sink.writable().await?;
        if pumps.verdict() != Verdict::Forward {
            pumps.dequeued(bytes.len() - written);
            pumps.dropped(bytes.len() - written);
            return Ok(());
        }
        match sink.try_write(&bytes[written..]) {
            Ok(n) => {
                written += n;
                pumps.dequeued(n);
                pumps
                    .forwarded(direction)
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
