//! The transport benchmark: Troupe RPC against the plain-TCP reference,
//! measured in the same run, in alternating rounds, against servers that
//! run as separate processes (one process pair, as between two nodes).

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;
use troupe_core::rpc::diag::{ByteBuf, Echo};
use troupe_core::rpc::{Channel, ClusterToken, RpcClient, RpcConfig};

use super::raw;

const PAYLOADS: [usize; 2] = [64, 16 * 1024];
const DEPTH: usize = 64;

/// A child process running this binary; SIGKILLed when dropped.
struct ChildPeer(std::process::Child);

impl Drop for ChildPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this binary as a child with `args` (on tokio's default runtime)
/// and waits for its `listening ADDR` line.
fn start_child(args: &[&str]) -> anyhow::Result<(ChildPeer, String)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .env_remove("TROUPE_RPC_PEER_THREADS")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let child = ChildPeer(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let Some(addr) = line.trim().strip_prefix("listening ") else {
        bail!("unexpected first line from child: {line:?}");
    };
    Ok((child, addr.to_string()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn rpc_one_in_flight(
    ch: &Channel,
    payload: usize,
    run_for: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let body = ByteBuf::from(vec![7u8; payload]);
    let mut latencies = Vec::new();
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        let start = Instant::now();
        let back = ch.call::<Echo>(&body).await?;
        latencies.push(start.elapsed());
        debug_assert_eq!(back.len(), payload);
    }
    Ok(latencies)
}

async fn rpc_many_in_flight(
    ch: &Channel,
    payload: usize,
    depth: usize,
    run_for: Duration,
) -> anyhow::Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for _ in 0..depth {
        let ch = ch.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let body = ByteBuf::from(vec![7u8; payload]);
            while Instant::now() < end {
                ch.call::<Echo>(&body).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One measurement's results across rounds.
/// `depth` calls in flight from ONE task (a `FuturesUnordered` refilled as
/// calls finish), like a router fanning out: no task wake-up per call.
async fn rpc_one_task_many_in_flight(
    ch: &Channel,
    payload: usize,
    depth: usize,
    run_for: Duration,
) -> anyhow::Result<u64> {
    use futures::stream::{FuturesUnordered, StreamExt};
    let body = ByteBuf::from(vec![7u8; payload]);
    let end = Instant::now() + run_for;
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..depth {
        in_flight.push(ch.call::<Echo>(&body));
    }
    let mut done = 0u64;
    while let Some(answer) = in_flight.next().await {
        answer?;
        done += 1;
        if Instant::now() < end {
            in_flight.push(ch.call::<Echo>(&body));
        }
    }
    Ok(done)
}

#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn median(&self) -> f64 {
        median(self.0.clone())
    }
}

/// Where a measurement's client runs.
struct Side {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
}

impl Side {
    fn new(runtime: tokio::runtime::Runtime, addr: &str) -> anyhow::Result<Side> {
        let client = RpcClient::new(RpcConfig::new(ClusterToken::new("bench")?));
        Ok(Side {
            channel: client.channel(addr),
            runtime,
        })
    }

    fn latencies(&self, payload: usize, run_for: Duration) -> anyhow::Result<Vec<Duration>> {
        let mut l = self
            .runtime
            .block_on(rpc_one_in_flight(&self.channel, payload, run_for))?;
        l.sort();
        Ok(l)
    }

    fn one_task_throughput(&self, payload: usize, run_for: Duration) -> anyhow::Result<f64> {
        let n = self.runtime.block_on(rpc_one_task_many_in_flight(
            &self.channel,
            payload,
            DEPTH,
            run_for,
        ))?;
        Ok(n as f64 / run_for.as_secs_f64())
    }

    fn throughput(&self, payload: usize, run_for: Duration) -> anyhow::Result<f64> {
        let n =
            self.runtime
                .block_on(rpc_many_in_flight(&self.channel, payload, DEPTH, run_for))?;
        Ok(n as f64 / run_for.as_secs_f64())
    }
}

/// Runs the comparison and prints two markdown tables.
pub fn run(run_for: Duration, rounds: usize) -> anyhow::Result<()> {
    let (_rpc_child, rpc_addr) =
        start_child(&["serve", "--listen", "127.0.0.1:0", "--token", "bench"])?;
    let (_raw_child, raw_addr) = start_child(&["raw-echo", "--listen", "127.0.0.1:0"])?;
    let current = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let raw = current()?;
    let single = Side::new(current()?, &rpc_addr)?;
    let multi = Side::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
        &rpc_addr,
    )?;
    let secs = run_for.as_secs_f64();

    println!(
        "Troupe RPC vs plain TCP on loopback, {rounds} alternating rounds of {secs:.1} s per measurement, \
         medians over rounds. Servers are separate processes (tokio multi-threaded). The RPC client runs \
         on a single-threaded runtime (as on an actix worker) and on tokio's multi-threaded runtime.\n"
    );
    let mut latency_rows = Vec::new();
    let mut throughput_rows = Vec::new();
    for payload in PAYLOADS {
        // Warm up every path (connections, allocator, CPU frequency).
        let warm = Duration::from_millis(300);
        raw.block_on(raw::ping_pong(&raw_addr, payload, warm))?;
        raw.block_on(raw::pipelined(&raw_addr, payload, DEPTH, warm))?;
        for side in [&single, &multi] {
            side.latencies(payload, warm)?;
            side.throughput(payload, warm)?;
        }
        single.one_task_throughput(payload, warm)?;

        let [mut raw50, mut raw99, mut s50, mut s99, mut m50, mut m99] = Default::default();
        let [mut raw_t, mut s_t, mut m_t, mut o_t] = Default::default();
        let [mut s50_ratio, mut m50_ratio, mut s_t_ratio, mut m_t_ratio, mut o_t_ratio] =
            <[Samples; 5]>::default();
        for _ in 0..rounds {
            let mut r = raw.block_on(raw::ping_pong(&raw_addr, payload, run_for))?;
            r.sort();
            let s = single.latencies(payload, run_for)?;
            let m = multi.latencies(payload, run_for)?;
            let (r50, sp50, mp50) = (
                us(percentile(&r, 0.5)),
                us(percentile(&s, 0.5)),
                us(percentile(&m, 0.5)),
            );
            let round: [(&mut Samples, f64); 8] = [
                (&mut raw50, r50),
                (&mut raw99, us(percentile(&r, 0.99))),
                (&mut s50, sp50),
                (&mut s99, us(percentile(&s, 0.99))),
                (&mut m50, mp50),
                (&mut m99, us(percentile(&m, 0.99))),
                (&mut s50_ratio, sp50 / r50),
                (&mut m50_ratio, mp50 / r50),
            ];
            for (samples, v) in round {
                samples.0.push(v);
            }

            let rt =
                raw.block_on(raw::pipelined(&raw_addr, payload, DEPTH, run_for))? as f64 / secs;
            let st = single.throughput(payload, run_for)?;
            let mt = multi.throughput(payload, run_for)?;
            let ot = single.one_task_throughput(payload, run_for)?;
            for (samples, v) in [
                (&mut raw_t, rt),
                (&mut s_t, st),
                (&mut m_t, mt),
                (&mut o_t, ot),
                (&mut s_t_ratio, st / rt),
                (&mut m_t_ratio, mt / rt),
                (&mut o_t_ratio, ot / rt),
            ] {
                samples.0.push(v);
            }
        }
        latency_rows.push(format!(
            "| {payload} B | {:.1} / {:.1} | {:.1} / {:.1} | **{:.2}×** | {:.1} / {:.1} | {:.2}× |",
            raw50.median(),
            raw99.median(),
            s50.median(),
            s99.median(),
            s50_ratio.median(),
            m50.median(),
            m99.median(),
            m50_ratio.median(),
        ));
        throughput_rows.push(format!(
            "| {payload} B | {:.0} | {:.0} | **{:.0}%** | {:.0} | {:.0}% | {:.0} | {:.0}% |",
            raw_t.median(),
            s_t.median(),
            100.0 * s_t_ratio.median(),
            m_t.median(),
            100.0 * m_t_ratio.median(),
            o_t.median(),
            100.0 * o_t_ratio.median(),
        ));
    }
    println!("One call in flight (round trip p50 / p99 in µs; ratio = rpc p50 / raw p50, median of per-round ratios):\n");
    println!("| payload | raw TCP ping-pong | rpc, 1-thread client | ratio | rpc, multi-thread client | ratio |");
    println!("|---|---|---|---|---|---|");
    for row in latency_rows {
        println!("{row}");
    }
    println!("\n{DEPTH} calls in flight (calls per second; ratio = rpc / raw, median of per-round ratios):\n");
    println!("| payload | raw TCP pipelined | rpc, {DEPTH} tasks, 1-thread client | ratio | rpc, {DEPTH} tasks, multi-thread client | ratio | rpc, 1 task with {DEPTH} calls in flight | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in throughput_rows {
        println!("{row}");
    }
    Ok(())
}

/// Drives `depth` concurrent echo calls at `addr` and prints the rate.
pub async fn load(
    addr: &str,
    token: &str,
    payload: usize,
    depth: usize,
    run_for: Duration,
) -> anyhow::Result<()> {
    let client = RpcClient::new(RpcConfig::new(ClusterToken::new(token)?));
    let ch = client.channel(addr);
    let n = rpc_many_in_flight(&ch, payload, depth, run_for).await?;
    println!("{:.0} calls/s", n as f64 / run_for.as_secs_f64());
    Ok(())
}
