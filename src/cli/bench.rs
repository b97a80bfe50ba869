//! `troupe bench cluster --nodes N`: the control plane's envelope measured
//! on one machine (issue #17). Launching (N node processes of the running
//! binary on loopback, stopped by pid whatever happens) is kept apart from
//! measuring (spawns, a deploy, RSS, idle CPU, the GCS's size on disk, the
//! watch events each process's cluster view received);
//! the parsing and arithmetic are pure functions, tested in the
//! submodules. This file holds the command, its arguments and the order
//! of the measurements.
//!
//! # Layout
//!
//! - `launch` — starting the node processes and stopping them by pid.
//! - `load` — spawns, a deploy, and the watch events they caused.
//! - `usage` — RSS, CPU and disk of the node processes.
//! - `kills` — the kills at the end of a run and what is timed after them.
//! - `http_probe` — HTTP requests through a surviving proxy meanwhile.
//! - `table` — the printed table.

mod http_probe;
mod kills;
mod launch;
mod load;
mod table;
mod usage;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe_core::rpc::ClusterToken;
use troupe_serve::Catalog;
use troupe_worker::Cluster;

use launch::{wait_registered, Launched};
use load::{deploy, spawn_actors, watch_counts, watch_summary};
use table::table;
use usage::{dir_bytes, idle_window, per_pid_ticks, rss_summary, ticks, CLOCK_TICKS_PER_S};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Start N node processes of this binary on 127.0.0.1, wait until all
    /// registered, measure spawns, a deploy, memory, idle CPU and the
    /// control store's size; with --kill-node / --kill-leader, SIGKILL a
    /// node and time the recovery (spawns, replicas, HTTP through a
    /// surviving proxy); print a table, then stop every process.
    Cluster(ClusterArgs),
}

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Node processes to start (the first `--gcs-members` hold the GCS).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// How many of the nodes are GCS members (1 or 3 are usual).
    #[arg(long, default_value_t = 3)]
    gcs_members: usize,
    /// Actors (`troupe.chaos.Tally`, 0.01 CPU each) spawned by a driver.
    #[arg(long, default_value_t = 1000)]
    actors: usize,
    /// Spawns in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Replicas of the deployed application (0: no deploy).
    #[arg(long, default_value_t = 100)]
    replicas: u32,
    /// The application of this binary to deploy (the examples' `noop`;
    /// HTTP is probed on its route, `/APP`).
    #[arg(long, default_value = "noop")]
    app: String,
    /// The deployment of `--app` whose replica count is set.
    #[arg(long, default_value = "noop")]
    deployment: String,
    /// Seconds over which idle CPU is measured (before and after the load).
    #[arg(long, default_value_t = 10.0)]
    idle_secs: f64,
    /// Give up if the nodes are not all registered after this many seconds.
    #[arg(long, default_value_t = 300.0)]
    start_timeout: f64,
    /// How many nodes run an HTTP proxy (on a free port): the last ones
    /// launched, so never the head alone. With a deploy and a kill, HTTP
    /// requests go every 20 ms through a proxy on a node that survives.
    #[arg(long, default_value_t = 2)]
    http_nodes: usize,
    /// After the deploy, SIGKILL the non-GCS node holding the most
    /// replicas (one without a proxy if possible) and time until the node
    /// table drops it and until all replicas are RUNNING elsewhere (and
    /// HTTP meanwhile).
    #[arg(long)]
    kill_node: bool,
    /// At the end, SIGKILL the GCS leader's node and time the first
    /// successful spawn and the first successful HTTP request (through a
    /// surviving node's proxy) after it.
    #[arg(long)]
    kill_leader: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub async fn run(command: BenchCommand, catalog: Catalog) -> anyhow::Result<()> {
    let BenchCommand::Cluster(args) = command;
    if args.nodes == 0 || args.gcs_members == 0 || args.gcs_members > args.nodes {
        bail!("need --nodes ≥ --gcs-members ≥ 1");
    }
    if args.http_nodes > args.nodes {
        bail!(
            "--http-nodes ({}) cannot exceed --nodes ({})",
            args.http_nodes,
            args.nodes
        );
    }
    if args.kill_node && (args.replicas == 0 || args.nodes <= args.gcs_members) {
        bail!("--kill-node needs --replicas > 0 and a node outside the GCS members (--nodes > --gcs-members)");
    }
    if args.replicas > 0 && !catalog.app_names().any(|n| n == args.app) {
        bail!(
            "this binary has no application {:?} to deploy; run the bench from a binary that has \
             one (e.g. troupe-chain has `noop`) or pass --replicas 0",
            args.app
        );
    }
    let started = Instant::now();
    let launch = Launched::start(
        args.nodes,
        args.gcs_members,
        args.http_nodes,
        Duration::from_secs_f64(args.start_timeout),
    );
    let results = tokio::select! {
        r = measure(launch, &args, &catalog) => r?,
        r = super::wait_for_shutdown_signal() => { r?; bail!("interrupted; every node was stopped") }
    };
    let mut results = results;
    results["wall_s"] = serde_json::json!(started.elapsed().as_secs_f64());
    print!("{}", table(&results));
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&results)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        println!("results: {}", out.display());
    }
    Ok(())
}

