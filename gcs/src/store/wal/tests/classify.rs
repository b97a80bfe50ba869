//! The classification of a segment's tail itself ([`classify_tail`]), on
//! hand-made segments: the torn shapes, the corrupt ones, the documented
//! limit, and the corruption message.

use super::*;

fn record_bytes(entries: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in entries {
        super::record::encode_record(&varied(i), &mut buf).unwrap();
    }
    buf
}

fn tail_of(bytes: &[u8], last: bool) -> Tail {
    let (_, at) = valid_prefix(bytes);
    classify_tail(bytes, at, last)
}

fn assert_corrupt_tail(tail: Tail, says: &str) {
    match tail {
        Tail::Corrupt(what) => assert!(what.contains(says), "{what:?} lacks {says:?}"),
        other => panic!("{other:?}, want corruption saying {says:?}"),
    }
}

#[test]
fn classify_torn_shapes() {
    let whole = record_bytes(1..=3);
    let last_start = layout(&whole)[2].0;
    assert_eq!(tail_of(&whole, true), Tail::Clean);
    assert_eq!(
        tail_of(&whole[..last_start + 5], true),
        Tail::Torn(TornShape::Short)
    );
    assert_eq!(
        tail_of(&whole[..whole.len() - 1], true),
        Tail::Torn(TornShape::Short)
    );
    let mut zeros = whole.clone();
    zeros[last_start..].fill(0);
    assert_eq!(
        tail_of(&zeros, true),
        Tail::Torn(TornShape::Zeros {
            from: last_start as u64
        })
    );
    // Zeros from a sector boundary inside the record (padding the segment
    // so the boundary falls there).
    let mut padded = record_bytes(1..=12);
    let (start, end) = *layout(&padded)
        .iter()
        .find(|(s, e)| s / SECTOR != (e - 1) / SECTOR)
        .unwrap();
    let boundary = end / SECTOR * SECTOR;
    padded.truncate(end);
    padded[boundary..].fill(0);
    assert!(boundary > start);
    assert_eq!(
        tail_of(&padded, true),
        Tail::Torn(TornShape::Zeros {
            from: boundary as u64
        })
    );
    // Zero bytes past the end of the file's records, added by a crash that
    // extended the file: also torn (nothing but zeros from the record start).
    let mut extended = whole.clone();
    extended.extend_from_slice(&[0; 700]);
    assert_eq!(
        tail_of(&extended, true),
        Tail::Torn(TornShape::Zeros {
            from: whole.len() as u64
        })
    );
}

#[test]
fn classify_corrupt_shapes() {
    let whole = record_bytes(1..=3);
    let [_, (second, _), (third, _)] = layout(&whole)[..] else {
        panic!()
    };
    // Any of these in an older segment.
    assert_corrupt_tail(tail_of(&whole[..third + 3], false), "later segments exist");
    // A checksum failure with nothing zero.
    let mut crc = whole.clone();
    crc[third + 5] ^= 1;
    assert_corrupt_tail(tail_of(&crc, true), "fails its checksum");
    // A length field in the middle made to run past the end: valid
    // records follow.
    let mut middle = whole.clone();
    middle[second + 2] ^= 1;
    assert_corrupt_tail(
        tail_of(&middle, true),
        &format!("a valid record follows at offset {third}"),
    );
    // A length field made larger looks short, but the checksum matches the
    // real length.
    let mut length = whole.clone();
    length[third + 1] ^= 1;
    assert_corrupt_tail(tail_of(&length, true), "damaged length field");
    // A length no record has.
    let mut huge = whole.clone();
    huge[third + 3] = 0x7f;
    assert_corrupt_tail(tail_of(&huge, true), "more than any record");
    // A record whose checksum matches but is not an entry.
    let mut junk = whole[..third].to_vec();
    junk.extend_from_slice(&3u32.to_le_bytes());
    junk.extend_from_slice(&crc32fast::hash(&[9, 9, 9]).to_le_bytes());
    junk.extend_from_slice(&[9, 9, 9]);
    assert_corrupt_tail(tail_of(&junk, true), "not a log entry");
    // Zeros from a sector boundary after the bad record's stated end.
    let mut late = record_bytes(1..=12);
    let (start, end) = *layout(&late)
        .iter()
        .find(|(s, e)| e / SECTOR > s / SECTOR && e % SECTOR > 8)
        .unwrap();
    late[start + 9] ^= 1;
    let boundary = end.div_ceil(SECTOR) * SECTOR;
    late.resize(boundary + 100, 0);
    late[end..].fill(0);
    late[end..boundary].fill(1);
    assert_corrupt_tail(tail_of(&late, true), "fails its checksum");
}

#[test]
fn indistinguishable_from_a_torn_write_is_cut() {
    // The documented limit: a damaged last record whose own bytes end in
    // zeros across a sector boundary looks like a torn write of it.
    let mut buf = record_bytes(1..=2);
    let filler = Entry {
        log_id: log_id(3),
        payload: EntryPayload::Normal(Proposal {
            commands: vec![Command::new(Operation::put("z", vec![0u8; 600]))],
        }),
    };
    let start = buf.len();
    super::record::encode_record(&filler, &mut buf).unwrap();
    buf[start + 5] ^= 1;
    assert!(matches!(
        tail_of(&buf, true),
        Tail::Torn(TornShape::Zeros { .. })
    ));
    // So does a last record whose length was made larger and whose CRC is
    // damaged too: it reads as a short record.
    let mut buf = record_bytes(1..=3);
    let last = layout(&buf)[2].0;
    buf[last + 2] ^= 1;
    buf[last + 5] ^= 1;
    assert_eq!(tail_of(&buf, true), Tail::Torn(TornShape::Short));
}

#[test]
fn the_corruption_message_says_where_what_and_what_to_do() {
    let GcsStoreError::Corrupt(msg) = corruption(
        Path::new("/data/log/00000000000000000001.wal"),
        64,
        "the record of 37 bytes fails its checksum",
    ) else {
        panic!()
    };
    for says in [
        "log segment /data/log/00000000000000000001.wal is damaged at offset 64",
        "fails its checksum",
        "must not start",
        "troupe gcs remove --id <ID>",
        "troupe gcs serve --id <NEW_ID> --data-dir <EMPTY_DIR>",
        "troupe gcs add --id <NEW_ID>",
        "troupe start --join <NODE_ADDR> --gcs --data-dir <EMPTY_DIR>",
        "catches up from the others",
        "If this is the only member, restore from a backup instead",
    ] {
        assert!(msg.contains(says), "{says:?} missing from:\n{msg}");
    }
    assert!(msg.lines().count() <= 10, "one screen:\n{msg}");
}
