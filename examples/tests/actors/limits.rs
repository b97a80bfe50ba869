//! Size limits that hold everywhere (issue #15), against a node process:
//! a config near the limit deploys and serves; the cluster's state grows
//! past one RPC message (16 MiB) and every whole-state read (`troupe
//! status`, `serve status`, `GET /api/serve/applications/`, the node's
//! own view after a restart) still answers, paged; a config over the
//! limit is refused by the CLI and by the admin API (413 in the JSON
//! error shape) and nothing is stored.

use std::time::Duration;

use troupe::serve::declarative::CONFIG_KEY;
use troupe::serve::limits::MAX_CONFIG_BYTES;

use crate::http_client::request_to;
use crate::operator::{ok, troupe};
use crate::serve::{get, post};
use crate::support::{wait_until, TestCluster, SERVE_BIN};

/// The `select` application with a `user_config` of `blob` bytes on its
/// `thorough` deployment (three replicas, each with an actor record and an
/// assignment holding it too: more than one write's worth if the cluster
/// controller placed them in one round).
fn config_yaml(blob: usize, marker: &str) -> String {
    format!(
        "applications:\n  - name: select\n    route_prefix: /select\n    app: select\n    deployments:\n      - name: thorough\n        num_replicas: 3\n        user_config: {{ marker: {marker}, blob: \"{}\" }}\n",
        "x".repeat(blob)
    )
}

