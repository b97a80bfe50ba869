//! The autoscaling reporter: every process that routes requests tells the
//! serve controller, at the deployments' `metrics_interval_s`, how many
//! requests it holds for each autoscaled deployment (queued in its router
//! plus in flight on replicas, zero when idle) with its routers' running
//! totals of arrivals and service time (the demand the controller
//! derives), and how many its replicas run, over the transport
//! (`worker.extension`, handler [`REPORT`]): soft state, never written to
//! the GCS, never on a request's path. A request that finds its deployment
//! without replicas (scaled to zero), or that starts a queue (every
//! replica full), makes the reporter send at once (at most every 250 ms).
//!
//! The controller side ([`receive`]) stamps each report with its own clock
//! when it arrives, so clock skew between nodes cannot make a reporter look
//! stale, and keeps it in the process's [`MetricsStore`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use troupe_worker::schema::{self, ControllerTermRecord};
use troupe_worker::{codec, Cluster};

use crate::autoscale::{DeploymentKey, Flow, MetricsStore, Source};
use crate::runtime::ServeRuntime;
use crate::spec::TERM_KEY;

/// The extension handler's name.
pub const REPORT: &str = "serve.autoscale.report";

/// How often reports go when no autoscaled deployment asks for sooner, and
/// the bounds of any deployment's interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
const MAX_INTERVAL: Duration = Duration::from_secs(10);
/// Reports woken by [`urgent`] go at most this often (a queue that forms
/// and empties many times a second does not flood the controller; its
/// tick is 250 ms).
const URGENT_GAP: Duration = Duration::from_millis(250);
/// How long a report may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// One process's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Who reports: the node's id, one per process.
    pub reporter: String,
    /// `(app, deployment, ongoing requests, running totals)` for every
    /// autoscaled deployment, as the process's routers count them (queued
    /// plus in flight; arrivals, completions and time on replicas since
    /// the router was made), zeros included (an idle router's zero is
    /// what lets a deployment scale down).
    pub loads: Vec<(String, String, f64, Flow)>,
    /// `(app, deployment, replica id, requests running)` for the
    /// process's replicas of each autoscaled deployment it hosts.
    pub replicas: Vec<(String, String, String, f64)>,
}

/// Wakes the reporter to send now (a request waits for a replica).
pub(crate) fn urgent() {
    wake().notify_one();
}

fn wake() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// The time as the autoscaler counts it: milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes reports into `store` (the controller's side; every node serves it,
/// only the leading controller reads the store).
pub(crate) fn receive(store: &Mutex<MetricsStore>, body: &[u8]) -> Result<(), String> {
    let report: Report = codec::decode(body).map_err(|e| e.to_string())?;
    let at = now_ms();
    let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
    for (app, deployment, load, flow) in report.loads {
        let key = DeploymentKey::new(app, deployment);
        let reporter = format!("{}/routers", report.reporter);
        store.report(reporter.clone(), &key, at, load);
        store.report_flow(reporter, &key, at, flow);
    }
    let mut sums: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for (app, deployment, replica, running) in report.replicas {
        store.report_replica(replica, at, running);
        *sums.entry((app, deployment)).or_insert(0.0) += running;
    }
    for ((app, deployment), running) in sums {
        let key = DeploymentKey::new(app, deployment);
        let reporter = format!("{}/replicas", report.reporter);
        store.report_from(Source::Replicas, reporter, &key, at, running);
    }
    Ok(())
}

/// Sends this process's reports for as long as the task lives.
pub(crate) async fn run(runtime: Arc<ServeRuntime>, reporter: String) {
    let cluster = runtime.cluster().clone();
    let mut sent = tokio::time::Instant::now();
    loop {
        let (autoscaled, interval) = autoscaled(&cluster);
        tokio::select! {
            () = wake().notified() => {
                tokio::time::sleep_until(sent + URGENT_GAP).await;
            }
            () = tokio::time::sleep_until(sent + interval) => {}
        }
        sent = tokio::time::Instant::now();
        if autoscaled.is_empty() {
            continue;
        }
        let Some(controller) = controller_node(&cluster) else {
            continue;
        };
        let loads = runtime.routers().loads();
        let running = replica_loads();
        let report = Report {
            reporter: reporter.clone(),
            replicas: running
                .into_iter()
                .filter(|(app, deployment, _, _)| {
                    autoscaled.contains(&(app.clone(), deployment.clone()))
                })
                .collect(),
            loads: autoscaled
                .into_iter()
                .map(|(app, deployment)| {
                    let (load, flow) = loads
                        .iter()
                        .find(|((a, d), _, _)| *a == app && *d == deployment)
                        .map_or((0.0, Flow::default()), |(_, load, flow)| (*load, *flow));
                    (app, deployment, load, flow)
                })
                .collect(),
        };
        let body = codec::encode(&report);
        if let Err(e) = cluster
            .call_extension(controller, REPORT, body, SEND_TIMEOUT)
            .await
        {
            // Soft state: the next report replaces this one.
            tracing::debug!(error = %e, "autoscaling report not delivered");
        }
    }
}

/// Requests each of this process's replicas runs now, as `(app,
/// deployment, replica, count)`: the `ray_serve_replica_processing_queries`
/// gauges.
fn replica_loads() -> Vec<(String, String, String, f64)> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for family in crate::metrics::metrics().replica_processing.collect() {
        for metric in family.get_metric() {
            let label = |name: &str| {
                metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
            };
            if let (Some(app), Some(deployment), Some(replica)) =
                (label("application"), label("deployment"), label("replica"))
            {
                out.push((app, deployment, replica, metric.get_gauge().get_value()));
            }
        }
    }
    out
}

/// The autoscaled deployments the view knows, and the shortest of their
/// metrics intervals.
fn autoscaled(cluster: &Cluster) -> (BTreeSet<(String, String)>, Duration) {
    cluster.read_state(|s| {
        let records = crate::records::of(cluster, s);
        let mut interval = DEFAULT_INTERVAL;
        let mut out = BTreeSet::new();
        for app in records.apps.values() {
            for d in &app.deployments {
                if let Some(policy) = &d.autoscaling {
                    out.insert((app.name.clone(), d.name.clone()));
                    let every = Duration::from_millis(policy.metrics_interval_ms);
                    interval = interval.min(every.clamp(MIN_INTERVAL, MAX_INTERVAL));
                }
            }
        }
        (out, interval)
    })
}

/// The node the serve controller runs on, from its claim.
fn controller_node(cluster: &Cluster) -> Option<troupe_core::id::NodeId> {
    cluster.read_state(|s| {
        let value = s.extra.get(TERM_KEY.as_bytes())?;
        schema::decode::<ControllerTermRecord>(value)
            .ok()
            .map(|c| c.node)
    })
}
