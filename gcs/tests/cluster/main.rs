//! Multi-member GCS tests: real members in this process, talking real Raft
//! over the RPC transport on loopback, each with its own sled directory.
//! (Process-level kill tests live in the facade crate's `tests/`.)

mod backup;
mod basics;
mod batching;
mod leases;
mod limits;
mod membership;
mod sessions;
mod support;
mod watch;
