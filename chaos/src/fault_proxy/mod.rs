//! A fault-injecting TCP proxy for tests and the chaos harness.
//!
//! A [`FaultProxy`] listens on a loopback address and forwards every
//! accepted connection to one upstream address, both ways. Its [`Mode`] can
//! be changed at any time from any thread with [`FaultProxy::set_mode`]; the
//! change reaches every existing connection promptly (connection tasks
//! select on a `watch` channel). A [`LinkTable`] puts one proxy on every
//! directed link of a set of members and cuts and heals them in groups.
//!
//! # Semantics
//!
//! - [`Mode::Pass`]: bytes are forwarded both ways, in order. A FIN (write
//!   half-close) from one side is propagated to the other after the bytes
//!   before it; the connection closes normally once both directions have
//!   been half-closed. An error on either socket resets both.
//! - [`Mode::Delay(d)`](Mode::Delay): as `Pass`, but every chunk read (and a
//!   FIN) is written no earlier than `d` after it was read. Order is kept;
//!   throughput is not limited by the delay (up to 64 chunks of at most
//!   16 KiB in flight per direction). Chunks queued under an earlier delay
//!   keep their due time when the mode changes to `Pass` or another delay;
//!   a fault drops them at once.
//! - [`Mode::Refuse`]: a dead host answering RST. A new connection is
//!   accepted and reset at once (it never reaches the upstream); every
//!   existing connection has both its sockets reset as soon as its task
//!   sees the change, and forwards nothing in between.
//! - [`Mode::Blackhole`]: a partition where packets vanish. Existing
//!   connections stay open (no FIN, no RST), but once `set_mode` has
//!   returned no new write starts on either of their sockets (the policy is
//!   checked before every write system call; one already past its check may
//!   complete). Bytes read, and bytes still queued under `Delay`, are
//!   dropped and counted in [`Stats::bytes_dropped`]; FINs are swallowed.
//!   New connections are accepted and kept open, but the upstream is never
//!   dialled and their bytes are dropped too. (A dial already in progress
//!   when the blackhole begins may complete; nothing is forwarded over it.)
//! - Leaving `Blackhole` (to any other mode): every connection that was open
//!   at any moment the link was blackholed is reset (both sockets), because
//!   bytes were lost and a TCP stream cannot resume after a gap. New
//!   connections follow the new mode. This holds even if the blackhole was
//!   so short that a connection task never observed it.
//! - Likewise a connection open at any moment the link was `Refuse` is
//!   reset, however short the `Refuse` was.
//! - [`FaultProxy::shutdown`] and `Drop`: the listener is closed (new
//!   connects are refused by the kernel) and every connection is reset.
//!   `shutdown` returns once all of that is done; `Drop` only signals it,
//!   and the tasks finish on their own shortly after.
//!
//! # Layout
//!
//! - `policy`: the pure decision logic (what a connection may do now).
//! - `connection`: one proxied connection (dial, pump, reset).
//! - `link_table`: [`LinkTable`], one proxy per directed member link.

mod connection;
mod link_table;
mod policy;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use link_table::{LinkTable, PartitionError};

use connection::Connection;
use policy::{admit, Admission, Birth, LinkState};

/// What a [`FaultProxy`] does with traffic. See the [module
/// docs](self#semantics) for the exact semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward bytes both ways.
    #[default]
    Pass,
    /// Forward bytes both ways, each chunk delayed by this much, in order.
    Delay(Duration),
    /// Reset existing connections and every new one (a dead host).
    Refuse,
    /// Forward nothing, keep connections open (a partition). Connections
    /// that lived through it are reset when the mode changes again.
    Blackhole,
}

/// A snapshot of a proxy's counters. All counts are totals since start,
/// except `open_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections accepted from clients (including refused ones).
    pub accepted_connections: u64,
    /// Accepted connections reset at once because the mode was `Refuse`.
    pub refused_connections: u64,
    /// Connections currently being served.
    pub open_connections: u64,
    /// Connections that ended with a reset (fault, error or shutdown),
    /// not counting `refused_connections`.
    pub reset_connections: u64,
    /// Failed attempts to dial the upstream.
    pub upstream_connect_failures: u64,
    /// Bytes written to the upstream.
    pub bytes_to_upstream: u64,
    /// Bytes written to clients.
    pub bytes_to_client: u64,
    /// Bytes read and dropped, either direction: read under a fault,
    /// queued when a fault was set, or queued when the connection ended.
    pub bytes_dropped: u64,
    /// Bytes read and queued (e.g. delayed) but not yet written or dropped.
    pub bytes_in_flight: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
