//! The transport benchmark: Troupe RPC against the plain-TCP reference,
//! measured in the same run, in alternating rounds, against servers that
//! run as separate processes (one process pair, as between two nodes).

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use troupe_core::rpc::diag::Echo;
use troupe_core::rpc::{Channel, ClusterToken, RpcClient, RpcConfig};

use super::raw;

const PAYLOADS: [usize; 2] = [64, 16 * 1024];
const DEPTH: usize = 64;

/// Starts this binary as a child with `args` and waits for `listening ADDR`.
async fn start_child(args: &[&str]) -> anyhow::Result<(Child, String)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("child did not start within 10 s")??
        .context("child exited before listening")?;
    let Some(addr) = line.strip_prefix("listening ") else {
        bail!("unexpected first line from child: {line}");
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
    let body = vec![7u8; payload];
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
            let body = vec![7u8; payload];
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

#[derive(Default)]
struct Series {
    raw_p50: Vec<f64>,
    rpc_p50: Vec<f64>,
    raw_p99: Vec<f64>,
    rpc_p99: Vec<f64>,
    p50_ratio: Vec<f64>,
    raw_tput: Vec<f64>,
    rpc_tput: Vec<f64>,
    tput_ratio: Vec<f64>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub async fn run(run_for: Duration, rounds: usize) -> anyhow::Result<()> {
    let (_rpc_child, rpc_addr) =
        start_child(&["serve", "--listen", "127.0.0.1:0", "--token", "bench"]).await?;
    let (_raw_child, raw_addr) = start_child(&["raw-echo", "--listen", "127.0.0.1:0"]).await?;
    let client = RpcClient::new(RpcConfig::new(ClusterToken::new("bench")?));
    let ch = client.channel(&rpc_addr);
    let secs = run_for.as_secs_f64();

    println!(
        "Troupe RPC vs plain TCP on loopback: {rounds} alternating rounds of {secs:.1} s per measurement; \
         servers are separate processes; medians over rounds.\n"
    );
    println!("| payload | raw p50 µs | rpc p50 µs | p50 ratio (rpc/raw) | raw p99 µs | rpc p99 µs | raw calls/s (64 in flight) | rpc calls/s (64 in flight) | throughput ratio (rpc/raw) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for payload in PAYLOADS {
        // Warm up both paths (connections, allocator, CPU frequency).
        let warm = Duration::from_millis(300);
        raw::ping_pong(&raw_addr, payload, warm).await?;
        rpc_one_in_flight(&ch, payload, warm).await?;
        raw::pipelined(&raw_addr, payload, DEPTH, warm).await?;
        rpc_many_in_flight(&ch, payload, DEPTH, warm).await?;

        let mut s = Series::default();
        for _ in 0..rounds {
            let mut raw_lat = raw::ping_pong(&raw_addr, payload, run_for).await?;
            let mut rpc_lat = rpc_one_in_flight(&ch, payload, run_for).await?;
            raw_lat.sort();
            rpc_lat.sort();
            let (raw50, rpc50) = (percentile(&raw_lat, 0.5), percentile(&rpc_lat, 0.5));
            s.raw_p50.push(us(raw50));
            s.rpc_p50.push(us(rpc50));
            s.raw_p99.push(us(percentile(&raw_lat, 0.99)));
            s.rpc_p99.push(us(percentile(&rpc_lat, 0.99)));
            s.p50_ratio.push(us(rpc50) / us(raw50));

            let raw_n = raw::pipelined(&raw_addr, payload, DEPTH, run_for).await? as f64 / secs;
            let rpc_n = rpc_many_in_flight(&ch, payload, DEPTH, run_for).await? as f64 / secs;
            s.raw_tput.push(raw_n);
            s.rpc_tput.push(rpc_n);
            s.tput_ratio.push(rpc_n / raw_n);
        }
        println!(
            "| {} B | {:.1} | {:.1} | {:.2}× | {:.1} | {:.1} | {:.0} | {:.0} | {:.0}% |",
            payload,
            median(s.raw_p50),
            median(s.rpc_p50),
            median(s.p50_ratio),
            median(s.raw_p99),
            median(s.rpc_p99),
            median(s.raw_tput),
            median(s.rpc_tput),
            100.0 * median(s.tput_ratio),
        );
    }
    Ok(())
}
