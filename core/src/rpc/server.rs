//! The serving side: an accept loop and, per connection, a reader that
//! dispatches each request to its own task.
//!
//! Per connection the reader owns every in-flight task (a `JoinSet`), so a
//! closed connection aborts its handlers and streams, a `Cancel` aborts one,
//! and nothing outlives the connection it serves. A connection that sends
//! anything that is not a well-formed frame within the size limit is closed
//! with a logged reason; other connections are not affected.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::{debug, warn};

use super::config::RpcConfig;
use super::error::{Status, StatusCode};
use super::frame::{self, Frame, Header};
use super::handshake;
use super::id_map::IdMap;
use super::outbox::{self, Closed, Outbox, TrySendError};
use super::service::{error_response, stream_end, CallContext, Erased, ErasedService, Service};

type Registry = HashMap<&'static [u8], Arc<dyn ErasedService>>;

/// Counters a server keeps about itself (for tests and metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections that completed the handshake and are open.
    pub open_connections: AtomicUsize,
    /// Handler and stream tasks running now.
    pub in_flight: AtomicUsize,
    /// Requests, one-way messages and streams dispatched to a handler.
    pub dispatched: AtomicU64,
    /// Connections refused in the handshake (bad magic, version or token).
    pub refused: AtomicU64,
    /// Connections closed because they sent a malformed or oversize frame.
    pub closed_bad_frames: AtomicU64,
}

/// A set of services to serve. Build it, then [`RpcServer::bind`].
pub struct RpcServer {
    config: Arc<RpcConfig>,
    services: Registry,
}

impl RpcServer {
    pub fn new(config: RpcConfig) -> RpcServer {
        RpcServer {
            config: Arc::new(config),
            services: HashMap::new(),
        }
    }

    /// Adds a service under its protocol's name.
    ///
    /// # Panics
    /// If a service of the same name was already added: that is a bug in
    /// the program's setup, found the first time it starts.
    pub fn with_service<S: Service>(mut self, service: S) -> RpcServer {
        let name = <S::Protocol as super::service::Protocol>::NAME;
        assert!(
            name.len() <= 255,
            "service name {name:?} is longer than 255 bytes"
        );
        let previous = self
            .services
            .insert(name.as_bytes(), Arc::new(Erased(service)));
        assert!(previous.is_none(), "two services are named {name:?}");
        self
    }

    /// Listens on `addr` (use port 0 for any free port) and serves in the
    /// background until the handle is shut down or dropped.
    pub async fn bind(self, addr: &str) -> io::Result<ServerHandle> {
        let listener = TcpListener::bind(addr).await?;
        Ok(self.serve(listener))
    }

