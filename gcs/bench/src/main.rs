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
use procs::{du_kib, rss_kib, EtcdCluster, TroupeCluster};
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
        etcd_attempt_ms: 500,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "bench" | "soak" => a.mode = arg.clone(),
            "--troupe-bin" => a.troupe_bin = PathBuf::from(val()?),
            "--secs" => a.secs = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse()?,
            "--trials" => a.trials = val()?.parse()?,
            "--read-keys" => a.read_keys = val()?.parse()?,
            "--minutes" => a.minutes = val()?.parse()?,
            "--rate" => a.rate = val()?.parse()?,
            "--keys" => a.keys = val()?.parse()?,
            "--etcd-attempt-ms" => a.etcd_attempt_ms = val()?.parse()?,
            "-h" | "--help" => {
                println!("usage: troupe-gcs-bench [bench|soak] --troupe-bin PATH [--secs N] [--rounds N] [--trials N] [--read-keys N] [--minutes M] [--rate N] [--keys N] [--etcd-attempt-ms N]");
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
    eprintln!("starting 3 troupe gcs members ({})", args.troupe_bin.display());
    let troupe = TroupeCluster::start(&args.troupe_bin).await?;
    eprintln!("starting 3 etcd members");
    let etcd = EtcdCluster::start().await?;
    let etcd_version = std::process::Command::new("etcd")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    println!("# Troupe GCS vs etcd ({etcd_version})\n");
    println!(
        "3 members each on 127.0.0.1, durable (Troupe: sled flush before ack; etcd: default fsync). \
         {} cores. Ratio = Troupe / etcd.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    match args.mode.as_str() {
        "soak" => soak(&args, troupe, etcd).await,
        _ => bench(&args, troupe, etcd).await,
    }
}

fn ratio(t: f64, e: f64) -> String {
    if e > 0.0 && t.is_finite() && e.is_finite() {
        format!("{:.2}", t / e)
    } else {
        "n/a".into()
    }
}

async fn bench(args: &Args, mut troupe: TroupeCluster, mut etcd: EtcdCluster) -> Result<()> {
    let tclient = troupe.client();
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
                let r = load::writes(sys, c, secs, &format!("c{c}r{round}")).await;
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
    let mut fo_errors = [0u64; 2];
    for trial in 0..args.trials {
        let order: [usize; 2] = if trial % 2 == 0 { [0, 1] } else { [1, 0] };
        for &s in &order {
            let (d, errs) = if s == 0 {
                failover_troupe(&mut troupe, &tclient, trial).await?
            } else {
                failover_etcd(&mut etcd, &eclient, trial, args.etcd_attempt_ms).await?
            };
            eprintln!(
                "failover trial {trial} {:<6}: {:>7.0} ms (client errors {errs})",
                if s == 0 { "Troupe" } else { "etcd" },
                d.as_secs_f64() * 1000.0
            );
            fo[s].push(d);
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
    println!(
        "\n## Failover (SIGKILL the leader; time to the first acknowledged write issued after the kill; {} trials each)\n",
        args.trials
    );
    println!("| | Troupe | etcd | ratio |\n|---|---:|---:|---:|");
    println!("| median ms | {tm:.0} | {em:.0} | {} |", ratio(tm, em));
    println!("| max ms | {tmax:.0} | {emax:.0} | {} |", ratio(tmax, emax));
    println!("| min ms | {tmin:.0} | {emin:.0} | {} |", ratio(tmin, emin));
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
async fn failover_troupe(cluster: &mut TroupeCluster, client: &troupe_gcs::client::GcsClient, trial: usize) -> Result<(Duration, u64)> {
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    let mut w = ContinuousWriter::start(Sys::Troupe(client.clone()), None, format!("t{trial}"));
    w.wait_acks(50, Duration::from_secs(20)).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let kill_at = Instant::now();
    cluster.kill(leader);
    let d = w.first_ack_issued_after(kill_at, Duration::from_secs(30)).await;
    let errs = w.errors.load(Ordering::Relaxed);
    w.stop();
    cluster.restart(leader)?;
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    Ok((d?, errs))
}

/// One failover trial on etcd: the shared client writes continuously, each
/// put bounded by `attempt_ms` and retried (etcd-client does not retry by
/// itself, and a put forwarded to a dead leader otherwise hangs for etcd's
/// request timeout of 7 s).
async fn failover_etcd(cluster: &mut EtcdCluster, client: &etcd_client::Client, trial: usize, attempt_ms: u64) -> Result<(Duration, u64)> {
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    let mut w = ContinuousWriter::start(
        Sys::Etcd(client.kv_client()),
        Some(Duration::from_millis(attempt_ms)),
        format!("e{trial}"),
    );
    w.wait_acks(50, Duration::from_secs(20)).await?;
    let leader = cluster.leader(Duration::from_secs(10)).await?;
    let kill_at = Instant::now();
    cluster.kill(leader);
    let d = w.first_ack_issued_after(kill_at, Duration::from_secs(30)).await;
    let errs = w.errors.load(Ordering::Relaxed);
    w.stop();
    cluster.restart(leader)?;
    cluster.wait_healthy(Duration::from_secs(60)).await?;
    Ok((d?, errs))
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
