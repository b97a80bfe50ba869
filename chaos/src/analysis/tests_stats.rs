//! Tests of the confidence bound and the request statistics.

use std::collections::BTreeMap;

use super::bound::binomial_cdf;
use super::*;
use crate::record::{FaultRecord, HttpRecord, Outcome, ProbeSample};

/// A request to `proxy`, due at `sent_ms`, that took `latency_ms`.
fn req(sent_ms: u64, latency_ms: u64, proxy: usize, outcome: Outcome) -> HttpRecord {
    HttpRecord {
        workload: "w".into(),
        sent_ms,
        latency_us: latency_ms * 1000,
        proxy: Some(proxy),
        outcome,
    }
}

/// An executed fault of `class` from `start_ms`, healed at `heal_ms`.
fn fault(class: &str, start_ms: u64, heal_ms: Option<u64>) -> FaultRecord {
    FaultRecord {
        class: class.into(),
        kind: "kill".into(),
        targets: vec![0],
        start_ms,
        heal_ms,
        description: format!("{class} at {start_ms}"),
        skipped: None,
    }
}

/// `P(X <= k)` by the plain sum of binomial terms (small `n` only).
fn brute_cdf(k: u64, n: u64, p: f64) -> f64 {
    let mut sum = 0.0;
    let mut choose = 1.0_f64;
    for i in 0..=k {
        if i > 0 {
            choose = choose * (n - i + 1) as f64 / i as f64;
        }
        sum += choose * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32);
    }
    sum
}

/// Relative closeness.
fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(a.abs())
}

#[test]
fn bound_edge_cases() {
    assert_eq!(failure_upper_bound(0, 0), 1.0);
    assert_eq!(failure_upper_bound(5, 5), 1.0);
    assert_eq!(failure_upper_bound(7, 5), 1.0);
    assert!(close(failure_upper_bound(0, 1), 0.95, 1e-12));
}

#[test]
fn bound_with_no_failure_is_about_three_over_n() {
    let p = failure_upper_bound(0, 30_000);
    assert!(close(p, 9.9853e-5, 1e-4), "{p}");
    assert!(close(p, 1.0 - 0.05_f64.powf(1.0 / 30_000.0), 1e-9));
    assert!((p * 30_000.0 - 3.0).abs() < 0.01);
}

#[test]
fn bound_known_values() {
    // 1 of 10: (1-p)^10 + 10 p (1-p)^9 = 0.05.
    let p = failure_upper_bound(1, 10);
    assert!((p - 0.3942).abs() < 1e-4, "{p}");
    assert!((brute_cdf(1, 10, p) - 0.05).abs() < 1e-10);
    // 3 of 30000: about the Poisson bound 7.7537 / n.
    let p = failure_upper_bound(3, 30_000);
    assert!(close(p, 7.7537 / 30_000.0, 1e-3), "{p}");
    // 5 of 20: the beta quantile, 0.4556 (tables).
    let p = failure_upper_bound(5, 20);
    assert!((p - 0.4556).abs() < 1e-3, "{p}");
}

#[test]
fn bound_matches_brute_force_for_small_n() {
    for n in 1..=60 {
        for k in 0..n {
            let p = failure_upper_bound(k, n);
            assert!(p > k as f64 / n as f64 && p < 1.0, "{k}/{n}: {p}");
            let cdf = brute_cdf(k, n, p);
            assert!((cdf - 0.05).abs() < 1e-9, "{k}/{n}: p {p}, cdf {cdf}");
        }
    }
}

#[test]
fn cdf_matches_brute_force() {
    for (k, n, p) in [
        (1, 10, 0.2),
        (3, 40, 0.1),
        (20, 50, 0.5),
        (49, 50, 0.99),
        (10, 100, 0.3),
    ] {
        let fast = binomial_cdf(k, n, p);
        assert!(close(fast, brute_cdf(k, n, p), 1e-10), "{k} {n} {p}");
    }
}

