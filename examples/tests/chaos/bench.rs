//! `troupe-chain bench cluster` on a tiny cluster: it measures every
//! figure it reports (with both kills: a node holding replicas, then the
//! GCS leader's node, HTTP probed through a surviving proxy) and leaves no
//! node process behind.

use std::process::Command;
use std::time::Duration;

use crate::{eventually, SERVE_BIN};

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(needle))
        .collect()
}

#[test]
fn bench_cluster_measures_and_stops_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    // 5 nodes: 3 GCS members, the last 2 with an HTTP proxy; 5 replicas
    // spread over them, so a non-GCS node holds one.
    let mut child = Command::new(SERVE_BIN)
        .args(["bench", "cluster", "--nodes", "5", "--actors", "30"])
        .args(["--replicas", "5", "--idle-secs", "0.2", "--http-nodes", "2"])
        .args(["--kill-node", "--kill-leader"])
        .arg("--out")
        .arg(&out)
        // Files, not pipes: a full pipe cannot stall the bench.
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Bounded: the bench stops its nodes on SIGTERM.
    if !eventually(Duration::from_secs(600), || {
        child.try_wait().unwrap().is_some()
    }) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if !eventually(Duration::from_secs(30), || {
            child.try_wait().unwrap().is_some()
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
        panic!("bench cluster did not finish within 600 s; stopped it");
    }
    let status = child.wait().unwrap();
    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(status.success(), "bench failed:\n{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r["nodes"], 5);
    assert_eq!(r["http_nodes"], 2);
    assert_eq!(r["actors"], 30);
    assert!(r["spawn_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["spawn_p99_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["deploy_s"].as_f64().is_some(), "{r}");
    assert!(r["leader_kill"]["first_spawn_s"].as_f64().is_some(), "{r}");
    // HTTP through a surviving proxy after each kill: requests were sent
    // after it and one succeeded.
    for kill in ["leader_kill", "node_kill"] {
        let http = &r[kill]["http"];
        assert!(http["first_success_s"].as_f64().is_some(), "{kill}: {r}");
        assert!(http["longest_gap_s"].as_f64().unwrap() > 0.0, "{kill}: {r}");
        assert!(
            http["requests_after_kill"].as_u64().unwrap() >= 1,
            "{kill}: {r}"
        );
        assert!(http["failed_after_kill"].as_u64().is_some(), "{kill}: {r}");
    }
    // The killed node was no GCS member, held a replica, left the node
    // table, and its replicas run elsewhere.
    let node_kill = &r["node_kill"];
    assert!(node_kill["node"].as_u64().unwrap() >= 3, "{r}");
    assert!(node_kill["replicas_held"].as_u64().unwrap() >= 1, "{r}");
    assert!(node_kill["dead_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(
        node_kill["replicas_running_s"].as_f64().unwrap() > 0.0,
        "{r}"
    );

    assert_eq!(
        r["rss_idle"]["gcs_members_mib"].as_array().unwrap().len(),
        3
    );
    assert!(stdout.contains("SIGKILLed holding"), "{stdout}");
    assert!(stdout.contains("HTTP via"), "{stdout}");
    assert!(r["rss_idle"]["sum_mib"].as_f64().unwrap() > 0.0, "{r}");
    // The 30 actors, the 5 replicas and the 5 nodes at least.
    assert!(r["gcs_keys"].as_u64().unwrap() >= 40, "{r}");
    assert!(r["gcs_member_dir_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(stdout.contains("spawn 30 actors"), "{stdout}");
    // Every node's data dir is under troupe-bench-<pid>: none runs on.
    let left = processes_mentioning(&format!("troupe-bench-{pid}"));
    assert!(left.is_empty(), "node processes left behind: {left:?}");
}
