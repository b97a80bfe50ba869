//! `GET /api/serve/applications/` as Ray Serve 2.60's clients read it: a
//! document that Ray's `ServeInstanceDetails` (pydantic, `extra="forbid"`
//! on the instance, application and deployment levels) parses, built from
//! the cluster's tables, with Troupe's states mapped to Ray's enums so
//! that Ray's `serve status` prints a true picture. Troupe's own fields
//! are added only where Ray's models ignore extra fields (a replica, a
//! deployment's `deployment_config` and `autoscaling_detail`, the
//! controller). Where Troupe has no such concept the field holds Ray's
//! documented neutral value; [`NEUTRAL_FIELDS`] lists them (and the docs
//! repeat the list). Pure: [`instance_details`] takes the state read.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use troupe_worker::schema::{self, ControllerTermRecord};
use troupe_worker::ClusterState;

use crate::config::{self, AppConfig, ServeConfig};
use crate::declarative::CONFIG_KEY;
use crate::spec::{
    AppSpec, AppState, AppStatus, DeploymentSpec, DeploymentState, DeploymentStatus, ReplicaState,
    APPS_PREFIX, DEPLOYED_AT_PREFIX, PROXY_LABEL, STATUS_PREFIX, TERM_KEY,
};

/// The Ray version whose REST API and schema Troupe implements (what
/// `GET /api/ray/version` reports).
pub const RAY_VERSION: &str = "2.60.0";

/// Ray's dashboard API version (`ray/dashboard/modules/version.py`).
pub const RAY_DASHBOARD_API_VERSION: &str = "4";

/// The fields Troupe fills with Ray's neutral value because it has no
/// such concept (or does not record it), as `path: value (why)`.
pub const NEUTRAL_FIELDS: &[&str] = &[
    "controller_info.actor_id, actor_name, worker_id, log_file_path: null (the serve controller is not an actor: it runs in the GCS leader's node process)",
    "grpc_options: null (no gRPC proxy)",
    "proxies.*.actor_id, actor_name, worker_id, log_file_path, node_instance_id: null (a proxy runs inside its node process)",
    "target_capacity: null (not supported)",
    "target_groups: [] (default)",
    "controller_health_metrics: Ray's default (left out)",
    "applications.*.docs_path: null (no generated API docs)",
    "applications.*.external_scaler_enabled: false (no external scaling API)",
    "applications.*.deployment_topology.nodes.*.outbound_deployments: [] (calls between deployments are not recorded)",
    "applications.*.last_deployed_time_s: 0 for an application deployed by a binary older than this field",
    "applications.*.deployments.*.recent_dead_replicas: [] (stopped replicas are not kept)",
    "applications.*.deployments.*.replicas.*.pid, worker_id, log_file_path, node_instance_id: null (a replica runs inside its node process)",
    "applications.*.deployments.*.replicas.*.start_time_s: 0 (replica start times are not recorded)",
    "applications.*.deployments.*.autoscaling_detail.metrics: null, metrics_health: \"healthy\", errors: []",
];

/// Ray's `ApplicationStatus` for Troupe's application state (the same
/// six names).
pub fn app_status(state: Option<AppState>) -> &'static str {
    state.map_or("NOT_STARTED", AppState::name)
}

/// Ray's `ReplicaState` for Troupe's replica state.
pub fn replica_state(state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Starting => "STARTING",
        ReplicaState::Running => "RUNNING",
        ReplicaState::Stopping => "STOPPING",
    }
}

