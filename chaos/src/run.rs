//! One chaos run, start to end: cluster up, config deployed, load and
//! faults on the seeded timeline, heal and convergence, checks, report.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use troupe_core::rpc::{ClusterToken, RpcClient, RpcConfig};

use crate::cluster::{Cluster, StartRole};
use crate::fault::Injector;
use crate::linearizability::{KvInput, KvOutput, Recorder};
use crate::probe;
use crate::record::{FaultRecord, HttpRecord, ProbeSample};
use crate::report::{self, Report};
use crate::scenario::{self, Scenario, Workload};
use crate::verdict::{judge, rfc3339, Driven, Judging};
use crate::workload;

/// How often the prober looks at the cluster.
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long the cluster may take to come up and run the config.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);

/// What `troupe chaos run` was asked.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The scenario file.
    pub scenario: PathBuf,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Where the report and logs go (default `chaos-out/<name>-seed<seed>`).
    pub out: Option<PathBuf>,
}

/// Runs a scenario until done or until `interrupt` resolves (Ctrl-C):
/// either way every process, namespace and temp dir it made is gone when
/// it returns. The report is written to the output folder; its
/// `passed()` is the verdict.
pub async fn run(
    options: RunOptions,
    interrupt: impl std::future::Future<Output = ()>,
) -> anyhow::Result<(Report, PathBuf)> {
    let (scenario, text) = scenario::load(&options.scenario).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid scenario:\n{e}",
            options.scenario.display()
        )
    })?;
    let seed = options.seed.unwrap_or(scenario.seed);
    let out = options.out.clone().unwrap_or_else(|| {
        PathBuf::from("chaos-out").join(format!("{}-seed{seed}", scenario.name))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let origin = Instant::now();
    let origin_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut unavailable = Vec::new();
    let kinds = scenario.fault_kinds();
    let token = format!("chaos-{seed}-{}", std::process::id());
    let cluster = Arc::new(Cluster::prepare(
        &scenario.cluster,
        &token,
        &out.join("logs"),
        origin,
        &mut unavailable,
    )?);
    // Only what this scenario would have used is worth saying.
    if !(kinds.contains("partition") || kinds.contains("degrade")) {
        unavailable.retain(|u| !u.starts_with("partitions and link degradation"));
    }
    let network = if cluster.network().is_some() {
        "namespaces"
    } else {
        "loopback"
    };
    let load_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let started_at = rfc3339(origin_unix_ms);
    let work = drive(
        &scenario,
        seed,
        &token,
        cluster.clone(),
        origin,
        &mut unavailable,
    );
    let outcome = tokio::select! {
        r = work => Some(r),
        () = interrupt => None,
    };
    // Whatever happened: every process and namespace goes now.
    cluster.teardown();
    let Some(driven) = outcome else {
        bail!(
            "interrupted: every node was stopped and the namespaces removed (logs in {})",
            out.join("logs").display()
        );
    };
    let driven = driven?;
    let report = judge(
        &scenario,
        &text,
        seed,
        &options,
        &out,
        &cluster,
        driven,
        Judging {
            origin_unix_ms,
            started_at,
            load_start,
            unavailable,
            network,
        },
    )?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    report::write_html(&report, &out.join("report.html"))?;
    Ok((report, out))
}

async fn start_cluster(scenario: &Scenario, cluster: &Cluster) -> anyhow::Result<()> {
    cluster.start(0, StartRole::Head).await?;
    for i in 1..cluster.len() {
        // One at a time: concurrent GCS joins can race (issue #15).
        let role = StartRole::Join {
            addr: cluster.addrs(0).rpc.clone(),
            gcs: i < scenario.cluster.gcs_members,
        };
        cluster.start(i, role).await?;
    }
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let nodes = workload::client::get(
            &cluster.addrs(0).admin,
            "/api/cluster/nodes",
            Duration::from_secs(2),
        )
        .await
        .and_then(|(s, b)| (s == 200).then_some(b))
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.get("nodes").and_then(Value::as_array).map(Vec::len));
        if nodes == Some(cluster.len()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "only {nodes:?} of {} nodes registered within {SETUP_TIMEOUT:?}",
                cluster.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every deployment runs its target count (and there is at
/// least one), or `within` passes; the time it took.
async fn wait_converged(
    cluster: &Cluster,
    origin: Instant,
    within: Duration,
    probes: &Mutex<Vec<ProbeSample>>,
) -> Option<u64> {
    let start = Instant::now();
    loop {
        let (_, sample) = probe::observe(cluster, origin.elapsed().as_millis() as u64).await;
        let done = !sample.targets.is_empty()
            && sample
                .targets
                .iter()
                .all(|(k, t)| sample.replicas.get(k) == Some(t));
        probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sample);
        if done {
            return Some(start.elapsed().as_millis() as u64);
        }
        if start.elapsed() > within {
            return None;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn drive(
    scenario: &Scenario,
    seed: u64,
    token: &str,
    cluster: Arc<Cluster>,
    origin: Instant,
    unavailable: &mut Vec<String>,
) -> anyhow::Result<Driven> {
    start_cluster(scenario, &cluster).await?;
    let probes = Arc::new(Mutex::new(Vec::<ProbeSample>::new()));
    let injector = Arc::new(Injector::new(
        cluster.clone(),
        origin,
        scenario.serve_config.clone(),
    ));
    if cluster.network().is_some()
        && !injector.netem()
        && scenario.fault_kinds().contains("degrade")
    {
        unavailable.push("degrade: this kernel has no `tc netem` (sch_netem)".into());
    }
    let mut setup_notes = Vec::new();
    if let Some(config) = &scenario.serve_config {
        let (view, _) = probe::observe(&cluster, 0).await;
        injector
            .deploy(config, &view)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if wait_converged(&cluster, origin, SETUP_TIMEOUT, &probes)
            .await
            .is_none()
        {
            bail!("the serve config did not reach RUNNING at its replica counts within {SETUP_TIMEOUT:?}");
        }
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    // The prober.
    // Every task of the run lives in a JoinSet owned here: if the run is
    // interrupted (this future dropped), they are aborted with it.
    let mut prober = tokio::task::JoinSet::new();
    {
        let (cluster, probes, mut stop) = (cluster.clone(), probes.clone(), stop_rx.clone());
        prober.spawn(async move {
            loop {
                let (_, sample) =
                    probe::observe(&cluster, origin.elapsed().as_millis() as u64).await;
                probes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(sample);
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }
    // Actor workloads spawn their actors before the load starts; their
    // drivers live as long as the run.
    let mut actor_sets = Vec::new();
    let entry: Vec<String> = (0..cluster.len())
        .map(|i| cluster.addrs(i).rpc.clone())
        .collect();
    for w in &scenario.workloads {
        if let Workload::Actor(a) = w {
            actor_sets.push(workload::actor::prepare(a, &entry, token).await?);
        }
    }
    let mut actor_sets = actor_sets.into_iter();
    // The workloads.
    let load_start = Instant::now();
    let load_start_ms = origin.elapsed().as_millis() as u64;
    let requests = Arc::new(Mutex::new(Vec::<HttpRecord>::new()));
    let rpc = RpcClient::new(RpcConfig::new(ClusterToken::new(token)?));
    let recorder = Arc::new(Recorder::<KvInput, KvOutput>::new());
    let mut loads = tokio::task::JoinSet::new();
    let mut gcs_workload = None;
    for w in &scenario.workloads {
        match w {
            Workload::Http(h) => {
                let nodes: Vec<usize> = if h.proxies.is_empty() {
                    (0..cluster.len()).collect()
                } else {
                    h.proxies.clone()
                };
                let proxies = Arc::new(workload::http::Proxies::new(
                    nodes
                        .iter()
                        .map(|&i| (i, cluster.addrs(i).http.clone()))
                        .collect(),
                ));
                loads.spawn(workload::http::run(
                    h.clone(),
                    proxies,
                    origin,
                    load_start,
                    stop_rx.clone(),
                    requests.clone(),
                ));
            }
            Workload::Gcs(g) => {
                gcs_workload = Some(g.clone());
                let (g, rpc, members, stop, recorder) = (
                    g.clone(),
                    rpc.clone(),
                    cluster.gcs_addrs(),
                    stop_rx.clone(),
                    recorder.clone(),
                );
                loads.spawn(async move {
                    if let Err(e) = workload::gcs::run(g, rpc, members, stop, recorder, seed).await
                    {
                        tracing::warn!("the GCS workload stopped: {e:#}");
                    }
                });
            }
            Workload::Actor(a) => {
                let (_driver, handles) = actor_sets.next().expect("prepared above");
                let (a, stop, requests) = (a.clone(), stop_rx.clone(), requests.clone());
                loads.spawn(async move {
                    // The driver lives as long as the calls.
                    let _driver = _driver;
                    workload::actor::run(a, handles, origin, load_start, stop, requests).await;
                });
            }
        }
    }
    // The faults, on the seeded timeline.
    let plan = scenario::timeline(scenario, seed);
    let faults = Arc::new(Mutex::new(Vec::<FaultRecord>::new()));
    let mut heals = tokio::task::JoinSet::new();
    let load_end = load_start + Duration::from_secs_f64(scenario.duration_s);
    for planned in plan {
        let due = load_start + Duration::from_millis(planned.at_ms);
        if due >= load_end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let (view, _) = probe::observe(&cluster, origin.elapsed().as_millis() as u64).await;
        let (record, undo) = injector.inject(&planned, &view).await;
        match &record.skipped {
            None => {
                tracing::info!(at_ms = record.start_ms, class = %record.class, "fault injected: {}", record.description)
            }
            Some(why) => tracing::warn!(class = %record.class, "fault skipped: {why}"),
        }
        let index = {
            let mut f = faults.lock().unwrap_or_else(|p| p.into_inner());
            f.push(record);
            f.len() - 1
        };
        let heal_at = planned
            .spec
            .heal_after_s
            .map(|s| due + Duration::from_secs_f64(s))
            // A wiped node with no heal time rejoins at once.
            .or_else(|| matches!(planned.spec.kind, scenario::FaultKind::Wipe).then_some(due));
        let (injector, faults, cluster) = (injector.clone(), faults.clone(), cluster.clone());
        heals.spawn(async move {
            // Faults still unhealed when the load ends are healed then.
            let at = heal_at.unwrap_or(load_end).min(load_end);
            tokio::time::sleep_until(at).await;
            let (view, _) = probe::observe(&cluster, origin.elapsed().as_millis() as u64).await;
            let note = injector.heal(undo, &view).await;
            tracing::info!(fault = index, "fault healed");
            let mut f = faults.lock().unwrap_or_else(|p| p.into_inner());
            f[index].heal_ms = Some(origin.elapsed().as_millis() as u64);
            if let Some(note) = note {
                f[index].description.push_str(&format!(" (heal: {note})"));
            }
        });
    }
    tokio::time::sleep_until(load_end).await;
    while heals.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    while loads.join_next().await.is_some() {}
    let load_end_ms = origin.elapsed().as_millis() as u64;
    while prober.join_next().await.is_some() {}
    let faults = faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let last_heal_ms = faults
        .iter()
        .filter_map(|f| f.heal_ms)
        .max()
        .unwrap_or(load_end_ms);
    let converged = match scenario.serve_config {
        Some(_) => wait_converged(
            &cluster,
            origin,
            Duration::from_secs_f64(scenario.checks.converge_within_s),
            &probes,
        )
        .await
        .map(|_| origin.elapsed().as_millis() as u64),
        None => Some(load_end_ms),
    };
    let history = match &gcs_workload {
        Some(g) => {
            match workload::gcs::final_reads(
                g,
                &rpc,
                cluster.gcs_addrs(),
                &recorder,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(known) if known < g.keys => setup_notes.push(format!(
                    "only {known} of {} keys could be read back after the run",
                    g.keys
                )),
                Ok(_) => {}
                Err(e) => setup_notes.push(format!("final reads failed: {e:#}")),
            }
            Arc::try_unwrap(recorder).ok()
        }
        None => None,
    };
    let requests = std::mem::take(&mut *requests.lock().unwrap_or_else(|p| p.into_inner()));
    let probes = std::mem::take(&mut *probes.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Driven {
        requests,
        faults,
        probes,
        history,
        load_ms: (load_start_ms, load_end_ms),
        converged,
        last_heal_ms,
        setup_notes,
    })
}
