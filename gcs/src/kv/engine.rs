//! The KV engine: a pure function from (state view, command) to (response,
//! mutations, events). It does no IO; the storage executes what it decides.
//!
//! Revision rule (as etcd): the revision moves by exactly one for every
//! command that changes the keyspace, and only for those. A transaction is one
//! revision however many keys it touches; a delete that matches nothing, a
//! failed compare with a read-only branch, a lease grant, or a revoke of a
//! lease without keys leave the revision alone. Every event carries the
//! revision of its command.

use crate::command::{
    Command, DeleteRequest, Operation, PutRequest, RangeRequest, TxnOp, TxnRequest,
};
use crate::kv::limits::{page_len, RANGE_PAGE_BYTES};
use crate::kv::view::{KvView, Mutation, Overlay};
use crate::kv::{compare, sessions};
use crate::model::{Event, EventKind, KeyValue, Lease, LeaseId, RevisionEvents, SessionRecord};
use crate::response::{
    CommandError, DeleteOutcome, OpOutcome, Outcome, PutOutcome, RangeOutcome, Response, TxnOutcome,
};

/// What applying one command decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub response: Response,
    /// To be executed in order, atomically with the rest of the entry.
    pub mutations: Vec<Mutation>,
    /// The events of the new revision, if the keyspace changed.
    pub events: Option<RevisionEvents>,
}

/// Apply `command` to the state seen through `view`.
///
/// Errors are the view's IO errors only; a rejected command is an `Ok` with
/// an error [`Response`] (it is a replicated, deterministic result).
pub fn apply<V: KvView>(view: &V, command: &Command) -> Result<Applied, V::Error> {
    let base_revision = view.revision()?;
    if let Some(session) = command.session {
        if let Some(last) = view.session(session.client_id)? {
            if session.seq == last.seq {
                return Ok(unchanged(last.response));
            }
            if session.seq < last.seq {
                return Ok(unchanged(Response {
                    revision: base_revision,
                    outcome: Err(CommandError::StaleSequence {
                        client_id: session.client_id,
                        seq: session.seq,
                        last_seq: last.seq,
                    }),
                }));
            }
        } else if session.seq > 1 {
            // Not a new session's first write, yet unknown: it expired.
            return Ok(unchanged(Response {
                revision: base_revision,
                outcome: Err(CommandError::SessionExpired {
                    client_id: session.client_id,
                    seq: session.seq,
                }),
            }));
        }
    }

    let mut exec = Execution {
        overlay: Overlay::new(view),
        revision: base_revision + 1,
        mutations: Vec::new(),
        events: Vec::new(),
    };
    let outcome = exec.run(&command.op)?;
    // After the command: an expiry command advances the clock.
    let used_ms = exec.overlay.session_clock()?;
    let (mut mutations, events, revision) = match outcome {
        Ok(_) if !exec.events.is_empty() => {
            let revision = exec.revision;
            let mut mutations = exec.mutations;
            mutations.push(Mutation::SetRevision(revision));
            let events = RevisionEvents {
                revision,
                events: exec.events,
            };
            (mutations, Some(events), revision)
        }
        Ok(_) => (exec.mutations, None, base_revision),
        // A rejected command has no effect at all.
        Err(_) => (Vec::new(), None, base_revision),
    };
    let response = Response { revision, outcome };
    if let Some(session) = command.session {
        mutations.push(Mutation::PutSession {
            client_id: session.client_id,
            record: SessionRecord {
                seq: session.seq,
                response: response.clone(),
            },
            used_ms,
        });
    }
    Ok(Applied {
        response,
        mutations,
        events,
    })
}

/// A read at the view's current state: at most `request.limit` keys and
/// at most one page of bytes ([`RANGE_PAGE_BYTES`]); `more` says that
/// either cut it short (continue with [`RangeRequest::after`]).
pub fn range<V: KvView>(view: &V, request: &RangeRequest) -> Result<RangeOutcome, V::Error> {
    range_paged(view, request, RANGE_PAGE_BYTES)
}

/// [`range`] with a page budget of `page_bytes`.
pub fn range_paged<V: KvView>(
    view: &V,
    request: &RangeRequest,
    page_bytes: usize,
) -> Result<RangeOutcome, V::Error> {
    let limit = request
        .limit
        .map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut kvs = view.scan(&request.selector, limit.map(|l| l.saturating_add(1)))?;
    let keep = page_len(&kvs, page_bytes).min(limit.unwrap_or(usize::MAX));
    let more = kvs.len() > keep;
    kvs.truncate(keep);
    Ok(RangeOutcome { kvs, more })
}

fn unchanged(response: Response) -> Applied {
    Applied {
        response,
        mutations: Vec::new(),
        events: None,
    }
}

/// `Ok(Err(_))`: the command was rejected; `Err(_)`: the view failed.
type Step<T, E> = Result<Result<T, CommandError>, E>;

/// The state of one command being applied.
struct Execution<V> {
    overlay: Overlay<V>,
    /// The revision this command's changes get, if it makes any.
    revision: u64,
    mutations: Vec<Mutation>,
    events: Vec<Event>,
}

impl<V: KvView> Execution<V> {
    fn run(&mut self, op: &Operation) -> Step<Outcome, V::Error> {
        Ok(match op {
            Operation::Put(req) => self.put(req)?.map(Outcome::Put),
            Operation::Delete(req) => self.delete(req)?.map(Outcome::Delete),
            Operation::Txn(req) => self.txn(req)?.map(Outcome::Txn),
            Operation::Range(req) => Ok(Outcome::Range(range(&self.overlay, req)?)),
            Operation::LeaseGrant { id, ttl_ms } => self.lease_grant(*id, *ttl_ms)?,
            Operation::LeaseRevoke { id } => self.lease_revoke(*id)?,
            Operation::ExpireSessions {
                elapsed_ms,
                idle_ms,
            } => self.expire_sessions(*elapsed_ms, *idle_ms)?,
        })
    }