/// Ray's `DeploymentStatus` and `DeploymentStatusTrigger` for a
/// deployment of an application in `app`: a deployment moving towards an
/// autoscaler's target is UPSCALING or DOWNSCALING (trigger AUTOSCALING),
/// as in Ray; otherwise the states map one to one, with the trigger that
/// explains them.
pub fn deployment_status(
    app: AppState,
    status: &DeploymentStatus,
    autoscaled: bool,
) -> (&'static str, &'static str) {
    if app == AppState::Deleting {
        return ("UPDATING", "DELETING");
    }
    let running = status
        .replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Running)
        .count();
    let target = status.target_replicas as usize;
    match status.state {
        DeploymentState::Healthy => ("HEALTHY", "CONFIG_UPDATE_COMPLETED"),
        DeploymentState::Updating if autoscaled && running < target => ("UPSCALING", "AUTOSCALING"),
        DeploymentState::Updating if autoscaled && running > target => {
            ("DOWNSCALING", "AUTOSCALING")
        }
        DeploymentState::Updating => ("UPDATING", "CONFIG_UPDATE_STARTED"),
        DeploymentState::Unhealthy => ("UNHEALTHY", "HEALTH_CHECK_FAILED"),
        DeploymentState::DeployFailed => ("DEPLOY_FAILED", "REPLICA_STARTUP_FAILED"),
    }
}

/// Ray's `AutoscalingStatus` for a deployment with `running` replicas
/// running towards `target`.
fn scaling_status(running: usize, target: u64) -> &'static str {
    match (running as u64).cmp(&target) {
        std::cmp::Ordering::Less => "UPSCALING",
        std::cmp::Ordering::Greater => "DOWNSCALING",
        std::cmp::Ordering::Equal => "STABLE",
    }
}

/// The host of a `host:port` address (Ray's `node_ip`).
fn host_of(addr: &str) -> String {
    match addr.rsplit_once(':') {
        Some((host, _)) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        None => addr.to_owned(),
    }
}

/// The `import_path` Ray's `ServeApplicationSchema` will accept for an
/// application deployed by `app`: the config's own if Ray's form allows
/// it, else `troupe:<builder>` (which names the same builder by the
/// rule of [`config::builder_of_import_path`]).
pub fn ray_import_path(app: &AppConfig) -> String {
    match &app.import_path {
        Some(p) if p.contains([':', '.']) && config::check_import_path(p).is_ok() => p.clone(),
        _ => format!("troupe:{}", app.app),
    }
}

/// A deployment's options as Ray's `DeploymentSchema` spells them, plus
/// Troupe's own (`retry_lost_requests`, `version`), which Ray ignores.
fn deployment_schema(spec: &DeploymentSpec) -> Value {
    let c = config::deployment_config(spec);
    let mut out = Map::new();
    out.insert("name".into(), json!(c.name));
    if let Some(n) = c.num_replicas {
        out.insert("num_replicas".into(), json!(n));
    }
    if let Some(a) = &c.autoscaling_config {
        out.insert("autoscaling_config".into(), json!(a));
    }
    out.insert("max_ongoing_requests".into(), json!(c.max_ongoing_requests));
    out.insert("max_queued_requests".into(), json!(c.max_queued_requests));
    if let Some(u @ Value::Object(_)) = &c.user_config {
        out.insert("user_config".into(), u.clone());
    }
    out.insert(
        "graceful_shutdown_timeout_s".into(),
        json!(c.graceful_shutdown_timeout_s),
    );
    out.insert(
        "health_check_period_s".into(),
        json!(c.health_check_period_s),
    );
    out.insert(
        "health_check_timeout_s".into(),
        json!(c.health_check_timeout_s),
    );
    if let Some(o) = &c.actor_options {
        out.insert(
            "ray_actor_options".into(),
            json!({ "num_cpus": o.num_cpus, "num_gpus": o.num_gpus, "resources": o.resources }),
        );
    }
    out.insert("retry_lost_requests".into(), json!(c.retry_lost_requests));
    out.insert("version".into(), json!(spec.version));
    Value::Object(out)
}

