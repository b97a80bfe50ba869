//! Tests of `parse.rs`: refused scenarios, with every problem's exact path
//! and message.

use super::parse_yaml;
use super::tests::{errors, parse, BASE};

#[test]
fn unknown_fields_suggest_the_closest_name() {
    let text = "name: t\nduraton_s: 100\ncluster: {node: 3}\nworkloads: \
                [{name: w, kind: http, path: /w, rate: 10}]\n";
    assert_eq!(
        errors(text),
        [
            "duraton_s: unknown field; did you mean \"duration_s\"?",
            "missing field \"duration_s\" (how long the load runs, seconds)",
            "cluster.node: unknown field; did you mean \"nodes\"?",
        ]
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    let text = BASE.replace("duration_s: 100", "duration_s: long")
        + "cluster: {nodes: 2.5, extra_args: [--port, 8000]}\nfaults: {timeline: 3}\n";
    assert_eq!(
        errors(&text),
        [
            "duration_s: must be a number, got a string",
            "cluster.nodes: must be an integer, got 2.5",
            "cluster.extra_args[1]: must be a string, got a number (quote it)",
            "faults.timeline: must be a list, got a number",
        ]
    );
    assert_eq!(
        errors(&format!("{BASE}checks: {{linearizable: yes please}}\n")),
        ["checks.linearizable: must be true or false, got a string"]
    );
    assert_eq!(errors("- a\n- b\n"), ["must be a mapping, got a list"]);
}

#[test]
fn out_of_range_values_are_refused() {
    let text = format!(
        "{BASE}cluster: {{nodes: 2, gcs_members: 3, node_ttl_s: 0.1}}\n\
         checks: {{min_success: 1.5, window_tail_s: -1}}\nseed: -3\n"
    );
    assert_eq!(
        errors(&text),
        [
            "seed: must be >= 0, got -3",
            "cluster.gcs_members: must be <= nodes (2), got 3",
            "cluster.node_ttl_s: must be >= 0.3, got 0.1",
            "checks.min_success: must be between 0 and 1, got 1.5",
            "checks.window_tail_s: must be >= 0, got -1",
        ]
    );
}

#[test]
fn missing_required_fields_are_named() {
    let text = "description: x\nworkloads:\n  - {kind: http}\n  - {name: g, rate: 1}\n";
    assert_eq!(
        errors(text),
        [
            "missing field \"name\"",
            "missing field \"duration_s\" (how long the load runs, seconds)",
            "workloads[0]: missing field \"name\"",
            "workloads[0]: missing field \"rate\" (requests or operations per second)",
            "workloads[0]: missing field \"path\" (the URL path, such as /chain)",
            "workloads[1]: missing field \"kind\" (http, gcs or actor)",
        ]
    );
    assert_eq!(
        errors("name: t\nduration_s: 1\n"),
        ["missing field \"workloads\" (a list of at least one workload)"]
    );
    assert_eq!(
        errors("name: t\nduration_s: 1\nworkloads: []\n"),
        ["workloads: must list at least one workload"]
    );
}

fn fault_errors(fault: &str) -> Vec<String> {
    errors(&format!("{BASE}faults:\n  timeline:\n    - {fault}\n"))
}

#[test]
fn bad_target_texts_are_explained() {
    let all = "gcs_leader, gcs_follower, gcs_member, gcs_majority, any, none, node:N, \
               hosting:DEPLOYMENT";
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: gcs_leadr}"),
        [format!(
            "faults.timeline[0].target: must be one of {all}, got \"gcs_leadr\"; \
             did you mean \"gcs_leader\"?"
        )]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: \"node:x\"}"),
        ["faults.timeline[0].target: the node index must be an integer >= 0, got \"node:x\""]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: \"hosting:\"}"),
        [
            "faults.timeline[0].target: must be hosting:DEPLOYMENT or hosting:APP/DEPLOYMENT, \
          got \"hosting:\""
        ]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: none}"),
        ["faults.timeline[0].target: `none` targets no node; only update faults may use it"]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill}"),
        [format!(
            "faults.timeline[0]: missing field \"target\" ({all})"
        )]
    );
}

#[test]
fn node_indexes_must_exist() {
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: \"node:3\"}"),
        ["faults.timeline[0].target: node 3 does not exist: cluster.nodes is 3 (indexes 0 to 2)"]
    );
    let text = BASE.replace("rate: 10}", "rate: 10, proxies: [0, 5]}");
    assert_eq!(
        errors(&format!("{text}cluster: {{nodes: 5}}\n")),
        ["workloads[0].proxies[1]: node 5 does not exist: cluster.nodes is 5 (indexes 0 to 4)"]
    );
}

#[test]
fn fields_of_another_fault_kind_are_refused() {
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: any, mode: isolate, delay_ms: 5}"),
        [
            "faults.timeline[0].mode: `mode` applies only to partition faults",
            "faults.timeline[0].delay_ms: `delay_ms` applies only to degrade faults",
        ]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: partition, target: any}"),
        ["faults.timeline[0]: missing field \"mode\" (isolate, split or one_way)"]
    );
    let text = BASE.replace("rate: 10}", "rate: 10, keys: 2}");
    assert_eq!(
        errors(&text),
        ["workloads[0].keys: `keys` applies only to gcs workloads"]
    );
}

#[test]
fn an_update_targets_no_node() {
    assert_eq!(
        fault_errors("{at_s: 1, kind: update, app: a, deployment: d, target: any}"),
        ["faults.timeline[0].target: an update targets no node; remove `target` or write `none`"]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: update, target: none, set: {user_confg: 1}}"),
        [
            "faults.timeline[0]: missing field \"app\"",
            "faults.timeline[0]: missing field \"deployment\"",
            "faults.timeline[0].set.user_confg: unknown field; did you mean \"user_config\"?",
        ]
    );
}

