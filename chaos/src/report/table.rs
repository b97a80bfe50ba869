//! The summary table: one row per fault class and one for the whole run,
//! the checks, and what the run was. Plain text that is also Markdown (the
//! table is a pipe table; the lines after it are plain lines).
//!
//! The cell formatting ([`HEADERS`], [`cells`]) is shared with the HTML
//! page so both show the same numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Report, WindowStats};

/// The column names of a stats row.
pub(super) const HEADERS: [&str; 9] = [
    "class",
    "requests",
    "failed",
    "failures by kind",
    "success %",
    "fail rate 95% UB",
    "longest gap s",
    "p50/p99/max ms",
    "recovery s",
];

/// Which columns are numbers (right-aligned).
const NUMERIC: [bool; 9] = [false, true, true, false, true, true, true, true, true];

/// The per-class table and the checks, as plain text.
///
/// The table has one row per entry of `report.classes` and an `overall`
/// row; then one `PASS name: detail` / `FAIL name: detail` line per check,
/// then the scenario, seed, network and unavailable fault kinds.
pub fn summary_table(report: &Report) -> String {
    let mut rows: Vec<[String; 9]> = report.classes.iter().map(cells).collect();
    let mut overall = cells(&report.overall);
    overall[0] = "overall".into();
    rows.push(overall);
    let mut out = markdown_table(&rows);
    out.push('\n');
    if report.checks.is_empty() {
        out.push_str("(no checks)\n");
    }
    for check in &report.checks {
        let verdict = if check.passed { "PASS" } else { "FAIL" };
        let _ = writeln!(
            out,
            "{verdict} {}: {}",
            one_line(&check.name),
            one_line(&check.detail)
        );
    }
    out.push('\n');
    let _ = writeln!(out, "scenario: {}", one_line(&report.scenario));
    let _ = writeln!(out, "seed: {}", report.seed);
    let _ = writeln!(out, "network: {}", one_line(&report.network));
    if !report.unavailable.is_empty() {
        let list: Vec<String> = report.unavailable.iter().map(|u| one_line(u)).collect();
        let _ = writeln!(out, "unavailable: {}", list.join("; "));
    }
    let failed = report.checks.iter().filter(|c| !c.passed).count();
    let verdict = if failed == 0 { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "verdict: {verdict} ({failed} of {} checks failed)",
        report.checks.len()
    );
    out
}

/// A pipe table with padded columns, numbers right-aligned.
fn markdown_table(rows: &[[String; 9]]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| md_cell(c)).collect())
        .collect();
    let mut widths: Vec<usize> = HEADERS.iter().map(|h| h.len().max(3)).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
        out.push('|');
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let (l, r) = if NUMERIC[i] { (pad, 0) } else { (0, pad) };
            let _ = write!(out, " {}{cell}{} |", " ".repeat(l), " ".repeat(r));
        }
        out.push('\n');
    };
    line(&mut out, &mut HEADERS.iter().map(|h| h.to_string()));
    out.push('|');
    for (w, numeric) in widths.iter().zip(NUMERIC) {
        let dashes = "-".repeat(*w);
        if numeric {
            let _ = write!(out, " {}: |", &dashes[1..]);
        } else {
            let _ = write!(out, " {dashes} |");
        }
    }
    out.push('\n');
    for row in rows {
        line(&mut out, &mut row.into_iter());
    }
    out
}

/// One stats row's cells, unescaped, in [`HEADERS`] order.
pub(super) fn cells(w: &WindowStats) -> [String; 9] {
    let none = w.requests == 0;
    let gap = match w.longest_gap_proxy {
        Some(super::BALANCED_PROXY) => format!("{:.2} (lb)", w.longest_gap_ms as f64 / 1000.0),
        Some(p) => format!("{:.2} (n{p})", w.longest_gap_ms as f64 / 1000.0),
        None if w.longest_gap_ms == 0 => "-".into(),
        None => format!("{:.2}", w.longest_gap_ms as f64 / 1000.0),
    };
    [
        w.label.clone(),
        w.requests.to_string(),
        w.failed().to_string(),
        failure_kinds(&w.failures),
        if none {
            "-".into()
        } else {
            success_pct(w.success_rate, w.failed())
        },
        if none {
            "-".into()
        } else {
            pct(w.failure_rate_upper_95)
        },
        gap,
        if none {
            "-".into()
        } else {
            format!("{}/{}/{}", ms(w.p50_ms), ms(w.p99_ms), ms(w.max_ms))
        },
        w.recovery_ms
            .map_or_else(|| "-".into(), |r| format!("{:.2}", r as f64 / 1000.0)),
    ]
}

