//! Load shapes, identical for both systems: closed-loop writers and
//! readers, a continuous writer for failover, an open-loop fixed-rate
//! writer for the soak.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;
use troupe_gcs::client::GcsClient;

/// One value: ~100 bytes.
pub fn value(seed: u64) -> Vec<u8> {
    let mut v = format!("{seed:020}-").into_bytes();
    v.resize(100, b'x');
    v
}

/// A handle on one system; cloned per task from the one shared client.
#[derive(Clone)]
pub enum Sys {
    Troupe(GcsClient),
    Etcd(etcd_client::KvClient),
}

impl Sys {
    pub fn name(&self) -> &'static str {
        match self {
            Sys::Troupe(_) => "Troupe",
            Sys::Etcd(_) => "etcd",
        }
    }

    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        match self {
            Sys::Troupe(c) => {
                let r = c.put(key, value).await?;
                r.outcome.map_err(|e| anyhow!("put rejected: {e}"))?;
                Ok(())
            }
            Sys::Etcd(c) => {
                c.put(key, value, None).await?;
                Ok(())
            }
        }
    }

    /// A linearizable get; true if the key exists.
    pub async fn get(&mut self, key: Vec<u8>) -> Result<bool> {
        match self {
            Sys::Troupe(c) => Ok(c.get(key).await?.is_some()),
            Sys::Etcd(c) => Ok(!c.get(key, None).await?.kvs().is_empty()),
        }
    }
}

/// What one timed run measured.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Latency of each successful op, microseconds.
    pub lat_us: Vec<u32>,
    /// CPU seconds used by the system's member processes during the run.
    pub server_cpu: f64,
    /// CPU seconds used by this (client) process during the run.
    pub client_cpu: f64,
}

impl Run {
    /// Microseconds of CPU per successful op: (server, client).
    pub fn cpu_us_per_op(&self) -> (f64, f64) {
        let ops = self.ops.max(1) as f64;
        (self.server_cpu * 1e6 / ops, self.client_cpu * 1e6 / ops)
    }

    pub fn merge(&mut self, other: Run) {
        self.server_cpu += other.server_cpu;
        self.client_cpu += other.client_cpu;
        self.ops += other.ops;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.lat_us.extend(other.lat_us);
    }

    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Percentile `p` (0..=100) in milliseconds.
    pub fn pct_ms(&mut self, p: f64) -> f64 {
        percentile_ms(&mut self.lat_us, p)
    }
}

pub fn percentile_ms(lat_us: &mut [u32], p: f64) -> f64 {
    if lat_us.is_empty() {
        return f64::NAN;
    }
    lat_us.sort_unstable();
    let rank = ((p / 100.0) * lat_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, lat_us.len()) - 1;
    lat_us[i] as f64 / 1000.0
}

/// `clients` tasks each doing sequential ops for `duration`; `op(sys, task,
/// i)` does one.
async fn closed_loop<F, Fut>(sys: &Sys, clients: usize, duration: Duration, op: F) -> Run
where
    F: Fn(Sys, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (Sys, Result<()>)> + Send,
{
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = Vec::new();
    for t in 0..clients {
        let mut s = sys.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            let mut i = 0u64;
            while Instant::now() < end {
                let t0 = Instant::now();
                let (back, r) = op(s, t, i).await;
                s = back;
                i += 1;
                match r {
                    Ok(()) => {
                        run.ops += 1;
                        run.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(_) => {
                        run.errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            run
        }));
    }
    let mut total = Run::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.ops += r.ops;
            total.errors += r.errors;
            total.lat_us.extend(r.lat_us);
        }
    }
    total.elapsed = start.elapsed();
    total
}

/// Sequential puts of ~100-byte values to distinct keys.
pub async fn writes(sys: &Sys, clients: usize, duration: Duration, tag: &str) -> Run {
    let tag = tag.to_string();
    closed_loop(sys, clients, duration, move |mut s, t, i| {
        let key = format!("w/{tag}/{t}/{i}").into_bytes();
        async move {
            let r = s.put(key, value(i)).await;
            (s, r)
        }
    })
    .await
}

