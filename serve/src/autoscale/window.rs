//! [`MetricsStore`]: the controller's soft state of autoscaling metrics.
//! Routers (proxies and handles, on every node) report per deployment how
//! many of its requests they have ongoing; the store keeps each
//! reporter's latest report, sums the live ones into the deployment's
//! total, and keeps the totals the controller records each tick as the
//! look-back window [`super::decide`] reads. Routers also report running
//! totals ([`Flow`]); from their differences the store keeps each
//! router's arrival rate and the deployment's mean service time, whose
//! product is the sample's demand ([`MetricsStore::demand`]). Pure:
//! times are parameters.
//!
//! The window of a time `now` is the samples taken in the look-back
//! period before it, plus the newest one taken at or before its start
//! (so that a window says whether its samples cover the whole period:
//! [`super::decide`] downscales only on a covered window).
//!
//! Memory is bounded: samples older than that are evicted when a new one
//! is recorded (and never more than [`MAX_SAMPLES`] are kept per
//! deployment), and a reporter silent for
//! longer than `stale_after_ms` is forgotten at the next
//! [`MetricsStore::tick`] or [`MetricsStore::forget_stale`].
//!
//! Nothing here is durable: a controller that takes over starts with an
//! empty store, which [`super::decide`] is built to tolerate (no
//! downscale before a look-back window of fresh samples).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// At most this many samples are kept per deployment, whatever the tick
/// rate and look-back window (an hour of one-second ticks fits).
pub const MAX_SAMPLES: usize = 4096;

/// Which deployment a report or sample is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeploymentKey {
    pub app: String,
    pub deployment: String,
}

impl DeploymentKey {
    pub fn new(app: impl Into<String>, deployment: impl Into<String>) -> Self {
        DeploymentKey {
            app: app.into(),
            deployment: deployment.into(),
        }
    }
}

/// A deployment's total ongoing requests at one time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken (ms since the UNIX epoch).
    pub at_ms: u64,
    /// Queued plus in flight, summed over every live reporter.
    pub ongoing: f64,
    /// The requests the deployment would have ongoing with no queue: the
    /// routers' arrival rate times the replicas' mean service time
    /// (Little's law). Unlike `ongoing` it does not grow with a backlog,
    /// so it sizes an upscale from saturated replicas. `None` when it is
    /// not known (no arrival rate yet, no service time ever measured, or
    /// callers that report nothing).
    #[serde(default)]
    pub demand: Option<f64>,
}

impl Sample {
    pub fn new(at_ms: u64, ongoing: f64) -> Self {
        Sample {
            at_ms,
            ongoing,
            demand: None,
        }
    }

    /// A sample with a known demand.
    pub fn with_demand(at_ms: u64, ongoing: f64, demand: f64) -> Self {
        Sample {
            at_ms,
            ongoing,
            demand: Some(demand),
        }
    }

    /// The load a scale-up is sized on: the demand when known (never above
    /// `ongoing`: a rate measured over an interval whose burst has ended
    /// does not outweigh what is ongoing now), else `ongoing`.
    pub fn sizing_load(&self) -> f64 {
        self.demand.map_or(self.ongoing, |d| d.min(self.ongoing))
    }
}

/// A router's running totals for one deployment since the router was
/// made. Totals rather than rates, so a lost report loses nothing: the
/// store takes the rates from the difference of two reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// Requests that reached the router.
    pub arrived: u64,
    /// Requests a replica finished (answered or failed), each counted
    /// once per replica it was sent to.
    pub completed: u64,
    /// The time those requests spent on replicas, in microseconds (from
    /// taking a replica's slot to freeing it).
    pub served_us: u64,
}

/// Rates need at least this long between two reports: an urgent report
/// a few milliseconds after the last periodic one would make one request
/// look like a flood.
pub const MIN_RATE_SPAN_MS: u64 = 500;

/// What a reporter's flows say over its last measured interval.
#[derive(Debug, Clone, Copy)]
struct FlowState {
    /// The totals the next interval is measured from, and when.
    base: Flow,
    base_at_ms: u64,
    /// Arrivals per second over the last interval.
    arrivals_per_s: Option<f64>,
    /// Completions and their service time over that interval.
    completed: u64,
    served_us: u64,
    /// When the last report came (stale like a load report).
    at_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct Report {
    at_ms: u64,
    ongoing: f64,
    source: Source,
}

/// Who counted a report's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A process's routers: requests queued there plus those in flight on
    /// replicas. Their sum over processes is the deployment's demand.
    Routers,
    /// A process's replicas: the requests they run now. It counts calls
    /// from callers that report nothing (a driver's handles), so the load
    /// is never taken below it.
    Replicas,
}

