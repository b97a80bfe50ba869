//! Every config field's domain against Ray Serve 2.60's schema
//! (`ray/serve/schema.py`, `ray/serve/config.py`): the edge values Ray
//! accepts are accepted, the ones past them refused at their path, and
//! Ray's fields Troupe lacks accepted when neutral and refused, saying it
//! is deliberate, when not.

use serde_json::Value;

use super::*;

/// A config whose only application has one deployment with `fields`.
fn deployment(fields: &str) -> Result<DeploymentConfig, String> {
    let text = format!("applications:\n  - name: a\n    import_path: m:x\n    deployments:\n      - name: d\n        {fields}\n");
    parse_yaml(&text)
        .map(|c| c.applications[0].deployments[0].clone())
        .map_err(|e| e.to_string())
}

/// A config whose only application has `fields`.
fn app(fields: &str) -> Result<AppConfig, String> {
    let text = format!("applications:\n  - import_path: m:x\n    {fields}\n");
    parse_yaml(&text)
        .map(|c| c.applications[0].clone())
        .map_err(|e| e.to_string())
}

/// A config with `top` at its top level.
fn top(top: &str) -> Result<ServeConfig, String> {
    parse_yaml(&format!("{top}\napplications: []\n")).map_err(|e| e.to_string())
}

const D: &str = "applications[0].deployments[0]";
const A: &str = "applications[0]";

/// Each `(fields, None)` parses; each `(fields, Some(message))` is refused
/// with exactly `message`.
fn check(parse: impl Fn(&str) -> Result<(), String>, cases: &[(&str, Option<&str>)]) {
    assert!(!cases.is_empty());
    for (fields, expected) in cases {
        let got = parse(fields);
        match expected {
            None => assert!(got.is_ok(), "{fields}: refused: {}", got.unwrap_err()),
            Some(message) => assert_eq!(got.err().as_deref(), Some(*message), "for {fields}"),
        }
    }
}