    /// Serves an already bound listener in the background.
    pub fn serve(self, listener: TcpListener) -> ServerHandle {
        let local_addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (stop_tx, stop_rx) = watch::channel(false);
        let stats = Arc::new(ServerStats::default());
        let shared = Arc::new(Shared {
            config: self.config,
            services: self.services,
            stats: stats.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
        ServerHandle {
            local_addr,
            stats,
            stop: stop_tx,
            task: Some(task),
        }
    }
}

/// A running server. Dropping it stops the server and closes every
/// connection; [`ServerHandle::shutdown`] does the same and waits.
pub struct ServerHandle {
    local_addr: SocketAddr,
    stats: Arc<ServerStats>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Stops accepting, closes every connection (aborting their handlers)
    /// and waits until all of it is done.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Shared {
    config: Arc<RpcConfig>,
    services: Registry,
    stats: Arc<ServerStats>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    connections.spawn(serve_connection(socket, peer, shared.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off a little
                    // instead of spinning, and keep serving the open ones.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Decrements a counter when dropped, so aborted tasks are counted too.
struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicUsize) -> Gauge<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Gauge(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct InFlight {
    abort: AbortHandle,
    /// For streams: items the client still accepts.
    credit: Option<Arc<Semaphore>>,
}

async fn serve_connection(mut socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let config = &shared.config;
    let _ = socket.set_nodelay(true);
    match tokio::time::timeout(
        config.handshake_timeout,
        handshake::server(&mut socket, &config.tokens()),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, reason = %e, "refused an RPC connection");
            return;
        }
        Err(_) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            warn!(%peer, "refused an RPC connection: no handshake within {:?}", config.handshake_timeout);
            return;
        }
    }
    let open = Gauge::up(&shared.stats.open_connections);
    let (read, write) = socket.into_split();
    let outbox = Outbox::new(write);
    // Aborted when this task ends, however it ends (server shutdown aborts
    // it mid-await): the flusher holds the socket's write half, and the
    // socket only closes once both halves are gone.
    let mut writer = AbortOnDrop(tokio::spawn(outbox.clone().flusher()));
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(config.max_frame_bytes())
        .new_codec();
    let mut frames = FramedRead::with_capacity(read, codec, 64 * 1024);
    let mut conn = ConnectionState {
        shared: shared.clone(),
        peer,
        outbox,
        tasks: JoinSet::new(),
        in_flight: IdMap::default(),
        by_task: HashMap::new(),
        deferred: Arc::new(AtomicUsize::new(0)),
    };
    let max_tasks = config.max_concurrent_requests;
    let reason = loop {
        tokio::select! {
            next = frames.next(), if conn.tasks.len() < max_tasks => match next {
                None => break None,
                Some(Err(e)) => break Some(format!("unreadable frame: {e}")),
                Some(Ok(buf)) => {
                    // Answers to the frames of one read leave in one write.
                    conn.outbox.cork();
                    match Frame::decode(buf.freeze()) {
                        Ok(frame) => if let Err(reason) = conn.handle(frame) { break Some(reason) },
                        Err(e) => break Some(format!("malformed frame: {e}")),
                    }
                    if !outbox::has_whole_frame(frames.read_buffer()) {
                        if let Err(Closed(reason)) = conn.outbox.uncork() {
                            break Some(reason);
                        }
                    }
                }
            },
            Some(done) = conn.tasks.join_next_with_id(), if !conn.tasks.is_empty() => {
                let task = match done { Ok((id, ())) => id, Err(e) => e.id() };
                if let Some(call) = conn.by_task.remove(&task) {
                    if conn.in_flight.get(&call).is_some_and(|f| f.abort.id() == task) {
                        conn.in_flight.remove(&call);
                    }
                }
            }
            _ = &mut writer.0 => break Some("writing to the peer failed".into()),
        }
    };
    match reason {
        None => debug!(%peer, "RPC connection closed by the peer"),
        Some(reason) => {
            shared
                .stats
                .closed_bad_frames
                .fetch_add(1, Ordering::Relaxed);
            warn!(%peer, %reason, "closing an RPC connection");
        }
    }
    // Count the connection as closed before its socket closes, so whoever
    // sees the close also sees the count.
    drop(open);
    conn.tasks.shutdown().await;
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The reader's bookkeeping for one connection.
struct ConnectionState {
    shared: Arc<Shared>,
    peer: SocketAddr,
    outbox: Outbox,
    tasks: JoinSet<()>,
    in_flight: IdMap<InFlight>,
    by_task: HashMap<tokio::task::Id, u64>,
    /// Calls whose handler did not finish at once and still owe an answer.
    deferred: Arc<AtomicUsize>,
}

impl ConnectionState {
    /// Acts on one frame. An `Err` closes the connection.
    fn handle(&mut self, frame: Frame) -> Result<(), String> {
        match frame {
            Frame::Request {
                id,
                timeout_ms,
                service,
                body,
            } => {
                let deadline = Instant::now() + Duration::from_millis(timeout_ms as u64);
                let svc = match self.lookup(&service) {
                    Ok(svc) => svc,
                    Err(status) => {
                        self.reply(error_response(id, &status));
                        return Ok(());
                    }
                };
                let cx = CallContext {
                    peer: self.peer,
                    deadline: Some(deadline),
                };
                let mut answer = svc.call(id, body, cx, self.shared.config.max_message_bytes);
                // Most handlers (echo, reads from memory) finish without
                // waiting: answer those right here, without a task. One that
                // is still pending moves to its own task, whose first poll
                // registers the real waker.
                let mut poll_cx = Context::from_waker(futures::task::noop_waker_ref());
                if let Poll::Ready(reply) = answer.as_mut().poll(&mut poll_cx) {
                    self.reply(reply);
                    return Ok(());
                }
                let outbox = self.outbox.clone();
                let shared = self.shared.clone();
                let deferred = self.deferred.clone();
                self.spawn(id, None, async move {
                    let _running = Gauge::up(&shared.stats.in_flight);
                    let owed = Gauge::up(&deferred);
                    let reply = tokio::time::timeout_at(deadline, answer)
                        .await
                        .unwrap_or_else(|_| {
                            error_response(
                                id,
                                &Status::new(
                                    StatusCode::DeadlineExceeded,
                                    "the handler did not finish before the caller's deadline",
                                ),
                            )
                        });
                    // The only answer owed: write it now. Others are
                    // coming: leave it to the flusher, which runs after the
                    // handlers that are ready now, so their answers share
                    // one write (the cork does the same for handlers that
                    // finish at once).
                    let direct = deferred.load(Ordering::Relaxed) == 1;
                    drop(owed);
                    let _ = outbox.send(reply, direct).await;
                });
            }
            Frame::OneWay { service, body } => match self.lookup(&service) {
                Ok(svc) => {
                    let cx = CallContext {
                        peer: self.peer,
                        deadline: None,
                    };
                    let shared = self.shared.clone();
                    let peer = self.peer;
                    self.tasks.spawn(async move {
                        let _running = Gauge::up(&shared.stats.in_flight);
                        if let Err(status) = svc.notify(body, cx).await {
                            debug!(%peer, %status, "a one-way message failed");
                        }
                    });
                }
                Err(status) => debug!(peer = %self.peer, %status, "dropped a one-way message"),
            },
            Frame::StreamOpen {
                id,
                credit,
                service,
                body,
            } => {
                let window = self.shared.config.stream_window.max(credit.min(1 << 20));
                let permits = Arc::new(Semaphore::new(credit.min(window) as usize));
                let found = self.lookup(&service);
                let cx = CallContext {
                    peer: self.peer,
                    deadline: None,
                };
                let max = self.shared.config.max_message_bytes;
                let outbox = self.outbox.clone();
                let shared = self.shared.clone();
                let credit = permits.clone();
                self.spawn(id, Some(permits), async move {
                    let _running = Gauge::up(&shared.stats.in_flight);
                    let opened = match found {
                        Ok(svc) => svc.stream(id, body, cx, max).await,
                        Err(status) => Err(status),
                    };
                    let mut items = match opened {
                        Ok(items) => items,
                        Err(status) => {
                            let _ = outbox.send(stream_end(id, Some(&status)), true).await;
                            return;
                        }
                    };
                    loop {
                        match credit.acquire().await {
                            Ok(permit) => permit.forget(),
                            Err(_) => return,
                        }
                        match items.next().await {
                            Some(Ok(frame)) => {
                                if outbox.send(frame, false).await.is_err() {
                                    return;
                                }
                            }
                            Some(Err(status)) => {
                                let _ = outbox.send(stream_end(id, Some(&status)), true).await;
                                return;
                            }
                            None => {
                                let _ = outbox.send(stream_end(id, None), true).await;
                                return;
                            }
                        }
                    }
                });
            }
            Frame::Cancel { id } => {
                if let Some(call) = self.in_flight.remove(&id) {
                    call.abort.abort();
                }
            }
            Frame::Credit { id, credit } => {
                if let Some(InFlight {
                    credit: Some(permits),
                    ..
                }) = self.in_flight.get(&id)
                {
                    // Never trust the peer's arithmetic: cap outstanding credit.
                    let cap = 2 * self.shared.config.stream_window as usize;
                    let room = cap.saturating_sub(permits.available_permits());
                    permits.add_permits((credit as usize).min(room));
                }
            }
            Frame::Ping { id } => {
                let pong = frame::encode(Header::Pong { id }, &[]).expect("no name");
                if self.outbox.send_control(pong).is_err() {
                    return Err("the writer stopped".into());
                }
            }
            other @ (Frame::Response { .. }
            | Frame::StreamItem { .. }
            | Frame::StreamEnd { .. }
            | Frame::Pong { .. }) => {
                return Err(format!("client sent a frame only servers send: {other:?}"));
            }
        }
        Ok(())
    }

    /// Queues an answer, waiting in a task of its own if the queue is full.
    fn reply(&mut self, frame: Bytes) {
        if let Err(TrySendError::Full(frame)) = self.outbox.try_send(frame) {
            let outbox = self.outbox.clone();
            self.tasks.spawn(async move {
                let _ = outbox.send(frame, true).await;
            });
        }
    }

    fn lookup(&self, service: &Bytes) -> Result<Arc<dyn ErasedService>, Status> {
        match self.shared.services.get(&service[..]) {
            Some(svc) => {
                self.shared.stats.dispatched.fetch_add(1, Ordering::Relaxed);
                Ok(svc.clone())
            }
            None => Err(Status::new(
                StatusCode::UnknownService,
                format!(
                    "no service named {:?} here; is the peer the right kind of node, running the same Troupe version?",
                    String::from_utf8_lossy(service)
                ),
            )),
        }
    }

    fn spawn(
        &mut self,
        id: u64,
        credit: Option<Arc<Semaphore>>,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let abort = self.tasks.spawn(task);
        self.by_task.insert(abort.id(), id);
        if let Some(previous) = self.in_flight.insert(id, InFlight { abort, credit }) {
            // The peer reused an id still in flight: the old call's answer
            // could no longer be told apart, so stop it.
            previous.abort.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::diag::DiagService;
    use crate::rpc::ClusterToken;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn authenticated(addr: SocketAddr, token: &ClusterToken) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        handshake::client(&mut s, std::slice::from_ref(token))
            .await
            .unwrap();
        s
    }

    async fn closed_by_server(s: &mut TcpStream) {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
            .await
            .expect("the server closes the connection")
            .ok();
    }

    #[tokio::test]
    async fn shutting_down_closes_every_connection_at_once() {
        use crate::rpc::diag::Sleep;
        use crate::rpc::{CallOptions, RpcClient, RpcError};
        let config = RpcConfig::new(ClusterToken::new("t").unwrap());
        let server = DiagService::new()
            .register(RpcServer::new(config.clone()))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        // Keepalives would notice a silent peer only after ten minutes:
        // within the 30 s below, only the socket closing can end the call.
        let mut client_config = config;
        client_config.keepalive_interval = Duration::from_secs(300);
        client_config.keepalive_timeout = Duration::from_secs(600);
        let ch = RpcClient::new(client_config).channel(&server.local_addr().to_string());
        let call = tokio::spawn(async move {
            ch.call_with::<Sleep>(&600_000, CallOptions::timeout(Duration::from_secs(600)))
                .await
        });
        let stats_ready = || server.stats().in_flight.load(Ordering::SeqCst) == 1;
        while !stats_ready() {
            tokio::task::yield_now().await;
        }
        server.shutdown().await;
        // The caller learns at once, not at its (600 s) deadline.
        let result = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .expect("the call fails as soon as the server is gone")
            .unwrap();
        assert!(
            matches!(result, Err(RpcError::ConnectionLost { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn bad_frames_after_the_handshake_close_only_that_connection() {
        let token = ClusterToken::new("t").unwrap();
        let mut config = RpcConfig::new(token.clone());
        config.max_message_bytes = 1024;
        let server = DiagService::new()
            .register(RpcServer::new(config))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let addr = server.local_addr();
        let bystander = authenticated(addr, &token).await;

        // A length prefix far over the limit.
        let mut s = authenticated(addr, &token).await;
        s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        closed_by_server(&mut s).await;

        // A frame of a kind that does not exist.
        let mut s = authenticated(addr, &token).await;
        let mut bad = 9u32.to_be_bytes().to_vec();
        bad.extend_from_slice(&[200, 0, 0, 0, 0, 0, 0, 0, 0]);
        s.write_all(&bad).await.unwrap();
        closed_by_server(&mut s).await;

        // A frame only servers send.
        let mut s = authenticated(addr, &token).await;
        let response = frame::encode(
            Header::Response {
                id: 1,
                status: StatusCode::Ok,
            },
            b"x",
        )
        .unwrap();
        s.write_all(&response).await.unwrap();
        closed_by_server(&mut s).await;

        assert_eq!(server.stats().closed_bad_frames.load(Ordering::SeqCst), 3);
        assert_eq!(server.stats().dispatched.load(Ordering::SeqCst), 0);
        assert_eq!(
            server.stats().open_connections.load(Ordering::SeqCst),
            1,
            "the bystander is still served"
        );
        drop(bystander);
    }
}
