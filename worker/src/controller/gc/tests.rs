//! Collection decided on states built in memory, and rounds that carry it
//! out within their budget.

use troupe_core::id::{ActorId, NodeId};

use super::*;
use crate::controller::reconcile::{reconcile_within, ROUND_BYTES};
use crate::lifecycle::DeathReason;
use crate::placement::PlacementPolicy;
use crate::schema::{
    self, ActorName, ActorNameRecord, ActorOptions, AssignmentRecord, NodeRecord, Owner,
    ReportOutcome, ReportRecord,
};

const MINUTE: u64 = 60_000;

fn clock(now_ms: u64) -> Clock {
    Clock {
        now_ms,
        retention_ms: 10 * MINUTE,
    }
}

fn put_actor(state: &mut ClusterState, id: u64, dead_at: Option<Option<u64>>) -> ActorId {
    let id = ActorId::new(id);
    let mut record = ActorRecord::new(
        id,
        "Counter",
        Owner::Node(NodeId::new(1)),
        ActorOptions::default(),
    );
    match dead_at {
        Some(at) => {
            record.state = ActorState::Dead {
                reason: DeathReason::KilledByUser,
            };
            record.died_at_ms = at;
        }
        None => {
            record.state = ActorState::Alive;
            record.node = Some(NodeId::new(1));
            let node = NodeRecord {
                id: NodeId::new(1),
                addr: "127.0.0.1:1001".into(),
                data_addrs: Vec::new(),
                resources: Default::default(),
                labels: Default::default(),
                started_at_ms: 0,
                gcs_member: false,
                draining: false,
                node_ttl_ms: 3_000,
            };
            state.apply(&Key::Node(node.id).to_bytes(), Some(&schema::encode(&node)));
            state.apply(&Key::Owner(node.id).to_bytes(), Some(&[]));
        }
    }
    state.apply(&Key::Actor(id).to_bytes(), Some(&schema::encode(&record)));
    id
}

fn put_report(state: &mut ClusterState, node: u64, actor: ActorId) {
    let report = ReportRecord {
        actor,
        incarnation: 1,
        outcome: ReportOutcome::Started,
    };
    let key = Key::Report {
        node: NodeId::new(node),
        actor,
    };
    state.apply(&key.to_bytes(), Some(&schema::encode(&report)));
}

fn put_name(state: &mut ClusterState, name: &str, actor: ActorId) -> Vec<u8> {
    let key = Key::ActorName(ActorName::in_default(name).unwrap()).to_bytes();
    state.apply(&key, Some(&schema::encode(&ActorNameRecord { actor })));
    key
}

fn parsed(keys: &[Vec<u8>]) -> Vec<Key> {
    keys.iter().map(|k| Key::parse(k).unwrap()).collect()
}

#[test]
fn only_actors_dead_for_the_retention_go_with_their_reports_oldest_first() {
    let mut state = ClusterState::default();
    let live = put_actor(&mut state, 1, None);
    let recent = put_actor(&mut state, 2, Some(Some(55 * MINUTE)));
    let old = put_actor(&mut state, 3, Some(Some(40 * MINUTE)));
    let older = put_actor(&mut state, 4, Some(Some(30 * MINUTE)));
    for actor in [live, recent, old] {
        put_report(&mut state, 1, actor);
    }
    put_report(&mut state, 2, old);
    let g = garbage(&state, clock(60 * MINUTE));
    assert!(g.unstamped.is_empty());
    assert_eq!(
        parsed(&g.keys),
        vec![
            Key::Actor(older),
            Key::Actor(old),
            Key::Report {
                node: NodeId::new(1),
                actor: old
            },
            Key::Report {
                node: NodeId::new(2),
                actor: old
            },
        ]
    );
    // Exactly at the retention it goes; a minute earlier it stays.
    assert_eq!(garbage(&state, clock(50 * MINUTE)).keys.len(), 4);
    assert_eq!(garbage(&state, clock(49 * MINUTE)).keys.len(), 1);
    assert_eq!(garbage(&state, clock(39 * MINUTE)).keys.len(), 0);
    // A clock behind the death time collects nothing.
    assert_eq!(garbage(&state, clock(0)).keys.len(), 0);
}

#[test]
fn a_live_actor_and_its_name_are_never_collected() {
    let mut state = ClusterState::default();
    let live = put_actor(&mut state, 1, None);
    put_name(&mut state, "svc", live);
    put_report(&mut state, 1, live);
    let g = garbage(
        &state,
        Clock {
            now_ms: u64::MAX,
            retention_ms: 0,
        },
    );
    assert_eq!(g, Garbage::default());
}