#[test]
fn deployment_fields_take_rays_domains() {
    let d = |f: &str| deployment(f).map(|_| ());
    check(
        d,
        &[
            // num_replicas: PositiveInt | "auto" | null.
            ("num_replicas: 1", None),
            ("num_replicas: auto", None),
            ("num_replicas: null", None),
            ("num_replicas: 2.0", Some("applications[0].deployments[0].num_replicas: must be an integer or \"auto\", got 2.0")),
            ("num_replicas: 1.5", Some("applications[0].deployments[0].num_replicas: must be an integer or \"auto\", got 1.5")),
            ("num_replicas: \"2\"", Some("applications[0].deployments[0].num_replicas: must be a number of replicas or \"auto\" (autoscaling), got \"2\"")),
            // max_ongoing_requests: int, gt=0 (lax: 2.0 is 2).
            ("max_ongoing_requests: 2.0", None),
            // max_ongoing_requests: int, gt=0.
            ("max_ongoing_requests: 1", None),
            ("max_ongoing_requests: 0", Some("applications[0].deployments[0].max_ongoing_requests: must be >= 1, got 0")),
            // max_queued_requests: StrictInt, -1 or >= 1.
            ("max_queued_requests: -1", None),
            ("max_queued_requests: 1", None),
            ("max_queued_requests: 0", Some("applications[0].deployments[0].max_queued_requests: must be -1 (no limit) or a positive integer up to 4294967295, got 0")),
            ("max_queued_requests: -2", Some("applications[0].deployments[0].max_queued_requests: must be -1 (no limit) or a positive integer up to 4294967295, got -2")),
            ("max_queued_requests: 2.0", Some("applications[0].deployments[0].max_queued_requests: must be an integer (-1 for no limit), got 2.0")),
            // user_config: Optional[Dict].
            ("user_config: {a: 1}", None),
            ("user_config: null", None),
            ("user_config: [1]", Some("applications[0].deployments[0].user_config: must be a mapping (handed to the deployment's reconfigure), got a list")),
            // graceful_shutdown_timeout_s: ge=0; the health checks: gt=0.
            ("graceful_shutdown_timeout_s: 0", None),
            ("graceful_shutdown_timeout_s: -1", Some("applications[0].deployments[0].graceful_shutdown_timeout_s: must be a number of seconds >= 0, got -1")),
            ("health_check_period_s: 0.1", None),
            ("health_check_period_s: 0", Some("applications[0].deployments[0].health_check_period_s: must be a positive number of seconds, got 0")),
            ("health_check_timeout_s: 0", Some("applications[0].deployments[0].health_check_timeout_s: must be a positive number of seconds, got 0")),
            // graceful_shutdown_wait_loop_s: ge=0, no effect in Troupe.
            ("graceful_shutdown_wait_loop_s: 0", None),
            ("graceful_shutdown_wait_loop_s: 5", None),
            ("graceful_shutdown_wait_loop_s: -1", Some("applications[0].deployments[0].graceful_shutdown_wait_loop_s: must be >= 0, got -1")),
            // ray_actor_options: num_cpus/num_gpus/memory ge=0 or null.
            ("ray_actor_options: {num_cpus: 0, num_gpus: null}", None),
            ("ray_actor_options: {num_cpus: null, memory: 0, runtime_env: {}, accelerator_type: null}", None),
            ("ray_actor_options: {num_gpus: -1}", Some("applications[0].deployments[0].ray_actor_options.num_gpus: must be >= 0, got -1")),
            ("ray_actor_options: {memory: -1}", Some("applications[0].deployments[0].ray_actor_options.memory: must be >= 0, got -1")),
            // Ray's ranges checked before Troupe's refusal.
            ("max_replicas_per_node: 0", Some("applications[0].deployments[0].max_replicas_per_node: must be >= 1, got 0")),
            ("rolling_update_percentage: 0", Some("applications[0].deployments[0].rolling_update_percentage: must be > 0 and <= 1, got 0")),
            ("rolling_update_percentage: 1.0", None),
            ("max_surge_percent: 101", Some("applications[0].deployments[0].max_surge_percent: must be <= 100, got 101")),
            ("max_surge_percent: 100", None),
            ("backpressure_config: {}", None),
            ("request_router_config: {}", None),
            ("placement_group_bundles: null", None),
        ],
    );
}

#[test]
fn autoscaling_fields_take_rays_domains() {
    let d = |f: &str| deployment(&format!("autoscaling_config: {{{f}}}")).map(|_| ());
    check(
        d,
        &[
            // The example: Ray's delays are NonNegativeFloat.
            ("upscale_delay_s: 0", None),
            ("downscale_delay_s: 0, downscale_to_zero_delay_s: 0", None),
            ("upscale_delay_s: -0.5", Some("applications[0].deployments[0].autoscaling_config.upscale_delay_s: must be a number of seconds >= 0, got -0.5")),
            // min_replicas NonNegativeInt, max_replicas PositiveInt.
            ("min_replicas: 0, max_replicas: 1", None),
            ("max_replicas: 0", Some("applications[0].deployments[0].autoscaling_config.max_replicas: must be >= 1, got 0")),
            ("min_replicas: -1", Some("applications[0].deployments[0].autoscaling_config.min_replicas: must be >= 0, got -1")),
            // The Optional ones take null.
            ("initial_replicas: null, target_ongoing_requests: null, upscaling_factor: null, downscaling_factor: null, downscale_to_zero_delay_s: null", None),
            // PositiveFloat.
            ("target_ongoing_requests: 0.001, look_back_period_s: 0.001, metrics_interval_s: 0.001", None),
            ("metrics_interval_s: 0", Some("applications[0].deployments[0].autoscaling_config.metrics_interval_s: must be a number of seconds > 0, got 0")),
            // Ray's own fields: neutral values only.
            ("aggregation_function: mean, policy: {}", None),
            ("aggregation_function: MEAN", None),
            ("aggregation_function: max", Some("applications[0].deployments[0].autoscaling_config.aggregation_function: Ray Serve's `aggregation_function` is not supported by Troupe (deliberately): Troupe's autoscaler averages the load over look_back_period_s; leave it out (or give \"mean\")")),
        ],
    );
    let a = deployment("autoscaling_config: {upscale_delay_s: 0}").unwrap();
    assert_eq!(a.autoscaling_config.unwrap().upscale_delay_s, 0.0);
}

