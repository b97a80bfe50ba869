//! The contract between callers and handlers.
//!
//! A [`Protocol`] names a service and its message types; both sides depend
//! on it. A [`Service`] implements a protocol on the server. Callers use
//! `Channel::call::<P>`, `Channel::notify::<P>` and `Channel::stream::<P>`.
//! Domain errors belong in the response type (e.g. `Result<T, MyError>`);
//! [`Status`] is for the transport-level outcome of a request.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bincode::Options;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use super::error::{RpcError, Status, StatusCode};
use super::frame::{self, Header};

/// A service's name and message types, shared by both sides.
pub trait Protocol: Send + Sync + 'static {
    /// Unique among the services of one server, at most 255 bytes; by
    /// convention `crate.service` (e.g. `gcs.kv`).
    const NAME: &'static str;
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

/// A stream of responses from a server-streaming handler.
pub type ResponseStream<T> = BoxStream<'static, Result<T, Status>>;

type Req<S> = <<S as Service>::Protocol as Protocol>::Request;
type Resp<S> = <<S as Service>::Protocol as Protocol>::Response;

/// A server-side implementation of a [`Protocol`].
///
/// Handlers run on the server's tokio runtime, one task per request: they
/// must not block it. CPU-heavy work belongs on `spawn_blocking` or a
/// dedicated thread.
pub trait Service: Send + Sync + 'static {
    type Protocol: Protocol;

    /// Answers one request (a call or a one-way message).
    fn call(
        &self,
        request: Req<Self>,
        cx: CallContext,
    ) -> impl Future<Output = Result<Resp<Self>, Status>> + Send;

    /// Opens a server stream. The default says the service has none.
    fn stream(
        &self,
        request: Req<Self>,
        cx: CallContext,
    ) -> impl Future<Output = Result<ResponseStream<Resp<Self>>, Status>> + Send {
        let _ = (request, cx);
        async {
            Err(Status::unimplemented(format!(
                "{} does not serve streams",
                <Self::Protocol as Protocol>::NAME
            )))
        }
    }
}

/// What a handler knows about the request it serves.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The caller's address.
    pub peer: SocketAddr,
    /// When the caller stops waiting (none for one-way messages and
    /// streams). The server abandons the handler at this instant.
    pub deadline: Option<Instant>,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new()
}

/// The encoded size of a message, as the transport's limit counts it.
pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, RpcError> {
    options()
        .serialized_size(value)
        .map(|n| n as usize)
        .map_err(|e| RpcError::Codec(format!("measure a message: {e}")))
}

/// Decodes a message; trailing bytes are an error (a sign the two sides
/// disagree on the type).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    options().reject_trailing_bytes().deserialize(bytes)
}

/// Encodes one frame whose body is `value`, refusing bodies over `max`.
pub(crate) fn encode_frame<T: Serialize>(
    header: Header<'_>,
    value: &T,
    max: usize,
    what: &'static str,
) -> Result<Bytes, RpcError> {
    let mut dst = BytesMut::with_capacity(128);
    let start = frame::begin(&mut dst, header).map_err(|e| RpcError::Codec(e.to_string()))?;
    let body_start = dst.len();
    options()
        .serialize_into((&mut dst).writer(), value)
        .map_err(|e| RpcError::Codec(format!("encode a {what}: {e}")))?;
    let size = dst.len() - body_start;
    if size > max {
        return Err(RpcError::MessageTooLarge { what, size, max });
    }
    frame::finish(&mut dst, start);
    Ok(dst.freeze())
}

fn status_frame(header: Header<'_>, status: &Status) -> Bytes {
    frame::encode(header, status.message.as_bytes()).expect("status headers carry no name")
}

/// A `Response` frame carrying an error status.
pub(crate) fn error_response(id: u64, status: &Status) -> Bytes {
    status_frame(
        Header::Response {
            id,
            status: status.code,
        },
        status,
    )
}

/// A `StreamEnd` frame; `None` ends the stream successfully.
pub(crate) fn stream_end(id: u64, status: Option<&Status>) -> Bytes {
    match status {
        None => frame::encode(
            Header::StreamEnd {
                id,
                status: StatusCode::Ok,
            },
            &[],
        )
        .expect("no name"),
        Some(s) => status_frame(Header::StreamEnd { id, status: s.code }, s),
    }
}

/// A stream of ready-to-send `StreamItem` frames, or the status that ends it.
pub(crate) type FrameStream = BoxStream<'static, Result<Bytes, Status>>;

/// A [`Service`] with its types erased, as the server's registry holds it.
pub(crate) trait ErasedService: Send + Sync + 'static {
    /// Runs the handler and returns the complete `Response` frame.
    fn call(
        self: Arc<Self>,
        id: u64,
        body: Bytes,
        cx: CallContext,
        max: usize,
    ) -> BoxFuture<'static, Bytes>;
    /// Runs the handler for a one-way message; the answer is not encoded.
    fn notify(
        self: Arc<Self>,
        body: Bytes,
        cx: CallContext,
    ) -> BoxFuture<'static, Result<(), Status>>;
    /// Opens a stream whose items come back as complete frames.
    fn stream(
        self: Arc<Self>,
        id: u64,
        body: Bytes,
        cx: CallContext,
        max: usize,
    ) -> BoxFuture<'static, Result<FrameStream, Status>>;
}

pub(crate) struct Erased<S>(pub(crate) S);

fn decode_request<S: Service>(body: &[u8]) -> Result<Req<S>, Status> {
    decode(body).map_err(|e| {
        Status::invalid_request(format!(
            "could not decode a {} request: {e}; are both sides running the same Troupe version?",
            <S::Protocol as Protocol>::NAME
        ))
    })
}

fn too_large(e: RpcError) -> Status {
    Status::internal(e.to_string())
}

impl<S: Service> ErasedService for Erased<S> {
    fn call(
        self: Arc<Self>,
        id: u64,
        body: Bytes,
        cx: CallContext,
        max: usize,
    ) -> BoxFuture<'static, Bytes> {
        async move {
            let request = match decode_request::<S>(&body) {
                Ok(r) => r,
                Err(status) => return error_response(id, &status),
            };
            drop(body);
            match self.0.call(request, cx).await {
                Ok(response) => {
                    let header = Header::Response {
                        id,
                        status: StatusCode::Ok,
                    };
                    encode_frame(header, &response, max, "response")
                        .unwrap_or_else(|e| error_response(id, &too_large(e)))
                }
                Err(status) => error_response(id, &status),
            }
        }
        .boxed()
    }

    fn notify(
        self: Arc<Self>,
        body: Bytes,
        cx: CallContext,
    ) -> BoxFuture<'static, Result<(), Status>> {
        async move {
            let request = decode_request::<S>(&body)?;
            drop(body);
            self.0.call(request, cx).await.map(drop)
        }
        .boxed()
    }

    fn stream(
        self: Arc<Self>,
        id: u64,
        body: Bytes,
        cx: CallContext,
        max: usize,
    ) -> BoxFuture<'static, Result<FrameStream, Status>> {
        async move {
            let request = decode_request::<S>(&body)?;
            drop(body);
            let items = self.0.stream(request, cx).await?;
            let frames = items.map(move |item| {
                let item = item?;
                encode_frame(Header::StreamItem { id }, &item, max, "stream item")
                    .map_err(too_large)
            });
            Ok(frames.boxed())
        }
        .boxed()
    }
}
