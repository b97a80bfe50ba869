//! Troupe GCS vs etcd 3.4, same load shapes, same run, alternating.
//!
//! ```text
//! troupe-gcs-bench bench --troupe-bin PATH [--secs 5] [--rounds 2] [--trials 10]
//! troupe-gcs-bench soak  --troupe-bin PATH [--minutes 10] [--rate 500] [--keys 10000]
//! ```
//!
//! Results are markdown tables on stdout; progress goes to stderr.

mod load;
mod procs;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use load::{ContinuousWriter, Run, Sys};
use procs::{cpu_total, du_kib, rss_kib, EtcdCluster, TroupeCluster};
use tokio::time::Instant;

struct Args {
    mode: String,
    troupe_bin: PathBuf,
    secs: u64,
    rounds: usize,
    trials: usize,
    read_keys: u64,
    minutes: f64,
    rate: u64,
    keys: u64,
    /// Bench-level bound on one etcd put in the failover writer.
    etcd_attempt_ms: u64,
    /// If set, the Troupe client's backoff between rounds over all members
    /// is capped at this (default: the client's own, 20 ms doubling to 500 ms).
    troupe_backoff_max_ms: Option<u64>,
    /// Passed to `troupe gcs serve --snapshot-every` if set.
    troupe_snapshot_every: Option<u64>,
    /// `load` mode: which system and how many clients.
    system: String,
    clients: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        mode: "bench".into(),
        troupe_bin: PathBuf::from("/work/main/target/release/troupe"),
        secs: 5,
        rounds: 2,
        trials: 10,
        read_keys: 1000,
        minutes: 10.0,
        rate: 500,
        keys: 10_000,
        etcd_attempt_ms: 200,
        troupe_backoff_max_ms: None,
        troupe_snapshot_every: None,
        system: "troupe".into(),
        clients: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "bench" | "soak" | "load" => a.mode = arg.clone(),
            "--system" => a.system = val()?,
            "--clients" => a.clients = val()?.parse()?,
            "--troupe-snapshot-every" => a.troupe_snapshot_every = Some(val()?.parse()?),
            "--troupe-bin" => a.troupe_bin = PathBuf::from(val()?),
            "--secs" => a.secs = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            "--trials" => a.trials = val()?.parse()?,
            "--read-keys" => a.read_keys = val()?.parse()?,
            "--minutes" => a.minutes = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--keys" => a.keys = val()?.parse()?,
            "--etcd-attempt-ms" => a.etcd_attempt_ms = val()?.parse()?,
            "--troupe-backoff-max-ms" => a.troupe_backoff_max_ms = Some(val()?.parse()?),
            "-h" | "--help" => {
                println!("usage: troupe-gcs-bench [bench|soak|load] --troupe-bin PATH [--troupe-snapshot-every N] [--system troupe|etcd --clients N (load mode: one system only, for profiling)] [--secs N] [--rounds N] [--trials N] [--read-keys N] [--minutes M] [--rate N] [--keys N] [--etcd-attempt-ms N] [--troupe-backoff-max-ms N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if !a.troupe_bin.exists() {
        bail!("{} does not exist; build it with `cargo build --release -p troupe --bin troupe`", a.troupe_bin.display());
    }
    Ok(a)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    // Ctrl-C drops the running future, whose cluster guards kill every
    // member by pid.
    tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; members killed"),
    }
}

async fn run(args: Args) -> Result<()> {
    let extra: Vec<String> = match args.troupe_snapshot_every {
        Some(n) => vec!["--snapshot-every".into(), n.to_string()],
        None => Vec::new(),
    };
    if args.mode == "load" {
        return load_only(&args, extra).await;
    }
    eprintln!("starting 3 troupe gcs members ({})", args.troupe_bin.display());
    let troupe = TroupeCluster::start(&args.troupe_bin, extra).await?;
    eprintln!("starting 3 etcd members");
    let etcd = EtcdCluster::start().await?;
    let etcd_version = std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    println!("# Troupe GCS vs etcd ({etcd_version})\n");
    println!(
        "3 members each on 127.0.0.1, durable (Troupe: WAL fdatasync before ack; etcd: default fsync). \
         {} cores. Ratio = Troupe / etcd.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match args.mode.as_str() {
        "soak" => soak(&args, troupe, etcd).await,
        _ => bench(&args, troupe, etcd).await,
    }
}

