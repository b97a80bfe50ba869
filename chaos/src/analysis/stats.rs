//! Statistics over the recorded requests: windows, classes, seconds,
//! gaps, and recovery from the prober's samples.

use std::collections::BTreeMap;

use super::failure_upper_bound;
use crate::record::{FaultRecord, HttpRecord, ProbeSample};
use crate::report::{SecondBucket, WindowStats};

/// Statistics of the requests due in `[start_ms, end_ms)`.
///
/// Failures are counted by [`crate::record::Outcome::kind`]; latency
/// percentiles (nearest rank) cover every request in the window. The
/// longest gap is the longest stretch of the window in which a proxy that
/// was sent requests in it answered none successfully (see
/// [`longest_gap`]). `recovery_ms` is left `None` for the caller.
pub fn window_stats(
    label: &str,
    records: &[HttpRecord],
    start_ms: u64,
    end_ms: u64,
) -> WindowStats {
    let inside = |r: &HttpRecord| start_ms <= r.sent_ms && r.sent_ms < end_ms;
    let selected: Vec<&HttpRecord> = records.iter().filter(|r| inside(r)).collect();
    let mut stats = summarize(label, &selected, start_ms, end_ms);
    let (gap, proxy) = longest_gap(records, start_ms, end_ms);
    stats.longest_gap_ms = gap;
    stats.longest_gap_proxy = proxy;
    stats
}

/// The longest time inside `[start_ms, end_ms]` with no successful answer
/// from one proxy, over the proxies sent at least one request due in
/// `[start_ms, end_ms)`, and that proxy (the lowest index on a tie).
///
/// A success happens at its end ([`HttpRecord::end_ms`]), whenever it was
/// sent; successes ending outside the window do not count. Gaps run
/// between consecutive successes, with the window's start and end as the
/// outer bounds: a proxy with no success in the window has a gap of the
/// whole window. `(0, None)` when no proxy was sent anything.
pub fn longest_gap(records: &[HttpRecord], start_ms: u64, end_ms: u64) -> (u64, Option<usize>) {
    let mut proxies: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for r in records {
        if let Some(proxy) = r.proxy {
            if start_ms <= r.sent_ms && r.sent_ms < end_ms {
                proxies.entry(proxy).or_default();
            }
        }
    }
    for r in records {
        let (Some(proxy), true) = (r.proxy, r.outcome.is_success()) else {
            continue;
        };
        let at = r.end_ms();
        if (start_ms..=end_ms).contains(&at) {
            if let Some(times) = proxies.get_mut(&proxy) {
                times.push(at);
            }
        }
    }
    let mut best = (0, None);
    for (proxy, mut times) in proxies {
        times.sort_unstable();
        let mut previous = start_ms;
        let mut gap = 0;
        for at in times
            .into_iter()
            .chain(std::iter::once(end_ms.max(start_ms)))
        {
            gap = gap.max(at - previous);
            previous = at;
        }
        if best.1.is_none() || gap > best.0 {
            best = (gap, Some(proxy));
        }
    }
    best
}

/// Counts, failure kinds, success rate, bound and latency percentiles of
/// `selected`; no gap (0, `None`) and no recovery.
fn summarize(label: &str, selected: &[&HttpRecord], start_ms: u64, end_ms: u64) -> WindowStats {
    let requests = selected.len() as u64;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in selected.iter().filter(|r| !r.outcome.is_success()) {
        *failures.entry(r.outcome.kind()).or_default() += 1;
    }
    let failed: u64 = failures.values().sum();
    let success_rate = if requests == 0 {
        1.0
    } else {
        (requests - failed) as f64 / requests as f64
    };
    let (p50_ms, p99_ms, max_ms) = latency_summary(selected.iter().copied());
    WindowStats {
        label: label.to_string(),
        start_ms,
        end_ms,
        requests,
        failures,
        success_rate,
        failure_rate_upper_95: failure_upper_bound(failed, requests),
        longest_gap_ms: 0,
        longest_gap_proxy: None,
        p50_ms,
        p99_ms,
        max_ms,
        recovery_ms: None,
    }
}

/// p50, p99 and max latency of `records`, ms (zeros with none).
fn latency_summary<'a>(records: impl Iterator<Item = &'a HttpRecord>) -> (f64, f64, f64) {
    let mut latencies: Vec<f64> = records.map(|r| r.latency_us as f64 / 1000.0).collect();
    latencies.sort_unstable_by(f64::total_cmp);
    (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
    )
}

