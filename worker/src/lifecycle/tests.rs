use troupe_core::id::ActorId;

use super::*;
use crate::schema::{ActorOptions, Owner, RetryLimit};

const N1: NodeId = NodeId::new(1);
const N2: NodeId = NodeId::new(2);
const OWNER: Owner = Owner::Actor(ActorId::new(99));

fn actor(max_restarts: RetryLimit) -> ActorRecord {
    let options = ActorOptions {
        max_restarts,
        ..ActorOptions::default()
    };
    ActorRecord::new(ActorId::new(7), "Counter", OWNER, options)
}

/// Applies `events` in order, returning the final record and every
/// transition's actions.
fn run(start: &ActorRecord, events: Vec<Event>) -> (ActorRecord, Vec<Vec<Action>>) {
    let mut record = start.clone();
    let mut all = Vec::new();
    for event in events {
        let t = step(&record, event);
        record = t.record;
        all.push(t.actions);
    }
    (record, all)
}

/// An actor that was placed on `N1` and started there (incarnation 1).
fn alive(max_restarts: RetryLimit) -> ActorRecord {
    let (record, _) = run(
        &actor(max_restarts),
        vec![
            Event::Placed { node: N1 },
            Event::Started {
                node: N1,
                incarnation: 1,
            },
        ],
    );
    assert_eq!(record.state, ActorState::Alive);
    record
}

fn dead_actions(node: Option<NodeId>, reason: DeathReason) -> Vec<Action> {
    let mut actions: Vec<Action> = node
        .map(|node| Action::StopOn { node })
        .into_iter()
        .collect();
    actions.push(Action::FailPendingCalls { reason });
    actions.push(Action::NotifyWaiters);
    actions
}

#[test]
fn placed_then_started_becomes_alive() {
    let pending = actor(RetryLimit::NEVER);
    assert_eq!(pending.state.name(), "PENDING");
    let placed = step(&pending, Event::Placed { node: N1 });
    assert_eq!(
        placed.actions,
        [Action::StartOn {
            node: N1,
            incarnation: 1
        }]
    );
    assert_eq!(placed.record.state, ActorState::Pending);
    assert_eq!(placed.record.node, Some(N1));
    let started = step(
        &placed.record,
        Event::Started {
            node: N1,
            incarnation: 1,
        },
    );
    assert_eq!(started.actions, [Action::NotifyWaiters]);
    assert_eq!(started.record.state.name(), "ALIVE");
    assert_eq!(started.record.restarts, 0);
}

#[test]
fn unschedulable_records_the_reason_until_placed() {
    let t = step(
        &actor(RetryLimit::NEVER),
        Event::Unschedulable {
            reason: "no GPU".into(),
        },
    );
    assert_eq!(t.record.pending_reason.as_deref(), Some("no GPU"));
    assert!(t.actions.is_empty());
    let same = step(
        &t.record,
        Event::Unschedulable {
            reason: "no GPU".into(),
        },
    );
    assert_eq!(same, Transition::unchanged(&t.record));
    let placed = step(&t.record, Event::Placed { node: N1 });
    assert_eq!(placed.record.pending_reason, None);
}

#[test]
fn node_death_with_one_restart_moves_it_then_a_second_death_kills_it() {
    let record = alive(RetryLimit::AtMost(1));
    let lost = step(&record, Event::NodeDied { node: N1 });
    assert_eq!(lost.record.state.name(), "RESTARTING");
    assert_eq!(lost.record.restarts, 1);
    assert_eq!(lost.record.node, None);
    assert_eq!(lost.actions, [Action::StopOn { node: N1 }, Action::Place]);

    let (back, actions) = run(
        &lost.record,
        vec![
            Event::Placed { node: N2 },
            Event::Started {
                node: N2,
                incarnation: 2,
            },
        ],
    );
    assert_eq!(
        actions[0],
        [Action::StartOn {
            node: N2,
            incarnation: 2
        }]
    );
    assert_eq!(actions[1], [Action::NotifyWaiters]);
    assert_eq!((back.state.name(), back.node), ("ALIVE", Some(N2)));

    let gone = step(&back, Event::NodeDied { node: N2 });
    let reason = DeathReason::NodeDied {
        node: N2,
        budget: 1,
    };
    assert_eq!(gone.record.death_reason(), Some(&reason));
    assert!(reason.to_string().contains("restart budget of 1 was spent"));
    assert_eq!(gone.actions, dead_actions(Some(N2), reason));
    assert_eq!(gone.record.node, None);
}

