//! One chaos run, start to end: cluster up, config deployed, load and
//! faults on the seeded timeline, heal and convergence, checks, report.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use troupe_core::rpc::{ClusterToken, RpcClient, RpcConfig};

use crate::analysis;
use crate::cluster::{Cluster, StartRole};
use crate::fault::Injector;
use crate::linearizability::{check, CheckResult, KvInput, KvModel, KvOutput, Recorder};
use crate::probe;
use crate::record::{FaultRecord, HttpRecord, ProbeSample};
use crate::report::{self, CheckOutcome, GcsSummary, MachineInfo, Report, Series};
use crate::scenario::{self, Scenario, Workload};
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
    let token = format!("chaos-{seed}-{}", std::process::id());
    let cluster = Arc::new(Cluster::prepare(
        &scenario.cluster,
        &token,
        &out.join("logs"),
        origin,
        &mut unavailable,
    )?);
    let network = if cluster.network().is_some() {
        "namespaces"
    } else {
        "loopback"
    };
    let load_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let started_at = rfc3339(origin_unix_ms);
    let work = drive(&scenario, seed, cluster.clone(), origin, &mut unavailable);
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

/// What the driving phase collected.
struct Driven {
    requests: Vec<HttpRecord>,
    faults: Vec<FaultRecord>,
    probes: Vec<ProbeSample>,
    history: Option<Recorder<KvInput, KvOutput>>,
    load_ms: (u64, u64),
    converged: Option<u64>,
    last_heal_ms: u64,
    setup_notes: Vec<String>,
}

