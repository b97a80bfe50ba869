//! The process's metrics, exposed at `/metrics` in the Prometheus text
//! format (the `prometheus` crate's encoder).
//!
//! Two families (README.md, "Metrics and dashboards"):
//! - Ray Serve's series under the names Ray's Prometheus exporter gives
//!   them (`ray_` prefix, `_total` on counters, `_bucket`/`_sum`/`_count`
//!   on histograms), with Ray's label names and meaning, so Ray's own
//!   Grafana dashboards work unchanged. The series they query that Troupe
//!   does not export, and why, are listed in `examples/grafana/README.md`.
//! - Troupe's own series, `troupe_` first, units in the name, `_total` on
//!   counters; `examples/grafana/troupe.json` charts them.

use std::sync::OnceLock;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use troupe_gcs::member::GcsMember;

/// Every metric this process exports.
pub struct ServeMetrics {
    registry: Registry,
    /// Requests the proxy answered, by route, method, application, status.
    pub http_requests: IntCounterVec,
    /// Their latency, milliseconds, by method, route, application, status.
    pub http_latency_ms: HistogramVec,
    /// Requests answered with an error status.
    pub http_errors: IntCounterVec,
    /// Requests the proxy is handling now, by node id and IP.
    pub ongoing_http: IntGaugeVec,
    /// Requests a router holds in its queue, by deployment.
    pub deployment_queued: IntGaugeVec,
    /// Requests a router is choosing a replica for (Ray's scheduling
    /// tasks): in Troupe the queued ones, as choosing is immediate unless
    /// every replica is full.
    pub scheduling_tasks: IntGaugeVec,
    /// Of those, the ones waiting because no replica had room (Ray's
    /// backoff): in Troupe every queued request.
    pub scheduling_tasks_in_backoff: IntGaugeVec,
    /// Requests a replica is running now.
    pub replica_processing: IntGaugeVec,
    /// Requests a replica finished, by application, deployment, replica,
    /// route.
    pub deployment_requests: IntCounterVec,
    /// Requests a replica's code failed, by application, deployment,
    /// replica, route and the error's kind (`exception_type`).
    pub deployment_errors: IntCounterVec,
    /// Time a replica spent on a request, milliseconds.
    pub deployment_latency_ms: HistogramVec,
    /// 1 for a running replica, 0 for one starting or stopping, by
    /// application, deployment, replica (on the node running the serve
    /// controller).
    pub replica_healthy: IntGaugeVec,
    /// How long the serve controller's last round took, seconds (no
    /// labels; a vector so that nodes not running the controller export
    /// nothing rather than a 0).
    control_loop_duration_s: GaugeVec,
    /// Rounds the serve controller ran on this node since it started
    /// leading, by `actor_id` (the node's id).
    control_loops: IntGaugeVec,
    /// The GCS member's gauges: a registry of their own, gathered only on
    /// a node that runs a member (elsewhere they would be fake zeros).
    member: MemberGauges,
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
    pub autoscaling_load: GaugeVec,
    /// 1 while this process's calls have ejected the node (data-path
    /// health), by node.
    node_ejected: IntGaugeVec,
    /// Ejections since this process started.
    node_ejections: IntCounter,
    /// Key events this process's cluster view received through GCS
    /// watches (issue #17: what a change to one actor costs the others).
    watch_events: IntCounter,
    /// Selections of keys this process's cluster view follows (one watch
    /// each).
    watches: IntGauge,
    /// The host's resources under Ray's node-agent names
    /// ([`crate::host`]), by `ip`.
    host: HostGauges,
}

/// Ray's `ray_node_*` series ([`crate::host`]): vectors, so that what
/// could not be read is absent rather than 0.
struct HostGauges {
    cpu_utilization: GaugeVec,
    mem_used: GaugeVec,
    mem_total: GaugeVec,
    disk_usage: GaugeVec,
    disk_free: GaugeVec,
    network_receive_speed: GaugeVec,
    network_send_speed: GaugeVec,
    sampler: std::sync::Mutex<crate::host::Sampler>,
}

