//! The process's metrics, with Ray Serve's names where Ray has the metric,
//! exposed at `/metrics` in the Prometheus text format (the `prometheus`
//! crate's encoder).

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use troupe_gcs::member::GcsMember;

/// Every metric this process exports.
pub struct ServeMetrics {
    registry: Registry,
    /// Requests the proxy answered, by route, method, application, status.
    pub http_requests: IntCounterVec,
    /// Their latency, milliseconds.
    pub http_latency_ms: HistogramVec,
    /// Requests answered with an error status.
    pub http_errors: IntCounterVec,
    /// Requests the proxy is handling now.
    pub ongoing_http: IntGauge,
    /// Requests a router holds in its queue, by deployment.
    pub deployment_queued: IntGaugeVec,
    /// Requests a replica is running now.
    pub replica_processing: IntGaugeVec,
    /// Time a replica spent on a request, milliseconds.
    pub deployment_latency_ms: HistogramVec,
    gcs_is_leader: IntGauge,
    gcs_term: IntGauge,
    gcs_last_log_index: IntGauge,
    gcs_last_applied_index: IntGauge,
    gcs_apply_lag: IntGauge,
    gcs_commit_index: IntGauge,
    /// Items per batch of each `Batcher`, by batcher name.
    pub batch_size: HistogramVec,
    /// Requests a router sent again to another replica, by deployment.
    pub request_retries: IntCounterVec,
    /// The autoscaler's target replica count, by deployment (on the node
    /// running the serve controller).
    pub autoscaling_target: IntGaugeVec,
    /// The autoscaler's decisions (changes of target), by deployment.
    pub autoscaling_decisions: IntCounterVec,
    /// The load the autoscaler saw last: ongoing requests summed over the
    /// reporting routers, by deployment.
    pub autoscaling_load: prometheus::GaugeVec,
    /// 1 while this process's calls have ejected the node (data-path
    /// health), by node.
    node_ejected: IntGaugeVec,
    /// Ejections since this process started.
    node_ejections: IntGauge,
    /// Key events this process's cluster view received through GCS
    /// watches (issue #17: what a change to one actor costs the others).
    watch_events: prometheus::IntCounter,
    /// Selections of keys this process's cluster view follows (one watch
    /// each).
    watches: IntGauge,
}

const LATENCY_BUCKETS_MS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