/// Every whole-state read answers, and `select` is RUNNING and serves.
async fn everything_answers(cluster: &TestCluster, marker: &str) {
    let node = &cluster.nodes[0];
    wait_until("select serves", Duration::from_secs(60), || async {
        post(&node.http, "/select?model=thorough", "good").is_ok_and(|(code, _)| code == 200)
    })
    .await;
    // An update is RUNNING once its replicas run (new ones, or the same
    // ones when only `user_config` or the count changed); `serve status`
    // answers throughout.
    wait_until("select is RUNNING", Duration::from_secs(60), || async {
        let status: serde_json::Value =
            serde_json::from_str(&ok(troupe(&["serve", "status", "--json"], &node.addr))).unwrap();
        status["applications"]["select"]["status"] == "RUNNING"
    })
    .await;
    let nodes = ok(troupe(&["status"], &node.addr));
    assert!(nodes.contains(&node.addr), "{nodes}");
    let (code, body) = get(&node.admin, "/api/serve/applications/").unwrap();
    assert_eq!(code, 200, "{body}");
    let apps: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(apps["applications"]["select"]["status"], "RUNNING");
    let deployed = &apps["applications"]["select"]["deployed_app_config"];
    assert_eq!(
        deployed["deployments"][0]["user_config"]["marker"], marker,
        "the stored config is the one deployed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_past_one_message_and_configs_near_the_limit_serve_again_after_a_restart() {
    let args = ["--head", "--num-cpus", "8"];
    let mut cluster = TestCluster::head_of(SERVE_BIN, &args[1..]);
    let driver = cluster.driver().await;
    let head = cluster.nodes[0].addr.clone();
    let dir = tempfile::tempdir().unwrap();

    // A config 64 KiB under the limit deploys.
    let near = dir.path().join("near.yaml");
    let text = config_yaml(MAX_CONFIG_BYTES - (64 << 10), "near");
    assert!(text.len() < MAX_CONFIG_BYTES && text.len() > MAX_CONFIG_BYTES - (65 << 10));
    std::fs::write(&near, &text).unwrap();
    let out = ok(troupe(&["serve", "deploy", near.to_str().unwrap()], &head));
    assert!(out.contains("select: RUNNING"), "{out}");

    // More than an RPC message of other accepted state under the cluster's
    // prefix: 12 values of 1.9 MiB (each under the 2 MiB value limit).
    const BALLAST: usize = 12;
    let value = vec![b'b'; 1_900_000];
    for i in 0..BALLAST {
        let written = driver
            .gcs()
            .put(format!("/troupe/test-ballast/{i:02}"), value.clone())
            .await
            .unwrap();
        assert!(written.outcome.is_ok(), "{:?}", written.outcome);
    }
    let state = driver
        .state()
        .await
        .expect("a paged read of the whole state");
    let stored: usize = state.extra.values().map(Vec::len).sum();
    assert!(
        stored > 20 << 20,
        "{stored} bytes stored: not past one message"
    );
    everything_answers(&cluster, "near").await;

    // A restart lists it all again (paged): the controller starts, the
    // routes come back, and every read answers.
    cluster.restart(0, &args);
    everything_answers(&cluster, "near").await;
    let driver = cluster.driver().await;
    let head = cluster.nodes[0].addr.clone();
    let admin = cluster.nodes[0].admin.clone();

    // Over the limit: the CLI refuses before it connects...
    let config_before = driver.gcs().get(CONFIG_KEY).await.unwrap().unwrap();
    let over = dir.path().join("over.yaml");
    std::fs::write(&over, config_yaml(MAX_CONFIG_BYTES, "over")).unwrap();
    let out = troupe(&["serve", "deploy", over.to_str().unwrap()], &head);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("over the limit of 1572864 bytes") && stderr.contains("user_config"),
        "{stderr}"
    );
    // ... and the admin API answers 413 in its JSON error shape.
    let body = serde_json::to_vec(&serde_json::json!({
        "applications": [{"name": "select", "route_prefix": "/select", "app": "select",
            "deployments": [{"name": "thorough", "user_config": {"marker": "over", "blob": "x".repeat(MAX_CONFIG_BYTES)}}]}]
    }))
    .unwrap();
    let response = request_to(
        &admin,
        "PUT",
        "/api/serve/applications/",
        &body,
        &["content-type: application/json"],
    );
    assert_eq!(response.status, 413, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let error: serde_json::Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(error["error"]["code"], "too_large", "{error}");
    assert_eq!(error["error"]["path"], "/api/serve/applications/");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("over the limit of 1572864 bytes"),
        "{message}"
    );
    // Nothing of either was stored.
    let config_now = driver.gcs().get(CONFIG_KEY).await.unwrap().unwrap();
    assert_eq!(config_now.mod_revision, config_before.mod_revision);
    // A body the old default (256 KiB) refused is taken now.
    let json = serde_json::to_vec(&serde_json::json!({
        "applications": [{"name": "select", "route_prefix": "/select", "app": "select",
            "deployments": [{"name": "thorough", "num_replicas": 2,
                "user_config": {"marker": "json", "blob": "x".repeat(300 << 10)}}]}]
    }))
    .unwrap();
    let response = request_to(&admin, "PUT", "/api/serve/applications/", &json, &[]);
    assert_eq!(response.status, 200, "{}", response.body);
    everything_answers(&cluster, "json").await;
    // No write the node made was refused for its size, before or after
    // the restart.
    let log = cluster.log(0);
    assert!(!log.contains("over the control store's limit"), "{log}");
    let printed = ok(troupe(&["serve", "config"], &head));
    assert!(
        printed.contains("marker: json"),
        "{}",
        &printed[..200.min(printed.len())]
    );

    // A backup of all of it (state past one RPC message) is taken, and it
    // restores.
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("big.backup");
    let saved = ok(troupe(
        &["gcs", "snapshot", "save", backup.to_str().unwrap()],
        &head,
    ));
    let size = std::fs::metadata(&backup).unwrap().len();
    assert!(size > 16 << 20, "a backup of only {size} bytes: {saved}");
    let restored = ok(std::process::Command::new(SERVE_BIN)
        .args(["gcs", "snapshot", "restore", backup.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path().join("restored"))
        .output()
        .unwrap());
    assert!(restored.contains("restored revision"), "{restored}");
}
