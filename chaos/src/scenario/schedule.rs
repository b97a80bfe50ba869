//! The fault timeline: a scenario and a seed → planned faults. Pure: the
//! same scenario and seed always give the same timeline (times, kinds,
//! targets, picks and offsets), so a failing run can be replayed.
//!
//! Every draw comes from one generator seeded with the seed, in a fixed
//! order: the explicit timeline's faults first (each its `pick`, then its
//! offsets), then the random part, fault after fault (the gap, the choice,
//! the `pick`, the offsets). Times are whole milliseconds.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{FaultSpec, RandomFaults, Scenario, TargetRole};

/// The schedule's generator: ChaCha8, whose output is fixed across
/// versions (`StdRng`'s algorithm may change in a new `rand`, which would
/// change every seed's timeline).
type ScheduleRng = rand_chacha::ChaCha8Rng;

/// A fault planned at a time, with the seeded choices its injection needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedFault {
    /// When, ms after the load started.
    pub at_ms: u64,
    /// What.
    pub spec: FaultSpec,
    /// Per target, its injection's offset from `at_ms` (within the
    /// target's `within_ms`), ms; one entry per target.
    pub offsets_ms: Vec<u64>,
    /// A seeded number choosing among the candidate nodes when the fault
    /// is injected (candidate `pick % candidates`, then the next ones).
    pub pick: u64,
}

/// The faults of `scenario` under `seed`, in time order (faults at the
/// same ms keep the timeline's order, then the random part's).
///
/// The random part: from `from_s`, a gap drawn uniformly from `every_s`,
/// then a fault drawn uniformly from `choices` (unless the time is past
/// `until_s`, which ends it); the next gap counts from that fault's heal.
/// A random part that parsing would refuse (no choices, a gap that is
/// not positive) plans nothing.
pub fn timeline(scenario: &Scenario, seed: u64) -> Vec<PlannedFault> {
    let mut rng = ScheduleRng::seed_from_u64(seed);
    let mut planned: Vec<PlannedFault> = scenario
        .faults
        .timeline
        .iter()
        .map(|timed| plan(&mut rng, scenario, to_ms(timed.at_s), &timed.fault))
        .collect();
    if let Some(random) = &scenario.faults.random {
        plan_random(&mut rng, scenario, random, &mut planned);
    }
    planned.sort_by_key(|p| p.at_ms);
    planned
}

fn plan_random(
    rng: &mut ScheduleRng,
    scenario: &Scenario,
    random: &RandomFaults,
    out: &mut Vec<PlannedFault>,
) {
    let (min, max) = random.every_s;
    let valid = min > 0.0 && min <= max && max.is_finite() && random.until_s.is_finite();
    if !valid || random.choices.is_empty() {
        return;
    }
    // At least 1 ms, so the loop always ends.
    let (min_ms, max_ms) = (to_ms(min).max(1), to_ms(max).max(1));
    let until_ms = to_ms(random.until_s);
    let mut t = to_ms(random.from_s);
    loop {
        t = t.saturating_add(rng.random_range(min_ms..=max_ms));
        if t > until_ms {
            return;
        }
        let choice = &random.choices[rng.random_range(0..random.choices.len())];
        out.push(plan(rng, scenario, t, choice));
        t = t.saturating_add(choice.heal_after_s.map_or(0, to_ms));
    }
}

/// `spec` at `at_ms`, with its pick and one offset per target.
fn plan(rng: &mut ScheduleRng, scenario: &Scenario, at_ms: u64, spec: &FaultSpec) -> PlannedFault {
    let pick = rng.random::<u64>();
    let targets = match spec.target.role {
        TargetRole::GcsMajority => scenario.cluster.gcs_members / 2 + 1,
        _ => spec.target.count.max(1),
    };
    let within = spec.target.within_ms;
    let mut offsets_ms: Vec<u64> = std::iter::once(0)
        .chain((1..targets).map(|_| rng.random_range(0..=within)))
        .collect();
    offsets_ms.sort_unstable();
    PlannedFault {
        at_ms,
        spec: spec.clone(),
        offsets_ms,
        pick,
    }
}

/// Seconds → whole ms (negative and NaN → 0).
fn to_ms(seconds: f64) -> u64 {
    (seconds * 1000.0).round().max(0.0) as u64
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
