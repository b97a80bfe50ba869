//! `troupe-serve`: model serving on top of the actor layer.
//!
//! Write models as ordinary Rust types ([`Deployment`], [`Serves`],
//! [`HttpIngress`]), bind them into an [`Application`] in code (a
//! deployment gets [`DeploymentHandle`]s to the ones it calls), deploy it,
//! and every node's HTTP [`proxy`] serves it.
//!
//! # Layout
//!
//! - [`deployment`] — the traits a user implements.
//! - [`http`] — [`ServeRequest`], [`ServeResponse`], [`ServeError`].
//! - [`http_error`] — the one place where errors become HTTP answers (the
//!   proxy's and the admin API's): status, public text, logged cause,
//!   rate-limited 503 warnings, `x-request-id` on every response.
//! - [`app`] — [`Application`], [`Bind`] (options with Ray Serve's names),
//!   [`DeploymentHandle`], [`deploy`], [`delete`].
//! - [`autoscale`] — the pure autoscaler: the metrics window the
//!   controller keeps from routers' reports, and the decision (new target,
//!   carried state, reason) with the rule against each of Ray Serve's
//!   autoscaling failures.
//! - [`batch`] — [`batch::Batcher`]: dynamic batching (Ray's `@serve.batch`).
//! - [`catalog`] — [`Catalog`]: deployment types and applications by name.
//! - [`config`] — the YAML config file: schema, validation with paths,
//!   building specs from it, and `serve build`'s description.
//! - [`declarative`] — deploying a whole config as the desired state.
//! - [`limits`] — a config's size and nesting limits (CLI and admin API).
//! - [`replica`] — the shared actor hosting a replica.
//! - [`reporter`] — each process's autoscaling reports (its routers'
//!   loads) to the serve controller, over the transport.
//! - [`spec`] — the GCS records (desired applications, statuses) and names.
//! - [`records`] — serve's GCS records decoded once per view revision,
//!   shared by the proxy, the routers and the controller.
//! - [`router`] — the pure replica choice and the per-deployment router.
//! - [`controller`] — the serve controller (pure round + the loop; its
//!   autoscaler keeps targets and decisions in the GCS; in-place
//!   `user_config` updates).
//! - [`proxy`] — the actix-web ingress; its `/-/healthz` also fails while
//!   it cannot reach a deployment it routes.
//! - [`runtime`] — the process's serve runtime (routers, cluster).
//! - [`admin`] — the admin HTTP server (dashboard port): `/metrics`, the
//!   REST API and Ray's health probes.
//! - [`metrics`] — the process's Prometheus metrics (written by the data
//!   plane, rendered by the admin server).
//! - [`host`] — the host's CPU, memory, disk and network under Ray's
//!   node-agent series names (pure parsing of `/proc`, read per scrape).
//! - [`roles`] — [`start`]: serve's roles on a node.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod autoscale;
pub mod batch;
pub mod catalog;
pub mod config;
pub mod controller;
pub mod declarative;
pub mod deployment;
pub mod host;
pub mod http;
pub mod http_error;
mod http_thread;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod records;
pub mod replica;
pub mod reporter;
pub mod roles;
pub mod router;
pub mod runtime;
pub mod spec;

pub use admin::{AdminConfig, AdminServer};
pub use app::{delete, deploy, Application, Bind, DeploymentHandle};
pub use catalog::{Catalog, DeploymentType};
pub use config::ServeConfig;
pub use deployment::{Deployment, HttpIngress, ReplicaContext, Serves, StreamingIngress};
pub use http::{ServeError, ServeRequest, ServeResponse, ServeStream, StreamPart};
pub use proxy::{Proxy, ProxyConfig};
pub use roles::{start, ServeRoles};
pub use spec::{AppState, AppStatus};
