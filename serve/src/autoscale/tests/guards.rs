//! The guards against Ray Serve's autoscaling failures (ray#61731,
//! ray#18925, ray#26455, metrics lost on a controller failover), the
//! factors and the stored state.

use super::*;
use troupe_worker::schema;

#[test]
fn a_cold_start_with_a_growing_queue_does_not_run_to_max_replicas() {
    // ray#61731. From zero: 12 requests/s of 0.5 s each, 2 at once per
    // replica (4/s each): the rate needs 3 replicas. Replicas take 10 s to
    // start, so 120 requests queue before the first runs, and the queue
    // keeps growing until 3 run.
    let model = Fluid {
        service_s: 0.5,
        concurrency: 2.0,
    };
    let mut sim = Sim::new(quick(0, 20), 0, 10 * S);
    for _ in 0..600 {
        sim.tick_fluid(12.0, model);
    }
    let need = 3;
    // 0 -> 1 at once, 1 -> 2 and 2 -> 4 each once the replicas before
    // ran (capped at doubling: the queue then holds 140 and 240), then
    // the backlog drains on 4 and nothing more happens.
    assert!(sim.decisions.len() >= 2, "{:?}", sim.decisions);
    assert!(
        sim.directions().iter().all(|d| *d == Direction::Up),
        "{:?}",
        sim.decisions
    );
    let peak = sim
        .trace
        .iter()
        .map(|(_, target, _)| *target)
        .max()
        .unwrap();
    assert!(peak >= need, "{:?}", sim.decisions);
    assert!(peak <= 2 * need, "{:?}", sim.decisions);
    // No decision while a replica was starting.
    for d in &sim.decisions[1..] {
        let before = sim
            .trace
            .iter()
            .rev()
            .find(|(at, _, _)| *at < d.at_ms)
            .unwrap();
        assert_eq!(before.1, before.2, "raised while starting: {d:?}");
    }
    // The backlog is gone and the count holds.
    assert_eq!(sim.backlog, 0.0);
    assert_eq!(sim.target, peak);
}

#[test]
fn no_traffic_while_replicas_start_keeps_the_target_whatever_the_factor() {
    // The exact loop of ray#61731: min 2, max 10, upscaling_factor 2,
    // replicas scheduled but not running, no traffic.
    let policy = AutoscalingPolicy {
        upscaling_factor: 2.0,
        ..quick(2, 10)
    };
    let mut sim = Sim::new(policy, 2, 3600 * S);
    sim.running = 0;
    sim.starting = vec![u64::MAX; 2];
    for _ in 0..300 {
        sim.tick(0.0);
    }
    assert_eq!(sim.calls, 300);
    assert!(sim.decisions.is_empty(), "{:?}", sim.decisions);
}

#[test]
fn replicas_that_cannot_start_are_not_asked_for_again() {
    // No room in the cluster: the replica asked for stays pending while
    // the load stays high.
    let mut sim = Sim::new(quick(1, 10), 1, u64::MAX / 2);
    for _ in 0..600 {
        sim.tick(20.0);
    }
    assert_eq!(sim.decisions.len(), 1, "{:?}", sim.decisions);
    assert_eq!((sim.target, sim.running), (10, 1));
}

#[test]
fn a_failover_with_lost_metrics_does_not_scale_down_in_its_first_look_back_window() {
    let mut old = Sim::new(quick(1, 10), 6, S);
    for _ in 0..100 {
        old.tick(11.0);
    }
    // Idle for 25 s: the downscale condition has held for 16 of its 20 s.
    for _ in 0..25 {
        old.tick(0.0);
    }
    assert!(old.decisions.is_empty());
    assert!(old.state.down_since_ms.is_some(), "{:?}", old.state);
    // The state survives in the GCS; the metrics do not.
    let stored = schema::encode(&old.state);
    let restored: ScaleState = schema::decode(&stored).unwrap();
    assert_eq!(restored, old.state);
    let mut new = Sim::new(old.policy, 6, S);
    new.state = restored;
    new.now = old.now + 3 * S;
    let started = new.now;
    for _ in 0..120 {
        new.tick(0.0);
    }
    assert_eq!(new.directions(), [Direction::Down], "{:?}", new.decisions);
    let d = &new.decisions[0];
    assert!(
        d.at_ms >= started + new.policy.look_back_ms,
        "{}",
        d.at_ms - started
    );
    assert_eq!((d.from, d.to), (6, 1));
}

