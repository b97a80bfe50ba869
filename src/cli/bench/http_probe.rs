//! The HTTP probe of `bench cluster`: plain HTTP/1.1 GETs to one proxy at
//! a fixed interval, each on its own connection and task (a request that
//! hangs does not hold back the next), recorded with when it was sent and
//! when it ended. What a kill did to the data plane (the first success
//! after it, the longest time without one) is a pure function of the
//! samples, [`summary`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time between two requests of the probe.
pub const INTERVAL: Duration = Duration::from_millis(20);
/// A request that has no complete answer after this counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The probe sends nothing after this long, whatever its caller does.
const MAX_RUN: Duration = Duration::from_secs(180);

/// One request: offsets from the probe's origin, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub sent: Duration,
    pub done: Duration,
    /// `Ok(status)` for a 2xx answer, else why it failed.
    pub outcome: Result<u16, String>,
}

impl Sample {
    fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// A running probe; [`Probe::stop`] ends it and returns its samples.
pub struct Probe {
    origin: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    /// The completion offset of the latest successful request.
    last_ok: tokio::sync::watch::Receiver<Option<Duration>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Starts sending `GET path` to `addr` every [`INTERVAL`].
    pub fn start(addr: String, path: String) -> Probe {
        let origin = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (ok_tx, last_ok) = tokio::sync::watch::channel::<Option<Duration>>(None);
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let ok_tx = Arc::new(ok_tx);
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                let mut requests = tokio::task::JoinSet::new();
                let mut tick = tokio::time::interval(INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while origin.elapsed() < MAX_RUN {
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tick.tick() => {}
                    }
                    let (addr, path, samples, ok_tx) =
                        (addr.clone(), path.clone(), samples.clone(), ok_tx.clone());
                    requests.spawn(async move {
                        let sent = origin.elapsed();
                        let outcome =
                            match tokio::time::timeout(REQUEST_TIMEOUT, get(&addr, &path)).await {
                                Ok(outcome) => outcome,
                                Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}")),
                            };
                        let done = origin.elapsed();
                        if outcome.is_ok() {
                            ok_tx.send_modify(|last| {
                                *last = Some(last.map_or(done, |l| l.max(done)))
                            });
                        }
                        samples.lock().unwrap().push(Sample {
                            sent,
                            done,
                            outcome,
                        });
                    });
                    // Reap finished requests so the set stays small.
                    while requests.try_join_next().is_some() {}
                }
                // Every request is bounded by REQUEST_TIMEOUT.
                while requests.join_next().await.is_some() {}
            }
        });
        Probe {
            origin,
            samples,
            last_ok,
            stop,
            task,
        }
    }

    /// The offset of `at` from the probe's origin.
    pub fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// Waits until a request completes successfully after `after` (an
    /// offset), or until `deadline`; true if one did.
    pub async fn success_after(&mut self, after: Duration, deadline: Instant) -> bool {
        let wait = self
            .last_ok
            .wait_for(|last| last.is_some_and(|l| l > after));
        matches!(
            tokio::time::timeout_at(deadline.into(), wait).await,
            Ok(Ok(_))
        )
    }

    /// Stops sending, waits for the requests in flight (each bounded by
    /// [`REQUEST_TIMEOUT`]) and returns every sample and the offset at
    /// which the probe stopped.
    pub async fn stop(self) -> (Vec<Sample>, Duration) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let end = self.origin.elapsed();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        (samples, end)
    }
}