/// `http_503: 3, timeout: 1`, or `-` with no failure.
pub(super) fn failure_kinds(failures: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = failures
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(kind, n)| format!("{kind}: {n}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// A success rate as a percentage with 4 decimals, more when rounding
/// would print 100% despite failures.
fn success_pct(rate: f64, failed: u64) -> String {
    let mut decimals = 4;
    loop {
        let s = format!("{:.*}", decimals, rate * 100.0);
        if failed == 0 || !s.starts_with("100") || decimals >= 9 {
            return format!("{s}%");
        }
        decimals += 1;
    }
}

/// A fraction as a percentage with 4 decimals, more when that would round
/// a positive value to zero.
fn pct(fraction: f64) -> String {
    if !fraction.is_finite() {
        return "-".into();
    }
    let mut decimals = 4;
    loop {
        let s = format!("{:.*}", decimals, fraction * 100.0);
        let zero = s.bytes().all(|b| b == b'0' || b == b'.');
        if fraction <= 0.0 || !zero || decimals >= 9 {
            return format!("{s}%");
        }
        decimals += 1;
    }
}

/// Milliseconds with 2 decimals below 10, 1 below 100, none above.
pub(super) fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Newlines and tabs as spaces (one line of output per item).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r', '\t'], " ")
}

/// A table cell: one line, pipes escaped.
fn md_cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CheckOutcome;

    fn stats(label: &str, requests: u64, failures: &[(&str, u64)]) -> WindowStats {
        let failures: BTreeMap<String, u64> =
            failures.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        let failed: u64 = failures.values().sum();
        WindowStats {
            label: label.into(),
            requests,
            success_rate: 1.0 - failed as f64 / requests.max(1) as f64,
            failure_rate_upper_95: 0.0001,
            longest_gap_ms: 1234,
            longest_gap_proxy: Some(1),
            p50_ms: 1.5,
            p99_ms: 12.5,
            max_ms: 250.0,
            recovery_ms: Some(2500),
            failures,
            ..WindowStats::default()
        }
    }

    fn report() -> Report {
        Report {
            scenario: "kill-leader".into(),
            scenario_text: "name: kill-leader\n".into(),
            seed: 42,
            git_revision: Some("abc123".into()),
            command: "troupe chaos run kill.yaml --seed 42".into(),
            started_at: "2024-01-01T00:00:00Z".into(),
            machine: Default::default(),
            network: "loopback".into(),
            unavailable: vec!["partition: no namespaces".into()],
            duration_ms: 10_000,
            overall: stats("all", 30_000, &[("http_503", 3), ("timeout", 1)]),
            classes: vec![
                stats(
                    "kill-gcs_leader",
                    10_000,
                    &[("http_503", 3), ("timeout", 1)],
                ),
                stats("baseline", 20_000, &[]),
            ],
            windows: vec![],
            checks: vec![
                CheckOutcome {
                    name: "slo:kill-gcs_leader".into(),
                    passed: true,
                    detail: "gap 1.23 s <= 5 s".into(),
                },
                CheckOutcome {
                    name: "linearizable".into(),
                    passed: false,
                    detail: "no linearization".into(),
                },
            ],
            gcs: None,
            series: Default::default(),
        }
    }

    #[test]
    fn table_has_rows_checks_and_header_lines() {
        let t = summary_table(&report());
        assert!(t.contains("kill-gcs_leader"), "{t}");
        assert!(t.contains("baseline"), "{t}");
        assert!(t.contains("| overall"), "{t}");
        assert!(t.contains("http_503: 3, timeout: 1"), "{t}");
        assert!(t.contains("99.9600%"), "{t}");
        assert!(t.contains("100.0000%"), "{t}");
        assert!(t.contains("0.0100%"), "{t}");
        assert!(t.contains("1.23 (n1)"), "{t}");
        assert!(t.contains("1.50/12.5/250"), "{t}");
        assert!(t.contains("2.50"), "{t}");
        assert!(
            t.contains("PASS slo:kill-gcs_leader: gap 1.23 s <= 5 s"),
            "{t}"
        );
        assert!(t.contains("FAIL linearizable: no linearization"), "{t}");
        assert!(t.contains("scenario: kill-leader"), "{t}");
        assert!(t.contains("seed: 42"), "{t}");
        assert!(t.contains("network: loopback"), "{t}");
        assert!(t.contains("unavailable: partition: no namespaces"), "{t}");
        let table: Vec<&str> = t.lines().take_while(|l| l.starts_with('|')).collect();
        assert_eq!(table.len(), 2 + 3, "{t}");
        for row in table {
            assert_eq!(row.matches('|').count(), 10, "{row}");
            assert!(row.ends_with('|'), "{row}");
        }
    }

    #[test]
    fn percentages_keep_enough_digits() {
        assert_eq!(success_pct(0.999967, 1), "99.9967%");
        assert_eq!(success_pct(0.99995, 1), "99.9950%");
        assert_eq!(success_pct(0.9999999, 1), "99.99999%");
        assert_eq!(success_pct(1.0, 0), "100.0000%");
        assert_eq!(pct(0.0001), "0.0100%");
        assert_eq!(pct(3e-8), "0.000003%");
        assert_eq!(pct(0.0), "0.0000%");
    }

    #[test]
    fn empty_report_and_pipes_in_labels() {
        let mut r = report();
        r.classes = vec![WindowStats {
            label: "a|b".into(),
            ..WindowStats::default()
        }];
        r.overall = WindowStats::default();
        r.checks.clear();
        r.unavailable.clear();
        let t = summary_table(&r);
        assert!(t.contains("a\\|b"), "{t}");
        assert!(t.contains("(no checks)"), "{t}");
        assert!(!t.contains("unavailable"), "{t}");
    }
}
