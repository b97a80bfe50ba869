//! Ray Serve 2.60's own tools against a Troupe cluster of node processes,
//! unchanged: `serve deploy CONFIG -a URL` with a Ray-style config naming
//! its application by `import_path`, `serve status -a URL` until RUNNING,
//! HTTP requests served, `num_replicas` changed with `serve deploy`,
//! `serve config`, and `serve shutdown -a URL -y`, all with the cluster's
//! admin token given as Ray's own token (`RAY_AUTH_MODE=token
//! RAY_AUTH_TOKEN=...`, which Ray's CLI sends as a bearer token); every
//! `GET /api/serve/applications/` answer on the way is parsed by Ray's
//! `ServeInstanceDetails` (pydantic, extra fields forbidden). Ray comes
//! from PyPI, pinned, into a venv under the target dir (made once, like
//! the schemathesis test's); without python3 or PyPI the test fails
//! saying so, it does not skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::post;
use crate::support::{TestCluster, SERVE_BIN};

/// The cluster's admin token, which Ray's CLI is given as its token.
const ADMIN_TOKEN: &str = "ray-cli-admin-token";

/// The Ray release whose CLI is driven (the one `/api/ray/version`
/// reports).
const RAY: &str = "ray[serve]==2.60.0";

/// The venv with Ray (pinned, from PyPI), made once per target dir;
/// concurrent test binaries take turns through a lock file. A venv whose
/// install did not finish (no `installed` marker) is made again.
pub(crate) fn ray_venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ray-serve-2.60.0");
    let marker = dir.join("installed");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(&format!("{RAY}\n")) {
        let _ = std::fs::remove_dir_all(&dir);
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let made = Command::new(&python)
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("{python} is needed to run Ray's CLI: {e}"));
        assert!(made.success(), "{python} -m venv failed");
        let installed = Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", RAY])
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "pip install {RAY} failed (it needs PyPI)"
        );
        std::fs::write(&marker, format!("{RAY}\n")).unwrap();
    }
    dir
}

/// One of the venv's programs, with an environment that cannot make
/// Ray's CLI find or start a local Ray cluster (no RAY_ADDRESS, no
/// dashboard address but the one given with `-a`, no usage reporting).
pub(crate) fn ray_command(venv: &Path, program: &str, home: &Path) -> Command {
    let mut command = Command::new(venv.join("bin").join(program));
    command
        .env_remove("RAY_ADDRESS")
        .env_remove("RAY_DASHBOARD_ADDRESS")
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("RAY_AUTH_MODE", "token")
        .env("RAY_AUTH_TOKEN", ADMIN_TOKEN)
        .env("HOME", home)
        .env("TMPDIR", home)
        .env("NO_COLOR", "1");
    command
}

/// Runs Ray's `serve` with `args`, bounded by a timeout; its output.
fn serve(venv: &Path, home: &Path, args: &[&str]) -> Output {
    run_bounded(ray_command(venv, "serve", home).args(args), "serve")
}

