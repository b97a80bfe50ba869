//! Open-loop HTTP load: request `k` is due at `start + k / rate` and is
//! sent then, whatever happened to the ones before it (a stall shows up as
//! failures and latency, never as less load); its latency counts from its
//! due time. Nothing is retried.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{self, Pool, Request};
use crate::record::{HttpRecord, Outcome};
use crate::scenario::{ClientMode, HttpWorkload};

/// How often the balanced client probes each proxy's `/-/healthz`.
const PROBE_EVERY: Duration = Duration::from_millis(200);

/// The proxies a workload can use and what the balanced client believes
/// of them.
pub struct Proxies {
    /// (node index, proxy address).
    pub targets: Vec<(usize, String)>,
    up: Vec<AtomicBool>,
    next: AtomicUsize,
}

impl Proxies {
    /// Every target starts healthy.
    pub fn new(targets: Vec<(usize, String)>) -> Proxies {
        let up = targets.iter().map(|_| AtomicBool::new(true)).collect();
        Proxies {
            targets,
            up,
            next: AtomicUsize::new(0),
        }
    }

    /// The next proxy: round robin over all (fixed) or over the healthy
    /// ones (balanced); `None` when the balanced client has none.
    fn pick(&self, mode: ClientMode) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        match mode {
            ClientMode::Fixed => Some(start % n),
            ClientMode::Balanced => (0..n)
                .map(|k| (start + k) % n)
                .find(|&k| self.up[k].load(Ordering::Relaxed)),
        }
    }

    fn set(&self, k: usize, up: bool) {
        self.up[k].store(up, Ordering::Relaxed);
    }
}

/// Logs the first answers of each (proxy, status) failure, body included,
/// so a failed run says what the proxies answered (the table only counts).
#[derive(Default)]
struct FailureLog(Mutex<std::collections::HashMap<(usize, u16), u32>>);

/// Failed answers logged per (proxy, status).
const FAILURES_LOGGED: u32 = 3;

impl FailureLog {
    fn note(&self, node: usize, status: u16, at_ms: u64, body: &[u8]) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = seen.entry((node, status)).or_insert(0);
        *count += 1;
        if *count <= FAILURES_LOGGED {
            let body = String::from_utf8_lossy(&body[..body.len().min(400)]);
            tracing::warn!(node, status, at_ms, %body, "a proxy answered with a failure");
        }
    }
}

/// Probes every proxy until `stop` turns true (balanced client only).
async fn probe(proxies: Arc<Proxies>, mut stop: watch::Receiver<bool>) {
    loop {
        let checks = proxies.targets.iter().enumerate().map(|(k, (_, addr))| {
            let proxies = proxies.clone();
            async move {
                let ok = client::get(addr, "/-/healthz", PROBE_EVERY * 2)
                    .await
                    .is_some_and(|(status, _)| status == 200);
                proxies.set(k, ok);
            }
        });
        futures::future::join_all(checks).await;
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Runs `workload` from `start` until `stop` turns true; every request's
/// record goes to `out`. Returns when every request sent has ended.
pub async fn run(
    workload: HttpWorkload,
    proxies: Arc<Proxies>,
    origin: Instant,
    start: Instant,
    stop: watch::Receiver<bool>,
    out: Arc<Mutex<Vec<HttpRecord>>>,
) {
    let pool = Pool::new();
    let prober = (workload.client == ClientMode::Balanced)
        .then(|| tokio::spawn(probe(proxies.clone(), stop.clone())));
    let interval = Duration::from_secs_f64(1.0 / workload.rate);
    let timeout = Duration::from_secs_f64(workload.timeout_s);
    let body = Bytes::from(workload.body.clone().into_bytes());
    let workload = Arc::new(workload);
    let failures = Arc::new(FailureLog::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut k: u32 = 0;
    loop {
        let due = start + interval * k;
        if *stop.borrow() {
            break;
        }
        tokio::time::sleep_until(due).await;
        if *stop.borrow() {
            break;
        }
        k += 1;
        let (pool, proxies, out, workload, body, failures) = (
            pool.clone(),
            proxies.clone(),
            out.clone(),
            workload.clone(),
            body.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let picked = proxies.pick(workload.client);
            let outcome = match picked {
                None => Outcome::NoProxy,
                Some(p) => {
                    let request = Request {
                        method: &workload.method,
                        path: &workload.path,
                        body,
                    };
                    let (outcome, answer) = pool
                        .send(&proxies.targets[p].1, &request, due + timeout)
                        .await;
                    if let Outcome::Status(status) = outcome {
                        let at_ms = due.saturating_duration_since(origin).as_millis() as u64;
                        failures.note(proxies.targets[p].0, status, at_ms, &answer);
                    }
                    if outcome == Outcome::Connect && workload.client == ClientMode::Balanced {
                        // A refused connection takes the proxy out until a probe passes.
                        proxies.set(p, false);
                    }
                    outcome
                }
            };
            let record = HttpRecord {
                workload: workload.name.clone(),
                sent_ms: due.saturating_duration_since(origin).as_millis() as u64,
                latency_us: due.elapsed().as_micros() as u64,
                proxy: picked.map(|p| proxies.targets[p].0),
                outcome,
            };
            out.lock().unwrap_or_else(|p| p.into_inner()).push(record);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    if let Some(p) = prober {
        let _ = p.await;
    }
}
