use std::collections::BTreeMap;

use proptest::prelude::*;
use troupe_core::id::{ActorId, NodeId};
use troupe_core::resources::Resources;

use super::*;
use crate::lifecycle::{ActorState, DeathReason};

fn node_record() -> NodeRecord {
    NodeRecord {
        id: NodeId::new(1),
        addr: "10.0.0.1:7000".into(),
        data_addrs: Vec::new(),
        resources: Resources::new()
            .with_cpus(8.0)
            .unwrap()
            .with_gpus(1.0)
            .unwrap()
            .with_custom("accel", 2.0)
            .unwrap(),
        labels: BTreeMap::from([("zone".to_owned(), "a".to_owned())]),
        started_at_ms: 1_764_000_000_000,
        gcs_member: true,
        draining: false,
        node_ttl_ms: 3_000,
    }
}

fn actor_record(state: ActorState) -> ActorRecord {
    let options = ActorOptions {
        resources: Resources::new().with_gpus(0.3).unwrap(),
        max_restarts: RetryLimit::AtMost(1),
        max_task_retries: RetryLimit::Unlimited,
        lifetime: Lifetime::Detached,
        spread_group: Some("serve:app/model".into()),
    };
    let mut record = ActorRecord::new(
        ActorId::new(7),
        "Counter",
        Owner::Node(NodeId::new(1)),
        options,
    );
    record.name = Some(ActorName::new("prod", "counter").unwrap());
    record.args = vec![1, 2, 3];
    record.state = state;
    record.node = Some(NodeId::new(2));
    record.restarts = 1;
    record.incarnation = 2;
    record.pending_reason = Some("waiting".into());
    record.term = 5;
    record.died_at_ms = Some(1_764_000_000_000);
    record
}

#[test]
fn every_record_round_trips() {
    let n = node_record();
    assert_eq!(decode::<NodeRecord>(&encode(&n)), Ok(n));
    let states = [
        ActorState::Pending,
        ActorState::Alive,
        ActorState::Restarting,
        ActorState::Dead {
            reason: DeathReason::HandlerPanicked {
                message: "boom".into(),
                budget: 1,
            },
        },
    ];
    for state in states {
        let a = actor_record(state);
        assert_eq!(decode::<ActorRecord>(&encode(&a)), Ok(a));
    }
    let name = ActorNameRecord {
        actor: ActorId::new(7),
    };
    assert_eq!(decode::<ActorNameRecord>(&encode(&name)), Ok(name));
    let assignment = AssignmentRecord {
        actor: ActorId::new(7),
        incarnation: 3,
        type_name: "Counter".into(),
        args: vec![9],
        resources: Resources::new().with_gpus(0.3).unwrap(),
        term: 4,
    };
    assert_eq!(
        decode::<AssignmentRecord>(&encode(&assignment)),
        Ok(assignment)
    );
    let term = ControllerTermRecord {
        term: 8,
        node: NodeId::new(3),
    };
    assert_eq!(decode::<ControllerTermRecord>(&encode(&term)), Ok(term));
}

#[test]
fn values_start_with_the_schema_version() {
    let bytes = encode(&ControllerTermRecord {
        term: 1,
        node: NodeId::new(2),
    });
    assert_eq!(&bytes[..2], &SCHEMA_VERSION.to_le_bytes());
    assert_eq!(bytes.len(), 2 + 8 + 8);
}

#[test]
fn version_3_actor_records_are_read_without_a_spread_group_or_death_time() {
    let current = actor_record(ActorState::Alive);
    let o = &current.options;
    // Version 3's layout: the record with options lacking `spread_group`,
    // as a tuple (bincode writes a struct as the tuple of its fields).
    let old = (
        current.id,
        &current.type_name,
        &current.name,
        &current.owner,
        (&o.resources, o.max_restarts, o.max_task_retries, o.lifetime),
        serde_bytes::Bytes::new(&current.args),
        &current.state,
        current.node,
        current.restarts,
        current.incarnation,
        &current.pending_reason,
        current.term,
    );
    let mut bytes = 3_u16.to_le_bytes().to_vec();
    bincode::serialize_into(&mut bytes, &old).unwrap();
    let read = decode::<ActorRecord>(&bytes).unwrap();
    let mut expected = current.clone();
    expected.options.spread_group = None;
    expected.died_at_ms = None;
    assert_eq!(read, expected);
    // Records whose layout did not change read as they are.
    let mut node = encode(&node_record());
    node[..2].copy_from_slice(&3_u16.to_le_bytes());
    assert_eq!(decode::<NodeRecord>(&node), Ok(node_record()));
    // A version 3 actor record cut short is corrupt, not a panic.
    bytes.truncate(bytes.len() - 3);
    assert!(matches!(
        decode::<ActorRecord>(&bytes),
        Err(SchemaError::Corrupt { kind: "actor", .. })
    ));
}

