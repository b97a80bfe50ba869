//! Model-based test: random commands applied in random batches to the sled
//! state machine and to the reference model, with restarts and snapshot
//! transfers between two stores at random points. After every batch the
//! whole state (keys, leases, revision, watch history, compaction point)
//! must equal the model's.

use std::collections::BTreeMap;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use proptest::prelude::*;
use tempfile::TempDir;
use troupe_gcs::*;

use crate::reference::{EventSummary, Expected, Model};
use crate::support::{log_id, open_with};
use crate::workload::{apply_model, command_of, step, Step, KEYS};
use troupe_gcs::types::Entry;

const RETENTION: u64 = 4;
/// What a queued command must return.
#[derive(Debug)]
enum Expect {
    Model(Expected),
    /// Exactly the response of an earlier command of the same batch.
    SameAsQueued(usize),
    Exactly(Response),
}

struct Member {
    dir: TempDir,
    log: Option<LogStore>,
    sm: Option<StateMachineStore>,
}

impl Member {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open_with(dir.path(), config());
        Member {
            dir,
            log: Some(log),
            sm: Some(sm),
        }
    }

    fn sm(&mut self) -> &mut StateMachineStore {
        self.sm.as_mut().expect("open")
    }

    fn restart(&mut self) {
        drop(self.sm.take());
        drop(self.log.take());
        let (log, sm) = open_with(self.dir.path(), config());
        self.log = Some(log);
        self.sm = Some(sm);
    }
}

fn config() -> StoreConfig {
    StoreConfig {
        history_retention: RETENTION,
        // Tiny segments: the model run exercises rollover, truncation and
        // purging across segment files.
        wal_segment_bytes: 2048,
        ..StoreConfig::default()
    }
}

/// A client's last write as the harness remembers it.
#[derive(Debug, Clone)]
struct ClientState {
    seq: u64,
    operation: Operation,
    /// Known once the write's batch was applied.
    response: Option<Response>,
    /// Its position in the current (not yet applied) batch.
    queued_at: Option<usize>,
}

struct Harness {
    primary: Member,
    other: Member,
    model: Model,
    next_index: u64,
    sessions: BTreeMap<u64, ClientState>,
    queued: Vec<(Command, Expect)>,
}

impl Harness {
    fn queue(&mut self, step: &Step) {
        match step {
            Step::Op(op, client) => {
                let expected = apply_model(&mut self.model, op);
                let operation = command_of(op);
                let command = match client {
                    Some(client) => {
                        let seq = self.sessions.get(client).map_or(1, |s| s.seq + 1);
                        let state = ClientState {
                            seq,
                            operation: operation.clone(),
                            response: None,
                            queued_at: Some(self.queued.len()),
                        };
                        self.sessions.insert(*client, state);
                        Command::with_session(*client, seq, operation)
                    }
                    None => Command::new(operation),
                };
                self.queued.push((command, Expect::Model(expected)));
            }
            Step::Retry(client) => {
                let Some(ClientState {
                    seq,
                    operation,
                    response,
                    queued_at,
                }) = self.sessions.get(client).cloned()
                else {
                    return;
                };
                let expect = match (response, queued_at) {
                    (Some(response), _) => Expect::Exactly(response),
                    (None, Some(position)) => Expect::SameAsQueued(position),
                    (None, None) => unreachable!("a session is either applied or queued"),
                };
                self.queued
                    .push((Command::with_session(*client, seq, operation), expect));
            }
            Step::Stale(client) => {
                let Some(ClientState { seq, operation, .. }) = self.sessions.get(client).cloned()
                else {
                    return;
                };
                if seq < 2 {
                    return;
                }
                let stale = Response {
                    revision: self.model.revision,
                    outcome: Err(CommandError::StaleSequence {
                        client_id: *client,
                        seq: seq - 1,
                        last_seq: seq,
                    }),
                };
                self.queued.push((
                    Command::with_session(*client, seq - 1, operation),
                    Expect::Exactly(stale),
                ));
            }
            Step::EndBatch | Step::Restart | Step::SnapshotSwap => {}
        }
    }

