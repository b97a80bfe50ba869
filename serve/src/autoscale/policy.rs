//! The decision: [`decide`] turns a deployment's effective
//! [`AutoscalingPolicy`], its look-back samples, its counts, the time and
//! the carried [`ScaleState`] into a new target. Pure.
//!
//! Which samples each direction may use (every rule below names the Ray
//! Serve issue it exists for):
//!
//! - Upscale, after an upscale: only samples taken after every replica
//!   that upscale asked for was first seen running (ray#26455, ray#61731).
//! - Upscale, after a downscale: samples taken a settle time
//!   ([`AutoscalingPolicy::settle_ms`], two metrics intervals: by then
//!   every live router has reported since the decision) after it.
//! - Downscale, after a downscale: samples taken after it (ray#26455).
//! - Downscale, after an upscale: samples taken a settle time after it
//!   (ray#18925: the load right after a scale-up says nothing about the
//!   count it asked for). Not "after the replicas run": the decision is
//!   on the total load, which adding replicas does not lower, and a
//!   replica that never starts (no room in the cluster) must not forbid
//!   scaling down.
//!
//! And the guards:
//!
//! - No upscale while `running < target` (ray#61731): the replicas asked
//!   for are starting (or cannot be placed); the queue that grows
//!   meanwhile is the start-up's backlog. Raising the target on it is the
//!   feedback loop that reached `max_replicas` in Ray. Growth of the
//!   demand during a start-up is acted on once the replicas run.
//! - After an upscale's replicas run, and until the load first fits the
//!   target, a further upscale needs the load to not be draining (the mean of the newer half of the samples since
//!   then is not below the older half's: a backlog that drains says the
//!   count suffices), and at most doubles the target (the backlog still
//!   inflates the load; doubling reaches any need in a few steps without
//!   jumping to `max_replicas` on a backlog).
//! - A downscale needs eligible samples that cover the whole look-back
//!   window (no downscale after a controller failover before the new
//!   controller has a look-back window of its own samples; no downscale
//!   on a few samples after a decision when the delay is shorter than the
//!   look-back window, ray#26455).
//! - A condition is judged at every call; one that stops holding resets
//!   its timer. A call with no eligible data leaves the upscale timer as
//!   it is only if it had none; it resets the downscale timers (a
//!   downscale is never argued from missing data).

use serde::{Deserialize, Serialize};

use super::state::{Decision, Direction, LastDecision, Replicas, ScaleState};
use super::window::{mean, Sample};

/// The downscale deadband: a downscale counts `target_ongoing_requests ·
/// 0.8` per replica, an upscale the full target. A steady load whose
/// per-replica average lies between the two moves nothing, so noise
/// around a count never flips it back and forth.
pub const DOWNSCALE_DEADBAND: f64 = 0.8;

/// A deployment's `autoscaling_config` with Ray Serve's defaults applied
/// (what [`crate::config::AutoscalingConfig::policy`] gives): plain
/// numbers, times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AutoscalingPolicy {
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// The count a new deployment starts with (`initial_replicas`, else
    /// `min_replicas`).
    pub initial_replicas: u32,
    /// Ongoing requests (queued plus in flight) per replica to aim for.
    pub target_ongoing_requests: f64,
    pub upscale_delay_ms: u64,
    pub downscale_delay_ms: u64,
    /// For 1 → 0 (`downscale_to_zero_delay_s`, else `downscale_delay_s`).
    pub downscale_to_zero_delay_ms: u64,
    /// `look_back_period_s`: the window a downscale averages over.
    pub look_back_ms: u64,
    /// How often routers report (`metrics_interval_s`).
    pub metrics_interval_ms: u64,
    /// Gain on an upscale step (1: go to the desired count).
    pub upscaling_factor: f64,
    /// Gain on a downscale step.
    pub downscaling_factor: f64,
}

impl Default for AutoscalingPolicy {
    /// Ray Serve's defaults.
    fn default() -> Self {
        AutoscalingPolicy {
            min_replicas: 1,
            max_replicas: 1,
            initial_replicas: 1,
            target_ongoing_requests: 2.0,
            upscale_delay_ms: 30_000,
            downscale_delay_ms: 600_000,
            downscale_to_zero_delay_ms: 600_000,
            look_back_ms: 30_000,
            metrics_interval_ms: 10_000,
            upscaling_factor: 1.0,
            downscaling_factor: 1.0,
        }
    }
}