#[test]
fn troupes_deliberate_differences_say_so_with_the_path() {
    let cases = [
        (
            "max_replicas_per_node: 2",
            format!("{D}.max_replicas_per_node"),
        ),
        (
            "placement_group_bundles: [{CPU: 1}]",
            format!("{D}.placement_group_bundles"),
        ),
        (
            "rolling_update_percentage: 0.2",
            format!("{D}.rolling_update_percentage"),
        ),
        (
            "ray_actor_options: {accelerator_type: A100}",
            format!("{D}.ray_actor_options.accelerator_type"),
        ),
        (
            "ray_actor_options: {runtime_env: {pip: [torch]}}",
            format!("{D}.ray_actor_options.runtime_env"),
        ),
        (
            "logging_config: {log_level: DEBUG}",
            format!("{D}.logging_config"),
        ),
    ];
    for (fields, path) in cases {
        let e = deployment(fields).unwrap_err();
        assert!(
            e.starts_with(&format!("{path}: Ray Serve's `")),
            "{fields}: {e}"
        );
        assert!(
            e.contains("is not supported by Troupe (deliberately)"),
            "{e}"
        );
    }
    let cases = [
        (
            "runtime_env: {working_dir: 's3://b/x.zip'}",
            format!("{A}.runtime_env"),
        ),
        (
            "external_scaler_enabled: true",
            format!("{A}.external_scaler_enabled"),
        ),
        (
            "autoscaling_policy: {policy_function: m:f}",
            format!("{A}.autoscaling_policy"),
        ),
    ];
    for (fields, path) in cases {
        let e = app(fields).unwrap_err();
        assert!(
            e.starts_with(&format!("{path}: Ray Serve's `")),
            "{fields}: {e}"
        );
    }
    let cases = [
        ("target_capacity: 50", "target_capacity"),
        ("tracing_config: {enabled: true}", "tracing_config"),
        (
            "grpc_options: {grpc_servicer_functions: ['m:add']}",
            "grpc_options.grpc_servicer_functions",
        ),
        (
            "http_options: {ssl_keyfile: k.pem}",
            "http_options.ssl_keyfile",
        ),
        (
            "logging_config: {logs_dir: /var/log}",
            "logging_config.logs_dir",
        ),
    ];
    for (fields, path) in cases {
        let e = top(fields).unwrap_err();
        assert!(e.starts_with(&format!("{path}: ")), "{fields}: {e}");
        assert!(e.contains("not supported by Troupe (deliberately)"), "{e}");
    }
}

#[test]
fn application_fields_take_rays_domains() {
    let a = |f: &str| app(f).map(|_| ());
    check(
        a,
        &[
            ("route_prefix: /", None),
            ("route_prefix: /a/b", None),
            ("route_prefix: null", None),
            ("route_prefix: /a/", Some("applications[0].route_prefix: must not end with '/' unless it is just \"/\", got \"/a/\"; write \"/a\"")),
            ("route_prefix: '/a/{id}'", Some("applications[0].route_prefix: cannot contain wildcards ('{' or '}'), got \"/a/{id}\"")),
            ("args: {}", None),
            ("args: [1]", Some("applications[0].args: must be a mapping of the builder's arguments, got a list")),
            ("runtime_env: {}", None),
            ("external_scaler_enabled: false", None),
            ("host: 0.0.0.0", Some("applications[0].host: host is set for one application; remove it and set http_options.host at the top level of the config only (as Ray Serve requires)")),
        ],
    );
    // Without a name, Ray's default name.
    assert_eq!(app("route_prefix: /").unwrap().name, DEFAULT_APP_NAME);
}

