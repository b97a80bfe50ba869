//! Torn tails and corruption on a real multi-segment log (see the WAL's
//! recovery rule): every byte flipped, every cut and zeroed tail, in the
//! last segment and in older ones, each classified and a sample opened;
//! and the invariant recovery relies on (only the last segment can hold
//! unsynced bytes).

use super::*;

/// Which cases also go through a real open of the log (each costs a few
/// fsyncs); the classification runs for all.
fn sampled(at: usize) -> bool {
    at.is_multiple_of(17)
}

#[test]
fn a_byte_flipped_anywhere_is_corruption_naming_the_file_and_record() {
    let fx = Fixture::new();
    let mut cases = 0;
    for (s, (_, bytes, _)) in fx.segments.iter().enumerate() {
        for at in 0..bytes.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] = flipped(damaged[at], mask);
                let case = format!("segment {s}, byte {at} ^ {mask:#x}");
                fx.assert_corrupt(s, &damaged, at, mask == 0x01 && sampled(at), &case);
                cases += 1;
            }
        }
    }
    assert!(
        cases > 3 * 3000,
        "every byte of a multi-segment log: {cases}"
    );
    // The pristine log still opens whole.
    assert_eq!(
        fx.open_with(0, &fx.segments[0].1).unwrap().0,
        (1..=fx.entries).collect::<Vec<_>>()
    );
}

#[test]
fn two_flipped_bytes_are_corruption_at_the_first() {
    let fx = Fixture::new();
    let mut cases = 0;
    for (s, (_, bytes, _)) in fx.segments.iter().enumerate() {
        let last_header = layout(bytes).last().unwrap().0;
        for first in (0..bytes.len()).step_by(5) {
            for gap in [1, 3, 8, 61, 400, 700] {
                let second = first + gap;
                // Both in the header of the segment's last record: its length
                // and CRC damaged together read as a short record, which a
                // torn write leaves too (the documented limit).
                if second >= bytes.len() || first >= last_header {
                    continue;
                }
                let mut damaged = bytes.clone();
                damaged[first] = flipped(damaged[first], 0x10);
                damaged[second] = flipped(damaged[second], 0x41);
                let case = format!("segment {s}, bytes {first} and {second}");
                fx.assert_corrupt(s, &damaged, first, gap == 61 && sampled(first), &case);
                cases += 1;
            }
        }
    }
    assert!(cases > 2000, "{cases}");
    // Across segments: the earlier segment is named.
    let mut older = fx.segments[0].1.clone();
    older[100] ^= 0x22;
    std::fs::write(&fx.segments[0].0, &older).unwrap();
    let mut last = fx.segments.last().unwrap().1.clone();
    last[64] ^= 0x22;
    let s = fx.segments.len() - 1;
    std::fs::write(&fx.segments[s].0, &last).unwrap();
    let msg = corrupt(&fx.dir, SEG);
    assert!(
        msg.contains(&fx.segments[0].0.display().to_string()),
        "{msg}"
    );
}

#[test]
fn the_last_segment_cut_short_anywhere_is_cut_at_its_last_whole_record() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let bytes = &fx.segments[s].1;
    for len in 0..=bytes.len() {
        let case = format!("cut at {len}");
        fx.assert_cut(
            &bytes[..len],
            len,
            sampled(len) || len == bytes.len(),
            &case,
        );
    }
    // Recovery leaves a log that appends and reopens.
    std::fs::write(&fx.segments[s].0, &bytes[..bytes.len() - 3]).unwrap();
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert_eq!(wal.last_log_id(), Some(log_id(fx.entries - 1)));
    wal.write([varied(fx.entries)]).unwrap();
    drop(wal);
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert_eq!(indexes(&wal), (1..=fx.entries).collect::<Vec<_>>());
}

#[test]
fn an_older_segment_cut_short_is_corruption() {
    let fx = Fixture::new();
    let mut opened = 0;
    for s in 0..fx.segments.len() - 1 {
        let (path, bytes, _) = &fx.segments[s];
        let ends: Vec<usize> = layout(bytes).iter().map(|r| r.1).collect();
        for len in 0..bytes.len() {
            let cut = &bytes[..len];
            let (_, valid) = valid_prefix(cut);
            let boundary = len == 0 || ends.contains(&len);
            let tail = classify_tail(cut, valid, false);
            if boundary {
                assert_eq!(tail, Tail::Clean, "segment {s} cut at {len}");
            } else {
                assert!(
                    matches!(tail, Tail::Corrupt(_)),
                    "segment {s} cut at {len}: {tail:?}"
                );
            }
            if !(boundary || sampled(len)) {
                continue;
            }
            // At a record boundary the missing entries show as a gap at the
            // start of the next segment (or as an empty segment).
            let (named, at) = if boundary && len > 0 {
                (&fx.segments[s + 1].0, 0)
            } else {
                (path, valid)
            };
            let want = format!("{} is damaged at offset {at}:", named.display());
            match fx.open_with(s, cut) {
                Err(GcsStoreError::Corrupt(msg)) => {
                    assert!(msg.contains(&want), "segment {s} cut at {len}: {msg}");
                    opened += 1;
                }
                Err(e) => panic!("segment {s} cut at {len}: unexpected error {e}"),
                Ok((got, _)) => panic!("segment {s} cut at {len}: opened, holding {got:?}"),
            }
        }
    }
    assert!(opened > 50, "{opened}");
}

