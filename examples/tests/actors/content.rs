//! The content-understanding pipeline across three node processes, its
//! stages placed by their resources.

use std::collections::BTreeSet;

use crate::serve::http;
use crate::support::{TestCluster, CONTENT_BIN, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_spread_over_three_nodes_answers_through_each() {
    crate::vision_support::model_files();
    let cluster = TestCluster::nodes_of(CONTENT_BIN, 3);
    let _driver = cluster.driver().await;
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("content_understanding/serve.yaml");
    let out = std::process::Command::new(CONTENT_BIN)
        .args([
            "serve",
            "deploy",
            config.to_str().unwrap(),
            "--timeout",
            "120",
        ])
        .args(["--address", &cluster.nodes[0].addr, "--token", TOKEN])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = std::process::Command::new(CONTENT_BIN)
        .args(["serve", "status", "--json"])
        .args(["--address", &cluster.nodes[1].addr, "--token", TOKEN])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let deployments = status["applications"]["content"]["deployments"]
        .as_object()
        .unwrap();
    assert_eq!(deployments.len(), 6, "{status}");
    let nodes: BTreeSet<&str> = deployments
        .values()
        .flat_map(|d| d["replicas"].as_array().unwrap())
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    // 1.95 CPUs of stages on nodes of 1 CPU each.
    assert!(nodes.len() >= 2, "the stages did not spread: {status}");

    let image = std::fs::read(crate::vision_support::fixture_path("chelsea.jpg")).unwrap();
    for node in &cluster.nodes {
        let r = crate::http_client::request_to(
            &node.http,
            "POST",
            "/",
            &image,
            &["content-type: image/jpeg"],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let answer: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let object = answer["object"].as_str().unwrap();
        assert!(
            ["Egyptian cat", "tabby", "tiger cat"].contains(&object),
            "{answer}"
        );
    }
    // A non-image through a joiner: the 400 crosses processes intact.
    let (code, body) = http(&cluster.nodes[2].http, "POST", "/", "not an image").unwrap();
    assert_eq!(code, 400, "{body}");
}
