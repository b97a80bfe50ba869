//! The policy on simulated time: one call per simulated second, the load
//! either given directly or from a fluid queue model (arrivals, replicas
//! that take `cold_start_ms` to start, a service time and a per-replica
//! concurrency). No clock, no sleeps.

use super::*;

mod guards;

const S: u64 = 1_000;

/// A small deterministic generator for noise (xorshift).
struct Noise(u64);

impl Noise {
    /// A factor in [1 - spread, 1 + spread].
    fn factor(&mut self, spread: f64) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        1.0 - spread + 2.0 * spread * unit
    }
}

/// Ray's defaults, but short delays and 1 s reports (the benchmark's).
fn quick(min: u32, max: u32) -> AutoscalingPolicy {
    AutoscalingPolicy {
        min_replicas: min,
        max_replicas: max,
        initial_replicas: min,
        upscale_delay_ms: 2 * S,
        downscale_delay_ms: 20 * S,
        downscale_to_zero_delay_ms: 20 * S,
        metrics_interval_ms: S,
        ..AutoscalingPolicy::default()
    }
}

/// A fluid model of the deployment: requests arrive at `rate` per
/// second, each takes `service_s` on a replica, a replica runs at most
/// `concurrency` at once; what does not fit waits in `backlog`.
#[derive(Clone, Copy)]
struct Fluid {
    service_s: f64,
    concurrency: f64,
}

struct Sim {
    policy: AutoscalingPolicy,
    store: MetricsStore,
    key: DeploymentKey,
    state: ScaleState,
    now: u64,
    target: u32,
    running: u32,
    /// When each starting replica will run.
    starting: Vec<u64>,
    cold_start_ms: u64,
    backlog: f64,
    /// Every decision with the running count before it.
    decisions: Vec<Decision>,
    calls: u64,
    /// (time, target, running) after each call.
    trace: Vec<(u64, u32, u32)>,
}

impl Sim {
    fn new(policy: AutoscalingPolicy, replicas: u32, cold_start_ms: u64) -> Sim {
        Sim {
            policy,
            store: MetricsStore::new(),
            key: DeploymentKey::new("app", "model"),
            state: ScaleState::default(),
            now: 1_700_000_000_000,
            target: replicas,
            running: replicas,
            starting: Vec::new(),
            cold_start_ms,
            backlog: 0.0,
            decisions: Vec::new(),
            calls: 0,
            trace: Vec::new(),
        }
    }

    /// One second: replicas that finished starting run, `ongoing` is
    /// reported and recorded, the policy decides, the target is applied.
    fn tick(&mut self, ongoing: f64) {
        self.now += S;
        let now = self.now;
        let before = self.starting.len();
        self.starting.retain(|&at| at > now);
        self.running += (before - self.starting.len()) as u32;
        let p = &self.policy;
        self.store.report("node-1/proxy", &self.key, now, ongoing);
        self.store
            .tick(&self.key, now, p.stale_after_ms(), p.look_back_ms);
        let window = self.store.window(&self.key, now, p.look_back_ms);
        self.decide(&window);
    }

    fn decide(&mut self, window: &[Sample]) {
        let current = Replicas {
            target: self.target,
            running: self.running,
        };
        let (to, state, decision) = decide(&self.policy, window, current, self.now, &self.state);
        self.calls += 1;
        self.state = state;
        assert_eq!(decision.is_some(), to != self.target, "{decision:?}");
        if to > self.target {
            for _ in self.target..to {
                self.starting.push(self.now + self.cold_start_ms);
            }
        } else {
            for _ in to..self.target {
                // Starting replicas go first, then running ones.
                if self.starting.pop().is_none() {
                    self.running -= 1;
                }
            }
        }
        self.target = to;
        self.decisions.extend(decision);
        self.trace.push((self.now, self.target, self.running));
    }

    /// One second of the fluid model at `rate` requests per second.
    fn tick_fluid(&mut self, rate: f64, model: Fluid) {
        let running = f64::from(self.running);
        let capacity = running * model.concurrency / model.service_s;
        self.backlog = (self.backlog + rate - capacity).max(0.0);
        let in_flight = if self.backlog > 0.0 {
            running * model.concurrency
        } else {
            (rate * model.service_s).min(running * model.concurrency)
        };
        self.tick(self.backlog + in_flight);
    }