#[test]
fn workload_names_are_unique() {
    let text = BASE.to_owned() + "  - {name: w, kind: gcs, rate: 5}\n";
    assert_eq!(
        errors(&text),
        ["workloads[1].name: workload name \"w\" is used twice; names must be unique"]
    );
}

#[test]
fn faults_must_fall_inside_the_run() {
    assert_eq!(
        fault_errors("{at_s: 150, kind: kill, target: any}"),
        ["faults.timeline[0].at_s: must be < duration_s (100), got 150"]
    );
    let random = "faults:\n  random: {every_s: [20, 10], until_s: 120, choices: []}\n";
    assert_eq!(
        errors(&format!("{BASE}{random}")),
        [
            "faults.random.every_s: must have 0 < min <= max, got [20, 10]",
            "faults.random.until_s: must be <= duration_s (100), got 120",
            "faults.random.choices: must list at least one fault",
        ]
    );
    let random = "faults:\n  random: {every_s: 5, choices: [{kind: kill, target: any, at_s: 3, \
                  mode: split}]}\n";
    assert_eq!(
        errors(&format!("{}{random}", BASE.replace("100", "8"))),
        [
            "faults.random.every_s: must be two numbers [min, max] of seconds, got 5",
            "faults.random.from_s: must be < duration_s (8), got 10 (the default)",
            "faults.random.choices[0].at_s: `at_s` applies only to timeline faults; random ones \
             are timed by `every_s`",
            "faults.random.choices[0].mode: `mode` applies only to partition faults",
        ]
    );
}

#[test]
fn counts_must_fit_the_cluster() {
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: any, count: 4}"),
        ["faults.timeline[0].count: must be <= 3 (cluster.nodes), got 4"]
    );
    assert_eq!(
        fault_errors("{at_s: 1, kind: kill, target: gcs_follower, count: 3}"),
        ["faults.timeline[0].count: must be <= 2 (the followers, cluster.gcs_members - 1), got 3"]
    );
}

#[test]
fn partitions_need_namespaces() {
    let text = format!(
        "{BASE}cluster: {{network: loopback}}\nfaults:\n  timeline:\n    \
         - {{at_s: 1, kind: partition, mode: split, target: gcs_leader}}\n"
    );
    assert_eq!(
        errors(&text),
        [
            "faults.timeline[0].kind: partition faults need network namespaces, but \
          cluster.network is loopback"
        ]
    );
}

#[test]
fn gcs_checks_need_a_gcs_workload_only_when_asked_for() {
    assert_eq!(
        errors(&format!(
            "{BASE}checks: {{linearizable: true, min_known_gcs_ops: 5}}\n"
        )),
        [
            "checks.linearizable: needs a workload of kind gcs; add one or remove this line",
            "checks.min_known_gcs_ops: needs a workload of kind gcs; add one or remove this line",
        ]
    );
    let s = parse(&format!("{BASE}checks: {{linearizable: false}}\n")).unwrap();
    assert!(!s.checks.linearizable);
}

#[test]
fn a_missing_serve_config_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let got = parse_yaml(&format!("{BASE}serve_config: nope.yaml\n"), dir.path()).unwrap_err();
    let path = dir.path().join("nope.yaml");
    assert_eq!(
        got.to_string(),
        format!(
            "serve_config: cannot read {}: No such file or directory (os error 2)",
            path.display()
        )
    );
}

#[test]
fn serve_config_issues_are_under_serve_config() {
    let inline = "serve_config:\n  applications:\n    - {name: a, app: a, deployments: \
                  [{name: d, num_replicas: -1}]}\n  proxy_locaton: x\n";
    assert_eq!(
        errors(&format!("{BASE}{inline}")),
        [
            "serve_config.proxy_locaton: unknown field; did you mean \"proxy_location\"?",
            "serve_config.applications[0].deployments[0].num_replicas: must be >= 0, got -1",
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.yaml"), "applications: 3\n").unwrap();
    let err = parse_yaml(&format!("{BASE}serve_config: s.yaml\n"), dir.path()).unwrap_err();
    let file = dir.path().join("s.yaml");
    assert_eq!(
        err.to_string(),
        format!(
            "serve_config.applications: must be a list, got a number (in {})",
            file.display()
        )
    );
    assert_eq!(
        errors(&format!("{BASE}serve_config: 3\n")),
        ["serve_config: must be the path of a serve config file or an inline mapping, got a number"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "\
name: ''
duration_s: 0
cluster: {netwrk: auto}
workloads:
  - {name: w, kind: htp, rate: -1}
faults:
  timeline:
    - {at_s: 1, kind: kil, target: any}
checks: {max_gap_s: 0}
";
    assert_eq!(
        errors(text),
        [
            "name: must not be empty",
            "duration_s: must be > 0, got 0",
            "cluster.netwrk: unknown field; did you mean \"network\"?",
            "workloads[0].kind: must be one of http, gcs, actor, got \"htp\"; did you mean \"http\"?",
            "workloads[0].rate: must be > 0, got -1",
            "faults.timeline[0].kind: must be one of kill, pause, partition, degrade, wipe, \
             update, got \"kil\"; did you mean \"kill\"?",
            "checks.max_gap_s: must be > 0, got 0",
        ]
    );
}

#[test]
fn bad_yaml_and_empty_files() {
    let err = parse("name: [unclosed\n").unwrap_err().to_string();
    assert!(err.starts_with("not valid YAML: "), "{err}");
    assert_eq!(
        errors(""),
        ["the scenario is empty; it needs at least `name`, `duration_s` and `workloads`"]
    );
}
