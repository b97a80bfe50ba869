//! The deployment API: what a user implements.
//!
//! A deployment type implements [`Deployment`] (its registered name, its
//! constructor argument, its constructor, and optionally `reconfigure` and
//! `check_health`), [`Serves<M>`] for each typed request other deployments
//! send it through a [`DeploymentHandle`](crate::DeploymentHandle), and
//! [`HttpIngress`] if it answers HTTP. Handlers take `&self` and run
//! concurrently (up to `max_ongoing_requests` per replica, as in Ray
//! Serve): keep mutable state behind a lock or a `RefCell`. CPU-bound work
//! belongs on `tokio::task::spawn_blocking`.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;
use troupe_core::id::ReplicaId;
use troupe_worker::{Cluster, Message};

use crate::http::{ServeError, ServeRequest, ServeResponse, ServeStream};

/// What a replica knows about itself.
#[derive(Clone)]
pub struct ReplicaContext {
    pub app: String,
    pub deployment: String,
    pub replica: ReplicaId,
    /// The cluster, for anything beyond handles.
    pub cluster: Cluster,
}

/// A deployment type.
pub trait Deployment: Sized + Unpin + 'static {
    /// The name it is registered under; the same in every binary.
    const NAME: &'static str;
    /// The constructor's argument (handles to other deployments included).
    type Args: Serialize + DeserializeOwned + Send + Clone + 'static;

    /// Builds a replica. An `Err` (or a panic) fails this replica; after
    /// three failures the deployment is DEPLOY_FAILED with the message.
    fn new(args: Self::Args, cx: &ReplicaContext) -> impl Future<Output = Result<Self, String>>;

    /// Applies a `user_config` (JSON): once after `new` when the
    /// deployment has one (an `Err` then fails the replica's start), and on
    /// each running replica when a deploy changes it, without restarting
    /// the replica. Calls run one at a time, while requests go on. An
    /// `Err` on a change leaves the replica running with the config it
    /// had; the serve controller logs it and tries again later.
    fn reconfigure(
        &self,
        user_config: &serde_json::Value,
    ) -> impl Future<Output = Result<(), String>> {
        let _ = user_config;
        async { Ok(()) }
    }

    /// Called every `health_check_period_s`; an `Err` (or no answer within
    /// `health_check_timeout_s`) replaces the replica.
    fn check_health(&self) -> impl Future<Output = Result<(), String>> {
        async { Ok(()) }
    }
}

/// How a deployment answers the typed request `M` from a handle.
pub trait Serves<M: Message>: Deployment {
    fn call(&self, request: M) -> impl Future<Output = M::Reply>;
}

/// How an ingress deployment answers HTTP.
pub trait HttpIngress: Deployment {
    fn http(
        &self,
        request: ServeRequest,
    ) -> impl Future<Output = Result<ServeResponse, ServeError>>;
}

/// How an ingress deployment answers HTTP with a streamed body (tokens of a
/// generated text, rows of a long result): the proxy sends each chunk as it
/// comes. A client that disconnects stops the stream.
pub trait StreamingIngress: Deployment {
    fn http_stream(
        &self,
        request: ServeRequest,
    ) -> impl Future<Output = Result<ServeStream, ServeError>>;
}

thread_local! {
    /// The application whose replica is decoding its arguments.
    static DECODING_APP: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `decode` (a replica decoding its constructor arguments) with
/// same-application handles resolving to `app` (see
/// [`DeploymentHandle`](crate::DeploymentHandle)).
pub(crate) fn decode_in_app<T>(app: &str, decode: impl FnOnce() -> T) -> T {
    let previous = DECODING_APP.with(|a| a.replace(Some(app.to_owned())));
    let out = decode();
    DECODING_APP.with(|a| *a.borrow_mut() = previous);
    out
}

/// The application whose replica is decoding its arguments, if one is.
pub(crate) fn decoding_app() -> Option<String> {
    DECODING_APP.with(|app| app.borrow().clone())
}
