//! Autoscaling, the pure part: the metrics window a controller keeps
//! ([`window::MetricsStore`]) and the decision it takes each tick
//! ([`policy::decide`]) from a deployment's effective
//! [`AutoscalingPolicy`] (its `autoscaling_config` with Ray Serve's
//! defaults applied), the samples of its look-back window, its current
//! target and running counts, the time, and the [`ScaleState`] carried
//! from the last call.
//!
//! No clock, no IO, no tokio: time is a parameter (`now_ms`, milliseconds
//! since the UNIX epoch, so that a [`ScaleState`] stored in the GCS means
//! the same on the controller that takes over after a failover). The
//! serve controller owns the loop: it feeds routers' reports into the
//! store, records one sample per deployment per tick, calls
//! [`policy::decide`], stores the new state and applies the new target.
//!
//! # The load signal
//!
//! The load of a deployment is the **total** number of its ongoing
//! requests (queued in routers plus in flight on replicas), summed over
//! every router that reports it (routers also report running totals of
//! arrivals, completions and time on replicas, from which the store
//! derives the demand, see below); when the replicas, which report what they
//! run, count more (callers that report nothing, such as a driver's
//! handles), their sum. The decision works on that total, never
//! on a per-replica ratio multiplied by the current count: the total does
//! not drop when replicas are added, which is what made Ray Serve
//! oscillate after a scale-up (ray#18925).
//!
//! # The rules, and the Ray Serve issue each one answers
//!
//! - **Upscale**: desired = ⌈load / target_ongoing_requests⌉, clamped to
//!   `[min_replicas, max_replicas]`, after the load called for more
//!   replicas at every call for `upscale_delay_s`. The condition is
//!   judged on the newest sample (so a burst shorter than the delay does
//!   not scale). The count is taken from the **demand** when it is known:
//!   the routers' arrival rate times the replicas' mean service time
//!   (Little's law: the requests that would be ongoing with no queue).
//!   Saturated replicas make the queue, and so the ongoing count, grow
//!   with time, whatever the need; the demand does not (a step from 10 to
//!   120 requests/s on one replica goes to the 4 replicas it needs in one
//!   decision). Without it (no service time measured yet, or callers that
//!   report nothing carry the load) the count is taken from the least
//!   load seen over the whole span the condition held.
//! - **Downscale**, with a deadband: desired = ⌈load / (target ·
//!   [`policy::DOWNSCALE_DEADBAND`])⌉ on the mean over the look-back
//!   window, held for `downscale_delay_s`. A steady load whose
//!   per-replica average sits between 0.8 · target and target changes
//!   nothing in either direction.
//! - **Factors** scale a step: `current + factor · (desired − current)`,
//!   rounded away from `current`, at least one replica.
//! - **From zero**: any load at zero replicas scales at once (a request
//!   is waiting) to `max(1, min_replicas)`, or to what the demand asks
//!   for when the service time measured before zero is still known.
//! - **To zero** (1 → 0) needs `downscale_to_zero_delay_s` of exactly
//!   zero load over a whole look-back window; after a downscale to one
//!   taken on zero load, the samples from before it count (zero load does
//!   not depend on the count), so zero comes one zero delay after one,
//!   not a look-back window later.
//! - **Samples after the last decision only** (ray#26455: thrashing when
//!   the delays are shorter than the look-back window): a decision uses
//!   only samples taken after the previous one, and the opposite
//!   direction only those taken a settle time later, so a delay shorter
//!   than the look-back window cannot act again on the load that caused
//!   the last decision.
//! - **No upscale while replicas start** (ray#61731: the feedback loop to
//!   `max_replicas` at cold start): while fewer replicas run than the
//!   target, the target is not raised; requests queued meanwhile are the
//!   start-up's backlog, not new demand. One exception: a start from zero
//!   (sized on one waiting request) may be followed, while its replica
//!   starts, by an upscale sized on a known demand, which the backlog
//!   does not move. After they run, a further
//!   upscale waits while the backlog drains (the load fell by half a
//!   replica's target or more over the last upscale delay: only
//!   recent samples, so a backlog gone long ago does not hold it back),
//!   and at most doubles the target.
//! - **No downscale without a full fresh look-back window** (metrics lost
//!   on a controller failover): a downscale needs eligible samples that
//!   cover the whole look-back window, so a controller that starts from
//!   the stored [`ScaleState`] and an empty window cannot scale down
//!   before it has a look-back window of its own samples.
//!
//! [`policy`] says each rule's details where it applies them.

pub mod policy;
mod state;
pub mod window;

#[cfg(test)]
mod tests;

pub use policy::{decide, AutoscalingPolicy, DOWNSCALE_DEADBAND};
pub use state::{Decision, Direction, LastDecision, Replicas, ScaleState};
pub use window::{DeploymentKey, Flow, MetricsStore, Sample, Source};
