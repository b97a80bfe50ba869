//! Callers' side: [`RpcClient`] keeps one [`Channel`] per peer address, and
//! a channel keeps one live connection that every call to that peer shares.
//!
//! A channel connects lazily and reconnects by itself: when its connection
//! is closed, the next call opens a new one, waiting out the backoff after
//! failed attempts. A call never waits past its deadline: if no connection
//! could be made by then it fails with `Connect` (the request was not
//! sent); if the answer does not arrive by then, with `Timeout`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::Backoff;
use super::config::RpcConfig;
use super::connection::{Connection, LivenessProbe};
use super::error::{RpcError, Status, StatusCode};
use super::frame::Header;
use super::service::{decode, encode_frame, Protocol};
use super::stream::RpcStream;

/// Per-call settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallOptions {
    /// How long to wait for the answer, connecting included (default: the
    /// config's `default_timeout`).
    pub timeout: Option<Duration>,
    /// Fail at once with `Connect` instead of waiting for a reconnect while
    /// the peer is down (gRPC's fail-fast). Leader discovery wants this.
    pub fail_fast: bool,
}

impl CallOptions {
    pub fn timeout(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout: Some(timeout),
            fail_fast: false,
        }
    }
}

/// A pool of channels, one per peer address. Cheap to clone.
#[derive(Clone)]
pub struct RpcClient {
    config: Arc<RpcConfig>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl RpcClient {
    pub fn new(config: RpcConfig) -> RpcClient {
        RpcClient {
            config: Arc::new(config),
            channels: Arc::default(),
        }
    }

    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    /// The channel to `addr` (`host:port`), created on first use.
    pub fn channel(&self, addr: &str) -> Channel {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(addr) {
            return channel.clone();
        }
        channels
            .entry(addr.to_string())
            .or_insert_with(|| Channel::new(addr, self.config.clone()))
            .clone()
    }
}

/// Calls to one peer over a shared, self-healing connection. Cheap to clone.
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    addr: Arc<str>,
    config: Arc<RpcConfig>,
    current: RwLock<Option<Arc<Connection>>>,
    /// Held while connecting, so concurrent callers share one attempt.
    connecting: tokio::sync::Mutex<Backoff>,
    /// Asked before the keepalive gives up on a silent connection.
    liveness: std::sync::OnceLock<LivenessProbe>,
}