/// One system only, closed-loop writes, member pids printed first: for
/// profiling (`perf record -p PID`) without the other system running.
async fn load_only(args: &Args, extra: Vec<String>) -> Result<()> {
    let secs = Duration::from_secs(args.secs);
    let (sys, pids, _guard): (Sys, Vec<Option<u32>>, Box<dyn std::any::Any>) = if args.system == "etcd" {
        let etcd = EtcdCluster::start().await?;
        let leader = etcd.leader(Duration::from_secs(10)).await?;
        let pids = etcd.pids_and_dirs().into_iter().map(|p| p.0).collect::<Vec<_>>();
        eprintln!("etcd leader pid {:?}; member pids {pids:?}", pids[leader]);
        (Sys::Etcd(etcd.client().await?.kv_client()), pids, Box::new(etcd))
    } else {
        let troupe = TroupeCluster::start(&args.troupe_bin, extra).await?;
        let leader = troupe.leader(Duration::from_secs(10)).await?;
        let pids = troupe.pids_and_dirs().into_iter().map(|p| p.0).collect::<Vec<_>>();
        eprintln!("troupe leader pid {:?}; member pids {pids:?}", pids[leader]);
        (Sys::Troupe(troupe.client()), pids, Box::new(troupe))
    };
    eprintln!("bench pid {}; loading in 3 s for {} s", std::process::id(), args.secs);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c0 = cpu_total(&pids);
    let mut r = load::writes(&sys, args.clients, secs, "load").await;
    let cpu = cpu_total(&pids) - c0;
    println!(
        "{} writes, {} clients: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms, errors {}, server CPU {:.0} us/op",
        args.system,
        args.clients,
        r.throughput(),
        r.pct_ms(50.0),
        r.pct_ms(99.0),
        r.pct_ms(99.9),
        r.pct_ms(100.0),
        r.errors,
        cpu * 1e6 / r.ops.max(1) as f64
    );
    Ok(())
}

fn ratio(t: f64, e: f64) -> String {
    if e > 0.0 && t.is_finite() && e.is_finite() {
        format!("{:.2}", t / e)
    } else {
        "n/a".into()
    }
}