/// Runs `command`, killed (by pid) if it takes over two minutes.
pub(crate) fn run_bounded(command: &mut Command, what: &str) -> Output {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let pid = child.id();
    let (done, waited) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = done.send(());
        out
    });
    if waited.recv_timeout(Duration::from_secs(120)).is_err() {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    waiter.join().unwrap().unwrap()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parses what `GET /api/serve/applications/` answers at `url` with Ray's
/// `ServeInstanceDetails` and prints a summary of it as JSON: Ray's own
/// `serve status` view (`_get_status`), and each deployment's target.
const PARSE: &str = r#"
import json, sys, urllib.request
from dataclasses import asdict
from ray.serve.schema import ServeInstanceDetails
import os
request = urllib.request.Request(sys.argv[1] + "/api/serve/applications/",
                                 headers={"Authorization": "Bearer " + os.environ["RAY_AUTH_TOKEN"]})
body = json.load(urllib.request.urlopen(request, timeout=30))
details = ServeInstanceDetails(**body)
status = asdict(details._get_status())
targets = {a: {d: dd.target_num_replicas for d, dd in app.deployments.items()}
           for a, app in details.applications.items()}
configs = {a: app.deployed_app_config.import_path if app.deployed_app_config else None
           for a, app in details.applications.items()}
print(json.dumps({"status": status, "targets": targets, "import_paths": configs,
                  "controller_node": details.controller_info.node_id}, default=str))
"#;

/// The GET answer at `url`, parsed by Ray's `ServeInstanceDetails` (the
/// test fails if it does not parse): the summary [`PARSE`] prints.
fn ray_details(venv: &Path, home: &Path, url: &str) -> Value {
    let script = home.join("parse_details.py");
    std::fs::write(&script, PARSE).unwrap();
    let out = run_bounded(
        ray_command(venv, "python", home).arg(&script).arg(url),
        "python",
    );
    assert!(
        out.status.success(),
        "Ray's ServeInstanceDetails does not parse the answer:\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// `serve status -a url`, parsed (it prints YAML).
fn ray_status(venv: &Path, home: &Path, url: &str) -> serde_yaml_ng::Value {
    let out = serve(venv, home, &["status", "-a", url]);
    assert!(out.status.success(), "serve status failed:\n{}", text(&out));
    serde_yaml_ng::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Whether Ray's status shows `app` RUNNING with each of `replicas`'
/// deployments HEALTHY with that many RUNNING replicas.
fn running_with(status: &serde_yaml_ng::Value, app: &str, replicas: &[(&str, u64)]) -> bool {
    let app = &status["applications"][app];
    app["status"].as_str() == Some("RUNNING")
        && replicas.iter().all(|(d, n)| {
            let d = &app["deployments"][*d];
            d["status"].as_str() == Some("HEALTHY")
                && d["replica_states"]["RUNNING"].as_u64() == Some(*n)
        })
}

/// Polls Ray's `serve status` (and parses the GET with Ray's model each
/// time) until `done` holds, for at most `within`; the number of GET
/// answers parsed.
fn wait_with_ray_status(
    venv: &Path,
    home: &Path,
    url: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_yaml_ng::Value) -> bool,
) -> usize {
    let deadline = Instant::now() + within;
    let mut parsed = 0;
    loop {
        let status = ray_status(venv, home, url);
        ray_details(venv, home, url);
        parsed += 1;
        if done(&status) {
            return parsed;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; serve status says:\n{}",
            serde_yaml_ng::to_string(&status).unwrap()
        );
    }
}

/// `GET path` at `addr` with the bearer `token`: the raw answer.
fn get_with_token(addr: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: t\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    raw
}

/// Where Ray's verdict on a config field and Troupe's differ, on
/// purpose (OPERATIONS.md, "Drive the cluster with Ray Serve's own CLI"):
/// [`agree.py`](raycli/agree.py)'s cases, labelled as it labels them.
const DIFFERENT_ON_PURPOSE: &[(&str, bool)] = &[
    // Troupe refuses what it has no mechanism for (Ray accepts it).
    (r#"deployment {"rolling_update_percentage": 0.2}"#, true),
    (r#"deployment {"max_replicas_per_node": 2}"#, true),
    (r#"actor {"accelerator_type": "A100"}"#, true),
    (r#"autoscaling {"aggregation_function": "max"}"#, true),
    (r#"app {"runtime_env": {"env_vars": {"A": "1"}}}"#, true),
    (r#"top {"target_capacity": 50}"#, true),
    // Names are keys and parts of replica names.
    (r#"app {"name": "my app"}"#, true),
    // A port is 16 bits. (A running cluster's proxies keep their
    // address, but like Ray, Troupe accepts another and ignores it.)
    (r#"top {"http_options": {"port": 70000}}"#, true),
    // Troupe accepts more (Ray refuses it).
    (r#"deployment {"placement_group_bundles": null}"#, false),
    (r#"app {"import_path": "chain"}"#, false),
    (r#"top {"logging_config": {"log_level": "info"}}"#, false),
    (r#"top {"logging_config": {"encoding": "text"}}"#, false),
];

const CONFIG: &str = "# A Ray Serve config: Ray's field names, the builder by import_path.
proxy_location: EveryNode
applications:
  - name: text
    route_prefix: /text
    import_path: troupe_examples.patterns:chain
    runtime_env: {}
    deployments:
      - name: count
        num_replicas: COUNT
        max_ongoing_requests: 8
        ray_actor_options: {num_cpus: 0.25}
      - name: normalize
        num_replicas: 1
        graceful_shutdown_timeout_s: 0
        ray_actor_options: {num_cpus: 0.25}
      - name: pipeline
        num_replicas: 1
        ray_actor_options: {num_cpus: 0.25}
";

#[test]
fn rays_serve_cli_deploys_watches_rescales_and_shuts_down_a_troupe_cluster() {
    let venv = ray_venv();
    let node_args = ["--num-cpus", "1", "--admin-token", ADMIN_TOKEN];
    let mut cluster = TestCluster::head_of(SERVE_BIN, &node_args);
    cluster.join(&node_args);
    let home = cluster.tmp.path().join("ray-home");
    std::fs::create_dir_all(&home).unwrap();
    let url = format!("http://{}", cluster.nodes[0].admin);

    // Ray's version check answers, naming the version Troupe implements,
    // with the token only.
    let version = get_with_token(
        &cluster.nodes[0].admin,
        "/api/ray/version",
        Some(ADMIN_TOKEN),
    );
    assert!(version.starts_with("HTTP/1.1 200"), "{version}");
    let body = version.split_once("\r\n\r\n").unwrap().1;
    let version: Value = serde_json::from_str(body).unwrap();
    assert_eq!(version["ray_version"], "2.60.0");
    assert!(version["troupe_version"].is_string(), "{version}");
    let denied = get_with_token(&cluster.nodes[0].admin, "/api/ray/version", None);
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");

    // Until the serve controller has run, Ray's shutdown finds no Serve
    // instance; wait for it (and both nodes' proxies) through Ray's model.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let details = ray_details(&venv, &home, &url);
        let proxies = details["status"]["proxies"]
            .as_object()
            .map_or(0, |p| p.len());
        if details["controller_node"].is_string() && proxies == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no controller or proxies: {details}"
        );
    }

    // `serve deploy` with Ray's config.
    let config = cluster.tmp.path().join("serve.yaml");
    std::fs::write(&config, CONFIG.replace("COUNT", "1")).unwrap();
    let config = config.to_str().unwrap();
    let out = serve(&venv, &home, &["deploy", config, "-a", &url]);
    assert!(out.status.success(), "serve deploy failed:\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Sent deploy request successfully")
            || String::from_utf8_lossy(&out.stdout).contains("Sent deploy request successfully"),
        "{}",
        text(&out)
    );
    let mut parsed = wait_with_ray_status(
        &venv,
        &home,
        &url,
        Duration::from_secs(90),
        "text is RUNNING",
        |s| {
            running_with(
                s,
                "text",
                &[("count", 1), ("normalize", 1), ("pipeline", 1)],
            )
        },
    );
    let details = ray_details(&venv, &home, &url);
    assert_eq!(
        details["import_paths"]["text"], "troupe_examples.patterns:chain",
        "{details}"
    );
    let status = ray_status(&venv, &home, &url);
    assert!(status["applications"]["text"]["last_deployed_time_s"]
        .as_f64()
        .is_some_and(|t| t > 1.0e9));
    for proxy in status["proxies"].as_mapping().unwrap().values() {
        assert_eq!(proxy.as_str(), Some("HEALTHY"), "{status:?}");
    }

    // HTTP requests are served, through both nodes' proxies.
    let mut served = 0;
    for node in &cluster.nodes {
        // A node's proxy learns the route from its own watch of the GCS,
        // maybe just after the controller reported RUNNING.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !post(&node.http, "/text", "x").is_ok_and(|(c, _)| c == 200) {
            assert!(
                Instant::now() < deadline,
                "{} does not route /text",
                node.http
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for _ in 0..3 {
            let (code, body) = post(&node.http, "/text", " One TWO three ").unwrap();
            assert_eq!(code, 200, "{body}");
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(answer["words"], 3, "{answer}");
            served += 1;
        }
    }
    assert_eq!(served, 6);

    // One deployment's num_replicas changed with Ray's CLI.
    std::fs::write(config, CONFIG.replace("COUNT", "2")).unwrap();
    let out = serve(&venv, &home, &["deploy", config, "-a", &url]);
    assert!(out.status.success(), "serve deploy failed:\n{}", text(&out));
    parsed += wait_with_ray_status(
        &venv,
        &home,
        &url,
        Duration::from_secs(90),
        "count has 2 replicas",
        |s| {
            running_with(
                s,
                "text",
                &[("count", 2), ("normalize", 1), ("pipeline", 1)],
            )
        },
    );
    let details = ray_details(&venv, &home, &url);
    assert_eq!(details["targets"]["text"]["count"], 2, "{details}");
    assert_eq!(details["targets"]["text"]["normalize"], 1, "{details}");
    let (code, body) = post(&cluster.nodes[1].http, "/text", "a b").unwrap();
    assert_eq!(
        (
            code,
            serde_json::from_str::<Value>(&body).unwrap()["words"].clone()
        ),
        (200, Value::from(2))
    );

    // `serve config` prints the config as deployed, in Ray's terms.
    let out = serve(&venv, &home, &["config", "-a", &url]);
    assert!(out.status.success(), "serve config failed:\n{}", text(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("import_path: troupe_examples.patterns:chain")
            && printed.contains("num_replicas: 2"),
        "{printed}"
    );

    // Ray's verdict and Troupe's on each config field's edge values agree,
    // but where Troupe differs on purpose (nothing is deployed: each
    // config also names a builder the binary lacks).
    let out = run_bounded(
        ray_command(&venv, "python", &home)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/actors/raycli/agree.py"
            ))
            .arg(&url),
        "agree.py",
    );
    assert!(out.status.success(), "agree.py failed:\n{}", text(&out));
    let agree: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert!(agree["cases"].as_u64().unwrap() >= 80, "{agree}");
    let differ = agree["differ"].as_object().unwrap();
    let expected: std::collections::BTreeMap<String, Value> = DIFFERENT_ON_PURPOSE
        .iter()
        .map(|(label, ray_accepts)| {
            (
                label.to_string(),
                Value::from(vec![*ray_accepts, !ray_accepts]),
            )
        })
        .collect();
    let got: std::collections::BTreeMap<String, Value> =
        differ.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(
        got, expected,
        "[ray accepts, troupe accepts] where they differ"
    );

    // `serve shutdown -y` deletes every application.
    let out = serve(&venv, &home, &["shutdown", "-a", &url, "-y"]);
    assert!(
        out.status.success(),
        "serve shutdown failed:\n{}",
        text(&out)
    );
    let said = text(&out);
    assert!(said.contains("Sent shutdown request"), "{said}");
    parsed += wait_with_ray_status(
        &venv,
        &home,
        &url,
        Duration::from_secs(60),
        "no application is left",
        |s| s["applications"].as_mapping().is_none_or(|a| a.is_empty()),
    );
    // The proxies drop the route when their watch of the GCS sees it go.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !post(&cluster.nodes[0].http, "/text", "x").is_ok_and(|(c, _)| c == 404) {
        assert!(Instant::now() < deadline, "/text is still routed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every wait parsed the GET answer with Ray's model at least once.
    assert!(parsed >= 3, "{parsed}");
}
