//! The one place where errors become HTTP answers, for the proxy and the
//! admin API alike: [`HttpError`] decides each error's status, the text
//! safe to send and what is logged; [`ApiError`] renders it (a text body at
//! the proxy, `{"error": {...}}` at the admin API) and logs the cause with
//! the request id.
//!
//! Internal causes — node ids and addresses, RPC and transport errors, GCS
//! errors, an application's own error message — are logged and never
//! sent. Every 503 logs its cause at warn level, at most one line per
//! second per kind ([`LogLimiter`]); every response of both servers carries
//! `x-request-id` ([`request_id`], a middleware).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;
use troupe_core::config::ConfigError;
use troupe_core::id::RequestId;

use crate::declarative::DeployError;
use crate::http::ServeError;

/// The response header naming the request in the servers' logs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What the client of a `ServeError::Unavailable` is told (the cause names
/// nodes and addresses; it is logged).
pub const UNAVAILABLE_TEXT: &str = "no replica of the application could take the request; retry";
/// What the client of a failed application is told.
pub const APPLICATION_TEXT: &str = "internal server error (the cause is in the server's log)";
/// What the admin API answers when a read of the control store failed.
pub const STORE_READ_TEXT: &str = "the control store cannot answer right now (most likely no quorum of GCS members is reachable); retry, or check that a majority of GCS members runs";
/// What the admin API answers when a change could not be committed.
pub const STORE_WRITE_TEXT: &str = "the control store cannot commit right now (most likely no quorum of GCS members is reachable); nothing was changed unless a retry shows it was; retry, or check that a majority of GCS members runs";

/// An error as either server answers it. Pure: built from the error,
/// rendered and logged by [`ApiError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    /// The admin API's `error.code` (one of the OpenAPI document's enum).
    pub code: &'static str,
    /// What kind of failure, for the log and its rate limit.
    pub kind: &'static str,
    /// The text safe to send.
    pub message: String,
    /// What is logged and never sent.
    pub cause: Option<String>,
    /// The admin API's `error.path` when it is not the request's path (a
    /// config's field).
    pub path: Option<String>,
    /// The problems of an invalid config, each with its path.
    pub issues: Vec<(String, String)>,
}

impl HttpError {
    /// An error whose text is all public.
    pub fn public(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            kind: code,
            message: message.into(),
            cause: None,
            path: None,
            issues: Vec::new(),
        }
    }

    /// An error whose `cause` is logged and whose client gets `message`.
    fn hidden(
        status: StatusCode,
        code: &'static str,
        kind: &'static str,
        message: &str,
        cause: impl Into<String>,
    ) -> Self {
        HttpError {
            kind,
            cause: Some(cause.into()),
            ..HttpError::public(status, code, message)
        }
    }

    /// A read of the control store failed (`cause`: the GCS error).
    pub fn store_read(cause: impl std::fmt::Display) -> Self {
        Self::hidden(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "control_store_read",
            STORE_READ_TEXT,
            cause.to_string(),
        )
    }

    /// A write to the control store failed (`cause`: the GCS error).
    pub fn store_write(cause: impl std::fmt::Display) -> Self {
        Self::hidden(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "control_store_write",
            STORE_WRITE_TEXT,
            cause.to_string(),
        )
    }

    /// An invalid config: 400 with every problem and its path.
    pub fn invalid_config(error: &ConfigError) -> Self {
        HttpError {
            path: Some(
                error
                    .issues()
                    .first()
                    .map(|i| i.path.clone())
                    .unwrap_or_default(),
            ),
            issues: error
                .issues()
                .iter()
                .map(|i| (i.path.clone(), i.message.clone()))
                .collect(),
            ..HttpError::public(StatusCode::BAD_REQUEST, "invalid_config", error.to_string())
        }
    }

    /// A body or config over a size limit ([`crate::limits`]): 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        HttpError::public(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// Whether this answer logs a warning (every 503 does).
    fn warns(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }
}