/// The `troupe_gcs_*` gauges of a node's GCS member, read at each render.
struct MemberGauges {
    registry: Registry,
    is_leader: IntGauge,
    term: IntGauge,
    last_log_index: IntGauge,
    last_applied_index: IntGauge,
    apply_lag: IntGauge,
    commit_index: IntGauge,
    commit_lag: IntGauge,
}

impl MemberGauges {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        Ok(MemberGauges {
            is_leader: gauge("troupe_gcs_is_leader", "1 if this node's GCS member leads.")?,
            term: gauge(
                "troupe_gcs_term",
                "The Raft term this node's GCS member is in.",
            )?,
            last_log_index: gauge(
                "troupe_gcs_last_log_index",
                "The last Raft log index this node's GCS member holds.",
            )?,
            last_applied_index: gauge(
                "troupe_gcs_last_applied_index",
                "The last Raft log index this node's GCS member applied.",
            )?,
            apply_lag: gauge(
                "troupe_gcs_apply_lag_entries",
                "Log entries this node's GCS member holds but has not applied.",
            )?,
            commit_index: gauge(
                "troupe_gcs_commit_index",
                "On the GCS leader, the highest log index a majority holds; elsewhere the last applied index.",
            )?,
            commit_lag: gauge(
                "troupe_gcs_commit_lag_entries",
                "Log entries this node's GCS member holds beyond troupe_gcs_commit_index (on the leader: written, not yet held by a majority).",
            )?,
            registry,
        })
    }

    /// The member's families, read now (with its write-latency histogram).
    fn gather(&self, member: &GcsMember) -> Vec<prometheus::proto::MetricFamily> {
        let status = member.status();
        let last = status.last_log_index.unwrap_or(0);
        let applied = status.last_applied_index.unwrap_or(0);
        self.is_leader.set(i64::from(member.is_leader()));
        self.term.set(status.term as i64);
        self.last_log_index.set(last as i64);
        self.last_applied_index.set(applied as i64);
        self.apply_lag.set(last.saturating_sub(applied) as i64);
        let commit = member.commit_index().unwrap_or(0);
        self.commit_index.set(commit as i64);
        self.commit_lag.set(last.saturating_sub(commit) as i64);
        let mut families = self.registry.gather();
        families.extend(prometheus::core::Collector::collect(member.write_latency()));
        families
    }
}

const LATENCY_BUCKETS_MS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// The labels Ray puts on a replica's own series (its request counter,
/// error counter and latency histogram carry `route` too).
const REPLICA: &[&str] = &["application", "deployment", "replica"];

/// The labels of a router's series (Ray adds `handle` and `actor_id`,
/// naming the handle; Troupe has one router per deployment per process,
/// which the scrape's `instance` names).
const ROUTER: &[&str] = &["application", "deployment"];