impl Channel {
    pub fn new(addr: &str, config: Arc<RpcConfig>) -> Channel {
        let backoff = Backoff::new(config.reconnect_backoff_min, config.reconnect_backoff_max);
        Channel {
            inner: Arc::new(ChannelInner {
                addr: Arc::from(addr),
                config,
                current: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(backoff),
                liveness: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets (once: `probe` is called only if none is set yet) how the
    /// keepalive checks that the peer's process is alive before it gives up
    /// on a connection that went silent: when the probe answers within `keepalive_timeout`, the
    /// connection is only busy — its server thread held by a long handler —
    /// and is given another `keepalive_timeout`. For a peer whose listener
    /// shares a thread with its handlers (a node's actor arbiters), the
    /// probe asks the node's own RPC address. Applies to connections
    /// opened after it is set.
    pub fn set_liveness(&self, probe: impl FnOnce() -> LivenessProbe) {
        self.inner.liveness.get_or_init(probe);
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Calls `P` with `request` and waits for its answer.
    pub async fn call<P: Protocol>(&self, request: &P::Request) -> Result<P::Response, RpcError> {
        self.call_with::<P>(request, CallOptions::default()).await
    }

    /// [`Channel::call`] with explicit options.
    pub async fn call_with<P: Protocol>(
        &self,
        request: &P::Request,
        options: CallOptions,
    ) -> Result<P::Response, RpcError> {
        let timeout = options.timeout.unwrap_or(self.inner.config.default_timeout);
        let deadline = Instant::now() + timeout;
        // One clock read on the fast path: with a live connection the whole
        // timeout remains.
        let (conn, remaining) = match self.live() {
            Some(conn) => (conn, timeout),
            None => {
                let conn = self.connection(deadline, options.fail_fast).await?;
                (conn, deadline.saturating_duration_since(Instant::now()))
            }
        };
        let id = conn.next_id();
        let header = Header::Request {
            id,
            timeout_ms: remaining.as_millis().min(u32::MAX as u128) as u32,
            service: P::NAME,
        };
        let frame = encode_frame(
            header,
            request,
            self.inner.config.max_message_bytes,
            "request",
        )?;
        let (status, body) = match tokio::time::timeout_at(deadline, conn.unary(id, frame)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(RpcError::Timeout {
                    addr: self.inner.addr.to_string(),
                    service: P::NAME.to_string(),
                    after: timeout,
                })
            }
        };
        match status {
            StatusCode::Ok => {}
            // The server gave up at the same deadline: to the caller that is
            // the same as not hearing back in time.
            StatusCode::DeadlineExceeded => {
                return Err(RpcError::Timeout {
                    addr: self.inner.addr.to_string(),
                    service: P::NAME.to_string(),
                    after: timeout,
                })
            }
            _ => return Err(self.remote(P::NAME, status, &body)),
        }
        decode(&body).map_err(|e| {
            RpcError::Codec(format!(
                "decode the answer of {} from {}: {e}",
                P::NAME,
                self.inner.addr
            ))
        })
    }

    /// Sends `request` to `P` without waiting for (or getting) an answer.
    /// Returns once the message is queued on a live connection.
    pub async fn notify<P: Protocol>(&self, request: &P::Request) -> Result<(), RpcError> {
        let deadline = Instant::now() + self.inner.config.default_timeout;
        let conn = self.connection(deadline, false).await?;
        let header = Header::OneWay { service: P::NAME };
        let frame = encode_frame(
            header,
            request,
            self.inner.config.max_message_bytes,
            "message",
        )?;
        conn.one_way(frame).await
    }

    /// Opens a server stream of `P::Response` items. Items arrive in order;
    /// the stream ends with `None` when the server finishes, or with an
    /// error item if the server or the connection fails. Dropping the
    /// stream cancels it on the server.
    pub async fn stream<P: Protocol>(
        &self,
        request: &P::Request,
    ) -> Result<RpcStream<P::Response>, RpcError> {
        self.stream_with::<P>(request, false).await
    }

    /// [`Self::stream`]; with `fail_fast`, fails at once with `Connect`
    /// while the peer is down instead of waiting for it to come back (a
    /// caller that can open the stream elsewhere, like a GCS watch).
    pub async fn stream_with<P: Protocol>(
        &self,
        request: &P::Request,
        fail_fast: bool,
    ) -> Result<RpcStream<P::Response>, RpcError> {
        let deadline = Instant::now() + self.inner.config.default_timeout;
        let conn = self.connection(deadline, fail_fast).await?;
        let id = conn.next_id();
        let window = self.inner.config.stream_window;
        let header = Header::StreamOpen {
            id,
            credit: window,
            service: P::NAME,
        };
        let frame = encode_frame(
            header,
            request,
            self.inner.config.max_message_bytes,
            "request",
        )?;
        let events = conn.open_stream(id, frame).await?;
        Ok(RpcStream::new(conn, id, events, window, P::NAME))
    }

    pub(crate) fn remote(&self, service: &str, code: StatusCode, body: &[u8]) -> RpcError {
        RpcError::Remote {
            addr: self.inner.addr.to_string(),
            service: service.to_string(),
            status: Status::new(code, String::from_utf8_lossy(body)),
        }
    }

    fn live(&self) -> Option<Arc<Connection>> {
        let current = self.inner.current.read().unwrap_or_else(|p| p.into_inner());
        current.as_ref().filter(|c| c.is_open()).cloned()
    }

    /// The live connection, opening one if needed, by `deadline`.
    async fn connection(
        &self,
        deadline: Instant,
        fail_fast: bool,
    ) -> Result<Arc<Connection>, RpcError> {
        if let Some(conn) = self.live() {
            return Ok(conn);
        }
        let not_by_deadline = |reason: String| RpcError::Connect {
            addr: self.inner.addr.to_string(),
            reason,
        };
        let mut last_error = None;
        loop {
            let mut backoff = tokio::time::timeout_at(deadline, self.inner.connecting.lock())
                .await
                .map_err(|_| {
                    not_by_deadline(
                        "another caller's connection attempt did not finish in time".into(),
                    )
                })?;
            // Someone else may have connected while we waited for the lock.
            if let Some(conn) = self.live() {
                return Ok(conn);
            }
            if let Some(at) = backoff.next_attempt() {
                if at > Instant::now() {
                    if fail_fast || at >= deadline {
                        return Err(last_error.unwrap_or_else(|| {
                            not_by_deadline("the peer was unreachable on the last attempt; retrying after a backoff".into())
                        }));
                    }
                    // Wait out the backoff without the lock: a fail-fast
                    // caller (leader discovery, Raft) must learn at once that
                    // the peer is down, not queue behind this sleep (a watch
                    // reopening on a killed GCS member held it for seconds
                    // while keep-alives, sent there by stale leader hints,
                    // waited their whole attempt timeout).
                    drop(backoff);
                    tokio::time::sleep_until(at).await;
                    continue;
                }
            }
            let attempt_deadline = deadline.min(Instant::now() + self.inner.config.connect_timeout);
            let attempt = tokio::time::timeout_at(
                attempt_deadline,
                Connection::open(
                    self.inner.addr.clone(),
                    &self.inner.config,
                    self.inner.liveness.get().cloned(),
                ),
            )
            .await
            .unwrap_or_else(|_| Err(not_by_deadline("timed out connecting".into())));
            match attempt {
                Ok(conn) => {
                    backoff.succeeded();
                    *self
                        .inner
                        .current
                        .write()
                        .unwrap_or_else(|p| p.into_inner()) = Some(conn.clone());
                    return Ok(conn);
                }
                Err(e @ (RpcError::Unauthenticated { .. } | RpcError::VersionMismatch { .. })) => {
                    backoff.failed(Instant::now(), rand::random());
                    return Err(e);
                }
                Err(e) => {
                    backoff.failed(Instant::now(), rand::random());
                    if fail_fast || Instant::now() >= deadline {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn current(&self) -> Option<Arc<Connection>> {
        self.live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::diag::{ByteBuf, DiagService, Echo, Sleep};
    use crate::rpc::{ClusterToken, RpcServer};

    fn config() -> RpcConfig {
        RpcConfig::new(ClusterToken::new("t").unwrap())
    }

    #[tokio::test]
    async fn abandoned_calls_leave_no_waiters_behind() {
        let server = DiagService::new()
            .register(RpcServer::new(config()))
            .bind("127.0.0.1:0")
            .await
            .unwrap();
        let ch = RpcClient::new(config()).channel(&server.local_addr().to_string());
        ch.call::<Echo>(&ByteBuf::from(vec![1])).await.unwrap();
        let conn = ch.current().expect("connected");

        // Timed out.
        let quick = CallOptions::timeout(Duration::from_millis(20));
        assert!(ch.call_with::<Sleep>(&60_000, quick).await.is_err());
        // Dropped by the caller before any answer.
        let dropped = ch.call::<Sleep>(&60_000);
        assert!(tokio::time::timeout(Duration::from_millis(20), dropped)
            .await
            .is_err());

        assert_eq!(conn.waiting(), 0, "abandoned calls must be forgotten");
        assert!(
            conn.is_open(),
            "abandoning calls does not close the connection"
        );
        assert_eq!(
            ch.call::<Echo>(&ByteBuf::from(vec![2]))
                .await
                .unwrap()
                .into_vec(),
            vec![2]
        );
    }

    /// A caller waiting out a reconnect backoff does not hold the channel:
    /// a fail-fast call to the same dead peer fails at once instead of
    /// queueing behind it until its own deadline (what stalled GCS
    /// keep-alives after a leader's node was killed, issue #17).
    #[tokio::test(start_paused = true)]
    async fn a_fail_fast_call_is_not_held_up_by_a_caller_in_backoff() {
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let ch = RpcClient::new(config()).channel(&dead);
        let fail_fast = CallOptions {
            timeout: Some(Duration::from_secs(2)),
            fail_fast: true,
        };
        // A refused connection: the channel now backs off.
        let first = ch
            .call_with::<Echo>(&ByteBuf::from(vec![1]), fail_fast)
            .await;
        assert!(matches!(first, Err(RpcError::Connect { .. })), "{first:?}");
        // A patient caller (a watch opening a stream) waits for the peer.
        let patient = tokio::spawn({
            let ch = ch.clone();
            async move {
                ch.call_with::<Echo>(
                    &ByteBuf::from(vec![2]),
                    CallOptions::timeout(Duration::from_secs(60)),
                )
                .await
            }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        let second = ch
            .call_with::<Echo>(&ByteBuf::from(vec![3]), fail_fast)
            .await;
        let Err(RpcError::Connect { reason, .. }) = second else {
            panic!("expected a connect error, got {second:?}");
        };
        assert!(
            !reason.contains("another caller"),
            "the fail-fast call queued behind the patient one: {reason}"
        );
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no time passed: {reason}"
        );
        assert!(!patient.is_finished(), "the patient caller still waits");
        patient.abort();
    }
}