#[derive(Debug, Clone, Default)]
struct Metrics {
    /// Each reporter's latest report.
    reports: BTreeMap<String, Report>,
    /// Recorded totals, oldest first.
    samples: VecDeque<Sample>,
    /// Each router reporter's flows.
    flows: BTreeMap<String, FlowState>,
    /// The replicas' mean service time in seconds, as last measured: kept
    /// while nothing completes (at zero replicas, the time a new one will
    /// take).
    service_s: Option<f64>,
}

/// Every deployment's latest reports and look-back samples.
#[derive(Debug, Clone, Default)]
pub struct MetricsStore {
    deployments: BTreeMap<DeploymentKey, Metrics>,
    /// Each replica's latest count of the requests it runs, by replica id
    /// (its text form): which replicas a downscale takes away.
    replicas: BTreeMap<String, Report>,
}

impl MetricsStore {
    pub fn new() -> Self {
        MetricsStore::default()
    }

    /// Takes `reporter`'s count of `deployment`'s ongoing requests
    /// (queued plus in flight, as that reporter's routers see them) at
    /// `at_ms`: [`Source::Routers`].
    pub fn report(
        &mut self,
        reporter: impl Into<String>,
        deployment: &DeploymentKey,
        at_ms: u64,
        ongoing: f64,
    ) {
        self.report_from(Source::Routers, reporter, deployment, at_ms, ongoing);
    }

    /// Takes a report counted by `source`. Reporters of one source must
    /// count disjoint requests (each router the requests it routes, each
    /// process its own replicas), so their sum is what that source sees;
    /// a reporter names itself stably (`node-…/routers`). `at_ms` is best
    /// the controller's receive time, so clock skew between nodes cannot
    /// make a reporter look stale. A report older than the reporter's
    /// latest, or not a finite number >= 0, is ignored.
    pub fn report_from(
        &mut self,
        source: Source,
        reporter: impl Into<String>,
        deployment: &DeploymentKey,
        at_ms: u64,
        ongoing: f64,
    ) {
        if !(ongoing.is_finite() && ongoing >= 0.0) {
            return;
        }
        let metrics = self.deployments.entry(deployment.clone()).or_default();
        let report = Report {
            at_ms,
            ongoing,
            source,
        };
        let latest = metrics.reports.entry(reporter.into()).or_insert(report);
        if at_ms >= latest.at_ms {
            *latest = report;
        }
    }

    /// Takes how many requests `replica` runs, at `at_ms`.
    pub fn report_replica(&mut self, replica: impl Into<String>, at_ms: u64, running: f64) {
        if !(running.is_finite() && running >= 0.0) {
            return;
        }
        let report = Report {
            at_ms,
            ongoing: running,
            source: Source::Replicas,
        };
        let latest = self.replicas.entry(replica.into()).or_insert(report);
        if at_ms >= latest.at_ms {
            *latest = report;
        }
    }

    /// Takes `reporter`'s running totals of `deployment`'s requests at
    /// `at_ms` (a router reporter: the same name as its load reports).
    /// The rates are measured from the reporter's previous totals at least
    /// [`MIN_RATE_SPAN_MS`] older; totals lower than those (the router
    /// was made anew) start the measurement over.
    pub fn report_flow(
        &mut self,
        reporter: impl Into<String>,
        deployment: &DeploymentKey,
        at_ms: u64,
        flow: Flow,
    ) {
        let metrics = self.deployments.entry(deployment.clone()).or_default();
        let fresh = FlowState {
            base: flow,
            base_at_ms: at_ms,
            arrivals_per_s: None,
            completed: 0,
            served_us: 0,
            at_ms,
        };
        let state = metrics.flows.entry(reporter.into()).or_insert(fresh);
        if at_ms < state.at_ms {
            return;
        }
        let base = state.base;
        let went_back = flow.arrived < base.arrived
            || flow.completed < base.completed
            || flow.served_us < base.served_us;
        if went_back {
            *state = fresh;
            return;
        }
        state.at_ms = at_ms;
        let span = at_ms.saturating_sub(state.base_at_ms);
        if span < MIN_RATE_SPAN_MS {
            return;
        }
        state.arrivals_per_s = Some((flow.arrived - base.arrived) as f64 * 1000.0 / span as f64);
        state.completed = flow.completed - base.completed;
        state.served_us = flow.served_us - base.served_us;
        state.base = flow;
        state.base_at_ms = at_ms;
        if state.completed > 0 {
            // The deployment's service time: over every live reporter's
            // last interval, weighted by completions.
            let (mut completed, mut served) = (0u64, 0u64);
            for f in metrics.flows.values() {
                completed += f.completed;
                served += f.served_us;
            }
            metrics.service_s = Some(served as f64 / completed as f64 / 1e6);
        }
    }