impl AutoscalingPolicy {
    /// A reporter silent for longer than this is left out of the total:
    /// two metrics intervals.
    pub fn stale_after_ms(&self) -> u64 {
        self.metrics_interval_ms.saturating_mul(2)
    }

    /// How long after a decision the opposite direction ignores samples:
    /// two metrics intervals, by when every live router has reported what
    /// it saw after the decision.
    pub fn settle_ms(&self) -> u64 {
        self.metrics_interval_ms.saturating_mul(2)
    }
}

/// The decision of one tick for one deployment: the new target (equal to
/// `current.target` when nothing changes), the state to carry to the next
/// call (and to store), and the decision taken, if any.
///
/// `window` is the deployment's samples over the look-back window, oldest
/// first ([`super::MetricsStore::window`]); samples after `now_ms` are
/// ignored. `current.running` counts replicas that take requests.
pub fn decide(
    policy: &AutoscalingPolicy,
    window: &[Sample],
    current: Replicas,
    now_ms: u64,
    state: &ScaleState,
) -> (u32, ScaleState, Option<Decision>) {
    let mut next = state.clone();
    let target = current.target;
    let window: Vec<Sample> = window
        .iter()
        .filter(|s| s.at_ms <= now_ms)
        .copied()
        .collect();
    if let Some(last) = state.last {
        if last.direction == Direction::Up
            && next.caught_up_ms.is_none()
            && current.running >= target
        {
            next.caught_up_ms = Some(now_ms);
        }
    }
    let (lo, hi) = (
        policy.min_replicas,
        policy.max_replicas.max(policy.min_replicas),
    );
    let t = policy.target_ongoing_requests;
    if let Some(caught_up) = next.caught_up_ms {
        let newest = after(&window, Some(caught_up)).last().copied();
        if newest.is_some_and(|s| s.ongoing <= f64::from(target) * t) {
            next.fit_after_upscale = true;
        }
    }
    let decided = |next: ScaleState, to: u32, load: f64, reason: String| {
        decision(next, target, to, now_ms, load, reason)
    };

    // The bounds changed under the current target.
    if target < lo || target > hi {
        let to = target.clamp(lo, hi);
        let which = if to == lo {
            "min_replicas"
        } else {
            "max_replicas"
        };
        return decided(next, to, f64::NAN, format!("{which} is {to}"));
    }

    // From zero: a request is waiting, no delay.
    if target == 0 {
        let cut = state.last.map(|l| l.at_ms);
        let newest = after(&window, cut).last().copied();
        return match newest.filter(|s| s.ongoing > 0.0) {
            Some(s) => {
                // With a known demand (a service time measured before the
                // deployment went to zero), as many as it asks for; else
                // one: the queue at zero is no measure of the need.
                let sized = s.demand.map_or(1, |_| count(s.sizing_load() / t));
                let to = lo.max(1).max(sized).min(hi);
                let reason = format!(
                    "{} ongoing requests at zero replicas: starting {to} at once",
                    number(s.ongoing)
                );
                decided(next, to, s.ongoing, reason)
            }
            None => {
                next.up_since_ms = None;
                next.down_since_ms = None;
                next.zero_since_ms = None;
                (0, next, None)
            }
        };
    }

    // Upscale.
    match upscale(policy, &window, current, &next) {
        Upscale::Frozen | Upscale::No => next.up_since_ms = None,
        Upscale::Wants => {
            let since = *next.up_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) >= policy.upscale_delay_ms {
                let (to, load, reason) = upscale_to(policy, &window, current, now_ms, &next, since);
                if to > target {
                    return decided(next, to, load, reason);
                }
            }
            next.down_since_ms = None;
            next.zero_since_ms = None;
            return (target, next, None);
        }
    }

    // Downscale.
    let cut = match state.last {
        None => None,
        // Idle before and after a downscale to one: zero load does not
        // depend on the count, so the 1 -> 0 rule may use the samples
        // from before it (no second look-back window to wait for).
        Some(l) if l.direction == Direction::Down && l.load == 0.0 && target == 1 => None,
        Some(l) if l.direction == Direction::Down => Some(l.at_ms),
        Some(l) => Some(l.at_ms.saturating_add(policy.settle_ms())),
    };
    let eligible = after(&window, cut);
    let covered = eligible
        .first()
        .is_some_and(|s| s.at_ms <= now_ms.saturating_sub(policy.look_back_ms));
    let level = mean(&eligible).filter(|_| covered);
    let Some(level) = level else {
        next.down_since_ms = None;
        next.zero_since_ms = None;
        return (target, next, None);
    };
    let span = now_ms - eligible[0].at_ms;
    let floor = t * DOWNSCALE_DEADBAND;
    let wanted = count(level / floor).clamp(lo, hi);
    if wanted == 0 && target == 1 {
        // 1 -> 0: every eligible sample is zero (the mean is).
        next.down_since_ms = None;
        let since = *next.zero_since_ms.get_or_insert(now_ms);
        if now_ms.saturating_sub(since) >= policy.downscale_to_zero_delay_ms {
            let reason = format!(
                "no ongoing requests for {} s: scaling to zero",
                seconds(now_ms - since.min(eligible[0].at_ms))
            );
            return decided(next, 0, 0.0, reason);
        }
        return (target, next, None);
    }
    next.zero_since_ms = None;
    // Above one replica, zero is reached through one (the 1 -> 0 rule).
    let wanted = wanted.max(1);
    if wanted >= target {
        next.down_since_ms = None;
        return (target, next, None);
    }
    let since = *next.down_since_ms.get_or_insert(now_ms);
    if now_ms.saturating_sub(since) < policy.downscale_delay_ms {
        return (target, next, None);
    }
    let step = policy.downscaling_factor * f64::from(target - wanted);
    let stepped = (f64::from(target) - step).floor();
    let to = (stepped.max(0.0) as u32)
        .min(target - 1)
        .clamp(lo.max(1), hi);
    let mut reason = format!(
        "average {} ongoing requests over {} s, target {} per replica (downscale below {} per replica): {wanted} replicas",
        number(level),
        seconds(span),
        number(t),
        number(floor),
    );
    if to != wanted {
        reason.push_str(&format!(
            " (downscaling_factor {}: {to})",
            number(policy.downscaling_factor)
        ));
    }
    decided(next, to, level, reason)
}

