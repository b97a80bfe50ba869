//! The host's resources under the names of Ray's per-node reporter agent
//! (`ray_node_cpu_utilization`, `ray_node_mem_used`/`_total`,
//! `ray_node_disk_usage`/`_free`, `ray_node_network_receive_speed`/
//! `_send_speed`), which the "Cluster Utilization" and "Node network"
//! panels of Ray's Serve dashboard query. Read from `/proc` and
//! `statvfs("/")` when `/metrics` is scraped; the parsing and the rates
//! are pure functions here, the reads are [`read`].
//!
//! Meanings follow Ray 2.60's `reporter_agent.py`: CPU busy percent of
//! the whole host since the previous reading, memory used = total minus
//! available (bytes), disk used and free of `/` (bytes, as `psutil`
//! counts them), network bytes per second summed over the interfaces
//! whose name starts with `e` (Ray's filter: loopback is left out). Rates
//! need two readings at least [`MIN_RATE_SPAN`] apart; until there are
//! two, the rate series are not exported (no fake zero). The numbers are
//! the host's: several node processes on one host report the same host
//! once each (the dashboards' ratios are unaffected).

use std::time::{Duration, Instant};

/// Rates are taken over at least this long.
pub const MIN_RATE_SPAN: Duration = Duration::from_secs(1);

/// Cumulative counters of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// CPU time in clock ticks: busy and total, over all CPUs.
    pub cpu_busy: u64,
    pub cpu_total: u64,
    /// Bytes received and sent on the counted interfaces.
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// Rates between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Busy CPU, percent of the whole host (0–100).
    pub cpu_percent: f64,
    pub rx_bytes_per_s: f64,
    pub tx_bytes_per_s: f64,
}

/// What one scrape exports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Host {
    pub mem_used: Option<u64>,
    pub mem_total: Option<u64>,
    pub disk_used: Option<u64>,
    pub disk_free: Option<u64>,
    pub rates: Option<Rates>,
}

/// `(busy, total)` ticks from `/proc/stat`'s first (`cpu `) line: idle
/// and iowait are idle, the rest of the first eight fields busy (guest
/// time is already inside user and nice).
pub fn parse_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// `(used, total)` bytes from `/proc/meminfo`: used is `MemTotal` minus
/// `MemAvailable`.
pub fn parse_meminfo(meminfo: &str) -> Option<(u64, u64)> {
    let kib = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim_start_matches(':')
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
            .map(|k| k * 1024)
    };
    let total = kib("MemTotal")?;
    let available = kib("MemAvailable")?;
    Some((total.saturating_sub(available), total))
}

/// `(received, sent)` bytes summed over `/proc/net/dev`'s interfaces
/// whose name starts with `e` (Ray's reporter counts those only).
pub fn parse_net_dev(net_dev: &str) -> Option<(u64, u64)> {
    let (mut rx, mut tx, mut seen) = (0u64, 0u64, false);
    for line in net_dev.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() < 9 {
            continue;
        }
        seen = true;
        if !name.trim().starts_with('e') {
            continue;
        }
        rx += fields[0].parse::<u64>().ok()?;
        tx += fields[8].parse::<u64>().ok()?;
    }
    seen.then_some((rx, tx))
}

/// The rates from `before` to `after`, `elapsed` apart; `None` when the
/// span is shorter than [`MIN_RATE_SPAN`] or a counter went back.
pub fn rates(before: Counters, after: Counters, elapsed: Duration) -> Option<Rates> {
    if elapsed < MIN_RATE_SPAN {
        return None;
    }
    let busy = after.cpu_busy.checked_sub(before.cpu_busy)?;
    let total = after.cpu_total.checked_sub(before.cpu_total)?;
    let rx = after.rx_bytes.checked_sub(before.rx_bytes)?;
    let tx = after.tx_bytes.checked_sub(before.tx_bytes)?;
    let secs = elapsed.as_secs_f64();
    Some(Rates {
        cpu_percent: if total == 0 {
            0.0
        } else {
            100.0 * busy as f64 / total as f64
        },
        rx_bytes_per_s: rx as f64 / secs,
        tx_bytes_per_s: tx as f64 / secs,
    })
}

/// The readings a process keeps between scrapes: the last one rates were
/// taken from, and the rates last taken (kept while scrapes come sooner
/// than [`MIN_RATE_SPAN`]).
#[derive(Debug, Default)]
pub struct Sampler {
    base: Option<(Instant, Counters)>,
    last: Option<Rates>,
}

