//! The caller's end of a server stream, with credit-based flow control.
//!
//! The server may send `stream_window` items ahead; the consumer grants more
//! credit as it takes items, half a window at a time. A slow consumer
//! therefore holds back only its own stream: the connection's reader never
//! blocks, and memory per stream stays bounded by the window.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::connection::{Connection, StreamEvent};
use super::error::{RpcError, Status, StatusCode};
use super::service::decode;

/// Items of a server stream, in the order the server sent them.
pub struct RpcStream<T> {
    conn: Arc<Connection>,
    id: u64,
    events: mpsc::UnboundedReceiver<StreamEvent>,
    taken_since_grant: u32,
    window: u32,
    finished: bool,
    service: &'static str,
    _item: PhantomData<fn() -> T>,
}

impl<T> RpcStream<T> {
    pub(crate) fn new(
        conn: Arc<Connection>,
        id: u64,
        events: mpsc::UnboundedReceiver<StreamEvent>,
        window: u32,
        service: &'static str,
    ) -> RpcStream<T> {
        RpcStream {
            conn,
            id,
            events,
            taken_since_grant: 0,
            window,
            finished: false,
            service,
            _item: PhantomData,
        }
    }

    fn end(&mut self, error: Option<RpcError>) -> Poll<Option<Result<T, RpcError>>> {
        self.finished = true;
        Poll::Ready(error.map(Err))
    }
}

impl<T: DeserializeOwned> Stream for RpcStream<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.finished {
            return Poll::Ready(None);
        }
        let lost = |this: &RpcStream<T>, reason: String| RpcError::ConnectionLost {
            addr: this.conn.addr.to_string(),
            reason,
        };
        match this.events.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(StreamEvent::Item(body))) => {
                this.taken_since_grant += 1;
                if this.taken_since_grant >= this.window / 2 {
                    this.conn.grant(this.id, this.taken_since_grant);
                    this.taken_since_grant = 0;
                }
                let item = decode(&body).map_err(|e| {
                    RpcError::Codec(format!(
                        "decode an item of {} from {}: {e}",
                        this.service, this.conn.addr
                    ))
                });
                Poll::Ready(Some(item))
            }
            Poll::Ready(Some(StreamEvent::End(StatusCode::Ok, _))) => this.end(None),
            Poll::Ready(Some(StreamEvent::End(code, body))) => {
                let status = Status::new(code, String::from_utf8_lossy(&body));
                let error = RpcError::Remote {
                    addr: this.conn.addr.to_string(),
                    service: this.service.to_string(),
                    status,
                };
                this.end(Some(error))
            }
            Poll::Ready(Some(StreamEvent::Lost(reason))) => {
                let error = lost(this, reason);
                this.end(Some(error))
            }
            Poll::Ready(None) => {
                let error = lost(this, "the connection closed".into());
                this.end(Some(error))
            }
        }
    }
}

impl<T> Drop for RpcStream<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.conn.abandon(self.id);
        }
    }
}