struct Judging {
    network: &'static str,
    origin_unix_ms: u64,
    started_at: String,
    load_start: Option<f64>,
    unavailable: Vec<String>,
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
    if cluster.network().is_some() && !injector.netem() {
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
    let prober = {
        let (cluster, probes, mut stop) = (cluster.clone(), probes.clone(), stop_rx.clone());
        tokio::spawn(async move {
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
        })
    };
    // The workloads.
    let load_start = Instant::now();
    let load_start_ms = origin.elapsed().as_millis() as u64;
    let requests = Arc::new(Mutex::new(Vec::<HttpRecord>::new()));
    let token = ClusterToken::new(format!("chaos-{seed}-{}", std::process::id()))?;
    let rpc = RpcClient::new(RpcConfig::new(token));
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
    let _ = prober.await;
    let faults = faults.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let last_heal_ms = faults
        .iter()
        .filter_map(|f| f.heal_ms)
        .max()
        .unwrap_or(load_end_ms);
    let converged = wait_converged(
        &cluster,
        origin,
        Duration::from_secs_f64(scenario.checks.converge_within_s),
        &probes,
    )
    .await
    .map(|_| origin.elapsed().as_millis() as u64);
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

#[allow(clippy::too_many_arguments)]
fn judge(
    scenario: &Scenario,
    text: &str,
    seed: u64,
    options: &RunOptions,
    out: &Path,
    cluster: &Cluster,
    driven: Driven,
    j: Judging,
) -> anyhow::Result<Report> {
    let checks_spec = &scenario.checks;
    let tail_ms = (checks_spec.window_tail_s * 1000.0) as u64;
    let run_end = driven.load_ms.1;
    // A balanced client is judged as its load balancer's clients see it:
    // one gap over all its proxies (a dead proxy it routes around is no
    // gap); a fixed client per proxy.
    let balanced: Vec<&str> = scenario
        .workloads
        .iter()
        .filter_map(|w| match w {
            Workload::Http(h) if h.client == scenario::ClientMode::Balanced => {
                Some(h.name.as_str())
            }
            _ => None,
        })
        .collect();
    let mut requests = driven.requests;
    for r in &mut requests {
        if balanced.contains(&r.workload.as_str()) && r.proxy.is_some() {
            r.proxy = Some(report::BALANCED_PROXY);
        }
    }
    let requests = &requests;
    let overall = analysis::window_stats("overall", requests, 0, run_end + 1);
    let classes = analysis::class_stats(requests, &driven.faults, tail_ms, run_end);
    let mut windows = Vec::new();
    for (index, start, end) in analysis::fault_windows(&driven.faults, tail_ms, run_end) {
        let f = &driven.faults[index];
        let mut w = analysis::window_stats(&f.description, requests, start, end);
        w.recovery_ms = analysis::recovery_ms(&driven.probes, f.heal_ms.unwrap_or(f.start_ms));
        windows.push(w);
    }
    // A class recovers when its slowest window does.
    let mut classes = classes;
    for c in &mut classes {
        let spans: Vec<Option<u64>> = analysis::fault_windows(&driven.faults, tail_ms, run_end)
            .iter()
            .zip(&windows)
            .filter(|((i, _, _), _)| driven.faults[*i].class == c.label)
            .map(|(_, w)| w.recovery_ms)
            .collect();
        if !spans.is_empty() {
            c.recovery_ms = spans
                .iter()
                .copied()
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max());
        }
    }
    let mut checks = Vec::new();
    let slo = |w: &report::WindowStats| {
        let mut passed = w.success_rate >= checks_spec.min_success;
        let mut detail = format!(
            "{:.4}% of {} requests succeeded (SLO {:.4}%)",
            w.success_rate * 100.0,
            w.requests,
            checks_spec.min_success * 100.0
        );
        if let Some(gap) = checks_spec.max_gap_s {
            let ok = w.longest_gap_ms as f64 <= gap * 1000.0;
            passed &= ok;
            detail.push_str(&format!(
                "; longest gap {:.2} s (limit {gap:.2} s)",
                w.longest_gap_ms as f64 / 1000.0
            ));
        }
        (passed, detail)
    };
    let (passed, detail) = slo(&overall);
    checks.push(CheckOutcome {
        name: "slo:overall".into(),
        passed: passed && overall.requests > 0,
        detail: if overall.requests == 0 {
            "no request was sent".into()
        } else {
            detail
        },
    });
    for c in classes.iter().filter(|c| c.label != "baseline") {
        let (passed, detail) = slo(c);
        checks.push(CheckOutcome {
            name: format!("slo:{}", c.label),
            passed,
            detail,
        });
    }
    let skipped: Vec<String> = driven
        .faults
        .iter()
        .filter_map(|f| f.skipped.as_ref().map(|s| format!("{}: {s}", f.class)))
        .collect();
    if !skipped.is_empty() {
        checks.push(CheckOutcome {
            name: "faults_injected".into(),
            passed: false,
            detail: format!(
                "{} fault(s) could not be injected: {}",
                skipped.len(),
                skipped.join("; ")
            ),
        });
    }
    let executed = driven.faults.iter().filter(|f| f.skipped.is_none()).count();
    // Recovery from the last heal, read off the probes taken during and
    // after the load (the prober keeps looking until it converges or the
    // limit passes).
    let limit_ms = (checks_spec.converge_within_s * 1000.0) as u64;
    let recovered = analysis::recovery_ms(&driven.probes, driven.last_heal_ms);
    checks.push(CheckOutcome {
        name: "converged".into(),
        passed: recovered.is_some_and(|r| r <= limit_ms) && driven.converged.is_some(),
        detail: match recovered {
            Some(r) => format!(
                "every deployment ran its target count {:.1} s after the last heal (limit {:.0} s; {executed} fault(s) executed)",
                r as f64 / 1000.0,
                checks_spec.converge_within_s
            ),
            None => format!(
                "deployments were not back at their target counts within {:.0} s of the last heal",
                checks_spec.converge_within_s
            ),
        },
    });
    for note in &driven.setup_notes {
        checks.push(CheckOutcome {
            name: "gcs_final_reads".into(),
            passed: false,
            detail: note.clone(),
        });
    }
    let mut gcs = None;
    if let Some(history) = driven.history {
        let history = history.into_history();
        let known = history
            .operations()
            .iter()
            .filter(|o| o.output.is_some())
            .count();
        let acknowledged_writes = history
            .operations()
            .iter()
            .filter(|o| {
                matches!(
                    (&o.input, &o.output),
                    (KvInput::Put { .. }, Some(KvOutput::Ok))
                        | (KvInput::Cas { .. }, Some(KvOutput::Swapped(true)))
                )
            })
            .count();
        gcs = Some(GcsSummary {
            operations: history.len(),
            known,
            acknowledged_writes,
        });
        checks.push(CheckOutcome {
            name: "gcs_known_operations".into(),
            passed: known >= checks_spec.min_known_gcs_ops,
            detail: format!(
                "{known} of {} operations had a known outcome (at least {} required)",
                history.len(),
                checks_spec.min_known_gcs_ops
            ),
        });
        if checks_spec.linearizable {
            let (passed, detail) = match check::<KvModel>(&history) {
                Ok(CheckResult::Ok) => (true, format!("{} operations checked", history.len())),
                Ok(CheckResult::Illegal { explanation, .. }) => {
                    (false, format!("not linearizable: {explanation}"))
                }
                Ok(CheckResult::Unknown { key, steps }) => (
                    false,
                    format!(
                        "the checker gave up on key {:?} after {steps} steps",
                        String::from_utf8_lossy(&key)
                    ),
                ),
                Err(e) => (false, format!("the history cannot be checked: {e}")),
            };
            checks.push(CheckOutcome {
                name: "linearizable".into(),
                passed,
                detail,
            });
        }
        if checks_spec.no_lost_writes {
            let lost = analysis::lost_writes(&history);
            checks.push(CheckOutcome {
                name: "no_lost_writes".into(),
                passed: lost.is_empty(),
                detail: if lost.is_empty() {
                    format!("{acknowledged_writes} acknowledged writes, none lost")
                } else {
                    lost.join("; ")
                },
            });
        }
    }
    let mut panics = Vec::new();
    let mut events = Vec::new();
    for i in 0..cluster.len() {
        let text = std::fs::read_to_string(cluster.log_path(i)).unwrap_or_default();
        let scan = analysis::scan_log(i, &text, j.origin_unix_ms);
        panics.extend(scan.panics.into_iter().map(|p| format!("node {i}: {p}")));
        events.extend(scan.events);
    }
    if checks_spec.no_panics {
        checks.push(CheckOutcome {
            name: "no_panics".into(),
            passed: panics.is_empty(),
            detail: if panics.is_empty() {
                "no node logged a panic".into()
            } else {
                panics.join("; ")
            },
        });
    }
    if checks_spec.single_placement {
        let doubles = analysis::double_placements(&events, &cluster.lives());
        let starts = events.iter().filter(|e| e.started).count();
        checks.push(CheckOutcome {
            name: "single_placement".into(),
            passed: doubles.is_empty() && starts > 0,
            detail: if starts == 0 {
                "no instance start was logged: the check saw nothing".into()
            } else if doubles.is_empty() {
                format!("{starts} instance starts, no actor ran on two nodes at once")
            } else {
                doubles.join("; ")
            },
        });
    }
    let load_end = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let mut command = format!(
        "troupe chaos run {} --seed {seed}",
        options.scenario.display()
    );
    if let Some(o) = &options.out {
        command.push_str(&format!(" --out {}", o.display()));
    }
    let _ = out;
    Ok(Report {
        scenario: scenario.name.clone(),
        scenario_text: text.to_owned(),
        seed,
        git_revision: git_revision(),
        command,
        started_at: j.started_at,
        machine: MachineInfo {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_start: j.load_start,
            load_end,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
        },
        network: j.network.into(),
        unavailable: j.unavailable,
        duration_ms: driven.load_ms.1 - driven.load_ms.0,
        overall,
        classes,
        windows,
        checks,
        gcs,
        series: Series {
            per_second: analysis::per_second(requests),
            probes: driven.probes,
            faults: driven.faults,
        },
    })
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Unix ms as RFC 3339 UTC (seconds precision).
fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_580_000_000), "2026-12-06T18:40:00Z");
    }
}
