//! Judging a run: statistics over the recorded requests, and the safety
//! checks over histories, process lives and logs. Pure.
//!
//! # Layout
//! - `bound.rs`: [`failure_upper_bound`], the Clopper–Pearson bound;
//! - `stats.rs`: [`window_stats`], [`class_stats`], [`per_second`],
//!   [`fault_windows`], gaps and [`recovery_ms`];
//! - `lost_writes.rs`: [`lost_writes`], from each key's final read;
//! - `placements.rs`: [`double_placements`], one actor on two nodes;
//! - `logs.rs`: [`scan_log`] and its RFC 3339 parser.

mod bound;
mod logs;
mod lost_writes;
mod placements;
mod stats;

#[cfg(test)]
mod tests_checks;
#[cfg(test)]
mod tests_logs;
#[cfg(test)]
mod tests_stats;

pub use bound::failure_upper_bound;
pub use logs::{days_from_civil, parse_rfc3339_ms, scan_log, LogScan};
pub use lost_writes::lost_writes;
pub use placements::double_placements;
pub use stats::{
    class_stats, complement, fault_windows, longest_gap, per_second, percentile, recovery_ms,
    window_stats,
};
