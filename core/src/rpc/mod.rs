//! The internal RPC transport: how Troupe processes talk to each other.
//!
//! - TCP, one connection per peer pair, many calls in flight on it,
//!   matched to their callers by request id ([`Channel`]).
//! - Each frame is a 4-byte length and a small header followed by a
//!   bincode-encoded message; frames over the limit are refused.
//! - A handshake checks the protocol version and proves, both ways, that the
//!   peer holds the cluster token (or one accepted while it is rotated,
//!   [`RpcConfig::also_accept`]), before anything is dispatched.
//! - Every call has a deadline; a dead peer or a dropped connection fails
//!   every waiting call with a typed [`RpcError`] at once; keepalives notice
//!   peers that stop answering without closing the socket, first asking a
//!   channel's [`LivenessProbe`], if it has one, whether the peer is only
//!   busy ([`Channel::set_liveness`]).
//! - One-way messages ([`Channel::notify`]) and server streams with credit
//!   flow control ([`Channel::stream`], [`RpcStream`]).
//! - Channels reconnect by themselves with exponential backoff.
//!
//! A service is a [`Protocol`] (its name and message types, shared by both
//! sides) and a [`Service`] implementing it on the server:
//!
//! ```
//! use troupe_core::rpc::*;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! struct Echo;
//! impl Protocol for Echo {
//!     const NAME: &'static str = "demo.echo";
//!     type Request = String;
//!     type Response = String;
//! }
//! struct EchoService;
//! impl Service for EchoService {
//!     type Protocol = Echo;
//!     async fn call(&self, req: String, _cx: CallContext) -> Result<String, Status> {
//!         Ok(req)
//!     }
//! }
//! let config = RpcConfig::new(ClusterToken::new("secret")?);
//! let server = RpcServer::new(config.clone()).with_service(EchoService).bind("127.0.0.1:0").await?;
//! let client = RpcClient::new(config);
//! let channel = client.channel(&server.local_addr().to_string());
//! let answer = channel.call::<Echo>(&"hi".to_string()).await?;
//! assert_eq!(answer, "hi");
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - `frame`: the wire format, pure encode/decode.
//! - `handshake`: version check and mutual token proof.
//! - `service`: [`Protocol`], [`Service`], the message codec.
//! - `outbox`: the per-connection writer task.
//! - `connection`: a client connection and its waiting calls.
//! - `client`: [`RpcClient`] and [`Channel`] (reuse, reconnect, deadlines).
//! - `stream`: [`RpcStream`], the caller's end of a server stream.
//! - `server`: [`RpcServer`], the accept loop and per-connection dispatch.
//! - [`diag`]: diagnostic services (echo, sleep, count, tally).
//! - `backoff`: when to retry connecting, a pure decision.
//! - `config`, `error`: [`RpcConfig`], [`ClusterToken`], [`RpcError`], [`Status`].

mod backoff;
mod client;
mod config;
mod connection;
pub mod diag;
mod error;
mod frame;
mod handshake;
mod id_map;
mod outbox;
mod server;
mod service;
mod stream;

pub use client::{CallOptions, Channel, RpcClient};
pub use config::{ClusterToken, RpcConfig, TokenError, DEFAULT_MAX_MESSAGE_BYTES};
pub use connection::LivenessProbe;
pub use error::{RpcError, Status, StatusCode};
pub use handshake::PROTOCOL_VERSION;
pub use server::{RpcServer, ServerHandle, ServerStats};
pub use service::{encoded_len, CallContext, Protocol, ResponseStream, Service};
pub use stream::RpcStream;