#[test]
fn bound_scales_to_ten_million_trials() {
    let n = 10_000_000;
    let none = failure_upper_bound(0, n);
    assert!(close(none, 2.9957e-7, 1e-3), "{none}");
    let some = failure_upper_bound(3, n);
    assert!(close(some, 7.7537e-7, 1e-3), "{some}");
    // A large count: about k/n + 1.645 sqrt(p (1 - p) / n).
    let half = failure_upper_bound(n / 2, n);
    let normal = 0.5 + 1.6449 * (0.25 / n as f64).sqrt();
    assert!((half - normal).abs() < 2e-6, "{half} vs {normal}");
    let mut last = 0.0;
    for k in [0, 1, 2, 10, 100, 10_000, 1_000_000] {
        let p = failure_upper_bound(k, n);
        assert!(p > last, "not increasing at {k}");
        last = p;
    }
}

#[test]
fn window_counts_failures_and_latency() {
    let records = vec![
        req(999, 5, 0, Outcome::Ok),
        req(1000, 10, 0, Outcome::Ok),
        req(1100, 20, 1, Outcome::Status(503)),
        req(1200, 30, 1, Outcome::Timeout),
        req(1300, 40, 0, Outcome::Status(503)),
        req(1999, 50, 0, Outcome::Ok),
        req(2000, 60, 0, Outcome::Ok),
    ];
    let w = window_stats("x", &records, 1000, 2000);
    assert_eq!((w.label.as_str(), w.start_ms, w.end_ms), ("x", 1000, 2000));
    assert_eq!(w.requests, 5);
    assert_eq!(
        w.failures,
        BTreeMap::from([("http_503".into(), 2), ("timeout".into(), 1)])
    );
    assert_eq!(w.failed(), 3);
    assert!((w.success_rate - 0.4).abs() < 1e-12);
    assert_eq!(w.failure_rate_upper_95, failure_upper_bound(3, 5));
    assert_eq!((w.p50_ms, w.p99_ms, w.max_ms), (30.0, 50.0, 50.0));
    assert_eq!(w.recovery_ms, None);
}

#[test]
fn empty_window() {
    let w = window_stats("empty", &[req(5000, 1, 0, Outcome::Ok)], 0, 1000);
    assert_eq!(w.requests, 0);
    assert_eq!(w.success_rate, 1.0);
    assert_eq!(w.failure_rate_upper_95, 1.0);
    assert_eq!((w.p50_ms, w.p99_ms, w.max_ms), (0.0, 0.0, 0.0));
    assert_eq!((w.longest_gap_ms, w.longest_gap_proxy), (0, None));
}

#[test]
fn percentiles_are_nearest_rank() {
    let values: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&values, 50.0), 50.0);
    assert_eq!(percentile(&values, 99.0), 99.0);
    assert_eq!(percentile(&values, 100.0), 100.0);
    assert_eq!(percentile(&[7.0], 50.0), 7.0);
    assert_eq!(percentile(&[1.0, 2.0], 99.0), 2.0);
    assert_eq!(percentile(&[], 50.0), 0.0);
}

#[test]
fn gaps_between_successes_per_proxy() {
    let records = vec![
        // Proxy 0: successes ending at 1100, 1500, 1600: gaps 100, 400, 100, 400.
        req(1000, 100, 0, Outcome::Ok),
        req(1400, 100, 0, Outcome::Ok),
        req(1550, 50, 0, Outcome::Ok),
        // Proxy 1: one success ending at 1300, then failures: gap 700 to the end.
        req(1200, 100, 1, Outcome::Ok),
        req(1300, 10, 1, Outcome::Connect),
        // A success of proxy 1 ending after the window does not count.
        req(1900, 500, 1, Outcome::Ok),
    ];
    assert_eq!(longest_gap(&records, 1000, 2000), (700, Some(1)));
    let w = window_stats("g", &records, 1000, 2000);
    assert_eq!((w.longest_gap_ms, w.longest_gap_proxy), (700, Some(1)));
    // In [1000, 1300]: proxy 0 has 100 then 200 (to the end), proxy 1 has
    // 300 before its success at 1300.
    assert_eq!(longest_gap(&records, 1000, 1300), (300, Some(1)));
    // In [1000, 1200) proxy 1 was sent nothing: only proxy 0 counts.
    assert_eq!(longest_gap(&records, 1000, 1200), (100, Some(0)));
}