    /// The deployment's demand now: the live routers' arrival rates
    /// summed, times the last measured service time. `None` when a live
    /// router reporter has no rate yet or no service time was ever
    /// measured.
    pub fn demand(
        &self,
        deployment: &DeploymentKey,
        now_ms: u64,
        stale_after_ms: u64,
    ) -> Option<f64> {
        let metrics = self.deployments.get(deployment)?;
        let service = metrics.service_s?;
        let mut arrivals = 0.0;
        let mut any = false;
        for f in metrics.flows.values() {
            if f.at_ms.saturating_add(stale_after_ms) < now_ms {
                continue;
            }
            arrivals += f.arrivals_per_s?;
            any = true;
        }
        any.then_some(arrivals * service)
    }

    /// Every replica's latest count reported within `stale_after_ms` of
    /// `now_ms` (older ones are forgotten).
    pub fn replica_loads(&mut self, now_ms: u64, stale_after_ms: u64) -> BTreeMap<String, f64> {
        self.replicas
            .retain(|_, r| is_live(r, now_ms, stale_after_ms));
        self.replicas
            .iter()
            .map(|(id, r)| (id.clone(), r.ongoing))
            .collect()
    }

    /// The deployment's load from each live reporter's latest report: the
    /// sum over the routers' reports, or over the replicas' reports when
    /// that is larger (requests from callers that do not report);
    /// reporters silent for longer than `stale_after_ms` are left out.
    /// `None` when no reporter is live: an unknown load, not zero.
    pub fn total(
        &self,
        deployment: &DeploymentKey,
        now_ms: u64,
        stale_after_ms: u64,
    ) -> Option<f64> {
        let metrics = self.deployments.get(deployment)?;
        let live: Vec<&Report> = metrics
            .reports
            .values()
            .filter(|r| is_live(r, now_ms, stale_after_ms))
            .collect();
        let sum = |source: Source| -> f64 {
            live.iter()
                .filter(|r| r.source == source)
                .map(|r| r.ongoing)
                .sum()
        };
        (!live.is_empty()).then(|| sum(Source::Routers).max(sum(Source::Replicas)))
    }

    /// Records `ongoing` as `deployment`'s total at `at_ms` and evicts the
    /// samples no window from `at_ms` on needs (older than `look_back_ms`
    /// before it, but the newest of those). A sample older than the newest
    /// is ignored; one at the same time replaces it.
    pub fn record(
        &mut self,
        deployment: &DeploymentKey,
        at_ms: u64,
        ongoing: f64,
        look_back_ms: u64,
    ) {
        self.record_sample(deployment, Sample::new(at_ms, ongoing), look_back_ms);
    }

    /// [`MetricsStore::record`] of a whole sample.
    pub fn record_sample(&mut self, deployment: &DeploymentKey, sample: Sample, look_back_ms: u64) {
        let at_ms = sample.at_ms;
        let samples = &mut self
            .deployments
            .entry(deployment.clone())
            .or_default()
            .samples;
        match samples.back_mut() {
            Some(last) if last.at_ms > at_ms => return,
            Some(last) if last.at_ms == at_ms => *last = sample,
            _ => samples.push_back(sample),
        }
        let start = at_ms.saturating_sub(look_back_ms);
        let outside = |s: Option<&Sample>| s.is_some_and(|s| s.at_ms <= start);
        while outside(samples.get(1)) || samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
    }