async fn bench(args: &Args, mut troupe: TroupeCluster, mut etcd: EtcdCluster) -> Result<()> {
    let tclient = match args.troupe_backoff_max_ms {
        Some(ms) => troupe.client_with_backoff_max(Duration::from_millis(ms)),
        None => troupe.client(),
    };
    let eclient = etcd.client().await?;
    let t = Sys::Troupe(tclient.clone());
    let e = Sys::Etcd(eclient.kv_client());
    let secs = Duration::from_secs(args.secs);

    eprintln!("warm-up: 2 s of 16-client writes each");
    load::writes(&t, 16, Duration::from_secs(2), "warm").await;
    load::writes(&e, 16, Duration::from_secs(2), "warm").await;

    // ---- writes
    let concurrency = [1usize, 16, 64];
    let mut results: Vec<[Run; 2]> = Vec::new();
    let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); concurrency.len()];
    for (ci, &c) in concurrency.iter().enumerate() {
        let mut pair = [Run::default(), Run::default()];
        for round in 0..args.rounds {
            // Alternate which system goes first.
            let order: [usize; 2] = if (round + ci) % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut tp = [0.0; 2];
            for &s in &order {
                let sys = if s == 0 { &t } else { &e };
                let pids: Vec<Option<u32>> = if s == 0 {
                    troupe.pids_and_dirs().into_iter().map(|p| p.0).collect()
                } else {
                    etcd.pids_and_dirs().into_iter().map(|p| p.0).collect()
                };
                let me = [Some(std::process::id())];
                let (s0, c0) = (cpu_total(&pids), cpu_total(&me));
                let mut r = load::writes(sys, c, secs, &format!("c{c}r{round}")).await;
                r.server_cpu = cpu_total(&pids) - s0;
                r.client_cpu = cpu_total(&me) - c0;
                eprintln!(
                    "writes c={c:<3} round {round} {:<6}: {:>8.0} ops/s  errors {}",
                    sys.name(),
                    r.throughput(),
                    r.errors
                );
                tp[s] = r.throughput();
                pair[s].merge(r);
            }
            per_round[ci].push(tp[0] / tp[1]);
        }
        results.push(pair);
    }

    // ---- reads
    eprintln!("prefilling {} keys for reads", args.read_keys);
    load::prefill(&t, args.read_keys).await?;
    load::prefill(&e, args.read_keys).await?;
    let mut reads = [Run::default(), Run::default()];
    let mut read_rounds = Vec::new();
    for round in 0..args.rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut tp = [0.0; 2];
        for &s in &order {
            let sys = if s == 0 { &t } else { &e };
            let r = load::reads(sys, 64, secs, args.read_keys).await;
            eprintln!(
                "reads c=64 round {round} {:<6}: {:>8.0} ops/s  errors {}",
                sys.name(),
                r.throughput(),
                r.errors
            );
            tp[s] = r.throughput();
            reads[s].merge(r);
        }
        read_rounds.push(tp[0] / tp[1]);
    }

    // ---- failover
    let mut fo: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut elect: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut fo_errors = [0u64; 2];
    let mut fo_failed = [0usize; 2];
    for trial in 0..args.trials {
        let order: [usize; 2] = if trial % 2 == 0 { [0, 1] } else { [1, 0] };
        for &s in &order {
            let outcome = if s == 0 {
                failover_troupe(&mut troupe, &tclient, trial).await
            } else {
                failover_etcd(&mut etcd, &eclient, trial, args.etcd_attempt_ms).await
            };
            let (d, el, errs) = match outcome {
                Ok(x) => x,
                Err(err) => {
                    eprintln!("failover trial {trial} {}: FAILED: {err:#}", if s == 0 { "Troupe" } else { "etcd" });
                    fo_failed[s] += 1;
                    // Leave the cluster healthy for the next trial.
                    if s == 0 {
                        for i in 0..troupe.members.len() {
                            if !troupe.members[i].proc.is_running() {
                                troupe.restart(i)?;
                            }
                        }
                        troupe.wait_healthy(Duration::from_secs(60)).await?;
                    } else {
                        for i in 0..etcd.members.len() {
                            if !etcd.members[i].proc.is_running() {
                                etcd.restart(i)?;
                            }
                        }
                        etcd.wait_healthy(Duration::from_secs(60)).await?;
                    }
                    continue;
                }
            };
            eprintln!(
                "failover trial {trial} {:<6}: {:>7.0} ms (new leader seen at {:.0} ms; client errors {errs})",
                if s == 0 { "Troupe" } else { "etcd" },
                d.as_secs_f64() * 1000.0,
                el.as_secs_f64() * 1000.0
            );
            fo[s].push(d);
            elect[s].push(el);
            fo_errors[s] += errs;
        }
    }

    // ---- tables
    let rounds_note = |v: &[f64]| v.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
    println!(
        "## Writes (puts of 100-byte values to distinct keys; {} rounds x {} s per system, alternating)\n",
        args.rounds, args.secs
    );
    println!("| clients | Troupe ops/s | etcd ops/s | ratio | per-round ratios | Troupe p50 ms | etcd p50 ms | ratio | Troupe p99 ms | etcd p99 ms | ratio | errors T/e |");
    println!("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|");
    for (ci, &c) in concurrency.iter().enumerate() {
        let [mut tr, mut er] = results[ci].clone();
        let (tt, et) = (tr.throughput(), er.throughput());
        let (t50, e50, t99, e99) = (tr.pct_ms(50.0), er.pct_ms(50.0), tr.pct_ms(99.0), er.pct_ms(99.0));
        println!(
            "| {c} | {tt:.0} | {et:.0} | {} | {} | {t50:.2} | {e50:.2} | {} | {t99:.2} | {e99:.2} | {} | {}/{} |",
            ratio(tt, et),
            rounds_note(&per_round[ci]),
            ratio(t50, e50),
            ratio(t99, e99),
            tr.errors,
            er.errors
        );
    }
    println!("\nCPU per acknowledged write, microseconds (server = all 3 member processes; client = the bench process, i.e. the client library):\n");
    println!("| clients | Troupe server | etcd server | ratio | Troupe client | etcd client | ratio |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (ci, &c) in concurrency.iter().enumerate() {
        let (ts, tc) = results[ci][0].cpu_us_per_op();
        let (es, ec) = results[ci][1].cpu_us_per_op();
        println!("| {c} | {ts:.0} | {es:.0} | {} | {tc:.0} | {ec:.0} | {} |", ratio(ts, es), ratio(tc, ec));
    }
    let [mut tr, mut er] = reads;
    let (tt, et) = (tr.throughput(), er.throughput());
    let (t50, e50, t99, e99) = (tr.pct_ms(50.0), er.pct_ms(50.0), tr.pct_ms(99.0), er.pct_ms(99.0));
    println!(
        "\n## Linearizable reads (64 concurrent readers, `get` of {} existing keys)\n",
        args.read_keys
    );
    println!("| | Troupe | etcd | ratio |\n|---|---:|---:|---:|");
    println!("| ops/s | {tt:.0} | {et:.0} | {} |", ratio(tt, et));
    println!("| per-round ratios | | | {} |", rounds_note(&read_rounds));
    println!("| p50 ms | {t50:.2} | {e50:.2} | {} |", ratio(t50, e50));
    println!("| p99 ms | {t99:.2} | {e99:.2} | {} |", ratio(t99, e99));
    println!("| errors | {} | {} | |", tr.errors, er.errors);

    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let med = if v.is_empty() {
            f64::NAN
        } else if v.len() % 2 == 1 {
            ms(&v[v.len() / 2])
        } else {
            (ms(&v[v.len() / 2 - 1]) + ms(&v[v.len() / 2])) / 2.0
        };
        (med, v.last().map_or(f64::NAN, ms), v.first().map_or(f64::NAN, ms))
    };
    let (tm, tmax, tmin) = stats(&mut fo[0]);
    let (em, emax, emin) = stats(&mut fo[1]);
    let (tel, telmax, _) = stats(&mut elect[0]);
    let (eel, eelmax, _) = stats(&mut elect[1]);
    println!(
        "\n## Failover (SIGKILL the leader; time to the first acknowledged write issued after the kill; {} trials each)\n",
        args.trials
    );
    println!("| | Troupe | etcd | ratio |\n|---|---:|---:|---:|");
    println!("| median ms | {tm:.0} | {em:.0} | {} |", ratio(tm, em));
    println!("| max ms | {tmax:.0} | {emax:.0} | {} |", ratio(tmax, emax));
    println!("| min ms | {tmin:.0} | {emin:.0} | {} |", ratio(tmin, emin));
    println!("| new leader reported by a member: median ms | {tel:.0} | {eel:.0} | {} |", ratio(tel, eel));
    println!("| new leader reported by a member: max ms | {telmax:.0} | {eelmax:.0} | {} |", ratio(telmax, eelmax));
    println!("| trials with no write within 30 s | {} | {} | |", fo_failed[0], fo_failed[1]);
    println!("| failed client attempts (all trials) | {} | {} | |", fo_errors[0], fo_errors[1]);
    println!(
        "| all trials ms | {} | {} | |",
        fo[0].iter().map(|d| format!("{:.0}", ms(d))).collect::<Vec<_>>().join(" "),
        fo[1].iter().map(|d| format!("{:.0}", ms(d))).collect::<Vec<_>>().join(" ")
    );

    // ---- goals
    let [tr64, er64] = results[2].clone();
    let (mut tr64, mut er64) = (tr64, er64);
    let g1 = tr64.throughput() >= er64.throughput();
    let g2 = tr64.pct_ms(99.0) <= er64.pct_ms(99.0);
    let g3 = tm <= 1000.0;
    let pf = |b: bool| if b { "PASS" } else { "FAIL" };
    println!("\n## Goals (issue 3)\n");
    println!("| goal | result |\n|---|---|");
    println!(
        "| write throughput at 64 clients >= etcd's | {} ({:.0} vs {:.0} ops/s) |",
        pf(g1),
        tr64.throughput(),
        er64.throughput()
    );
    println!(
        "| write p99 at 64 clients <= etcd's | {} ({:.2} vs {:.2} ms) |",
        pf(g2),
        tr64.pct_ms(99.0),
        er64.pct_ms(99.0)
    );
    println!("| failover median <= 1 s | {} ({tm:.0} ms) |", pf(g3));
    Ok(())
}