/// Puts keys `r/0..n` (16 writers).
pub async fn prefill(sys: &Sys, n: u64) -> Result<()> {
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let mut s = sys.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = t;
            while k < n {
                s.put(format!("r/{k}").into_bytes(), value(k)).await?;
                k += 16;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Linearizable gets of existing keys `r/0..n`.
pub async fn reads(sys: &Sys, clients: usize, duration: Duration, n: u64) -> Run {
    closed_loop(sys, clients, duration, move |mut s, t, i| {
        // A cheap per-task pseudo-random key.
        let x = (i.wrapping_mul(6364136223846793005) ^ (t as u64).wrapping_mul(1442695040888963407))
            .rotate_left(17);
        let key = format!("r/{}", x % n).into_bytes();
        async move {
            let r = match s.get(key).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(anyhow!("prefilled key missing")),
                Err(e) => Err(e),
            };
            (s, r)
        }
    })
    .await
}

/// A writer doing sequential puts until stopped, reporting (issued,
/// acknowledged) for each successful one. Each put is bounded by
/// `attempt_timeout` if given; failed puts are retried with a new put.
pub struct ContinuousWriter {
    stop: Arc<AtomicBool>,
    pub acks: mpsc::UnboundedReceiver<(Instant, Instant)>,
    pub errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl ContinuousWriter {
    pub fn start(mut sys: Sys, attempt_timeout: Option<Duration>, tag: String) -> ContinuousWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let (tx, acks) = mpsc::unbounded_channel();
        let (stop2, errors2) = (stop.clone(), errors.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let key = format!("f/{tag}/{i}").into_bytes();
                i += 1;
                let issued = Instant::now();
                let put = sys.put(key, value(i));
                let r = match attempt_timeout {
                    Some(t) => tokio::time::timeout(t, put)
                        .await
                        .unwrap_or_else(|_| Err(anyhow!("attempt timed out"))),
                    None => put.await,
                };
                match r {
                    Ok(()) => {
                        let _ = tx.send((issued, Instant::now()));
                    }
                    Err(_) => {
                        errors2.fetch_add(1, Ordering::Relaxed);
                        if issued.elapsed() < Duration::from_millis(5) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
            }
        });
        ContinuousWriter { stop, acks, errors, task }
    }

    /// Waits (bounded) until `n` more writes were acknowledged.
    pub async fn wait_acks(&mut self, n: usize, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        for _ in 0..n {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(_)) => {}
                _ => bail!("writer did not get {n} acknowledgements within {within:?}"),
            }
        }
        Ok(())
    }

    /// Time from `since` to the acknowledgement of the first write issued
    /// at or after `since` (bounded by `within`).
    pub async fn first_ack_issued_after(&mut self, since: Instant, within: Duration) -> Result<Duration> {
        let deadline = since + within;
        loop {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some((issued, acked))) if issued >= since => return Ok(acked - since),
                Ok(Some(_)) => continue,
                _ => bail!("no write acknowledged within {within:?} of the kill"),
            }
        }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

/// Per-window counters of the soak writer.
#[derive(Default)]
pub struct SoakWindow {
    pub ok: u64,
    pub errors: u64,
    /// Puts not issued because too many were in flight.
    pub skipped: u64,
    pub lat_us: Vec<u32>,
}

/// Open-loop puts at `rate` per second over keys `s/0..keys`, at most 256
/// in flight, until `stop`.
pub fn soak_writer(
    sys: Sys,
    rate: u64,
    keys: u64,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<SoakWindow>>, tokio::task::JoinHandle<()>) {
    let window = Arc::new(Mutex::new(SoakWindow::default()));
    let w = window.clone();
    let task = tokio::spawn(async move {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
        let tick = Duration::from_millis(10);
        let per_tick_x100 = rate; // puts per 10 ms tick, times 100
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut owed_x100 = 0u64;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            interval.tick().await;
            owed_x100 += per_tick_x100;
            while owed_x100 >= 100 {
                owed_x100 -= 100;
                i += 1;
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    w.lock().unwrap().skipped += 1;
                    continue;
                };
                let mut s = sys.clone();
                let w = w.clone();
                let key = format!("s/{}", i % keys).into_bytes();
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let r = tokio::time::timeout(Duration::from_secs(10), s.put(key, value(i))).await;
                    let mut win = w.lock().unwrap();
                    match r {
                        Ok(Ok(())) => {
                            win.ok += 1;
                            win.lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        }
                        _ => win.errors += 1,
                    }
                    drop(permit);
                });
            }
        }
    });
    (window, task)
}
