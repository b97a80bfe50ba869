//! The report of a run: `report.json` (everything below, serde), one
//! self-contained HTML page with SVG charts, and the summary table printed
//! at the end of `troupe chaos run`.
//!
//! # Layout
//! - this file: the report's data ([`Report`] and its parts);
//! - `html.rs`: [`write_html`]: the page, its charts drawn with `plotters`'
//!   SVG backend (per-second successes/failures and latency percentiles
//!   with fault windows shaded, replica counts, GCS term and leader);
//! - `table.rs`: [`summary_table`]: the plain-text table for the terminal
//!   and CHAOS.md.

mod chart_kit;
mod charts;
mod html;
#[cfg(test)]
mod html_tests;
mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{FaultRecord, ProbeSample};

pub use html::write_html;
pub use table::summary_table;

/// The `longest_gap_proxy` of a balanced client's requests: its load
/// balancer, judged over all its proxies together (shown as `lb`).
pub const BALANCED_PROXY: usize = usize::MAX;

/// Everything a run found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file as given (YAML text).
    pub scenario_text: String,
    /// The seed the timeline came from.
    pub seed: u64,
    /// `git describe`/`rev-parse` of the working tree, when there is one.
    pub git_revision: Option<String>,
    /// The command that reproduces the run.
    pub command: String,
    /// When the run started, UTC, RFC 3339.
    pub started_at: String,
    /// The machine: cores, load, kernel.
    pub machine: MachineInfo,
    /// `namespaces` or `loopback`.
    pub network: String,
    /// Fault kinds this run could not inject here, with why.
    pub unavailable: Vec<String>,
    /// From the load's start to its end, ms.
    pub duration_ms: u64,
    /// Every request of the run.
    pub overall: WindowStats,
    /// One row per fault class (its windows together), then `baseline`
    /// (requests outside every fault window).
    pub classes: Vec<WindowStats>,
    /// One row per executed fault.
    pub windows: Vec<WindowStats>,
    /// The safety checks and SLOs, each passed or not.
    pub checks: Vec<CheckOutcome>,
    /// The GCS workload's summary, when there was one.
    pub gcs: Option<GcsSummary>,
    /// The time series the charts are drawn from.
    pub series: Series,
}

impl Report {
    /// True when every check passed (the run's exit status).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// The machine a run ran on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct MachineInfo {
    /// Logical CPUs.
    pub cpus: usize,
    /// The 1-minute load average at the start and at the end.
    pub load_start: Option<f64>,
    /// See `load_start`.
    pub load_end: Option<f64>,
    /// `uname -r`.
    pub kernel: Option<String>,
}

/// Requests within a window of time (a fault's, a class's, the run's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct WindowStats {
    /// The fault class, `baseline`, `overall`, or a fault's description.
    pub label: String,
    /// The window, ms since the origin (for a class: its first start and
    /// last end).
    pub start_ms: u64,
    /// See `start_ms`.
    pub end_ms: u64,
    /// Requests sent (due) inside the window.
    pub requests: u64,
    /// Failed requests by kind (`http_503`, `timeout`, `connect` ...).
    pub failures: BTreeMap<String, u64>,
    /// Successes / requests (1.0 when there were none).
    pub success_rate: f64,
    /// The one-sided 95% upper confidence bound on the failure rate
    /// (Clopper–Pearson; 3/n with no failure).
    pub failure_rate_upper_95: f64,
    /// The longest time with no successful answer from one proxy inside
    /// the window, ms, over the proxies that were sent requests.
    pub longest_gap_ms: u64,
    /// The proxy (node index) with that gap.
    pub longest_gap_proxy: Option<usize>,
    /// Latency percentiles of every request in the window, ms.
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
    /// From the heal until every deployment was back at its target replica
    /// count (`None`: not measured or never).
    pub recovery_ms: Option<u64>,
}

impl WindowStats {
    /// Failed requests, all kinds.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// `slo:kill-gcs_leader`, `linearizable`, `no_lost_writes`, ...
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was seen, for a person.
    pub detail: String,
}

/// The GCS workload's operations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct GcsSummary {
    /// Operations recorded.
    pub operations: usize,
    /// With a known outcome.
    pub known: usize,
    /// Acknowledged writes (puts and CAS that succeeded).
    pub acknowledged_writes: usize,
}

/// One second of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct SecondBucket {
    /// Seconds since the origin (the bucket covers `[t_s, t_s + 1)` of
    /// due times).
    pub t_s: u64,
    /// Requests due in that second that succeeded.
    pub ok: u64,
    /// Requests due in that second that failed.
    pub failed: u64,
    /// Latency percentiles of those requests, ms (0 with none).
    pub p50_ms: f64,
    /// See `p50_ms`.
    pub p99_ms: f64,
    /// See `p50_ms`.
    pub max_ms: f64,
}

/// The time series behind the charts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Series {
    /// Per second of load.
    pub per_second: Vec<SecondBucket>,
    /// The prober's samples (replicas, leader, term).
    pub probes: Vec<ProbeSample>,
    /// The executed faults (the shaded windows).
    pub faults: Vec<FaultRecord>,
}
