//! [`MetricsStore`]: the controller's soft state of autoscaling metrics.
//! Routers (proxies and handles, on every node) report per deployment how
//! many of its requests they have ongoing; the store keeps each
//! reporter's latest report, sums the live ones into the deployment's
//! total, and keeps the totals the controller records each tick as the
//! look-back window [`super::decide`] reads. Pure: times are parameters.
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
}

impl Sample {
    pub fn new(at_ms: u64, ongoing: f64) -> Self {
        Sample { at_ms, ongoing }
    }
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
        let samples = &mut self
            .deployments
            .entry(deployment.clone())
            .or_default()
            .samples;
        match samples.back_mut() {
            Some(last) if last.at_ms > at_ms => return,
            Some(last) if last.at_ms == at_ms => last.ongoing = ongoing,
            _ => samples.push_back(Sample::new(at_ms, ongoing)),
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
        }
        let total = self.total(deployment, now_ms, stale_after_ms)?;
        self.record(deployment, now_ms, total, look_back_ms);
        Some(total)
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
}
