//! `troupe-actors bench`: the actor layer's benchmarks, each next to its
//! reference in the same run (see BENCHMARKS.md).
//!
//! This process is the head node (embedded) and starts worker node
//! processes of this same binary. It measures:
//! - call throughput and latency with 1 and 64 calls in flight: to an actor
//!   in this process (in-process, no serialisation), to an actor in another
//!   node process (one RPC), and the bare RPC transport (the diag echo
//!   service of that same node process) with the same payload;
//! - spawn latency (spawn to first reply), and the time to spawn 1,000
//!   actors spread over 3 nodes;
//! - the RSS of a node process before and after it hosts 1,000 idle actors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use troupe::core::rpc::diag::{ByteBuf, Echo as RpcEcho};
use troupe::core::rpc::{ClusterToken, RpcClient, RpcConfig};
use troupe::prelude::*;
use troupe::{Node, NodeConfig, Role};
use troupe_examples::actors::{registry, Echo, Ping};

const TOKEN: &str = "troupe-actors-bench";

#[derive(Debug, Parser)]
#[command(name = "troupe-actors bench")]
pub struct BenchArgs {
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Rounds of every throughput measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Payload bytes per call.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Actors for the mass-spawn and idle-memory measurements.
    #[arg(long, default_value_t = 1000)]
    actors: usize,
    /// Run only the remote calls with 64 in flight, for `--seconds` (to
    /// profile with `perf record`).
    #[arg(long)]
    only_remote: bool,
}

/// A worker node process, killed when dropped.
struct WorkerProcess {
    child: Child,
    addr: String,
}

impl WorkerProcess {
    fn start(dir: &Path, head: &str, resource: &str) -> anyhow::Result<WorkerProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([
                "start",
                "--join",
                head,
                "--token",
                TOKEN,
                "--listen",
                "127.0.0.1:0",
            ])
            .args([
                "--num-cpus",
                "1",
                "--actor-threads",
                "1",
                "--no-http",
                "--no-dashboard",
            ])
            .args(["--resources", &format!("{{\"{resource}\": 100000}}")])
            .arg("--data-dir")
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("worker did not start: {line:?}"))?
            .to_string();
        Ok(WorkerProcess { child, addr })
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Throughput and latency percentiles of one measurement.
#[derive(Debug, Clone, Copy)]
struct Measured {
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `call` from `in_flight` concurrent loops for `seconds`.
async fn measure<F, Fut>(in_flight: usize, seconds: f64, call: F) -> anyhow::Result<Measured>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let t = Instant::now();
                call().await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Measured {
        per_second: all.len() as f64 / elapsed,
        p50_us: percentile(&all, 0.5),
        p99_us: percentile(&all, 0.99),
    })
}

/// Bare RPC echoes of `payload` on `channel`.
async fn echo(
    channel: &troupe::core::rpc::Channel,
    payload: &[u8],
    in_flight: usize,
    seconds: f64,
) -> anyhow::Result<Measured> {
    let (ch, body) = (channel.clone(), ByteBuf::from(payload.to_vec()));
    measure(in_flight, seconds, move || {
        let (ch, body) = (ch.clone(), body.clone());
        async move {
            ch.call::<RpcEcho>(&body).await?;
            Ok(())
        }
    })
    .await
}

/// Actor calls echoing `payload`.
async fn ping(
    actor: &ActorHandle<Echo>,
    payload: &[u8],
    in_flight: usize,
    seconds: f64,
) -> anyhow::Result<Measured> {
    let (h, body) = (actor.clone(), payload.to_vec());
    measure(in_flight, seconds, move || {
        let (h, body) = (h.clone(), body.clone());
        async move {
            h.call(Ping(body)).await?;
            Ok(())
        }
    })
    .await
}

