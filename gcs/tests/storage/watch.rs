//! Watches: history then live, in order, exactly once; compaction errors;
//! snapshot installs.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use futures::FutureExt;
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

/// Build a snapshot of `from` and install it into `into`.
async fn copy_snapshot(from: &mut StateMachineStore, into: &mut StateMachineStore) {
    let snapshot = from
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build");
    into.install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
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
    copy_snapshot(&mut a, &mut b).await;
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

/// A waker that counts its wakes.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn key(k: &str) -> KeySelector {
    KeySelector::Key(k.as_bytes().to_vec())
}

/// Apply one put per apply call, from log index (= revision) `first`.
async fn put_each(sm: &mut StateMachineStore, first: u64, keys: &[String]) {
    for (i, k) in keys.iter().enumerate() {
        apply_all(sm, first + i as u64, &[put(k.clone(), 0)]).await;
    }
}

#[tokio::test]
async fn a_watcher_is_woken_only_by_writes_to_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_with(dir.path(), config(100_000, 16));
    let reader = sm.reader();
    let mut on_a = reader.watch(key("a"), 1);
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    {
        let mut next = pin!(on_a.next());
        let mut cx = Context::from_waker(&waker);
        assert!(next.as_mut().poll(&mut cx).is_pending(), "nothing yet");
        put_each(&mut sm, 1, &vec!["b".to_string(); 200]).await;
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "200 writes to b");
        assert!(next.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(reader.watch_stats().deliveries, 0);
    assert!(on_a.next().now_or_never().is_none());
    // Resuming skips what did not match.
    assert_eq!(on_a.next_revision(), 201);

    put_each(&mut sm, 201, &["a".to_string()]).await;
    let events = on_a.next().now_or_never().expect("ready").expect("watch");
    assert_eq!(events.revision, 201);
    assert_eq!(on_a.next_revision(), 202);
    assert_eq!(reader.watch_stats().deliveries, 1);
}

#[tokio::test]
async fn a_watcher_whose_queue_overflows_catches_up_without_gap_or_repeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_with(dir.path(), config(100_000, 4));
    let reader = sm.reader();
    let mut watcher = reader.watch(key("k"), 1);
    assert!(watcher.next().now_or_never().is_none(), "caught up, idle");
    // Revision r writes k when r % 3 == 0: 33 for a queue of 4.
    let keys: Vec<String> = (1..=100)
        .map(|r| if r % 3 == 0 { "k" } else { "other" }.to_string())
        .collect();
    put_each(&mut sm, 1, &keys).await;
    assert_eq!(reader.watch_stats().lags, 1);
    let mut seen = Vec::new();
    while let Some(events) = watcher.next().now_or_never() {
        seen.push(events.expect("watch").revision);
    }
    let expected: Vec<u64> = (1..=100).filter(|r| r % 3 == 0).collect();
    assert_eq!(seen, expected);
    // Then live again.
    put_each(&mut sm, 101, &["other".to_string(), "k".to_string()]).await;
    assert_eq!(next(&mut watcher).await.expect("watch").revision, 102);
    assert_eq!(watcher.next_revision(), 103);
}

#[tokio::test]
async fn many_watchers_on_one_key_all_get_each_write_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_with(dir.path(), config(100_000, 16));
    let reader = sm.reader();
    let mut watchers: Vec<Watcher> = (0..100).map(|_| reader.watch(key("k"), 1)).collect();
    let mut prefix = reader.watch(KeySelector::Prefix(b"k".to_vec()), 1);
    let mut interval = reader.watch(
        KeySelector::Interval {
            start: b"j".to_vec(),
            end: Some(b"k".to_vec()),
        },
        1,
    );
    for w in watchers.iter_mut().chain([&mut prefix, &mut interval]) {
        assert!(w.next().now_or_never().is_none());
    }
    let keys = ["k", "kk", "j", "k"].map(String::from);
    put_each(&mut sm, 1, &keys).await;
    for w in &mut watchers {
        assert_eq!(next(w).await.expect("watch").revision, 1);
        assert_eq!(next(w).await.expect("watch").revision, 4);
        assert!(w.next().now_or_never().is_none(), "no repeat");
    }
    for expected in [1, 2, 4] {
        assert_eq!(next(&mut prefix).await.expect("watch").revision, expected);
    }
    assert_eq!(next(&mut interval).await.expect("watch").revision, 3);
    assert_eq!(reader.watch_stats().deliveries, 2 * 100 + 3 + 1);
}

#[tokio::test]
async fn dropped_watchers_leave_the_hub() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_log, mut sm) = open_with(dir.path(), config(100_000, 16));
    let reader = sm.reader();
    let mut watchers: Vec<Watcher> = (0..1000)
        .map(|i| reader.watch(key(&format!("k{i}")), 1))
        .collect();
    watchers.push(reader.watch(KeySelector::Prefix(b"k".to_vec()), 1));
    let stats = reader.watch_stats();
    assert_eq!((stats.watchers, stats.keys, stats.ranges), (1001, 1000, 1));
    drop(watchers);
    let stats = reader.watch_stats();
    assert_eq!((stats.watchers, stats.keys, stats.ranges), (0, 0, 0));
    put_each(&mut sm, 1, &["k1".to_string()]).await;
    assert_eq!(reader.watch_stats().deliveries, 0);
}

#[tokio::test]
async fn a_snapshot_install_wakes_every_watcher_to_reread_history() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (_log_a, mut a) = open_with(dir_a.path(), config(100, 16));
    let (_log_b, mut b) = open_with(dir_b.path(), config(100, 16));
    let keys: Vec<String> = (1..=10).map(|r| format!("k{r}")).collect();
    put_each(&mut a, 1, &keys).await;
    let reader = b.reader();
    let mut on_k3 = reader.watch(key("k3"), 1);
    let mut on_k1 = reader.watch(KeySelector::Prefix(b"k1".to_vec()), 1);
    let mut on_none = reader.watch(key("none"), 1);
    for w in [&mut on_k3, &mut on_k1, &mut on_none] {
        assert!(w.next().now_or_never().is_none());
    }
    copy_snapshot(&mut a, &mut b).await;
    // No revision was applied on b: only the reset makes them re-read.
    let ready = |w: &mut Watcher| w.next().now_or_never().map(|e| e.expect("watch").revision);
    assert_eq!(ready(&mut on_k3), Some(3));
    assert_eq!(ready(&mut on_k1), Some(1));
    assert_eq!(ready(&mut on_k1), Some(10));
    assert_eq!(ready(&mut on_none), None);
    assert_eq!(on_none.next_revision(), 11);
    assert_eq!(reader.watch_stats().deliveries, 0);
}
