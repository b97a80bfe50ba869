//! `troupe-worker`: the node runtime.
//!
//! Will own joining the cluster, registering resources under a lease, hosting
//! actors on actix arbiters, the distributed actor API and the cluster
//! scheduler. See issue #4.
#![forbid(unsafe_code)]