    /// One controller tick for `deployment`: forgets its stale reporters,
    /// records the live ones' total as a sample (if any is live) and
    /// returns it.
    pub fn tick(
        &mut self,
        deployment: &DeploymentKey,
        now_ms: u64,
        stale_after_ms: u64,
        look_back_ms: u64,
    ) -> Option<f64> {
        if let Some(metrics) = self.deployments.get_mut(deployment) {
            metrics
                .reports
                .retain(|_, r| is_live(r, now_ms, stale_after_ms));
            metrics
                .flows
                .retain(|_, f| f.at_ms.saturating_add(stale_after_ms) >= now_ms);
        }
        let total = self.total(deployment, now_ms, stale_after_ms)?;
        let routers = self.routers_total(deployment, now_ms, stale_after_ms);
        // Callers that report nothing carry part of the load: the routers'
        // arrivals do not say the demand.
        let demand = self
            .demand(deployment, now_ms, stale_after_ms)
            .filter(|_| routers >= total);
        let sample = Sample {
            at_ms: now_ms,
            ongoing: total,
            demand,
        };
        self.record_sample(deployment, sample, look_back_ms);
        Some(total)
    }

    fn routers_total(&self, deployment: &DeploymentKey, now_ms: u64, stale_after_ms: u64) -> f64 {
        self.deployments.get(deployment).map_or(0.0, |m| {
            m.reports
                .values()
                .filter(|r| r.source == Source::Routers && is_live(r, now_ms, stale_after_ms))
                .map(|r| r.ongoing)
                .sum()
        })
    }

    /// `deployment`'s samples taken in the `look_back_ms` up to `now_ms`,
    /// and the newest one at or before the start of that period, oldest
    /// first: the window [`super::decide`] takes.
    pub fn window(
        &self,
        deployment: &DeploymentKey,
        now_ms: u64,
        look_back_ms: u64,
    ) -> Vec<Sample> {
        let start = now_ms.saturating_sub(look_back_ms);
        let Some(metrics) = self.deployments.get(deployment) else {
            return Vec::new();
        };
        let upto: Vec<Sample> = metrics
            .samples
            .iter()
            .filter(|s| s.at_ms <= now_ms)
            .copied()
            .collect();
        let first = upto.iter().rposition(|s| s.at_ms <= start).unwrap_or(0);
        upto[first..].to_vec()
    }

    /// The mean of [`MetricsStore::window`], `None` when it is empty.
    pub fn average(
        &self,
        deployment: &DeploymentKey,
        now_ms: u64,
        look_back_ms: u64,
    ) -> Option<f64> {
        let window = self.window(deployment, now_ms, look_back_ms);
        mean(&window)
    }

    /// Forgets every reporter silent for longer than `stale_after_ms`, and
    /// deployments left with neither reporters nor samples newer than
    /// `look_back_ms`.
    pub fn forget_stale(&mut self, now_ms: u64, stale_after_ms: u64, look_back_ms: u64) {
        let oldest = now_ms.saturating_sub(look_back_ms);
        self.deployments.retain(|_, m| {
            m.reports.retain(|_, r| is_live(r, now_ms, stale_after_ms));
            m.flows
                .retain(|_, f| f.at_ms.saturating_add(stale_after_ms) >= now_ms);
            if m.samples.back().is_some_and(|s| s.at_ms < oldest) {
                m.samples.clear();
            }
            !(m.reports.is_empty() && m.samples.is_empty())
        });
    }

    /// Forgets a deleted deployment.
    pub fn remove(&mut self, deployment: &DeploymentKey) {
        self.deployments.remove(deployment);
    }

    /// The deployments the store holds anything about.
    pub fn deployments(&self) -> impl Iterator<Item = &DeploymentKey> {
        self.deployments.keys()
    }

    /// How many reporters and samples are kept for `deployment`.
    pub fn sizes(&self, deployment: &DeploymentKey) -> (usize, usize) {
        self.deployments
            .get(deployment)
            .map_or((0, 0), |m| (m.reports.len(), m.samples.len()))
    }
}

fn is_live(report: &Report, now_ms: u64, stale_after_ms: u64) -> bool {
    report.at_ms.saturating_add(stale_after_ms) >= now_ms
}

