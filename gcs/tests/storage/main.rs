//! Integration tests of the sled storage through its public API: one binary,
//! one module per concern.

mod conformance;
mod crash;
mod model;
mod raft;
mod reference;
mod restart;
mod support;
mod watch;
mod workload;
