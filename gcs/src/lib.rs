//! `troupe-gcs`: the global control store's storage core.
//!
//! An etcd-like KV (byte keys and values, a global revision, transactions,
//! leases, watches, exactly-once writes) replicated with openraft over sled.
//! This crate holds the pure KV logic, the sled storage implementing
//! openraft's v2 storage traits, and the leader's lease deadline logic; the
//! network, the Raft node and the client are built on top of it.
//!
//! # Layout
//!
//! - [`types`] — the openraft type config ([`TypeConfig`]) and aliases.
//! - [`command`] — the replicated [`Command`] and its request types.
//! - [`response`] — [`Response`], [`Outcome`] and the in-band [`CommandError`].
//! - [`model`] — stored data: [`KeyValue`], [`Lease`], [`Event`], sessions.
//! - [`kv`] — the pure engine: `apply(view, command) -> (response, mutations,
//!   events)`, no IO.
//! - [`store`] — sled storage: [`open`], [`LogStore`], [`StateMachineStore`],
//!   [`GcsReader`] for local reads.
//! - [`watch`] — [`Watcher`], history then live events without gaps.
//! - [`lease_tracker`] — [`LeaseTracker`], the leader's lease deadlines.
//! - [`error`] — [`GcsStoreError`].
//!
//! # What is durable when
//!
//! - A log entry is durable when openraft's append callback fires (after a
//!   sled flush). A vote is durable when `save_vote` returns.
//! - The state machine is written one sled batch per `apply` call (all of
//!   its entries, their history and the new last-applied log id), so a crash
//!   recovers the state of an applied prefix, never part of an entry. It is
//!   not flushed per apply: it becomes durable with the next log flush or
//!   snapshot, and openraft re-applies committed entries after it on start.
//! - Before a snapshot is returned to openraft (which then purges the log),
//!   the database is flushed, so the log is never purged past the durably
//!   applied state. The current snapshot is persisted and served after a
//!   restart. Installing a snapshot switches state atomically.
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod command;
pub mod error;
pub mod kv;
pub mod lease_tracker;
pub mod member;
pub mod model;
pub mod network;
pub mod response;
pub mod store;
pub mod types;
pub mod watch;

pub use command::{
    ClientSession, Command, Compare, CompareOp, CompareTarget, DeleteRequest, KeySelector,
    Operation, PutRequest, RangeRequest, TxnOp, TxnRequest,
};
pub use error::{GcsStoreError, Result};
pub use lease_tracker::{LeaseTracker, LeaseTrackerError};
pub use model::{Event, EventKind, KeyValue, Lease, LeaseId, RevisionEvents, SessionRecord};
pub use response::{
    CommandError, DeleteOutcome, OpOutcome, Outcome, PutOutcome, RangeOutcome, Response, TxnOutcome,
};
pub use store::{
    open, GcsReader, HistoryRead, LogStore, RangeRead, StateMachineStore, StoreConfig,
};
pub use types::{Node, NodeId, TypeConfig};
pub use watch::{LiveEvent, Watcher};
