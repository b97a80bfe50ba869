//! Random logs, random damage: a property test that damage is corruption
//! and only torn shapes are cut, and a record damaged after the open.

use proptest::prelude::*;

use super::*;

/// Like [`varied`], with a value of `size` non-zero bytes (records from a
/// few bytes to several sectors).
fn sized(index: u64, size: usize) -> Entry {
    let mut entry = varied(index);
    if let EntryPayload::Normal(p) = &mut entry.payload {
        p.commands[0] = Command::new(Operation::put(format!("k{index}"), vec![7u8; size]));
    }
    entry
}

#[derive(Debug, Clone)]
enum Damage {
    /// Xor a byte with a mask, never making it zero: the byte at
    /// (seed % len), or in the header of record (seed % records).
    Flip { seed: usize, mask: u8, header: bool },
    /// Cut the file at (seed % (len + 1)).
    Cut { seed: usize },
    /// Zero from a sector boundary or a record start (picked by seed) to
    /// the end, then maybe cut the file shorter.
    Zeros {
        seed: usize,
        at_record: bool,
        shorten: bool,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8.., any::<bool>()).prop_map(|(seed, mask, header)| Damage::Flip {
            seed,
            mask,
            header
        }),
        any::<usize>().prop_map(|seed| Damage::Cut { seed }),
        (any::<usize>(), any::<bool>(), any::<bool>()).prop_map(|(seed, at_record, shorten)| {
            Damage::Zeros {
                seed,
                at_record,
                shorten,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn damage_is_corruption_and_only_torn_shapes_are_cut(
        sizes in proptest::collection::vec(0usize..1500, 1..12),
        damage in damage(),
    ) {
        let mut bytes = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            super::record::encode_record(&sized(i as u64 + 1, *size), &mut bytes).unwrap();
        }
        let records = layout(&bytes);
        let n = bytes.len();
        let end_by = |cut: usize| records.iter().map(|r| r.1).filter(|e| *e <= cut).max().unwrap_or(0);
        match damage {
            Damage::Flip { seed, mask, header } => {
                let at = if header {
                    records[seed % records.len()].0 + seed / 7 % HEADER
                } else {
                    seed % n
                };
                bytes[at] = flipped(bytes[at], mask);
                let start = records.iter().find(|r| r.0 <= at && at < r.1).unwrap().0;
                let (_, valid) = valid_prefix(&bytes);
                prop_assert_eq!(valid, start);
                let tail = classify_tail(&bytes, valid, true);
                prop_assert!(matches!(tail, Tail::Corrupt(_)), "{:?}", tail);
            }
            Damage::Cut { seed } => {
                let len = seed % (n + 1);
                let cut = &bytes[..len];
                let (_, valid) = valid_prefix(cut);
                prop_assert_eq!(valid, end_by(len));
                let tail = classify_tail(cut, valid, true);
                let want_clean = valid == len;
                prop_assert!(
                    if want_clean { tail == Tail::Clean } else { tail == Tail::Torn(TornShape::Short) },
                    "{:?}", tail
                );
            }
            Damage::Zeros { seed, at_record, shorten } => {
                let from = if at_record {
                    records[seed % records.len()].0
                } else {
                    (seed % n.div_ceil(SECTOR)) * SECTOR
                };
                let end = if shorten { from + 1 + seed % (n - from) } else { n };
                let mut damaged = bytes[..end].to_vec();
                damaged[from..].fill(0);
                let (_, valid) = valid_prefix(&damaged);
                prop_assert_eq!(valid, end_by(from));
                let tail = classify_tail(&damaged, valid, true);
                prop_assert!(matches!(tail, Tail::Torn(_)), "{:?}", tail);
                // The same in an older segment is corruption.
                let older = classify_tail(&damaged, valid, false);
                prop_assert!(matches!(older, Tail::Corrupt(_)), "{:?}", older);
            }
        }
    }
}

#[test]
fn a_record_damaged_after_the_open_fails_its_read_naming_file_and_offset() {
    let fx = Fixture::new();
    let wal = Wal::open(&fx.dir, SEG).unwrap();
    let (path, bytes, first) = &fx.segments[1];
    let (start, end) = layout(bytes)[2];
    let mut damaged = bytes.clone();
    damaged[end - 1] ^= 0x10;
    std::fs::write(path, &damaged).unwrap();
    let index = first + 2;
    match wal.entries(index..=index) {
        Err(GcsStoreError::Corrupt(msg)) => {
            let want = format!("{} is damaged at offset {start}:", path.display());
            assert!(msg.contains(&want), "{msg}");
            assert!(msg.contains("fails its checksum when read"), "{msg}");
        }
        other => panic!("{:?}", other.map(|e| e.len())),
    }
    assert_eq!(wal.entries(..index).unwrap().len() as u64, index - 1);
}
