//! `troupe-serve`: model serving on top of the actor layer.
//!
//! Will own deployments, applications, the serve controller, replicas,
//! routers and handles, autoscaling, the HTTP proxy and the admin REST API.
//! See issues #5 and #6.
#![forbid(unsafe_code)]
