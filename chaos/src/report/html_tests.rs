//! Tests of the HTML page and its charts.

use std::collections::BTreeMap;

use super::*;
use crate::record::{FaultRecord, ProbeSample};

const PLANTED: &str = "<script>alert(1)</script>";

fn empty_report() -> Report {
    Report {
        scenario: String::new(),
        scenario_text: String::new(),
        seed: 0,
        git_revision: None,
        command: String::new(),
        started_at: String::new(),
        machine: MachineInfo::default(),
        network: String::new(),
        unavailable: vec![],
        duration_ms: 0,
        overall: WindowStats::default(),
        classes: vec![],
        windows: vec![],
        checks: vec![],
        gcs: None,
        series: Series::default(),
    }
}

fn stats(label: &str, start_ms: u64, end_ms: u64, failed: u64) -> WindowStats {
    WindowStats {
        label: label.into(),
        start_ms,
        end_ms,
        requests: 1000,
        failures: BTreeMap::from([("http_503".to_string(), failed)]),
        success_rate: 1.0 - failed as f64 / 1000.0,
        failure_rate_upper_95: 0.01,
        longest_gap_ms: 1500,
        longest_gap_proxy: Some(0),
        p50_ms: 1.2,
        p99_ms: 30.0,
        max_ms: 900.0,
        recovery_ms: Some(1800),
    }
}

fn fault(class: &str, start_ms: u64, heal_ms: Option<u64>, skipped: bool) -> FaultRecord {
    FaultRecord {
        class: class.into(),
        kind: "kill".into(),
        targets: vec![0],
        start_ms,
        heal_ms,
        description: format!("SIGKILL node 0 {PLANTED}"),
        skipped: skipped.then(|| "no namespaces".to_string()),
    }
}

fn sample_report() -> Report {
    let per_second = (0..20)
        .map(|t| {
            let hit = (5..8).contains(&t);
            SecondBucket {
                t_s: t,
                ok: if hit { 60 } else { 100 },
                failed: if hit { 40 } else { 0 },
                p50_ms: 1.0 + t as f64 * 0.1,
                p99_ms: if hit { 800.0 } else { 12.0 },
                max_ms: if hit { 2000.0 } else { 40.0 },
            }
        })
        .collect();
    let probes = (0..20)
        .map(|t| {
            let down = (5..8).contains(&t);
            ProbeSample {
                at_ms: t * 1000 + 100,
                leader: if down {
                    None
                } else if t < 5 {
                    Some(0)
                } else {
                    Some(2)
                },
                term: if down && t == 6 {
                    None
                } else {
                    Some(if t < 6 { 3 } else { 4 })
                },
                replicas: BTreeMap::from([
                    ("app/echo".to_string(), if down { 1 } else { 2 }),
                    ("app/slow".to_string(), 1),
                ]),
                targets: BTreeMap::from([("app/echo".to_string(), 2), ("app/slow".to_string(), 1)]),
                up: vec![0, 1, 2],
            }
        })
        .collect();
    Report {
        scenario: "kill-leader".into(),
        scenario_text: format!("name: kill-leader\n# {PLANTED}\n"),
        seed: 7,
        git_revision: Some("abc1234".into()),
        command: "troupe chaos run kill.yaml --seed 7".into(),
        started_at: "2024-05-01T12:00:00Z".into(),
        machine: MachineInfo {
            cpus: 8,
            load_start: Some(0.5),
            load_end: Some(1.25),
            kernel: Some("6.1.0".into()),
        },
        network: "loopback".into(),
        unavailable: vec!["partition: needs namespaces".into()],
        duration_ms: 20_000,
        overall: stats("all", 0, 20_000, 120),
        classes: vec![
            stats("kill-gcs_leader", 5_000, 8_000, 120),
            stats("pause-proxy", 12_000, 20_000, 0),
            stats("baseline", 0, 20_000, 0),
        ],
        windows: vec![
            stats(&format!("SIGKILL node 0 {PLANTED}"), 5_000, 8_000, 120),
            stats("SIGSTOP node 1", 12_000, 20_000, 0),
        ],
        checks: vec![
            CheckOutcome {
                name: "linearizable".into(),
                passed: true,
                detail: "ok".into(),
            },
            CheckOutcome {
                name: "slo:kill-gcs_leader".into(),
                passed: false,
                detail: format!("gap 3.2 s > 2 s {PLANTED}"),
            },
        ],
        gcs: Some(GcsSummary {
            operations: 500,
            known: 490,
            acknowledged_writes: 200,
        }),
        series: Series {
            per_second,
            probes,
            faults: vec![
                fault("kill-gcs_leader", 5_000, Some(8_000), false),
                fault("pause-proxy", 12_000, None, false),
                fault("partition-gcs", 9_000, Some(10_000), true),
            ],
        },
    }
}

#[test]
fn page_has_charts_labels_and_escapes_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    write_html(&sample_report(), &path).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "four charts");
    for label in ["kill-gcs_leader", "pause-proxy", "baseline", "overall"] {
        assert!(html.contains(label), "{label} missing");
    }
    assert!(html.contains("app/echo target"));
    assert!(html.contains("FAIL"));
    assert!(html.contains("abc1234"));
    assert!(html.contains("troupe chaos run kill.yaml --seed 7"));
    assert!(html.contains("<details>"));
    assert!(!html.contains("<script"), "planted markup must be escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("skipped: no namespaces"));
    assert!(
        !html.contains("http://") || html.matches("http://").count() == 4,
        "only xmlns"
    );
    assert!(!html.contains("no data"));
}

#[test]
fn empty_report_renders_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.html");
    write_html(&empty_report(), &path).unwrap();
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(html.matches("<svg").count(), 4);
    assert_eq!(html.matches("no data").count(), 4);
    assert!(html.contains("PASS"));
    // And the table of an empty report too.
    assert!(summary_table(&empty_report()).contains("| overall"));
}

#[test]
fn escape_covers_markup_and_quotes() {
    assert_eq!(
        html::esc("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}
