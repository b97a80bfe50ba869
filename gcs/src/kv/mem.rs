//! An in-memory [`KvView`] for unit tests of the engine.

use std::collections::BTreeMap;
use std::convert::Infallible;

use crate::command::KeySelector;
use crate::kv::engine::{self, Applied};
use crate::kv::view::{KvView, Overlay};
use crate::model::{KeyValue, Lease, LeaseId, RevisionEvents, SessionRecord};
use crate::Command;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MemKv {
    pub revision: u64,
    pub kvs: BTreeMap<Vec<u8>, KeyValue>,
    pub leases: BTreeMap<LeaseId, Lease>,
    /// Each session's record and last use on the session clock.
    pub sessions: BTreeMap<u64, (SessionRecord, u64)>,
    pub session_clock: u64,
    pub history: Vec<RevisionEvents>,
}

impl MemKv {
    /// Apply through the engine and execute its mutations.
    pub fn apply(&mut self, command: &Command) -> Applied {
        let applied = match engine::apply(&*self, command) {
            Ok(applied) => applied,
            Err(never) => match never {},
        };
        // Executing through an overlay checks that the net effect of the
        // mutation list is what gets stored.
        let mut overlay = Overlay::new(&*self);
        for m in &applied.mutations {
            overlay.record(m.clone());
        }
        let pending = overlay.into_pending();
        for (key, kv) in pending.kvs {
            match kv {
                Some(kv) => self.kvs.insert(key, kv),
                None => self.kvs.remove(&key),
            };
        }
        for (id, lease) in pending.leases {
            match lease {
                Some(lease) => self.leases.insert(id, lease),
                None => self.leases.remove(&id),
            };
        }
        for (client_id, session) in pending.sessions {
            match session {
                Some(session) => self.sessions.insert(client_id, session),
                None => self.sessions.remove(&client_id),
            };
        }
        if let Some(revision) = pending.revision {
            self.revision = revision;
        }
        if let Some(clock) = pending.session_clock {
            self.session_clock = clock;
        }
        if let Some(events) = &applied.events {
            self.history.push(events.clone());
        }
        applied
    }
}

impl KvView for MemKv {
    type Error = Infallible;

    fn revision(&self) -> Result<u64, Infallible> {
        Ok(self.revision)
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, Infallible> {
        Ok(self.kvs.get(key).cloned())
    }

    fn scan(
        &self,
        selector: &KeySelector,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>, Infallible> {
        Ok(self
            .kvs
            .range(selector.bounds())
            .map(|(_, kv)| kv.clone())
            .take(limit.unwrap_or(usize::MAX))
            .collect())
    }

    fn lease(&self, id: LeaseId) -> Result<Option<Lease>, Infallible> {
        Ok(self.leases.get(&id).cloned())
    }

    fn session(&self, client_id: u64) -> Result<Option<SessionRecord>, Infallible> {
        Ok(self
            .sessions
            .get(&client_id)
            .map(|(record, _)| record.clone()))
    }

    fn session_clock(&self) -> Result<u64, Infallible> {
        Ok(self.session_clock)
    }

    fn session_stamps(&self) -> Result<Vec<(u64, u64)>, Infallible> {
        Ok(self
            .sessions
            .iter()
            .map(|(id, (_, used))| (*id, *used))
            .collect())
    }
}
