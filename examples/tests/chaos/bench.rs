//! `troupe-chain bench cluster` on a tiny cluster: it measures every
//! figure it reports and leaves no node process behind.

use std::process::Command;

use crate::SERVE_BIN;

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
    let child = Command::new(SERVE_BIN)
        .args(["bench", "cluster", "--nodes", "4", "--actors", "30"])
        .args(["--replicas", "3", "--idle-secs", "0.2", "--kill-leader"])
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r["nodes"], 4);
    assert_eq!(r["actors"], 30);
    assert!(r["spawn_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["spawn_p99_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["deploy_s"].as_f64().is_some(), "{r}");
    assert!(r["leader_kill"]["first_spawn_s"].as_f64().is_some(), "{r}");
    assert_eq!(
        r["rss_idle"]["gcs_members_mib"].as_array().unwrap().len(),
        3
    );
    assert!(r["rss_idle"]["sum_mib"].as_f64().unwrap() > 0.0, "{r}");
    // The 30 actors, the 3 replicas and the 4 nodes at least.
    assert!(r["gcs_keys"].as_u64().unwrap() >= 37, "{r}");
    assert!(r["gcs_member_dir_bytes"].as_u64().unwrap() > 0, "{r}");
    assert!(stdout.contains("spawn 30 actors"), "{stdout}");
    // Every node's data dir is under troupe-bench-<pid>: none runs on.
    let left = processes_mentioning(&format!("troupe-bench-{pid}"));
    assert!(left.is_empty(), "node processes left behind: {left:?}");
}