#[test]
fn import_path_follows_rays_form_and_names_a_builder_by_its_last_component() {
    for (path, builder) in [
        ("chain", "chain"),
        ("m:chain", "chain"),
        ("pkg.module:chain", "chain"),
        ("pkg.module.chain", "chain"),
        ("noop-chain", "noop-chain"),
    ] {
        assert_eq!(check_import_path(path), Ok(()), "{path}");
        assert_eq!(builder_of_import_path(path), builder, "{path}");
        let parsed = app(&format!("import_path: {path:?}")).unwrap();
        assert_eq!(parsed.app, builder);
        assert_eq!(parsed.import_path.as_deref(), Some(path));
    }
    for path in ["a:b:c", ":b", "a:", ".a", "a.", ""] {
        let e = app(&format!("import_path: {path:?}")).unwrap_err();
        assert!(
            e.starts_with("applications[0].import_path: "),
            "{path}: {e}"
        );
    }
    // `app` and `import_path` together must agree.
    assert!(app("app: x").is_ok());
    assert!(app("app: x\n    name: b").is_ok());
    let e = app("app: y").unwrap_err();
    assert_eq!(
        e,
        "applications[0].import_path: names builder \"x\", but `app` names \"y\"; give one of them"
    );
}

#[test]
fn top_level_fields_take_rays_domains() {
    let t = |f: &str| top(f).map(|_| ());
    check(
        t,
        &[
            ("proxy_location: HeadOnly", None),
            ("target_capacity: null", None),
            ("target_capacity: 100", None),
            ("target_capacity: 101", Some("target_capacity: must be <= 100, got 101")),
            ("grpc_options: {port: 9000, grpc_servicer_functions: [], request_timeout_s: null, enable_reflection: true}", None),
            ("controller_options: null", None),
            ("tracing_config: {}", None),
            ("tracing_config: {enabled: false, sampling_ratio: 0.5}", None),
            ("http_options: {request_timeout_s: null, root_path: '', keep_alive_timeout_s: 90, ssl_keyfile: null}", None),
            ("logging_config: {log_level: WARNING, additional_log_standard_attrs: []}", None),
            ("logging_config: {log_level: 10}", None),
            ("logging_config: {log_level: 15}", Some("logging_config.log_level: must be one of ERROR, WARN, INFO, DEBUG, TRACE (or Ray's CRITICAL, FATAL, WARNING, NOTSET, or a Python level number 0, 10, 20, 30, 40, 50), got 15")),
        ],
    );
    let levels = [
        ("CRITICAL", "ERROR"),
        ("WARNING", "WARN"),
        ("NOTSET", "TRACE"),
        ("10", "DEBUG"),
        ("20", "INFO"),
    ];
    for (given, level) in levels {
        let c = top(&format!("logging_config: {{log_level: {given}}}")).unwrap();
        assert_eq!(c.logging_config.log_level, level, "{given}");
    }
}

#[test]
fn what_rays_cli_sends_parses() {
    // `serve deploy` sends `ServeDeploySchema.model_dump(exclude_unset=True)`
    // as JSON: only what the file set, Ray's spellings.
    let body: Value = serde_json::json!({
        "applications": [{
            "name": "text",
            "route_prefix": "/text",
            "import_path": "troupe_examples.patterns:chain",
            "runtime_env": {},
            "deployments": [
                { "name": "count", "num_replicas": 2, "ray_actor_options": { "num_cpus": 0.25 } },
                { "name": "pipeline", "max_ongoing_requests": 8, "graceful_shutdown_timeout_s": 0.0,
                  "autoscaling_config": { "min_replicas": 1, "max_replicas": 3, "upscale_delay_s": 0 } },
            ],
        }],
    });
    let config = parse_value(&body).unwrap();
    let a = &config.applications[0];
    assert_eq!((a.app.as_str(), a.name.as_str()), ("chain", "text"));
    assert_eq!(a.deployments.len(), 2);
    assert_eq!(
        a.deployments[0].actor_options.as_ref().unwrap().num_cpus,
        0.25
    );
}