impl ServeMetrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let registered = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registered(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS_MS.to_vec()),
                    labels,
                )?;
                registered(Box::new(h.clone()))?;
                Ok(h)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registered(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauges =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                registered(Box::new(g.clone()))?;
                Ok(g)
            };
        let replica_route = [REPLICA, &["route"]].concat();
        Ok(ServeMetrics {
            http_requests: counter(
                "ray_serve_num_http_requests_total",
                "The number of HTTP requests processed.",
                &["route", "method", "application", "status_code"],
            )?,
            http_latency_ms: histogram(
                "ray_serve_http_request_latency_ms",
                "The end-to-end latency of HTTP requests (measured from the Serve HTTP proxy), in milliseconds.",
                &["method", "route", "application", "status_code"],
            )?,
            http_errors: counter(
                "ray_serve_num_http_error_requests_total",
                "The number of errored HTTP responses.",
                &["route", "error_code", "method", "application"],
            )?,
            ongoing_http: gauges(
                "ray_serve_num_ongoing_http_requests",
                "The number of ongoing requests in this HTTP proxy.",
                &["node_id", "node_ip_address"],
            )?,
            deployment_queued: gauges(
                "ray_serve_deployment_queued_queries",
                "The current number of queries to this deployment waiting to be assigned to a replica.",
                ROUTER,
            )?,
            scheduling_tasks: gauges(
                "ray_serve_num_scheduling_tasks",
                "The number of request routing tasks in the router (in Troupe: requests waiting for a replica).",
                ROUTER,
            )?,
            scheduling_tasks_in_backoff: gauges(
                "ray_serve_num_scheduling_tasks_in_backoff",
                "The number of request routing tasks in the router that are undergoing backoff (in Troupe: requests waiting until a replica has room).",
                ROUTER,
            )?,
            replica_processing: gauges(
                "ray_serve_replica_processing_queries",
                "The current number of queries being processed.",
                REPLICA,
            )?,
            deployment_requests: counter(
                "ray_serve_deployment_request_counter_total",
                "The number of queries that have been processed in this replica.",
                &replica_route,
            )?,
            deployment_errors: counter(
                "ray_serve_deployment_error_counter_total",
                "The number of exceptions that have occurred in this replica.",
                &[&replica_route[..], &["exception_type"]].concat(),
            )?,
            deployment_latency_ms: histogram(
                "ray_serve_deployment_processing_latency_ms",
                "The latency for queries to be processed, in milliseconds.",
                &replica_route,
            )?,
            replica_healthy: gauges(
                "ray_serve_deployment_replica_healthy",
                "Tracks whether this deployment replica is healthy. 1 means healthy, 0 means unhealthy.",
                REPLICA,
            )?,
            control_loop_duration_s: {
                let g = GaugeVec::new(
                    Opts::new(
                        "ray_serve_controller_control_loop_duration_s",
                        "The duration of the last control loop.",
                    ),
                    &[],
                )?;
                registered(Box::new(g.clone()))?;
                g
            },
            control_loops: gauges(
                "ray_serve_controller_num_control_loops",
                "The number of control loops performed by the controller. Increases monotonically over the controller's lifetime (actor_id: the node whose controller ran them).",
                &["actor_id"],
            )?,
            member: MemberGauges::new()?,
            request_retries: counter(
                "troupe_router_retries_total",
                "Requests a router sent again to another replica after an attempt failed (replica gone, or lost in flight with retry_lost_requests).",
                ROUTER,
            )?,
            autoscaling_target: gauges(
                "ray_serve_autoscaling_target_replicas",
                "The target number of replicas for an autoscaled deployment.",
                ROUTER,
            )?,
            autoscaling_decisions: counter(
                "troupe_serve_autoscaling_decisions_total",
                "Changes of an autoscaled deployment's target replica count.",
                ROUTER,
            )?,
            autoscaling_load: {
                let g = GaugeVec::new(
                    Opts::new(
                        "ray_serve_autoscaling_total_requests",
                        "Total number of requests as seen by the autoscaler (queued plus in flight, summed over the reporting routers). This is the input to the autoscaling decision.",
                    ),
                    ROUTER,
                )?;
                registered(Box::new(g.clone()))?;
                g
            },
            node_ejected: gauges(
                "troupe_node_ejected",
                "1 while this process's calls have ejected the node from routing (refused, lost or silent connections).",
                &["node"],
            )?,
            node_ejections: {
                let c = IntCounter::new(
                    "troupe_node_ejections_total",
                    "Nodes ejected from routing by this process's calls since it started.",
                )?;
                registered(Box::new(c.clone()))?;
                c
            },
            watch_events: {
                let c = IntCounter::new(
                    "troupe_gcs_watch_events_total",
                    "Key events (puts, deletes) this process's cluster view received through GCS watches.",
                )?;
                registered(Box::new(c.clone()))?;
                c
            },
            watches: gauge(
                "troupe_gcs_watches",
                "Selections of keys this process's cluster view follows, one GCS watch each (1 on GCS members' nodes: all of /troupe/).",
            )?,
            batch_size: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "troupe_serve_batch_size",
                        "Items per batch of a replica's batcher.",
                    )
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]),
                    &["batcher"],
                )?;
                registered(Box::new(h.clone()))?;
                h
            },
            host: {
                let g = |name: &str, help: &str| -> Result<GaugeVec, prometheus::Error> {
                    let g = GaugeVec::new(Opts::new(name, help), &["ip"])?;
                    registered(Box::new(g.clone()))?;
                    Ok(g)
                };
                HostGauges {
                    cpu_utilization: g(
                        "ray_node_cpu_utilization",
                        "Total CPU usage on the host, percentage (since the previous scrape, at least 1 s).",
                    )?,
                    mem_used: g("ray_node_mem_used", "Memory used on the host (total minus available), bytes.")?,
                    mem_total: g("ray_node_mem_total", "Total memory on the host, bytes.")?,
                    disk_usage: g("ray_node_disk_usage", "Disk used on the host's / filesystem, bytes.")?,
                    disk_free: g("ray_node_disk_free", "Disk free on the host's / filesystem, bytes.")?,
                    network_receive_speed: g(
                        "ray_node_network_receive_speed",
                        "Bytes received per second on the host's e* interfaces.",
                    )?,
                    network_send_speed: g(
                        "ray_node_network_send_speed",
                        "Bytes sent per second on the host's e* interfaces.",
                    )?,
                    sampler: Default::default(),
                }
            },
            registry,
        })
    }

    /// Reads the host's resources into the `ray_node_*` gauges, labelled
    /// with this node's `ip` (before a render). Rates appear from the
    /// second reading on, at least a second after the first.
    pub fn record_host(&self, ip: &str) {
        let (counters, host) = crate::host::read();
        let h = &self.host;
        let set = |g: &GaugeVec, v: Option<f64>| match v {
            Some(v) => g.with_label_values(&[ip]).set(v),
            None => {
                let _ = g.remove_label_values(&[ip]);
            }
        };
        set(&h.mem_used, host.mem_used.map(|v| v as f64));
        set(&h.mem_total, host.mem_total.map(|v| v as f64));
        set(&h.disk_usage, host.disk_used.map(|v| v as f64));
        set(&h.disk_free, host.disk_free.map(|v| v as f64));
        let rates = counters.and_then(|c| {
            let mut sampler = h.sampler.lock().unwrap_or_else(|p| p.into_inner());
            sampler.observe(std::time::Instant::now(), c)
        });
        set(&h.cpu_utilization, rates.map(|r| r.cpu_percent));
        set(&h.network_receive_speed, rates.map(|r| r.rx_bytes_per_s));
        set(&h.network_send_speed, rates.map(|r| r.tx_bytes_per_s));
    }

    /// The page `/metrics` serves, with the GCS member's gauges read now.
    pub fn render(&self, member: Option<&GcsMember>) -> String {
        let mut families = self.registry.gather();
        if let Some(member) = member {
            families.extend(self.member.gather(member));
            families.sort_by(|a, b| a.name().cmp(b.name()));
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
        let seen = self.node_ejections.get();
        self.node_ejections
            .inc_by((health.total_ejections() as u64).saturating_sub(seen));
    }

    /// Copies what the cluster view received into the counters (before a
    /// render).
    pub fn record_view(&self, stats: &troupe_worker::WatchStats) {
        let seen = self.watch_events.get();
        self.watch_events
            .inc_by(stats.events().saturating_sub(seen));
        self.watches.set(stats.follows() as i64);
    }

    /// One round of the serve controller on node `node`, which took
    /// `seconds`.
    pub fn record_control_loop(&self, node: &str, seconds: f64) {
        self.control_loop_duration_s
            .with_label_values(&[] as &[&str])
            .set(seconds);
        self.control_loops.with_label_values(&[node]).inc();
    }

    /// This node stopped running the serve controller: its loop series
    /// go (the next controller's node exports them).
    pub fn forget_control_loops(&self) {
        self.control_loop_duration_s.reset();
        self.control_loops.reset();
    }

    /// A router's queue length, in Ray's three router gauges: queued
    /// queries, scheduling tasks and those in backoff (in Troupe one
    /// number: a request waits in the queue only because no replica has
    /// room, and is placed at once otherwise).
    pub fn record_queue(&self, app: &str, deployment: &str, queued: usize) {
        let labels = [app, deployment];
        for gauge in [
            &self.deployment_queued,
            &self.scheduling_tasks,
            &self.scheduling_tasks_in_backoff,
        ] {
            gauge.with_label_values(&labels).set(queued as i64);
        }
    }

    /// Sets `ray_serve_deployment_replica_healthy` to `health` (the
    /// replicas the controller knows, as `[application, deployment,
    /// replica]` and 1 or 0) and removes the series of replicas no longer
    /// in it; `shown` is what the previous call set, and becomes this
    /// call's.
    pub fn record_replica_health(
        &self,
        health: &[([String; 3], i64)],
        shown: &mut std::collections::BTreeSet<[String; 3]>,
    ) {
        let now: std::collections::BTreeSet<[String; 3]> =
            health.iter().map(|(labels, _)| labels.clone()).collect();
        for gone in shown.difference(&now) {
            let labels = [gone[0].as_str(), gone[1].as_str(), gone[2].as_str()];
            let _ = self.replica_healthy.remove_label_values(&labels);
        }
        for (labels, value) in health {
            let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
            self.replica_healthy.with_label_values(&labels).set(*value);
        }
        *shown = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::proto::MetricType;

    /// Metrics whose every vector has a child, so every family is
    /// gathered.
    fn every_family() -> ServeMetrics {
        let m = ServeMetrics::new().unwrap();
        m.http_requests
            .with_label_values(&["/a", "GET", "a", "200"]);
        m.http_latency_ms
            .with_label_values(&["GET", "/a", "a", "200"])
            .observe(1.0);
        m.http_errors.with_label_values(&["/a", "500", "GET", "a"]);
        m.ongoing_http.with_label_values(&["n", "127.0.0.1"]);
        m.record_queue("a", "d", 0);
        m.replica_processing.with_label_values(&["a", "d", "r"]);
        m.deployment_requests
            .with_label_values(&["a", "d", "r", "/a"]);
        m.deployment_errors
            .with_label_values(&["a", "d", "r", "/a", "Application"]);
        m.deployment_latency_ms
            .with_label_values(&["a", "d", "r", "/a"])
            .observe(1.0);
        m.record_replica_health(
            &[(["a".into(), "d".into(), "r".into()], 1)],
            &mut Default::default(),
        );
        m.record_control_loop("n", 0.01);
        m.batch_size.with_label_values(&["b"]).observe(1.0);
        m.request_retries.with_label_values(&["a", "d"]);
        m.autoscaling_target.with_label_values(&["a", "d"]);
        m.autoscaling_decisions.with_label_values(&["a", "d"]);
        m.autoscaling_load.with_label_values(&["a", "d"]);
        m.node_ejected.with_label_values(&["n"]);
        m
    }

    #[test]
    fn every_series_is_rays_or_troupes_and_counters_end_in_total() {
        let m = every_family();
        let families: Vec<_> = m
            .registry
            .gather()
            .into_iter()
            .chain(m.member.registry.gather())
            .collect();
        assert_eq!(
            families.len(),
            30,
            "a family was added: touch it in every_family"
        );
        for family in families {
            let name = family.name();
            assert!(
                name.starts_with("ray_serve_") || name.starts_with("troupe_"),
                "{name}: neither Ray's nor Troupe's"
            );
            if family.get_field_type() == MetricType::COUNTER {
                assert!(name.ends_with("_total"), "{name}: a counter without _total");
            }
        }
    }

    #[test]
    fn a_node_without_a_gcs_member_exports_no_member_gauges() {
        let m = every_family();
        let page = m.render(None);
        for name in [
            "troupe_gcs_is_leader",
            "troupe_gcs_term",
            "troupe_gcs_last_log_index",
            "troupe_gcs_last_applied_index",
            "troupe_gcs_apply_lag_entries",
            "troupe_gcs_commit_index",
            "troupe_gcs_commit_lag_entries",
            troupe_gcs::member::WRITE_LATENCY_METRIC,
        ] {
            assert!(
                !page.contains(name),
                "{name} on a node without a member:\n{page}"
            );
        }
        // The view's series are the process's own: every node has them.
        assert!(page.contains("troupe_gcs_watches 0\n"), "{page}");
    }

    #[test]
    fn only_the_controllers_node_exports_its_rounds() {
        let m = ServeMetrics::new().unwrap();
        assert!(!m.render(None).contains("ray_serve_controller_"));
        m.record_control_loop("node-1", 0.25);
        m.record_control_loop("node-1", 0.5);
        let page = m.render(None);
        assert!(
            page.contains("ray_serve_controller_control_loop_duration_s 0.5\n"),
            "{page}"
        );
        assert!(
            page.contains("ray_serve_controller_num_control_loops{actor_id=\"node-1\"} 2\n"),
            "{page}"
        );
        m.forget_control_loops();
        assert!(!m.render(None).contains("ray_serve_controller_"));
    }

    #[test]
    fn a_replica_the_controller_no_longer_knows_loses_its_health_series() {
        let m = ServeMetrics::new().unwrap();
        let labels = |r: &str| ["a".to_owned(), "d".to_owned(), r.to_owned()];
        let mut shown = Default::default();
        m.record_replica_health(&[(labels("r1"), 1), (labels("r2"), 0)], &mut shown);
        m.record_replica_health(&[(labels("r2"), 1)], &mut shown);
        let page = m.render(None);
        assert!(!page.contains("replica=\"r1\""), "{page}");
        assert!(
            page.contains(
                "ray_serve_deployment_replica_healthy{application=\"a\",deployment=\"d\",replica=\"r2\"} 1"
            ),
            "{page}"
        );
        m.record_replica_health(&[], &mut shown);
        assert!(!m.render(None).contains("replica_healthy{"));
    }

    /// The series names an expression of Troupe's Grafana dashboard uses
    /// (identifiers starting `troupe_` or `ray_`).
    fn series_in(expr: &str) -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|t| t.starts_with("troupe_") || t.starts_with("ray_"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_grafana_dashboard_is_valid_and_charts_only_exported_series() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../examples/grafana/troupe.json"))
                .expect("examples/grafana/troupe.json is JSON");
        assert_eq!(dashboard["title"], "Troupe");
        assert!(dashboard["uid"].is_string());
        let m = every_family();
        let exported: std::collections::BTreeMap<String, MetricType> = m
            .registry
            .gather()
            .iter()
            .chain(&m.member.registry.gather())
            .map(|f| (f.name().to_owned(), f.get_field_type()))
            .chain([(
                troupe_gcs::member::WRITE_LATENCY_METRIC.to_owned(),
                MetricType::HISTOGRAM,
            )])
            .collect();
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut ids = std::collections::BTreeSet::new();
        let mut charted = std::collections::BTreeSet::new();
        for panel in panels {
            assert!(
                ids.insert(panel["id"].as_u64().expect("a panel id")),
                "{panel}"
            );
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{panel}");
            for target in targets {
                let expr = target["expr"].as_str().expect("an expr");
                let names = series_in(expr);
                assert!(!names.is_empty(), "{expr} names no series");
                for name in names {
                    let family = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| {
                            let base = name.strip_suffix(suffix)?;
                            (exported.get(base) == Some(&MetricType::HISTOGRAM)).then_some(base)
                        })
                        .unwrap_or(&name);
                    assert!(
                        exported.contains_key(family),
                        "{expr}: Troupe exports no {name}"
                    );
                    charted.insert(family.to_owned());
                }
            }
        }
        // GCS leader, term, lags, write latency; ejections and retries.
        for needed in [
            "troupe_gcs_is_leader",
            "troupe_gcs_term",
            "troupe_gcs_commit_lag_entries",
            "troupe_gcs_apply_lag_entries",
            "troupe_gcs_write_latency_ms",
            "troupe_node_ejected",
            "troupe_node_ejections_total",
            "troupe_router_retries_total",
        ] {
            assert!(
                charted.contains(needed),
                "the dashboard does not chart {needed}"
            );
        }
        assert!(panels.len() >= 10, "{} panels", panels.len());
    }
}