/// One failover trial on Troupe: the shared client (its own leader search
/// and retries, default config) writes continuously; the leader's process
/// is SIGKILLed; then it is restarted and the cluster waited healthy.
async fn failover_troupe(cluster: &mut TroupeCluster, client: &troupe_gcs::client::GcsClient, trial: usize) -> Result<(Duration, Duration, u64)> {
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    let mut w = ContinuousWriter::start(Sys::Troupe(client.clone()), None, format!("t{trial}"));
    w.wait_acks(50, Duration::from_secs(20)).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let kill_at = Instant::now();
    cluster.kill(leader);
    let within = Duration::from_secs(30);
    let (d, el) = tokio::join!(
        w.first_ack_issued_after(kill_at, within),
        cluster.new_leader_after(leader, kill_at, within)
    );
    let errs = w.errors.load(Ordering::Relaxed);
    w.stop();
    cluster.restart(leader)?;
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    Ok((d?, el.context("no new leader reported")?, errs))
}

/// One failover trial on etcd: the shared client writes continuously, each
/// put bounded by `attempt_ms` and retried (etcd-client does not retry by
/// itself, and a put forwarded to a dead leader otherwise hangs for etcd's
/// request timeout of 7 s).
async fn failover_etcd(cluster: &mut EtcdCluster, client: &etcd_client::Client, trial: usize, attempt_ms: u64) -> Result<(Duration, Duration, u64)> {
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    let mut w = ContinuousWriter::start(
        Sys::Etcd(client.kv_client()),
        Some(Duration::from_millis(attempt_ms)),
        format!("e{trial}"),
    );
    w.wait_acks(50, Duration::from_secs(20)).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let old_id = cluster.members[leader].status().await.context("leader status")?.0;
    let kill_at = Instant::now();
    cluster.kill(leader);
    let within = Duration::from_secs(30);
    let (d, el) = tokio::join!(
        w.first_ack_issued_after(kill_at, within),
        cluster.new_leader_after(leader, old_id, kill_at, within)
    );
    let errs = w.errors.load(Ordering::Relaxed);
    w.stop();
    cluster.restart(leader)?;
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    Ok((d?, el.context("no new leader reported")?, errs))
}