#[test]
fn a_newer_schema_version_is_refused_with_what_to_do() {
    let mut bytes = encode(&node_record());
    bytes[..2].copy_from_slice(&(SCHEMA_VERSION + 1).to_le_bytes());
    let err = decode::<NodeRecord>(&bytes).unwrap_err();
    assert_eq!(
        err,
        SchemaError::NewerVersion {
            kind: "node",
            found: SCHEMA_VERSION + 1,
            supported: SCHEMA_VERSION
        }
    );
    assert!(err
        .to_string()
        .contains("run the same version on every node"));
    bytes[..2].copy_from_slice(&0_u16.to_le_bytes());
    assert!(matches!(
        decode::<NodeRecord>(&bytes),
        Err(SchemaError::Corrupt { .. })
    ));
}

#[test]
fn an_unknown_state_variant_from_a_newer_writer_is_an_error() {
    // Alive and Restarting encode alike but for the state's variant index;
    // overwrite that index with one this binary has never heard of.
    let alive = encode(&actor_record(ActorState::Alive));
    let restarting = encode(&actor_record(ActorState::Restarting));
    let at = alive
        .iter()
        .zip(&restarting)
        .position(|(a, b)| a != b)
        .unwrap();
    assert_eq!(alive[at..at + 4], 1_u32.to_le_bytes());
    let mut future = alive.clone();
    future[at..at + 4].copy_from_slice(&9_u32.to_le_bytes());
    let err = decode::<ActorRecord>(&future).unwrap_err();
    let SchemaError::Corrupt {
        kind: "actor",
        detail,
    } = &err
    else {
        panic!("unexpected {err:?}");
    };
    assert!(detail.contains("variant index"), "{detail}");
    assert!(err
        .to_string()
        .starts_with("actor record does not decode: "));
}

#[test]
fn truncated_and_padded_values_are_errors() {
    let bytes = encode(&node_record());
    for cut in [0, 1, 2, bytes.len() / 2, bytes.len() - 1] {
        let err = decode::<NodeRecord>(&bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, SchemaError::Corrupt { kind: "node", .. }),
            "{cut}: {err:?}"
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(matches!(
        decode::<NodeRecord>(&padded),
        Err(SchemaError::Corrupt { .. })
    ));
}

#[test]
fn a_huge_length_prefix_is_refused_without_allocating_it() {
    let mut bytes = SCHEMA_VERSION.to_le_bytes().to_vec();
    bytes.extend_from_slice(&1_u64.to_le_bytes()); // node id
    bytes.extend_from_slice(&u64::MAX.to_le_bytes()); // addr length
    let err = decode::<NodeRecord>(&bytes).unwrap_err();
    assert!(
        matches!(err, SchemaError::Corrupt { kind: "node", .. }),
        "{err:?}"
    );
}

#[test]
fn retry_limits_follow_rays_integer_convention() {
    assert_eq!(
        RetryLimit::from_ray("max_restarts", -1),
        Ok(RetryLimit::Unlimited)
    );
    assert_eq!(
        RetryLimit::from_ray("max_restarts", 0),
        Ok(RetryLimit::NEVER)
    );
    assert_eq!(
        RetryLimit::from_ray("max_restarts", 3),
        Ok(RetryLimit::AtMost(3))
    );
    let err = RetryLimit::from_ray("max_task_retries", -2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid max_task_retries -2: expected -1 (unlimited), 0 (never) or a count up to 4294967295"
    );
    assert!(RetryLimit::from_ray("max_restarts", 1 << 40).is_err());
    assert!(RetryLimit::AtMost(2).allows_another(1));
    assert!(!RetryLimit::AtMost(2).allows_another(2));
    assert!(!RetryLimit::NEVER.allows_another(0));
    assert!(RetryLimit::Unlimited.allows_another(u32::MAX));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<ActorRecord>(&bytes);
        let _ = decode::<NodeRecord>(&bytes);
        let _ = Key::parse(&bytes);
    }
}
