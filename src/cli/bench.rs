//! `troupe bench cluster --nodes N`: the control plane's envelope measured
//! on one machine (issue #17). Launching (N node processes of the running
//! binary on loopback, stopped by pid whatever happens) is kept apart from
//! measuring (spawns, a deploy, RSS, idle CPU, the GCS's size on disk, the
//! watch events each process's cluster view received);
//! the parsing and arithmetic are pure functions, tested below. The kills
//! at the end of a run and the HTTP probe are in `kills` and `http_probe`.

mod http_probe;
mod kills;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe_core::id::NodeId;
use troupe_core::rpc::ClusterToken;
use troupe_serve::config::{self, HttpOptionsUse};
use troupe_serve::{declarative, Catalog};
use troupe_worker::{Cluster, WatchCounts};

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

// ---- Launching ----------------------------------------------------------

/// One node process.
struct NodeProc {
    child: Child,
    addr: String,
    /// Where its HTTP proxy listens, if it runs one.
    http: Option<String>,
    data_dir: PathBuf,
    /// SIGKILLed and reaped by the bench on purpose.
    killed: bool,
}

/// The node processes of a run. Dropping it SIGKILLs and reaps every one;
/// their directory is removed only after a clean run (else kept for its
/// logs).
struct Launched {
    nodes: Vec<NodeProc>,
    /// The GCS members' fixed ports, held while the cluster runs.
    ports: troupe_chaos::cluster::ports::PortLease,
    token: String,
    dir: PathBuf,
    clean: bool,
}

impl Drop for Launched {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.child.kill();
        }
        for node in &mut self.nodes {
            let _ = node.child.wait();
        }
        if self.clean {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("bench: node logs kept in {}", self.dir.display());
        }
    }
}

