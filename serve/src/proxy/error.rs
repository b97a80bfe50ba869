//! The one place where serve errors become HTTP responses. Internal causes
//! (an application's error text) are logged with the request id and not
//! sent; the client gets the status and the request id to quote.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use troupe_core::id::RequestId;

use crate::http::ServeError;

/// A failed request, as the proxy answers it.
#[derive(Debug)]
pub struct ApiError {
    pub error: ServeError,
    pub request_id: RequestId,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// The status of each error.
pub fn status_of(error: &ServeError) -> StatusCode {
    match error {
        ServeError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServeError::NoRoute(_) => StatusCode::NOT_FOUND,
        ServeError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
        ServeError::Application { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        ServeError::Overloaded { .. }
        | ServeError::NoReplicas { .. }
        | ServeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(&self.error)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = match &self.error {
            ServeError::Application { message } => {
                tracing::error!(request_id = %self.request_id, %message, "the application failed");
                format!(
                    "internal server error; request id {} (the cause is in the server's log)\n",
                    self.request_id
                )
            }
            other => format!("{other}; request id {}\n", self.request_id),
        };
        HttpResponse::build(status)
            .insert_header(("x-request-id", self.request_id.to_string()))
            .content_type("text/plain; charset=utf-8")
            .body(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_no_leaked_causes() {
        let id = RequestId::new(7);
        let hidden = ApiError {
            error: ServeError::Application {
                message: "secret stack".into(),
            },
            request_id: id,
        };
        assert_eq!(hidden.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = hidden.error_response().into_body();
        let bytes = actix_web::body::to_bytes(body);
        let text = futures::executor::block_on(bytes).unwrap();
        let text = String::from_utf8_lossy(&text);
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains(&id.to_string()), "{text}");
        let cases = [
            (ServeError::BadRequest("x".into()), 400),
            (ServeError::NoRoute("/x".into()), 404),
            (ServeError::Timeout { seconds: 1.0 }, 408),
            (
                ServeError::Overloaded {
                    deployment: "d".into(),
                    queued: 2,
                },
                503,
            ),
            (ServeError::Unavailable("x".into()), 503),
        ];
        for (error, status) in cases {
            assert_eq!(status_of(&error).as_u16(), status, "{error}");
        }
    }
}
