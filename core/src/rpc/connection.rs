//! One authenticated client connection with many calls in flight.
//!
//! Three tasks serve it: the writer ([`super::outbox`]), a reader that
//! hands each answer to the call waiting for its id, and a keepalive that
//! pings the peer and closes the connection when nothing has been heard for
//! `keepalive_timeout` (a frozen or cut-off peer, which TCP alone would not
//! notice for minutes). Closing fails every waiting call at once with
//! `ConnectionLost`, so no call outlives its connection.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::config::RpcConfig;
use super::error::{RpcError, StatusCode};
use super::frame::{self, Frame, Header};
use super::handshake::{self, HandshakeError};
use super::id_map::IdMap;
use super::outbox::{Closed, Outbox};

/// What a unary call gets back: the status and body of its `Response`, or
/// why the connection closed first.
pub(crate) type Reply = Result<(StatusCode, Bytes), String>;

/// What a stream's consumer receives.
#[derive(Debug)]
pub(crate) enum StreamEvent {
    Item(Bytes),
    End(StatusCode, Bytes),
    Lost(String),
}

enum Waiter {
    Unary(oneshot::Sender<Reply>),
    Stream(mpsc::UnboundedSender<StreamEvent>),
}

/// Waiting calls are spread over this many locks, so callers on several
/// threads rarely contend (ids are sequential: id % SHARDS spreads them).
const SHARDS: usize = 8;

/// The part of a connection its tasks share.
///
/// Closing is race-free without a global lock: `register` checks `closed`
/// while holding its shard's lock, and `close` sets `closed` before it
/// drains each shard under that shard's lock, so a waiter is either refused
/// or drained, never stranded.
/// Asks, some other way than a connection, whether its peer's process is
/// alive (see [`crate::rpc::Channel::set_liveness`]).
pub type LivenessProbe = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

struct Shared {
    shards: [Mutex<IdMap<Waiter>>; SHARDS],
    /// Calls and streams registered and not yet answered or abandoned.
    waiting: AtomicUsize,
    closed: AtomicBool,
    reason: OnceLock<String>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Frames received so far; the keepalive watches it move.
    heard: AtomicU64,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            shards: Default::default(),
            waiting: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            reason: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            heard: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, IdMap<Waiter>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every critical section is a single insert/remove), so recover.
        self.shards[id as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn reason(&self) -> String {
        self.reason
            .get()
            .cloned()
            .unwrap_or_else(|| "the connection closed".into())
    }

    /// Removes a waiter; `None` if it was already answered or abandoned.
    fn take(&self, id: u64) -> Option<Waiter> {
        let mut shard = self.shard(id);
        let waiter = shard.remove(&id);
        if waiter.is_some() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        waiter
    }

    /// Closes the connection: fails every waiter and stops the tasks.
    fn close(&self, reason: String) {
        let _ = self.reason.set(reason.clone());
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        for shard in 0..SHARDS {
            let drained = {
                let mut waiters = self.shard(shard as u64);
                self.waiting.fetch_sub(waiters.len(), Ordering::Relaxed);
                std::mem::take(&mut *waiters)
            };
            for (_, w) in drained {
                match w {
                    Waiter::Unary(tx) => {
                        let _ = tx.send(Err(reason.clone()));
                    }
                    Waiter::Stream(tx) => {
                        let _ = tx.send(StreamEvent::Lost(reason.clone()));
                    }
                }
            }
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            t.abort();
        }
    }

    fn deliver(&self, frame: Frame) -> Result<(), String> {
        match frame {
            Frame::Response { id, status, body } => {
                if let Some(Waiter::Unary(tx)) = self.take(id) {
                    let _ = tx.send(Ok((status, body)));
                }
            }
            Frame::StreamItem { id, body } => {
                if let Some(Waiter::Stream(tx)) = self.shard(id).get(&id) {
                    let _ = tx.send(StreamEvent::Item(body));
                }
            }
            Frame::StreamEnd { id, status, body } => {
                if let Some(Waiter::Stream(tx)) = self.take(id) {
                    let _ = tx.send(StreamEvent::End(status, body));
                }
            }
            Frame::Pong { .. } => {}
            other => return Err(format!("peer sent a frame only clients send: {other:?}")),
        }
        Ok(())
    }
}

/// A live (or closed) connection to one peer.
pub(crate) struct Connection {
    pub(crate) addr: Arc<str>,
    shared: Arc<Shared>,
    outbox: Outbox,
    next_id: AtomicU64,
}

