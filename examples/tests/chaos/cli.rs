//! `troupe-chain chaos run` as a user meets it: a bad scenario is refused
//! with every problem at its path, and a run that misses its SLO says so
//! and exits 1, with its report written.

use std::process::Command;

use crate::{scenario, SERVE_BIN};

/// What `troupe-chain chaos run SCENARIO --out OUT` did: its exit code,
/// stdout, stderr, and the report it wrote (`Null` if none).
pub(crate) struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub report: serde_json::Value,
}

pub(crate) fn run(scenario: &std::path::Path, out_dir: &std::path::Path) -> Run {
    let out = Command::new(SERVE_BIN)
        .args(["chaos", "run"])
        .arg(scenario)
        .arg("--out")
        .arg(out_dir)
        .output()
        .unwrap();
    let report = std::fs::read(out_dir.join("report.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

#[test]
fn a_bad_scenario_is_refused_with_its_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        "bad",
        "name: bad\nduration_s: -1\nworkloads:\n  - {name: w, kind: http, path: chain, rate: 10, clinet: fixed}\n\
         faults:\n  timeline:\n    - {at_s: 1, kind: kill, target: 'node:9'}\n",
    );
    let out = Command::new(SERVE_BIN)
        .args(["chaos", "run"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "duration_s",
        "workloads[0].path",
        "workloads[0].clinet",
        "faults.timeline[0].target",
    ] {
        assert!(stderr.contains(expected), "no {expected:?} in:\n{stderr}");
    }
    assert!(
        stderr.contains("client"),
        "no suggestion for the misspelt field:\n{stderr}"
    );
}

#[test]
fn a_run_that_misses_its_slo_exits_1_with_its_report() {
    let dir = tempfile::tempdir().unwrap();
    // No request comes 1 ms after another at 20 req/s: the gap SLO cannot
    // hold, whatever the machine does.
    let path = scenario(
        dir.path(),
        "strict",
        "name: strict\nduration_s: 4\ncluster: {nodes: 1, network: loopback}\n\
         serve_config:\n  applications:\n    - {name: chain, route_prefix: /chain, app: chain}\n\
         workloads:\n  - {name: chain, kind: http, path: /chain, body: ' a B ', rate: 20, client: fixed}\n\
         checks: {max_gap_s: 0.001, min_success: 0.5}\n",
    );
    let out_dir = dir.path().join("out");
    let Run {
        code,
        stdout,
        stderr,
        report,
    } = run(&path, &out_dir);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("FAIL slo:overall"), "{stdout}");
    let requests = report["overall"]["requests"].as_u64().unwrap();
    assert!(
        requests >= 60,
        "only {requests} requests in 4 s at 20 req/s"
    );
    assert_eq!(
        report["overall"]["success_rate"].as_f64(),
        Some(1.0),
        "{stdout}"
    );
    let html = std::fs::read_to_string(out_dir.join("report.html")).unwrap();
    assert!(html.contains("<svg"));
}

/// The smoke scenario CI runs (`.ci/run` runs every test): leader kill and
/// restart, follower pause, under HTTP and GCS load; it must pass.
#[test]
fn the_smoke_scenario_passes() {
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../chaos/scenarios/smoke.yaml");
    let out_dir = tempfile::tempdir().unwrap();
    let Run {
        code,
        stdout,
        stderr,
        report,
    } = run(&scenario, out_dir.path());
    eprintln!("{stdout}");
    assert_eq!(
        code,
        Some(0),
        "the smoke run failed:\n{stdout}\n{stderr}\nthe nodes' warnings and errors:\n{}",
        node_warnings(out_dir.path())
    );
    // Both faults ran, and the load really flowed through them.
    let faults = report["series"]["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{faults:?}");
    assert!(faults
        .iter()
        .all(|f| f["skipped"].is_null() && !f["heal_ms"].is_null()));
    assert!(report["overall"]["requests"].as_u64().unwrap() >= 4000);
    assert!(report["gcs"]["known"].as_u64().unwrap() >= 200);
}

/// The warnings and errors the nodes of a run logged (`logs/node-*.log`,
/// JSON lines), each distinct message once with its count, so a failed
/// run in CI says what the nodes saw.
fn node_warnings(out: &std::path::Path) -> String {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let Ok(dir) = std::fs::read_dir(out.join("logs")) else {
        return "(no logs)".into();
    };
    for entry in dir.flatten() {
        let node = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let level = v["level"].as_str().unwrap_or_default();
            if level == "WARN" || level == "ERROR" {
                let mut fields = v["fields"].clone();
                let message = fields["message"].take();
                let key = format!("{node} {level} {message} {fields}");
                *seen.entry(key.chars().take(300).collect()).or_default() += 1;
            }
        }
    }
    seen.into_iter()
        .take(80)
        .map(|(line, n)| format!("{n:>5} x {line}\n"))
        .collect()
}

/// Calls to named actors that restart: a node hosting some is killed and
/// comes back; calls are retried on the restarted instances, and no actor
/// runs twice (a killed process hosts nothing).
#[test]
fn actor_calls_survive_a_node_kill() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        "actors",
        "name: actors\nduration_s: 16\nseed: 3\ncluster: {nodes: 3, network: loopback}\n\
         workloads:\n  - {name: calls, kind: actor, rate: 20, actors: 3, max_task_retries: -1, timeout_s: 10}\n\
         faults:\n  timeline:\n    - {at_s: 4, kind: kill, target: gcs_follower, heal_after_s: 6}\n\
         checks: {min_success: 0.95}\n",
    );
    let Run {
        code,
        stdout,
        stderr,
        report,
    } = run(&path, &dir.path().join("out"));
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS single_placement"), "{stdout}");
    assert!(
        report["overall"]["requests"].as_u64().unwrap() >= 250,
        "{stdout}"
    );
    let faults = report["series"]["faults"].as_array().unwrap();
    assert!(
        faults.len() == 1 && faults[0]["skipped"].is_null(),
        "{faults:?}"
    );
}