/// Launches the cluster, then runs the measurements in order; the cluster
/// is stopped when this returns (or is dropped on Ctrl-C).
async fn measure(
    launch: impl std::future::Future<Output = anyhow::Result<Launched>>,
    args: &ClusterArgs,
    catalog: &Catalog,
) -> anyhow::Result<serde_json::Value> {
    let t0 = Instant::now();
    let mut cluster = launch.await?;
    let driver = Cluster::connect(&cluster.nodes[0].addr, ClusterToken::new(&cluster.token)?)
        .await
        .context("connecting a driver to the head")?;
    wait_registered(
        &driver,
        args.nodes,
        Duration::from_secs_f64(args.start_timeout).saturating_sub(t0.elapsed()),
    )
    .await?;
    let up_s = t0.elapsed().as_secs_f64();
    eprintln!("bench: {} nodes registered in {up_s:.1} s", args.nodes);
    let idle = Duration::from_secs_f64(args.idle_secs);
    let pids = cluster.pids();
    let gcs_pids: Vec<u32> = cluster.pids()[..args.gcs_members].to_vec();
    let rss_idle = rss_summary(&pids, &gcs_pids)?;
    let cpu_idle = idle_window(&driver, &pids, &gcs_pids, idle).await?;
    eprintln!("bench: spawning {} actors", args.actors);
    let watch0 = watch_counts(&driver).await;
    let (all0, gcs0) = (ticks(&pids), per_pid_ticks(&gcs_pids));
    let spawns = spawn_actors(&driver, args.actors, args.concurrency).await?;
    let (all1, gcs1) = (ticks(&pids), per_pid_ticks(&gcs_pids));
    let watch1 = watch_counts(&driver).await;
    let spawn_cpu_s = all1.saturating_sub(all0) as f64 / CLOCK_TICKS_PER_S;
    let spawn_gcs_cpu_s = gcs0
        .iter()
        .zip(&gcs1)
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0) as f64
        / CLOCK_TICKS_PER_S;
    let gcs_bytes: u64 = cluster.nodes[..args.gcs_members]
        .iter()
        .map(|n| dir_bytes(&n.data_dir))
        .max()
        .unwrap_or(0);
    let deploy_s = match args.replicas {
        0 => None,
        r => {
            eprintln!("bench: deploying {} with {r} replicas", args.app);
            Some(deploy(&driver, catalog, &args.app, &args.deployment, r).await?)
        }
    };
    let watch2 = watch_counts(&driver).await;
    let rss_loaded = rss_summary(&pids, &gcs_pids)?;
    let cpu_loaded = idle_window(&driver, &pids, &gcs_pids, idle).await?;
    let keys = driver.state().await.map(|s| {
        s.nodes.len() + s.actors.len() + s.assignments.len() + s.reports.len() + s.extra.len()
    });
    // HTTP is probed through the deployed app's route when there is one.
    let route = (args.replicas > 0 && args.http_nodes > 0).then(|| kills::route(&args.app));
    let node_kill = match args.kill_node {
        false => None,
        true => Some(
            kills::node_replacement(
                &driver,
                &mut cluster,
                args.gcs_members,
                (&args.app, &args.deployment, args.replicas),
                route.as_deref(),
            )
            .await?,
        ),
    };
    let recovery = match args.kill_leader {
        false => None,
        true => Some(
            kills::leader_recovery(&driver, &mut cluster, args.gcs_members, route.as_deref())
                .await?,
        ),
    };
    drop(driver);
    cluster.clean = true;
    Ok(serde_json::json!({
        "nodes": args.nodes,
        "gcs_members": args.gcs_members,
        "http_nodes": args.http_nodes,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "up_s": up_s,
        "actors": args.actors,
        "spawn_per_s": spawns.per_s,
        "spawn_p50_ms": spawns.p50_ms,
        "spawn_p99_ms": spawns.p99_ms,
        "spawn_cpu_ms_per_actor": spawn_cpu_s * 1000.0 / args.actors.max(1) as f64,
        "spawn_busiest_gcs_member_cpu_s": spawn_gcs_cpu_s,
        "replicas": args.replicas,
        "deploy_s": deploy_s,
        "rss_idle": rss_idle,
        "rss_loaded": rss_loaded,
        "idle_empty": cpu_idle,
        "idle_loaded": cpu_loaded,
        "leader_kill": recovery,
        "node_kill": node_kill,
        "gcs_member_dir_bytes": gcs_bytes,
        "gcs_keys": keys.ok(),
        "watch_events_spawn": watch_summary(&watch0, &watch1),
        "watch_events_deploy": deploy_s.map(|_| watch_summary(&watch1, &watch2)),
    }))
}
