//! Judging a run: the per-class and per-fault statistics, every check
//! (SLOs, convergence, the GCS history, lost writes, panics, double
//! placement) and the [`Report`] they make.

use std::path::Path;

use crate::analysis;
use crate::cluster::Cluster;
use crate::linearizability::{check, CheckResult, KvInput, KvModel, KvOutput, Recorder};
use crate::record::{FaultRecord, HttpRecord, ProbeSample};
use crate::report::{self, CheckOutcome, GcsSummary, MachineInfo, Report, Series, WindowStats};
use crate::run::RunOptions;
use crate::scenario::{self, Scenario, Workload};

/// What the driving phase collected.
pub(crate) struct Driven {
    pub(crate) requests: Vec<HttpRecord>,
    pub(crate) faults: Vec<FaultRecord>,
    pub(crate) probes: Vec<ProbeSample>,
    pub(crate) history: Option<Recorder<KvInput, KvOutput>>,
    pub(crate) load_ms: (u64, u64),
    pub(crate) converged: Option<u64>,
    pub(crate) last_heal_ms: u64,
    pub(crate) setup_notes: Vec<String>,
}

/// What judging needs besides the collected data.
pub(crate) struct Judging {
    pub(crate) network: &'static str,
    pub(crate) origin_unix_ms: u64,
    pub(crate) started_at: String,
    pub(crate) load_start: Option<f64>,
    pub(crate) unavailable: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn judge(
    scenario: &Scenario,
    text: &str,
    seed: u64,
    options: &RunOptions,
    out: &Path,
    cluster: &Cluster,
    driven: Driven,
    j: Judging,
) -> anyhow::Result<Report> {
    let checks_spec = &scenario.checks;
    let tail_ms = (checks_spec.window_tail_s * 1000.0) as u64;
    // A balanced client is judged as its load balancer's clients see it:
    // one gap over all its proxies (a dead proxy it routes around is no
    // gap); a fixed client per proxy.
    let balanced: Vec<&str> = scenario
        .workloads
        .iter()
        .filter_map(|w| match w {
            Workload::Http(h) if h.client == scenario::ClientMode::Balanced => {
                Some(h.name.as_str())
            }
            _ => None,
        })
        .collect();
    let mut requests = driven.requests;
    for r in &mut requests {
        if balanced.contains(&r.workload.as_str()) && r.proxy.is_some() {
            r.proxy = Some(report::BALANCED_PROXY);
        }
    }
    let Rows {
        overall,
        classes,
        windows,
    } = rows(
        scenario,
        &requests,
        &driven.faults,
        &driven.probes,
        tail_ms,
        driven.load_ms,
    );
    let mut checks = Vec::new();
    let slo = |w: &report::WindowStats| {
        let mut passed = w.success_rate >= checks_spec.min_success;
        let mut detail = format!(
            "{:.4}% of {} requests succeeded (SLO {:.4}%)",
            w.success_rate * 100.0,
            w.requests,
            checks_spec.min_success * 100.0
        );
        if let Some(gap) = checks_spec.max_gap_s {
            let ok = w.longest_gap_ms as f64 <= gap * 1000.0;
            passed &= ok;
            detail.push_str(&format!(
                "; longest gap {:.2} s (limit {gap:.2} s)",
                w.longest_gap_ms as f64 / 1000.0
            ));
        }
        (passed, detail)
    };
    let (passed, detail) = slo(&overall);
    checks.push(CheckOutcome {
        name: "slo:overall".into(),
        passed: passed && overall.requests > 0,
        detail: if overall.requests == 0 {
            "no request was sent".into()
        } else {
            detail
        },
    });
    for c in classes.iter().filter(|c| !c.label.starts_with("baseline")) {
        let (passed, detail) = slo(c);
        checks.push(CheckOutcome {
            name: format!("slo:{}", c.label),
            passed,
            detail,
        });
    }
    let skipped: Vec<String> = driven
        .faults
        .iter()
        .filter_map(|f| f.skipped.as_ref().map(|s| format!("{}: {s}", f.class)))
        .collect();
    if !skipped.is_empty() {
        checks.push(CheckOutcome {
            name: "faults_injected".into(),
            passed: false,
            detail: format!(
                "{} fault(s) could not be injected: {}",
                skipped.len(),
                skipped.join("; ")
            ),
        });
    }
    let executed = driven.faults.iter().filter(|f| f.skipped.is_none()).count();
    // Every executed fault must be followed by convergence within the
    // limit (read off the probes taken during and after the load; after
    // the load the prober keeps looking until it converges or the limit
    // passes).
    let limit_ms = (checks_spec.converge_within_s * 1000.0) as u64;
    let slowest = windows
        .iter()
        .map(|w| (w.recovery_ms, w.label.as_str()))
        .max_by_key(|(r, _)| r.map_or(u64::MAX, |r| r));
    let last = analysis::recovery_ms(&driven.probes, driven.last_heal_ms);
    let (passed, detail) = match slowest {
        _ if driven.converged.is_none() || last.is_none() => (
            false,
            format!(
                "deployments were not back at their target counts within {:.0} s of the last heal",
                checks_spec.converge_within_s
            ),
        ),
        Some((None, label)) => (
            false,
            format!("never back at the target counts after: {label}"),
        ),
        Some((Some(r), label)) => (
            r <= limit_ms,
            format!(
                "every deployment ran its target count again at most {:.1} s after a heal \
                 (slowest: {label}; limit {:.0} s; {executed} fault(s) executed)",
                r as f64 / 1000.0,
                checks_spec.converge_within_s
            ),
        ),
        None => (
            true,
            format!(
                "every deployment ran its target count {:.1} s after the load (no fault executed)",
                last.unwrap_or(0) as f64 / 1000.0
            ),
        ),
    };
    // With no serve config there is nothing to converge.
    if scenario.serve_config.is_some() {
        checks.push(CheckOutcome {
            name: "converged".into(),
            passed,
            detail,
        });
    }
    for note in &driven.setup_notes {
        checks.push(CheckOutcome {
            name: "gcs_final_reads".into(),
            passed: false,
            detail: note.clone(),
        });
    }
    let mut gcs = None;
    if let Some(history) = driven.history {
        let history = history.into_history();
        let known = history
            .operations()
            .iter()
            .filter(|o| o.output.is_some())
            .count();
        let acknowledged_writes = history
            .operations()
            .iter()
            .filter(|o| {
                matches!(
                    (&o.input, &o.output),
                    (KvInput::Put { .. }, Some(KvOutput::Ok))
                        | (KvInput::Cas { .. }, Some(KvOutput::Swapped(true)))
                )
            })
            .count();
        gcs = Some(GcsSummary {
            operations: history.len(),
            known,
            acknowledged_writes,
        });
        checks.push(CheckOutcome {
            name: "gcs_known_operations".into(),
            passed: known >= checks_spec.min_known_gcs_ops,
            detail: format!(
                "{known} of {} operations had a known outcome (at least {} required)",
                history.len(),
                checks_spec.min_known_gcs_ops
            ),
        });
        if checks_spec.linearizable {
            let (passed, detail) = match check::<KvModel>(&history) {
                Ok(CheckResult::Ok) => (true, format!("{} operations checked", history.len())),
                Ok(CheckResult::Illegal { explanation, .. }) => {
                    (false, format!("not linearizable: {explanation}"))
                }
                Ok(CheckResult::Unknown { key, steps }) => (
                    false,
                    format!(
                        "the checker gave up on key {:?} after {steps} steps",
                        String::from_utf8_lossy(&key)
                    ),
                ),
                Err(e) => (false, format!("the history cannot be checked: {e}")),
            };
            checks.push(CheckOutcome {
                name: "linearizable".into(),
                passed,
                detail,
            });
        }
        if checks_spec.no_lost_writes {
            let lost = analysis::lost_writes(&history);
            checks.push(CheckOutcome {
                name: "no_lost_writes".into(),
                passed: lost.is_empty(),
                detail: if lost.is_empty() {
                    format!("{acknowledged_writes} acknowledged writes, none lost")
                } else {
                    lost.join("; ")
                },
            });
        }
    }
    let mut panics = Vec::new();
    let mut events = Vec::new();
    for i in 0..cluster.len() {
        let text = std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default();
        let scan = analysis::scan_log(i, &text, j.origin_unix_ms);
        panics.extend(scan.panics.into_iter().map(|p| format!("node {i}: {p}")));
        events.extend(scan.events);
    }
    if checks_spec.no_panics {
        checks.push(CheckOutcome {
            name: "no_panics".into(),
            passed: panics.is_empty(),
            detail: if panics.is_empty() {
                "no node logged a panic".into()
            } else {
                panics.join("; ")
            },
        });
    }
    // Instances exist only where something was deployed or spawned.
    let hosts_actors = scenario.serve_config.is_some()
        || scenario
            .workloads
            .iter()
            .any(|w| matches!(w, Workload::Actor(_)));
    if checks_spec.single_placement && hosts_actors {
        let doubles = analysis::double_placements(&events, &cluster.lives());
        let starts = events.iter().filter(|e| e.started).count();
        checks.push(CheckOutcome {
            name: "single_placement".into(),
            passed: doubles.is_empty() && starts > 0,
            detail: if starts == 0 {
                "no instance start was logged: the check saw nothing".into()
            } else if doubles.is_empty() {
                format!("{starts} instance starts, no actor ran on two nodes at once")
            } else {
                doubles.join("; ")
            },
        });
    }
    let load_end = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let mut command = format!(
        "troupe chaos run {} --seed {seed}",
        options.scenario.display()
    );
    if let Some(o) = &options.out {
        command.push_str(&format!(" --out {}", o.display()));
    }
    let _ = out;
    Ok(Report {
        scenario: scenario.name.clone(),
        scenario_text: text.to_owned(),
        seed,
        git_revision: git_revision(),
        command,
        started_at: j.started_at,
        machine: MachineInfo {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_start: j.load_start,
            load_end,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
        },
        network: j.network.into(),
        unavailable: j.unavailable,
        duration_ms: driven.load_ms.1 - driven.load_ms.0,
        overall,
        classes,
        windows,
        checks,
        gcs,
        series: Series {
            per_second: analysis::per_second(&requests),
            probes: driven.probes,
            faults: driven.faults,
        },
    })
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The statistics rows of a run.
pub(crate) struct Rows {
    /// Every request of the run.
    pub(crate) overall: WindowStats,
    /// Per class (and baseline, and per workload's overall when several).
    pub(crate) classes: Vec<WindowStats>,
    /// Per executed fault.
    pub(crate) windows: Vec<WindowStats>,
}

/// The rows of a run's requests: each workload that sends requests (HTTP,
/// actor calls) is judged on its own; with several, their rows carry the
/// workload's name. Pure.
pub(crate) fn rows(
    scenario: &Scenario,
    requests: &[HttpRecord],
    faults: &[FaultRecord],
    probes: &[ProbeSample],
    tail_ms: u64,
    load_ms: (u64, u64),
) -> Rows {
    let run_end = load_ms.1;
    let request_workloads: Vec<&str> = scenario
        .workloads
        .iter()
        .filter(|w| !matches!(w, Workload::Gcs(_)))
        .map(Workload::name)
        .collect();
    let several = request_workloads.len() > 1;
    let label = |l: &str, w: &str| {
        if several {
            format!("{l} [{w}]")
        } else {
            l.to_owned()
        }
    };
    let spans = analysis::fault_windows(faults, tail_ms, run_end);
    let mut overall = analysis::window_stats("overall", requests, load_ms.0, run_end + 1);
    let (mut classes, mut windows, mut overall_rows) = (Vec::new(), Vec::new(), Vec::new());
    for w in &request_workloads {
        let mine: Vec<HttpRecord> = requests
            .iter()
            .filter(|r| r.workload == *w)
            .cloned()
            .collect();
        let mut rows = analysis::class_stats(&mine, faults, tail_ms, run_end);
        let mut fault_rows = Vec::new();
        for &(index, start, end) in &spans {
            let f = &faults[index];
            let mut row = analysis::window_stats(&label(&f.description, w), &mine, start, end);
            row.recovery_ms = analysis::recovery_ms(probes, f.heal_ms.unwrap_or(f.start_ms));
            fault_rows.push((f.class.clone(), row));
        }
        // A class recovers when its slowest window does.
        for row in &mut rows {
            let recoveries: Vec<Option<u64>> = fault_rows
                .iter()
                .filter(|(class, _)| *class == row.label)
                .map(|(_, r)| r.recovery_ms)
                .collect();
            if !recoveries.is_empty() {
                row.recovery_ms = recoveries
                    .into_iter()
                    .collect::<Option<Vec<u64>>>()
                    .and_then(|v| v.into_iter().max());
            }
            row.label = label(&row.label, w);
        }
        if several {
            overall_rows.push(analysis::window_stats(
                &label("overall", w),
                &mine,
                load_ms.0,
                run_end + 1,
            ));
        }
        classes.extend(rows);
        windows.extend(fault_rows.into_iter().map(|(_, r)| r));
    }
    if several {
        // Gaps of different workloads do not add up: the run's longest gap
        // is its workloads' longest.
        if let Some(worst) = overall_rows.iter().max_by_key(|r| r.longest_gap_ms) {
            overall.longest_gap_ms = worst.longest_gap_ms;
            overall.longest_gap_proxy = worst.longest_gap_proxy;
        }
        classes.extend(overall_rows);
    }
    Rows {
        overall,
        classes,
        windows,
    }
}

/// Unix ms as RFC 3339 UTC (seconds precision).
pub(crate) fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    fn call(workload: &str, sent_ms: u64, outcome: Outcome) -> HttpRecord {
        HttpRecord {
            workload: workload.into(),
            sent_ms,
            latency_us: 1000,
            proxy: Some(report::BALANCED_PROXY),
            outcome,
        }
    }

    #[test]
    fn several_workloads_are_judged_apart() {
        let scenario = scenario::parse_yaml(
            "name: t\nduration_s: 10\nworkloads:\n  - {name: web, kind: http, path: /w, rate: 100}\n  - {name: calls, kind: actor, rate: 10}\n",
            Path::new("."),
        )
        .unwrap();
        // web: a success every 10 ms from 0 to 10 s; calls: every 100 ms,
        // failing from 2 s to 4 s (a 2 s gap of its own).
        let mut requests: Vec<HttpRecord> = (0..1000)
            .map(|k| call("web", k * 10, Outcome::Ok))
            .collect();
        requests.extend((0..100).map(|k| {
            let at = k * 100;
            let outcome = if (2000..4000).contains(&at) {
                Outcome::Unavailable
            } else {
                Outcome::Ok
            };
            call("calls", at, outcome)
        }));
        let faults = vec![FaultRecord {
            class: "kill".into(),
            kind: "kill".into(),
            targets: vec![0],
            start_ms: 1000,
            heal_ms: Some(3000),
            description: "SIGKILL node 0".into(),
            skipped: None,
        }];
        let rows = rows(&scenario, &requests, &faults, &[], 1000, (0, 10_000));
        let labels: Vec<&str> = rows.classes.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "kill [web]",
                "baseline [web]",
                "kill [calls]",
                "baseline [calls]",
                "overall [web]",
                "overall [calls]"
            ]
        );
        let by = |l: &str| rows.classes.iter().find(|r| r.label == l).unwrap();
        assert_eq!(
            (by("kill [web]").failed(), by("kill [web]").longest_gap_ms),
            (0, 10)
        );
        assert_eq!(by("kill [calls]").failures.get("unavailable"), Some(&20));
        assert!(by("overall [calls]").longest_gap_ms >= 2000);
        assert_eq!(rows.overall.requests, 1100);
        assert_eq!(
            rows.overall.longest_gap_ms,
            by("overall [calls]").longest_gap_ms
        );
        assert_eq!(rows.windows.len(), 2, "one row per fault per workload");
    }

    #[test]
    fn one_workload_keeps_plain_labels() {
        let scenario = scenario::parse_yaml(
            "name: t\nduration_s: 10\nworkloads:\n  - {name: web, kind: http, path: /w, rate: 100}\n  - {name: kv, kind: gcs, rate: 10}\n",
            Path::new("."),
        )
        .unwrap();
        let requests: Vec<HttpRecord> =
            (0..100).map(|k| call("web", k * 10, Outcome::Ok)).collect();
        let rows = rows(&scenario, &requests, &[], &[], 1000, (0, 1000));
        let labels: Vec<&str> = rows.classes.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["baseline"]);
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_582_400_000), "2026-12-06T18:40:00Z");
    }
}
