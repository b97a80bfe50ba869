//! The read interface the engine applies commands against, the mutations it
//! emits, and [`Overlay`]: a view with pending mutations on top.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::command::KeySelector;
use crate::model::{KeyValue, Lease, LeaseId, SessionRecord};

/// A read-only view of the KV state machine.
///
/// Implemented by the sled tree (`store`), by [`Overlay`] and, in tests, by an
/// in-memory map. `Error` is the storage's IO error (`Infallible` in memory).
pub trait KvView {
    type Error;

    /// The current revision (0 before the first change).
    fn revision(&self) -> Result<u64, Self::Error>;

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Self::Error>;

    /// The selected key-values in key order, at most `limit` of them.
    fn scan(
        &self,
        selector: &KeySelector,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>, Self::Error>;

    fn lease(&self, id: LeaseId) -> Result<Option<Lease>, Self::Error>;

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, Self::Error>;

    /// The session clock (see [`crate::kv::sessions`]); 0 before the first
    /// expiry command.
    fn session_clock(&self) -> Result<u64, Self::Error>;

    /// Every session as `(client id, last used on the session clock)`, in
    /// client id order. A session stored before sessions were stamped
    /// counts as used at 0.
    fn session_stamps(&self) -> Result<Vec<(u64, u64)>, Self::Error>;
}

impl<V: KvView + ?Sized> KvView for &V {
    type Error = V::Error;

    fn revision(&self) -> Result<u64, Self::Error> {
        (**self).revision()
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Self::Error> {
        (**self).get(key)
    }

    fn scan(
        &self,
        selector: &KeySelector,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>, Self::Error> {
        (**self).scan(selector, limit)
    }

    fn lease(&self, id: LeaseId) -> Result<Option<Lease>, Self::Error> {
        (**self).lease(id)
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, Self::Error> {
        (**self).session(client_id)
    }

    fn session_clock(&self) -> Result<u64, Self::Error> {
        (**self).session_clock()
    }

    fn session_stamps(&self) -> Result<Vec<(u64, u64)>, Self::Error> {
        (**self).session_stamps()
    }
}

/// One change to the state machine, as decided by the engine. The storage
/// executes a list of them atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    PutKv(KeyValue),
    DeleteKv(Vec<u8>),
    PutLease(Lease),
    DeleteLease(LeaseId),
    /// A session's last write, used at `used_ms` of the session clock.
    PutSession {
        client_id: u64,
        record: SessionRecord,
        used_ms: u64,
    },
    /// An expired session.
    DeleteSession(u64),
    SetRevision(u64),
    SetSessionClock(u64),
}

/// The net effect of a sequence of mutations: the last write per item wins.
/// `None` marks a deletion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingWrites {
    pub kvs: BTreeMap<Vec<u8>, Option<KeyValue>>,
    pub leases: BTreeMap<LeaseId, Option<Lease>>,
    /// A session's record and last use, or `None` for an expired one.
    pub sessions: BTreeMap<u64, Option<(SessionRecord, u64)>>,
    pub revision: Option<u64>,
    pub session_clock: Option<u64>,
}

impl PendingWrites {
    pub fn record(&mut self, mutation: Mutation) {
        match mutation {
            Mutation::PutKv(kv) => {
                self.kvs.insert(kv.key.clone(), Some(kv));
            }
            Mutation::DeleteKv(key) => {
                self.kvs.insert(key, None);
            }
            Mutation::PutLease(lease) => {
                self.leases.insert(lease.id, Some(lease));
            }
            Mutation::DeleteLease(id) => {
                self.leases.insert(id, None);
            }
            Mutation::PutSession {
                client_id,
                record,
                used_ms,
            } => {
                self.sessions.insert(client_id, Some((record, used_ms)));
            }
            Mutation::DeleteSession(client_id) => {
                self.sessions.insert(client_id, None);
            }
            Mutation::SetRevision(revision) => self.revision = Some(revision),
            Mutation::SetSessionClock(clock) => self.session_clock = Some(clock),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.kvs.is_empty()
            && self.leases.is_empty()
            && self.sessions.is_empty()
            && self.revision.is_none()
            && self.session_clock.is_none()
    }
}

/// A view of `base` with pending writes applied on top, so a later operation
/// sees an earlier one's effects before anything is stored.
#[derive(Debug)]
pub struct Overlay<V> {
    base: V,
    pending: PendingWrites,
}

impl<V: KvView> Overlay<V> {
    pub fn new(base: V) -> Self {
        Overlay {
            base,
            pending: PendingWrites::default(),
        }
    }

    pub fn record(&mut self, mutation: Mutation) {
        self.pending.record(mutation);
    }

    pub fn pending(&self) -> &PendingWrites {
        &self.pending
    }

    pub fn into_pending(self) -> PendingWrites {
        self.pending
    }
}

impl<V: KvView> KvView for Overlay<V> {
    type Error = V::Error;

    fn revision(&self) -> Result<u64, Self::Error> {
        match self.pending.revision {
            Some(revision) => Ok(revision),
            None => self.base.revision(),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Self::Error> {
        match self.pending.kvs.get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.get(key),
        }
    }

    fn scan(
        &self,
        selector: &KeySelector,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>, Self::Error> {
        let bounds = selector.bounds();
        let pending: Vec<(&Vec<u8>, &Option<KeyValue>)> = self
            .pending
            .kvs
            .range::<Vec<u8>, (Bound<Vec<u8>>, Bound<Vec<u8>>)>(bounds)
            .collect();
        // Each pending delete can hide at most one base key: fetch that many
        // extra so the first `limit` merged keys are all known.
        let deletes = pending.iter().filter(|(_, kv)| kv.is_none()).count();
        let base = self.base.scan(selector, limit.map(|l| l + deletes))?;
        let mut merged: BTreeMap<Vec<u8>, KeyValue> =
            base.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        for (key, kv) in pending {
            match kv {
                Some(kv) => merged.insert(key.clone(), kv.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged
            .into_values()
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }

    fn lease(&self, id: LeaseId) -> Result<Option<Lease>, Self::Error> {
        match self.pending.leases.get(&id) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.lease(id),
        }
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, Self::Error> {
        match self.pending.sessions.get(&client_id) {
            Some(pending) => Ok(pending.as_ref().map(|(record, _)| record.clone())),
            None => self.base.session(client_id),
        }
    }

    fn session_clock(&self) -> Result<u64, Self::Error> {
        match self.pending.session_clock {
            Some(clock) => Ok(clock),
            None => self.base.session_clock(),
        }
    }

    fn session_stamps(&self) -> Result<Vec<(u64, u64)>, Self::Error> {
        let mut stamps: BTreeMap<u64, u64> = self.base.session_stamps()?.into_iter().collect();
        for (client_id, pending) in &self.pending.sessions {
            match pending {
                Some((_, used)) => stamps.insert(*client_id, *used),
                None => stamps.remove(client_id),
            };
        }
        Ok(stamps.into_iter().collect())
    }
}
