//! What the node processes use, read from `/proc` and the disk: RSS,
//! CPU ticks (in all and of the busiest GCS member) over an idle window
//! with the GCS's write rate, and the bytes of a data directory. The
//! parsing of `/proc` is pure, tested below.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use troupe_worker::Cluster;

/// RSS of every node (sum, max) and of the GCS members, in MiB.
pub(super) fn rss_summary(pids: &[u32], gcs_pids: &[u32]) -> anyhow::Result<serde_json::Value> {
    let rss = |pid: &u32| -> anyhow::Result<f64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status (did the node exit?)"))?;
        Ok(rss_kib(&text).unwrap_or(0) as f64 / 1024.0)
    };
    let all: Vec<f64> = pids.iter().map(rss).collect::<anyhow::Result<_>>()?;
    let gcs: Vec<f64> = gcs_pids.iter().map(rss).collect::<anyhow::Result<_>>()?;
    let others = &all[gcs.len()..];
    Ok(serde_json::json!({
        "sum_mib": all.iter().sum::<f64>(),
        "max_mib": all.iter().cloned().fold(0.0, f64::max),
        "mean_non_gcs_mib": others.iter().sum::<f64>() / others.len().max(1) as f64,
        "gcs_members_mib": gcs,
    }))
}

/// An idle window of `span`: CPU (in cores) of all nodes together and of
/// the busiest GCS member, and the GCS's write rate (revisions per second).
pub(super) async fn idle_window(
    driver: &Cluster,
    pids: &[u32],
    gcs_pids: &[u32],
    span: Duration,
) -> anyhow::Result<serde_json::Value> {
    let revision = || async { driver.state().await.map(|s| s.revision) };
    let (all0, gcs0, rev0) = (ticks(pids), per_pid_ticks(gcs_pids), revision().await?);
    tokio::time::sleep(span).await;
    let (all1, gcs1, rev1) = (ticks(pids), per_pid_ticks(gcs_pids), revision().await?);
    let cores = |ticks: u64| ticks as f64 / CLOCK_TICKS_PER_S / span.as_secs_f64();
    let gcs_max = gcs0
        .iter()
        .zip(&gcs1)
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0);
    Ok(serde_json::json!({
        "all_cores": cores(all1.saturating_sub(all0)),
        "gcs_member_max_cores": cores(gcs_max),
        // Reads do not advance the revision: every step is a write.
        "gcs_writes_per_s": (rev1.saturating_sub(rev0)) as f64 / span.as_secs_f64(),
    }))
}

/// utime + stime of every process in `pids`, summed, in clock ticks.
pub(super) fn ticks(pids: &[u32]) -> u64 {
    per_pid_ticks(pids).iter().sum()
}

pub(super) fn per_pid_ticks(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| cpu_ticks(&s))
                .unwrap_or(0)
        })
        .collect()
}

/// Linux's USER_HZ (100 on every architecture Troupe builds for).
pub(super) const CLOCK_TICKS_PER_S: f64 = 100.0;

/// utime + stime from a /proc/PID/stat line (fields 14 and 15; the
/// command name in parentheses may hold spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from /proc/PID/status.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes of the files under `dir`.
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (troupe x) S 1 42 42 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(12));
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\ttroupe\nVmPeak:\t 1 kB\nVmRSS:\t    9216 kB\n";
        assert_eq!(rss_kib(status), Some(9216));
    }
}