#[test]
fn a_downscale_ignores_samples_from_before_an_upscale_settled() {
    // ray#18925: right after an upscale at 100 s, low samples (the queue
    // per replica dropped) are no argument for scaling down.
    let policy = AutoscalingPolicy {
        downscale_delay_ms: 0,
        ..quick(1, 10)
    };
    let up = LastDecision {
        at_ms: 100 * S,
        direction: Direction::Up,
        from: 1,
        to: 5,
        load: 9.0,
    };
    let state = ScaleState {
        last: Some(up),
        ..ScaleState::default()
    };
    let current = Replicas {
        target: 5,
        running: 5,
    };
    let low: Vec<Sample> = (60..=140).map(|s| Sample::new(s * S, 0.5)).collect();
    // At 131 s the samples after the settle time (102 s) cover 29 s only.
    let (to, _, decision) = decide(&policy, &low, current, 131 * S, &state);
    assert_eq!((to, decision), (5, None));
    // At 133 s they cover the look-back window: now it may.
    let (to, _, decision) = decide(&policy, &low, current, 133 * S, &state);
    assert_eq!(to, 1, "{decision:?}");
}

#[test]
fn factors_scale_the_step_and_move_at_least_one_replica() {
    let steady =
        |load: f64| -> Vec<Sample> { (0..=40).map(|s| Sample::new(s * S, load)).collect() };
    let at = |policy: &AutoscalingPolicy, load: f64, target: u32| {
        let current = Replicas {
            target,
            running: target,
        };
        let state = ScaleState {
            up_since_ms: Some(0),
            down_since_ms: Some(0),
            ..ScaleState::default()
        };
        decide(policy, &steady(load), current, 40 * S, &state).0
    };
    let half = AutoscalingPolicy {
        upscaling_factor: 0.5,
        downscaling_factor: 0.5,
        ..quick(1, 20)
    };
    // Up from 2 towards 10: 2 + 0.5 * 8.
    assert_eq!(at(&half, 20.0, 2), 6);
    // Down from 10 towards 2 (3.2 ongoing / 1.6): 10 - 0.5 * 8.
    assert_eq!(at(&half, 3.2, 10), 6);
    // Down from 10 towards 3: 10 - 3.5, rounded away from 10.
    assert_eq!(at(&half, 4.8, 10), 6);
    let tiny = AutoscalingPolicy {
        upscaling_factor: 0.01,
        downscaling_factor: 0.01,
        ..quick(1, 20)
    };
    assert_eq!(at(&tiny, 20.0, 2), 3);
    assert_eq!(at(&tiny, 3.2, 10), 9);
    let double = AutoscalingPolicy {
        upscaling_factor: 2.0,
        ..quick(1, 20)
    };
    // 2 + 2 * 3, and never beyond max_replicas.
    assert_eq!(at(&double, 10.0, 2), 8);
    assert_eq!(at(&double, 30.0, 2), 20);
}

#[test]
fn an_upscale_after_an_upscale_waits_for_its_replicas_and_a_growing_load() {
    // ray#26455 and ray#61731 in one: after an upscale, the next one uses
    // only samples from when every replica ran, and not while they drain
    // a backlog.
    let policy = quick(1, 20);
    let up = LastDecision {
        at_ms: 10 * S,
        direction: Direction::Up,
        from: 1,
        to: 4,
        load: 7.0,
    };
    let state = ScaleState {
        last: Some(up),
        ..ScaleState::default()
    };
    let starting = Replicas {
        target: 4,
        running: 2,
    };
    let high: Vec<Sample> = (0..=30).map(|s| Sample::new(s * S, 40.0)).collect();
    let (to, next, _) = decide(&policy, &high, starting, 30 * S, &state);
    assert_eq!((to, next.up_since_ms, next.caught_up_ms), (4, None, None));
    // They run from 30 s: the count waits for samples after that.
    let running = Replicas {
        target: 4,
        running: 4,
    };
    let (_, next, _) = decide(&policy, &high, running, 30 * S, &state);
    assert_eq!((next.caught_up_ms, next.up_since_ms), (Some(30 * S), None));
    // A draining backlog (40, 38, 36, ...) asks for more than 4 but is
    // not followed.
    let mut state = next;
    let mut calls = 0;
    for s in 31..=40u64 {
        let draining: Vec<Sample> = (31..=s)
            .map(|t| Sample::new(t * S, 40.0 - 2.0 * (t - 31) as f64))
            .collect();
        let (to, next, decision) = decide(&policy, &draining, running, s * S, &state);
        assert_eq!((to, decision), (4, None), "at {s}");
        state = next;
        calls += 1;
    }
    assert_eq!(calls, 10);
    // A growing one is, at most doubling the target.
    let growing: Vec<Sample> = (31..=45u64)
        .map(|t| Sample::new(t * S, 40.0 + (t - 31) as f64))
        .collect();
    let mut decided = None;
    for s in 41..=45u64 {
        let (to, next, decision) = decide(&policy, &growing, running, s * S, &state);
        state = next;
        if let Some(decision) = decision {
            decided = Some((to, decision));
            break;
        }
    }
    let (to, decision) = decided.expect("an upscale");
    assert_eq!(to, 8, "{decision:?}");
    assert!(
        decision.reason.contains("at most doubling"),
        "{}",
        decision.reason
    );
}
