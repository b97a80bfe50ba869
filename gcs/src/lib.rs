//! `troupe-gcs`: the global control store.
//!
//! Will own the Raft-replicated (openraft over sled) etcd-like KV that keeps
//! every piece of cluster state: revisions, transactions, leases, watches,
//! membership, snapshots, and the client with leader discovery. See issue #3.
#![forbid(unsafe_code)]
