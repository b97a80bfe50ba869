//! Helpers shared by the storage tests.

use std::path::Path;
use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use troupe_gcs::types::Entry;
use troupe_gcs::{open, Command, LogStore, Response, StateMachineStore, StoreConfig};

pub fn open_store(dir: &Path) -> (LogStore, StateMachineStore) {
    open_with(dir, StoreConfig::default())
}

/// How long a reopen may wait for the previous handles to let go. Fails the
/// test instead of hanging; passing runs never wait on it.
pub const REOPEN_DEADLINE: Duration = Duration::from_secs(30);

/// Open a store, polling while the directory is still locked: after the last
/// handle is dropped, sled's background IO threads may hold the database
/// file lock for a moment longer.
pub fn open_with(dir: &Path, config: StoreConfig) -> (LogStore, StateMachineStore) {
    let deadline = Instant::now() + REOPEN_DEADLINE;
    loop {
        match open(dir, config.clone()) {
            Ok(stores) => return stores,
            Err(e)
                if Instant::now() < deadline
                    && e.to_string().contains("could not acquire lock") =>
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("open sled store: {e}"),
        }
    }
}

pub fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

pub fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command.into()),
    }
}

/// Apply `commands` as log entries `first..` in one `apply` call.
pub async fn apply_all(
    sm: &mut StateMachineStore,
    first: u64,
    commands: &[Command],
) -> Vec<Response> {
    let entries: Vec<Entry> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| entry(first + i as u64, c.clone()))
        .collect();
    sm.apply(entries)
        .await
        .expect("apply")
        .into_iter()
        .flat_map(|r| r.responses)
        .collect()
}