    /// [`Sim::tick_fluid`] with the router's running totals reported as
    /// well (arrivals, completions, time on replicas), as real routers do:
    /// the store derives the demand from them.
    fn tick_flows(&mut self, rate: f64, model: Fluid, flow: &mut Flow) {
        let running = f64::from(self.running);
        let capacity = running * model.concurrency / model.service_s;
        let served = (self.backlog + rate).min(capacity);
        flow.arrived += rate.round() as u64;
        flow.completed += served.round() as u64;
        flow.served_us += (served * model.service_s * 1e6).round() as u64;
        self.store
            .report_flow("node-1/proxy", &self.key, self.now + S, *flow);
        self.tick_fluid(rate, model);
    }

    /// One second with the total and the demand given directly.
    fn tick_with_demand(&mut self, ongoing: f64, demand: Option<f64>) {
        self.now += S;
        let now = self.now;
        let before = self.starting.len();
        self.starting.retain(|&at| at > now);
        self.running += (before - self.starting.len()) as u32;
        let sample = Sample {
            at_ms: now,
            ongoing,
            demand,
        };
        let look_back = self.policy.look_back_ms;
        self.store.record_sample(&self.key, sample, look_back);
        let window = self.store.window(&self.key, now, look_back);
        self.decide(&window);
    }

    fn directions(&self) -> Vec<Direction> {
        self.decisions.iter().map(|d| d.direction).collect()
    }
}

#[test]
fn a_steady_noisy_load_never_changes_the_count_for_an_hour() {
    // 6.6 ongoing ± 15% on 4 replicas, target 2: per replica 1.65 (0.825
    // of the target), each sample within [1.4, 1.9]: inside the deadband.
    for policy in [
        AutoscalingPolicy {
            max_replicas: 10,
            ..AutoscalingPolicy::default()
        },
        quick(1, 10),
    ] {
        let mut sim = Sim::new(policy, 4, 5 * S);
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3600 {
            sim.tick(6.6 * noise.factor(0.15));
        }
        assert_eq!(sim.calls, 3600);
        assert!(sim.decisions.is_empty(), "{:?}", sim.decisions);
        assert_eq!(sim.target, 4);
    }
}