async fn soak(args: &Args, troupe: TroupeCluster, etcd: EtcdCluster) -> Result<()> {
    let tclient = troupe.client();
    let eclient = etcd.client().await?;
    let stop = Arc::new(AtomicBool::new(false));
    // Both systems at once, each with its own writer at the same rate.
    let (tw, tt) = load::soak_writer(Sys::Troupe(tclient), args.rate, args.keys, stop.clone());
    let (ew, et) = load::soak_writer(Sys::Etcd(eclient.kv_client()), args.rate, args.keys, stop.clone());
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let start = Instant::now();
    let mut rows: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mb = |k: Option<u64>| k.map_or("-".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
    let sample = |name: &str, t: f64, win: &Arc<std::sync::Mutex<load::SoakWindow>>, members: Vec<(Option<u32>, PathBuf)>| {
        let mut w = std::mem::take(&mut *win.lock().unwrap());
        let p99 = load::percentile_ms(&mut w.lat_us, 99.0);
        let du: Vec<String> = members.iter().map(|(_, d)| mb(du_kib(d))).collect();
        let rss: Vec<String> = members.iter().map(|(p, _)| mb(p.and_then(rss_kib))).collect();
        let row = format!(
            "| {t:.0} | {} | {} | {} | {p99:.1} | {} | {} |",
            w.ok,
            w.errors,
            w.skipped,
            du.join(" / "),
            rss.join(" / ")
        );
        eprintln!("soak {name:<6} {row}");
        row
    };
    let mut next = start + Duration::from_secs(10);
    loop {
        tokio::time::sleep_until(next).await;
        let t = start.elapsed().as_secs_f64();
        rows[0].push(sample("Troupe", t, &tw, troupe.pids_and_dirs()));
        rows[1].push(sample("etcd", t, &ew, etcd.pids_and_dirs()));
        if start.elapsed() >= total {
            break;
        }
        next += Duration::from_secs(10);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        let _ = tt.await;
        let _ = et.await;
    })
    .await;

    println!(
        "## Soak: {} puts/s per system over {} keys (~100-byte values), {} min, both systems at once\n",
        args.rate, args.keys, args.minutes
    );
    println!("Each row covers the preceding 10 s: acknowledged puts, failed puts, puts not issued (256 in flight), p99 latency, then per member (m1 / m2 / m3) data-dir size (`du -sk`, MiB) and VmRSS (MiB).\n");
    for (i, name) in ["Troupe", "etcd"].iter().enumerate() {
        println!("### {name}\n");
        println!("| t s | ok | err | skipped | p99 ms | data dir MiB | RSS MiB |");
        println!("|---:|---:|---:|---:|---:|---|---|");
        for r in &rows[i] {
            println!("{r}");
        }
        println!();
    }
    Ok(())
}
