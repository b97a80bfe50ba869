//! Watches: history then live, in order, exactly once; compaction errors;
//! snapshot installs.

use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::RaftSnapshotBuilder;
use troupe_gcs::*;

use crate::support::{apply_all, open_with};

/// A bound on how long a broken watcher may hang before the test fails. Not
/// a synchronisation: passing runs never wait on it.
const DEADLINE: Duration = Duration::from_secs(60);

fn put(key: String, value: u64) -> Command {
    Command::new(Operation::Put(PutRequest {
        key: key.into_bytes(),
        value: value.to_be_bytes().to_vec(),
        lease: None,
        prev_kv: false,
    }))
}

fn config(history_retention: u64, live_capacity: usize) -> StoreConfig {
    StoreConfig {
        history_retention,
        live_capacity,
        ..StoreConfig::default()
    }
}

async fn next(watcher: &mut Watcher) -> Result<RevisionEvents> {
    tokio::time::timeout(DEADLINE, watcher.next())
        .await
        .expect("watcher hung")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_gets_every_matching_revision_once_in_order_while_applying() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A tiny live buffer makes the watcher lag and fall back to history.
    let (_log, mut sm) = open_with(dir.path(), config(100_000, 2));
    // Revision r puts key w/<r> when r is even, x/<r> when odd.
    let command = |r: u64| {
        put(
            if r.is_multiple_of(2) {
                format!("w/{r}")
            } else {
                format!("x/{r}")
            },
            r,
        )
    };
    let first: Vec<Command> = (1..=5).map(command).collect();
    apply_all(&mut sm, 1, &first).await;

    let reader = sm.reader();
    let mut watcher = reader.watch(KeySelector::Prefix(b"w/".to_vec()), 3);
    const LAST: u64 = 400;
    let writer = tokio::spawn(async move {
        let mut r = 6;
        let mut size = 1;
        while r <= LAST {
            let batch: Vec<Command> = (r..(r + size).min(LAST + 1)).map(command).collect();
            apply_all(&mut sm, r, &batch).await;
            r += batch.len() as u64;
            size = size % 13 + 1;
        }
        sm
    });

    let mut seen = Vec::new();
    while seen.last() != Some(&LAST) {
        let events = next(&mut watcher).await.expect("watch");
        assert_eq!(events.events.len(), 1);
        let event = &events.events[0];
        assert_eq!(event.kind, EventKind::Put);
        assert_eq!(event.kv.key, format!("w/{}", events.revision).into_bytes());
        assert_eq!(event.kv.mod_revision, events.revision);
        seen.push(events.revision);
    }
    let expected: Vec<u64> = (3..=LAST).filter(|r| r % 2 == 0).collect();
    assert_eq!(seen, expected);
    assert_eq!(watcher.next_revision(), LAST + 1);
    writer.await.expect("writer");
}

#[tokio::test]
async fn watching_a_compacted_revision_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_with(dir.path(), config(3, 16));
    let commands: Vec<Command> = (1..=10).map(|r| put(format!("k{r}"), r)).collect();
    apply_all(&mut sm, 1, &commands).await;
    let reader = sm.reader();
    let err = next(&mut reader.watch(KeySelector::Prefix(Vec::new()), 2))
        .await
        .expect_err("compacted");
    assert!(
        matches!(
            err,
            GcsStoreError::Compacted {
                requested: 2,
                compacted_at: 7
            }
        ),
        "{err:?}"
    );
    assert!(err.is_compacted());
    // The first retained revision is still served.
    let events = next(&mut reader.watch(KeySelector::Prefix(Vec::new()), 8))
        .await
        .expect("watch");
    assert_eq!(events.revision, 8);
}

async fn snapshot_into_watched_store(retention: u64) -> Result<Vec<u64>> {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (_log_a, mut a) = open_with(dir_a.path(), config(retention, 16));
    let (_log_b, mut b) = open_with(dir_b.path(), config(retention, 16));
    let commands: Vec<Command> = (1..=10).map(|r| put(format!("k{r}"), r)).collect();
    apply_all(&mut a, 1, &commands).await;

    let mut watcher = b.reader().watch(KeySelector::Prefix(Vec::new()), 1);
    let snapshot = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    b.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    let mut seen = Vec::new();
    while seen.last() != Some(&10) {
        seen.push(next(&mut watcher).await?.revision);
    }
    Ok(seen)
}

#[tokio::test]
async fn a_snapshot_install_is_seen_by_watchers() {
    // The installed history covers the watcher: it continues seamlessly.
    assert_eq!(
        snapshot_into_watched_store(100).await.expect("watch"),
        (1..=10).collect::<Vec<_>>()
    );
    // It does not: the watcher must re-list.
    let err = snapshot_into_watched_store(3).await.expect_err("compacted");
    assert!(
        matches!(
            err,
            GcsStoreError::Compacted {
                requested: 1,
                compacted_at: 7
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn history_is_read_in_chunks_and_a_watcher_crosses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_with(dir.path(), config(100_000, 16));
    let commands: Vec<Command> = (1..=600).map(|r| put(format!("k{r}"), r)).collect();
    apply_all(&mut sm, 1, &commands).await;
    let reader = sm.reader();

    let all = KeySelector::Prefix(Vec::new());
    let chunk = reader.history(&all, 5, 3).expect("history");
    assert_eq!(
        chunk.events.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert_eq!((chunk.next, chunk.revision), (8, 600));
    let rest = reader.history(&all, 598, 3).expect("history");
    assert_eq!(rest.events.len(), 3);
    assert_eq!(rest.next, 601);
    let future = reader.history(&all, 700, 3).expect("history");
    assert!(future.events.is_empty());
    assert_eq!(future.next, 700);

    let mut watcher = reader.watch(all, 1);
    for expected in 1..=600 {
        assert_eq!(next(&mut watcher).await.expect("watch").revision, expected);
    }
    assert_eq!(watcher.next_revision(), 601);
}
