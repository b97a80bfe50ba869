//! Config files, without a cluster: golden files round-trip, invalid ones
//! give exactly the expected messages, `serve build`'s output is valid.

use std::path::PathBuf;

use troupe_serve::config::{self, HttpOptions, ServeConfig};

use crate::apps::catalog;

fn golden() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/config/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3, "the golden configs are missing");
    files
}

#[test]
fn golden_configs_round_trip_and_build() {
    for (name, text) in golden() {
        let parsed = config::parse_yaml(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = config::parse_yaml(&config::to_yaml(&parsed))
            .unwrap_or_else(|e| panic!("{name} printed does not parse: {e}"));
        assert_eq!(parsed, again, "{name} does not round-trip");
        // As JSON (the admin API's PUT body) too.
        let json = serde_json::to_value(&parsed).unwrap();
        assert_eq!(
            config::parse_value(&json).unwrap(),
            parsed,
            "{name} as JSON"
        );
        let specs = config::build_specs(&parsed, &catalog())
            .unwrap_or_else(|e| panic!("{name} does not build: {e}"));
        assert_eq!(specs.len(), parsed.applications.len());
    }
}

#[test]
fn a_full_config_reaches_the_specs() {
    let text = golden()
        .into_iter()
        .find(|(n, _)| n == "full.yaml")
        .unwrap()
        .1;
    let parsed = config::parse_yaml(&text).unwrap();
    assert_eq!(parsed.proxy_location, config::ProxyLocation::HeadOnly);
    assert_eq!(parsed.http_options.port, 8100);
    assert_eq!(parsed.logging_config.encoding, "JSON");
    assert!(!parsed.logging_config.enable_access_log);
    let specs = config::build_specs(&parsed, &catalog()).unwrap();
    let greet = &specs[0];
    assert_eq!(greet.name, "greet");
    assert_eq!(greet.route_prefix.as_deref(), Some("/greet"));
    let hello = &greet.deployments[0];
    assert_eq!(hello.num_replicas, 2);
    assert_eq!(hello.max_ongoing_requests, 8);
    assert_eq!(hello.max_queued_requests, Some(100));
    assert_eq!(hello.resources.cpus().to_f64(), 0.25);
    assert_eq!(hello.resources.custom("accel").to_f64(), 0.5);
    assert_eq!(hello.user_config.as_deref(), Some(r#"{"greeting":"hi"}"#));
    assert_eq!(
        (
            hello.health_check_period_ms,
            hello.health_check_timeout_ms,
            hello.graceful_shutdown_timeout_ms
        ),
        (5000, 10_000, 2000)
    );
    // The builder's own options stay where the config says nothing.
    let math = &specs[1];
    let by_name = |n: &str| math.deployments.iter().find(|d| d.name == n).unwrap();
    assert_eq!(by_name("triple").num_replicas, 1);
    assert_eq!(by_name("double").num_replicas, 1);
    assert_eq!(specs[2].route_prefix, None);
}

#[test]
fn ray_spellings_are_accepted_and_printed_in_ours() {
    let text = golden()
        .into_iter()
        .find(|(n, _)| n == "ray_style.yaml")
        .unwrap()
        .1;
    let parsed = config::parse_yaml(&text).unwrap();
    assert_eq!(parsed.logging_config.log_level, "INFO");
    let printed = config::to_yaml(&parsed);
    assert!(printed.contains("logging_config:"), "{printed}");
    assert!(printed.contains("actor_options:"), "{printed}");
    assert!(!printed.contains("ray_actor_options"), "{printed}");
}

#[test]
fn serve_build_describes_every_application_validly() {
    let described = config::describe(&catalog()).unwrap();
    let names: Vec<&str> = described
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["chain", "hello", "scaled"]);
    let scaled = &described.applications[2];
    assert_eq!(scaled.args, serde_json::json!({ "double": 2, "triple": 3 }));
    let triple = scaled
        .deployments
        .iter()
        .find(|d| d.name == "triple")
        .unwrap();
    assert_eq!(triple.num_replicas, Some(config::NumReplicas::Fixed(2)));
    assert_eq!(triple.max_ongoing_requests, Some(5));
    assert_eq!(triple.max_queued_requests, Some(-1));
    // What `serve build` writes parses back to the same and builds.
    let text = config::to_yaml(&described);
    let parsed = config::parse_yaml(&text).unwrap();
    assert_eq!(parsed, described);
    config::build_specs(&parsed, &catalog()).unwrap();
}

/// Every problem, one `path: message` per line, as `serve run CONFIG`
/// checks a file (schema and build in one pass).
fn problems(text: &str) -> String {
    match config::check_yaml(text, &catalog()) {
        Ok((c, _)) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_configs_name_every_problem_with_its_path() {
    let cases: &[(&str, &str)] = &[
        (
            "applications:\n  - {name: a, app: hello}\n  - name: b\n    app: hello\n    route_prefix: /b\n    deployments: [{name: hello, num_replicas: -2}]\n",
            "applications[1].deployments[0].num_replicas: must be >= 0, got -2",
        ),
        (
            "applications:\n  - name: a\n    app: hello\n    deployments: [{name: hello, num_replica: 2}]\n",
            "applications[0].deployments[0].num_replica: unknown field; did you mean \"num_replicas\"?",
        ),
        (
            "proxy_location: EveryNodes\napplications: []\n",
            "proxy_location: must be one of EveryNode, HeadOnly, Disabled, got \"EveryNodes\"; did you mean \"EveryNode\"?",
        ),
        (
            "applications:\n  - name: a\n    import_path: models.text:helo\n",
            "applications[0].import_path: \"models.text:helo\" names application builder \"helo\" (the last component after ':' or '.'), and this binary has none by that name; did you mean \"hello\"? it has: chain, hello, scaled (write e.g. `import_path: module:chain`)",
        ),
        (
            "applications:\n  - name: a\n",
            "applications[0]: missing field \"import_path\" (Ray's `module:builder`) or \"app\" (the registered application builder; `troupe serve build` lists them)",
        ),
        (
            "http_options: {port: 70000, request_timeout_s: 0, hostt: x}\nlogging_config: {encoding: XML}\napplications:\n  - {name: 'a b', app: hello, route_prefix: api}\n",
            "http_options.hostt: unknown field; did you mean \"host\"?\nhttp_options.port: must be <= 65535, got 70000\nhttp_options.request_timeout_s: must be a positive number of seconds, got 0\nlogging_config.encoding: must be one of TEXT, JSON, got \"XML\"\napplications[0].name: application name \"a b\" contains ' '; use letters, digits, '-', '_' and '.' (Troupe is stricter than Ray here, deliberately: the name is part of the control store's keys and of replica names)\napplications[0].route_prefix: must start with '/', got \"api\"",
        ),
        (
            "applications:\n  - {name: a, app: hello}\n  - {name: a, app: hello}\n",
            "applications[1].name: application name \"a\" is used twice; names must be unique\napplications[1].route_prefix: route_prefix \"/\" is also application \"a\"'s; prefixes must be unique",
        ),
        (
            "applications:\n  - {name: a, app: helo}\n",
            "applications[0].app: no application builder named \"helo\" in this binary; did you mean \"hello\"? it has: chain, hello, scaled",
        ),
        (
            "applications:\n  - name: a\n    app: scaled\n    args: {double: 2, quadruple: 4}\n    deployments: [{name: tripple, num_replicas: 1}]\n",
            "applications[0].args: do not fit application builder \"scaled\": unknown field `quadruple`, expected `double` or `triple`",
        ),
        (
            "applications:\n  - name: a\n    app: scaled\n    deployments: [{name: tripple, num_replicas: 1}]\n",
            "applications[0].deployments[0].name: application \"scaled\" has no deployment named \"tripple\"; did you mean \"triple\"? it has: double, triple, ensemble",
        ),
        (
            "applications:\n  - name: a\n    app: hello\n    args: {x: 1}\n",
            "applications[0].args: do not fit application builder \"hello\": this application takes no arguments, got {\"x\":1}",
        ),
        (
            "applications:\n  - name: a\n    app: hello\n    deployments:\n      - name: hello\n        actor_options: {num_cpus: -1, resources: {accel: x}}\n",
            "applications[0].deployments[0].actor_options.num_cpus: must be >= 0, got -1\napplications[0].deployments[0].actor_options.resources.accel: must be a number >= 0, got \"x\"",
        ),
        (
            "applications:\n  - name: a\n    app: hello\n    deployments:\n      - name: hello\n        autoscaling_config: {min_replicas: 3, max_replicas: 2}\n",
            "applications[0].deployments[0].autoscaling_config.min_replicas: must be <= max_replicas (2), got 3",
        ),
        (
            "applications:\n  - name: a\n    app: hello\n    deployments:\n      - name: hello\n        num_replicas: 2\n        autoscaling_config: {min_replicas: 1, max_replicas: 2}\n",
            "applications[0].deployments[0].num_replicas: set num_replicas or autoscaling_config, not both (or `num_replicas: auto` with autoscaling_config, which overrides auto's defaults)",
        ),
        (
            "applications:\n  - name: a\n    app: hello\n    deployments:\n      - name: hello\n        num_replicas: auto\n        autoscaling_config: {max_replicas: 4, downscale_delay_s: -1}\n",
            "applications[0].deployments[0].autoscaling_config.downscale_delay_s: must be a number of seconds >= 0, got -1",
        ),
        ("apps: []\n", "apps: unknown field; expected one of \"proxy_location\", \"http_options\", \"logging_config\", \"applications\", \"controller_options\", \"tracing_config\", \"target_capacity\", \"grpc_options\"\nmissing field \"applications\" (a list; `[]` for none)"),
        ("", "the config is empty; it needs at least `applications: []`"),
        ("applications: 3\n", "applications: must be a list, got a number"),
    ];
    for (text, expected) in cases {
        assert_eq!(&problems(text), expected, "for config:\n{text}");
    }
}

#[test]
fn text_that_is_not_yaml_says_so() {
    let message = problems("applications: [\n");
    assert!(message.starts_with("not valid YAML: "), "{message}");
}

#[test]
fn default_config_values_follow_ray() {
    let c: ServeConfig = config::parse_yaml("applications: []").unwrap();
    assert_eq!(c.proxy_location, config::ProxyLocation::EveryNode);
    assert_eq!(c.http_options.port, 8000);
    assert_eq!(c.logging_config.log_level, "INFO");
    assert!(c.logging_config.enable_access_log);
}

#[test]
fn one_answer_lists_schema_errors_unknown_builders_and_deployments_and_refusals() {
    let text = "\
applications:
  - name: a
    app: hello
    route_prefix: api
    deployments:
      - name: helo
        num_replicas: 2
  - name: b
    app: chian
    route_prefix: /b
  - name: c
    app: scaled
    route_prefix: /c
    deployments:
      - name: double
        num_replicas: 0
      - name: triple
        ray_actor_options: {num_cpu: 1}
";
    let got = problems(text);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(
        lines,
        [
            // The schema's, in file order.
            "applications[0].route_prefix: must start with '/', got \"api\"",
            "applications[2].deployments[0].num_replicas: must be >= 1, got 0: a deployment without replicas cannot answer (its requests would wait for a replica until they time out); to scale to zero when idle, set autoscaling_config with min_replicas: 0 instead",
            "applications[2].deployments[1].ray_actor_options.num_cpu: unknown field; did you mean \"num_cpus\"?",
            // Then the build's: an unknown deployment, an unknown builder.
            "applications[0].deployments[0].name: application \"hello\" has no deployment named \"helo\"; did you mean \"hello\"? it has: hello",
            "applications[1].app: no application builder named \"chian\" in this binary; it has: chain, hello, scaled",
        ],
        "{got}"
    );
}

#[test]
fn paths_are_spelled_as_the_file_spells_them() {
    let got = problems(
        "logging: {log_level: LOUD}\napplications:\n  - name: a\n    app: hello\n    deployments:\n      - name: hello\n        ray_actor_options: {num_cpus: -1, resources: {accel: x}}\n",
    );
    assert_eq!(
        got,
        "logging.log_level: must be one of ERROR, WARN, INFO, DEBUG, TRACE (or Ray's CRITICAL, FATAL, WARNING, NOTSET, or a Python level number 0, 10, 20, 30, 40, 50), got \"LOUD\"\n\
         applications[0].deployments[0].ray_actor_options.num_cpus: must be >= 0, got -1\n\
         applications[0].deployments[0].ray_actor_options.resources.accel: must be a number >= 0, got \"x\""
    );
    // The main spelling keeps its own paths.
    assert!(problems(
        "applications:\n  - name: a\n    app: hello\n    deployments: [{name: hello, actor_options: {num_cpus: -1}}]\n"
    )
    .starts_with("applications[0].deployments[0].actor_options.num_cpus:"));
}

#[test]
fn build_errors_keep_the_file_indices_after_an_entry_that_is_not_a_mapping() {
    let got = problems(
        "applications:\n  - 3\n  - {name: b, app: helo}\n  - name: c\n    app: hello\n    route_prefix: /c\n    deployments: [7, {name: hallo}]\n",
    );
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 4, "{got}");
    assert_eq!(lines[0], "applications[0]: must be a mapping, got a number");
    assert_eq!(
        lines[1],
        "applications[2].deployments[0]: must be a mapping, got a number"
    );
    assert!(
        lines[2].starts_with("applications[1].app: no application builder named \"helo\""),
        "{got}"
    );
    assert!(
        lines[3].starts_with("applications[2].deployments[1].name: application \"hello\" has no deployment named \"hallo\""),
        "{got}"
    );
}

#[test]
fn http_options_a_running_cluster_does_not_apply_are_set_aside_with_a_warning_each() {
    let text = "http_options: {host: 0.0.0.0, port: 8100, request_timeout_s: 30}\napplications:\n  - {name: a, app: hello}\n";
    // Accepted (Ray Serve accepts them too, and `serve build` writes
    // `host: 0.0.0.0`); `serve run CONFIG` applies them as they are.
    let (mut config, specs) = config::check_yaml(text, &catalog()).unwrap();
    assert_eq!(specs.len(), 1);
    assert_eq!(config.http_options.host, "0.0.0.0");
    assert_eq!(config.http_options.port, 8100);
    // On a running cluster: the defaults, and a warning per value.
    let warnings = config::set_aside_http_options(&mut config);
    assert_eq!(config.http_options, HttpOptions::default());
    let lines: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("http_options.host: \"0.0.0.0\" is not applied to a running cluster (accepted and ignored, as Ray Serve does): each node's HTTP proxy listens where `troupe start --http-listen HOST:PORT` put it"), "{lines:#?}");
    assert!(
        lines[1].starts_with("http_options.port: 8100 is not applied to a running cluster"),
        "{lines:#?}"
    );
    assert!(lines[2].starts_with("http_options.request_timeout_s: 30 is not applied: a running cluster's proxies keep the default; only `troupe serve run CONFIG`"), "{lines:#?}");
    // The defaults (or no http_options) give no warning.
    let defaults = "http_options: {host: 127.0.0.1, port: 8000, request_timeout_s: 60, max_body_bytes: 10485760}\napplications:\n  - {name: a, app: hello}\n";
    let (mut config, _) = config::check_yaml(defaults, &catalog()).unwrap();
    assert!(config::set_aside_http_options(&mut config).is_empty());
}

#[test]
fn no_replicas_from_a_config_or_from_code_is_refused() {
    let got = problems(
        "applications:\n  - name: a\n    app: hello\n    deployments: [{name: hello, num_replicas: 0}]\n",
    );
    assert!(
        got.starts_with("applications[0].deployments[0].num_replicas: must be >= 1, got 0:"),
        "{got}"
    );
    assert!(got.contains("autoscaling_config"), "{got}");
    // A config built in code gets the same refusal from the build.
    let mut c = config::parse_yaml(
        "applications:\n  - name: a\n    app: hello\n    deployments: [{name: hello, num_replicas: 1}]\n",
    )
    .unwrap();
    c.applications[0].deployments[0].num_replicas = Some(config::NumReplicas::Fixed(0));
    let got = config::build_specs(&c, &catalog()).unwrap_err().to_string();
    assert!(
        got.starts_with("applications[0].deployments[0].num_replicas: must be >= 1, got 0:"),
        "{got}"
    );
}