/// What one replica needs, as Ray's `required_resources`.
fn required_resources(spec: &DeploymentSpec) -> Value {
    let r = &spec.resources;
    let mut out = Map::new();
    out.insert("CPU".into(), json!(r.cpus().to_f64()));
    if r.gpus().to_f64() > 0.0 {
        out.insert("GPU".into(), json!(r.gpus().to_f64()));
    }
    for (name, amount) in r.custom_resources() {
        out.insert(name.to_owned(), json!(amount.to_f64()));
    }
    Value::Object(out)
}

/// An application's config as Ray's `ServeApplicationSchema` reads it:
/// what the config gave, `import_path` always (see [`ray_import_path`]),
/// `ray_actor_options` for `actor_options`; Troupe's `app` kept (Ray
/// ignores it).
pub fn deployed_app_config(app: &AppConfig) -> Value {
    let mut v = serde_json::to_value(app).expect("a config always serializes");
    v["import_path"] = json!(ray_import_path(app));
    if let Some(list) = v.get_mut("deployments").and_then(Value::as_array_mut) {
        for d in list.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(o) = d.remove("actor_options") {
                d.insert("ray_actor_options".into(), o);
            }
        }
    }
    v
}

/// The autoscaling detail of a deployment from Troupe's autoscaling
/// status (`controller::autoscaler::status_json`): Ray's fields, with
/// Troupe's kept beside them.
fn autoscaling_detail(troupe: Value, running: usize) -> Value {
    let target = troupe["target_replicas"].as_u64().unwrap_or(0);
    let decisions: Vec<Value> = troupe
        .get("last_decision")
        .filter(|d| d.is_object())
        .map(|d| {
            json!({
                "timestamp_s": d["at_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                "reason": d["reason"].as_str().unwrap_or_default(),
                "prev_num_replicas": d["from"].as_u64().unwrap_or(0),
                "curr_num_replicas": d["to"].as_u64().unwrap_or(0),
                "policy": "troupe",
            })
        })
        .into_iter()
        .collect();
    let mut out = match troupe {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    out.insert(
        "scaling_status".into(),
        json!(scaling_status(running, target)),
    );
    out.insert("decisions".into(), json!(decisions));
    out.insert("metrics".into(), Value::Null);
    out.insert("metrics_health".into(), json!("healthy"));
    out.insert("errors".into(), json!([]));
    Value::Object(out)
}

/// The whole `ServeInstanceDetails` document of `state`.
pub fn instance_details(state: &ClusterState) -> Value {
    let deployed: Option<ServeConfig> = state
        .extra
        .get(CONFIG_KEY.as_bytes())
        .and_then(|v| serde_json::from_slice::<Value>(v).ok())
        .and_then(|v| config::parse_value(&v).ok());
    let scaling = crate::controller::autoscaler::records(state);
    let node_ip = |id: &troupe_core::id::NodeId| state.nodes.get(id).map(|n| host_of(&n.addr));
    let mut apps = Map::new();
    for (key, value) in &state.extra {
        let Some(name) = key.strip_prefix(APPS_PREFIX.as_bytes()) else {
            continue;
        };
        let (Ok(name), Ok(spec)) = (std::str::from_utf8(name), schema::decode::<AppSpec>(value))
        else {
            continue;
        };
        let status = state
            .extra
            .get(format!("{STATUS_PREFIX}{name}").as_bytes())
            .and_then(|v| schema::decode::<AppStatus>(v).ok());
        let deployed_at = state
            .extra
            .get(format!("{DEPLOYED_AT_PREFIX}{name}").as_bytes())
            .and_then(|v| serde_json::from_slice::<f64>(v).ok())
            .unwrap_or(0.0);
        let app_config = deployed
            .as_ref()
            .and_then(|c| c.applications.iter().find(|a| a.name == name));
        let mut deployments = Map::new();
        for d in &spec.deployments {
            let empty = DeploymentStatus {
                state: DeploymentState::Updating,
                message: String::new(),
                target_replicas: d.num_replicas,
                replicas: Vec::new(),
            };
            let ds = status
                .as_ref()
                .and_then(|s| s.deployments.get(&d.name))
                .unwrap_or(&empty);
            let app_state = status.as_ref().map_or(AppState::NotStarted, |s| s.state);
            let (ray_status, trigger) = deployment_status(app_state, ds, d.autoscaling.is_some());
            let running = ds
                .replicas
                .iter()
                .filter(|r| r.state == ReplicaState::Running)
                .count();
            let replicas: Vec<Value> = ds
                .replicas
                .iter()
                .map(|r| {
                    json!({
                        "replica_id": r.id.to_string(),
                        "state": replica_state(r.state),
                        "pid": null,
                        "start_time_s": 0.0,
                        "node_id": r.node.map(|n| n.to_string()),
                        "node_ip": r.node.as_ref().and_then(node_ip),
                        "node_instance_id": null,
                        "actor_id": r.actor.to_string(),
                        "actor_name": crate::spec::replica_name(name, &d.name, r.version, r.id),
                        "worker_id": null,
                        "log_file_path": null,
                        "version": r.version,
                    })
                })
                .collect();
            let detail =
                crate::controller::autoscaler::status_json(&spec, &d.name, scaling.get(name))
                    .map(|t| autoscaling_detail(t, running));
            deployments.insert(
                d.name.clone(),
                json!({
                    "name": d.name,
                    "status": ray_status,
                    "status_trigger": trigger,
                    "message": ds.message,
                    "deployment_config": deployment_schema(d),
                    "target_num_replicas": ds.target_replicas,
                    "required_resources": required_resources(d),
                    "replicas": replicas,
                    "recent_dead_replicas": [],
                    "autoscaling_detail": detail,
                }),
            );
        }
        let topology_nodes: Map<String, Value> = spec
            .deployments
            .iter()
            .map(|d| {
                let node = json!({
                    "name": d.name,
                    "app_name": name,
                    "outbound_deployments": [],
                    "is_ingress": d.name == spec.ingress,
                });
                (d.name.clone(), node)
            })
            .collect();
        apps.insert(
            name.to_owned(),
            json!({
                "name": name,
                "route_prefix": spec.route_prefix,
                "docs_path": null,
                "status": app_status(status.as_ref().map(|s| s.state)),
                "message": status.as_ref().map(|s| s.message.clone()).unwrap_or_default(),
                "last_deployed_time_s": deployed_at,
                "deployed_app_config": app_config.map(deployed_app_config),
                "source": if app_config.is_some() { "declarative" } else { "imperative" },
                "deployments": deployments,
                "external_scaler_enabled": false,
                "deployment_topology": {
                    "app_name": name,
                    "nodes": topology_nodes,
                    "ingress_deployment": spec.ingress,
                },
            }),
        );
    }
    let controller = state
        .extra
        .get(TERM_KEY.as_bytes())
        .and_then(|v| schema::decode::<ControllerTermRecord>(v).ok());
    let controller_info = match &controller {
        Some(c) => json!({
            "node_id": c.node.to_string(),
            "node_ip": node_ip(&c.node),
            "node_instance_id": null,
            "actor_id": null,
            "actor_name": null,
            "worker_id": null,
            "log_file_path": null,
            "term": c.term,
        }),
        None => json!({}),
    };
    let proxies: BTreeMap<String, Value> = match deployed.as_ref().map(|c| c.proxy_location) {
        Some(config::ProxyLocation::Disabled) => BTreeMap::new(),
        _ => state
            .nodes
            .values()
            .filter(|n| n.labels.contains_key(PROXY_LABEL))
            .map(|n| {
                let proxy = json!({
                    "node_id": n.id.to_string(),
                    "node_ip": host_of(&n.addr),
                    "node_instance_id": null,
                    "actor_id": null,
                    "actor_name": null,
                    "worker_id": null,
                    "log_file_path": null,
                    "status": if n.draining { "DRAINING" } else { "HEALTHY" },
                });
                (n.id.to_string(), proxy)
            })
            .collect(),
    };
    json!({
        "controller_info": controller_info,
        "proxy_location": deployed.as_ref().map(|c| c.proxy_location),
        "http_options": deployed.as_ref().map(|c| &c.http_options),
        "grpc_options": null,
        "proxies": proxies,
        "applications": apps,
        "target_capacity": null,
        "target_groups": [],
        "restores_unset_config_options": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ReplicaStatus;
    use troupe_core::id::{ActorId, ReplicaId};

    fn status(
        state: DeploymentState,
        running: usize,
        starting: usize,
        target: u32,
    ) -> DeploymentStatus {
        let replica = |state| ReplicaStatus {
            id: ReplicaId::random(),
            actor: ActorId::random(),
            version: 1,
            state,
            node: None,
        };
        let mut replicas: Vec<_> = (0..running)
            .map(|_| replica(ReplicaState::Running))
            .collect();
        replicas.extend((0..starting).map(|_| replica(ReplicaState::Starting)));
        DeploymentStatus {
            state,
            message: String::new(),
            target_replicas: target,
            replicas,
        }
    }

    #[test]
    fn deployment_states_map_to_rays_status_and_trigger() {
        let cases = [
            (
                AppState::Running,
                status(DeploymentState::Healthy, 2, 0, 2),
                false,
                ("HEALTHY", "CONFIG_UPDATE_COMPLETED"),
            ),
            (
                AppState::Deploying,
                status(DeploymentState::Updating, 1, 1, 2),
                false,
                ("UPDATING", "CONFIG_UPDATE_STARTED"),
            ),
            (
                AppState::Deploying,
                status(DeploymentState::Updating, 1, 1, 2),
                true,
                ("UPSCALING", "AUTOSCALING"),
            ),
            (
                AppState::Deploying,
                status(DeploymentState::Updating, 3, 0, 1),
                true,
                ("DOWNSCALING", "AUTOSCALING"),
            ),
            (
                AppState::Deploying,
                status(DeploymentState::Updating, 2, 0, 2),
                true,
                ("UPDATING", "CONFIG_UPDATE_STARTED"),
            ),
            (
                AppState::Unhealthy,
                status(DeploymentState::Unhealthy, 1, 0, 2),
                false,
                ("UNHEALTHY", "HEALTH_CHECK_FAILED"),
            ),
            (
                AppState::DeployFailed,
                status(DeploymentState::DeployFailed, 0, 0, 2),
                false,
                ("DEPLOY_FAILED", "REPLICA_STARTUP_FAILED"),
            ),
            (
                AppState::Deleting,
                status(DeploymentState::Healthy, 2, 0, 2),
                false,
                ("UPDATING", "DELETING"),
            ),
        ];
        for (app, ds, autoscaled, expected) in cases {
            assert_eq!(
                deployment_status(app, &ds, autoscaled),
                expected,
                "{app:?} {ds:?}"
            );
        }
    }

    #[test]
    fn application_and_replica_states_are_rays_names() {
        let ray_apps = [
            "NOT_STARTED",
            "DEPLOYING",
            "DEPLOY_FAILED",
            "RUNNING",
            "UNHEALTHY",
            "DELETING",
        ];
        for state in [
            AppState::NotStarted,
            AppState::Deploying,
            AppState::Running,
            AppState::Unhealthy,
            AppState::DeployFailed,
            AppState::Deleting,
        ] {
            assert!(ray_apps.contains(&app_status(Some(state))), "{state:?}");
        }
        assert_eq!(app_status(None), "NOT_STARTED");
        assert_eq!(replica_state(ReplicaState::Starting), "STARTING");
        assert_eq!(replica_state(ReplicaState::Running), "RUNNING");
        assert_eq!(replica_state(ReplicaState::Stopping), "STOPPING");
        assert_eq!(scaling_status(1, 3), "UPSCALING");
        assert_eq!(scaling_status(3, 3), "STABLE");
        assert_eq!(scaling_status(4, 3), "DOWNSCALING");
    }

    #[test]
    fn the_deployed_config_always_has_an_import_path_ray_accepts() {
        let mut app = AppConfig {
            name: "a".into(),
            route_prefix: Some("/a".into()),
            app: "chain".into(),
            import_path: None,
            args: Value::Null,
            deployments: vec![config::DeploymentConfig {
                name: "d".into(),
                actor_options: Some(config::ActorOptions {
                    num_cpus: 0.5,
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        assert_eq!(ray_import_path(&app), "troupe:chain");
        app.import_path = Some("chain".into());
        assert_eq!(ray_import_path(&app), "troupe:chain");
        app.import_path = Some("models.text:chain".into());
        assert_eq!(ray_import_path(&app), "models.text:chain");
        let v = deployed_app_config(&app);
        assert_eq!(v["import_path"], "models.text:chain");
        assert_eq!(v["app"], "chain");
        assert_eq!(v["deployments"][0]["ray_actor_options"]["num_cpus"], 0.5);
        assert!(v["deployments"][0].get("actor_options").is_none());
        // What comes back names the same builder.
        let again = config::parse_value(&json!({ "applications": [v] })).unwrap();
        assert_eq!(again.applications[0].app, "chain");
    }

    #[test]
    fn every_neutral_field_is_listed_in_the_runbook() {
        let runbook = include_str!("../../../OPERATIONS.md");
        assert!(NEUTRAL_FIELDS.len() >= 10);
        for entry in NEUTRAL_FIELDS {
            let path = entry.split([':', ',']).next().unwrap();
            assert!(
                runbook.contains(&format!("`{path}`")),
                "OPERATIONS.md does not list {path}"
            );
        }
    }

    #[test]
    fn proxies_are_the_nodes_that_run_one_draining_ones_draining() {
        use troupe_core::id::NodeId;
        use troupe_worker::schema::NodeRecord;
        let node = |addr: &str, proxy: bool, draining: bool| NodeRecord {
            id: NodeId::random(),
            addr: addr.into(),
            data_addrs: Vec::new(),
            resources: Default::default(),
            labels: match proxy {
                true => [(PROXY_LABEL.to_string(), "127.0.0.1:8000".to_string())].into(),
                false => Default::default(),
            },
            started_at_ms: 0,
            gcs_member: false,
            draining,
            node_ttl_ms: 1000,
        };
        let nodes = [
            node("10.0.0.1:6380", true, false),
            node("10.0.0.2:6380", true, true),
            node("10.0.0.3:6380", false, false),
        ];
        let mut state = ClusterState::default();
        for n in &nodes {
            state.nodes.insert(n.id, n.clone());
        }
        let doc = instance_details(&state);
        let proxies = doc["proxies"].as_object().unwrap();
        assert_eq!(proxies.len(), 2, "{doc}");
        let first = &proxies[&nodes[0].id.to_string()];
        assert_eq!(
            (first["status"].as_str(), first["node_ip"].as_str()),
            (Some("HEALTHY"), Some("10.0.0.1"))
        );
        assert_eq!(proxies[&nodes[1].id.to_string()]["status"], "DRAINING");
    }

    #[test]
    fn an_empty_cluster_is_an_instance_without_applications() {
        let doc = instance_details(&ClusterState::default());
        assert_eq!(doc["applications"], json!({}));
        assert_eq!(doc["proxies"], json!({}));
        assert_eq!(doc["controller_info"], json!({}));
        assert_eq!(doc["restores_unset_config_options"], true);
        assert_eq!(host_of("127.0.0.1:6380"), "127.0.0.1");
        assert_eq!(host_of("[::1]:6380"), "::1");
    }
}
