//! What `serve deploy` answers, against a node process: a rescale at the
//! same version is waited for and reported as the new target (never the
//! previous "1/1"), and an invalid config gets every problem in one answer
//! from the CLI and from the admin API alike.

use crate::operator::{ok, troupe};
use crate::serve::http;
use crate::support::{TestCluster, SERVE_BIN};

fn noop_config(replicas: u32) -> String {
    format!(
        "applications:\n  - name: scale\n    app: noop\n    route_prefix: /scale\n    deployments:\n      - name: noop\n        num_replicas: {replicas}\n        ray_actor_options: {{num_cpus: 0.25}}\n"
    )
}

/// The replicas of `scale/noop` by state, from `serve status --json`.
fn replica_states(address: &str) -> (String, Vec<String>) {
    let status: serde_json::Value =
        serde_json::from_str(&ok(troupe(&["serve", "status", "--json"], address))).unwrap();
    let app = &status["applications"]["scale"];
    let states = app["deployments"]["noop"]["replicas"]
        .as_array()
        .unwrap_or_else(|| panic!("{status}"))
        .iter()
        .map(|r| r["state"].as_str().unwrap().to_owned())
        .collect();
    (app["status"].as_str().unwrap().to_owned(), states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescale_is_waited_for_and_reported_as_the_new_target() {
    let cluster = TestCluster::head_of(SERVE_BIN, &["--num-cpus", "2"]);
    let _driver = cluster.driver().await;
    let head = cluster.nodes[0].addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scale.yaml");
    let path = file.to_str().unwrap();

    // As `serve build` writes it: http_options the running proxies do not
    // apply are set aside with a warning (as Ray Serve does), not refused.
    std::fs::write(
        &file,
        format!(
            "http_options: {{host: 0.0.0.0, port: 8000}}\n{}",
            noop_config(1)
        ),
    )
    .unwrap();
    let out = troupe(&["serve", "deploy", path], &head);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains(
            "troupe: warning: http_options.host: \"0.0.0.0\" is not applied to a running cluster"
        ),
        "{stderr}"
    );
    let out = ok(out);
    assert!(
        out.contains("application scale: created at version 1 (replicas: noop 1)"),
        "{out}"
    );
    assert!(out.contains("scale/noop: 1/1 replicas running"), "{out}");
    assert_eq!(
        replica_states(&head),
        ("RUNNING".to_string(), vec!["RUNNING".to_string()])
    );

    // The same config at 3 replicas: the version stays, and the command
    // returns only once the status shows 3 of 3 running.
    std::fs::write(&file, noop_config(3)).unwrap();
    let out = ok(troupe(&["serve", "deploy", path], &head));
    let (state, replicas) = replica_states(&head);
    assert_eq!(state, "RUNNING", "{out}");
    assert_eq!(replicas, ["RUNNING", "RUNNING", "RUNNING"], "{out}");
    assert!(
        out.contains("application scale: rescaled at version 1: noop 1 -> 3 replicas"),
        "{out}"
    );
    assert!(out.contains("scale/noop: 3/3 replicas running"), "{out}");
    assert!(out.contains("scale: RUNNING at version 1"), "{out}");
    // Nothing of the previous state is shown as the answer.
    assert!(!out.contains("1/1"), "{out}");
    assert!(!out.contains("updated"), "{out}");

    // Back to 1: the two extra replicas are gone when it returns.
    std::fs::write(&file, noop_config(1)).unwrap();
    let out = ok(troupe(&["serve", "deploy", path], &head));
    assert!(out.contains("noop 3 -> 1 replicas"), "{out}");
    assert!(out.contains("scale/noop: 1/1 replicas running"), "{out}");
    let (state, replicas) = replica_states(&head);
    assert_eq!(state, "RUNNING", "{out}");
    assert_eq!(
        replicas.iter().filter(|s| *s == "RUNNING").count(),
        1,
        "{out}"
    );
    assert!(!out.contains("3/3"), "{out}");
}

/// `PUT /api/serve/applications/` of `config` on `admin`: the status and
/// the JSON answer.
fn put_config(admin: &str, config: &serde_json::Value) -> (u16, serde_json::Value) {
    let (code, body) = http(
        admin,
        "PUT",
        "/api/serve/applications/",
        &config.to_string(),
    )
    .unwrap_or_else(|e| panic!("PUT to {admin}: {e}"));
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code, body)
}