    fn write(&mut self, mutation: Mutation) {
        self.overlay.record(mutation.clone());
        self.mutations.push(mutation);
    }

    fn put(&mut self, req: &PutRequest) -> Step<PutOutcome, V::Error> {
        if let Some(id) = req.lease {
            if self.overlay.lease(id)?.is_none() {
                return Ok(Err(CommandError::LeaseNotFound { id }));
            }
        }
        let prev = self.overlay.get(&req.key)?;
        let kv = KeyValue {
            key: req.key.clone(),
            value: req.value.clone(),
            create_revision: prev.as_ref().map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease: req.lease,
        };
        let old_lease = prev.as_ref().and_then(|p| p.lease);
        if old_lease != req.lease {
            if let Some(old) = old_lease {
                self.detach(old, &req.key)?;
            }
            if let Some(new) = req.lease {
                self.attach(new, &req.key)?;
            }
        }
        self.write(Mutation::PutKv(kv.clone()));
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev.clone(),
        });
        Ok(Ok(PutOutcome {
            prev_kv: prev.filter(|_| req.prev_kv),
        }))
    }

    fn delete(&mut self, req: &DeleteRequest) -> Step<DeleteOutcome, V::Error> {
        let victims = self.overlay.scan(&req.selector, None)?;
        for prev in &victims {
            self.delete_key(prev.clone())?;
        }
        Ok(Ok(DeleteOutcome {
            deleted: victims.len() as u64,
            prev_kvs: if req.prev_kv { victims } else { Vec::new() },
        }))
    }

    /// Delete an existing key, detaching it from its lease.
    fn delete_key(&mut self, prev: KeyValue) -> Result<(), V::Error> {
        if let Some(lease) = prev.lease {
            self.detach(lease, &prev.key)?;
        }
        self.write(Mutation::DeleteKv(prev.key.clone()));
        self.events.push(Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: prev.key.clone(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: self.revision,
                version: 0,
                lease: None,
            },
            prev_kv: Some(prev),
        });
        Ok(())
    }

    fn txn(&mut self, req: &TxnRequest) -> Step<TxnOutcome, V::Error> {
        let mut succeeded = true;
        for cmp in &req.compares {
            if !compare::holds(cmp, self.overlay.get(&cmp.key)?.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut results = Vec::with_capacity(branch.len());
        for op in branch {
            let result = match op {
                TxnOp::Put(put) => self.put(put)?.map(OpOutcome::Put),
                TxnOp::Delete(delete) => self.delete(delete)?.map(OpOutcome::Delete),
                TxnOp::Range(read) => Ok(OpOutcome::Range(range(&self.overlay, read)?)),
            };
            match result {
                Ok(outcome) => results.push(outcome),
                Err(rejected) => return Ok(Err(rejected)),
            }
        }
        Ok(Ok(TxnOutcome { succeeded, results }))
    }

    fn lease_grant(&mut self, id: LeaseId, ttl_ms: u64) -> Step<Outcome, V::Error> {
        if ttl_ms == 0 {
            return Ok(Err(CommandError::InvalidTtl));
        }
        if self.overlay.lease(id)?.is_some() {
            return Ok(Err(CommandError::LeaseExists { id }));
        }
        self.write(Mutation::PutLease(Lease {
            id,
            ttl_ms,
            keys: Default::default(),
        }));
        Ok(Ok(Outcome::LeaseGranted { id, ttl_ms }))
    }

    fn lease_revoke(&mut self, id: LeaseId) -> Step<Outcome, V::Error> {
        let Some(lease) = self.overlay.lease(id)? else {
            return Ok(Err(CommandError::LeaseNotFound { id }));
        };
        let mut deleted = 0;
        for key in &lease.keys {
            // Attachment is kept consistent by put/delete; check anyway so a
            // stale entry can never delete a key owned by someone else.
            if let Some(prev) = self.overlay.get(key)?.filter(|kv| kv.lease == Some(id)) {
                self.delete_key(prev)?;
                deleted += 1;
            }
        }
        self.write(Mutation::DeleteLease(id));
        Ok(Ok(Outcome::LeaseRevoked { id, deleted }))
    }

    /// Advances the session clock and removes the sessions idle for
    /// `idle_ms` of it (see [`sessions`]). Changes no key: no revision.
    fn expire_sessions(&mut self, elapsed_ms: u64, idle_ms: u64) -> Step<Outcome, V::Error> {
        let clock_ms = self.overlay.session_clock()?.saturating_add(elapsed_ms);
        let stamps = self.overlay.session_stamps()?;
        let gone = sessions::expired(&stamps, clock_ms, idle_ms);
        for client_id in &gone {
            self.write(Mutation::DeleteSession(*client_id));
        }
        self.write(Mutation::SetSessionClock(clock_ms));
        Ok(Ok(Outcome::SessionsExpired {
            expired: gone.len() as u64,
            clock_ms,
        }))
    }

    fn attach(&mut self, id: LeaseId, key: &[u8]) -> Result<(), V::Error> {
        if let Some(mut lease) = self.overlay.lease(id)? {
            if lease.keys.insert(key.to_vec()) {
                self.write(Mutation::PutLease(lease));
            }
        }
        Ok(())
    }

    fn detach(&mut self, id: LeaseId, key: &[u8]) -> Result<(), V::Error> {
        if let Some(mut lease) = self.overlay.lease(id)? {
            if lease.keys.remove(key) {
                self.write(Mutation::PutLease(lease));
            }
        }
        Ok(())
    }
}