enum Upscale {
    /// Replicas are starting (or the last upscale's have not all run yet).
    Frozen,
    No,
    Wants,
}

/// The samples after `cut` (all with no cut).
fn after(window: &[Sample], cut: Option<u64>) -> Vec<Sample> {
    window
        .iter()
        .filter(|s| cut.is_none_or(|c| s.at_ms > c))
        .copied()
        .collect()
}

/// Where an upscale's samples start: see the module doc. `None` inside
/// `Some`: frozen (replicas are starting, or the last upscale's have not
/// all run yet).
fn upscale_cut(
    policy: &AutoscalingPolicy,
    state: &ScaleState,
    current: Replicas,
) -> Option<Option<u64>> {
    let starting = current.running < current.target;
    match state.last {
        None => (!starting).then_some(None),
        Some(l) if l.direction == Direction::Up => {
            state.caught_up_ms.filter(|_| !starting).map(Some)
        }
        Some(l) => (!starting).then_some(Some(l.at_ms.saturating_add(policy.settle_ms()))),
    }
}

/// Whether the last decision was a start from zero, and nothing since.
/// That start was sized on one waiting request.
fn sized_blind(state: &ScaleState, current: Replicas) -> bool {
    state
        .last
        .is_some_and(|l| l.direction == Direction::Up && l.from == 0 && l.to == current.target)
}

/// The samples an upscale may use, and whether they are those after a
/// start from zero ([`sized_blind`]); `None` when frozen. After a start
/// from zero the samples since it count, even while its replica starts,
/// as long as the newest has a known demand to size on (which, unlike the
/// start-up's queue, cannot feed back into itself: ray#61731): a burst
/// from zero gets its second replica one upscale delay after it began, not
/// one delay after the first replica ran. Otherwise [`upscale_cut`].
fn upscale_samples(
    policy: &AutoscalingPolicy,
    window: &[Sample],
    state: &ScaleState,
    current: Replicas,
) -> Option<(Vec<Sample>, bool)> {
    if let Some(last) = state.last.filter(|_| sized_blind(state, current)) {
        let eligible = after(window, Some(last.at_ms));
        if eligible.last().is_some_and(|s| s.demand.is_some()) {
            return Some((eligible, true));
        }
    }
    let cut = upscale_cut(policy, state, current)?;
    Some((after(window, cut), false))
}