impl From<&ServeError> for HttpError {
    fn from(error: &ServeError) -> Self {
        let public = |status, code| HttpError::public(status, code, error.to_string());
        match error {
            ServeError::BadRequest(_) => public(StatusCode::BAD_REQUEST, "bad_request"),
            ServeError::NoRoute(_) => public(StatusCode::NOT_FOUND, "not_found"),
            ServeError::Timeout { .. } => public(StatusCode::REQUEST_TIMEOUT, "timeout"),
            ServeError::Overloaded { .. } => public(StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ServeError::NoReplicas { .. } => public(StatusCode::SERVICE_UNAVAILABLE, "no_replicas"),
            ServeError::Application { message } => HttpError::hidden(
                StatusCode::INTERNAL_SERVER_ERROR,
                "application_error",
                "application_error",
                APPLICATION_TEXT,
                message.clone(),
            ),
            ServeError::Unavailable(cause) => HttpError::hidden(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "replica_unreachable",
                UNAVAILABLE_TEXT,
                cause.clone(),
            ),
        }
    }
}

impl From<&DeployError> for HttpError {
    fn from(error: &DeployError) -> Self {
        match error {
            DeployError::Invalid(e) => HttpError::invalid_config(e),
            DeployError::Unavailable(cause) => HttpError::store_write(cause),
            DeployError::TooLarge(message) => HttpError::too_large(message.clone()),
        }
    }
}

/// How the client gets the error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// `<message>; request id <id>` (the proxy).
    Text,
    /// `{"error": {"code", "message", "path", "request_id"[, "issues"]}}`
    /// (the admin API); `path` is the request's.
    Json { path: String },
}

/// A failed request: the error, the request's id, and the body's shape.
/// The error is boxed: handlers return `Result<_, ApiError>`, kept small.
#[derive(Debug)]
pub struct ApiError {
    pub error: Box<HttpError>,
    pub request_id: RequestId,
    body: Body,
}

impl ApiError {
    /// The proxy's answer (a text body) to `request`.
    pub fn text(request: &HttpRequest, error: impl Into<HttpError>) -> Self {
        ApiError {
            error: Box::new(error.into()),
            request_id: request_id_of(request),
            body: Body::Text,
        }
    }

    /// The admin API's answer (a JSON body) to `request`.
    pub fn json(request: &HttpRequest, error: impl Into<HttpError>) -> Self {
        ApiError {
            error: Box::new(error.into()),
            request_id: request_id_of(request),
            body: Body::Json {
                path: request.path().to_owned(),
            },
        }
    }

    /// The body sent (pure).
    fn body(&self) -> (&'static str, String) {
        let e = &self.error;
        match &self.body {
            Body::Text => (
                "text/plain; charset=utf-8",
                format!("{}; request id {}\n", e.message, self.request_id),
            ),
            Body::Json { path } => {
                let mut error = json!({
                    "code": e.code,
                    "message": e.message,
                    "path": e.path.as_deref().unwrap_or(path),
                    "request_id": self.request_id.to_string(),
                });
                if !e.issues.is_empty() {
                    error["issues"] = e
                        .issues
                        .iter()
                        .map(|(path, message)| json!({ "path": path, "message": message }))
                        .collect();
                }
                ("application/json", json!({ "error": error }).to_string())
            }
        }
    }

    /// Logs what the client is not told: every 503 at warn (rate-limited
    /// per kind), an application's failure at error (each one, so every
    /// request id a client quotes can be found).
    fn log(&self) {
        let e = &self.error;
        let cause = e.cause.as_deref().unwrap_or(&e.message);
        if e.warns() {
            let admitted = LIMITER
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(e.kind, Instant::now());
            if let Some(suppressed) = admitted {
                tracing::warn!(
                    request_id = %self.request_id,
                    status = e.status.as_u16(),
                    kind = e.kind,
                    suppressed,
                    cause,
                    "answered 503"
                );
            }
        } else if e.cause.is_some() {
            tracing::error!(request_id = %self.request_id, status = e.status.as_u16(), kind = e.kind, cause, "request failed");
        }
    }
}