impl ServeMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_MS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauges =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        Ok(ServeMetrics {
            http_requests: counter(
                "serve_num_http_requests",
                "HTTP requests the proxy answered.",
                &["route", "method", "application", "status_code"],
            )?,
            http_latency_ms: histogram(
                "serve_http_request_latency_ms",
                "End-to-end latency of HTTP requests at the proxy, in milliseconds.",
                &["route", "application", "status_code"],
            )?,
            http_errors: counter(
                "serve_num_http_error_requests",
                "HTTP requests answered with an error status.",
                &["route", "error_code", "method", "application"],
            )?,
            ongoing_http: gauge(
                "serve_num_ongoing_http_requests",
                "HTTP requests the proxy is handling now.",
            )?,
            deployment_queued: gauges(
                "serve_deployment_queued_queries",
                "Requests waiting in this process's router for a replica.",
                &["application", "deployment"],
            )?,
            replica_processing: gauges(
                "serve_replica_processing_queries",
                "Requests a replica is running now.",
                &["application", "deployment", "replica"],
            )?,
            deployment_latency_ms: histogram(
                "serve_deployment_processing_latency_ms",
                "Time replicas spent on a request, in milliseconds.",
                &["application", "deployment", "replica"],
            )?,
            gcs_is_leader: gauge("troupe_gcs_is_leader", "1 if this node's GCS member leads.")?,
            gcs_term: gauge(
                "troupe_gcs_term",
                "The Raft term this node's GCS member is in.",
            )?,
            gcs_last_log_index: gauge(
                "troupe_gcs_last_log_index",
                "The last Raft log index this node's GCS member holds.",
            )?,
            gcs_last_applied_index: gauge(
                "troupe_gcs_last_applied_index",
                "The last Raft log index this node's GCS member applied.",
            )?,
            gcs_apply_lag: gauge(
                "troupe_gcs_apply_lag",
                "Log entries this node's GCS member holds but has not applied.",
            )?,
            gcs_commit_index: gauge(
                "troupe_gcs_commit_index",
                "On the GCS leader, the highest log index a majority holds; elsewhere the last applied index.",
            )?,
            request_retries: counter(
                "troupe_router_retries",
                "Requests a router sent again to another replica after an attempt failed (replica gone, or lost in flight with retry_lost_requests).",
                &["application", "deployment"],
            )?,
            autoscaling_target: gauges(
                "serve_autoscaling_target_replicas",
                "The replica count the autoscaler asks for, by deployment.",
                &["application", "deployment"],
            )?,
            autoscaling_decisions: counter(
                "serve_autoscaling_decisions",
                "Changes of an autoscaled deployment's target replica count.",
                &["application", "deployment"],
            )?,
            autoscaling_load: {
                let g = prometheus::GaugeVec::new(
                    Opts::new(
                        "serve_autoscaling_total_ongoing_requests",
                        "Ongoing requests (queued plus in flight) the routers last reported for an autoscaled deployment, summed.",
                    ),
                    &["application", "deployment"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            node_ejected: gauges(
                "troupe_node_ejected",
                "1 while this process's calls have ejected the node from routing (refused, lost or silent connections).",
                &["node"],
            )?,
            node_ejections: gauge(
                "troupe_node_ejections",
                "Nodes ejected from routing by this process's calls since it started.",
            )?,
            watch_events: {
                let c = prometheus::IntCounter::new(
                    "troupe_gcs_watch_events_total",
                    "Key events (puts, deletes) this process's cluster view received through GCS watches.",
                )?;
                registry.register(Box::new(c.clone()))?;
                c
            },
            watches: gauge(
                "troupe_gcs_watches",
                "Selections of keys this process's cluster view follows, one GCS watch each (1 on GCS members' nodes: all of /troupe/).",
            )?,
            batch_size: {
                let h = HistogramVec::new(
                    HistogramOpts::new("serve_batch_size", "Items per batch of a replica's batcher.")
                        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
                    &["batcher"],
                )?;
                registry.register(Box::new(h.clone()))?;
                h
            },
            registry,
        })
    }

    /// The page `/metrics` serves, with the GCS member's gauges read now.
    pub fn render(&self, member: Option<&GcsMember>) -> String {
        if let Some(member) = member {
            let status = member.status();
            let last = status.last_log_index.unwrap_or(0);
            let applied = status.last_applied_index.unwrap_or(0);
            self.gcs_is_leader.set(i64::from(member.is_leader()));
            self.gcs_term.set(status.term as i64);
            self.gcs_last_log_index.set(last as i64);
            self.gcs_last_applied_index.set(applied as i64);
            self.gcs_apply_lag.set(last.saturating_sub(applied) as i64);
            self.gcs_commit_index
                .set(member.commit_index().unwrap_or(0) as i64);
        }
        let mut families = self.registry.gather();
        if let Some(member) = member {
            families.extend(prometheus::core::Collector::collect(member.write_latency()));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "could not encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process's metrics (created on first use).
pub fn metrics() -> &'static ServeMetrics {
    static METRICS: OnceLock<ServeMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ServeMetrics::new().expect("the metric definitions are valid"))
}

impl ServeMetrics {
    /// Copies the data path's health table into the gauges (before a
    /// render).
    pub fn record_health(&self, health: &troupe_worker::HealthTable) {
        self.node_ejected.reset();
        for node in health.snapshot() {
            self.node_ejected
                .with_label_values(&[node.node.to_string().as_str()])
                .set(i64::from(node.ejected));
        }
        self.node_ejections.set(health.total_ejections() as i64);
    }

    /// Copies what the cluster view received into the counters (before a
    /// render).
    pub fn record_view(&self, stats: &troupe_worker::WatchStats) {
        let seen = self.watch_events.get();
        self.watch_events
            .inc_by(stats.events().saturating_sub(seen));
        self.watches.set(stats.follows() as i64);
    }
}
