//! `troupe-content bench`: the pipeline's benchmarks (BENCHMARKS.md), each
//! next to its reference in the same run:
//! - each model's forward pass alone (one thread; batch 1 and 8), and
//!   decode + resize alone;
//! - the pipeline's latency at concurrency 1 on an embedded node, against
//!   the model time on its critical path (MTCNN, then the slower
//!   classifier: they run at once): the difference is the framework's
//!   overhead (hops, routing, copies, HTTP);
//! - throughput at concurrency 16 with batching off and on, and with 1 and
//!   2 replicas of each classifier.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::Device;
use clap::Parser;
use troupe::serve::{config, declarative, ProxyConfig};
use troupe_examples::content::stages::{self, ClassifierModel, LoadedClassifier};
use troupe_examples::content::{self};
use troupe_examples::vision::{mtcnn, preprocess, CpuThreads, ModelFiles};

#[derive(Debug, Parser)]
#[command(name = "troupe-content bench")]
pub struct BenchArgs {
    /// Seconds per throughput measurement.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Requests in flight for the throughput measurements.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Sequential requests for the latency measurement.
    #[arg(long, default_value_t = 30)]
    requests: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn time_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect(),
    )
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(super::here().join("fixtures").join(name)).expect("the fixtures are committed")
}

/// Forward passes alone, on one thread.
fn models_alone() -> anyhow::Result<()> {
    let pool = CpuThreads::new(1)?;
    let cat = fixture("chelsea.jpg");
    let image = preprocess::decode_rgb(&cat)?;
    let crop = preprocess::resize_and_crop(&image);
    println!("| measurement (one thread) | ms |");
    println!("| --- | ---: |");
    let decode = pool.install(|| {
        time_ms(20, || {
            stages::prepare(&cat, 640).unwrap();
        })
    });
    println!("| decode + resize + crop (preprocessor's work) | {decode:.1} |");
    for model in [
        ClassifierModel::MobilenetV2,
        ClassifierModel::EfficientnetLite0,
    ] {
        let loaded = pool
            .install(|| LoadedClassifier::load(model, Device::Cpu))
            .map_err(anyhow::Error::msg)?;
        for batch in [1usize, 2, 4, 8] {
            let crops = vec![crop.clone(); batch];
            let ms = pool.install(|| {
                time_ms(if batch == 1 { 20 } else { 8 }, || {
                    loaded.classify(&crops).unwrap();
                })
            });
            println!(
                "| {} batch {batch} | {ms:.1} ({:.1} per image) |",
                model.name(),
                ms / batch as f64
            );
        }
    }
    let detector = pool
        .install(|| ModelFiles::from_env().load_mtcnn(&mtcnn::Config::default(), &Device::Cpu))?;
    for name in ["chelsea.jpg", "astronaut.jpg"] {
        let image = preprocess::decode_rgb(&fixture(name))?;
        let ms = pool.install(|| {
            time_ms(10, || {
                detector.detect(&image).unwrap();
            })
        });
        println!("| mtcnn on {name} | {ms:.1} |");
    }
    Ok(())
}

fn config_yaml(max_batch_size: usize, classifier_replicas: u32) -> String {
    format!(
        "applications:
  - name: content
    app: content
    args: {{ max_batch_size: {max_batch_size}, batch_wait_timeout_ms: 10, prefer_gpu: false }}
    deployments:
      - {{ name: ingress, actor_options: {{ num_cpus: 0.01 }} }}
      - {{ name: downloader, actor_options: {{ num_cpus: 0.01 }} }}
      - {{ name: preprocessor, actor_options: {{ num_cpus: 0.01 }} }}
      - {{ name: detector, actor_options: {{ num_cpus: 0.01 }} }}
      - {{ name: mobilenet_v2, num_replicas: {classifier_replicas}, max_ongoing_requests: 32, actor_options: {{ num_cpus: 0.01 }} }}
      - {{ name: efficientnet_lite0, num_replicas: {classifier_replicas}, max_ongoing_requests: 32, actor_options: {{ num_cpus: 0.01 }} }}
"
    )
}

