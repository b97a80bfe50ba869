//! `troupe-content`: the content-understanding example as a Troupe
//! program — the `troupe` CLI with the pipeline's deployments and its
//! application `content` registered — plus `troupe-content demo`, which
//! runs the pipeline on a single node embedded in this process and sends
//! it the committed photos. See README.md next to this file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use troupe::serve::{config, declarative, ProxyConfig};
use troupe_examples::content;
use troupe_examples::vision::{ModelFiles, FETCH_SCRIPT};

/// `troupe-content demo`: the pipeline on an embedded node, answering the
/// committed photos (or yours).
#[derive(Debug, Parser)]
#[command(name = "troupe-content demo")]
struct DemoArgs {
    /// The serve config to deploy.
    #[arg(long, default_value_os_t = here().join("serve.yaml"))]
    config: PathBuf,
    /// Images to send (default: the committed fixtures).
    images: Vec<PathBuf>,
}

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("content_understanding")
}

mod bench;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("bench") {
        let args = bench::BenchArgs::parse_from(std::env::args().skip(1));
        return troupe_examples::run_subcommand("troupe-content bench", bench::run(args));
    }
    if std::env::args().nth(1).as_deref() == Some("demo") {
        let mut log = troupe::core::telemetry::LogConfig::default();
        if std::env::var_os("RUST_LOG").is_none() {
            log.filter = "warn".into();
        }
        let _ = troupe::core::telemetry::init(&log);
        let args = DemoArgs::parse_from(std::env::args().skip(1));
        return troupe_examples::run_subcommand("troupe-content demo", demo(args));
    }
    troupe::cli::run(content::catalog())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let files = ModelFiles::from_env();
    files.mobilenet_v2().with_context(|| {
        format!("the model weights are missing; run `bash {FETCH_SCRIPT}` first")
    })?;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config = config::parse_yaml(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let images = match args.images.is_empty() {
        false => args.images,
        true => ["chelsea.jpg", "coffee.jpg", "astronaut.jpg"]
            .iter()
            .map(|f| here().join("fixtures").join(f))
            .collect(),
    };

    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("troupe-content-demo-{}", std::process::id()));
    let token = troupe::core::rpc::ClusterToken::random();
    let catalog = content::catalog();
    let node = troupe::Node::start(
        troupe::NodeConfig::new(troupe::Role::Head, token, &dir),
        catalog.registry(),
    )
    .await?;
    let proxy = ProxyConfig {
        listen: "127.0.0.1:0".into(),
        max_body_bytes: config.http_options.max_body_bytes as usize,
        ..ProxyConfig::default()
    };
    let roles = troupe::serve::start(&node, Some(proxy), None)?;
    let http = roles.proxy_addr().expect("the proxy runs");
    let cluster = node.cluster();
    let outcome = async {
        let done = declarative::apply(&cluster, &catalog, &config).await?;
        declarative::wait_deployed(&cluster, &done, Duration::from_secs(120), |line| {
            eprintln!("{line}")
        })
        .await?;
        eprintln!(
            "the pipeline is RUNNING at http://{http}/ ({:.1} s after start)",
            started.elapsed().as_secs_f64()
        );
        for image in &images {
            let bytes =
                std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
            let url = format!("http://{http}/");
            let answer = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                let mut response = ureq::post(&url)
                    .header("content-type", "image/jpeg")
                    .config()
                    .http_status_as_error(false)
                    .build()
                    .send(&bytes[..])?;
                Ok(response.body_mut().read_to_string()?)
            })
            .await??;
            let value: serde_json::Value = serde_json::from_str(&answer)
                .with_context(|| format!("the answer is not JSON: {answer}"))?;
            println!(
                "{}: {}",
                image.display(),
                serde_json::to_string_pretty(&value)?
            );
        }
        anyhow::Ok(())
    }
    .await;
    roles.stop().await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}
