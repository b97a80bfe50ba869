//! Crash atomicity: a child process appends and applies a deterministic
//! workload and aborts (no destructors, no flush) mid-stream. The reopened
//! state machine must hold exactly the state of some applied prefix of the
//! log (whole `apply` calls), the reopened log must hold every entry after
//! that prefix up to at least the last acknowledged append, and re-applying
//! them (what openraft does for committed entries on start) must reach the
//! state of the whole log.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::RaftLogReader;
use troupe_gcs::*;

use crate::reference::Model;
use crate::support::{entry, open_store};

const CHILD_DIR_ENV: &str = "TROUPE_GCS_CRASH_CHILD_DIR";
const CHILD_FLUSHES_ENV: &str = "TROUPE_GCS_CRASH_CHILD_FLUSHES";
const MAX_BATCHES: u64 = 600;
const BATCH: u64 = 7;

/// Command number `i` (log index `i`, from 1) of the workload, applied to
/// the model too.
fn workload(i: u64, model: &mut Model) -> Command {
    let key = format!("k/{}", i % 5).into_bytes();
    let value = i.to_be_bytes().to_vec();
    let op = match i % 9 {
        0 => {
            model.delete(b"k/", true);
            Operation::Delete(DeleteRequest {
                selector: KeySelector::Prefix(b"k/".to_vec()),
                prev_kv: false,
            })
        }
        3 => {
            model.grant(i, 1000);
            Operation::LeaseGrant {
                id: LeaseId(i),
                ttl_ms: 1000,
            }
        }
        4 => {
            model.put(&key, &value, Some(i - 1));
            Operation::Put(PutRequest {
                key,
                value,
                lease: Some(LeaseId(i - 1)),
                prev_kv: false,
            })
        }
        7 => {
            model.revoke(i - 4);
            Operation::LeaseRevoke { id: LeaseId(i - 4) }
        }
        _ => {
            model.put(&key, &value, None);
            Operation::Put(PutRequest {
                key,
                value,
                lease: None,
                prev_kv: false,
            })
        }
    };
    Command::with_session(1, i, op)
}

/// The child: append (waiting for the log sync) then apply each batch,
/// reporting every third append as flushed. Once `flushes` are reported,
/// another thread aborts the process (no destructors, no flush) wherever the
/// applying thread happens to be.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(flushes)) = (
        std::env::var(CHILD_DIR_ENV),
        std::env::var(CHILD_FLUSHES_ENV),
    ) else {
        return;
    };
    let flushes: u64 = flushes.parse().expect("flush count");
    let done = Arc::new(AtomicU64::new(0));
    let watched = done.clone();
    std::thread::spawn(move || {
        while watched.load(Ordering::SeqCst) < flushes {
            std::thread::yield_now();
        }
        std::process::abort();
    });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (mut log, mut sm) = open_store(dir.as_ref());
        let mut model = Model::default();
        let mut index = 1;
        for b in 0..MAX_BATCHES {
            let entries: Vec<_> = (index..index + BATCH)
                .map(|i| entry(i, workload(i, &mut model)))
                .collect();
            index += BATCH;
            // Durable append, as openraft does before commit.
            log.blocking_append(entries.clone()).await.expect("append");
            if b % 3 == 0 {
                println!("\nFLUSHED {}", index - 1);
                std::io::stdout().flush().expect("stdout");
                done.fetch_add(1, Ordering::SeqCst);
            }
            sm.apply(entries).await.expect("apply");
        }
    });
    // Not reached unless the abort thread is starved for the whole run.
    std::process::abort();
}

#[test]
fn crash_recovers_an_applied_prefix() {
    for flushes in [1u64, 4, 20] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_FLUSHES_ENV, flushes.to_string())
            .output()
            .expect("run child");
        assert!(!out.status.success(), "the child must abort");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let flushed = stdout
            .lines()
            .filter_map(|l| l.split("FLUSHED ").nth(1))
            .map(|n| n.parse::<u64>().expect("index"))
            .max()
            .unwrap_or_else(|| panic!("child printed no flush: {stdout}"));

        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let (mut log, mut sm) = open_store(dir.path());
            let (applied, _) = sm.applied_state().await.expect("applied state");
            let applied = applied.map_or(0, |id| id.index);
            assert!(applied <= MAX_BATCHES * BATCH);
            assert_eq!(
                applied % BATCH,
                0,
                "whole apply batches only, got {applied}"
            );
            let state = log.get_log_state().await.expect("log state");
            let last = state.last_log_id.map_or(0, |id| id.index);
            assert!(last >= flushed, "log ends at {last} < flushed {flushed}");
            // What openraft re-applies on start: the log after the durable
            // state machine.
            let replay = log
                .try_get_log_entries(applied + 1..=last)
                .await
                .expect("log entries");
            let indexes: Vec<u64> = replay.iter().map(|e| e.log_id.index).collect();
            assert_eq!(
                indexes,
                (applied + 1..=last).collect::<Vec<_>>(),
                "the log covers the state machine's gap"
            );
            sm.apply(replay).await.expect("re-apply");
            let applied = last;

            let mut model = Model::default();
            for i in 1..=applied {
                workload(i, &mut model);
            }
            let reader = sm.reader();
            let all = reader
                .range(&RangeRequest {
                    selector: KeySelector::Prefix(Vec::new()),
                    limit: None,
                })
                .expect("range");
            assert_eq!(all.revision, model.revision);
            assert_eq!(all.kvs, model.kvs.values().cloned().collect::<Vec<_>>());
            assert_eq!(reader.leases().expect("leases"), model.leases_as_stored());
            // The client's session survived with the state it belongs to.
            if applied > 0 {
                let retry = entry(applied + 1, workload(applied, &mut model.clone()));
                let responses = sm.apply([retry]).await.expect("apply");
                assert_eq!(
                    responses[0].responses[0].revision, model.revision,
                    "a retry of the last write is not re-applied"
                );
            }
        });
    }
}