#[test]
fn no_restarts_means_dead_at_the_first_node_death() {
    let gone = step(&alive(RetryLimit::NEVER), Event::NodeDied { node: N1 });
    let reason = DeathReason::NodeDied {
        node: N1,
        budget: 0,
    };
    assert_eq!(
        format!("actor died: {}", gone.record.death_reason().unwrap()),
        "actor died: its node node-0000000000000001 died and max_restarts is 0, so it was \
         not restarted; set max_restarts to restart it"
    );
    assert_eq!(gone.actions, dead_actions(Some(N1), reason));
}

#[test]
fn unlimited_restarts_never_run_out() {
    let mut record = alive(RetryLimit::Unlimited);
    for round in 1..=50_u32 {
        let (next, _) = run(
            &record,
            vec![
                Event::NodeDied { node: N1 },
                Event::Placed { node: N1 },
                Event::Started {
                    node: N1,
                    incarnation: u64::from(round) + 1,
                },
            ],
        );
        record = next;
    }
    assert_eq!((record.state.name(), record.restarts), ("ALIVE", 50));
}

#[test]
fn node_death_before_start_requeues_without_spending_the_budget() {
    let placed = step(&actor(RetryLimit::NEVER), Event::Placed { node: N1 }).record;
    let requeued = step(&placed, Event::NodeDied { node: N1 });
    assert_eq!(
        requeued.actions,
        [Action::StopOn { node: N1 }, Action::Place]
    );
    assert_eq!(requeued.record.state, ActorState::Pending);
    assert_eq!((requeued.record.node, requeued.record.restarts), (None, 0));
}

#[test]
fn a_handler_panic_restarts_in_place_within_the_budget() {
    let record = alive(RetryLimit::AtMost(1));
    let panicked = Event::HandlerPanicked {
        incarnation: 1,
        message: "boom".into(),
    };
    let restarting = step(&record, panicked.clone());
    assert_eq!(
        restarting.actions,
        [Action::StartOn {
            node: N1,
            incarnation: 2
        }]
    );
    assert_eq!(restarting.record.state, ActorState::Restarting);
    assert_eq!(restarting.record.restarts, 1);

    // A late report from the panicked instance changes nothing.
    assert_eq!(
        step(&restarting.record, panicked),
        Transition::unchanged(&restarting.record)
    );

    let again = step(
        &restarting.record,
        Event::Started {
            node: N1,
            incarnation: 2,
        },
    )
    .record;
    let gone = step(
        &again,
        Event::HandlerPanicked {
            incarnation: 2,
            message: "boom".into(),
        },
    );
    let reason = DeathReason::HandlerPanicked {
        message: "boom".into(),
        budget: 1,
    };
    assert_eq!(gone.actions, dead_actions(Some(N1), reason));
}

