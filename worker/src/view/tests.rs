use troupe_gcs::{Event, EventKind, KeyValue, RevisionEvents};

use super::*;
use crate::schema::{self, ActorNameRecord, ActorOptions, Key, Owner};

fn kv(key: &Key, value: Vec<u8>, revision: u64) -> KeyValue {
    KeyValue {
        key: key.to_bytes(),
        value,
        create_revision: revision,
        mod_revision: revision,
        version: 1,
        lease: None,
    }
}

fn actor_kv(id: u64, revision: u64) -> KeyValue {
    let record = ActorRecord::new(
        ActorId::new(id),
        "Counter",
        Owner::Node(NodeId::new(1)),
        ActorOptions::default(),
    );
    kv(
        &Key::Actor(ActorId::new(id)),
        schema::encode(&record),
        revision,
    )
}

fn narrow() -> ClusterState {
    ClusterState::default()
}

#[test]
fn a_full_state_finds_actors_once_it_reached_the_handles_revision() {
    let state = ClusterState::from_listing(10, &[actor_kv(1, 5)]);
    assert!(matches!(
        state.lookup(ActorId::new(1), 10),
        Lookup::Found(_)
    ));
    assert!(matches!(
        state.lookup(ActorId::new(2), 10),
        Lookup::NotFound
    ));
    assert!(matches!(state.lookup(ActorId::new(1), 11), Lookup::NotYet));
    assert!(matches!(
        ClusterState {
            full: true,
            ..ClusterState::default()
        }
        .lookup(ActorId::new(1), 0),
        Lookup::NotYet
    ));
}

#[test]
fn a_narrow_state_knows_an_actor_only_once_it_was_looked_up() {
    let mut state = narrow();
    let id = ActorId::new(1);
    assert!(matches!(state.lookup(id, 0), Lookup::NotYet));
    // Listed, and absent: no such actor, for handles that knew it no later.
    state.apply_listing(&Follow::Actor(id), 20, &[]);
    state.revision = 20;
    assert!(matches!(state.lookup(id, 20), Lookup::NotFound));
    assert!(matches!(state.lookup(id, 21), Lookup::NotYet));
    // Created later: the watch brings it.
    let before = state.generation;
    state.apply_events(&RevisionEvents {
        revision: 21,
        events: vec![Event {
            kind: EventKind::Put,
            kv: actor_kv(1, 21),
            prev_kv: None,
        }],
    });
    assert!(state.generation > before);
    assert_eq!(state.revision, 21);
    assert!(matches!(state.lookup(id, 21), Lookup::Found(_)));
    // No longer followed: forgotten.
    state.clear(&Follow::Actor(id));
    assert!(matches!(state.lookup(id, 0), Lookup::NotYet));
    assert!(state.actors.is_empty());
}

#[test]
fn a_listing_replaces_only_what_its_selection_covers() {
    let mut state = narrow();
    let mine = NodeId::new(7);
    let assignment = |node: NodeId, actor: u64| {
        let record = AssignmentRecord {
            actor: ActorId::new(actor),
            incarnation: 0,
            type_name: "Counter".into(),
            args: Vec::new(),
            resources: Default::default(),
            term: 0,
        };
        kv(
            &Key::Assignment {
                node,
                actor: ActorId::new(actor),
            },
            schema::encode(&record),
            3,
        )
    };
    state.apply_listing(&Follow::Assignments(mine), 3, &[assignment(mine, 1)]);
    state.apply_listing(&Follow::Actor(ActorId::new(2)), 4, &[actor_kv(2, 4)]);
    state.apply_listing(
        &Follow::Prefix("/troupe/serve/".into()),
        4,
        &[KeyValue {
            key: b"/troupe/serve/apps/a".to_vec(),
            value: vec![1],
            create_revision: 4,
            mod_revision: 4,
            version: 1,
            lease: None,
        }],
    );
    let name = crate::schema::ActorName::new("serve", "app#d#1#r").unwrap();
    let named = ActorNameRecord {
        actor: ActorId::new(2),
    };
    state.apply_listing(
        &Follow::Names("/troupe/actor-names/serve/app#d#".into()),
        5,
        &[kv(&Key::ActorName(name.clone()), schema::encode(&named), 5)],
    );
    assert_eq!(state.names.get(&name), Some(&ActorId::new(2)));
    // Listing the assignments again (after `Compacted`): the old ones go,
    // nothing else does.
    state.apply_listing(&Follow::Assignments(mine), 9, &[assignment(mine, 3)]);
    let assigned: Vec<ActorId> = state.assignments.keys().map(|(_, a)| *a).collect();
    assert_eq!(assigned, vec![ActorId::new(3)]);
    assert!(state.actors.contains_key(&ActorId::new(2)));
    assert_eq!(state.extra.len(), 1);
    assert_eq!(state.names.len(), 1);
    state.clear(&Follow::Names("/troupe/actor-names/serve/app#d#".into()));
    assert!(state.names.is_empty());
    state.clear(&Follow::Prefix("/troupe/serve/".into()));
    assert!(state.extra.is_empty());
    // A full listing replaces everything, and keeps the state full.
    let mut full = ClusterState::from_listing(3, &[actor_kv(1, 3)]);
    full.apply_listing(&Follow::All, 30, &[actor_kv(2, 30)]);
    assert!(full.full);
    assert_eq!(full.revision, 30);
    assert_eq!(
        full.actors.keys().copied().collect::<Vec<_>>(),
        vec![ActorId::new(2)]
    );
}