#[test]
fn success_of_a_request_sent_before_the_window_counts() {
    let records = vec![
        req(900, 200, 0, Outcome::Ok),
        req(1000, 10, 0, Outcome::Timeout),
    ];
    // The success ends at 1100, inside [1000, 2000]: gaps 100 and 900.
    assert_eq!(longest_gap(&records, 1000, 2000), (900, Some(0)));
}

#[test]
fn proxy_without_success_has_the_whole_window() {
    let records = vec![req(1000, 10, 2, Outcome::Broken)];
    assert_eq!(longest_gap(&records, 1000, 3000), (2000, Some(2)));
    let no_proxy = HttpRecord {
        proxy: None,
        outcome: Outcome::NoProxy,
        ..req(1000, 0, 0, Outcome::Ok)
    };
    assert_eq!(longest_gap(&[no_proxy], 1000, 3000), (0, None));
}

#[test]
fn per_second_fills_empty_seconds() {
    let records = vec![
        req(100, 10, 0, Outcome::Ok),
        req(900, 30, 0, Outcome::Timeout),
        req(3500, 20, 0, Outcome::Ok),
    ];
    let buckets = per_second(&records);
    assert_eq!(buckets.len(), 4);
    assert_eq!(
        buckets.iter().map(|b| b.t_s).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!((buckets[0].ok, buckets[0].failed), (1, 1));
    assert_eq!(
        (buckets[0].p50_ms, buckets[0].p99_ms, buckets[0].max_ms),
        (10.0, 30.0, 30.0)
    );
    assert_eq!(
        (buckets[1].ok, buckets[1].failed, buckets[1].max_ms),
        (0, 0, 0.0)
    );
    assert_eq!(
        (buckets[3].ok, buckets[3].failed, buckets[3].p50_ms),
        (1, 0, 20.0)
    );
    assert!(per_second(&[]).is_empty());
}

#[test]
fn fault_windows_skip_skipped_and_cap() {
    let mut skipped = fault("pause", 50, Some(60));
    skipped.skipped = Some("no cgroup".into());
    let faults = vec![
        fault("kill", 100, Some(200)),
        skipped,
        fault("kill", 300, None),
        fault("partition", 900, Some(950)),
    ];
    assert_eq!(
        fault_windows(&faults, 30, 1000),
        vec![(0, 100, 230), (2, 300, 1000), (3, 900, 980)]
    );
    assert_eq!(fault_windows(&faults, 100, 1000)[2], (3, 900, 1000));
}

#[test]
fn complement_of_windows() {
    assert_eq!(complement(&[], 100), vec![(0, 100)]);
    assert_eq!(
        complement(&[(10, 20), (15, 30), (50, 60)], 100),
        vec![(0, 10), (30, 50), (60, 100)]
    );
    assert_eq!(complement(&[(0, 40), (40, 100)], 100), vec![]);
    assert_eq!(complement(&[(20, 150)], 100), vec![(0, 20)]);
}

#[test]
fn class_rows_union_windows_and_baseline() {
    // Requests every 100 ms from 0 to 9900, all to proxy 0, all ok but
    // those due in [2000, 2500) (failed) and [6000, 7000) (failed).
    let records: Vec<HttpRecord> = (0..100)
        .map(|i| {
            let sent = i * 100;
            let failed = (2000..2500).contains(&sent) || (6000..7000).contains(&sent);
            req(
                sent,
                10,
                0,
                if failed {
                    Outcome::Status(503)
                } else {
                    Outcome::Ok
                },
            )
        })
        .collect();
    let faults = vec![
        fault("kill", 2000, Some(2500)),
        fault("pause", 6000, Some(7000)),
        // Overlaps the first kill window: its requests count once.
        fault("kill", 2200, Some(3000)),
    ];
    let rows = class_stats(&records, &faults, 500, 10_000);
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, vec!["kill", "pause", "baseline"]);
    let kill = &rows[0];
    // Windows [2000, 3000) and [2200, 3500): union [2000, 3500), 15 requests.
    assert_eq!(
        (kill.start_ms, kill.end_ms, kill.requests, kill.failed()),
        (2000, 3500, 15, 5)
    );
    // No success ends in 1990..2510: the first window's gap runs from its
    // start (2000) to the success ending at 2510.
    assert_eq!(
        (kill.longest_gap_ms, kill.longest_gap_proxy),
        (510, Some(0))
    );
    let pause = &rows[1];
    assert_eq!(
        (pause.start_ms, pause.end_ms, pause.requests, pause.failed()),
        (6000, 7500, 15, 10)
    );
    assert_eq!(pause.longest_gap_ms, 1010);
    let baseline = &rows[2];
    assert_eq!((baseline.start_ms, baseline.end_ms), (0, 10_000));
    assert_eq!((baseline.requests, baseline.failed()), (70, 0));
    assert_eq!(kill.requests + pause.requests + baseline.requests, 100);
    // Outside the windows: successes every 100 ms; the longest gaps are at
    // the edges of the stretches ([7500, 10000) ends 9910 → 90; 0 → 10).
    assert_eq!(
        (baseline.longest_gap_ms, baseline.longest_gap_proxy),
        (100, Some(0))
    );
}