    async fn flush_queue(&mut self) -> Result<(), TestCaseError> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let queued = std::mem::take(&mut self.queued);
        // Entries of 1 to 3 commands, as the leader batches them: every
        // command must be answered as if it had its own entry.
        let per_entry = (self.next_index % 3 + 1) as usize;
        let entries: Vec<_> = queued
            .chunks(per_entry)
            .enumerate()
            .map(|(i, chunk)| {
                let commands = chunk.iter().map(|(c, _)| c.clone()).collect();
                Entry {
                    log_id: log_id(self.next_index + i as u64),
                    payload: EntryPayload::Normal(Proposal { commands }),
                }
            })
            .collect();
        self.next_index += entries.len() as u64;
        let responses: Vec<Response> = self
            .primary
            .sm()
            .apply(entries)
            .await
            .expect("apply")
            .into_iter()
            .flat_map(|r| r.responses)
            .collect();
        prop_assert_eq!(responses.len(), queued.len());
        for (i, ((command, expect), response)) in queued.iter().zip(&responses).enumerate() {
            match expect {
                Expect::Model(e) => {
                    prop_assert_eq!(response.revision, e.revision, "revision of {:?}", command);
                    prop_assert_eq!(
                        response.outcome.as_ref().err(),
                        e.error.as_ref(),
                        "{:?}",
                        command
                    );
                    if let Some(succeeded) = e.succeeded {
                        let Ok(Outcome::Txn(t)) = &response.outcome else {
                            return Err(TestCaseError::fail(format!("{response:?}")));
                        };
                        prop_assert_eq!(t.succeeded, succeeded);
                    }
                }
                Expect::SameAsQueued(j) => {
                    prop_assert_eq!(response, &responses[*j], "retry {} of {}", i, j)
                }
                Expect::Exactly(r) => prop_assert_eq!(response, r),
            }
        }
        for state in self.sessions.values_mut() {
            if let Some(position) = state.queued_at.take() {
                state.response = Some(responses[position].clone());
            }
        }
        Ok(())
    }

    fn check_state(&mut self) -> Result<(), TestCaseError> {
        let reader = self.primary.sm().reader();
        let all = reader
            .range(&RangeRequest {
                selector: KeySelector::Prefix(Vec::new()),
                limit: None,
            })
            .expect("range");
        prop_assert_eq!(all.revision, self.model.revision);
        prop_assert_eq!(
            all.kvs,
            self.model.kvs.values().cloned().collect::<Vec<_>>()
        );
        prop_assert_eq!(
            reader.leases().expect("leases"),
            self.model.leases_as_stored()
        );
        // Limited prefix reads and point reads on sled.
        for (prefix, limit) in [("b", 1u64), ("b/", 1), ("a", 5)] {
            let read = reader
                .range(&RangeRequest {
                    selector: KeySelector::Prefix(prefix.into()),
                    limit: Some(limit),
                })
                .expect("range");
            let matching: Vec<KeyValue> = self
                .model
                .kvs
                .values()
                .filter(|kv| kv.key.starts_with(prefix.as_bytes()))
                .cloned()
                .collect();
            prop_assert_eq!(read.more, matching.len() as u64 > limit);
            prop_assert_eq!(
                read.kvs,
                matching
                    .into_iter()
                    .take(limit as usize)
                    .collect::<Vec<_>>()
            );
        }
        for key in KEYS {
            prop_assert_eq!(
                reader.get(key.as_bytes()).expect("get"),
                self.model.kvs.get(key.as_bytes()).cloned()
            );
        }

        let compacted = reader.compacted().expect("compacted");
        prop_assert_eq!(compacted, self.model.revision.saturating_sub(RETENTION));
        if compacted > 0 {
            let err = reader
                .history(&KeySelector::Prefix(Vec::new()), compacted, usize::MAX)
                .expect_err("compacted");
            let is_compacted = matches!(err, GcsStoreError::Compacted { requested, compacted_at } if requested == compacted && compacted_at == compacted);
            prop_assert!(is_compacted, "{:?}", err);
        }
        let read = reader
            .history(&KeySelector::Prefix(Vec::new()), compacted + 1, usize::MAX)
            .expect("history");
        prop_assert_eq!(read.next, self.model.revision + 1);
        // The same history two revisions at a time, following `next`
        // (records hold all the revisions of one apply: chunks end inside
        // them).
        let mut chunked = Vec::new();
        let mut from = compacted + 1;
        while from <= self.model.revision {
            let chunk = reader
                .history(&KeySelector::Prefix(Vec::new()), from, 2)
                .expect("history chunk");
            prop_assert!(chunk.next > from, "no progress from {}", from);
            chunked.extend(chunk.events);
            from = chunk.next;
        }
        prop_assert_eq!(&chunked, &read.events);
        let history = read.events;
        let got: Vec<(u64, Vec<EventSummary>)> = history
            .into_iter()
            .map(|r| {
                (
                    r.revision,
                    r.events
                        .into_iter()
                        .map(|e| (e.kind, e.kv.key, e.kv.value))
                        .collect(),
                )
            })
            .collect();
        let want: Vec<_> = self
            .model
            .history
            .range(compacted + 1..)
            .map(|(r, e)| (*r, e.clone()))
            .collect();
        prop_assert_eq!(got, want);
        Ok(())
    }

    async fn snapshot_swap(&mut self) -> Result<(), TestCaseError> {
        let snapshot = self
            .primary
            .sm()
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        let other = self.other.sm();
        let mut receiving = other.begin_receiving_snapshot().await.expect("begin");
        *receiving = *snapshot.snapshot;
        other
            .install_snapshot(&snapshot.meta, receiving)
            .await
            .expect("install");
        let current = other
            .get_current_snapshot()
            .await
            .expect("current")
            .expect("some");
        prop_assert_eq!(&current.meta, &snapshot.meta);
        let (applied, _) = other.applied_state().await.expect("applied");
        prop_assert_eq!(applied, snapshot.meta.last_log_id);
        std::mem::swap(&mut self.primary, &mut self.other);
        Ok(())
    }
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut h = Harness {
        primary: Member::new(),
        other: Member::new(),
        model: Model::default(),
        next_index: 1,
        sessions: BTreeMap::new(),
        queued: Vec::new(),
    };
    for step in steps.iter().chain([&Step::EndBatch]) {
        h.queue(step);
        match step {
            Step::Op(..) | Step::Retry(_) | Step::Stale(_) => continue,
            Step::EndBatch => {}
            Step::Restart => {
                h.flush_queue().await?;
                h.primary.restart();
            }
            Step::SnapshotSwap => {
                h.flush_queue().await?;
                h.snapshot_swap().await?;
            }
        }
        h.flush_queue().await?;
        h.check_state()?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_matches_model(steps in proptest::collection::vec(step(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(steps))?;
    }
}