/// A config with a schema error, an unknown deployment, an unknown
/// builder and `num_replicas: 0` (and http_options the proxies would not
/// apply, which are no problem: set aside with a warning).
const BAD: &str = "\
http_options: {port: 9999}
applications:
  - name: a
    app: noop
    route_prefix: /a
    deployments:
      - name: nop
        num_replicas: 2
  - name: b
    app: nope
    route_prefix: /b
  - name: c
    app: noop
    route_prefix: c
    deployments:
      - name: noop
        num_replicas: 0
        ray_actor_options: {num_cpu: 1}
";

/// Every problem `BAD` has, as `path: start of the message`.
const BAD_PROBLEMS: &[&str] = &[
    "applications[2].route_prefix: must start with '/'",
    "applications[2].deployments[0].num_replicas: must be >= 1, got 0",
    "applications[2].deployments[0].ray_actor_options.num_cpu: unknown field; did you mean \"num_cpus\"?",
    "applications[0].deployments[0].name: application \"noop\" has no deployment named \"nop\"",
    "applications[1].app: no application builder named \"nope\" in this binary",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_of_a_config_in_one_answer_from_the_cli_and_the_admin_api() {
    let cluster = TestCluster::head_of(SERVE_BIN, &["--num-cpus", "1"]);
    let _driver = cluster.driver().await;
    let head = &cluster.nodes[0];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, BAD).unwrap();

    let out = troupe(&["serve", "deploy", file.to_str().unwrap()], &head.addr);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for problem in BAD_PROBLEMS {
        assert!(
            stderr.lines().any(|l| l.starts_with(problem)),
            "missing {problem:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("nothing was deployed"), "{stderr}");

    // The same answer from `PUT /api/serve/applications/`.
    let value = serde_json::json!({
        "http_options": {"port": 9999},
        "applications": [
            {"name": "a", "app": "noop", "route_prefix": "/a",
             "deployments": [{"name": "nop", "num_replicas": 2}]},
            {"name": "b", "app": "nope", "route_prefix": "/b"},
            {"name": "c", "app": "noop", "route_prefix": "c",
             "deployments": [{"name": "noop", "num_replicas": 0, "ray_actor_options": {"num_cpu": 1}}]},
        ],
    });
    let (code, body) = put_config(&head.admin, &value);
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_config", "{body}");
    let issues: Vec<String> = body["error"]["issues"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|i| {
            format!(
                "{}: {}",
                i["path"].as_str().unwrap(),
                i["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(issues.len(), BAD_PROBLEMS.len(), "{issues:#?}");
    for problem in BAD_PROBLEMS {
        assert!(
            issues.iter().any(|i| i.starts_with(problem)),
            "missing {problem:?} in {issues:#?}"
        );
    }
    // Nothing was deployed by either.
    let status: serde_json::Value =
        serde_json::from_str(&ok(troupe(&["serve", "status", "--json"], &head.addr))).unwrap();
    assert_eq!(
        status["applications"].as_object().map(|a| a.len()),
        Some(0),
        "{status}"
    );

    // A valid config with `serve build`'s http_options: written, with the
    // options set aside as warnings at their paths.
    let value = serde_json::json!({
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 9999},
        "applications": [{"name": "a", "app": "noop", "route_prefix": "/a"}],
    });
    let (code, body) = put_config(&head.admin, &value);
    assert_eq!(code, 200, "{body}");
    let warned: Vec<&str> = body["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert_eq!(warned, ["http_options.host", "http_options.port"], "{body}");
    assert_eq!(body["changed"], serde_json::json!(["a"]), "{body}");
    // What is stored is what the proxies run: the defaults.
    let config = ok(troupe(&["serve", "config"], &head.addr));
    assert!(
        !config.contains("9999") && !config.contains("0.0.0.0"),
        "{config}"
    );
}