#[test]
fn a_panic_counts_even_when_its_start_report_was_never_seen() {
    let record = alive(RetryLimit::AtMost(1));
    let panicked = |incarnation| Event::HandlerPanicked {
        incarnation,
        message: "boom".into(),
    };
    // Restarting in place, incarnation 2 panics before its Started is read.
    let restarting = step(&record, panicked(1)).record;
    assert_eq!(restarting.state, ActorState::Restarting);
    let gone = step(&restarting, panicked(2));
    assert!(matches!(
        gone.record.state,
        ActorState::Dead {
            reason: DeathReason::HandlerPanicked { .. }
        }
    ));
    // A first incarnation that panics before its Started is read.
    let placed = step(&actor(RetryLimit::AtMost(2)), Event::Placed { node: N1 }).record;
    let again = step(&placed, panicked(1));
    assert_eq!(
        (
            again.record.state,
            again.record.incarnation,
            again.record.restarts
        ),
        (ActorState::Restarting, 2, 1)
    );
}

#[test]
fn a_failed_constructor_is_final_even_with_restarts_left() {
    let placed = step(&actor(RetryLimit::Unlimited), Event::Placed { node: N1 }).record;
    let failed = step(
        &placed,
        Event::ConstructorFailed {
            incarnation: 1,
            message: "no weights".into(),
        },
    );
    let reason = DeathReason::ConstructorFailed {
        message: "no weights".into(),
    };
    assert_eq!(failed.record.death_reason(), Some(&reason));
    assert_eq!(failed.actions, dead_actions(Some(N1), reason));
}

#[test]
fn kill_works_from_every_live_state_and_releases_the_name() {
    let mut named = actor(RetryLimit::Unlimited);
    named.name = Some(ActorName::in_default("counter").unwrap());
    let placed = step(&named, Event::Placed { node: N1 }).record;
    let running = step(
        &placed,
        Event::Started {
            node: N1,
            incarnation: 1,
        },
    )
    .record;
    let restarting = step(&running, Event::NodeDied { node: N1 }).record;
    for (record, node) in [
        (&named, None),
        (&placed, Some(N1)),
        (&running, Some(N1)),
        (&restarting, None),
    ] {
        let killed = step(record, Event::Killed);
        let mut expected = dead_actions(node, DeathReason::KilledByUser);
        expected.push(Action::ReleaseName {
            name: ActorName::in_default("counter").unwrap(),
        });
        assert_eq!(killed.actions, expected, "from {:?}", record.state);
        assert_eq!(killed.record.state.name(), "DEAD");
    }
}

#[test]
fn owned_actors_die_with_their_owner_and_detached_ones_do_not() {
    let owned = alive(RetryLimit::Unlimited);
    let t = step(&owned, Event::OwnerDied);
    let reason = DeathReason::OwnerDied { owner: OWNER };
    assert_eq!(t.actions, dead_actions(Some(N1), reason));

    let mut detached = owned.clone();
    detached.options.lifetime = Lifetime::Detached;
    assert_eq!(
        step(&detached, Event::OwnerDied),
        Transition::unchanged(&detached)
    );
}

#[test]
fn stale_foreign_and_post_mortem_events_are_ignored() {
    let record = alive(RetryLimit::AtMost(3));
    let ignored = [
        Event::NodeDied { node: N2 },
        Event::Placed { node: N2 },
        Event::Started {
            node: N1,
            incarnation: 1,
        },
        Event::Unschedulable {
            reason: "late".into(),
        },
        Event::HandlerPanicked {
            incarnation: 0,
            message: "old".into(),
        },
        Event::ConstructorFailed {
            incarnation: 1,
            message: "late".into(),
        },
    ];
    for event in ignored {
        assert_eq!(
            step(&record, event.clone()),
            Transition::unchanged(&record),
            "{event:?}"
        );
    }
    let placed = step(&actor(RetryLimit::NEVER), Event::Placed { node: N1 }).record;
    let wrong = Event::Started {
        node: N2,
        incarnation: 1,
    };
    assert_eq!(step(&placed, wrong), Transition::unchanged(&placed));

    let dead = step(&record, Event::Killed).record;
    for event in [
        Event::Killed,
        Event::Placed { node: N1 },
        Event::NodeDied { node: N1 },
    ] {
        assert_eq!(step(&dead, event), Transition::unchanged(&dead));
    }
}