impl Connection {
    /// Connects, runs the handshake and starts the connection's tasks. The
    /// caller bounds the time this takes.
    pub(crate) async fn open(
        addr: Arc<str>,
        config: &RpcConfig,
        liveness: Option<LivenessProbe>,
    ) -> Result<Arc<Connection>, RpcError> {
        let connect_err = |reason: String| RpcError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let mut stream = TcpStream::connect(&*addr)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| connect_err(e.to_string()))?;
        handshake::client(&mut stream, &config.tokens())
            .await
            .map_err(|e| match e {
                HandshakeError::BadToken => RpcError::Unauthenticated {
                    addr: addr.to_string(),
                },
                HandshakeError::VersionMismatch { ours, theirs } => RpcError::VersionMismatch {
                    addr: addr.to_string(),
                    ours,
                    theirs,
                },
                other => connect_err(format!("handshake failed: {other}")),
            })?;
        let (read, write) = stream.into_split();
        let outbox = Outbox::new(write);
        let shared = Arc::new(Shared::new());

        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(config.max_frame_bytes())
            .new_codec();
        let reader = {
            let shared = shared.clone();
            let mut frames = FramedRead::with_capacity(read, codec, 64 * 1024);
            tokio::spawn(async move {
                let reason = loop {
                    match frames.next().await {
                        None => break "the peer closed the connection".to_string(),
                        Some(Err(e)) => break format!("reading from the peer failed: {e}"),
                        Some(Ok(buf)) => {
                            shared.touch();
                            let delivered = Frame::decode(buf.freeze())
                                .map_err(|e| format!("the peer sent a malformed frame: {e}"))
                                .and_then(|f| shared.deliver(f));
                            if let Err(reason) = delivered {
                                break reason;
                            }
                        }
                    }
                };
                shared.close(reason);
            })
        };
        let writer = {
            let shared = shared.clone();
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let Closed(reason) = outbox.flusher().await;
                shared.close(reason);
            })
        };
        let keepalive = {
            let shared = shared.clone();
            let outbox = outbox.clone();
            let (interval, timeout) = (config.keepalive_interval, config.keepalive_timeout);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0u64;
                let (mut seen, mut since) = (0u64, Instant::now());
                loop {
                    ticks.tick().await;
                    let heard = shared.heard.load(Ordering::Relaxed);
                    if heard != seen {
                        (seen, since) = (heard, Instant::now());
                    } else if since.elapsed() >= timeout {
                        // A peer whose process still answers elsewhere is
                        // only busy on this connection's thread (a handler
                        // holding it): wait on rather than fail its calls.
                        if let Some(probe) = &liveness {
                            if tokio::time::timeout(timeout, probe())
                                .await
                                .unwrap_or(false)
                            {
                                since = Instant::now();
                                continue;
                            }
                        }
                        let silent = since.elapsed();
                        shared.close(format!("heard nothing from the peer for {silent:?}"));
                        return;
                    }
                    n += 1;
                    let ping = frame::encode(Header::Ping { id: n }, &[]).expect("no name");
                    if outbox.send_control(ping).is_err() {
                        return;
                    }
                }
            })
        };
        *shared.tasks.lock().unwrap_or_else(|p| p.into_inner()) = vec![
            reader.abort_handle(),
            writer.abort_handle(),
            keepalive.abort_handle(),
        ];
        Ok(Arc::new(Connection {
            addr,
            shared,
            outbox,
            next_id: AtomicU64::new(1),
        }))
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.shared.is_closed()
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lost(&self, reason: String) -> RpcError {
        RpcError::ConnectionLost {
            addr: self.addr.to_string(),
            reason,
        }
    }

    /// Registers a waiter; returns whether it is the only call in flight
    /// (then its frame is written at once rather than batched).
    fn register(&self, id: u64, waiter: Waiter) -> Result<bool, RpcError> {
        let mut shard = self.shared.shard(id);
        if self.shared.is_closed() {
            return Err(self.lost(self.shared.reason()));
        }
        shard.insert(id, waiter);
        // Counted under the shard's lock, like every removal, so the count
        // never dips below zero.
        Ok(self.shared.waiting.fetch_add(1, Ordering::Relaxed) == 0)
    }

    /// Forgets a call or stream the caller gave up on and tells the peer to
    /// stop working on it.
    pub(crate) fn abandon(&self, id: u64) {
        if self.shared.take(id).is_some() {
            let cancel = frame::encode(Header::Cancel { id }, &[]).expect("no name");
            let _ = self.outbox.send_control(cancel);
        }
    }

    /// Sends a request frame (already encoded with `id`) and waits for its
    /// answer. Dropping the future abandons the call.
    pub(crate) async fn unary(
        &self,
        id: u64,
        request: Bytes,
    ) -> Result<(StatusCode, Bytes), RpcError> {
        let (tx, rx) = oneshot::channel();
        let alone = self.register(id, Waiter::Unary(tx))?;
        let mut guard = AbandonOnDrop {
            conn: self,
            id,
            armed: true,
        };
        if self.outbox.send(request, alone).await.is_err() {
            return Err(self.lost("the connection's writer stopped".into()));
        }
        let reply = rx.await;
        guard.armed = false;
        match reply {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(reason)) => Err(self.lost(reason)),
            Err(_) => Err(self.lost("the connection closed".into())),
        }
    }

    /// Sends a one-way frame.
    pub(crate) async fn one_way(&self, frame: Bytes) -> Result<(), RpcError> {
        if self.shared.is_closed() {
            return Err(self.lost(self.shared.reason()));
        }
        self.outbox
            .send(frame, false)
            .await
            .map_err(|_| self.lost("the connection's writer stopped".into()))
    }

    /// Registers a stream under `id` and sends its opening frame.
    pub(crate) async fn open_stream(
        &self,
        id: u64,
        open: Bytes,
    ) -> Result<mpsc::UnboundedReceiver<StreamEvent>, RpcError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let alone = self.register(id, Waiter::Stream(tx))?;
        if self.outbox.send(open, alone).await.is_err() {
            self.abandon(id);
            return Err(self.lost("the connection's writer stopped".into()));
        }
        Ok(rx)
    }

    /// Grants a stream's sender `credit` more items.
    pub(crate) fn grant(&self, id: u64, credit: u32) {
        let frame = frame::encode(Header::Credit { id, credit }, &[]).expect("no name");
        let _ = self.outbox.send_control(frame);
    }

    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close("the connection was dropped".into());
    }
}

struct AbandonOnDrop<'a> {
    conn: &'a Connection,
    id: u64,
    armed: bool,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.abandon(self.id);
        }
    }
}
