//! `start`, `status` and `stop` as an operator runs them.

use std::process::Command;
use std::time::Duration;

use crate::support::{wait_until, TestCluster, TOKEN};

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_troupe-actors"))
        .args(args)
        .args(["--token", TOKEN])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run troupe-actors");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_nodes_and_stop_makes_a_node_leave() {
    let mut cluster = TestCluster::head(&["--num-cpus", "2", "--num-gpus", "1"]);
    let worker = cluster.join(&["--num-cpus", "1", "--resources", r#"{"accel": 2}"#]);
    let driver = cluster.driver().await;
    let (ok, status) = cli(&["status", "--address", &cluster.nodes[0].addr]);
    assert!(ok, "{status}");
    assert!(status.contains("nodes (2):"), "{status}");
    assert!(
        status.contains("CPU 0/2, GPU 0/1  ttl 1s  [gcs]  [controller]"),
        "{status}"
    );
    assert!(status.contains("accel 0/2"), "{status}");

    let (ok, said) = cli(&["stop", "--address", &cluster.nodes[worker].addr]);
    assert!(ok, "{said}");
    // It revokes its lease on the way out: gone at once, not after a TTL.
    wait_until("the stopped node is gone", Duration::from_secs(10), || {
        let driver = driver.clone();
        async move { driver.state().await.is_ok_and(|s| s.nodes.len() == 1) }
    })
    .await;
    assert!(cluster.nodes[worker].wait_exit(Duration::from_secs(10)));

    let (ok, refused) = cli(&[
        "start",
        "--join",
        &cluster.nodes[0].addr,
        "--resources",
        "accel=2",
    ]);
    assert!(!ok);
    assert!(refused.contains("JSON object"), "{refused}");
}