/// Waits until `GET path` on `addr` answers 2xx, polling every 50 ms until
/// `deadline`; the last failure if it never did.
pub async fn await_ok(addr: &str, path: &str, deadline: Instant) -> Result<(), String> {
    loop {
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, get(addr, path)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}")),
        };
        match outcome {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// One HTTP/1.1 GET on a fresh connection: `Ok(status)` if 2xx.
async fn get(addr: &str, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    match status_code(&response) {
        Some(status) if (200..300).contains(&status) => Ok(status),
        Some(status) => Err(format!("HTTP {status}")),
        None => Err("no HTTP status line in the answer".into()),
    }
}

/// The status code of an HTTP/1.x response's status line.
pub fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// What the probe saw of a kill at offset `kill`, up to `end`: the seconds
/// from the kill to the first successful answer to a request sent after
/// it; the longest time without a successful answer between the last one
/// before the kill and `end`; how many requests were sent after the kill,
/// how many of them failed, and the first few distinct reasons. Pure.
pub fn summary(samples: &[Sample], kill: Duration, end: Duration) -> serde_json::Value {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= kill).collect();
    let first_ok = after
        .iter()
        .filter(|s| s.ok())
        .map(|s| s.done.saturating_sub(kill))
        .min();
    let mut ok_times: Vec<Duration> = samples
        .iter()
        .filter(|s| s.ok() && s.done > kill && s.done <= end)
        .map(|s| s.done)
        .collect();
    ok_times.sort();
    let before = samples
        .iter()
        .filter(|s| s.ok() && s.done <= kill)
        .map(|s| s.done)
        .max()
        .unwrap_or(kill);
    let mut longest = Duration::ZERO;
    let mut last = before;
    for t in ok_times.iter().copied().chain([end]) {
        longest = longest.max(t.saturating_sub(last));
        last = t;
    }
    let mut reasons: Vec<&str> = Vec::new();
    for s in &after {
        if let Err(e) = &s.outcome {
            if reasons.len() < 5 && !reasons.contains(&e.as_str()) {
                reasons.push(e);
            }
        }
    }
    serde_json::json!({
        "first_success_s": first_ok.map(|d| d.as_secs_f64()),
        "longest_gap_s": longest.as_secs_f64(),
        "requests_after_kill": after.len(),
        "failed_after_kill": after.iter().filter(|s| !s.ok()).count(),
        "failure_reasons": reasons,
    })
}

/// One line of the printed table for a probe's summary.
pub fn line(s: &serde_json::Value) -> String {
    let first = match s["first_success_s"].as_f64() {
        Some(t) => format!("{t:.2} s"),
        None => "never".into(),
    };
    format!(
        "  HTTP via {}: first success after {first}, longest gap without one {:.2} s, \
         {} of {} requests after the kill failed\n",
        s["proxy"].as_str().unwrap_or("?"),
        s["longest_gap_s"].as_f64().unwrap_or(f64::NAN),
        s["failed_after_kill"],
        s["requests_after_kill"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn sample(sent: u64, done: u64, ok: bool) -> Sample {
        Sample {
            sent: ms(sent),
            done: ms(done),
            outcome: if ok { Ok(200) } else { Err("HTTP 503".into()) },
        }
    }

    #[test]
    fn the_status_code_is_read_from_the_status_line() {
        assert_eq!(
            status_code(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            Some(200)
        );
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b""), None);
        assert_eq!(status_code(b"SSH-2.0-x\r\n"), None);
    }

    #[test]
    fn the_summary_times_the_first_success_and_the_longest_gap() {
        // Kill at 100 ms: the last success before it ends at 90; failures
        // until a request sent at 400 succeeds at 410; then every 20 ms.
        let samples = vec![
            sample(60, 70, true),
            sample(80, 90, true),
            sample(100, 300, false),
            sample(120, 2120, false),
            sample(400, 410, true),
            sample(420, 430, true),
        ];
        let s = summary(&samples, ms(100), ms(500));
        assert_eq!(s["first_success_s"], 0.31);
        // 90 → 410.
        assert_eq!(s["longest_gap_s"], 0.32);
        assert_eq!(s["requests_after_kill"], 4);
        assert_eq!(s["failed_after_kill"], 2);
        assert_eq!(s["failure_reasons"], serde_json::json!(["HTTP 503"]));
    }

    #[test]
    fn a_request_sent_before_the_kill_is_not_the_first_success_after_it() {
        // Sent at 90, answered at 150: it says nothing about the kill at
        // 100; the request sent at 200 does.
        let samples = vec![sample(90, 150, true), sample(200, 210, true)];
        let s = summary(&samples, ms(100), ms(300));
        assert_eq!(s["first_success_s"], 0.11);
        // From the kill (no success before it) to 150, 150 → 210, 210 → 300.
        assert_eq!(s["longest_gap_s"], 0.09);
    }

    #[test]
    fn no_success_after_the_kill_is_a_gap_to_the_end() {
        let samples = vec![sample(0, 10, true), sample(200, 300, false)];
        let s = summary(&samples, ms(100), ms(1000));
        assert!(s["first_success_s"].is_null());
        assert_eq!(s["longest_gap_s"], 0.99);
        assert_eq!(s["failed_after_kill"], 1);
        let text = line(&s);
        assert!(text.contains("first success after never"), "{text}");
        assert!(
            text.contains("1 of 1 requests after the kill failed"),
            "{text}"
        );
    }
}
