//! Settings shared by RPC clients and servers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The shared secret every member of a cluster presents in the handshake.
/// It never crosses the wire: each side proves it knows the token with an
/// HMAC over fresh nonces. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterToken(Arc<[u8]>);

impl ClusterToken {
    /// A token from a string the operator chose (e.g. `--token` or
    /// `TROUPE_CLUSTER_TOKEN`). Empty tokens are refused.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<ClusterToken, TokenError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(TokenError::Empty);
        }
        Ok(ClusterToken(Arc::from(secret)))
    }

    /// A fresh random token (32 bytes, hex) for a cluster that lives only in
    /// this process, such as the embedded single-node default.
    pub fn random() -> ClusterToken {
        let bytes: [u8; 32] = rand::random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ClusterToken(Arc::from(hex.as_bytes()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(<redacted>)")
    }
}

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the cluster token is empty; pass the same non-empty --token (or TROUPE_CLUSTER_TOKEN) to every node")]
    Empty,
}

/// Limits and timeouts of the transport. `RpcConfig::new(token)` gives the
/// defaults below; every node of a cluster should use the same limits.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// The cluster's shared secret.
    pub token: ClusterToken,
    /// Other tokens accepted from peers while the token is rotated (see
    /// the handshake): a server proves itself with `token` and accepts
    /// any of these too; a client answers a server with whichever matches.
    pub also_accept: Vec<ClusterToken>,
    /// The largest encoded message (request, response or stream item).
    pub max_message_bytes: usize,
    /// Deadline of a call that does not set its own.
    pub default_timeout: Duration,
    /// Longest a single connection attempt (TCP connect and handshake) may
    /// take before the attempt counts as failed.
    pub connect_timeout: Duration,
    /// Longest a server waits for an accepted connection to finish its
    /// handshake, so idle or hostile sockets cannot pile up.
    pub handshake_timeout: Duration,
    /// How often an idle client connection pings its peer.
    pub keepalive_interval: Duration,
    /// A client connection that hears nothing at all from its peer for this
    /// long is closed, failing its calls with `ConnectionLost` (this is how a
    /// frozen or partitioned peer is noticed when TCP does not notice).
    pub keepalive_timeout: Duration,
    /// First wait before reconnecting after a failed attempt; doubles after
    /// each failure up to `reconnect_backoff_max`, with jitter.
    pub reconnect_backoff_min: Duration,
    pub reconnect_backoff_max: Duration,
    /// Stream items a server may send before the client grants more credit.
    pub stream_window: u32,
    /// Requests one connection may have running on a server at once; past
    /// this the server stops reading that connection (TCP backpressure).
    pub max_concurrent_requests: usize,
}

pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

impl RpcConfig {
    /// The token first, then the ones also accepted.
    pub(crate) fn tokens(&self) -> Vec<ClusterToken> {
        std::iter::once(self.token.clone())
            .chain(self.also_accept.iter().cloned())
            .collect()
    }

    pub fn new(token: ClusterToken) -> RpcConfig {
        RpcConfig {
            token,
            also_accept: Vec::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            default_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(5),
            // A silent peer (frozen, or cut off) is noticed within 0.8 to
            // 1 s, which is how long a call to it waits before it is tried
            // elsewhere; pings are tiny, and load does not delay them
            // (measured in CHAOS.md). A connection whose peer thread is only
            // busy is kept when its channel's liveness probe answers.
            keepalive_interval: Duration::from_millis(200),
            keepalive_timeout: Duration::from_millis(800),
            reconnect_backoff_min: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_secs(1),
            stream_window: 256,
            max_concurrent_requests: 4096,
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_message_bytes == 0 || self.max_message_bytes > u32::MAX as usize / 2 {
            return Err(format!(
                "max_message_bytes must be between 1 and {}, got {}",
                u32::MAX / 2,
                self.max_message_bytes
            ));
        }
        if self.keepalive_timeout <= self.keepalive_interval {
            return Err(format!(
                "keepalive_timeout ({:?}) must be longer than keepalive_interval ({:?})",
                self.keepalive_timeout, self.keepalive_interval
            ));
        }
        if self.reconnect_backoff_min > self.reconnect_backoff_max {
            return Err("reconnect_backoff_min must not exceed reconnect_backoff_max".into());
        }
        if self.stream_window < 2 {
            return Err(format!(
                "stream_window must be at least 2, got {}",
                self.stream_window
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err("max_concurrent_requests must be at least 1".into());
        }
        Ok(())
    }

    /// The largest frame the reader accepts: a message plus its header.
    pub(crate) fn max_frame_bytes(&self) -> usize {
        self.max_message_bytes + super::frame::MAX_HEADER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_and_non_empty() {
        assert_eq!(ClusterToken::new("").unwrap_err(), TokenError::Empty);
        let t = ClusterToken::new("hunter2").unwrap();
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_ne!(ClusterToken::random(), ClusterToken::random());
    }

    #[test]
    fn defaults_validate_and_bad_settings_do_not() {
        let ok = RpcConfig::new(ClusterToken::random());
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.keepalive_timeout = bad.keepalive_interval;
        assert!(bad.validate().unwrap_err().contains("keepalive_timeout"));
        let mut bad = ok.clone();
        bad.max_message_bytes = 0;
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.stream_window = 1;
        assert!(bad.validate().is_err());
    }
}