#[test]
fn class_stats_without_faults_is_baseline_only() {
    let records = vec![req(10, 1, 0, Outcome::Ok), req(20, 1, 0, Outcome::Timeout)];
    let rows = class_stats(&records, &[], 100, 1000);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].label.as_str(), rows[0].requests, rows[0].failed()),
        ("baseline", 2, 1)
    );
    assert_eq!(rows[0].longest_gap_ms, 989);
}

#[test]
fn the_baseline_gap_counts_from_the_first_request_not_the_origin() {
    // The load starts 5 s after the origin (the cluster's start-up); then
    // a success every 100 ms until 6 s.
    let records: Vec<HttpRecord> = (0..10)
        .map(|k| req(5_000 + 100 * k, 1, 0, Outcome::Ok))
        .collect();
    let rows = class_stats(&records, &[], 100, 6_000);
    assert_eq!(rows[0].longest_gap_ms, 100, "{:?}", rows[0]);
}

/// A probe at `at_ms` with `(deployment, running, target)`.
fn probe(at_ms: u64, counts: &[(&str, usize, usize)]) -> ProbeSample {
    ProbeSample {
        at_ms,
        replicas: counts.iter().map(|&(k, r, _)| (k.to_string(), r)).collect(),
        targets: counts.iter().map(|&(k, _, t)| (k.to_string(), t)).collect(),
        ..ProbeSample::default()
    }
}

#[test]
fn recovery_waits_for_every_target() {
    let probes = vec![
        probe(900, &[("a/d", 2, 2)]),
        probe(1000, &[("a/d", 1, 2)]),
        probe(2000, &[]),
        probe(3000, &[("a/d", 2, 2), ("a/e", 0, 1)]),
        probe(4000, &[("a/d", 2, 2), ("a/e", 1, 1)]),
        probe(5000, &[("a/d", 2, 2), ("a/e", 1, 1)]),
    ];
    assert_eq!(recovery_ms(&probes, 950), Some(3050));
    assert_eq!(recovery_ms(&probes, 4000), Some(0));
    assert_eq!(recovery_ms(&probes, 5001), None);
    let missing = ProbeSample {
        at_ms: 10,
        targets: [("a/d".to_string(), 1)].into(),
        ..ProbeSample::default()
    };
    assert_eq!(recovery_ms(&[missing], 0), None);
}