impl std::fmt::Display for ApiError {
    /// The public text only (actix may log or show it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.error.status
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        let (content_type, body) = self.body();
        // `x-request-id` is added by the middleware, as on every answer.
        HttpResponse::build(self.error.status)
            .content_type(content_type)
            .body(body)
    }
}

/// The id [`request_id`] gave `request` (a fresh one outside it).
pub fn request_id_of(request: &HttpRequest) -> RequestId {
    request
        .extensions()
        .get::<RequestId>()
        .copied()
        .unwrap_or_else(RequestId::random)
}

/// Middleware of both servers: gives each request an id (read with
/// [`request_id_of`]) and puts it in `x-request-id` on every response,
/// including the ones actix-web answers itself (413, a body that does not
/// read). The request is not cloned: actix-web routes it after this.
pub async fn request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, actix_web::Error> {
    let id = RequestId::random();
    request.extensions_mut().insert(id);
    // Handlers' and extractors' errors arrive here as responses; an `Err`
    // would come only from a failing middleware (there is none inside).
    let mut response = next.call(request).await?.map_into_boxed_body();
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}

/// At most one log line per `interval` for each kind of cause; the next
/// line admitted says how many were suppressed since the last. Pure: the
/// caller passes the time.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    kinds: BTreeMap<&'static str, Window>,
}

#[derive(Debug)]
struct Window {
    logged_at: Instant,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> Self {
        LogLimiter {
            interval,
            kinds: BTreeMap::new(),
        }
    }

