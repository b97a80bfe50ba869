//! When to try connecting again after failures: a pure decision.

use std::time::Duration;

use tokio::time::Instant;

/// Exponential backoff with jitter between connection attempts to one peer.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            failures: 0,
            next_attempt: None,
        }
    }

    /// The earliest instant the next attempt may start (`None`: now).
    pub(crate) fn next_attempt(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Records a failed attempt at `now`. `jitter` in [0, 1) spreads peers
    /// that failed together (the wait is scaled by 1 - jitter/2).
    pub(crate) fn failed(&mut self, now: Instant, jitter: f64) {
        let exp = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let base = self.min.saturating_mul(1u32 << exp).min(self.max);
        let wait = base.mul_f64(1.0 - jitter.clamp(0.0, 0.999) / 2.0);
        self.next_attempt = Some(now + wait);
    }

    /// Records a successful connection: the next failure starts over.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.next_attempt = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_reset_on_success() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(b.next_attempt(), None);
        let waits: Vec<_> = (0..6)
            .map(|_| {
                b.failed(now, 0.0);
                b.next_attempt().unwrap() - now
            })
            .collect();
        let ms: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![10, 20, 40, 80, 100, 100]);
        b.succeeded();
        assert_eq!(b.next_attempt(), None);
        b.failed(now, 0.0);
        assert_eq!((b.next_attempt().unwrap() - now).as_millis(), 10);
    }

    #[test]
    fn jitter_shortens_at_most_by_half() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        b.failed(now, 0.999);
        let wait = b.next_attempt().unwrap() - now;
        assert!(wait >= Duration::from_millis(50) && wait < Duration::from_millis(100));
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let now = Instant::now();
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(2));
        for _ in 0..1000 {
            b.failed(now, 0.5);
        }
        assert!(b.next_attempt().unwrap() - now <= Duration::from_secs(2));
    }
}
