//! What can go wrong with a call, for the caller ([`RpcError`]) and for a
//! handler ([`Status`]).
//!
//! The split that matters to callers (the GCS client, actor handles, the
//! router) is the one openraft draws between `APIError` and `Fatal`:
//! [`RpcError::is_retryable`] says whether trying again (perhaps on another
//! peer) can help, and [`RpcError::may_have_executed`] says whether the peer
//! may have run the request even though no answer arrived, so that a
//! non-idempotent call is only retried with a deduplication id.

use std::fmt;
use std::time::Duration;

/// The outcome class of a request, as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum StatusCode {
    /// The handler answered.
    Ok = 0,
    /// No service of that name is registered on the peer.
    UnknownService = 1,
    /// The request could not be decoded as the service's request type.
    InvalidRequest = 2,
    /// The handler failed.
    Internal = 3,
    /// The handler did not finish before the caller's deadline.
    DeadlineExceeded = 4,
    /// The service does not support this kind of call (e.g. a stream).
    Unimplemented = 5,
    /// The peer cannot take the request now (shutting down, overloaded):
    /// another peer or a later attempt may succeed.
    Unavailable = 6,
    /// The caller gave up on the request.
    Cancelled = 7,
    /// The request was understood and refused (e.g. failed validation, a
    /// compare that did not hold); retrying the same request will not help.
    Rejected = 8,
}

impl StatusCode {
    pub(crate) fn from_u8(b: u8) -> Option<StatusCode> {
        Some(match b {
            0 => StatusCode::Ok,
            1 => StatusCode::UnknownService,
            2 => StatusCode::InvalidRequest,
            3 => StatusCode::Internal,
            4 => StatusCode::DeadlineExceeded,
            5 => StatusCode::Unimplemented,
            6 => StatusCode::Unavailable,
            7 => StatusCode::Cancelled,
            8 => StatusCode::Rejected,
            _ => return None,
        })
    }

    /// A short lowercase name, for logs and error text.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Ok => "ok",
            StatusCode::UnknownService => "unknown service",
            StatusCode::InvalidRequest => "invalid request",
            StatusCode::Internal => "internal error",
            StatusCode::DeadlineExceeded => "deadline exceeded",
            StatusCode::Unimplemented => "unimplemented",
            StatusCode::Unavailable => "unavailable",
            StatusCode::Cancelled => "cancelled",
            StatusCode::Rejected => "rejected",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handler's error answer: a code and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    pub message: String,
}

impl Status {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(StatusCode::Internal, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> Status {
        Status::new(StatusCode::InvalidRequest, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(StatusCode::Unavailable, message)
    }
    pub fn rejected(message: impl Into<String>) -> Status {
        Status::new(StatusCode::Rejected, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> Status {
        Status::new(StatusCode::Unimplemented, message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Status {}

/// Why a call did not return the handler's answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No connection could be made; the request was never sent.
    #[error("could not connect to {addr}: {reason}; check that the peer is running and that the address is right")]
    Connect { addr: String, reason: String },
    /// The peer does not share this node's cluster token; nothing was sent.
    #[error("{addr} refused the cluster token (or is not a Troupe peer); every node of a cluster must use the same token")]
    Unauthenticated { addr: String },
    /// The peer speaks another protocol version; nothing was sent.
    #[error("{addr} speaks RPC protocol version {theirs}, this process speaks {ours}; run the same Troupe version on every node")]
    VersionMismatch { addr: String, ours: u8, theirs: u8 },
    /// No answer before the deadline. The peer may have run the request.
    #[error("call to {service} on {addr} timed out after {after:?}")]
    Timeout {
        addr: String,
        service: String,
        after: Duration,
    },
    /// The connection dropped before the answer arrived. The peer may have
    /// run the request.
    #[error("connection to {addr} was lost before the answer arrived: {reason}")]
    ConnectionLost { addr: String, reason: String },
    /// The message is larger than the configured limit; nothing was sent.
    #[error("{what} of {size} bytes is larger than the {max}-byte message limit; send it in parts or raise max_message_bytes on every node")]
    MessageTooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    /// A message could not be encoded, or an answer could not be decoded as
    /// the expected type (the two sides disagree on the protocol's types).
    #[error("could not {0}")]
    Codec(String),
    /// The peer answered with an error status.
    #[error("{service} on {addr} answered {status}")]
    Remote {
        addr: String,
        service: String,
        status: Status,
    },
    /// The client was shut down.
    #[error("the RPC client was shut down")]
    Shutdown,
}

impl RpcError {
    /// Whether trying the same request again (later, or on another peer)
    /// can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Connect { .. }
            | RpcError::Timeout { .. }
            | RpcError::ConnectionLost { .. } => true,
            RpcError::Remote { status, .. } => matches!(
                status.code,
                StatusCode::Unavailable | StatusCode::DeadlineExceeded
            ),
            RpcError::Unauthenticated { .. }
            | RpcError::VersionMismatch { .. }
            | RpcError::MessageTooLarge { .. }
            | RpcError::Codec(_)
            | RpcError::Shutdown => false,
        }
    }

    /// Whether the peer may have run the request although no answer came
    /// back: a retry of a non-idempotent request needs a deduplication id.
    pub fn may_have_executed(&self) -> bool {
        match self {
            RpcError::Timeout { .. } | RpcError::ConnectionLost { .. } => true,
            RpcError::Remote { status, .. } => matches!(
                status.code,
                StatusCode::DeadlineExceeded | StatusCode::Internal | StatusCode::Cancelled
            ),
            _ => false,
        }
    }

    /// The handler's status, if the peer answered with one.
    pub fn status(&self) -> Option<&Status> {
        match self {
            RpcError::Remote { status, .. } => Some(status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_round_trip_through_their_wire_byte() {
        for b in 0..=255u8 {
            if let Some(code) = StatusCode::from_u8(b) {
                assert_eq!(code as u8, b);
            }
        }
        assert_eq!(StatusCode::from_u8(9), None);
    }

    #[test]
    fn retry_classes() {
        let lost = RpcError::ConnectionLost {
            addr: "a".into(),
            reason: "eof".into(),
        };
        assert!(lost.is_retryable() && lost.may_have_executed());
        let connect = RpcError::Connect {
            addr: "a".into(),
            reason: "refused".into(),
        };
        assert!(connect.is_retryable() && !connect.may_have_executed());
        let auth = RpcError::Unauthenticated { addr: "a".into() };
        assert!(!auth.is_retryable() && !auth.may_have_executed());
        let rejected = RpcError::Remote {
            addr: "a".into(),
            service: "s".into(),
            status: Status::rejected("compare failed"),
        };
        assert!(!rejected.is_retryable() && !rejected.may_have_executed());
        let unavailable = RpcError::Remote {
            addr: "a".into(),
            service: "s".into(),
            status: Status::unavailable("not leader"),
        };
        assert!(unavailable.is_retryable());
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = RpcError::VersionMismatch {
            addr: "127.0.0.1:1".into(),
            ours: 1,
            theirs: 2,
        };
        assert!(e.to_string().contains("same Troupe version"));
        let e = RpcError::MessageTooLarge {
            what: "request",
            size: 10,
            max: 9,
        };
        assert!(e.to_string().contains("max_message_bytes"));
    }
}