    /// `Some(suppressed)` if a line of `kind` may be logged at `now` (with
    /// how many were suppressed since the last one), `None` if not.
    pub fn admit(&mut self, kind: &'static str, now: Instant) -> Option<u64> {
        match self.kinds.get_mut(kind) {
            Some(w) if now.saturating_duration_since(w.logged_at) < self.interval => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let suppressed = std::mem::take(&mut w.suppressed);
                w.logged_at = now;
                Some(suppressed)
            }
            None => {
                self.kinds.insert(
                    kind,
                    Window {
                        logged_at: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

/// The process's limiter of 503 warnings. A std mutex: held for a map
/// lookup, never across an await.
static LIMITER: Mutex<LogLimiter> = Mutex::new(LogLimiter::new(Duration::from_secs(1)));

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "10.0.0.1:7000";

    fn rendered(error: HttpError, body: Body) -> (u16, String) {
        let e = ApiError {
            error: Box::new(error),
            request_id: RequestId::new(7),
            body,
        };
        (e.status_code().as_u16(), e.body().1)
    }

    fn every_serve_error() -> Vec<(ServeError, u16)> {
        vec![
            (ServeError::BadRequest("no n".into()), 400),
            (ServeError::NoRoute("/x".into()), 404),
            (ServeError::Timeout { seconds: 1.5 }, 408),
            (
                ServeError::Application {
                    message: format!("secret stack at {ADDRESS}"),
                },
                500,
            ),
            (
                ServeError::Overloaded {
                    deployment: "d".into(),
                    queued: 2,
                },
                503,
            ),
            (
                ServeError::NoReplicas {
                    deployment: "d".into(),
                    reason: "not enough CPU".into(),
                },
                503,
            ),
            (
                ServeError::Unavailable(format!(
                    "actor 3 is unavailable: node n-1 at {ADDRESS} refused the connection"
                )),
                503,
            ),
        ]
    }

    #[test]
    fn each_serve_error_has_its_status_and_no_cause_leaks() {
        let id = RequestId::new(7).to_string();
        for (error, status) in every_serve_error() {
            for body in [Body::Text, Body::Json { path: "/p".into() }] {
                let (got, text) = rendered(HttpError::from(&error), body);
                assert_eq!(got, status, "{error}");
                assert!(!text.contains(ADDRESS), "{error} leaked: {text}");
                assert!(!text.contains("secret"), "{error} leaked: {text}");
                assert!(text.contains(&id), "{text}");
            }
        }
    }

    #[test]
    fn public_texts_stay_in_the_body() {
        let (_, text) = rendered(
            HttpError::from(&ServeError::NoReplicas {
                deployment: "d".into(),
                reason: "not enough CPU".into(),
            }),
            Body::Text,
        );
        assert_eq!(
            text,
            "d has no running replica: not enough CPU; request id request-0000000000000007\n"
        );
        let (_, text) = rendered(
            HttpError::from(&ServeError::Unavailable(ADDRESS.into())),
            Body::Text,
        );
        assert_eq!(
            text,
            format!("{UNAVAILABLE_TEXT}; request id request-0000000000000007\n")
        );
        for error in [
            ServeError::BadRequest("the body is not UTF-8 text".into()),
            ServeError::Timeout { seconds: 1.5 },
            ServeError::Overloaded {
                deployment: "d".into(),
                queued: 2,
            },
        ] {
            let (_, text) = rendered(HttpError::from(&error), Body::Text);
            assert!(text.starts_with(&error.to_string()), "{text}");
        }
    }

    #[test]
    fn control_store_errors_are_a_fixed_503_with_the_admin_shape() {
        let cause =
            format!("the control store did not answer within 5s (last error: {ADDRESS} refused)");
        let put = HttpError::from(&DeployError::Unavailable(cause.clone()));
        assert_eq!(put.cause.as_deref(), Some(cause.as_str()));
        let (status, text) = rendered(
            put,
            Body::Json {
                path: "/api/serve/applications/".into(),
            },
        );
        assert_eq!(status, 503);
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "code": "unavailable",
                "message": STORE_WRITE_TEXT,
                "path": "/api/serve/applications/",
                "request_id": "request-0000000000000007",
            }})
        );
        let (status, text) = rendered(
            HttpError::store_read(&cause),
            Body::Json { path: "/p".into() },
        );
        assert_eq!(status, 503);
        assert!(!text.contains(ADDRESS), "{text}");
        assert!(text.contains("no quorum"), "{text}");
    }

    #[test]
    fn an_invalid_config_names_its_first_path_and_every_issue() {
        let invalid = ConfigError::single("applications[0].app", "unknown builder");
        let (status, text) = rendered(
            HttpError::from(&DeployError::Invalid(invalid)),
            Body::Json {
                path: "/api/serve/applications/".into(),
            },
        );
        assert_eq!(status, 400);
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "invalid_config");
        assert_eq!(body["error"]["path"], "applications[0].app");
        assert_eq!(
            body["error"]["issues"],
            json!([{"path": "applications[0].app", "message": "unknown builder"}])
        );
    }

    #[test]
    fn the_limiter_logs_one_line_per_second_per_kind_and_counts_the_rest() {
        let mut limiter = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(limiter.admit("unreachable", at(0)), Some(0));
        assert_eq!(limiter.admit("unreachable", at(10)), None);
        assert_eq!(limiter.admit("unreachable", at(999)), None);
        // Another kind has its own window.
        assert_eq!(limiter.admit("overloaded", at(500)), Some(0));
        // A second after the last line: logged, with the two suppressed.
        assert_eq!(limiter.admit("unreachable", at(1000)), Some(2));
        assert_eq!(limiter.admit("unreachable", at(1500)), None);
        assert_eq!(limiter.admit("unreachable", at(3000)), Some(1));
        assert_eq!(limiter.admit("unreachable", at(5000)), Some(0));
        // A clock read earlier than the last line (another thread's)
        // counts as within the window.
        assert_eq!(limiter.admit("overloaded", at(400)), None);
        assert_eq!(limiter.admit("overloaded", at(1500)), Some(1));
    }
}
