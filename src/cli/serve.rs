//! `troupe serve run APP`: an application on a single node embedded in this
//! process (GCS, worker, controllers, proxy), until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use troupe_core::resources::Resources;
use troupe_core::rpc::ClusterToken;
use troupe_serve::spec::STATUS_PREFIX;
use troupe_serve::{AppState, AppStatus, Catalog, ProxyConfig};
use troupe_worker::{schema, Node, NodeConfig, Role};

#[derive(Debug, Subcommand)]
pub enum ServeCommand {
    /// Run one of this binary's applications on a single embedded node
    /// until Ctrl-C (in-flight requests are drained on the way out).
    Run(RunArgs),
    /// List the applications this binary can run.
    List,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The application's registered name (see `serve list`).
    app: String,
    /// Where the HTTP proxy listens.
    #[arg(long, default_value = "127.0.0.1:8000")]
    http_listen: String,
    /// Where the admin API and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:8265")]
    dashboard_listen: String,
    /// The node's directory (default: a fresh temp dir, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// CPUs offered to replicas (default: the machine's cores).
    #[arg(long)]
    num_cpus: Option<f64>,
    /// GPUs offered to replicas.
    #[arg(long, default_value_t = 0.0)]
    num_gpus: f64,
}

pub async fn run(command: ServeCommand, catalog: Catalog) -> anyhow::Result<()> {
    match command {
        ServeCommand::List => {
            for name in catalog.app_names() {
                println!("{name}");
            }
            Ok(())
        }
        ServeCommand::Run(args) => serve_run(args, catalog).await,
    }
}

async fn serve_run(args: RunArgs, catalog: Catalog) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(app) = catalog.build_app(&args.app) else {
        let known: Vec<&str> = catalog.app_names().collect();
        bail!(
            "no application named {:?} in this binary; it has: {}",
            args.app,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let (dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("troupe-serve-{}", std::process::id())),
            true,
        ),
    };
    let mut config = NodeConfig::new(Role::Head, ClusterToken::random(), &dir);
    let mut resources = match args.num_cpus {
        Some(cpus) => Resources::new().with_cpus(cpus).context("--num-cpus")?,
        None => config.resources.clone(),
    };
    resources = resources.with_gpus(args.num_gpus).context("--num-gpus")?;
    config.resources = resources;
    let node = Node::start(config, catalog.registry()).await?;
    let proxy = ProxyConfig {
        listen: args.http_listen.clone(),
        ..ProxyConfig::default()
    };
    let admin = troupe_serve::AdminConfig {
        listen: args.dashboard_listen.clone(),
        token: None,
    };
    let roles = troupe_serve::start(&node, Some(proxy), Some(admin))?;
    let http = roles.proxy_addr().expect("the proxy was asked for");
    let name = app.name().to_owned();
    let cluster = node.cluster();
    let spec = app.clone().into_spec().map_err(anyhow::Error::msg)?;
    troupe_serve::deploy(&cluster, app).await?;
    let status = wait_for_app(&cluster, &name).await?;
    let prefix = spec.route_prefix.clone().unwrap_or_default();
    match status.state {
        AppState::Running => println!(
            "application {name} is RUNNING at http://{http}{} (ready {:.0} ms after start); Ctrl-C to stop",
            if prefix == "/" { "" } else { &prefix },
            started.elapsed().as_secs_f64() * 1e3
        ),
        _ => {
            roles.stop().await;
            node.shutdown().await;
            bail!("application {name} is {}: {}", status.state.name(), status.message);
        }
    }
    super::wait_for_shutdown_signal().await?;
    println!("draining requests in flight and stopping");
    roles.stop().await;
    node.shutdown().await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Waits until `app` is RUNNING or DEPLOY_FAILED (or 60 s pass).
async fn wait_for_app(cluster: &troupe_worker::Cluster, app: &str) -> anyhow::Result<AppStatus> {
    let key = format!("{STATUS_PREFIX}{app}").into_bytes();
    let mut changes = cluster.state_changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = cluster.read_state(|s| {
            s.extra
                .get(&key)
                .and_then(|v| schema::decode::<AppStatus>(v).ok())
        });
        if let Some(status) = status {
            if matches!(status.state, AppState::Running | AppState::DeployFailed) {
                return Ok(status);
            }
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            bail!("application {app} did not become RUNNING within 60 s; see the node's log");
        }
    }
}
