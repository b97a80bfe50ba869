//! Serving never waits on the control plane (issue #14), on real processes
//! in network namespaces through `troupe-chain chaos run`: a node hosting
//! replicas is killed, paused and cut off under load, and two of three
//! nodes are killed (quorum lost); with lost requests retried on other
//! replicas, not one request may fail. A node that returned with too few
//! replicas and is then cut off fails its proxy's health check, so a
//! health-checking client moves to the other proxies. (The gap and latency goals are
//! measured on release builds in CHAOS.md, not asserted here: CI's two
//! cores are shared.)

use crate::cli::{run, Run};
use crate::namespaces_or_skip;

fn scenario(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../chaos/scenarios/ci")
        .join(name)
}

/// Runs `name` and checks what every serving scenario must show: exit 0
/// (its own checks held), every fault injected and healed, and at least
/// `min_requests` requests.
fn passes(name: &str, faults: usize, min_requests: u64) -> serde_json::Value {
    let out_dir = tempfile::tempdir().unwrap();
    let Run {
        code,
        stdout,
        stderr,
        report,
    } = run(&scenario(name), out_dir.path());
    eprintln!("{stdout}");
    assert_eq!(code, Some(0), "{name} failed:\n{stdout}\n{stderr}");
    let injected = report["series"]["faults"].as_array().unwrap();
    assert_eq!(injected.len(), faults, "{injected:?}");
    assert!(
        injected
            .iter()
            .all(|f| f["skipped"].is_null() && !f["heal_ms"].is_null()),
        "{injected:?}"
    );
    let overall = &report["overall"];
    let requests = overall["requests"].as_u64().unwrap();
    assert!(requests >= min_requests, "only {requests} requests");
    report
}

/// [`passes`], and not one request failed.
fn passes_without_a_failed_request(
    name: &str,
    faults: usize,
    min_requests: u64,
) -> serde_json::Value {
    let report = passes(name, faults, min_requests);
    let overall = &report["overall"];
    assert_eq!(overall["success_rate"].as_f64(), Some(1.0), "{overall}");
    report
}

#[test]
fn a_replica_node_killed_paused_or_cut_off_fails_no_request() {
    if !namespaces_or_skip("a_replica_node_killed_paused_or_cut_off_fails_no_request") {
        return;
    }
    // 42 s at 60 requests/s.
    passes_without_a_failed_request("replica-node-faults.yaml", 3, 2_000);
}

#[test]
fn the_survivor_of_a_quorum_loss_serves_every_request() {
    if !namespaces_or_skip("the_survivor_of_a_quorum_loss_serves_every_request") {
        return;
    }
    // 30 s at 60 requests/s.
    passes_without_a_failed_request("quorum-loss.yaml", 2, 1_400);
}

#[test]
fn an_autoscaled_deployment_loses_a_node_and_fails_no_request() {
    if !namespaces_or_skip("an_autoscaled_deployment_loses_a_node_and_fails_no_request") {
        return;
    }
    // 36 s at 60 requests/s.
    let report = passes_without_a_failed_request("autoscale-node-kill.yaml", 1, 1_800);
    // The autoscaler scaled up before the kill (from the initial 1), and
    // the replacement kept its target.
    let targets: Vec<(u64, u64)> = report["series"]["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            Some((
                p["at_ms"].as_u64()?,
                p["targets"]["sleepy/sleepy"].as_u64()?,
            ))
        })
        .collect();
    let before_kill = targets
        .iter()
        .filter(|(at, _)| *at < 16_000)
        .map(|(_, t)| *t);
    let peak = before_kill.max().unwrap_or(0);
    assert!(peak >= 2, "no scale-up before the kill: {targets:?}");
    let last = targets.last().map_or(0, |(_, t)| *t);
    assert!(last >= peak, "the target fell after the kill: {targets:?}");
}

#[test]
fn a_proxy_cut_off_from_the_replicas_it_needs_fails_its_health_check() {
    if !namespaces_or_skip("a_proxy_cut_off_from_the_replicas_it_needs_fails_its_health_check") {
        return;
    }
    // 40 s at 60 requests/s; the scenario's own check is 95% in every
    // fault window (82.9% in the split's before the health check knew).
    let report = passes("returned-node-cut.yaml", 2, 2_000);
    let split = report["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "partition-split-node:2")
        .unwrap_or_else(|| panic!("no split window: {}", report["classes"]));
    assert!(split["requests"].as_u64().unwrap() >= 600, "{split}");
    assert!(split["success_rate"].as_f64().unwrap() >= 0.95, "{split}");
}