#[test]
fn a_zeroed_tail_of_the_last_segment_is_cut_at_its_last_whole_record() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let bytes = &fx.segments[s].1;
    // From every sector boundary and every record start.
    let mut starts: Vec<usize> = (0..bytes.len()).step_by(SECTOR).collect();
    starts.extend(layout(bytes).iter().map(|r| r.0));
    assert!(starts.len() > 10, "{starts:?}");
    for from in starts {
        for end in [bytes.len(), from + (bytes.len() - from) / 2 + 1] {
            let mut damaged = bytes[..end].to_vec();
            damaged[from..].fill(0);
            let case = format!("zeros from {from} to {end}");
            fx.assert_cut(&damaged, from, true, &case);
        }
    }
}

#[test]
fn zeros_that_do_not_look_like_unwritten_sectors_are_corruption() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let bytes = &fx.segments[s].1;
    let records = layout(bytes);
    // A zeroed sector with written data after it (a lost write, or sectors
    // persisted out of order): corruption.
    let mut hole = bytes.clone();
    hole[SECTOR..2 * SECTOR].fill(0);
    let changed = (SECTOR..).find(|i| bytes[*i] != 0).unwrap();
    fx.assert_corrupt(
        s,
        &hole,
        changed,
        true,
        "a zeroed sector with data after it",
    );
    // The end of the last record zeroed, but not from a sector boundary or
    // the record's start: a bad record not explained by unwritten sectors.
    let (start, end) = *records.last().unwrap();
    assert!(
        start.div_ceil(SECTOR) * SECTOR >= end || start.is_multiple_of(SECTOR),
        "the fixture's last record crosses no sector boundary: {start}..{end}"
    );
    let mut tail = bytes.clone();
    tail[end - 3..].fill(0);
    fx.assert_corrupt(
        s,
        &tail,
        end - 3,
        true,
        "the last record's last bytes zeroed",
    );
    // An older segment's zeroed tail: corruption too.
    let mut older = fx.segments[0].1.clone();
    let from = layout(&older).last().unwrap().0;
    older[from..].fill(0);
    let case = "an older segment's zeroed tail";
    let msg = match fx.open_with(0, &older) {
        Err(GcsStoreError::Corrupt(msg)) => msg,
        other => panic!("{case}: {:?}", other.map(|r| r.0)),
    };
    assert!(msg.contains("later segments exist"), "{case}: {msg}");
}

#[test]
fn rolling_over_syncs_the_full_segment_first() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), SEG).unwrap();
    let mut rolled = 0;
    for i in 1..=60 {
        let before = segments(dir.path()).len();
        wal.write([varied(i)]).unwrap();
        let dirty = wal.lock_dirty();
        let inner = wal.lock();
        let active = &inner.segments.values().next_back().unwrap().file;
        // Only the active segment can be waiting for its sync.
        assert!(
            dirty.files.iter().all(|f| Arc::ptr_eq(f, active)),
            "entry {i}: an older segment is unsynced"
        );
        rolled += usize::from(segments(dir.path()).len() > before && before > 0);
    }
    assert!(rolled >= 2, "{rolled}");
}

#[test]
fn an_empty_last_segment_is_removed_and_appends_continue() {
    let fx = Fixture::new();
    let s = fx.segments.len() - 1;
    let first = fx.segments[s].2;
    // A segment created just before a crash, its data never written.
    let got = fx.open_with(s, &[0; 300]).unwrap();
    assert_eq!(got, ((1..first).collect(), None));
    std::fs::write(&fx.segments[s].0, []).unwrap();
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert!(!fx.segments[s].0.exists(), "the empty segment is removed");
    wal.write([varied(first)]).unwrap();
    drop(wal);
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    assert_eq!(indexes(&wal), (1..=first).collect::<Vec<_>>());
}