struct Counters {
    accepted_connections: AtomicU64,
    refused_connections: AtomicU64,
    open_connections: AtomicU64,
    resets: AtomicU64,
    upstream_connect_failures: AtomicU64,
    bytes_to_upstream: AtomicU64,
    bytes_to_client: AtomicU64,
    bytes_dropped: AtomicU64,
    bytes_in_flight: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            accepted_connections: get(&self.accepted_connections),
            refused_connections: get(&self.refused_connections),
            open_connections: get(&self.open_connections),
            reset_connections: get(&self.resets),
            upstream_connect_failures: get(&self.upstream_connect_failures),
            bytes_to_upstream: get(&self.bytes_to_upstream),
            bytes_to_client: get(&self.bytes_to_client),
            bytes_dropped: get(&self.bytes_dropped),
            bytes_in_flight: get(&self.bytes_in_flight),
        }
    }
}

/// Counts a connection as open for as long as it lives (also if its task
/// is aborted).
struct OpenConnection(Arc<Counters>);

impl OpenConnection {
    fn new(counters: Arc<Counters>) -> Self {
        counters.open_connections.fetch_add(1, Ordering::Relaxed);
        Self(counters)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP proxy from a listening address to one upstream, with injectable
/// faults. `Send + Sync`: share it (e.g. in an `Arc`) to flip modes from
/// other threads.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: watch::Sender<LinkState>,
    counters: Arc<Counters>,
    accept_loop: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on `listen` (e.g. `"127.0.0.1:0"`) and forward to `upstream`,
    /// starting in [`Mode::Pass`]. Must be called inside a tokio runtime.
    pub async fn start(listen: &str, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (state, state_rx) = watch::channel(LinkState::default());
        let counters = Arc::new(Counters::default());
        let accept_loop = tokio::spawn(accept_loop(
            listener,
            upstream,
            state_rx,
            Arc::clone(&counters),
        ));
        tracing::debug!(%addr, %upstream, "fault proxy started");
        Ok(Self {
            addr,
            upstream,
            state,
            counters,
            accept_loop: Some(accept_loop),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Change the mode; takes effect on existing connections promptly and
    /// on new ones at once. Setting `Refuse` or `Blackhole` always counts
    /// as entering that fault, even if the mode already was that.
    pub fn set_mode(&self, mode: Mode) {
        tracing::debug!(addr = %self.addr, ?mode, "fault proxy: set mode");
        self.state
            .send_modify(|state| *state = state.with_mode(mode));
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        self.state.borrow().mode
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Stop accepting, reset every connection, and wait until all of the
    /// proxy's tasks have finished. Returns the final counters.
    pub async fn shutdown(mut self) -> Stats {
        self.signal_shutdown();
        if let Some(accept_loop) = self.accept_loop.take() {
            if let Err(error) = accept_loop.await {
                tracing::warn!(%error, "fault proxy: accept loop failed");
            }
        }
        self.stats()
    }

    fn signal_shutdown(&self) {
        self.state.send_modify(|state| state.shutdown = true);
    }
}

impl Drop for FaultProxy {
    /// Signals shutdown; the tasks reset every connection and end on their
    /// own. Use [`FaultProxy::shutdown`] to wait for that.
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// Accept connections until shutdown, then close the listener and wait for
/// every connection task to end.
async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    mut state: watch::Receiver<LinkState>,
    counters: Arc<Counters>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            changed = state.changed() => {
                if changed.is_err() || state.borrow_and_update().shutdown {
                    break;
                }
            }
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    tracing::warn!(%error, "fault proxy: connection task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((client, _peer)) => {
                    counters.accepted_connections.fetch_add(1, Ordering::Relaxed);
                    let now = *state.borrow();
                    match admit(&now) {
                        Admission::Reset => {
                            counters.refused_connections.fetch_add(1, Ordering::Relaxed);
                            connection::reset(client);
                        }
                        Admission::Forward | Admission::Discard => {
                            let open = OpenConnection::new(Arc::clone(&counters));
                            let connection = Connection {
                                client,
                                upstream,
                                birth: Birth::at(&now),
                                state: state.clone(),
                                counters: Arc::clone(&counters),
                            };
                            connections.spawn(async move {
                                let _open = open;
                                connection.serve().await;
                            });
                        }
                    }
                }
                Err(error) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "fault proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        if let Err(error) = joined {
            tracing::warn!(%error, "fault proxy: connection task failed");
        }
    }
}
