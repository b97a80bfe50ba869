//! What survives closing and reopening a store.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{RaftLogReader, RaftSnapshotBuilder};
use troupe_gcs::types::Vote;
use troupe_gcs::*;

use crate::support::{apply_all, entry, log_id, open_store};

fn put(key: &str) -> Command {
    Command::new(Operation::Put(PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease: None,
        prev_kv: false,
    }))
}

#[tokio::test]
async fn log_vote_and_markers_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _sm) = open_store(dir.path());
        let entries: Vec<_> = (1..=10).map(|i| entry(i, put("k"))).collect();
        log.blocking_append(entries).await.expect("append");
        log.save_vote(&Vote::new(3, 1)).await.expect("vote");
        log.save_committed(Some(log_id(8)))
            .await
            .expect("committed");
        log.purge(log_id(3)).await.expect("purge");
        log.truncate(log_id(9)).await.expect("truncate");
    }
    let (mut log, _sm) = open_store(dir.path());
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(3)));
    assert_eq!(state.last_log_id, Some(log_id(8)));
    assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(3, 1)));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(8))
    );
    let indexes: Vec<u64> = log
        .try_get_log_entries(0..100)
        .await
        .expect("entries")
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(indexes, (4..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn snapshots_and_installed_state_survive_reopen() {
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let snapshot = {
        let (_log, mut a) = open_store(dir_a.path());
        apply_all(&mut a, 1, &[put("a"), put("b")]).await;
        a.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build")
    };
    {
        let (_log, mut a) = open_store(dir_a.path());
        let current = a
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("persisted");
        assert_eq!(current.meta, snapshot.meta);
        assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
    }
    {
        let (_log, mut b) = open_store(dir_b.path());
        apply_all(&mut b, 1, &[put("old"), put("older"), put("oldest")]).await;
        b.install_snapshot(
            &snapshot.meta,
            Box::new(std::io::Cursor::new(snapshot.snapshot.get_ref().clone())),
        )
        .await
        .expect("install");
    }
    let (_log, mut b) = open_store(dir_b.path());
    let (applied, membership) = b.applied_state().await.expect("applied");
    assert_eq!(applied, snapshot.meta.last_log_id);
    assert_eq!(membership, snapshot.meta.last_membership);
    let reader = b.reader();
    let all = reader
        .range(&RangeRequest {
            selector: KeySelector::Prefix(Vec::new()),
            limit: None,
        })
        .expect("range");
    assert_eq!(
        all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        [b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(all.revision, 2);
    assert_eq!(
        b.get_current_snapshot()
            .await
            .expect("read")
            .map(|s| s.meta),
        Some(snapshot.meta)
    );
}
