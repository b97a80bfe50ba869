//! The log's segments as it writes them: rolling over and reopening,
//! a torn tail cut, damage in an earlier segment refused, truncate and
//! purge across segments, the markers, acknowledgements after the sync,
//! and the bytes behind an index.

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::RaftLogReader;

use super::*;

/// A log of entries `1..=n` in segments of about 200 bytes.
fn filled(dir: &Path, n: u64) -> Wal {
    let wal = Wal::open(dir, 200).unwrap();
    for chunk in (1..=n).collect::<Vec<_>>().chunks(3) {
        wal.write(chunk.iter().map(|i| blank(*i))).unwrap();
    }
    wal
}

#[test]
fn rolls_over_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 60);
    let segs = segments(dir.path());
    assert!(segs.len() > 3, "tiny segments roll over: {segs:?}");
    assert_eq!(segs[0], 1);
    assert_eq!(indexes(&wal), (1..=60).collect::<Vec<_>>());
    assert_eq!(wal.entries(10..13).unwrap()[2].log_id, log_id(12));
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=60).collect::<Vec<_>>());
    assert_eq!(wal.last_log_id(), Some(log_id(60)));
    wal.write([blank(61)]).unwrap();
    assert_eq!(wal.last_log_id(), Some(log_id(61)));
}

#[test]
fn torn_tail_of_last_segment_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 20);
    drop(wal);
    let last = *segments(dir.path()).last().unwrap();
    let path = segment_path(dir.path(), last);
    let len = std::fs::metadata(&path).unwrap().len();
    // Half a record: a header promising more bytes than follow.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
    std::fs::write(&path, bytes).unwrap();

    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=20).collect::<Vec<_>>());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len, "tail cut");
    wal.write([blank(21)]).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=21).collect::<Vec<_>>());
}

#[test]
fn corrupt_record_in_an_earlier_segment_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(filled(dir.path(), 30));
    let first = segment_path(dir.path(), segments(dir.path())[0]);
    let mut bytes = std::fs::read(&first).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();
    let msg = corrupt(dir.path(), 200);
    assert!(msg.contains(&first.display().to_string()), "{msg}");
    assert!(msg.contains("later segments exist"), "{msg}");
}

#[test]
fn truncate_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 60);
    wal.truncate(10).unwrap();
    assert_eq!(indexes(&wal), (1..=9).collect::<Vec<_>>());
    assert!(segments(dir.path()).iter().all(|f| *f <= 9));
    // Appending again after the cut, then rolling over.
    wal.write((10..=40).map(blank)).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..=40).collect::<Vec<_>>());
    // Truncating at a segment's first index removes that whole segment.
    let seg = segments(dir.path())[2];
    wal.truncate(seg).unwrap();
    assert_eq!(
        *segments(dir.path()).last().unwrap(),
        segments(dir.path())[1]
    );
    assert_eq!(wal.last_log_id(), Some(log_id(seg - 1)));
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(indexes(&wal), (1..seg).collect::<Vec<_>>());
    // Truncating everything.
    wal.truncate(0).unwrap();
    assert_eq!(indexes(&wal), Vec::<u64>::new());
    assert_eq!(wal.last_log_id(), None);
}

#[test]
fn purge_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 60);
    wal.purge(log_id(30)).unwrap();
    assert_eq!(indexes(&wal), (31..=60).collect::<Vec<_>>());
    let segs = segments(dir.path());
    assert!(
        segs[0] <= 31 && segs.get(1).is_none_or(|s| *s > 31),
        "{segs:?}"
    );
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(wal.purged(), Some(log_id(30)));
    assert_eq!(indexes(&wal), (31..=60).collect::<Vec<_>>());
    // Purging past the end of the log empties it; appends continue after.
    wal.purge(log_id(70)).unwrap();
    assert!(segments(dir.path()).is_empty());
    assert_eq!(wal.last_log_id(), Some(log_id(70)));
    wal.write([blank(71), blank(72)]).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(wal.purged(), Some(log_id(70)));
    assert_eq!(indexes(&wal), vec![71, 72]);
}

#[test]
fn markers_survive_reopen_and_committed_is_clamped() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 5);
    wal.save_vote(&Vote::new(4, 2)).unwrap();
    wal.save_committed(Some(log_id(4))).unwrap();
    drop(wal);
    let wal = Wal::open(dir.path(), 200).unwrap();
    assert_eq!(wal.vote(), Some(Vote::new(4, 2)));
    assert_eq!(wal.committed().unwrap(), Some(log_id(4)));
    // A committed id beyond the log (its entries lost) is not reported.
    wal.save_committed(Some(log_id(9))).unwrap();
    assert_eq!(wal.committed().unwrap(), None);
}

#[tokio::test]
async fn appends_are_acknowledged_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = LogStore::open(dir.path(), 300).unwrap();
        for i in 1..=20 {
            log.blocking_append([blank(i)]).await.unwrap();
        }
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(20)));
    }
    let mut log = LogStore::open(dir.path(), 300).unwrap();
    let got = log.try_get_log_entries(5..=7).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        vec![5, 6, 7]
    );
}

#[test]
fn bytes_after_counts_the_records_behind_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let wal = filled(dir.path(), 10);
    let all = wal.bytes_after(None);
    let one = wal.bytes_after(Some(9));
    assert!(one > 0);
    assert_eq!(all, one * 10, "blank records are the same size");
    assert_eq!(wal.bytes_after(Some(10)), 0);
    assert_eq!(wal.bytes_after(Some(4)), one * 6);
    wal.purge(log_id(4)).unwrap();
    assert_eq!(
        wal.bytes_after(None),
        one * 6,
        "purged entries do not count"
    );
    assert_eq!(wal.bytes_after(Some(2)), one * 6);
}