/// Whether this call wants more replicas: the newest eligible sample (the
/// latest report of every router) asks for more than the target, no
/// replica is starting, and (when the sample has no demand to size on)
/// no backlog is draining after the last upscale. One sample, so that the
/// condition stops holding as soon as a burst ends; the delay (every call
/// in it wanted more) is the smoothing. The condition is on the ongoing
/// count, which shows saturation at once; the count is then sized on the
/// demand ([`upscale_to`]), which decides nothing when it fits.
fn upscale(
    policy: &AutoscalingPolicy,
    window: &[Sample],
    current: Replicas,
    state: &ScaleState,
) -> Upscale {
    if current.target >= policy.max_replicas {
        return Upscale::Frozen;
    }
    let Some((eligible, _)) = upscale_samples(policy, window, state, current) else {
        return Upscale::Frozen;
    };
    let Some(newest) = eligible.last() else {
        return Upscale::No;
    };
    let wanted = count(newest.ongoing / policy.target_ongoing_requests);
    if wanted <= current.target {
        return Upscale::No;
    }
    let by = policy.target_ongoing_requests / 2.0;
    // A known demand leaves the backlog out already.
    let backlog_counts = newest.demand.is_none();
    if backlog_counts && following_upscale(state) && draining(&eligible, recent_span(policy), by) {
        return Upscale::No;
    }
    Upscale::Wants
}

/// Whether the last decision is an upscale whose replicas run but whose
/// load has not fit the target since: its backlog may still inflate the
/// load.
fn following_upscale(state: &ScaleState) -> bool {
    let last_up = state.last.is_some_and(|l| l.direction == Direction::Up);
    last_up && state.caught_up_ms.is_some() && !state.fit_after_upscale
}

/// How far back [`draining`] looks: the upscale delay, and at least two
/// metrics intervals (one before, one after its midpoint).
fn recent_span(policy: &AutoscalingPolicy) -> u64 {
    policy
        .upscale_delay_ms
        .max(policy.metrics_interval_ms.saturating_mul(2))
}

/// Whether the load is falling now: over the last `span` ms of
/// `samples`, the newer half averages at least `by` below the older half
/// (half a replica's target: a load settling a little once its backlog is
/// gone is not a backlog, a queue shrinking by a few requests a second
/// is). Only recent samples count: a backlog that has already drained
/// (the cold start's, a whole look-back window ago) says nothing about
/// now.
fn draining(samples: &[Sample], span: u64, by: f64) -> bool {
    let Some(newest) = samples.last() else {
        return false;
    };
    let start = newest.at_ms.saturating_sub(span);
    let middle = newest.at_ms.saturating_sub(span / 2);
    let recent: Vec<Sample> = samples
        .iter()
        .filter(|s| s.at_ms > start)
        .copied()
        .collect();
    let (older, newer): (Vec<Sample>, Vec<Sample>) = recent.iter().partition(|s| s.at_ms <= middle);
    match (mean(&older), mean(&newer)) {
        (Some(o), Some(n)) => o - n >= by,
        _ => false,
    }
}

