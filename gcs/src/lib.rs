//! `troupe-gcs`: the global control store's storage core.
//!
//! An etcd-like KV (byte keys and values, a global revision, transactions,
//! leases, watches, exactly-once writes) replicated with openraft (the log in
//! our own segment files, the state machine in sled). This crate holds the
//! pure KV logic, the storage implementing openraft's v2 storage traits, and the leader's lease deadline logic; the
//! network, the Raft node and the client are built on top of it.
//!
//! # Layout
//!
//! - [`types`] — the openraft type config ([`TypeConfig`]) and aliases.
//! - [`command`] — the replicated [`Command`], the [`Proposal`] (the commands
//!   the leader batched into one log entry) and the request types.
//! - [`response`] — [`Response`], [`Outcome`] and the in-band [`CommandError`].
//! - [`model`] — stored data: [`KeyValue`], [`Lease`], [`Event`], sessions.
//! - [`kv`] — the pure engine: `apply(view, command) -> (response, mutations,
//!   events)`, no IO; its size limits ([`MAX_VALUE_BYTES`],
//!   [`MAX_WRITE_BYTES`], [`RANGE_PAGE_BYTES`]); which exactly-once
//!   sessions expire and when ([`kv::sessions`], [`SessionRetention`]).
//! - [`store`] — storage (WAL + sled): [`open`], [`LogStore`], [`StateMachineStore`],
//!   [`GcsReader`] for local reads.
//! - [`watch`] — [`Watcher`], history then live events without gaps; the
//!   hub (`watch::hub`) that wakes only the watchers a revision matches.
//! - [`health`] — probing every member, liveness, lag and flags for
//!   `troupe status` and `troupe gcs members`.
//! - [`backup`] — backup files (format, checksum), taking one from the
//!   leader, restoring one as a new cluster's first member.
//! - [`member`] — a running member: Raft over the store, its services,
//!   PreVote elections ([`member::election`]), joins that replace a member
//!   back at its address under a new id ([`member::join`]), the leader's
//!   session expiry (`member::sessions`).
//! - [`client`] — [`client::GcsClient`]: leader discovery, retries,
//!   exactly-once sessions, the member list kept current from the leader
//!   in the background (`client::members`).
//! - [`network`] — Raft's RPCs between members, each addressed to one id.
//! - [`lease_tracker`] — [`LeaseTracker`], the leader's lease deadlines.
//! - [`error`] — [`GcsStoreError`].
//!
//! # What is durable when
//!
//! - The Raft log is our own segment files (`<dir>/log/`, see `store::wal`).
//!   A log entry is durable when openraft's append callback fires (after an
//!   `fdatasync` that began after the write; one per group of appends). A
//!   vote, a truncation and a purge are durable when their call returns.
//!   The committed log id is saved without a sync (openraft may lose it).
//!   On open, a torn tail of the last segment (an unacknowledged append)
//!   is cut; any other damage fails the open with `GcsStoreError::Corrupt`
//!   (the rule: `store::wal`).
//! - The state machine (in sled) is written one sled batch per `apply` call
//!   (all of its entries, their history and the new last-applied log id), so
//!   a crash recovers the state of an applied prefix, never part of an entry.
//!   It is not flushed per apply: it becomes durable with sled's background
//!   flush or the next snapshot, and openraft re-applies committed entries
//!   from the log after it on start.
//! - Before a snapshot is returned to openraft (which then purges the log),
//!   sled is flushed and synced, so the log is never purged past the durably
//!   applied state. The current snapshot is persisted and served after a
//!   restart. Installing a snapshot switches state atomically.
#![forbid(unsafe_code)]

pub mod api;
pub mod backup;
pub mod client;
pub mod command;
pub mod error;
pub mod health;
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
    Operation, Proposal, PutRequest, RangeRequest, TxnOp, TxnRequest,
};
pub use error::{GcsStoreError, Result};
pub use kv::{
    SessionRetention, DEFAULT_SESSION_RETENTION, MAX_VALUE_BYTES, MAX_WRITE_BYTES, RANGE_PAGE_BYTES,
};
pub use lease_tracker::{LeaseTracker, LeaseTrackerError};
pub use model::{Event, EventKind, KeyValue, Lease, LeaseId, RevisionEvents, SessionRecord};
pub use response::{
    CommandError, DeleteOutcome, OpOutcome, Outcome, ProposalResponse, PutOutcome, RangeOutcome,
    Response, TxnOutcome,
};
pub use store::{
    open, GcsReader, HistoryRead, LogStore, RangeRead, StateMachineStore, StoreConfig,
};
pub use types::{Node, NodeId, TypeConfig};
pub use watch::{LiveEvent, WatchHubStats, Watcher};
