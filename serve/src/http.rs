//! What an ingress deployment sees and answers: [`ServeRequest`],
//! [`ServeResponse`], and [`ServeError`] (mapped to HTTP statuses in one
//! place, `http_error`).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use thiserror::Error;

/// An HTTP request as the proxy hands it to an ingress replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServeRequest {
    pub method: String,
    /// The path with the application's route prefix removed (always
    /// starting with `/`).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// Shared, not copied: the proxy hands over the bytes it read.
    pub body: bytes::Bytes,
}

impl ServeRequest {
    /// A request with this method, path and body (for tests and handles).
    pub fn new(method: &str, path: &str, body: impl Into<Vec<u8>>) -> Self {
        ServeRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: Vec::new(),
            body: bytes::Bytes::from(body.into()),
        }
    }

    /// The body parsed as JSON into `T`; a body that does not parse is a
    /// [`ServeError::BadRequest`] saying why (HTTP 400).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ServeError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ServeError::BadRequest(format!("the body is not the expected JSON: {e}")))
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, ServeError> {
        std::str::from_utf8(&self.body)
            .map_err(|_| ServeError::BadRequest("the body is not UTF-8 text".into()))
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What an ingress replica answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ByteBuf,
}

impl ServeResponse {
    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        ServeResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: ByteBuf::from(body.into().into_bytes()),
        }
    }

    /// 200 with `value` as a JSON body.
    pub fn json<T: Serialize>(value: &T) -> Self {
        ServeResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: ByteBuf::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// 200 with raw bytes.
    pub fn bytes(body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        ServeResponse {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: ByteBuf::from(body.into()),
        }
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// A streaming response: status and headers first, then the body in
/// chunks as the deployment produces them (sent chunked to the client).
pub struct ServeStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: futures::stream::LocalBoxStream<'static, Vec<u8>>,
}

impl ServeStream {
    /// 200 with `content_type` and `body`.
    pub fn new(content_type: &str, body: impl futures::Stream<Item = Vec<u8>> + 'static) -> Self {
        use futures::StreamExt;
        ServeStream {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.boxed_local(),
        }
    }
}

/// One item of a streaming response on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StreamPart {
    Head {
        status: u16,
        headers: Vec<(String, String)>,
    },
    Chunk(ByteBuf),
    /// The deployment refused the request (before any head).
    Error(ServeError),
}

/// Why a request was not answered by the application. The proxy maps each
/// to one HTTP status (see `http_error`); messages are safe to show except
/// `Application`'s and `Unavailable`'s, which are logged, not sent.
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize)]
pub enum ServeError {
    /// The request is malformed for this endpoint (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Nothing is served at this path (404).
    #[error("no application is served at {0}; see /-/routes")]
    NoRoute(String),
    /// Every replica is busy and the queue is full (503).
    #[error("{deployment} is overloaded: all replicas are at max_ongoing_requests and {queued} requests are queued (max_queued_requests); retry later")]
    Overloaded { deployment: String, queued: usize },
    /// No replica is running (503).
    #[error("{deployment} has no running replica: {reason}")]
    NoReplicas { deployment: String, reason: String },
    /// The application took too long (408 at the proxy).
    #[error("the request took longer than {seconds} s")]
    Timeout { seconds: f64 },
    /// The application's own error (500); `message` is logged, not sent.
    #[error("the application failed: {message}")]
    Application { message: String },
    /// The cluster could not deliver the request (503).
    #[error("the request could not reach a replica: {0}")]
    Unavailable(String),
}

impl ServeError {
    /// The variant's name: the `exception_type` label of
    /// `ray_serve_deployment_error_counter_total` (Ray puts the Python
    /// exception's class name there).
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::BadRequest(_) => "BadRequest",
            ServeError::NoRoute(_) => "NoRoute",
            ServeError::Overloaded { .. } => "Overloaded",
            ServeError::NoReplicas { .. } => "NoReplicas",
            ServeError::Timeout { .. } => "Timeout",
            ServeError::Application { .. } => "Application",
            ServeError::Unavailable(_) => "Unavailable",
        }
    }
}