/// The mean load of `samples`, `None` when there are none.
pub fn mean(samples: &[Sample]) -> Option<f64> {
    (!samples.is_empty())
        .then(|| samples.iter().map(|s| s.ongoing).sum::<f64>() / samples.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DeploymentKey {
        DeploymentKey::new("app", "model")
    }

    #[test]
    fn the_total_sums_each_live_reporters_latest_report() {
        let mut store = MetricsStore::new();
        store.report("node-1/proxy", &key(), 1_000, 3.0);
        store.report("node-1/proxy", &key(), 2_000, 4.0);
        // An older report arriving late does not replace the latest.
        store.report("node-1/proxy", &key(), 1_500, 9.0);
        store.report("node-2/proxy", &key(), 2_000, 1.5);
        assert_eq!(store.total(&key(), 2_000, 2_000), Some(5.5));
        // node-2 stays silent: at 4_001 its report (2_000) is older than
        // 2 s, and so is node-1's.
        store.report("node-1/proxy", &key(), 3_500, 2.0);
        assert_eq!(store.total(&key(), 4_001, 2_000), Some(2.0));
        assert_eq!(store.total(&key(), 6_000, 2_000), None);
        assert_eq!(
            store.total(&DeploymentKey::new("app", "other"), 2_000, 2_000),
            None
        );
    }

    #[test]
    fn the_replicas_count_is_a_floor_under_the_routers_count() {
        let mut store = MetricsStore::new();
        store.report("node-1/routers", &key(), 1_000, 4.0);
        store.report("node-2/routers", &key(), 1_000, 2.0);
        // The replicas run 5 of the routers' 6: the routers' count stands.
        store.report_from(Source::Replicas, "node-1/replicas", &key(), 1_000, 3.0);
        store.report_from(Source::Replicas, "node-2/replicas", &key(), 1_000, 2.0);
        assert_eq!(store.total(&key(), 1_000, 2_000), Some(6.0));
        // A driver's calls nobody reports: the replicas run 9.
        store.report_from(Source::Replicas, "node-2/replicas", &key(), 1_100, 6.0);
        assert_eq!(store.total(&key(), 1_100, 2_000), Some(9.0));
        // Replica reports alone still give a load.
        let other = DeploymentKey::new("app", "other");
        store.report_from(Source::Replicas, "node-1/replicas", &other, 1_000, 1.0);
        assert_eq!(store.total(&other, 1_000, 2_000), Some(1.0));
    }

    #[test]
    fn replica_loads_keep_the_latest_live_count() {
        let mut store = MetricsStore::new();
        store.report_replica("replica-a", 1_000, 2.0);
        store.report_replica("replica-a", 900, 7.0);
        store.report_replica("replica-b", 1_500, 0.0);
        store.report_replica("replica-c", 1_000, f64::NAN);
        let loads = store.replica_loads(2_000, 2_000);
        assert_eq!(loads.len(), 2);
        assert_eq!((loads["replica-a"], loads["replica-b"]), (2.0, 0.0));
        assert_eq!(store.replica_loads(3_200, 2_000).len(), 1);
    }

    #[test]
    fn bad_numbers_are_ignored() {
        let mut store = MetricsStore::new();
        store.report("r", &key(), 1_000, f64::NAN);
        store.report("r", &key(), 1_000, -1.0);
        assert_eq!(store.total(&key(), 1_000, 2_000), None);
    }

    #[test]
    fn ticks_record_samples_and_the_window_keeps_only_the_look_back() {
        let mut store = MetricsStore::new();
        let mut recorded = 0;
        for s in 0..100u64 {
            let now = s * 1_000;
            store.report("r", &key(), now, s as f64);
            if store.tick(&key(), now, 2_000, 30_000).is_some() {
                recorded += 1;
            }
        }
        assert_eq!(recorded, 100);
        let window = store.window(&key(), 99_000, 30_000);
        assert_eq!(window.len(), 31, "{window:?}");
        assert_eq!(window[0], Sample::new(69_000, 69.0));
        assert_eq!(store.sizes(&key()), (1, 31));
        assert_eq!(store.average(&key(), 99_000, 10_000), Some(94.0));
        // A shorter window is a suffix; between ticks it starts at the
        // newest sample at or before its start.
        assert_eq!(store.window(&key(), 99_000, 2_000).len(), 3);
        let between = store.window(&key(), 99_500, 2_000);
        assert_eq!(between.first(), Some(&Sample::new(97_000, 97.0)));
        assert_eq!(between.len(), 3);
    }

    #[test]
    fn a_silent_deployment_records_nothing_and_is_forgotten() {
        let mut store = MetricsStore::new();
        store.report("r", &key(), 0, 2.0);
        assert_eq!(store.tick(&key(), 1_000, 2_000, 30_000), Some(2.0));
        // The reporter goes silent: no sample (unknown is not zero).
        assert_eq!(store.tick(&key(), 5_000, 2_000, 30_000), None);
        assert_eq!(store.sizes(&key()), (0, 1));
        store.forget_stale(40_000, 2_000, 30_000);
        assert_eq!(store.deployments().count(), 0);
    }

    #[test]
    fn samples_are_bounded_even_with_a_huge_look_back() {
        let mut store = MetricsStore::new();
        for t in 0..(MAX_SAMPLES as u64 + 500) {
            store.record(&key(), t, 1.0, u64::MAX);
        }
        assert_eq!(store.sizes(&key()).1, MAX_SAMPLES);
        // Out of order and same-time samples.
        store.record(&key(), 10, 5.0, u64::MAX);
        let last = MAX_SAMPLES as u64 + 499;
        store.record(&key(), last, 7.0, u64::MAX);
        let window = store.window(&key(), last, 0);
        assert_eq!(window, vec![Sample::new(last, 7.0)]);
        store.remove(&key());
        assert_eq!(store.sizes(&key()), (0, 0));
    }

    fn flow(arrived: u64, completed: u64, served_ms: u64) -> Flow {
        Flow {
            arrived,
            completed,
            served_us: served_ms * 1_000,
        }
    }

    #[test]
    fn the_demand_is_the_arrival_rate_times_the_service_time() {
        let mut store = MetricsStore::new();
        // No service time yet, no rate from one report.
        store.report_flow("a", &key(), 1_000, flow(0, 0, 0));
        assert_eq!(store.demand(&key(), 1_000, 2_000), None);
        // 100 arrivals and 100 completions of 50 ms in 1 s at a, 20
        // arrivals at b (its first interval) and 10 completions of 80 ms.
        store.report_flow("a", &key(), 2_000, flow(100, 100, 5_000));
        store.report_flow("b", &key(), 1_000, flow(0, 0, 0));
        store.report_flow("b", &key(), 2_000, flow(20, 10, 800));
        // Service time (5_000 + 800 ms) / 110 = 52.7 ms; 120/s.
        let demand = store.demand(&key(), 2_000, 2_000).unwrap();
        assert!((demand - 120.0 * 5.8 / 110.0).abs() < 1e-9, "{demand}");
        // A report sooner than MIN_RATE_SPAN_MS after the last measured
        // one measures nothing (one request in 10 ms is not 100/s).
        store.report_flow("b", &key(), 2_010, flow(21, 10, 800));
        let same = store.demand(&key(), 2_010, 2_000).unwrap();
        assert!((same - demand).abs() < 1e-9);
        // b's totals went back (its router was made anew): its rate is
        // unknown until its next interval, so the demand is.
        store.report_flow("b", &key(), 2_600, flow(3, 0, 0));
        assert_eq!(store.demand(&key(), 2_600, 2_000), None);
        // b goes silent and is left out once stale; a goes on at 100/s
        // of 50 ms.
        store.report_flow("a", &key(), 3_000, flow(200, 200, 10_000));
        let demand = store.demand(&key(), 4_700, 2_000).unwrap();
        assert!((demand - 5.0).abs() < 1e-9, "{demand}");
    }

    #[test]
    fn the_service_time_outlives_an_interval_with_no_completions() {
        let mut store = MetricsStore::new();
        store.report_flow("a", &key(), 0, flow(0, 0, 0));
        store.report_flow("a", &key(), 1_000, flow(10, 10, 500));
        // Scaled to zero: requests arrive, none completes.
        store.report_flow("a", &key(), 2_000, flow(10, 10, 500));
        store.report_flow("a", &key(), 3_000, flow(70, 10, 500));
        let demand = store.demand(&key(), 3_000, 2_000).unwrap();
        assert!((demand - 60.0 * 0.05).abs() < 1e-9, "{demand}");
        // A tick records it with the load, unless callers that report
        // nothing carry more of the load than the routers.
        store.report("a", &key(), 3_000, 60.0);
        store.tick(&key(), 3_000, 2_000, 10_000);
        assert_eq!(store.window(&key(), 3_000, 10_000)[0].demand, Some(demand));
        store.report_from(Source::Replicas, "n/replicas", &key(), 3_100, 90.0);
        store.tick(&key(), 3_100, 2_000, 10_000);
        let window = store.window(&key(), 3_100, 10_000);
        assert_eq!(window.last().unwrap().demand, None);
        assert_eq!(window.last().unwrap().sizing_load(), 90.0);
    }
}