/// The round whose throughput is the median.
fn median(mut rounds: Vec<Measured>) -> Measured {
    rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    rounds[rounds.len() / 2]
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let tmp = std::env::temp_dir().join(format!("troupe-actors-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let token = ClusterToken::new(TOKEN)?;
    let mut config = NodeConfig::new(Role::Head, token.clone(), tmp.join("head"));
    config.resources = Resources::new()
        .with_cpus(1.0)?
        .with_custom("head", 100_000.0)?;
    config.actor_threads = 1;
    let head = Node::start(config, registry()).await?;
    let head_addr = head.addr().to_string();
    let w1 = WorkerProcess::start(&tmp.join("w1"), &head_addr, "w1")?;
    let cluster = head.cluster();
    wait_for_nodes(&cluster, 2).await?;

    let local = cluster.spawn::<Echo>(()).resource("head", 1.0).await?;
    let remote = cluster.spawn::<Echo>(()).resource("w1", 1.0).await?;
    let payload = vec![7u8; args.payload];
    local.call(Ping(payload.clone())).await?;
    remote.call(Ping(payload.clone())).await?;
    let rpc = RpcClient::new(RpcConfig::new(token));
    let raw = rpc.channel(&w1.addr);
    // The worker runs one actor thread: its data-plane listener is the
    // remote actor's thread.
    let data_addr = cluster
        .state()
        .await?
        .nodes
        .values()
        .find(|n| n.addr == w1.addr)
        .and_then(|n| n.data_addrs.first().cloned())
        .context("the worker's data-plane address")?;
    let raw_same_thread = rpc.channel(&data_addr);

    if args.only_remote {
        let m = ping(&remote, &payload, 64, args.seconds).await?;
        println!(
            "remote, 64 in flight: {:.0} calls/s (worker pid {})",
            m.per_second,
            w1.child.id()
        );
        drop(w1);
        head.shutdown().await;
        return Ok(());
    }
    println!(
        "calls, {} B payload, {} s x {} rounds (median round):",
        args.payload, args.seconds, args.rounds
    );
    println!(
        "{:<34} {:>12} {:>10} {:>10}",
        "", "calls/s", "p50 us", "p99 us"
    );
    for in_flight in [1usize, 64] {
        let (mut raws, mut remotes, mut locals) = (Vec::new(), Vec::new(), Vec::new());
        let mut raws_same_thread = Vec::new();
        for _ in 0..args.rounds {
            raws_same_thread.push(echo(&raw_same_thread, &payload, in_flight, args.seconds).await?);
            raws.push(echo(&raw, &payload, in_flight, args.seconds).await?);
            remotes.push(ping(&remote, &payload, in_flight, args.seconds).await?);
            locals.push(ping(&local, &payload, in_flight, args.seconds).await?);
        }
        let (raw_m, remote_m, local_m) = (median(raws), median(remotes), median(locals));
        let same_m = median(raws_same_thread);
        for (label, m) in [
            (format!("bare RPC echo, {in_flight} in flight"), raw_m),
            ("  same, on the actor's thread".to_string(), same_m),
            (
                format!("remote actor call, {in_flight} in flight"),
                remote_m,
            ),
            (format!("local actor call, {in_flight} in flight"), local_m),
        ] {
            println!(
                "{label:<34} {:>12.0} {:>10.1} {:>10.1}",
                m.per_second, m.p50_us, m.p99_us
            );
        }
        println!(
            "  remote / bare RPC throughput: {:.2} (p50 ratio {:.2}); remote / bare RPC on the \
             actor's thread: {:.2} (p50 ratio {:.2})",
            remote_m.per_second / raw_m.per_second,
            remote_m.p50_us / raw_m.p50_us,
            remote_m.per_second / same_m.per_second,
            remote_m.p50_us / same_m.p50_us
        );
    }

    // Spawn latency: spawn to first reply, one at a time.
    for (label, resource) in [("on this node", "head"), ("on another node", "w1")] {
        let mut latencies = Vec::new();
        let mut spawned = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let actor = cluster.spawn::<Echo>(()).resource(resource, 1.0).await?;
            actor.call(Ping(Vec::new())).await?;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            spawned.push(actor);
        }
        latencies.sort_by(f64::total_cmp);
        println!(
            "spawn to first reply {label}: p50 {:.2} ms, p99 {:.2} ms (50 spawns)",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
        for actor in spawned {
            cluster.kill(actor.id()).await?;
        }
    }

    // 1,000 actors over 3 nodes (64 spawns in flight), then one call each.
    let w2 = WorkerProcess::start(&tmp.join("w2"), &head_addr, "w2")?;
    wait_for_nodes(&cluster, 3).await?;
    let started = Instant::now();
    let handles = spawn_many(&cluster, args.actors, None).await?;
    let spawn_time = started.elapsed();
    let mut by_node = std::collections::BTreeMap::<NodeId, usize>::new();
    let state = cluster.state().await?;
    for h in &handles {
        if let Some(node) = state.actors[&h.id()].node {
            *by_node.entry(node).or_default() += 1;
        }
    }
    println!(
        "{} actors spawned and answering on 3 nodes in {:.2} s ({:.2} ms each); per node {:?}",
        args.actors,
        spawn_time.as_secs_f64(),
        spawn_time.as_secs_f64() * 1e3 / args.actors as f64,
        by_node.values().collect::<Vec<_>>()
    );
    for h in &handles {
        cluster.kill(h.id()).await?;
    }

    // Idle memory: a fresh node process, then 1,000 idle actors on it.
    let w3 = WorkerProcess::start(&tmp.join("w3"), &head_addr, "w3")?;
    wait_for_nodes(&cluster, 4).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = w3.rss_kib();
    let _idle = spawn_many(&cluster, args.actors, Some("w3")).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = w3.rss_kib();
    println!(
        "node process RSS: {:.1} MiB idle, {:.1} MiB with {} idle actors ({:.1} KiB per actor)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        args.actors,
        (after.saturating_sub(before)) as f64 / args.actors as f64
    );
    drop((w1, w2, w3));
    head.shutdown().await;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Spawns `n` echo actors, 64 at a time, each answering one call; pinned
/// to the custom resource `pin` when given, else spread by a sliver of CPU.
async fn spawn_many(
    cluster: &Cluster,
    n: usize,
    pin: Option<&str>,
) -> anyhow::Result<Vec<ActorHandle<Echo>>> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (cluster, next, pin) = (cluster.clone(), next.clone(), pin.map(str::to_owned));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let spawn = cluster.spawn::<Echo>(());
                let spawn = match &pin {
                    Some(resource) => spawn.resource(resource, 1.0),
                    None => spawn.num_cpus(0.0001),
                };
                let actor = spawn.await?;
                actor.call(Ping(Vec::new())).await?;
                mine.push(actor);
            }
            Ok::<_, anyhow::Error>(mine)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

async fn wait_for_nodes(cluster: &Cluster, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.state().await?.nodes.len() < n {
        anyhow::ensure!(Instant::now() < deadline, "{n} nodes did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