#[test]
fn any_steady_load_inside_the_deadband_keeps_the_count() {
    let mut checked = 0;
    for replicas in 1..=6u32 {
        for tenth in 0..=10 {
            // Per replica from 0.8 to 1.0 times the target (2), excluded
            // ends rounded in.
            let per_replica = 2.0 * (0.801 + 0.199 * f64::from(tenth) / 10.0);
            let mut sim = Sim::new(quick(1, 10), replicas, 0);
            for _ in 0..300 {
                sim.tick(per_replica * f64::from(replicas));
            }
            assert!(
                sim.decisions.is_empty(),
                "{replicas} at {per_replica}: {:?}",
                sim.decisions
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 66);
}

#[test]
fn a_step_scales_once_to_the_need_and_then_holds() {
    // ray#26455: delays (2 s) shorter than the look-back window (30 s)
    // must not thrash on a step.
    let mut sim = Sim::new(quick(1, 10), 1, 3 * S);
    for _ in 0..60 {
        sim.tick(1.5);
    }
    assert!(sim.decisions.is_empty());
    let step_at = sim.now;
    for _ in 0..1200 {
        sim.tick(9.4);
    }
    assert_eq!(sim.directions(), [Direction::Up], "{:?}", sim.decisions);
    let d = &sim.decisions[0];
    assert_eq!((d.from, d.to), (1, 5));
    // The condition held at the calls of step_at+1, +2, +3 s.
    assert_eq!(d.at_ms, step_at + 3 * S);
    assert_eq!(
        d.reason,
        "at least 9.4 ongoing requests throughout 2 s, target 2 per replica: 5 replicas"
    );
    assert_eq!((sim.target, sim.running), (5, 5));
}

#[test]
fn a_step_on_saturated_replicas_reaches_enough_and_does_not_oscillate() {
    // ray#18925: after the scale-up the queue per replica drops; the
    // total does not, so nothing scales back down. Fluid model: 50 ms
    // requests, 5 at once per replica (100/s), 10 -> 120 requests/s.
    let model = Fluid {
        service_s: 0.05,
        concurrency: 5.0,
    };
    let mut sim = Sim::new(quick(1, 8), 1, S);
    for _ in 0..60 {
        sim.tick_fluid(10.0, model);
    }
    assert!(sim.decisions.is_empty());
    let step_at = sim.now;
    for _ in 0..1800 {
        sim.tick_fluid(120.0, model);
    }
    assert!(!sim.decisions.is_empty());
    // Enough replicas (2 carry 120/s) run within the delay + start + 1 s.
    let enough = sim
        .trace
        .iter()
        .find(|(_, _, running)| *running >= 2)
        .unwrap()
        .0;
    assert!(
        enough <= step_at + 2 * S + S + 2 * S,
        "{}",
        enough - step_at
    );
    // At most one correction, no oscillation, and then steady: the last
    // 20 minutes see no decision.
    assert!(sim.decisions.len() <= 2, "{:?}", sim.decisions);
    let last = sim.decisions.last().unwrap().at_ms;
    assert!(last < step_at + 600 * S, "{:?}", sim.decisions);
    // Steady state: 6 ongoing, at most 2 per replica, in the deadband.
    assert!((3..=4).contains(&sim.target), "{:?}", sim.decisions);
}

#[test]
fn a_burst_shorter_than_the_upscale_delay_does_not_scale() {
    for (policy, burst_s) in [
        (quick(1, 10), 2),
        (
            AutoscalingPolicy {
                max_replicas: 10,
                ..Default::default()
            },
            29,
        ),
    ] {
        let mut sim = Sim::new(policy, 2, S);
        let mut calls = 0;
        for round in 0..20 {
            for _ in 0..burst_s {
                sim.tick(50.0);
                calls += 1;
            }
            for _ in 0..(60 + round) {
                sim.tick(3.0);
                calls += 1;
            }
        }
        assert!(calls > 1000);
        assert!(sim.decisions.is_empty(), "{:?}", sim.decisions);
    }
}

#[test]
fn a_ramp_only_scales_up_and_ends_at_the_need() {
    let mut sim = Sim::new(quick(1, 10), 1, 2 * S);
    // 1 to 14 ongoing over ten minutes, then flat.
    for i in 0..600 {
        sim.tick(1.0 + 13.0 * f64::from(i) / 600.0);
    }
    for _ in 0..600 {
        sim.tick(14.0);
    }
    assert!(sim.decisions.len() >= 3, "{:?}", sim.decisions);
    assert!(sim.directions().iter().all(|d| *d == Direction::Up));
    assert_eq!(sim.target, 7);
}

#[test]
fn idle_goes_to_min_replicas_after_the_delay_and_the_look_back() {
    let mut sim = Sim::new(quick(2, 10), 6, S);
    for _ in 0..100 {
        sim.tick(11.0);
    }
    let idle_at = sim.now;
    for _ in 0..200 {
        sim.tick(0.0);
    }
    assert_eq!(sim.directions(), [Direction::Down], "{:?}", sim.decisions);
    let d = &sim.decisions[0];
    assert_eq!((d.from, d.to), (6, 2));
    // The look-back mean asks for fewer once 9 of its 31 samples are
    // idle; that held for the 20 s delay.
    assert_eq!(d.at_ms, idle_at + 29 * S);
    assert_eq!(
        d.reason,
        "average 0.7 ongoing requests over 30 s, target 2 per replica (downscale below 1.6 per replica): 2 replicas"
    );
}

#[test]
fn idle_goes_to_zero_through_one_and_a_request_at_zero_starts_one_at_once() {
    let policy = AutoscalingPolicy {
        downscale_to_zero_delay_ms: 60 * S,
        ..quick(0, 10)
    };
    let mut sim = Sim::new(policy, 4, S);
    for _ in 0..60 {
        sim.tick(7.0);
    }
    // A little load keeps one replica: zero needs exactly zero.
    for _ in 0..200 {
        sim.tick(0.2);
    }
    assert_eq!(sim.target, 1, "{:?}", sim.decisions);
    for _ in 0..200 {
        sim.tick(0.0);
    }
    let tos: Vec<u32> = sim.decisions.iter().map(|d| d.to).collect();
    assert_eq!(tos, [1, 0], "{:?}", sim.decisions);
    let zero = &sim.decisions[1];
    let since_one = zero.at_ms - sim.decisions[0].at_ms;
    assert!(since_one >= 60 * S, "{since_one}");
    assert!(
        zero.reason.starts_with("no ongoing requests for"),
        "{}",
        zero.reason
    );
    // Idle at zero: nothing.
    for _ in 0..100 {
        sim.tick(0.0);
    }
    assert_eq!(sim.decisions.len(), 2);
    let request_at = sim.now + S;
    sim.tick(1.0);
    let up = sim.decisions.last().unwrap();
    assert_eq!((up.from, up.to, up.at_ms), (0, 1, request_at));
    assert_eq!(
        up.reason,
        "1 ongoing requests at zero replicas: starting 1 at once"
    );
}

#[test]
fn from_zero_starts_min_replicas_when_above_one() {
    // min 0 but the target is 0 and min changes to 3: the bound applies.
    let mut sim = Sim::new(quick(0, 10), 0, S);
    sim.tick(0.0);
    assert!(sim.decisions.is_empty());
    sim.policy.min_replicas = 3;
    sim.tick(0.0);
    assert_eq!(sim.decisions[0].reason, "min_replicas is 3");
    sim.policy.max_replicas = 2;
    sim.policy.min_replicas = 0;
    sim.tick(0.0);
    assert_eq!(sim.decisions[1].reason, "max_replicas is 2");
    assert_eq!(sim.target, 2);
}

/// The benchmark's policy (BENCHMARKS.md, autoscaling vs Ray Serve):
/// 10 s look-back.
fn benchmarked(min: u32) -> AutoscalingPolicy {
    AutoscalingPolicy {
        look_back_ms: 10 * S,
        ..quick(min, 8)
    }
}

#[test]
fn after_a_start_from_zero_the_next_upscale_does_not_wait_for_the_backlog_to_leave_the_window() {
    // Found by the benchmark: a burst from zero went 0 -> 1 at once, then
    // 1 -> 2 only 13 s later, when the cold start's backlog sample left
    // the 10 s window (the whole window's halves said "draining").
    let mut sim = Sim::new(benchmarked(0), 0, 200);
    sim.tick(11.0);
    assert_eq!(sim.target, 1, "{:?}", sim.decisions);
    let started = sim.now;
    // The replica runs, drains the backlog, then 3.2 ongoing hold (the
    // burst needs 2 replicas at target 2).
    for load in [6.0, 3.3] {
        sim.tick(load);
    }
    for _ in 0..10 {
        sim.tick(3.2);
        if sim.target == 2 {
            break;
        }
    }
    let up = sim.decisions.last().unwrap();
    assert_eq!((up.from, up.to), (1, 2), "{:?}", sim.decisions);
    // Within the upscale delay and a few reports of the replica running,
    // well before the 10 s look-back window passes.
    assert!(up.at_ms - started <= 5 * S, "{:?}", sim.decisions);
}

#[test]
fn idle_reaches_zero_one_zero_delay_after_reaching_one() {
    // Found by the benchmark: 2 -> 1 and then 1 -> 0 a whole look-back
    // window later than the zero delay asks (a fresh window after the
    // downscale to one). Zero load does not depend on the count.
    let mut sim = Sim::new(benchmarked(0), 2, S);
    for _ in 0..120 {
        sim.tick(0.0);
    }
    let tos: Vec<u32> = sim.decisions.iter().map(|d| d.to).collect();
    assert_eq!(tos, [1, 0], "{:?}", sim.decisions);
    let gap = sim.decisions[1].at_ms - sim.decisions[0].at_ms;
    let zero_delay = sim.policy.downscale_to_zero_delay_ms;
    assert!(gap >= zero_delay, "{gap}");
    assert!(gap <= zero_delay + 2 * S, "{gap}: {:?}", sim.decisions);
}

/// The benchmark's deployment: 53 ms per request (a 50 ms sleep, timer
/// and transport), at most 5 at once per replica.
const SLEEPY: Fluid = Fluid {
    service_s: 0.053,
    concurrency: 5.0,
};

#[test]
fn a_step_on_a_saturated_replica_is_sized_by_the_demand_in_one_decision() {
    // Found by the benchmark: 10 -> 120 requests/s on one replica (94/s
    // at most) first went to 3, 5 or 7 replicas (the least load over the
    // delay was the router's growing queue), then corrected to 4 inside
    // the steady phase. With the routers' arrivals and service time the
    // demand is 120 x 0.053 = 6.4 ongoing requests: 4 replicas, once.
    let mut sim = Sim::new(benchmarked(1), 1, 300);
    let mut flow = Flow::default();
    for _ in 0..30 {
        sim.tick_flows(10.0, SLEEPY, &mut flow);
    }
    assert!(sim.decisions.is_empty(), "{:?}", sim.decisions);
    let step_at = sim.now;
    for _ in 0..600 {
        sim.tick_flows(120.0, SLEEPY, &mut flow);
    }
    assert_eq!(sim.decisions.len(), 1, "{:?}", sim.decisions);
    let d = &sim.decisions[0];
    assert_eq!((d.from, d.to), (1, 4), "{d:?}");
    assert!(
        d.reason.starts_with("a demand of 6.4 ongoing requests"),
        "{}",
        d.reason
    );
    // Within the upscale delay and the first reports (simulated time).
    assert!(d.at_ms - step_at <= 4 * S, "{d:?}");
    assert_eq!((sim.target, sim.running), (4, 4));
    assert_eq!(flow.arrived, 30 * 10 + 600 * 120);
}

#[test]
fn a_backlog_after_a_scale_up_does_not_raise_a_target_the_demand_fits() {
    // A replica that takes 5 s to start: at 120/s the queue grows by ~26
    // a second meanwhile. The ongoing count says 20+ replicas; the demand
    // says 4, and nothing more is asked for while the backlog drains.
    let mut sim = Sim::new(benchmarked(1), 1, 5 * S);
    let mut flow = Flow::default();
    for _ in 0..30 {
        sim.tick_flows(10.0, SLEEPY, &mut flow);
    }
    for _ in 0..300 {
        sim.tick_flows(120.0, SLEEPY, &mut flow);
    }
    let tos: Vec<u32> = sim.decisions.iter().map(|d| d.to).collect();
    assert_eq!(tos, [4], "{:?}", sim.decisions);
    assert!(sim.backlog < 1.0, "{}", sim.backlog);
}

#[test]
fn a_burst_from_zero_starts_what_the_remembered_service_time_asks_for() {
    // The service time measured before going to zero sizes the start
    // from zero: 60/s x 0.053 = 3.2 ongoing, 2 replicas at target 2.
    let mut sim = Sim::new(benchmarked(0), 1, 200);
    let mut flow = Flow::default();
    for _ in 0..30 {
        sim.tick_flows(10.0, SLEEPY, &mut flow);
    }
    let mut idle = 0;
    while sim.target > 0 {
        sim.tick_flows(0.0, SLEEPY, &mut flow);
        idle += 1;
        assert!(idle < 120, "{:?}", sim.decisions);
    }
    let burst_at = sim.now;
    for _ in 0..30 {
        sim.tick_flows(60.0, SLEEPY, &mut flow);
    }
    let ups: Vec<(u32, u32)> = sim
        .decisions
        .iter()
        .filter(|d| d.at_ms > burst_at)
        .map(|d| (d.from, d.to))
        .collect();
    assert_eq!(ups, [(0, 2)], "{:?}", sim.decisions);
    assert_eq!(sim.running, 2);
}

#[test]
fn a_start_from_zero_may_grow_while_its_replica_starts_only_on_a_known_demand() {
    // 0 -> 1 on one waiting request; the replica takes 5 s to start while
    // 60/s arrive (a demand of 3.2: 2 replicas). With the demand known the
    // second replica is asked for one upscale delay after the start, not
    // after the first replica runs; without it nothing is asked for while
    // the start-up's queue grows (ray#61731).
    for demand in [Some(3.2), None] {
        let mut sim = Sim::new(benchmarked(0), 0, 5 * S);
        sim.tick_with_demand(1.0, None);
        assert_eq!(sim.target, 1);
        let started = sim.now;
        let mut queue = 1.0;
        for _ in 0..4 {
            queue += 60.0;
            sim.tick_with_demand(queue, demand);
        }
        assert_eq!(sim.running, 0, "the first replica is still starting");
        match demand {
            Some(_) => {
                let up = sim.decisions.last().unwrap();
                assert_eq!((up.from, up.to), (1, 2), "{:?}", sim.decisions);
                assert!(up.at_ms - started <= 3 * S, "{:?}", sim.decisions);
            }
            None => assert_eq!(sim.decisions.len(), 1, "{:?}", sim.decisions),
        }
        // And no further growth on the queue while they start.
        for _ in 0..3 {
            queue += 60.0;
            sim.tick_with_demand(queue, demand);
        }
        assert!(sim.target <= 2, "{:?}", sim.decisions);
    }
}

#[test]
fn a_start_from_zero_whose_replica_runs_during_the_delay_keeps_its_timer() {
    // Found by the benchmark: the first replica ran 0.3 s after 0 -> 1,
    // the samples switched to "after it ran", the first call after that had
    // none, and the upscale timer started over: the second replica came a
    // delay after the first ran. With a demand, the timer runs on.
    let mut sim = Sim::new(benchmarked(0), 0, S);
    sim.tick_with_demand(1.0, None);
    let started = sim.now;
    let mut queue = 1.0;
    for _ in 0..3 {
        queue = (queue + 60.0 - 94.0 * f64::from(sim.running)).max(3.2);
        sim.tick_with_demand(queue, Some(3.2));
    }
    let up = sim.decisions.last().unwrap();
    assert_eq!((up.from, up.to), (1, 2), "{:?}", sim.decisions);
    assert!(up.at_ms - started <= 3 * S, "{:?}", sim.decisions);
}