/// The nearest-rank `pct`-th percentile of `sorted` (ascending); 0 when
/// empty.
pub fn percentile(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Successes, failures and latency per second of due time, from second 0
/// to the last request's (empty seconds included, with zeros).
pub fn per_second(records: &[HttpRecord]) -> Vec<SecondBucket> {
    let Some(last) = records.iter().map(|r| r.sent_ms / 1000).max() else {
        return Vec::new();
    };
    let mut by_second: Vec<Vec<&HttpRecord>> = vec![Vec::new(); last as usize + 1];
    for r in records {
        by_second[(r.sent_ms / 1000) as usize].push(r);
    }
    by_second
        .into_iter()
        .enumerate()
        .map(|(t_s, second)| {
            let ok = second.iter().filter(|r| r.outcome.is_success()).count() as u64;
            let (p50_ms, p99_ms, max_ms) = latency_summary(second.iter().copied());
            SecondBucket {
                t_s: t_s as u64,
                ok,
                failed: second.len() as u64 - ok,
                p50_ms,
                p99_ms,
                max_ms,
            }
        })
        .collect()
}

/// Each executed (not skipped) fault's window: from its start to its heal
/// (or the run's end) plus `tail_ms`, capped at `run_end_ms`; with the
/// fault's index.
pub fn fault_windows(
    faults: &[FaultRecord],
    tail_ms: u64,
    run_end_ms: u64,
) -> Vec<(usize, u64, u64)> {
    faults
        .iter()
        .enumerate()
        .filter(|(_, f)| f.skipped.is_none())
        .map(|(i, f)| {
            let healed = f.heal_ms.unwrap_or(run_end_ms);
            (
                i,
                f.start_ms,
                run_end_ms.min(healed.saturating_add(tail_ms)),
            )
        })
        .collect()
}

/// One row per fault class (requests due in the union of its windows,
/// each counted once), then `baseline` (requests in no window).
///
/// Classes come in the order of their first executed fault. A class's
/// window is its first start to its last end; its longest gap is the
/// largest of its windows' own. The baseline spans `[0, run_end_ms]`; its
/// gap is the largest over the maximal stretches outside every window,
/// counted from the first request due.
pub fn class_stats(
    records: &[HttpRecord],
    faults: &[FaultRecord],
    tail_ms: u64,
    run_end_ms: u64,
) -> Vec<WindowStats> {
    let windows = fault_windows(faults, tail_ms, run_end_ms);
    let mut classes: Vec<(&str, Vec<(u64, u64)>)> = Vec::new();
    for &(index, start, end) in &windows {
        let class = faults[index].class.as_str();
        match classes.iter_mut().find(|(name, _)| *name == class) {
            Some((_, spans)) => spans.push((start, end)),
            None => classes.push((class, vec![(start, end)])),
        }
    }
    let in_any = |spans: &[(u64, u64)], at: u64| spans.iter().any(|&(s, e)| s <= at && at < e);
    let mut rows = Vec::with_capacity(classes.len() + 1);
    for (class, spans) in &classes {
        let selected: Vec<&HttpRecord> = records
            .iter()
            .filter(|r| in_any(spans, r.sent_ms))
            .collect();
        let start = spans.iter().map(|s| s.0).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
        let mut row = summarize(class, &selected, start, end);
        (row.longest_gap_ms, row.longest_gap_proxy) = max_gap(records, spans);
        rows.push(row);
    }
    let all: Vec<(u64, u64)> = windows.iter().map(|&(_, s, e)| (s, e)).collect();
    let outside: Vec<&HttpRecord> = records
        .iter()
        .filter(|r| !in_any(&all, r.sent_ms))
        .collect();
    let mut baseline = summarize("baseline", &outside, 0, run_end_ms);
    // The baseline's gaps count from the first request due, not from the
    // origin (the cluster's start-up is no gap in service).
    let first = records.iter().map(|r| r.sent_ms).min().unwrap_or(0);
    let outside_spans: Vec<(u64, u64)> = complement(&all, run_end_ms)
        .into_iter()
        .filter(|&(_, e)| e > first)
        .map(|(s, e)| (s.max(first), e))
        .collect();
    (baseline.longest_gap_ms, baseline.longest_gap_proxy) = max_gap(records, &outside_spans);
    rows.push(baseline);
    rows
}

/// The largest [`longest_gap`] over `spans` (the first on a tie).
fn max_gap(records: &[HttpRecord], spans: &[(u64, u64)]) -> (u64, Option<usize>) {
    let mut best = (0, None);
    for &(start, end) in spans {
        let (gap, proxy) = longest_gap(records, start, end);
        if proxy.is_some() && (best.1.is_none() || gap > best.0) {
            best = (gap, proxy);
        }
    }
    best
}

/// The maximal stretches of `[0, end_ms]` outside every span of `spans`
/// (half-open spans; empty ones ignored), in order.
pub fn complement(spans: &[(u64, u64)], end_ms: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = spans.iter().copied().filter(|(s, e)| s < e).collect();
    sorted.sort_unstable();
    let mut out = Vec::new();
    let mut cursor = 0;
    for (start, end) in sorted {
        if start > cursor {
            out.push((cursor, start.min(end_ms)));
        }
        cursor = cursor.max(end);
        if cursor >= end_ms {
            break;
        }
    }
    if cursor < end_ms {
        out.push((cursor, end_ms));
    }
    out.retain(|(s, e)| s < e);
    out
}

/// Time from `from_ms` to the first probe at or after it where every
/// deployment runs its target count (a probe with no targets never
/// counts: nothing was known then).
pub fn recovery_ms(probes: &[ProbeSample], from_ms: u64) -> Option<u64> {
    probes
        .iter()
        .filter(|p| p.at_ms >= from_ms && !p.targets.is_empty())
        .filter(|p| {
            p.targets
                .iter()
                .all(|(key, target)| p.replicas.get(key) == Some(target))
        })
        .map(|p| p.at_ms - from_ms)
        .min()
}