/// The target an upscale goes to: on the newest sample's demand when it
/// is known (it leaves any queue out), else on the load sustained over the
/// span its condition held (from `since`): the least of those samples, so
/// that a queue growing during the delay (replicas saturated) does not
/// inflate the count, and noise errs on the side a later upscale can
/// correct. Then the factor and the doubling cap.
fn upscale_to(
    policy: &AutoscalingPolicy,
    window: &[Sample],
    current: Replicas,
    now_ms: u64,
    state: &ScaleState,
    since: u64,
) -> (u32, f64, String) {
    let target = current.target;
    let (eligible, blind) = upscale_samples(policy, window, state, current).unwrap_or_default();
    let held: Vec<Sample> = eligible
        .iter()
        .filter(|s| s.at_ms >= since)
        .copied()
        .collect();
    let used = if held.is_empty() {
        eligible.last().map(|s| vec![*s]).unwrap_or_default()
    } else {
        held
    };
    let span = used.first().map_or(0, |s| now_ms - s.at_ms);
    let newest = used.last().copied();
    let (level, measure) = match newest.and_then(|s| s.demand.map(|_| s.sizing_load())) {
        // The demand leaves the backlog out: the newest is the best
        // measure of the need (the delay, over which the condition held
        // at every call, was the smoothing).
        Some(demand) => (demand, Measure::Demand),
        None => {
            let least = used.iter().map(|s| s.ongoing).fold(f64::INFINITY, f64::min);
            (if least.is_finite() { least } else { 0.0 }, Measure::Least)
        }
    };
    let t = policy.target_ongoing_requests;
    let (lo, hi) = (
        policy.min_replicas,
        policy.max_replicas.max(policy.min_replicas),
    );
    let wanted = count(level / t).clamp(lo, hi);
    let blind = blind && matches!(measure, Measure::Least);
    if blind || matches!(measure, Measure::Demand) && wanted <= target {
        // The load above the target is a queue the demand does not
        // explain (a backlog draining): no more replicas.
        return (target, level, String::new());
    }
    let step = policy.upscaling_factor * f64::from(wanted.saturating_sub(target));
    let stepped = (f64::from(target) + step).ceil().min(f64::from(hi)) as u32;
    let mut to = stepped.max(target + 1).min(hi);
    let mut notes = Vec::new();
    if stepped != wanted {
        notes.push(format!(
            "upscaling_factor {}: {stepped}",
            number(policy.upscaling_factor)
        ));
    }
    if following_upscale(state) {
        let cap = target.saturating_mul(2).max(target + 1);
        if to > cap {
            to = cap;
            notes.push(format!(
                "at most doubling while the last upscale's backlog may remain: {to}"
            ));
        }
    }
    let mut reason = match measure {
        Measure::Demand => format!(
            "a demand of {} ongoing requests (arrival rate x service time), above the target for {} s, target {} per replica: {wanted} replicas",
            number(level),
            seconds(span),
            number(t),
        ),
        Measure::Least => format!(
            "at least {} ongoing requests throughout {} s, target {} per replica: {wanted} replicas",
            number(level),
            seconds(span),
            number(t),
        ),
    };
    if !notes.is_empty() {
        reason.push_str(&format!(" ({})", notes.join("; ")));
    }
    (to, level, reason)
}

/// What an upscale was sized on.
enum Measure {
    /// The newest sample's demand.
    Demand,
    /// The least load over the span the condition held.
    Least,
}

/// A decision from `from` to `to` at `now_ms`: the state restarts its
/// timers and remembers it.
fn decision(
    mut next: ScaleState,
    from: u32,
    to: u32,
    now_ms: u64,
    load: f64,
    reason: String,
) -> (u32, ScaleState, Option<Decision>) {
    let direction = if to > from {
        Direction::Up
    } else {
        Direction::Down
    };
    next.up_since_ms = None;
    next.down_since_ms = None;
    next.zero_since_ms = None;
    next.caught_up_ms = None;
    next.fit_after_upscale = false;
    next.last = Some(LastDecision {
        at_ms: now_ms,
        direction,
        from,
        to,
        load: if load.is_finite() { load } else { 0.0 },
    });
    let decision = Decision {
        direction,
        from,
        to,
        at_ms: now_ms,
        reason,
    };
    (to, next, Some(decision))
}

/// The replicas `x` (load over load per replica) asks for: ⌈x⌉, with
/// `x` a hair above a whole number (float division: 4.8 / 1.6) counted
/// as that number.
fn count(x: f64) -> u32 {
    let whole = (x - 1e-9).ceil();
    if whole.is_nan() || whole <= 0.0 {
        0
    } else {
        whole.min(f64::from(u32::MAX)) as u32
    }
}

/// A number for people: at most one decimal, none when whole.
fn number(x: f64) -> String {
    let rounded = (x * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

fn seconds(ms: u64) -> String {
    number(ms as f64 / 1000.0)
}