impl Sampler {
    /// Takes a reading at `now`; returns the rates to export.
    pub fn observe(&mut self, now: Instant, counters: Counters) -> Option<Rates> {
        match self.base {
            None => self.base = Some((now, counters)),
            Some((at, before)) => {
                let elapsed = now.saturating_duration_since(at);
                if elapsed >= MIN_RATE_SPAN {
                    self.last = rates(before, counters, elapsed);
                    self.base = Some((now, counters));
                }
            }
        }
        self.last
    }
}

/// Reads the host now: counters for the rates, and the gauges.
pub fn read() -> (Option<Counters>, Host) {
    let file = |path: &str| std::fs::read_to_string(path).ok();
    let cpu = file("/proc/stat").as_deref().and_then(parse_cpu);
    let net = file("/proc/net/dev").as_deref().and_then(parse_net_dev);
    let mem = file("/proc/meminfo").as_deref().and_then(parse_meminfo);
    // The statvfs field types differ between platforms (u64 here).
    #[allow(clippy::unnecessary_cast)]
    let disk = nix::sys::statvfs::statvfs("/").ok().map(|s| {
        let frsize = s.fragment_size() as u64;
        let used = (s.blocks() as u64).saturating_sub(s.blocks_free() as u64) * frsize;
        let free = s.blocks_available() as u64 * frsize;
        (used, free)
    });
    let counters = match (cpu, net) {
        (Some((cpu_busy, cpu_total)), Some((rx_bytes, tx_bytes))) => Some(Counters {
            cpu_busy,
            cpu_total,
            rx_bytes,
            tx_bytes,
        }),
        _ => None,
    };
    let host = Host {
        mem_used: mem.map(|m| m.0),
        mem_total: mem.map(|m| m.1),
        disk_used: disk.map(|d| d.0),
        disk_free: disk.map(|d| d.1),
        rates: None,
    };
    (counters, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 20 3 2 0 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1 2\n";
    const MEMINFO: &str =
        "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   22000000 kB\n";
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 5000 10 0 0 0 0 0 0 5000 10 0 0 0 0 0 0
  eth0: 1200 3 0 0 0 0 0 0 800 2 0 0 0 0 0 0
 ens5: 300 1 0 0 0 0 0 0 200 1 0 0 0 0 0 0
";

    #[test]
    fn proc_files_parse_into_ray_s_meanings() {
        // Busy: user+nice+system+irq+softirq+steal = 160; idle+iowait 820.
        assert_eq!(parse_cpu(STAT), Some((160, 980)));
        assert_eq!(
            parse_meminfo(MEMINFO),
            Some((2_000_000 * 1024, 24_000_000 * 1024))
        );
        // Loopback left out, as Ray's reporter does.
        assert_eq!(parse_net_dev(NET_DEV), Some((1500, 1000)));
        assert_eq!(parse_cpu("intr 1"), None);
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_net_dev("nothing"), None);
    }

    #[test]
    fn rates_need_two_readings_a_second_apart() {
        let at = |busy, total, rx, tx| Counters {
            cpu_busy: busy,
            cpu_total: total,
            rx_bytes: rx,
            tx_bytes: tx,
        };
        let t0 = Instant::now();
        let mut sampler = Sampler::default();
        assert_eq!(sampler.observe(t0, at(0, 0, 0, 0)), None);
        // Too soon: nothing yet.
        assert_eq!(
            sampler.observe(t0 + Duration::from_millis(300), at(10, 20, 1, 1)),
            None
        );
        let two = sampler
            .observe(t0 + Duration::from_secs(2), at(50, 200, 4000, 2000))
            .unwrap();
        assert_eq!(two.cpu_percent, 25.0);
        assert_eq!((two.rx_bytes_per_s, two.tx_bytes_per_s), (2000.0, 1000.0));
        // A scrape right after keeps the last rates.
        assert_eq!(
            sampler.observe(t0 + Duration::from_millis(2100), at(60, 210, 4100, 2000)),
            Some(two)
        );
        // Counters that went back give no rate.
        assert_eq!(
            rates(at(5, 5, 5, 5), at(4, 5, 5, 5), Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn this_host_reads() {
        let (counters, host) = read();
        let counters = counters.expect("/proc/stat and /proc/net/dev");
        assert!(counters.cpu_total > 0);
        assert!(host.mem_total.unwrap() > host.mem_used.unwrap());
        assert!(host.disk_used.unwrap() > 0);
    }
}
