//! The operator's workflow through the CLI against node processes: a
//! 3-node cluster, `serve deploy` of a config file (progress, then
//! RUNNING), `serve status --json`, `serve config`, requests through any
//! node, `/metrics` on every node, a bad config and a deploy that cannot
//! finish (non-zero exits, nothing changed), `stop`.

use std::process::{Command, Output};
use std::time::Duration;

use crate::serve::{get, post};
use crate::support::{wait_until, TestCluster, SERVE_BIN, TOKEN};

pub(crate) fn troupe(args: &[&str], address: &str) -> Output {
    Command::new(SERVE_BIN)
        .args(args)
        .args(["--address", address, "--token", TOKEN])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

pub(crate) fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn example_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("serve/serve.yaml")
}

/// The value of the sample `name{labels}` on a metrics page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_a_config_to_three_nodes_then_status_config_metrics_and_stop() {
    let mut cluster = TestCluster::serve_nodes(3);
    let driver = cluster.driver().await;
    let head = cluster.nodes[0].addr.clone();
    let config = example_config();
    let config = config.to_str().unwrap();

    let out = ok(troupe(&["serve", "deploy", config], &head));
    assert!(
        out.contains("application chain: created at version 1"),
        "{out}"
    );
    assert!(
        out.contains("chain/pipeline: 3/3 replicas running"),
        "{out}"
    );
    assert!(out.contains("select: RUNNING"), "{out}");

    let status: serde_json::Value =
        serde_json::from_str(&ok(troupe(&["serve", "status", "--json"], &head))).unwrap();
    for app in ["chain", "ensemble", "select"] {
        assert_eq!(status["applications"][app]["status"], "RUNNING", "{status}");
    }
    let replicas = |app: &str, d: &str| {
        status["applications"][app]["deployments"][d]["replicas"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(replicas("chain", "count"), 3);
    assert_eq!(replicas("select", "thorough"), 2);
    // The 0.25-CPU chain replicas are spread by resources.
    let nodes: std::collections::BTreeSet<String> = ["normalize", "count", "pipeline"]
        .iter()
        .flat_map(|d| {
            status["applications"]["chain"]["deployments"][d]["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["node_id"].as_str().unwrap().to_owned())
        })
        .collect();
    assert!(nodes.len() >= 2, "9 x 0.25 CPU on 1-CPU nodes: {nodes:?}");

    // `serve config` prints what was deployed: the file's config.
    let printed = ok(troupe(&["serve", "config"], &head));
    assert_eq!(
        troupe::serve::config::parse_yaml(&printed).unwrap(),
        troupe::serve::config::parse_yaml(&std::fs::read_to_string(config).unwrap()).unwrap()
    );

    // Requests through a joining node's proxy, counted on its /metrics.
    let node = &cluster.nodes[1];
    const N: usize = 7;
    for _ in 0..N {
        let (code, body) = post(&node.http, "/chain", " One TWO ").unwrap();
        assert_eq!(
            (code, body.as_str()),
            (200, r#"{"text":"one two","words":2}"#)
        );
    }
    let (code, page) = get(&node.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        sample(
            &page,
            r#"ray_serve_num_http_requests_total{application="chain",method="POST",route="/chain",status_code="200"}"#
        ),
        Some(N as f64),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            r#"ray_serve_http_request_latency_ms_count{application="chain",method="POST",route="/chain",status_code="200"}"#
        ),
        Some(N as f64),
        "{page}"
    );

    // A bad config: every problem, exit 1, nothing changed.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "applications:\n  - name: chain\n    app: chian\n    deployments: [{name: count, num_replicas: -1}]\n",
    )
    .unwrap();
    let out = troupe(&["serve", "deploy", bad.to_str().unwrap()], &head);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("applications[0].deployments[0].num_replicas: must be >= 0, got -1"),
        "{stderr}"
    );
    // The unknown builder in the same answer.
    assert!(
        stderr.contains("applications[0].app: no application builder named \"chian\""),
        "{stderr}"
    );
    let again: serde_json::Value =
        serde_json::from_str(&ok(troupe(&["serve", "status", "--json"], &head))).unwrap();
    assert_eq!(again["applications"].as_object().unwrap().len(), 3);

    // A deploy that cannot finish (no node has 8 CPUs): it says so and
    // exits non-zero when its timeout passes; the other apps are deleted.
    let big = dir.path().join("big.yaml");
    std::fs::write(
        &big,
        "applications:\n  - name: big\n    app: noop\n    deployments: [{name: noop, actor_options: {num_cpus: 8}}]\n",
    )
    .unwrap();
    let out = troupe(
        &["serve", "deploy", big.to_str().unwrap(), "--timeout", "3"],
        &head,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not RUNNING within 3 s: big"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("application chain: deleted"), "{stdout}");

    assert!(ok(troupe(&["serve", "shutdown"], &head)).contains("deleted 1 application(s): big"));
    // `stop` a joining node: it leaves and exits.
    let leaving = cluster.nodes[2].addr.clone();
    ok(troupe(&["stop"], &leaving));
    assert!(cluster.nodes[2].wait_exit(Duration::from_secs(20)));
    wait_until("two nodes are left", Duration::from_secs(20), || {
        let driver = driver.clone();
        async move { driver.state().await.is_ok_and(|s| s.nodes.len() == 2) }
    })
    .await;
}

/// `serve build` writes every application with its defaults; `serve run`
/// of that file serves them all on an embedded node, logs as the file's
/// `logging_config` says (JSON access lines here), and stops on SIGTERM.
#[test]
fn serve_build_then_serve_run_of_the_built_config() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("built.yaml");
    let out = Command::new(SERVE_BIN)
        .args(["serve", "build", "-o", built.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = std::fs::read_to_string(&built).unwrap();
    let config = troupe::serve::config::parse_yaml(&text).unwrap();
    let names: Vec<&str> = config
        .applications
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "chain",
            "ensemble",
            "noop",
            "noop-2",
            "noop-chain",
            "select",
            "sleepy"
        ]
    );
    text = text.replace("encoding: TEXT", "encoding: JSON");
    std::fs::write(&built, text).unwrap();

    let mut child = Command::new(SERVE_BIN)
        .args(["serve", "run", built.to_str().unwrap()])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--dashboard-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", dir.path().join("node").to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let logs = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.starts_with("ready ")) {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no ready line ({e}); got {lines:?}"));
        lines.push(line);
    }
    let chain = lines
        .iter()
        .find_map(|l| l.strip_prefix("application chain is RUNNING at http://"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let (addr, prefix) = chain.split_once('/').unwrap();
    assert_eq!(prefix, "chain");
    let (code, body) = post(addr, "/chain", "A b").unwrap();
    assert_eq!((code, body.as_str()), (200, r#"{"text":"a b","words":2}"#));

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve run did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let logs = logs.join().unwrap();
    let access = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "troupe::access")
        .unwrap_or_else(|| panic!("no JSON access line in {logs:?}"));
    assert_eq!(access["fields"]["status"], 200, "{access}");
    let span = &access["span"];
    assert_eq!(span["app"], "chain", "{access}");
    assert_eq!(span["deployment"], "pipeline", "{access}");
    assert!(span["replica"].is_string(), "{access}");
    assert!(span["request_id"].is_string(), "{access}");
}
