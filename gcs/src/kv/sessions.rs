//! Expiry of exactly-once client sessions: which sessions go, and when the
//! leader asks for it. Pure; the engine and the leader's driver
//! (`member::sessions`) execute it.
//!
//! Time here is the state machine's *session clock*, not a wall clock: it
//! starts at 0 and moves only by the `elapsed_ms` of applied
//! [`Operation::ExpireSessions`](crate::Operation) commands, each measured
//! by the proposing leader on its own monotonic clock since its previous
//! one. Apply therefore never reads a clock and every replica expires the
//! same sessions at the same log index; a wall clock stepped by NTP cannot
//! expire anything early; and time without a leader does not count (a
//! session then lives longer, never shorter).
//!
//! A session is stamped with the clock when it is used. The first tick
//! after a use may also cover time before it (up to one interval and the
//! quarter interval the ticker may be late), and a tick proposed by a
//! deposed leader and committed by the next one may count its time twice;
//! the leader asks for `idle = retention + 3 × interval`, so a session is
//! kept at least `retention` of real leader time after its last use.

use std::time::Duration;

use tokio::time::Instant;

/// The sessions (`(client id, last used on the session clock)`) unused for
/// at least `idle_ms` at session clock `clock_ms`, in the order given.
pub fn expired(stamps: &[(u64, u64)], clock_ms: u64, idle_ms: u64) -> Vec<u64> {
    stamps
        .iter()
        .filter(|(_, used)| clock_ms.saturating_sub(*used) >= idle_ms)
        .map(|(client, _)| *client)
        .collect()
}

/// How a GCS member's leader expires sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRetention {
    /// A session unused for this long (of leader time) is removed.
    pub retention: Duration,
}

/// The default retention: one hour, as long as a client's retries can take
/// many times over, and short enough that the table tracks the clients
/// of the last hour (one small record per client session).
pub const DEFAULT_SESSION_RETENTION: Duration = Duration::from_secs(3600);

impl Default for SessionRetention {
    fn default() -> Self {
        SessionRetention {
            retention: DEFAULT_SESSION_RETENTION,
        }
    }
}

/// The shortest retention `--session-retention` takes: three times a
/// client's default request timeout (10 s), so that no retry still in
/// flight can outlive its session.
pub const MIN_SESSION_RETENTION: Duration = Duration::from_secs(30);

impl SessionRetention {
    /// The retention from `--session-retention SECONDS`, refused (with what
    /// to pass instead) below [`MIN_SESSION_RETENTION`] or when not a
    /// number. Pure.
    pub fn from_flag(seconds: f64) -> Result<SessionRetention, String> {
        let min = MIN_SESSION_RETENTION.as_secs_f64();
        if !(seconds.is_finite() && seconds >= min && seconds <= 1e9) {
            return Err(format!(
                "--session-retention must be a number of seconds from {min} (longer than any \
                 client's retries) to 1e9, got {seconds}; the default is {}",
                DEFAULT_SESSION_RETENTION.as_secs()
            ));
        }
        Ok(SessionRetention {
            retention: Duration::from_secs_f64(seconds),
        })
    }

    /// How often the leader proposes an expiry: an eighth of the retention,
    /// between 100 ms and one minute (one small log entry per tick).
    pub fn interval(&self) -> Duration {
        (self.retention / 8).clamp(Duration::from_millis(100), Duration::from_secs(60))
    }

    /// The idle time the leader asks for: the retention plus three
    /// intervals (see the module doc).
    pub fn idle_ms(&self) -> u64 {
        (self.retention + 3 * self.interval()).as_millis() as u64
    }
}

/// The leader's side: when to propose the next expiry and how much time it
/// covers. Fed with the leader's monotonic time; a change of leadership
/// starts it over (time between leaders is not counted).
#[derive(Debug, Default)]
pub struct ExpiryTicker {
    /// When the last tick of this leadership was due (`None`: not leading).
    last: Option<Instant>,
}

impl ExpiryTicker {
    /// `Some(elapsed)` when an expiry is due at `now`: the time since the
    /// previous tick of this leadership (the first tick after becoming
    /// leader covers the time since then). `None` when not leading (which
    /// resets the ticker) or when the interval has not passed.
    pub fn tick(&mut self, now: Instant, leading: bool, interval: Duration) -> Option<Duration> {
        if !leading {
            self.last = None;
            return None;
        }
        let since = *self.last.get_or_insert(now);
        let elapsed = now.saturating_duration_since(since);
        if elapsed < interval {
            return None;
        }
        self.last = Some(now);
        Some(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_unused_for_the_idle_time_expire_and_the_rest_stay() {
        let stamps = [(1, 0), (2, 500), (3, 1_000), (4, 1_001)];
        assert_eq!(expired(&stamps, 1_000, 500), vec![1, 2]);
        assert_eq!(expired(&stamps, 1_000, 1_000), vec![1]);
        assert_eq!(expired(&stamps, 2_001, 1_000), vec![1, 2, 3, 4]);
        assert!(
            expired(&stamps, 0, 1).is_empty(),
            "nothing before the clock moved"
        );
        // A stamp ahead of the clock (cannot happen, but never underflows).
        assert!(expired(&[(9, 5_000)], 1_000, 1).is_empty());
    }

    #[test]
    fn the_interval_and_idle_time_follow_the_retention_within_bounds() {
        let hour = SessionRetention::default();
        assert_eq!(hour.interval(), Duration::from_secs(60));
        assert_eq!(hour.idle_ms(), 3_780_000);
        let short = SessionRetention {
            retention: Duration::from_secs(2),
        };
        assert_eq!(short.interval(), Duration::from_millis(250));
        assert_eq!(short.idle_ms(), 2_750);
        let tiny = SessionRetention {
            retention: Duration::from_millis(100),
        };
        assert_eq!(tiny.interval(), Duration::from_millis(100));
    }

    #[test]
    fn the_flag_takes_seconds_from_the_minimum_on() {
        assert_eq!(
            SessionRetention::from_flag(3600.0),
            Ok(SessionRetention::default())
        );
        assert_eq!(
            SessionRetention::from_flag(30.0).map(|r| r.retention),
            Ok(Duration::from_secs(30))
        );
        for bad in [29.9, -1.0, f64::NAN, f64::INFINITY] {
            let e = SessionRetention::from_flag(bad).unwrap_err();
            assert!(
                e.contains("--session-retention") && e.contains("3600"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_ticker_counts_leader_time_only_and_restarts_with_a_new_leadership() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut ticker = ExpiryTicker::default();
        assert_eq!(ticker.tick(t0, false, s(1)), None);
        assert_eq!(ticker.tick(t0, true, s(1)), None, "leadership starts now");
        assert_eq!(ticker.tick(t0 + s(1) / 2, true, s(1)), None);
        assert_eq!(ticker.tick(t0 + s(1), true, s(1)), Some(s(1)));
        assert_eq!(
            ticker.tick(t0 + s(3), true, s(1)),
            Some(s(2)),
            "a late tick covers all"
        );
        // Lost leadership for a while: that time is not counted.
        assert_eq!(ticker.tick(t0 + s(4), false, s(1)), None);
        assert_eq!(ticker.tick(t0 + s(10), true, s(1)), None);
        assert_eq!(ticker.tick(t0 + s(11), true, s(1)), Some(s(1)));
    }
}