fn post(url: &str, body: &[u8]) -> anyhow::Result<serde_json::Value> {
    let mut response = ureq::post(url)
        .header("content-type", "image/jpeg")
        .send(body)
        .context("POST")?;
    Ok(serde_json::from_str(
        &response.body_mut().read_to_string()?,
    )?)
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    models_alone()?;

    let dir = tempfile::tempdir()?;
    let token = troupe::core::rpc::ClusterToken::random();
    let catalog = content::catalog();
    let node = troupe::Node::start(
        troupe::NodeConfig::new(troupe::Role::Head, token, dir.path()),
        catalog.registry(),
    )
    .await?;
    let proxy = ProxyConfig {
        listen: "127.0.0.1:0".into(),
        access_log: false,
        ..ProxyConfig::default()
    };
    let roles = troupe::serve::start(&node, Some(proxy), None)?;
    let url = format!("http://{}/", roles.proxy_addr().expect("the proxy runs"));
    let cluster = node.cluster();
    let deploy = |batch: usize, replicas: u32| {
        let cluster = cluster.clone();
        let catalog = catalog.clone();
        async move {
            let config = config::parse_yaml(&config_yaml(batch, replicas))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let done = declarative::apply(&cluster, &catalog, &config).await?;
            declarative::wait_deployed(&cluster, &done, Duration::from_secs(120), |_| {}).await?;
            anyhow::Ok(())
        }
    };
    let cat = Arc::new(fixture("chelsea.jpg"));

    // Latency at concurrency 1, against the model time on the critical path:
    // batching off (a batch waits for company: that wait is by design, not
    // overhead), then on.
    println!();
    println!(
        "| pipeline, concurrency 1 ({} requests), ms | latency (median, client side) | model time on the critical path (MTCNN + slower classifier) | application compute off the models (decode, resize) | the rest: the framework (median) | framework / latency |",
        args.requests
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (label, batch) in [("batching off", 1), ("batching on (waits up to 10 ms)", 4)] {
        deploy(batch, 1).await?;
        let (u, c) = (url.clone(), cat.clone());
        let requests = args.requests;
        let samples =
            tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(f64, f64, f64)>> {
                for _ in 0..3 {
                    post(&u, &c)?;
                }
                (0..requests)
                    .map(|_| {
                        let t = Instant::now();
                        let a = post(&u, &c)?;
                        let latency = t.elapsed().as_secs_f64() * 1e3;
                        let model = a["timings_ms"]["mtcnn_forward"].as_f64().unwrap_or(0.0)
                            + ["mobilenet_v2", "efficientnet_lite0"]
                                .iter()
                                .map(|m| a["models"][m]["forward_ms"].as_f64().unwrap_or(0.0))
                                .fold(0.0, f64::max);
                        let app = a["timings_ms"]["preprocess_compute"]
                            .as_f64()
                            .unwrap_or(0.0);
                        Ok((latency, model, app))
                    })
                    .collect()
            })
            .await??;
        let latency = median(samples.iter().map(|s| s.0).collect());
        let model = median(samples.iter().map(|s| s.1).collect());
        let app = median(samples.iter().map(|s| s.2).collect());
        let rest = median(samples.iter().map(|s| s.0 - s.1 - s.2).collect());
        println!(
            "| {label} | {latency:.1} | {model:.1} | {app:.1} | {rest:.1} | {:.1}% |",
            100.0 * rest / latency
        );
    }

    // Throughput at `concurrency`.
    println!();
    println!(
        "| pipeline, concurrency {}, {} s each | req/s | p50 ms | p99 ms |",
        args.concurrency, args.seconds
    );
    println!("| --- | ---: | ---: | ---: |");
    for (label, batch, replicas) in [
        ("batching off, 1 replica per classifier", 1, 1),
        ("batching on (max 4), 1 replica per classifier", 4, 1),
        ("batching on (max 8), 1 replica per classifier", 8, 1),
        ("batching on (max 4), 2 replicas per classifier", 4, 2),
    ] {
        deploy(batch, replicas).await?;
        let (rate, p50, p99) = load(&url, &cat, args.concurrency, args.seconds).await?;
        println!("| {label} | {rate:.1} | {p50:.0} | {p99:.0} |");
    }
    roles.stop().await;
    node.shutdown().await;
    Ok(())
}

/// Closed-loop load: `concurrency` clients for `seconds`.
async fn load(
    url: &str,
    body: &Arc<Vec<u8>>,
    concurrency: usize,
    seconds: f64,
) -> anyhow::Result<(f64, f64, f64)> {
    // Warm up every replica.
    let warm: Vec<_> = (0..concurrency)
        .map(|_| {
            let (u, b) = (url.to_owned(), body.clone());
            tokio::task::spawn_blocking(move || post(&u, &b))
        })
        .collect();
    for w in warm {
        w.await??;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            let (u, b) = (url.to_owned(), body.clone());
            let (stop, done, latencies) = (stop.clone(), done.clone(), latencies.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    post(&u, &b)?;
                    latencies
                        .lock()
                        .unwrap()
                        .push(t.elapsed().as_secs_f64() * 1e3);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    for c in clients {
        c.join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let pct = |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
    Ok((
        done.load(Ordering::Relaxed) as f64 / elapsed,
        pct(0.5),
        pct(0.99),
    ))
}