impl Launched {
    /// Starts the head, then the other GCS members one at a time, then the
    /// rest all at once (the last `http_nodes` with an HTTP proxy); returns
    /// once every process printed its address.
    async fn start(
        n: usize,
        gcs_members: usize,
        http_nodes: usize,
        timeout: Duration,
    ) -> anyhow::Result<Launched> {
        let binary = std::env::current_exe().context("finding the running executable")?;
        let dir = std::env::temp_dir().join(format!("troupe-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let token: String = rand::random::<[u8; 16]>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut launched = Launched {
            nodes: Vec::with_capacity(n),
            ports: troupe_chaos::cluster::ports::PortLease::take(gcs_members)?,
            token,
            dir,
            clean: false,
        };
        let deadline = Instant::now() + timeout;
        for k in 0..n {
            let join = (k > 0).then(|| launched.nodes[0].addr.clone());
            let listen = match k < gcs_members {
                // GCS members are named by address: a fixed port each.
                true => format!("127.0.0.1:{}", launched.ports.ports()[k]),
                false => "127.0.0.1:0".into(),
            };
            let role = NodeRole {
                gcs: k < gcs_members,
                http: k + http_nodes >= n,
            };
            let node = launched.spawn(&binary, k, join.as_deref(), role, &listen)?;
            launched.nodes.push(node);
            if k < gcs_members {
                launched.await_address(k, deadline).await?;
            }
        }
        for k in gcs_members..n {
            launched.await_address(k, deadline).await?;
        }
        Ok(launched)
    }

    fn spawn(
        &self,
        binary: &Path,
        k: usize,
        join: Option<&str>,
        role: NodeRole,
        listen: &str,
    ) -> anyhow::Result<NodeProc> {
        let data_dir = self.dir.join(format!("node-{k}"));
        let out = File::create(self.dir.join(format!("node-{k}.out")))?;
        let log = File::create(self.dir.join(format!("node-{k}.log")))?;
        let mut command = Command::new(binary);
        command.args(node_args(join, role, listen, &data_dir, &self.token));
        command
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting node {k} ({})", binary.display()))?;
        Ok(NodeProc {
            child,
            addr: String::new(),
            http: None,
            data_dir,
            killed: false,
        })
    }

    /// Waits for node `k`'s "listening on" line (its stdout is a file).
    async fn await_address(&mut self, k: usize, deadline: Instant) -> anyhow::Result<()> {
        let out = self.dir.join(format!("node-{k}.out"));
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(addr) = listening_addr(&text) {
                self.nodes[k].addr = addr;
                self.nodes[k].http = http_addr(&text);
                return Ok(());
            }
            if let Some(status) = self.nodes[k].child.try_wait()? {
                bail!(
                    "node {k} exited ({status}) before listening; see {}",
                    self.dir.join(format!("node-{k}.log")).display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "node {k} did not print its address in time ({} of {} nodes up)",
                    k,
                    self.nodes.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.child.id()).collect()
    }

    /// SIGKILLs node `k` and reaps it.
    fn kill(&mut self, k: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[k];
        node.child
            .kill()
            .with_context(|| format!("SIGKILL of node {k}"))?;
        node.child.wait()?;
        node.killed = true;
        Ok(())
    }
}

/// What a launched node runs besides its worker.
#[derive(Debug, Clone, Copy)]
struct NodeRole {
    /// A GCS member.
    gcs: bool,
    /// An HTTP proxy (on a free port).
    http: bool,
}

/// The `start` arguments of a bench node: no admin API, an HTTP proxy on
/// a free port only if its role says so (the control plane is measured),
/// one actor thread, CPUs enough that placement is never the limit.
fn node_args(
    join: Option<&str>,
    role: NodeRole,
    listen: &str,
    data_dir: &Path,
    token: &str,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["start".into()];
    match join {
        None => args.push("--head".into()),
        Some(addr) => {
            args.extend(["--join".into(), addr.into()]);
            if role.gcs {
                args.push("--gcs".into());
            }
        }
    }
    args.extend(
        [
            "--listen",
            listen,
            "--data-dir",
            &data_dir.display().to_string(),
            "--token",
            token,
            "--num-cpus",
            "100",
            "--actor-threads",
            "1",
            "--no-dashboard",
        ]
        .map(String::from),
    );
    match role.http {
        true => args.extend(["--http-listen".into(), "127.0.0.1:0".into()]),
        false => args.push("--no-http".into()),
    }
    args
}

/// The address in a node's "node ID listening on ADDR ..." line.
fn listening_addr(stdout: &str) -> Option<String> {
    let rest = stdout.split("listening on ").nth(1)?;
    let addr = rest.split_whitespace().next()?;
    Some(addr.to_owned())
}

/// The proxy's address in a node's "... listening on ADDR http HTTP ..."
/// line, if it runs one.
fn http_addr(stdout: &str) -> Option<String> {
    let line = stdout.lines().find(|l| l.contains("listening on "))?;
    let mut words = line.split_whitespace();
    words.find(|w| *w == "http")?;
    words.next().map(str::to_owned)
}

async fn wait_registered(driver: &Cluster, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let registered = driver.state().await.map(|s| s.nodes.len()).unwrap_or(0);
        if registered >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {registered} of {n} nodes registered in time");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- Measuring ----------------------------------------------------------

struct Spawns {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Spawns `m` Tally actors, `concurrency` at a time, timing each.
async fn spawn_actors(driver: &Cluster, m: usize, concurrency: usize) -> anyhow::Result<Spawns> {
    use troupe_chaos::workload::actor::Tally;
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..m {
        let permit = permits.clone().acquire_owned().await?;
        let driver = driver.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let r = driver.spawn::<Tally>(0).num_cpus(0.01).await.map(|_| ());
            drop(permit);
            r.map(|()| t.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(m);
    while let Some(r) = tasks.join_next().await {
        latencies.push(r?.context("spawning an actor")?);
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(Spawns {
        per_s: m as f64 / wall.max(1e-9),
        p50_ms: percentile_ms(&mut latencies, 0.50),
        p99_ms: percentile_ms(&mut latencies, 0.99),
    })
}

/// Deploys `app` with `replicas` replicas of `deployment` (0.01 CPU each)
/// and returns the seconds until it is RUNNING with all of them.
async fn deploy(
    driver: &Cluster,
    catalog: &Catalog,
    app: &str,
    deployment: &str,
    replicas: u32,
) -> anyhow::Result<f64> {
    let yaml = deploy_yaml(app, deployment, replicas);
    let (config, _) = config::check_yaml(&yaml, catalog, HttpOptionsUse::Fixed)
        .map_err(|e| anyhow::anyhow!("the bench's config is not valid:\n{e}"))?;
    let t = Instant::now();
    let done = declarative::apply(driver, catalog, &config).await?;
    declarative::wait_deployed(driver, &done, Duration::from_secs(900), |_| {}).await?;
    Ok(t.elapsed().as_secs_f64())
}

fn deploy_yaml(app: &str, deployment: &str, replicas: u32) -> String {
    format!(
        "applications:\n  - name: {app}\n    route_prefix: /{app}\n    app: {app}\n    deployments:\n      \
         - name: {deployment}\n        num_replicas: {replicas}\n        actor_options: {{ num_cpus: 0.01 }}\n"
    )
}

/// RSS of every node (sum, max) and of the GCS members, in MiB.
/// Every registered node's watch counts (`worker.watch_stats`), asked
/// concurrently; a node that does not answer within 5 s is left out.
async fn watch_counts(driver: &Cluster) -> BTreeMap<NodeId, WatchCounts> {
    let nodes: Vec<NodeId> = driver.read_state(|s| s.nodes.keys().copied().collect());
    let mut asks = tokio::task::JoinSet::new();
    for node in nodes {
        let driver = driver.clone();
        asks.spawn(async move {
            let counts = driver.watch_counts_of(node, Duration::from_secs(5)).await;
            (node, counts)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(Ok((node, counts))) = asks.join_next().await {
        match counts {
            Ok(counts) => {
                out.insert(node, counts);
            }
            Err(e) => eprintln!("bench: no watch counts from {node}: {e}"),
        }
    }
    out
}

/// The watch events each node received between `before` and `after`:
/// nodes with a full view (GCS members') and the others apart. Nodes
/// missing from either are left out.
fn watch_summary(
    before: &BTreeMap<NodeId, WatchCounts>,
    after: &BTreeMap<NodeId, WatchCounts>,
) -> serde_json::Value {
    let mut full = Vec::new();
    let mut narrow = Vec::new();
    let mut follows = Vec::new();
    for (node, a) in after {
        let Some(b) = before.get(node) else { continue };
        let events = a.events.saturating_sub(b.events);
        if a.full {
            full.push(events);
        } else {
            narrow.push(events);
            follows.push(a.follows);
        }
    }
    let mean = |v: &[u64]| match v.len() {
        0 => None,
        n => Some(v.iter().sum::<u64>() as f64 / n as f64),
    };
    serde_json::json!({
        "full_views": full.len(),
        "full_mean_events": mean(&full),
        "narrow_views": narrow.len(),
        "narrow_mean_events": mean(&narrow),
        "narrow_max_events": narrow.iter().max(),
        "narrow_mean_watches": mean(&follows),
    })
}

fn rss_summary(pids: &[u32], gcs_pids: &[u32]) -> anyhow::Result<serde_json::Value> {
    let rss = |pid: &u32| -> anyhow::Result<f64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status (did the node exit?)"))?;
        Ok(rss_kib(&text).unwrap_or(0) as f64 / 1024.0)
    };
    let all: Vec<f64> = pids.iter().map(rss).collect::<anyhow::Result<_>>()?;
    let gcs: Vec<f64> = gcs_pids.iter().map(rss).collect::<anyhow::Result<_>>()?;
    let others = &all[gcs.len()..];
    Ok(serde_json::json!({
        "sum_mib": all.iter().sum::<f64>(),
        "max_mib": all.iter().cloned().fold(0.0, f64::max),
        "mean_non_gcs_mib": others.iter().sum::<f64>() / others.len().max(1) as f64,
        "gcs_members_mib": gcs,
    }))
}

/// An idle window of `span`: CPU (in cores) of all nodes together and of
/// the busiest GCS member, and the GCS's write rate (revisions per second).
async fn idle_window(
    driver: &Cluster,
    pids: &[u32],
    gcs_pids: &[u32],
    span: Duration,
) -> anyhow::Result<serde_json::Value> {
    let revision = || async { driver.state().await.map(|s| s.revision) };
    let (all0, gcs0, rev0) = (ticks(pids), per_pid_ticks(gcs_pids), revision().await?);
    tokio::time::sleep(span).await;
    let (all1, gcs1, rev1) = (ticks(pids), per_pid_ticks(gcs_pids), revision().await?);
    let cores = |ticks: u64| ticks as f64 / CLOCK_TICKS_PER_S / span.as_secs_f64();
    let gcs_max = gcs0
        .iter()
        .zip(&gcs1)
        .map(|(a, b)| b.saturating_sub(*a))
        .max()
        .unwrap_or(0);
    Ok(serde_json::json!({
        "all_cores": cores(all1.saturating_sub(all0)),
        "gcs_member_max_cores": cores(gcs_max),
        // Reads do not advance the revision: every step is a write.
        "gcs_writes_per_s": (rev1.saturating_sub(rev0)) as f64 / span.as_secs_f64(),
    }))
}

/// utime + stime of every process in `pids`, summed, in clock ticks.
fn ticks(pids: &[u32]) -> u64 {
    per_pid_ticks(pids).iter().sum()
}

fn per_pid_ticks(pids: &[u32]) -> Vec<u64> {
    pids.iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| cpu_ticks(&s))
                .unwrap_or(0)
        })
        .collect()
}

/// Linux's USER_HZ (100 on every architecture Troupe builds for).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// utime + stime from a /proc/PID/stat line (fields 14 and 15; the
/// command name in parentheses may hold spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from /proc/PID/status.
fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The value at quantile `q` (nearest rank), in milliseconds.
fn percentile_ms(samples: &mut [Duration], q: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1000.0
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn table(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let mut out = String::new();
    out.push_str(&format!(
        "nodes {} (gcs members {}, http proxies {}), {} cores, up in {:.1} s\n",
        r["nodes"],
        r["gcs_members"],
        r["http_nodes"],
        r["cores"],
        f(&r["up_s"])
    ));
    out.push_str(&format!(
        "spawn {} actors: {:.0}/s, p50 {:.1} ms, p99 {:.1} ms\n",
        r["actors"],
        f(&r["spawn_per_s"]),
        f(&r["spawn_p50_ms"]),
        f(&r["spawn_p99_ms"])
    ));
    match r["deploy_s"].as_f64() {
        Some(s) => out.push_str(&format!(
            "deploy {} replicas: {s:.1} s to RUNNING\n",
            r["replicas"]
        )),
        None => out.push_str("deploy: skipped\n"),
    }
    for (label, key) in [("idle", "rss_idle"), ("loaded", "rss_loaded")] {
        let m = &r[key];
        out.push_str(&format!(
            "RSS {label}: sum {:.0} MiB, max {:.1} MiB, non-GCS mean {:.1} MiB, GCS members {}\n",
            f(&m["sum_mib"]),
            f(&m["max_mib"]),
            f(&m["mean_non_gcs_mib"]),
            m["gcs_members_mib"]
        ));
    }
    for (label, key) in [("empty", "idle_empty"), ("with the load", "idle_loaded")] {
        let m = &r[key];
        out.push_str(&format!(
            "idle CPU {label}: {:.3} cores in all, busiest GCS member {:.3} cores, {:.1} GCS writes/s\n",
            f(&m["all_cores"]),
            f(&m["gcs_member_max_cores"]),
            f(&m["gcs_writes_per_s"])
        ));
    }
    out.push_str(&format!(
        "spawn CPU: {:.2} ms per actor over all processes, busiest GCS member {:.1} s\n",
        f(&r["spawn_cpu_ms_per_actor"]),
        f(&r["spawn_busiest_gcs_member_cpu_s"])
    ));
    out.push_str(&kills::table_lines(&r["leader_kill"], &r["node_kill"]));
    for (label, key) in [
        ("spawns", "watch_events_spawn"),
        ("deploy", "watch_events_deploy"),
    ] {
        let m = &r[key];
        if m.is_null() {
            continue;
        }
        out.push_str(&format!(
            "watch events per process during the {label}: {:.0} on the {} full views (GCS members), \
             mean {:.0} and max {} on the {} others (mean {:.1} watches each)\n",
            f(&m["full_mean_events"]),
            m["full_views"],
            f(&m["narrow_mean_events"]),
            m["narrow_max_events"],
            m["narrow_views"],
            f(&m["narrow_mean_watches"])
        ));
    }
    out.push_str(&format!(
        "GCS member data dir: {:.1} MiB, {} keys under /troupe/\n",
        f(&r["gcs_member_dir_bytes"]) / (1 << 20) as f64,
        r["gcs_keys"]
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        let line = "node node-ab12 listening on 127.0.0.1:4567 admin 127.0.0.1:9\n";
        assert_eq!(listening_addr(line).as_deref(), Some("127.0.0.1:4567"));
        assert_eq!(listening_addr("starting\n"), None);
    }

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (troupe x) S 1 42 42 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(12));
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\ttroupe\nVmPeak:\t 1 kB\nVmRSS:\t    9216 kB\n";
        assert_eq!(rss_kib(status), Some(9216));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        samples.reverse();
        assert_eq!(percentile_ms(&mut samples, 0.99), 99.0);
        assert_eq!(percentile_ms(&mut samples, 0.50), 50.0);
        assert_eq!(percentile_ms(&mut [], 0.99), 0.0);
    }

    #[test]
    fn the_first_node_is_the_head_and_members_join_with_gcs() {
        let role = |gcs, http| NodeRole { gcs, http };
        let args = |join, role, listen| node_args(join, role, listen, Path::new("/d"), "t");
        let head = args(None, role(true, false), "127.0.0.1:1");
        assert_eq!(&head[..2], ["start", "--head"]);
        assert!(head.contains(&"--no-http".to_string()));
        let member = args(Some("127.0.0.1:1"), role(true, false), "127.0.0.1:2");
        assert_eq!(&member[..4], ["start", "--join", "127.0.0.1:1", "--gcs"]);
        let plain = args(Some("127.0.0.1:1"), role(false, false), "127.0.0.1:0");
        assert!(!plain.contains(&"--gcs".to_string()));
        assert!(plain.windows(2).any(|w| w == ["--token", "t"]));
        let proxy = args(Some("127.0.0.1:1"), role(false, true), "127.0.0.1:0");
        assert!(proxy
            .windows(2)
            .any(|w| w == ["--http-listen", "127.0.0.1:0"]));
        assert!(!proxy.contains(&"--no-http".to_string()));
    }

    #[test]
    fn the_proxy_address_is_read_from_the_listening_line() {
        let line =
            "node node-ab12 listening on 127.0.0.1:4567 http 127.0.0.1:8123 admin 127.0.0.1:9\n";
        assert_eq!(http_addr(line).as_deref(), Some("127.0.0.1:8123"));
        let without = "node node-ab12 listening on 127.0.0.1:4567\n";
        assert_eq!(http_addr(without), None);
        assert_eq!(http_addr(""), None);
    }

    #[test]
    fn watch_events_are_summed_per_kind_of_view() {
        let counts = |events, follows, full| WatchCounts {
            events,
            batches: events,
            follows,
            full,
        };
        let (a, b, c, gone) = (
            NodeId::new(1),
            NodeId::new(2),
            NodeId::new(3),
            NodeId::new(4),
        );
        let before = BTreeMap::from([
            (a, counts(100, 1, true)),
            (b, counts(10, 4, false)),
            (c, counts(10, 4, false)),
            (gone, counts(5, 4, false)),
        ]);
        let after = BTreeMap::from([
            (a, counts(3_100, 1, true)),
            (b, counts(40, 4, false)),
            (c, counts(20, 6, false)),
        ]);
        let s = watch_summary(&before, &after);
        assert_eq!(s["full_views"], 1);
        assert_eq!(s["full_mean_events"], 3000.0);
        assert_eq!(s["narrow_views"], 2);
        assert_eq!(s["narrow_mean_events"], 20.0);
        assert_eq!(s["narrow_max_events"], 30);
        assert_eq!(s["narrow_mean_watches"], 5.0);
        let none = watch_summary(&before, &BTreeMap::new());
        assert!(none["full_mean_events"].is_null());
    }

    #[test]
    fn the_deploy_config_sets_the_replica_count() {
        let yaml = deploy_yaml("noop", "noop", 1000);
        assert!(yaml.contains("num_replicas: 1000"));
        assert!(yaml.contains("app: noop"));
    }
}
