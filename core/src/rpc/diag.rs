//! Diagnostic services every node can serve: echo (round-trip checks and
//! benchmarks), sleep (deadline checks), count (a server stream) and a
//! one-way counter. They double as the transport's test fixtures.
//!
//! Byte payloads use [`ByteBuf`] (`serde_bytes`): a plain `Vec<u8>` is
//! encoded element by element by serde, which costs ~100× more per byte.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
pub use serde_bytes::ByteBuf;

use super::error::Status;
use super::server::RpcServer;
use super::service::{CallContext, Protocol, ResponseStream, Service};

/// Answers with the bytes it was sent.
pub struct Echo;
impl Protocol for Echo {
    const NAME: &'static str = "diag.echo";
    type Request = ByteBuf;
    type Response = ByteBuf;
}

/// Waits the given number of milliseconds, then answers.
pub struct Sleep;
impl Protocol for Sleep {
    const NAME: &'static str = "diag.sleep";
    type Request = u64;
    type Response = ();
}

/// What to count, for [`Count`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountRequest {
    pub from: u64,
    /// `None` counts until the caller drops the stream.
    pub to: Option<u64>,
    /// Fail with this message after the last item instead of ending cleanly.
    pub fail_at_end: Option<String>,
}

/// Streams `from..to`, or an endless count.
pub struct Count;
impl Protocol for Count {
    const NAME: &'static str = "diag.count";
    type Request = CountRequest;
    type Response = u64;
}

/// Adds to a counter (used one-way) or reads it (`0` adds nothing).
pub struct Tally;
impl Protocol for Tally {
    const NAME: &'static str = "diag.tally";
    type Request = u64;
    type Response = u64;
}

/// What the diagnostic services have seen, shared with whoever serves them.
#[derive(Debug, Default)]
pub struct DiagState {
    /// Sum of everything sent to [`Tally`].
    pub tally: AtomicU64,
    /// Count streams whose server side was dropped (finished or cancelled).
    pub streams_dropped: AtomicU64,
    /// Sleep calls that began.
    pub sleeps_started: AtomicU64,
}

/// Serves [`Echo`], [`Sleep`], [`Count`] and [`Tally`] from one state.
#[derive(Clone, Default)]
pub struct DiagService {
    state: Arc<DiagState>,
    on_sleep: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl DiagService {
    pub fn new() -> DiagService {
        DiagService::default()
    }

    /// Calls `hook` with the duration of every sleep as it starts (the
    /// standalone peer prints a line, so a test can kill it mid-call).
    pub fn on_sleep(mut self, hook: impl Fn(u64) + Send + Sync + 'static) -> DiagService {
        self.on_sleep = Some(Arc::new(hook));
        self
    }

    pub fn state(&self) -> Arc<DiagState> {
        self.state.clone()
    }

    /// Adds all four services to `server`.
    pub fn register(self, server: RpcServer) -> RpcServer {
        server
            .with_service(EchoHandler)
            .with_service(SleepHandler(self.clone()))
            .with_service(CountHandler(self.state.clone()))
            .with_service(TallyHandler(self.state))
    }
}

/// Serves [`Echo`] alone: what every node answers for `troupe ping` and
/// what benchmarks compare application calls with.
pub struct EchoHandler;
impl Service for EchoHandler {
    type Protocol = Echo;
    async fn call(&self, request: ByteBuf, _cx: CallContext) -> Result<ByteBuf, Status> {
        Ok(request)
    }
}

struct SleepHandler(DiagService);
impl Service for SleepHandler {
    type Protocol = Sleep;
    async fn call(&self, ms: u64, _cx: CallContext) -> Result<(), Status> {
        self.0.state.sleeps_started.fetch_add(1, Ordering::SeqCst);
        if let Some(hook) = &self.0.on_sleep {
            hook(ms);
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

struct TallyHandler(Arc<DiagState>);
impl Service for TallyHandler {
    type Protocol = Tally;
    async fn call(&self, add: u64, _cx: CallContext) -> Result<u64, Status> {
        Ok(self.0.tally.fetch_add(add, Ordering::SeqCst) + add)
    }
}

/// Counts a stream's end, however it ends.
struct DropCounter(Arc<DiagState>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.streams_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

struct CountHandler(Arc<DiagState>);
impl Service for CountHandler {
    type Protocol = Count;
    async fn call(&self, _req: CountRequest, _cx: CallContext) -> Result<u64, Status> {
        Err(Status::unimplemented(
            "diag.count is a stream; open it with Channel::stream",
        ))
    }

    async fn stream(
        &self,
        req: CountRequest,
        _cx: CallContext,
    ) -> Result<ResponseStream<u64>, Status> {
        let guard = DropCounter(self.0.clone());
        let to = req.to.unwrap_or(u64::MAX);
        if to < req.from {
            return Err(Status::invalid_request(format!(
                "cannot count from {} down to {to}",
                req.from
            )));
        }
        let items = futures::stream::iter(req.from..to).map(Ok);
        let end = futures::stream::iter(req.fail_at_end.map(|m| Err(Status::internal(m))));
        Ok(items
            .chain(end)
            .map(move |item| {
                let _alive = &guard;
                item
            })
            .boxed())
    }
}
