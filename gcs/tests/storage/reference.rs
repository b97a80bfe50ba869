//! A deliberately naive reference model of the KV, independent of the
//! engine: plain `BTreeMap`s and the etcd rules written out directly.

use std::collections::{BTreeMap, BTreeSet};

use troupe_gcs::{CommandError, EventKind, KeyValue, Lease, LeaseId};

/// One event as the model sees it: kind, key, value.
pub type EventSummary = (EventKind, Vec<u8>, Vec<u8>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub revision: u64,
    pub kvs: BTreeMap<Vec<u8>, KeyValue>,
    pub leases: BTreeMap<u64, (u64, BTreeSet<Vec<u8>>)>,
    /// Events per revision: (kind, key, value).
    pub history: BTreeMap<u64, Vec<EventSummary>>,
}

/// What the model predicts for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub revision: u64,
    pub error: Option<CommandError>,
    /// For transactions: whether the compare held.
    pub succeeded: Option<bool>,
}

impl Model {
    fn expect(&self, error: Option<CommandError>, succeeded: Option<bool>) -> Expected {
        Expected {
            revision: self.revision,
            error,
            succeeded,
        }
    }

    pub fn put(&mut self, key: &[u8], value: &[u8], lease: Option<u64>) -> Expected {
        if let Some(id) = lease {
            if !self.leases.contains_key(&id) {
                return self.expect(Some(CommandError::LeaseNotFound { id: LeaseId(id) }), None);
            }
        }
        self.revision += 1;
        self.put_at(key, value, lease);
        self.expect(None, None)
    }

    /// A put at the current (already bumped) revision.
    fn put_at(&mut self, key: &[u8], value: &[u8], lease: Option<u64>) {
        let rev = self.revision;
        let prev = self.kvs.get(key).cloned();
        if let Some(old) = prev.as_ref().and_then(|p| p.lease) {
            if let Some((_, keys)) = self.leases.get_mut(&old.0) {
                keys.remove(key);
            }
        }
        if let Some(id) = lease {
            self.leases
                .get_mut(&id)
                .expect("checked")
                .1
                .insert(key.to_vec());
        }
        self.kvs.insert(
            key.to_vec(),
            KeyValue {
                key: key.to_vec(),
                value: value.to_vec(),
                create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                mod_revision: rev,
                version: prev.as_ref().map_or(1, |p| p.version + 1),
                lease: lease.map(LeaseId),
            },
        );
        self.history
            .entry(rev)
            .or_default()
            .push((EventKind::Put, key.to_vec(), value.to_vec()));
    }

    fn remove_at(&mut self, key: &[u8]) {
        let prev = self.kvs.remove(key).expect("present");
        if let Some(id) = prev.lease {
            if let Some((_, keys)) = self.leases.get_mut(&id.0) {
                keys.remove(key);
            }
        }
        self.history.entry(self.revision).or_default().push((
            EventKind::Delete,
            key.to_vec(),
            Vec::new(),
        ));
    }

    pub fn delete(&mut self, key: &[u8], prefix: bool) -> Expected {
        let victims: Vec<Vec<u8>> = self
            .kvs
            .keys()
            .filter(|k| {
                if prefix {
                    k.starts_with(key)
                } else {
                    k.as_slice() == key
                }
            })
            .cloned()
            .collect();
        if !victims.is_empty() {
            self.revision += 1;
            for k in victims {
                self.remove_at(&k);
            }
        }
        self.expect(None, None)
    }

    /// `if value(key) == expected { put(key, new) }`.
    pub fn cas_value(&mut self, key: &[u8], expected: &[u8], new: &[u8]) -> Expected {
        let holds = self.kvs.get(key).is_some_and(|kv| kv.value == expected);
        if holds {
            self.revision += 1;
            self.put_at(key, new, None);
        }
        self.expect(None, Some(holds))
    }

    /// `if version(key) == version { put(key, new) }` (absent: version 0).
    pub fn cas_version(&mut self, key: &[u8], version: u64, new: &[u8]) -> Expected {
        let holds = self.kvs.get(key).map_or(0, |kv| kv.version) == version;
        if holds {
            self.revision += 1;
            self.put_at(key, new, None);
        }
        self.expect(None, Some(holds))
    }

    pub fn grant(&mut self, id: u64, ttl_ms: u64) -> Expected {
        if ttl_ms == 0 {
            return self.expect(Some(CommandError::InvalidTtl), None);
        }
        if self.leases.contains_key(&id) {
            return self.expect(Some(CommandError::LeaseExists { id: LeaseId(id) }), None);
        }
        self.leases.insert(id, (ttl_ms, BTreeSet::new()));
        self.expect(None, None)
    }

    pub fn revoke(&mut self, id: u64) -> Expected {
        let Some((_, keys)) = self.leases.get(&id).cloned() else {
            return self.expect(Some(CommandError::LeaseNotFound { id: LeaseId(id) }), None);
        };
        if !keys.is_empty() {
            self.revision += 1;
            for k in keys {
                self.remove_at(&k);
            }
        }
        self.leases.remove(&id);
        self.expect(None, None)
    }

    pub fn leases_as_stored(&self) -> Vec<Lease> {
        self.leases
            .iter()
            .map(|(id, (ttl_ms, keys))| Lease {
                id: LeaseId(*id),
                ttl_ms: *ttl_ms,
                keys: keys.clone(),
            })
            .collect()
    }
}