#[test]
fn orphans_go_and_a_name_left_on_a_collected_actor_goes_with_it() {
    let mut state = ClusterState::default();
    let dead = put_actor(&mut state, 1, Some(Some(0)));
    let left = put_name(&mut state, "old", dead);
    let orphan_name = put_name(&mut state, "lost", ActorId::new(99));
    put_report(&mut state, 3, ActorId::new(98));
    let assignment = AssignmentRecord {
        actor: ActorId::new(97),
        incarnation: 1,
        type_name: "Counter".into(),
        args: Vec::new(),
        resources: Default::default(),
        term: 1,
    };
    let orphan_assignment = Key::Assignment {
        node: NodeId::new(3),
        actor: ActorId::new(97),
    };
    state.apply(
        &orphan_assignment.to_bytes(),
        Some(&schema::encode(&assignment)),
    );
    let keys = garbage(&state, clock(20 * MINUTE)).keys;
    assert_eq!(keys.len(), 5, "{:?}", parsed(&keys));
    assert_eq!(keys[0], Key::Actor(dead).to_bytes());
    for key in [
        left,
        orphan_name,
        orphan_assignment.to_bytes(),
        Key::Report {
            node: NodeId::new(3),
            actor: ActorId::new(98),
        }
        .to_bytes(),
    ] {
        assert!(keys.contains(&key));
    }
}

#[test]
fn dead_records_without_a_death_time_are_stamped_by_a_round_then_collected() {
    let mut state = ClusterState::default();
    let legacy = put_actor(&mut state, 1, Some(None));
    let g = garbage(&state, clock(MINUTE));
    assert_eq!(g.unstamped, vec![legacy]);
    assert!(g.keys.is_empty());
    let plan = reconcile_within(
        &state,
        3,
        clock(MINUTE),
        &[],
        &[],
        PlacementPolicy::Spread,
        ROUND_BYTES,
    );
    for (key, value) in &plan.writes {
        state.apply(key, value.as_deref());
    }
    assert_eq!(state.actors[&legacy].died_at_ms, Some(MINUTE));
    let plan = reconcile_within(
        &state,
        3,
        clock(11 * MINUTE),
        &[],
        &[],
        PlacementPolicy::Spread,
        ROUND_BYTES,
    );
    assert_eq!(plan.writes.get(&Key::Actor(legacy).to_bytes()), Some(&None));
}

#[test]
fn rounds_delete_in_batches_within_their_budget_until_all_is_gone() {
    let mut state = ClusterState::default();
    let live = put_actor(&mut state, 1, None);
    let total = 3000;
    for i in 0..total {
        let dead = put_actor(&mut state, 10 + i, Some(Some(i)));
        put_report(&mut state, 1, dead);
    }
    let budget = 64 << 10;
    let mut rounds = 0;
    let mut deleted = 0;
    loop {
        let plan = reconcile_within(
            &state,
            3,
            clock(20 * MINUTE),
            &[],
            &[],
            PlacementPolicy::Spread,
            budget,
        );
        if plan.writes.is_empty() {
            break;
        }
        rounds += 1;
        assert!(rounds < 100, "collection does not converge");
        let bytes: usize = plan.writes.keys().map(|k| k.len() + 64).sum();
        assert!(bytes <= budget, "a round of {bytes} bytes");
        assert!(plan.writes.len() <= MAX_DELETES);
        assert!(plan.writes.values().all(Option::is_none));
        deleted += plan.writes.len();
        for (key, value) in &plan.writes {
            state.apply(key, value.as_deref());
        }
    }
    assert_eq!(deleted, 2 * total as usize);
    assert!(rounds >= 6, "only {rounds} rounds");
    assert_eq!(state.actors.keys().copied().collect::<Vec<_>>(), vec![live]);
    assert!(state.reports.is_empty());
}

#[test]
fn a_round_stamps_the_actors_it_kills_and_does_not_collect_them() {
    let mut state = ClusterState::default();
    let live = put_actor(&mut state, 1, None);
    let plan = reconcile_within(
        &state,
        3,
        Clock {
            now_ms: 5 * MINUTE,
            retention_ms: 0,
        },
        &[],
        &[live],
        PlacementPolicy::Spread,
        ROUND_BYTES,
    );
    let record = plan.killed[0].as_ref().unwrap();
    assert_eq!(record.died_at_ms, Some(5 * MINUTE));
    let written = plan.writes.get(&Key::Actor(live).to_bytes()).unwrap();
    let written: ActorRecord = schema::decode(written.as_ref().unwrap()).unwrap();
    assert_eq!(written.died_at_ms, Some(5 * MINUTE));
}
